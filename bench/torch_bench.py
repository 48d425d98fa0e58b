"""bench/torch_bench.py — the PyTorch side of bench/run.sh, for samples/mlp.dl
and samples/lenet5.dl.

Builds the network of the sample in PyTorch (the same layers, loss,
optimizer, learning rate and batch as its train section; PyTorch's own
initialisation), then

  train  REPS epochs over the examples X.npy / Y.npy (float32 [n, 784],
         int64 [n]) at batch BATCH, shuffled each epoch; each epoch's
         samples per second of process CPU time (as bench/cpu_epochs.py
         measures dlc train) and of wall time, after a warm-up of a few
         steps that is not counted;
  infer  in eval mode without autograd, for each batch size in BATCHES:
         REPS repetitions of at least 0.1 s of process CPU time each, the
         mean time per call in microseconds (as bench/infer_time.c does).

Prints "key value..." lines for run.sh, first which BLAS kernel OpenBLAS
chose (openblas_get_corename through ctypes, from the library the
process has loaded):

  openblas_core SkylakeX
  cpu_samples_per_s 41230.5 40987.2 ...
  wall_samples_per_s 40230.5 39987.2 ...
  infer_us_per_call 1 25.1 24.9 ...          (batch, then REPS values)

usage: python3 bench/torch_bench.py mlp|lenet5 X.npy Y.npy REPS BATCH BATCHES
       (BATCHES comma-separated, e.g. 1,64,256; THREADS from torch's
       default: run.sh sets it to one with OMP/OPENBLAS_NUM_THREADS=1)
"""
import ctypes
import sys
import time

import numpy as np
import torch
from torch import nn


def network(name):
    if name == "mlp":  # samples/mlp.dl
        net = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
        return net, (784,), lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)
    if name == "lenet5":  # samples/lenet5.dl
        net = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
        return net, (1, 28, 28), lambda p: torch.optim.Adam(p, lr=2e-3)
    raise SystemExit(f"torch_bench: unknown model {name!r} (mlp or lenet5)")


def openblas_core():
    """The kernel OpenBLAS chose, from the libopenblas this process loaded."""
    torch.ones(64, 64) @ torch.ones(64, 64)  # make sure the BLAS is loaded
    with open("/proc/self/maps") as f:
        paths = {line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line}
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            return lib.openblas_get_corename().decode()
        except (OSError, AttributeError):
            continue
    return "none (PyTorch did not load OpenBLAS)"


def train(net, make_opt, x, y, reps, batch):
    opt = make_opt(net.parameters())
    loss_fn = nn.CrossEntropyLoss()
    n = x.shape[0] - x.shape[0] % batch  # whole batches, as dlc train takes them

    def step(b):
        opt.zero_grad()
        loss = loss_fn(net(x[b]), y[b])
        loss.backward()
        opt.step()

    for i in range(5):  # warm-up
        step(torch.arange(i * batch, (i + 1) * batch))
    cpu, wall = [], []
    for _ in range(reps):
        c0, w0 = time.process_time(), time.perf_counter()
        perm = torch.randperm(x.shape[0])
        for i in range(0, n, batch):
            step(perm[i:i + batch])
        cpu.append(n / (time.process_time() - c0))
        wall.append(n / (time.perf_counter() - w0))
    return cpu, wall


def infer(net, x, batch, reps):
    net.eval()
    xb = x[:batch]
    with torch.no_grad():
        t0 = time.process_time()
        while time.process_time() - t0 < 0.05:
            net(xb)
        out = []
        for _ in range(reps):
            t0 = time.process_time()
            calls = 0
            while True:
                net(xb)
                calls += 1
                t = time.process_time() - t0
                if t >= 0.1:
                    break
            out.append(1e6 * t / calls)
    return out


def main():
    if len(sys.argv) != 7:
        raise SystemExit(__doc__)
    name, xpath, ypath = sys.argv[1:4]
    reps, batch = int(sys.argv[4]), int(sys.argv[5])
    batches = [int(b) for b in sys.argv[6].split(",")]
    torch.manual_seed(0)
    net, dims, make_opt = network(name)
    x = torch.from_numpy(np.load(xpath).astype(np.float32)).reshape(-1, *dims)
    y = torch.from_numpy(np.load(ypath).astype(np.int64))
    print("openblas_core", openblas_core())
    print("torch_version", torch.__version__)
    cpu, wall = train(net, make_opt, x, y, reps, batch)
    print("cpu_samples_per_s", " ".join(f"{r:.1f}" for r in cpu))
    print("wall_samples_per_s", " ".join(f"{r:.1f}" for r in wall))
    for b in batches:
        print("infer_us_per_call", b, " ".join(f"{t:.3f}" for t in infer(net, x, b, reps)))


if __name__ == "__main__":
    main()
