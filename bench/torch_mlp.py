"""bench/torch_mlp.py — samples/mlp.dl trained in PyTorch on all of Fashion-MNIST.

Trains the network of samples/mlp.dl (784-256-128-10, ReLU, SGD with
momentum 0.9, lr 0.1 with cosine annealing over 10 epochs, batch 64,
seed 42) for EPOCHS epochs on Fashion-MNIST and times it, then times
inference of the same network at batch 1 and batch 64, and prints the
test accuracy.  Prints one "key value" line per figure.  (bench/run.sh
measures with bench/torch_bench.py, on the data dlc is timed on.)

usage: python3 bench/torch_mlp.py DATA_DIR EPOCHS THREADS
"""
import gzip
import sys
import time

import numpy as np
import torch
from torch import nn


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    rank = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(rank)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank).reshape(dims)


def main():
    data_dir, epochs, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(threads)
    torch.manual_seed(42)
    x = torch.from_numpy(idx(f"{data_dir}/train-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / 255)
    y = torch.from_numpy(idx(f"{data_dir}/train-labels-idx1-ubyte.gz").astype(np.int64))
    xt = torch.from_numpy(idx(f"{data_dir}/t10k-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / 255)
    yt = torch.from_numpy(idx(f"{data_dir}/t10k-labels-idx1-ubyte.gz").astype(np.int64))
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    loss_fn = nn.CrossEntropyLoss()
    n = x.shape[0]
    start = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(n)
        for i in range(0, n, 64):
            b = perm[i:i + 64]
            opt.zero_grad()
            loss = loss_fn(model(x[b]), y[b])
            loss.backward()
            opt.step()
        sched.step()
    train_s = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        acc = (model(xt).argmax(1) == yt).float().mean().item()
        one = xt[:1]
        for _ in range(200):
            model(one)
        reps = 2000
        t0 = time.perf_counter()
        for _ in range(reps):
            model(one)
        lat1 = (time.perf_counter() - t0) / reps
        batch = xt[:64]
        t0 = time.perf_counter()
        for _ in range(500):
            model(batch)
        lat64 = (time.perf_counter() - t0) / 500
    print(f"train_samples_per_s {epochs * n / train_s:.1f}")
    print(f"test_accuracy {acc:.4f}")
    print(f"latency_b1_us {lat1 * 1e6:.2f}")
    print(f"throughput_b64_per_s {64 / lat64:.1f}")


if __name__ == "__main__":
    main()
