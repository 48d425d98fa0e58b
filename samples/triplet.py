"""Data and evaluation for samples/triplet.dl, a triplet-loss embedding.

    /usr/bin/python3 samples/triplet.py data [OUT]   # OUT defaults to out/triplets
    /usr/bin/python3 samples/triplet.py knn [OUT]

`data` reads Fashion-MNIST (/usr/share/datasets/fashion-mnist, or
$FASHION_MNIST) and writes, as f32 .npy in [0, 1] with rows of 784 pixels:
  anchor.npy, positive.npy, negative.npy  20000 triplets from the training
      set: 20000 different training images as anchors (in a shuffled order),
      for each a random other image of its class as the positive and a
      random image of another class as the negative;
  gallery_x.npy, gallery_y.npy  10000 training images and their labels,
      the references of the nearest-neighbour classifier;
  test_x.npy, test_y.npy  the 10000 test images and labels.
The choice is seeded (numpy's PCG64, seed 0), so the files are the same on
every run.

`knn` reads gallery_e.npy and test_e.npy (the embeddings `dlc run` writes,
see samples/triplet.sh) and prints the accuracy of the 1-nearest-neighbour
classifier (Euclidean distance) on the test set, next to the same
classifier on the raw pixels.  Needs only numpy (Debian python3-numpy).
"""
import gzip
import os
import sys

import numpy as np

TRIPLETS = 20000
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def idx(path):
    with gzip.open(path, "rb") as f:
        b = f.read()
    ndim = b[3]
    dims = [int.from_bytes(b[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(b, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(src, part):
    x = idx(os.path.join(src, f"{part}-images-idx3-ubyte.gz")).reshape(-1, 784).astype(np.float32) / 255
    y = idx(os.path.join(src, f"{part}-labels-idx1-ubyte.gz")).astype(np.int64)
    return x, y


def make_data(out):
    src = os.environ.get("FASHION_MNIST", "/usr/share/datasets/fashion-mnist")
    x, y = load(src, "train")
    tx, ty = load(src, "t10k")
    rng = np.random.default_rng(0)
    anchors = rng.permutation(len(x))[:TRIPLETS]
    by_class = [np.flatnonzero(y == c) for c in range(10)]
    pos = np.empty_like(anchors)
    neg = np.empty_like(anchors)
    for i, a in enumerate(anchors):
        same = by_class[y[a]]
        p = a
        while p == a:
            p = same[rng.integers(len(same))]
        other = (y[a] + 1 + rng.integers(9)) % 10
        pos[i], neg[i] = p, by_class[other][rng.integers(len(by_class[other]))]
    gallery = rng.choice(len(x), 10000, replace=False)
    os.makedirs(out, exist_ok=True)
    for name, arr in [("anchor", x[anchors]), ("positive", x[pos]), ("negative", x[neg]),
                      ("gallery_x", x[gallery]), ("gallery_y", y[gallery]), ("test_x", tx), ("test_y", ty)]:
        np.save(os.path.join(out, name + ".npy"), np.ascontiguousarray(arr))
    print(f"wrote {len(anchors)} triplets, a gallery of {len(gallery)} and {len(tx)} test images to {out}")


def nn_accuracy(gallery, gy, test, ty):
    g2 = (gallery.astype(np.float64) ** 2).sum(1)
    correct = 0
    for s in range(0, len(test), 1000):
        t = test[s:s + 1000].astype(np.float64)
        d = g2[None, :] - 2 * t @ gallery.T.astype(np.float64)  # |t|^2 is the same for every reference
        correct += int((gy[d.argmin(1)] == ty[s:s + 1000]).sum())
    return correct / len(test)


def knn(out):
    f = lambda name: np.load(os.path.join(out, name + ".npy"))
    gy, ty = f("gallery_y"), f("test_y")
    raw = nn_accuracy(f("gallery_x"), gy, f("test_x"), ty)
    emb = nn_accuracy(f("gallery_e"), gy, f("test_e"), ty)
    print(f"1-nearest-neighbour test accuracy: {100 * emb:.2f}% on the embeddings, "
          f"{100 * raw:.2f}% on the raw pixels ({len(ty)} test images, {len(gy)} references)")


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("data", "knn"):
        sys.exit(__doc__)
    where = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "out", "triplets")
    (make_data if sys.argv[1] == "data" else knn)(where)
