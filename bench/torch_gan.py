"""bench/torch_gan.py — the GAN of samples/gan.dl in PyTorch, trained the
same way: batches of 64 in a shuffled order, each batch one optimizer
step, the steps alternating discriminator and generator (the generator's
step draws its own noise and reads no real images), Adam(2e-4, betas
(0.5, 0.999)) for both, torch.nn's default initialisation.  Prints each
epoch's mean discriminator and generator loss, the figures dlc train
prints for samples/gan.dl (the numbers differ by the random streams, not
by the method).

usage: python3 bench/torch_gan.py DATA_DIR EPOCHS
"""
import gzip
import sys
import time

import numpy as np
import torch
from torch import nn
from torch.nn.functional import logsigmoid


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    rank = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(rank)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank).reshape(dims)


def main():
    data_dir, epochs = sys.argv[1], int(sys.argv[2])
    torch.manual_seed(1)
    x = torch.from_numpy(idx(f"{data_dir}/train-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / 255)
    lrelu = nn.LeakyReLU(0.2)
    gen = nn.Sequential(nn.Linear(64, 256), lrelu, nn.Linear(256, 512), lrelu, nn.Linear(512, 784), nn.Sigmoid())
    disc = nn.Sequential(nn.Linear(784, 512), lrelu, nn.Linear(512, 256), lrelu, nn.Linear(256, 1))
    opt_d = torch.optim.Adam(disc.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(gen.parameters(), lr=2e-4, betas=(0.5, 0.999))
    n, batch = x.shape[0], 64
    for epoch in range(epochs):
        start, sums, counts = time.time(), [0.0, 0.0], [0, 0]
        order = torch.randperm(n)
        for i, at in enumerate(range(0, n, batch)):
            real = x[order[at:at + batch]]
            z = torch.randn(real.shape[0], 64)
            if i % 2 == 0:
                loss = -logsigmoid(disc(real)).mean() - logsigmoid(-disc(gen(z).detach())).mean()
                opt = opt_d
            else:
                loss = -logsigmoid(disc(gen(z))).mean()
                opt = opt_g
            opt.zero_grad()
            loss.backward()
            opt.step()
            sums[i % 2] += loss.item() * real.shape[0]
            counts[i % 2] += real.shape[0]
        print(f"epoch {epoch + 1}/{epochs}: discriminator loss {sums[0] / counts[0]:.4f}, "
              f"generator loss {sums[1] / counts[1]:.4f}, {time.time() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main()
