"""bench/torch_text_cnn.py — samples/text_cnn.dl in PyTorch.

Trains the same text CNN (nn.Embedding(4000, 64, padding_idx=0); three
nn.Conv1d(64, 100, k) for k = 3, 4, 5 over the words; ReLU and the maximum
over time of each; dropout 0.5; nn.Linear(300, 4); cross-entropy, Adam,
lr 1e-3, batch 32) on the files samples/text_classify.py writes (DIR,
default out/text_classify), with 10% of the training quotes held out for
validation by a permutation of its own seed 1, for EPOCHS epochs (default
8), one thread.  Prints the training loss and validation accuracy after
each epoch, quotes per CPU second, and the accuracy on the test quotes,
the figure samples/text_cnn.sh prints for dlc.

usage: /usr/bin/python3 bench/torch_text_cnn.py [DIR] [EPOCHS]
"""
import os
import sys
import time

import numpy as np
import torch
from torch import nn

VOCAB, EMBED, FILTERS, WIDTHS, CLASSES, BATCH = 4000, 64, 100, (3, 4, 5), 4, 32


class TextCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, EMBED, padding_idx=0)
        self.convs = nn.ModuleList(nn.Conv1d(EMBED, FILTERS, k) for k in WIDTHS)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(FILTERS * len(WIDTHS), CLASSES)

    def forward(self, tokens):
        x = self.embed(tokens).transpose(1, 2)
        pooled = torch.cat([torch.relu(c(x)).amax(2) for c in self.convs], 1)
        return self.head(self.drop(pooled))


def load(out, part):
    return [torch.from_numpy(np.load(os.path.join(out, f"{part}_{k}.npy"))) for k in ("x", "y")]


def accuracy(model, x, y):
    model.eval()
    with torch.no_grad():
        pred = model(x).argmax(1)
    model.train()
    return (pred == y).float().mean().item()


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "out/text_classify"
    epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    torch.set_num_threads(1)
    torch.manual_seed(1)
    data, test = load(out, "train"), load(out, "test")
    perm = torch.randperm(len(data[0]), generator=torch.Generator().manual_seed(1))
    nval = round(len(data[0]) * 0.1)
    val = [d[perm[:nval]] for d in data]
    train = [d[perm[nval:]] for d in data]
    model = TextCNN()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    cpu = 0.0
    for epoch in range(epochs):
        order = torch.randperm(len(train[0]))
        start = time.process_time()
        total = 0.0
        for i in range(0, len(order), BATCH):
            x, y = (d[order[i:i + BATCH]] for d in train)
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            total += loss.item() * len(y)
        cpu += time.process_time() - start
        print(f"epoch {epoch + 1} loss {total / len(order):.4f} val_acc {accuracy(model, *val):.4f}")
    print(f"train_quotes_per_cpu_s {len(order) * epochs / cpu:.1f}")
    print(f"test_accuracy {accuracy(model, *test):.4f}")


if __name__ == "__main__":
    main()
