"""bench/torch_char_lstm.py — the PyTorch side of bench/char_lstm.sh.

Trains the model of samples/char_lstm.dl (nn.Embedding(93, 32), a
one-layer nn.LSTM of 128 units, batch first, nn.Linear(256, 93); Adam,
lr 2e-3, batch 32) on the same windows dlc's text data makes of CORPUS
(the file's distinct bytes in increasing order as ids; non-overlapping
windows of 64 characters, each predicting the next character at every
position; 10% of the windows held out for validation, by a permutation
of its own seed), for EPOCHS epochs, and times it.  Prints one
"key value" line per figure: characters per second of training, the
validation loss (nats per character) and bits per character after each
epoch; characters per CPU second too (the machine may be shared).

usage: python3 bench/torch_char_lstm.py CORPUS EPOCHS THREADS
"""
import math
import sys
import time

import numpy as np
import torch
from torch import nn

SEQ, BATCH, EMBED, HIDDEN = 64, 32, 32, 128


def windows(path):
    data = np.frombuffer(open(path, "rb").read(), dtype=np.uint8)
    vocab = np.unique(data)
    ids = np.searchsorted(vocab, data).astype(np.int64)
    n = (len(ids) - 1) // SEQ
    x = ids[:n * SEQ].reshape(n, SEQ)
    y = ids[1:n * SEQ + 1].reshape(n, SEQ)
    return torch.from_numpy(x), torch.from_numpy(y), len(vocab)


class CharLSTM(nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.embed = nn.Embedding(vocab, EMBED)
        self.lstm = nn.LSTM(EMBED, HIDDEN, batch_first=True)
        self.head = nn.Linear(HIDDEN, vocab)

    def forward(self, tokens):
        hs, _ = self.lstm(self.embed(tokens))
        return self.head(hs.reshape(-1, HIDDEN))


def evaluate(model, loss_fn, x, y):
    model.eval()
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(x), 256):
            total += loss_fn(model(x[i:i + 256]), y[i:i + 256].reshape(-1)).item() * len(x[i:i + 256])
    model.train()
    return total / len(x)


def main():
    corpus, epochs, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    x, y, vocab = windows(corpus)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(1))
    nval = round(len(x) * 0.1)
    xv, yv, xt, yt = x[perm[:nval]], y[perm[:nval]], x[perm[nval:]], y[perm[nval:]]
    model = CharLSTM(vocab)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = nn.CrossEntropyLoss()
    print(f"vocab {vocab}")
    print(f"windows {len(xt)} train {len(xv)} val")
    seconds = cpu = 0.0
    for epoch in range(epochs):
        order = torch.randperm(len(xt))
        start, start_cpu = time.perf_counter(), time.process_time()
        for i in range(0, len(xt), BATCH):
            idx = order[i:i + BATCH]
            opt.zero_grad()
            loss = loss_fn(model(xt[idx]), yt[idx].reshape(-1))
            loss.backward()
            opt.step()
        seconds += time.perf_counter() - start
        cpu += time.process_time() - start_cpu
        val = evaluate(model, loss_fn, xv, yv)
        print(f"epoch {epoch + 1} val_loss {val:.4f} val_bpc {val / math.log(2):.4f}")
    print(f"train_chars_per_s {len(xt) * SEQ * epochs / seconds:.0f}")
    print(f"train_chars_per_cpu_s {len(xt) * SEQ * epochs / cpu:.0f}")
    print(f"val_bpc {val / math.log(2):.4f}")


if __name__ == "__main__":
    main()
