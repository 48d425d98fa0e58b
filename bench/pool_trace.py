"""bench/pool_trace.py — where a run on two (or more) threads loses time,
loop by loop, from the pool's trace (runtime/pool.c: DLC_POOL_TRACE=FILE
writes a line per job when the pool is freed).  With the JIT's perf map
(DLC_PERF_MAP=1 writes /tmp/perf-PID.map) the loops get their names,
P_F_kN_pM; give a second trace of the same run with
DLC_POOL_TRACE_SERIAL=1 (every job whole on the caller: the same code on
one thread) and its map, and each loop's time is set against it.

    DLC_PERF_MAP=1 DLC_POOL_TRACE=/tmp/t2 dlc train m.dl --threads 2
    DLC_PERF_MAP=1 DLC_POOL_TRACE=/tmp/t1 DLC_POOL_TRACE_SERIAL=1 dlc train m.dl --threads 2
    python3 bench/pool_trace.py /tmp/t2 /tmp/perf-A.map [/tmp/t1 /tmp/perf-B.map]

Per loop, totals over the run in milliseconds: its jobs, their wall
time, the chunks' time summed over the threads (work), the serial run's
time, and "lost", the wall time above half of the serial time (what two
threads fall short of twice as fast); then the time the caller spends
between jobs (serial work: the trainer, loops too small for a job) and
how many jobs ran their first chunk on the caller (a late worker).
"""
import collections
import sys


def load_map(path):
    spans = []
    with open(path) as f:
        for line in f:
            parts = line.split(None, 2)
            if len(parts) == 3:
                spans.append((int(parts[0], 16), int(parts[1], 16), parts[2].strip()))
    spans.sort()
    return spans


def namer(spans):
    cache = {}

    def name(addr):
        if addr not in cache:
            a = int(addr, 16)
            cache[addr] = next((n for s, z, n in spans if s <= a < s + z), "runtime " + addr)
        return cache[addr]
    return name


def load(trace, spans):
    name = namer(spans)
    jobs = []
    with open(trace) as f:
        for line in f:
            v = line.split()
            chunks = [(int(v[i]), int(v[i + 1]), int(v[i + 2])) for i in range(4, len(v), 3)]
            jobs.append((name(v[0]), int(v[1]), int(v[2]), int(v[3]), chunks))
    return jobs


def per_loop(jobs):
    acc = collections.defaultdict(lambda: [0, 0, 0])  # calls, wall ns, work ns
    for n, _, t0, t1, chunks in jobs:
        a = acc[n]
        a[0] += 1
        a[1] += t1 - t0
        a[2] += sum(e - s for s, e, _ in chunks)
    return acc


def main():
    if len(sys.argv) not in (3, 5):
        raise SystemExit(__doc__)
    par = load(sys.argv[1], load_map(sys.argv[2]))
    ser = load(sys.argv[3], load_map(sys.argv[4])) if len(sys.argv) == 5 else None
    loops, sloops = per_loop(par), per_loop(ser) if ser else {}
    print("%-34s %6s %8s %8s %8s %8s %7s" % ("loop (ms in all)", "jobs", "wall", "work", "serial", "lost", "speedup"))
    rows = sorted(loops.items(), key=lambda kv: -kv[1][1])
    lost_all = 0.0
    for n, (c, wall, work) in rows:
        sv = sloops[n][1] / 1e6 if n in sloops else float("nan")
        lost = wall / 1e6 - sv / 2
        lost_all += lost if lost == lost else 0
        print("%-34s %6d %8.2f %8.2f %8.2f %8.2f %6.2fx" % (n[-34:], c, wall / 1e6, work / 1e6, sv, lost,
                                                              sv / (wall / 1e6) if wall else 0))
    span = (par[-1][3] - par[0][2]) / 1e6
    between = sum(par[i + 1][2] - par[i][3] for i in range(len(par) - 1)) / 1e6
    late = sum(1 for j in par if len(j[4]) > 1 and any(c == 0 and who == 0 for c, (_, _, who) in enumerate(j[4])))
    print("%.2f ms from the first job to the last, %.2f ms of it between jobs (on the caller)" % (span, between))
    if ser:
        sspan = (ser[-1][3] - ser[0][2]) / 1e6
        sbetween = sum(ser[i + 1][2] - ser[i][3] for i in range(len(ser) - 1)) / 1e6
        print("serial run: %.2f ms, %.2f ms between jobs; %.2fx; the loops lost %.2f ms" % (sspan, sbetween, sspan / span,
                                                                                         lost_all))
    print("%d of %d jobs ran their first chunk on the caller (a late worker)" % (late, len(par)))


if __name__ == "__main__":
    main()
