"""bench/torch_seq2seq_attention.py — samples/seq2seq_attention.dl in PyTorch.

Trains the same encoder-decoder (nn.Embedding(75, 64, padding_idx=0), a
bidirectional nn.GRU of 64 units; a dense bridge from both final states
to the decoder's initial state; nn.Embedding(13, 32) and an nn.GRU of
128 units as the decoder; Luong "general" attention over the encoder's
outputs with padding masked by -1e9; nn.Linear(256, 128) + tanh and
nn.Linear(128, 13); cross-entropy with teacher forcing, Adam, lr 3e-3,
batch 64) on the files samples/seq2seq_attention.py writes (DIR, default
out/seq2seq), 5% of the training sentences held out for validation by a
permutation of its own seed 1, for EPOCHS epochs (default 4), one thread.
Then decodes the test sentences greedily as that script's `decode` does
(ten passes of the whole model, each feeding back the characters
predicted so far) and prints the exact-match and character accuracy.

usage: /usr/bin/python3 bench/torch_seq2seq_attention.py [DIR] [EPOCHS]
"""
import os
import sys
import time

import numpy as np
import torch
from torch import nn

S, T, BATCH = 12, 10, 64


class Seq2Seq(nn.Module):
    def __init__(self):
        super().__init__()
        self.src_embed = nn.Embedding(75, 64, padding_idx=0)
        self.encoder = nn.GRU(64, 64, batch_first=True, bidirectional=True)
        self.bridge = nn.Linear(128, 128)
        self.tgt_embed = nn.Embedding(13, 32)
        self.decoder = nn.GRU(32, 128, batch_first=True)
        self.attn_query = nn.Linear(128, 128, bias=False)
        self.combine = nn.Linear(256, 128)
        self.classifier = nn.Linear(128, 13)

    def forward(self, src, src_pad, dec_in):
        enc, enc_h = self.encoder(self.src_embed(src))
        h0 = torch.tanh(self.bridge(enc_h.transpose(0, 1).reshape(-1, 128)))
        dec, _ = self.decoder(self.tgt_embed(dec_in), h0[None])
        scores = self.attn_query(dec) @ enc.transpose(1, 2) + src_pad[:, None, :] * -1e9
        attn = torch.softmax(scores, dim=2)
        hid = torch.tanh(self.combine(torch.cat([dec, attn @ enc], dim=2)))
        return self.classifier(hid)


def load(out, part):
    return [torch.from_numpy(np.load(os.path.join(out, f"{part}_{k}.npy"))) for k in ("src", "src_pad", "dec_in", "tgt")]


def greedy(model, src, src_pad):
    dec_in = torch.zeros(len(src), T, dtype=torch.int64)
    dec_in[:, 0] = 1
    pred = torch.zeros_like(dec_in)
    with torch.no_grad():
        for t in range(T):
            pred[:, t] = model(src, src_pad, dec_in)[:, t].argmax(-1)
            if t + 1 < T:
                dec_in[:, t + 1] = pred[:, t]
    return pred


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "out/seq2seq"
    epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    torch.set_num_threads(1)
    torch.manual_seed(1)
    data, test = load(out, "train"), load(out, "test")
    perm = torch.randperm(len(data[0]), generator=torch.Generator().manual_seed(1))
    nval = round(len(data[0]) * 0.05)
    val = [d[perm[:nval]] for d in data]
    train = [d[perm[nval:]] for d in data]
    model = Seq2Seq()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.CrossEntropyLoss()
    cpu = 0.0
    for epoch in range(epochs):
        order = torch.randperm(len(train[0]))
        start = time.process_time()
        total = 0.0
        for i in range(0, len(order), BATCH):
            src, pad, dec_in, tgt = (d[order[i:i + BATCH]] for d in train)
            opt.zero_grad()
            loss = loss_fn(model(src, pad, dec_in).transpose(1, 2), tgt)
            loss.backward()
            opt.step()
            total += loss.item() * len(tgt)
        cpu += time.process_time() - start
        with torch.no_grad():
            vloss = loss_fn(model(*val[:3]).transpose(1, 2), val[3]).item()
        print(f"epoch {epoch + 1} loss {total / len(order):.4f} val_loss {vloss:.4f}")
    print(f"train_sentences_per_cpu_s {len(order) * epochs / cpu:.1f}")
    pred = greedy(model, test[0], test[1])
    exact = (pred == test[3]).all(1)
    print(f"greedy_exact_match {exact.float().mean().item():.4f} ({int(exact.sum())} of {len(exact)})")
    print(f"greedy_char_accuracy {(pred == test[3]).float().mean().item():.4f}")


if __name__ == "__main__":
    main()
