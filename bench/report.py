"""bench/report.py — the table and the plot of a bench/run.sh run.

Reads out/bench/results.txt, where bench/run.sh wrote one line per
measurement,

    MODEL MEASURE SYSTEM UNIT V1 V2 ...     (every repetition's value)
    # KEY VALUE                             (the machine, versions, FLOPs)

prints the table (median and min-max of each measurement, GFLOP/s and
their share of the measured peak, dlc's speed over each peer's, the
dlc's performance targets), and writes an SVG plot: dlc's speed over PyTorch's
and ONNX Runtime's per measurement (log scale), and every system's share
of the peak.  Standard library only.

usage: python3 bench/report.py RESULTS.txt OUT.svg
"""
import math
import statistics
import sys
from html import escape

SYSTEMS = {"dlc_c": "dlc C", "dlc_jit": "dlc JIT", "pytorch": "PyTorch", "ort": "ONNX Runtime"}
PEERS = ["pytorch", "ort"]


def load(path):
    meta, rows = {}, {}
    with open(path) as f:
        for line in f:
            w = line.split()
            if not w:
                continue
            if w[0] == "#":
                meta[w[1]] = " ".join(w[2:])
            elif len(w) > 4:
                rows[(w[0], w[1], w[2])] = [float(v) for v in w[4:]]
    return meta, rows


class Figure:
    """One measurement of one system: speed (higher is better) and the
    figure as shown (samples/s, or microseconds for latency)."""

    def __init__(self, values, batch=None):
        self.latency = batch == 1
        if batch is None:  # already a rate
            self.shown = values
            self.speed = values
        else:  # microseconds per call of a batch
            self.shown = values if self.latency else [batch * 1e6 / v for v in values]
            self.speed = [batch * 1e6 / v for v in values]
        self.median = statistics.median(self.shown)
        self.speed_median = statistics.median(self.speed)

    def range(self):
        return f"{fmt(min(self.shown))}-{fmt(max(self.shown))}"


def fmt(v):
    return f"{v:.1f}" if v < 1000 else f"{v:.0f}"


def model_figures(rows, model):
    """{(measure, system): Figure} for the model's measurements."""
    out = {}
    for (m, measure, system), values in rows.items():
        if m != model:
            continue
        batch = int(measure[len("infer_b"):]) if measure.startswith("infer_b") else None
        out[(measure, system)] = Figure(values, batch)
    return out


def table(meta, rows, peak):
    lines = []
    floor = rows.get(("-", "call_floor", "ort"))
    floor = statistics.median(floor) if floor else None
    models = sorted({k[0] for k in rows if k[0] != "-"}, key=lambda m: ["mlp", "lenet5"].index(m)
                    if m in ("mlp", "lenet5") else 9)
    targets = []
    plot = []  # (label, ratio to pytorch, ratio to ort, {system: % of peak})
    for model in models:
        fwd = float(meta.get(f"flops_forward_{model}", "nan"))
        trn = float(meta.get(f"flops_train_{model}", "nan"))
        figs = model_figures(rows, model)
        lines.append("")
        lines.append(f"samples/{model}.dl — forward {fwd / 1e3:.1f} kFLOP, training step {trn / 1e6:.3f} MFLOP per example")
        lines.append(f"{'measure':<31}{'system':<14}{'median':>10}  {'min-max':<20}{'GFLOP/s':>8}{'% peak':>8}"
                     f"{'vs PyTorch':>12}{'vs ORT':>9}")
        measures = [("train_b64", "training, batch 64, samples/s", trn),
                    ("infer_b1", "batch-1 latency, us", fwd),
                    ("infer_b64", "batch 64, samples/s", fwd),
                    ("infer_b256", "batch 256, samples/s", fwd)]
        for measure, title, flops in measures:
            first = True
            for system in ["dlc_c", "dlc_jit", "pytorch", "ort"]:
                f = figs.get((measure, system))
                if not f:
                    continue
                gf = f.speed_median * flops / 1e9
                ratios = []
                for peer in PEERS:
                    p = figs.get((measure, peer))
                    ratios.append(f.speed_median / p.speed_median if p and system.startswith("dlc") else None)
                rtxt = "".join(f"{(f'{r:.2f}x' if r else ''):>{w}}" for r, w in zip(ratios, (12, 9)))
                lines.append(f"{(title if first else ''):<31}{SYSTEMS[system]:<14}{fmt(f.median):>10}  "
                             f"{f.range():<20}{gf:>8.1f}{100 * gf / peak:>7.1f}%{rtxt}")
                first = False
                if system.startswith("dlc"):
                    pct = {SYSTEMS[s]: 100 * figs[(measure, s)].speed_median * flops / 1e9 / peak
                           for s in ["dlc_c", "dlc_jit", "pytorch", "ort"] if (measure, s) in figs}
                    plot.append((f"{model} {title.split(',')[0]} ({SYSTEMS[system]})", ratios[0], ratios[1],
                                 pct if system == "dlc_c" else {}))
            ort, dlc = figs.get((measure, "ort")), figs.get((measure, "dlc_c"))
            if measure == "infer_b1" and floor and ort and dlc:
                bare = ort.median - floor
                lines.append(f"{'':<31}ONNX Runtime less Node's cost of a call ({floor:.1f} us): {bare:.1f} us;"
                             f" dlc C {bare / dlc.median:.2f}x that")
        # two threads against one: wall clock, and work per CPU second
        t1, t2 = (figs.get(("train_b256_threads", f"dlc_jit_t{t}")) for t in (1, 2))
        c1, c2 = (figs.get(("train_b256_threads_cpu", f"dlc_jit_t{t}")) for t in (1, 2))
        if t1 and t2:
            lines.append(f"{'training, batch 256, samples/s':<31}{'JIT 1 thread':<14}{fmt(t1.median):>10}  {t1.range():<20}"
                         "wall clock")
            lines.append(f"{'':<31}{'JIT 2 threads':<14}{fmt(t2.median):>10}  {t2.range():<20}"
                         f"2 threads / 1 = {t2.median / t1.median:.2f}x")
            if c1 and c2:
                lines.append(f"{'':<31}{'per CPU second':<14}{fmt(c2.median):>10}  {c2.range():<20}"
                             f"2 threads' work per CPU second / 1 thread's ({fmt(c1.median)}) = {c2.median / c1.median:.2f}")
            targets.append((f"{model}: two threads >= 1.7x one (training, batch 256)", t2.median / t1.median, 1.7))
        tr = figs.get(("train_b64", "pytorch"))
        if tr:
            best = max((figs[("train_b64", s)].median, SYSTEMS[s]) for s in ("dlc_c", "dlc_jit")
                       if ("train_b64", s) in figs)
            need = 1.5 if model == "mlp" else 3.0
            targets.append((f"{model}: training >= {need}x PyTorch ({best[1]})", best[0] / tr.median, need))
        lat = [figs[("infer_b1", s)].median for s in PEERS if ("infer_b1", s) in figs]
        if lat and ("infer_b1", "dlc_c") in figs:
            # a time ratio: at most 0.5 is met; shown as speed (at least 2x)
            targets.append((f"{model}: batch-1 latency <= 0.5x the better peer",
                            min(lat) / figs[("infer_b1", "dlc_c")].median, 2.0))
        if ("infer_b256", "ort") in figs and ("infer_b256", "dlc_c") in figs:
            need = 1.0 if model == "mlp" else 2.0
            targets.append((f"{model}: batch-256 throughput >= {need:g}x ONNX Runtime",
                            figs[("infer_b256", "dlc_c")].median / figs[("infer_b256", "ort")].median, need))
    mm = rows.get(("-", "matmul512", "dlc_c"))
    if mm:
        g = statistics.median(mm)
        lines.append("")
        lines.append(f"512x512x512 matmul through dlc's kernels: {g:.1f} GFLOP/s median ({min(mm):.1f}-{max(mm):.1f}),"
                     f" {100 * g / peak:.1f}% of the peak")
        targets.append(("512^3 matmul >= 80% of the one-core peak", g / peak, 0.8))
        plot.append(("512^3 matmul (dlc C)", None, None, {"dlc C": 100 * g / peak}))
    if targets:
        lines.append("")
        lines.append("dlc's performance targets (ratios of medians in this run; latency as the peer's time over dlc's):")
        for name, got, need in targets:
            lines.append(f"  {name:<58} {got:6.2f} (needs {need:g}) {'met' if got >= need else 'not met'}")
    return lines, plot


def header(meta, rows):
    peak_runs = rows.get(("-", "peak", "fma"), [float(meta.get("peak_gflops", "nan"))])
    floor = rows.get(("-", "call_floor", "ort"))
    out = [f"dlc bench, {meta.get('date', '?')}, dlc {meta.get('dlc', '?')}, {meta.get('reps', '?')} repetitions"
           " (median, min-max); one thread unless said",
           f"CPU: {meta.get('cpu_model', '?')}; vector ISA {meta.get('vector_isa', '?')}; peak FP32 FMA rate of one core"
           f" {max(peak_runs):.1f} GFLOP/s (fastest of {len(peak_runs)} runs, slowest {min(peak_runs):.1f})",
           f"PyTorch {meta.get('torch_version', '?')}, OpenBLAS kernel {meta.get('openblas_core', '?')};"
           f" ONNX Runtime {meta.get('ort_version', '?')} (Node"
           + (f"; a one-op call costs {statistics.median(floor):.1f} us)" if floor else ")"),
           f"load average (1, 5, 15 min) before {meta.get('load_before', '?')}, after {meta.get('load_after', '?')}",
           "times: CPU time of the process (training: dlc's threads between epoch lines); wall clock for threads"]
    return out, max(peak_runs)


def svg(plot, path, title):
    """Two panels: dlc's speed over each peer's (log2 axis) and % of peak."""
    row_h, top, left, pw, gap = 22, 60, 250, 330, 60
    height = top + row_h * len(plot) + 50
    width = left + pw + gap + pw + 30
    lo, hi = -3.0, 3.0  # log2 range: 1/8x to 8x
    x_ratio = lambda r: left + (min(max(math.log2(r), lo), hi) - lo) / (hi - lo) * pw
    x2 = left + pw + gap
    colors = {"PyTorch": "#4c72b0", "ONNX Runtime": "#dd8452", "dlc C": "#55a868", "dlc JIT": "#8172b3"}
    s = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
         f'<rect width="{width}" height="{height}" fill="white"/>',
         f'<text x="10" y="20" font-size="14" font-weight="bold">{escape(title)}</text>',
         f'<text x="{left}" y="44">dlc speed / peer speed (log scale; right of 1 = dlc faster)</text>',
         f'<text x="{x2}" y="44">% of the measured one-core peak (median)</text>']
    for k in range(int(lo), int(hi) + 1):
        x = x_ratio(2.0 ** k)
        s.append(f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{top + row_h * len(plot)}" '
                 f'stroke="{"#000" if k == 0 else "#ddd"}"/>')
        lab = f"{2 ** k:g}x" if k >= 0 else f"1/{2 ** -k:g}x"
        s.append(f'<text x="{x:.1f}" y="{top + row_h * len(plot) + 14}" text-anchor="middle">{lab}</text>')
    for k in range(0, 101, 25):
        x = x2 + k / 100 * pw
        s.append(f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{top + row_h * len(plot)}" stroke="#ddd"/>')
        s.append(f'<text x="{x:.1f}" y="{top + row_h * len(plot) + 14}" text-anchor="middle">{k}%</text>')
    for i, (label, rp, ro, pct) in enumerate(plot):
        y = top + i * row_h
        s.append(f'<text x="{left - 6}" y="{y + 15}" text-anchor="end">{escape(label)}</text>')
        x1 = x_ratio(1.0)
        for j, (r, name) in enumerate(((rp, "PyTorch"), (ro, "ONNX Runtime"))):
            if not r:
                continue
            xe = x_ratio(r)
            s.append(f'<rect x="{min(x1, xe):.1f}" y="{y + 2 + 9 * j}" width="{abs(xe - x1):.1f}" height="8" '
                     f'fill="{colors[name]}"><title>{escape(label)} vs {name}: {r:.2f}x</title></rect>')
            s.append(f'<text x="{xe + (3 if xe >= x1 else -3):.1f}" y="{y + 10 + 9 * j}" font-size="9" '
                     f'text-anchor="{"start" if xe >= x1 else "end"}">{r:.2f}</text>')
        n = max(len(pct), 1)
        for j, (name, p) in enumerate(pct.items()):
            h = 18 / n
            s.append(f'<rect x="{x2}" y="{y + 2 + h * j:.1f}" width="{min(p, 100) / 100 * pw:.1f}" height="{h - 1:.1f}" '
                     f'fill="{colors.get(name, "#999")}"><title>{escape(name)}: {p:.1f}% of peak</title></rect>')
    ly = top + row_h * len(plot) + 34
    for j, name in enumerate(colors):
        s.append(f'<rect x="{left + 150 * j}" y="{ly - 9}" width="10" height="10" fill="{colors[name]}"/>')
        s.append(f'<text x="{left + 150 * j + 14}" y="{ly}">{name}</text>')
    s.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(s) + "\n")


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    meta, rows = load(sys.argv[1])
    head, peak = header(meta, rows)
    body, plot = table(meta, rows, peak)
    print("\n".join(line.rstrip() for line in head + body))
    svg(plot, sys.argv[2], f"dlc against PyTorch and ONNX Runtime, one thread — {meta.get('cpu_model', '')},"
        f" {meta.get('date', '')}")
    print(f"\nplot: {sys.argv[2]}")


if __name__ == "__main__":
    main()
