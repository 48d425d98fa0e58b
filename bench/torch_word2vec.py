"""bench/torch_word2vec.py — samples/word2vec.dl in PyTorch.

Trains the same skip-gram model with negative sampling (two
nn.Embedding(2000, 64) tables, the input one uniform in ±0.01 and the
output one zeros; the loss -mean(log σ(v·u) + Σ log σ(-v·u_neg)); Adam,
lr 2e-3, batch 256) on the pairs samples/word2vec.py writes (DIR,
default out/word2vec), with 5% held out for validation by a permutation of
its own seed 1, for EPOCHS epochs (default 3), one thread.  Prints the
training loss (mean over the epoch's samples) and validation loss after
each epoch, samples per CPU second, and the nearest neighbours of the
probe words of samples/word2vec.py.

usage: /usr/bin/python3 bench/torch_word2vec.py [DIR] [EPOCHS]
"""
import os
import sys
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "samples"))
import word2vec  # noqa: E402  (the data script: vocabulary and probe words)

VOCAB, DIM, BATCH = 2000, 64, 256


class SkipGram(nn.Module):
    def __init__(self):
        super().__init__()
        self.in_embed = nn.Embedding(VOCAB, DIM)
        self.out_embed = nn.Embedding(VOCAB, DIM)
        nn.init.uniform_(self.in_embed.weight, -0.01, 0.01)
        nn.init.zeros_(self.out_embed.weight)

    def forward(self, center, context, negatives):
        v, u, un = self.in_embed(center), self.out_embed(context), self.out_embed(negatives)
        pos = F.logsigmoid((v * u).sum(1))
        neg = F.logsigmoid(-(un * v[:, None, :]).sum(2)).sum(1)
        return -(pos + neg).mean()


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "out/word2vec"
    epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    torch.set_num_threads(1)
    torch.manual_seed(1)
    data = [torch.from_numpy(np.load(os.path.join(out, f + ".npy"))) for f in ("center", "context", "negatives")]
    n = len(data[0])
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(1))
    nval = round(n * 0.05)
    val = [d[perm[:nval]] for d in data]
    train = [d[perm[nval:]] for d in data]
    model = SkipGram()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    cpu = 0.0
    for epoch in range(epochs):
        order = torch.randperm(len(train[0]))
        start = time.process_time()
        total = 0.0
        for i in range(0, len(order), BATCH):
            idx = order[i:i + BATCH]
            opt.zero_grad()
            loss = model(*(d[idx] for d in train))
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        cpu += time.process_time() - start
        with torch.no_grad():
            vloss = model(*val).item()
        print(f"epoch {epoch + 1} loss {total / len(order):.4f} val_loss {vloss:.4f}")
    print(f"train_samples_per_cpu_s {len(order) * epochs / cpu:.0f}")
    words = open(os.path.join(out, "vocab.txt")).read().split()
    e = model.in_embed.weight.detach().double().numpy()
    e /= np.linalg.norm(e, axis=1, keepdims=True) + 1e-12
    for w in word2vec.PROBES:
        i = words.index(w)
        sim = e @ e[i]
        best = [j for j in np.argsort(-sim) if j != i][:6]
        print(f"{w:>10}: " + ", ".join(f"{words[j]} {sim[j]:.2f}" for j in best))


if __name__ == "__main__":
    main()
