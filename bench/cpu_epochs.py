"""bench/cpu_epochs.py — the CPU time of each epoch of a dlc train run, for
bench/run.sh.

dlc train prints a line per epoch with its wall-clock samples/s; on a
machine shared with other work the wall clock counts the time the other
work takes.  This runs the command (line-buffered through stdbuf), and at
each epoch line reads how much CPU time the process's threads have had
(the first field of /proc/PID/task/TID/schedstat, nanoseconds; a thread
seen once keeps counting after it ends).  The epoch's CPU time is the
difference from the previous epoch line, so the first epoch (compile
and data loading precede it) is the warm-up and is not reported.

usage: python3 bench/cpu_epochs.py SAMPLES_PER_EPOCH dlc train ... --epochs K
Prints (K - 1 values each):
  cpu_samples_per_s 51234.1 ...   (samples per CPU second, all threads)
  wall_samples_per_s 48012.0 ...  (dlc's own figure, from its epoch lines)
and passes dlc's exit status on.
"""
import os
import re
import subprocess
import sys

EPOCH = re.compile(r"\(([0-9.]+) samples/s\)")


def cpu_ns(pid, seen):
    """CPU time of every thread of pid seen so far, in nanoseconds."""
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    seen[tid] = int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass  # the thread ended between the listing and the read
    except OSError:
        pass
    return sum(seen.values())


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    n = int(sys.argv[1])
    proc = subprocess.Popen(["stdbuf", "-oL"] + sys.argv[2:], stdout=subprocess.PIPE, text=True)
    seen, marks, wall, log = {}, [], [], []
    for line in proc.stdout:
        log.append(line)
        m = EPOCH.search(line)
        if m:
            marks.append(cpu_ns(proc.pid, seen))
            wall.append(float(m.group(1)))
    rc = proc.wait()
    if rc != 0 or len(marks) < 2:
        sys.stderr.write("".join(log[-5:]))
        sys.stderr.write(f"cpu_epochs: the command exited with status {rc} after {len(marks)} epoch line(s)\n")
        sys.exit(rc or 1)
    rates = [n / ((b - a) / 1e9) for a, b in zip(marks, marks[1:])]
    print("cpu_samples_per_s", " ".join(f"{r:.1f}" for r in rates))
    print("wall_samples_per_s", " ".join(f"{w:.1f}" for w in wall[1:]))


if __name__ == "__main__":
    main()
