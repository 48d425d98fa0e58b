"""bench/jit_profile.py — where the time of the JIT's code goes, kernel by
kernel, from a perf recording of `dlc train --backend=jit` run with
DLC_PERF_MAP=1 (the JIT then writes /tmp/perf-PID.map, which names its
functions for perf) and --dump-after=schedule (whose "kernel N: OP NAME"
lines name the kernels).  The JIT compiles kernel N of function F of
model P to P_F_kN, and each of its parallel loops to P_F_kN_pM; the
samples of both count for the kernel.  bench/profile.sh makes both files.

    20.1%   1234  train_step: kernel 30: max_pool2d_grad  # lenet5.dl:21
    ...

usage: python3 bench/jit_profile.py PERF.data DUMP [TOP]
"""
import collections
import re
import subprocess
import sys

FUNC = re.compile(r"^func (\w+)\(")
KERNEL = re.compile(r"^\s+kernel (\d+): (.*)$")


def kernel_names(dump):
    """{(function, kernel number): 'OP NAME  # file:line'} of the first listing of each."""
    names, func = {}, None
    with open(dump) as f:
        for line in f:
            m = FUNC.match(line)
            if m:
                func = m.group(1)
                continue
            k = KERNEL.match(line)
            if k and func:
                names.setdefault((func, int(k.group(1))), k.group(2))
    return names


def main():
    if len(sys.argv) not in (3, 4):
        raise SystemExit(__doc__)
    data, dump = sys.argv[1:3]
    top = int(sys.argv[3]) if len(sys.argv) == 4 else 12
    names = kernel_names(dump)
    out = subprocess.run(["perf", "script", "-i", data, "-F", "ip,sym,dso"],
                         capture_output=True, text=True, check=True).stdout
    count, total = collections.Counter(), 0
    for line in out.splitlines():
        w = line.split()
        if len(w) < 3 or "perf-" not in line and "[JIT]" not in line:
            continue
        total += 1
        sym = w[1]
        m = None
        for func, _ in names:
            m = re.match(rf"^\w+_{func}_k(\d+)(?:_p\d+)?$", sym)
            if m:
                key = (func, int(m.group(1)))
                count[f"{func}: kernel {key[1]}: {names.get(key, '?')}"] += 1
                break
        if not m:
            count[sym] += 1
    if not total:
        raise SystemExit("jit_profile: no samples in the JIT's code (was DLC_PERF_MAP=1 set?)")
    for name, n in count.most_common(top):
        print(f"{100 * n / total:6.1f}% {n:6d}  {name}")
    print(f"({total} samples in the JIT's code)")


if __name__ == "__main__":
    main()
