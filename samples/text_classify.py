"""Data and evaluation for samples/text_classify.dl: which fortunes file a
quote comes from.

    /usr/bin/python3 samples/text_classify.py data [OUT]          # OUT defaults to out/text_classify
    /usr/bin/python3 samples/text_classify.py accuracy LOGITS.npy [OUT]

`data` reads four files of Debian's fortunes of about the same size
(CLASSES below, from /usr/share/games/fortunes or $FORTUNES), splits each
into its quotes and each quote into lower-case words and punctuation
marks, and holds out a fifth of every file's quotes (chosen by numpy's
PCG64 with seed 0) as the test set.  The vocabulary is VOCAB = 4000 ids: two
reserved ones (0 pads, 1 stands for any other word), then the most
frequent words of the training quotes (ties alphabetically).  Each quote becomes its first T = 64 ids, padded with 0 at the end.
It writes, in OUT:
  vocab.txt                 one word a line, line i being id i;
  train_x.npy, test_x.npy   i64[n, 64] token ids;
  train_mask.npy, test_mask.npy  f32[n, 64]: 1 at a word, 0 at padding
                            (the attention mask a tokenizer gives);
  train_y.npy, test_y.npy   i64[n]: the file's index in CLASSES.
The training quotes are shuffled (same generator), so every batch mixes
the classes.

`accuracy` reads the logits `dlc run` writes for test_x.npy (f32[n, 4])
and prints the accuracy of their argmax against test_y.npy, and per class.
"""
import os
import re
import sys

import numpy as np

CLASSES = ["men-women", "work", "politics", "science"]
T, VOCAB, TEST_FRACTION, PAD, UNK = 64, 4000, 0.2, 0, 1


def quotes(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return [q for q in (re.findall(r"[a-z0-9']+|[^\sa-z0-9']", q.lower()) for q in f.read().split("\n%\n")) if q]


def vocabulary(train):
    counts = {}
    for q in train:
        for w in q:
            counts[w] = counts.get(w, 0) + 1
    words = sorted(counts, key=lambda w: (-counts[w], w))
    if len(words) < VOCAB - 2:
        sys.exit(f"only {len(words)} distinct words in the training quotes; the model needs {VOCAB - 2}")
    return ["<pad>", "<unk>"] + words[:VOCAB - 2]


def encode(qs, index):
    x = np.full((len(qs), T), PAD, dtype=np.int64)
    for i, q in enumerate(qs):
        ids = [index.get(w, UNK) for w in q[:T]]
        x[i, :len(ids)] = ids
    return x


def make_data(out):
    root = os.environ.get("FORTUNES", "/usr/share/games/fortunes")
    rng = np.random.default_rng(0)
    split = {"train": ([], []), "test": ([], [])}
    for c, name in enumerate(CLASSES):
        qs = quotes(os.path.join(root, name))
        order = rng.permutation(len(qs))
        ntest = round(len(qs) * TEST_FRACTION)
        for part, idx in [("test", order[:ntest]), ("train", order[ntest:])]:
            split[part][0].extend(qs[i] for i in idx)
            split[part][1].extend([c] * len(idx))
    shuffle = rng.permutation(len(split["train"][0]))
    split["train"] = ([split["train"][0][i] for i in shuffle], [split["train"][1][i] for i in shuffle])
    words = vocabulary(split["train"][0])
    index = {w: i for i, w in enumerate(words)}
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "vocab.txt"), "w") as f:
        f.write("\n".join(words) + "\n")
    for part, (qs, ys) in split.items():
        x = encode(qs, index)
        np.save(os.path.join(out, part + "_x.npy"), x)
        np.save(os.path.join(out, part + "_mask.npy"), (x != PAD).astype(np.float32))
        np.save(os.path.join(out, part + "_y.npy"), np.array(ys, dtype=np.int64))
    lengths = [len(q) for q in split["train"][0]]
    print(f"{len(split['train'][0])} training and {len(split['test'][0])} test quotes from {', '.join(CLASSES)}; "
          f"vocabulary {len(words)}; {sum(n > T for n in lengths)} training quotes cut to {T} tokens; wrote {out}")


def accuracy(logits_path, out):
    logits = np.load(logits_path)
    y = np.load(os.path.join(out, "test_y.npy"))
    pred = logits.argmax(1)
    print(f"test accuracy {(pred == y).mean():.4f} ({int((pred == y).sum())} of {len(y)} quotes)")
    for c, name in enumerate(CLASSES):
        print(f"  {name}: {(pred[y == c] == c).mean():.4f} of {int((y == c).sum())}")


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "data":
        make_data(sys.argv[2] if len(sys.argv) > 2 else "out/text_classify")
    elif len(sys.argv) >= 3 and sys.argv[1] == "accuracy":
        accuracy(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "out/text_classify")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
