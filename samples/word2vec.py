"""Data and evaluation for samples/word2vec.dl, skip-gram with negative sampling.

    /usr/bin/python3 samples/word2vec.py data [OUT]              # OUT defaults to out/word2vec
    /usr/bin/python3 samples/word2vec.py neighbours CHECKPOINT [OUT] [WORD...]

`data` reads the quotes of Debian's fortunes (every plain file of
/usr/share/games/fortunes, or $FORTUNES, in name order, except the
ASCII-art ones), splits them into lower-case words (letters and
apostrophes), keeps the VOCAB most frequent words as the vocabulary (ties
broken alphabetically) and writes, in OUT:
  vocab.txt      one word a line, line i being word id i;
  center.npy     i64[n]: the centre word of each (centre, context) pair;
  context.npy    i64[n]: a word at most WINDOW positions away in the same
                 quote (both in the vocabulary; out-of-vocabulary words are
                 dropped before pairing, as word2vec does);
  negatives.npy  i64[n, NEG]: words drawn from the unigram distribution
                 raised to the power 3/4, the noise distribution of
                 Mikolov et al. (2013).
Frequent words are subsampled first (a word of frequency f is kept with
probability min(1, sqrt(T / f) + T / f), T = 1e-3), and the pairs are
shuffled and cut to PAIRS.  Every draw comes from numpy's PCG64 with seed
0, so the files are the same on every run.

`neighbours` reads the input embedding (`in_embed.weight`) from a
safetensors checkpoint, parsed here with struct and json (no torch
needed), and prints the nearest words by cosine similarity of a few
frequent words (or of the WORDs given).
"""
import json
import os
import re
import struct
import sys

import numpy as np

VOCAB, WINDOW, NEG, PAIRS, SUBSAMPLE = 2000, 2, 5, 1000000, 1e-3
PROBES = ["man", "love", "god", "computer", "money", "war", "good", "time", "never", "think"]


def quotes(root):
    names = sorted(f for f in os.listdir(root) if "." not in f and f not in ("art", "ascii-art"))
    for name in names:
        with open(os.path.join(root, name), encoding="utf-8", errors="replace") as f:
            for q in f.read().split("\n%\n"):
                words = re.findall(r"[a-z][a-z']*", q.lower())
                if words:
                    yield words


def vocabulary(qs):
    counts = {}
    for q in qs:
        for w in q:
            counts[w] = counts.get(w, 0) + 1
    words = sorted(counts, key=lambda w: (-counts[w], w))[:VOCAB]
    return words, np.array([counts[w] for w in words], dtype=np.float64)


def pairs(qs, index, freq, rng):
    keep = np.minimum(1.0, np.sqrt(SUBSAMPLE / freq) + SUBSAMPLE / freq)
    centers, contexts = [], []
    for q in qs:
        ids = np.array([index[w] for w in q if w in index], dtype=np.int64)
        ids = ids[rng.random(len(ids)) < keep[ids]]
        for d in range(1, WINDOW + 1):
            centers += [ids[d:], ids[:-d]]
            contexts += [ids[:-d], ids[d:]]
    return np.concatenate(centers), np.concatenate(contexts)


def make_data(out):
    root = os.environ.get("FORTUNES", "/usr/share/games/fortunes")
    qs = list(quotes(root))
    words, counts = vocabulary(qs)
    index = {w: i for i, w in enumerate(words)}
    rng = np.random.default_rng(0)
    c, x = pairs(qs, index, counts / counts.sum(), rng)
    order = rng.permutation(len(c))[:PAIRS]
    c, x = c[order], x[order]
    noise = counts ** 0.75
    negatives = rng.choice(VOCAB, size=(len(c), NEG), p=noise / noise.sum()).astype(np.int64)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "vocab.txt"), "w") as f:
        f.write("\n".join(words) + "\n")
    for name, arr in [("center", c), ("context", x), ("negatives", negatives)]:
        np.save(os.path.join(out, name + ".npy"), np.ascontiguousarray(arr))
    print(f"{sum(map(len, qs))} words in {len(qs)} quotes; vocabulary {VOCAB}; wrote {len(c)} pairs to {out}")


def safetensor(path, name):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        if name not in header:
            sys.exit(f"{path}: no tensor '{name}'")
        info = header[name]
        if info["dtype"] != "F32":
            sys.exit(f"{path}: '{name}' is {info['dtype']}, not F32")
        start, end = info["data_offsets"]
        f.seek(8 + n + start)
        return np.frombuffer(f.read(end - start), dtype="<f4").reshape(info["shape"])


def neighbours(ckpt, out, probes):
    words = open(os.path.join(out, "vocab.txt")).read().split()
    e = safetensor(ckpt, "in_embed.weight").astype(np.float64)
    e /= np.linalg.norm(e, axis=1, keepdims=True) + 1e-12
    index = {w: i for i, w in enumerate(words)}
    for w in probes:
        if w not in index:
            print(f"{w}: not in the vocabulary")
            continue
        sim = e @ e[index[w]]
        best = [i for i in np.argsort(-sim) if i != index[w]][:6]
        print(f"{w:>10}: " + ", ".join(f"{words[i]} {sim[i]:.2f}" for i in best))


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "data":
        make_data(sys.argv[2] if len(sys.argv) > 2 else "out/word2vec")
    elif len(sys.argv) >= 3 and sys.argv[1] == "neighbours":
        out = sys.argv[3] if len(sys.argv) > 3 else "out/word2vec"
        neighbours(sys.argv[2], out, sys.argv[4:] or PROBES)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
