"""bench/kernel_profile.py — where the time of the C dlc emits goes, kernel by
kernel, from a perf recording (bench/profile.sh makes them).

The emitted C opens every kernel with a comment naming its op, the value
and the source line ("/* conv2d c1 — samples/lenet5.dl:8: ... */"), and the
C compiler inlines the kernels into the entry points, so a profile by
function says only "lenet5_forward".  This maps each sample of the
recording to its line of the C file (perf script gives symbol + offset,
addr2line the line, the outermost of an inlined chain) and each line to
the kernel comment above it in its function, then prints the kernels by
their share of the samples in BINARY:

    41.2%   1234  lenet5_forward: conv2d c2 — samples/lenet5.dl:10 -> f32[N, 16, 10, 10] (C line 157)
    ...

usage: python3 bench/kernel_profile.py PERF.data BINARY C_FILE [TOP]
(BINARY built with -g from C_FILE; TOP rows, default 12)
"""
import collections
import os
import re
import subprocess
import sys

KERNEL = re.compile(r"^\s*/\* (.+? — [^:]+:\d+)")
FUNC = re.compile(r"^[A-Za-z].*\b([A-Za-z_][A-Za-z0-9_]*)\s*\(")


DECL = re.compile(r"^\s*(?:float|double|int32_t|int64_t|uint8_t) \*const (t\d+) = .*/\* \S+ (.+?) \*/")
STORE = re.compile(r"\b(t\d+)\[[^;]*\]\s*[-+*]?= ")


def line_owners(c_file):
    """For each line number of c_file, 'function: kernel' (or the function).
    A kernel is named by its comment, the type of the last buffer it
    stores to (its result: gradient kernels share the loss's source line)
    and the C line it starts on."""
    with open(c_file) as f:
        text = f.read().splitlines()
    owners, func, kernel, decls = {}, "?", None, {}
    starts = {}  # kernel -> the type of the buffer it stores to last
    for no, line in enumerate(text, 1):
        m = FUNC.match(line)
        if m and not line.startswith(("#", "typedef", "static const", "const")):
            func, kernel = m.group(1), None
        d = DECL.match(line)
        if d:
            decls[d.group(1)] = d.group(2)
        k = KERNEL.match(line)
        if k:
            kernel = (k.group(1), no)
            starts[kernel] = None
        elif kernel:
            st = STORE.search(line)
            if st and st.group(1) in decls:
                starts[kernel] = decls[st.group(1)]
        owners[no] = (func, kernel)
    named = {}
    for no, (func, kernel) in owners.items():
        if not kernel:
            named[no] = func
        else:
            what, at = kernel
            typ = f" -> {starts[kernel]}" if starts[kernel] else ""
            named[no] = f"{func}: {what}{typ} (C line {at})"
    return named


def samples(data, binary):
    """(symbol, offset) of every sample taken in binary."""
    out = subprocess.run(["perf", "script", "-i", data, "-F", "ip,sym,symoff,dso"],
                         capture_output=True, text=True, check=True).stdout
    real = os.path.realpath(binary)
    got = []
    for line in out.splitlines():
        m = re.search(r"\s(\S+)\+0x([0-9a-f]+) \((.*)\)\s*$", line)
        if m and os.path.realpath(m.group(3)) == real:
            got.append((m.group(1), int(m.group(2), 16)))
    return got


def symbol_addresses(binary):
    out = subprocess.run(["nm", binary], capture_output=True, text=True, check=True).stdout
    addr = {}
    for line in out.splitlines():
        w = line.split()
        if len(w) == 3 and w[1] in "tTwW":
            addr[w[2]] = int(w[0], 16)
    return addr


def source_lines(binary, addrs):
    """{address: line number} through addr2line (the outermost frame)."""
    if not addrs:
        return {}
    proc = subprocess.run(["addr2line", "-a", "-i", "-e", binary] + [hex(a) for a in addrs],
                          capture_output=True, text=True, check=True)
    lines, cur = {}, None
    for row in proc.stdout.splitlines():
        if row.startswith("0x"):
            cur = int(row, 16)
            continue
        m = re.search(r":(\d+)", row)
        if cur is not None and m:
            lines[cur] = int(m.group(1))  # the last of the chain is the outermost caller
    return lines


def main():
    if len(sys.argv) not in (4, 5):
        raise SystemExit(__doc__)
    data, binary, c_file = sys.argv[1:4]
    top = int(sys.argv[4]) if len(sys.argv) == 5 else 12
    got = samples(data, binary)
    if not got:
        raise SystemExit(f"kernel_profile: no samples in {binary}")
    syms = symbol_addresses(binary)
    addrs = sorted({syms[s] + off for s, off in got if s in syms})
    where = source_lines(binary, addrs)
    owners = line_owners(c_file)
    count = collections.Counter()
    for s, off in got:
        line = where.get(syms.get(s, -1) + off)
        count[owners.get(line, s) if line else s] += 1
    total = sum(count.values())
    for name, n in count.most_common(top):
        print(f"{100 * n / total:6.1f}% {n:6d}  {name}")
    print(f"({total} samples in {os.path.basename(binary)})")


if __name__ == "__main__":
    main()
