"""bench/torch_char_lstm_carry.py — `dlc train samples/char_lstm.dl
--carry-state` in PyTorch: the char LSTM of bench/torch_char_lstm.py
trained by truncated backpropagation through time with its state carried
from batch to batch, as PyTorch's word_language_model example does.

The text is cut into windows of 64 characters as dlc's text data does;
the last 10% of them (rounded) are the validation windows, the rest are
laid out as 32 rows of contiguous windows (batchify: row r of batch k is
window r * nb + k, nb = windows // 32, the rest dropped).  The state
(h, c) starts at zero each epoch and each batch starts from the one
before's final state, detached.  Adam, lr 2e-3, EPOCHS epochs, one thread.
Validation: the held-out windows as min(32, n) rows the same way, the
state carried, the mean loss over the windows used.  Prints the
validation bits per character after each epoch and characters per CPU
second of training.

usage: python3 bench/torch_char_lstm_carry.py CORPUS EPOCHS
"""
import math
import sys
import time

import numpy as np
import torch
from torch import nn

SEQ, ROWS, EMBED, HIDDEN = 64, 32, 32, 128


class CharLSTM(nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.embed = nn.Embedding(vocab, EMBED)
        self.lstm = nn.LSTM(EMBED, HIDDEN, batch_first=True)
        self.head = nn.Linear(HIDDEN, vocab)

    def forward(self, tokens, state):
        hs, state = self.lstm(self.embed(tokens), state)
        return self.head(hs.reshape(-1, HIDDEN)), state


def batches(x, y, rows):
    nb = len(x) // rows
    for k in range(nb):
        idx = [r * nb + k for r in range(rows)]
        yield x[idx], y[idx]


def zeros(rows):
    return (torch.zeros(1, rows, HIDDEN), torch.zeros(1, rows, HIDDEN))


def main():
    corpus, epochs = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(1)
    torch.manual_seed(1)
    data = np.frombuffer(open(corpus, "rb").read(), dtype=np.uint8)
    vocab = np.unique(data)
    ids = np.searchsorted(vocab, data).astype(np.int64)
    n = (len(ids) - 1) // SEQ
    x = torch.from_numpy(ids[:n * SEQ].reshape(n, SEQ))
    y = torch.from_numpy(ids[1:n * SEQ + 1].reshape(n, SEQ))
    nval = round(n * 0.1)
    xt, yt, xv, yv = x[:n - nval], y[:n - nval], x[n - nval:], y[n - nval:]
    model = CharLSTM(len(vocab))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = nn.CrossEntropyLoss()
    cpu, chars = 0.0, 0
    for epoch in range(epochs):
        start = time.process_time()
        state = zeros(ROWS)
        for bx, by in batches(xt, yt, ROWS):
            state = tuple(s.detach() for s in state)
            opt.zero_grad()
            logits, state = model(bx, state)
            loss = loss_fn(logits, by.reshape(-1))
            loss.backward()
            opt.step()
            chars += bx.numel()
        cpu += time.process_time() - start
        model.eval()
        rows = min(ROWS, len(xv))
        total, count, state = 0.0, 0, zeros(rows)
        with torch.no_grad():
            for bx, by in batches(xv, yv, rows):
                logits, state = model(bx, state)
                total += loss_fn(logits, by.reshape(-1)).item() * rows
                count += rows
        model.train()
        val = total / count
        print(f"epoch {epoch + 1} val_loss {val:.4f} val_bpc {val / math.log(2):.4f}")
    print(f"train_chars_per_cpu_s {chars / cpu:.0f}")
    print(f"val_bpc {val / math.log(2):.4f}")


if __name__ == "__main__":
    main()
