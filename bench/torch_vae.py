"""bench/torch_vae.py — the VAE of samples/vae.dl in PyTorch, trained the
same way: encoder 784-400 (ReLU) to a 20-dimensional mean and
log-variance, z = mu + exp(logvar / 2) * eps, decoder 20-400 (ReLU)-784
logits; loss the negative ELBO per image in nats (binary cross-entropy
with logits summed over pixels, plus the KL divergence from N(0, I)),
averaged over the batch; Adam(1e-3), batches of 128 in a shuffled order,
torch.nn's default initialisation, one thread.  Prints each epoch's mean
training loss and, at the end, the test set's negative ELBO per image
(one draw of z per image, as dlc's eval step), the figures `dlc train
samples/vae.dl` prints (they differ by the random streams, not by the
method).

usage: OPENBLAS_NUM_THREADS=1 python3 bench/torch_vae.py DATA_DIR EPOCHS
"""
import gzip
import sys
import time

import numpy as np
import torch
from torch import nn
from torch.nn.functional import binary_cross_entropy_with_logits


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    rank = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(rank)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank).reshape(dims)


def images(path):
    return torch.from_numpy(idx(path).reshape(-1, 784).astype(np.float32) / 255)


class Vae(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc, self.mu, self.logvar = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20)
        self.dec1, self.dec2 = nn.Linear(20, 400), nn.Linear(400, 784)

    def forward(self, x):
        h = torch.relu(self.enc(x))
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return self.dec2(torch.relu(self.dec1(z))), mu, logvar


def neg_elbo(model, x):
    """The negative ELBO of each image of x, in nats."""
    logits, mu, logvar = model(x)
    rec = binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1)
    kl = -0.5 * (1 + logvar - mu * mu - torch.exp(logvar)).sum(1)
    return rec + kl


def main():
    data_dir, epochs = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(1)
    torch.manual_seed(1)
    x = images(f"{data_dir}/train-images-idx3-ubyte.gz")
    test = images(f"{data_dir}/t10k-images-idx3-ubyte.gz")
    model = Vae()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    n, batch = x.shape[0], 128
    for epoch in range(epochs):
        start, total = time.process_time(), 0.0
        order = torch.randperm(n)
        for at in range(0, n, batch):
            real = x[order[at:at + batch]]
            loss = neg_elbo(model, real).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * real.shape[0]
        print(f"epoch {epoch + 1}/{epochs}: loss {total / n:.4f}, {time.process_time() - start:.1f} s CPU", flush=True)
    with torch.no_grad():
        loss = sum(neg_elbo(model, test[at:at + batch]).sum().item() for at in range(0, test.shape[0], batch))
    print(f"test: negative ELBO {loss / test.shape[0]:.4f} nats per image ({test.shape[0]} images)")


if __name__ == "__main__":
    main()
