"""bench/torch_triplet.py — the triplet-loss embedding of samples/triplet.dl
in PyTorch, trained the same way on the same triplets: one network
784-256 (ReLU)-64, unit-length embeddings (e / sqrt(|e|^2 + 1e-6)) of the
anchor, positive and negative, loss mean(max(|a - p|^2 - |a - n|^2 + 0.2,
0)), Adam(1e-3), batches of 64 in a shuffled order, 5 epochs, weights
with torch.nn's default initialisation and zero biases (as the model's
`= default` and `= zeros`), one thread.  Then it embeds the gallery and the
test set and prints the 1-nearest-neighbour test accuracy the way
`samples/triplet.py knn` does for dlc's embeddings.

usage: /usr/bin/python3 bench/torch_triplet.py [OUT]
       (OUT: the files of `samples/triplet.py data`, default out/triplets)
"""
import os
import sys

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "samples"))
import triplet  # noqa: E402  (samples/triplet.py: the data and the classifier)


class Embed(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(784, 256), nn.Linear(256, 64)
        nn.init.zeros_(self.fc1.bias)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x):
        e = self.fc2(torch.relu(self.fc1(x)))
        return e / torch.sqrt((e * e).sum(1, keepdim=True) + 1e-6)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(triplet.ROOT, "out", "triplets")
    f = lambda name: np.load(os.path.join(out, name + ".npy"))
    torch.set_num_threads(1)
    torch.manual_seed(1)
    a, p, n = (torch.from_numpy(f(k)) for k in ("anchor", "positive", "negative"))
    model = Embed()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(5):
        order, total, steps = torch.randperm(len(a)), 0.0, 0
        for s in range(0, len(a), 64):
            i = order[s:s + 64]
            ea, ep, en = model(a[i]), model(p[i]), model(n[i])
            dp, dn = ((ea - ep) ** 2).sum(1), ((ea - en) ** 2).sum(1)
            loss = torch.relu(dp - dn + 0.2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, steps = total + loss.item(), steps + 1
        print(f"epoch {epoch + 1}: loss {total / steps:.4f}")
    with torch.no_grad():
        ge, te = (model(torch.from_numpy(f(k))).numpy() for k in ("gallery_x", "test_x"))
    gy, ty = f("gallery_y"), f("test_y")
    print(f"1-nearest-neighbour test accuracy: {100 * triplet.nn_accuracy(ge, gy, te, ty):.2f}% on the embeddings, "
          f"{100 * triplet.nn_accuracy(f('gallery_x'), gy, f('test_x'), ty):.2f}% on the raw pixels")


if __name__ == "__main__":
    main()
