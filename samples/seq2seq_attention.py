"""Data, greedy decoding and the attention map of samples/seq2seq_attention.dl:
dates written in words to ISO dates.

    /usr/bin/python3 samples/seq2seq_attention.py data [OUT]       # OUT defaults to out/seq2seq
    /usr/bin/python3 samples/seq2seq_attention.py decode CHECKPOINT [OUT]

`data` writes random dates between 1900-01-01 and 2099-12-31, each in one
of five wordings ("march twenty first nineteen ninety four", "the
twenty first of march two thousand and four", "twenty one march twenty
twelve", "march the first , nineteen oh five", "friday , march ...",
below), as word ids, and the ISO date (1994-03-21) as character ids.
Every draw comes from numpy's PCG64 with seed 0; the test sentences are
all different from the training ones.  In OUT:
  vocab_in.txt, vocab_out.txt   one token a line, line i being id i (id 0
                                pads; output id 1 starts a date);
  {train,test}_src.npy          i64[n, 12] word ids, 0 padding the end;
  {train,test}_src_pad.npy      f32[n, 12]: 1 at padding, 0 at words;
  {train,test}_dec_in.npy       i64[n, 10]: the start id, then the first
                                nine characters of the date (teacher
                                forcing: step t reads character t - 1);
  {train,test}_tgt.npy          i64[n, 10]: the date's ten characters.

`decode` translates the test sentences greedily with `dlc run` (DLC, or
build/dlc): the decoder is causal, so position t's prediction depends on
the characters before it only; ten passes over the whole test set, pass t
feeding back the characters predicted so far, predict the date one
character at a time.  It prints the exact-match accuracy (all ten
characters right) and character accuracy, a few translations, and writes
the attention weights of the first test sentence as a PNG (`dlc grid`,
one row per output character, one column per input word; white is
weight 1) to OUT/attention.png.
"""
import datetime
import os
import subprocess
import sys

import numpy as np

S, T, TRAIN, TEST = 12, 10, 12000, 1000
ONES = ["", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
        "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
ORDINAL = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth", "nine": "ninth",
           "twelve": "twelfth", "twenty": "twentieth", "thirty": "thirtieth"}
MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december"]
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
OUT_VOCAB = ["<pad>", "<start>"] + list("0123456789-")


def cardinal(n):
    """1..99 in words."""
    if n < 20:
        return [ONES[n]]
    return [TENS[n // 10]] + ([ONES[n % 10]] if n % 10 else [])


def ordinal(n):
    words = cardinal(n)
    last = words[-1]
    return words[:-1] + [ORDINAL.get(last, last + "th")]


def year_words(y, style):
    hi, lo = divmod(y, 100)
    if y >= 2000 and (style == 0 or y == 2000):
        return ["two", "thousand"] + (["and"] + cardinal(lo) if lo else [])
    if lo == 0:
        return cardinal(hi) + ["hundred"]
    return cardinal(hi) + (["oh"] + cardinal(lo) if lo < 10 else cardinal(lo))


def sentence(d, form, style):
    m, day, year = MONTHS[d.month - 1], d.day, year_words(d.year, style)
    if form == 0:
        return [m] + ordinal(day) + year
    if form == 1:
        return ["the"] + ordinal(day) + ["of", m] + year
    if form == 2:
        return cardinal(day) + [m] + year
    if form == 3:
        return [m, "the"] + ordinal(day) + [","] + year
    return [WEEKDAYS[d.weekday()], ","] + [m] + ordinal(day) + year


def vocabulary():
    words = {",", "the", "of", "and", "thousand", "hundred", "oh"} | set(MONTHS) | set(WEEKDAYS)
    for n in range(1, 100):
        words |= set(cardinal(n)) | (set(ordinal(n)) if n <= 31 else set())
    return ["<pad>"] + sorted(words)


def draw(rng, n, seen):
    start, days = datetime.date(1900, 1, 1), (datetime.date(2099, 12, 31) - datetime.date(1900, 1, 1)).days + 1
    out = []
    while len(out) < n:
        d = start + datetime.timedelta(days=int(rng.integers(days)))
        words = tuple(sentence(d, int(rng.integers(5)), int(rng.integers(2))))
        if words not in seen:
            seen.add(words)
            out.append((words, d.isoformat()))
    return out


def encode(pairs, index):
    n = len(pairs)
    src = np.zeros((n, S), dtype=np.int64)
    tgt = np.zeros((n, T), dtype=np.int64)
    for i, (words, iso) in enumerate(pairs):
        src[i, :len(words)] = [index[w] for w in words]
        tgt[i] = [OUT_VOCAB.index(c) for c in iso]
    dec_in = np.concatenate([np.ones((n, 1), dtype=np.int64), tgt[:, :-1]], axis=1)
    return {"src": src, "src_pad": (src == 0).astype(np.float32), "dec_in": dec_in, "tgt": tgt}


def make_data(out):
    vocab = vocabulary()
    index = {w: i for i, w in enumerate(vocab)}
    rng = np.random.default_rng(0)
    seen = set()
    train, test = draw(rng, TRAIN, seen), draw(rng, TEST, seen)
    longest = max(len(w) for w, _ in train + test)
    assert longest <= S, f"a sentence of {longest} words does not fit in {S}"
    os.makedirs(out, exist_ok=True)
    for name, words in [("vocab_in.txt", vocab), ("vocab_out.txt", OUT_VOCAB)]:
        with open(os.path.join(out, name), "w") as f:
            f.write("\n".join(words) + "\n")
    for part, pairs in [("train", train), ("test", test)]:
        for k, v in encode(pairs, index).items():
            np.save(os.path.join(out, f"{part}_{k}.npy"), v)
    print(f"{len(train)} training and {len(test)} test sentences, up to {longest} words; "
          f"vocabulary {len(vocab)} words, {len(OUT_VOCAB)} characters; wrote {out}")


def dlc_run(dlc, ckpt, out, dec_in, outputs):
    np.save(os.path.join(out, "decode_dec_in.npy"), dec_in)
    args = [dlc, "run", os.path.join(ROOT, "samples", "seq2seq_attention.dl"), "--backend=jit", "--params", ckpt,
            "--input", f"src={out}/test_src.npy", "--input", f"src_pad={out}/test_src_pad.npy",
            "--input", f"dec_in={out}/decode_dec_in.npy"]
    for name in outputs:
        args += ["--output", f"{name}={out}/decode_{name}.npy"]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return [np.load(os.path.join(out, f"decode_{name}.npy")) for name in outputs]


def decode(ckpt, out):
    dlc = os.environ.get("DLC", os.path.join(ROOT, "build", "dlc"))
    src, tgt = np.load(os.path.join(out, "test_src.npy")), np.load(os.path.join(out, "test_tgt.npy"))
    dec_in = np.zeros_like(tgt)
    dec_in[:, 0] = 1
    pred = np.zeros_like(tgt)
    for t in range(T):
        logits, = dlc_run(dlc, ckpt, out, dec_in, ["logits"])
        pred[:, t] = logits[:, t].argmax(-1)
        if t + 1 < T:
            dec_in[:, t + 1] = pred[:, t]
    _, attn = dlc_run(dlc, ckpt, out, dec_in, ["logits", "attn"])
    exact = (pred == tgt).all(1)
    print(f"greedy decoding: exact match {exact.mean():.4f} ({int(exact.sum())} of {len(tgt)}), "
          f"characters {(pred == tgt).mean():.4f}")
    vocab = open(os.path.join(out, "vocab_in.txt")).read().split("\n")
    show = lambda row: "".join(OUT_VOCAB[i] for i in row)
    for i in list(range(3)) + list(np.flatnonzero(~exact)[:3]):
        words = " ".join(vocab[w] for w in src[i] if w)
        print(f"  {words:<52} -> {show(pred[i])}  (want {show(tgt[i])})")
    words = int((src[0] != 0).sum())
    np.save(os.path.join(out, "attention.npy"), np.ascontiguousarray(attn[:1, :, :words]))
    subprocess.run([dlc, "grid", os.path.join(out, "attention.npy"), "-o", os.path.join(out, "attention.png"),
                    "--range", "0,1", "--scale", "16"], check=True, stdout=subprocess.DEVNULL)
    print(f"attention of \"{' '.join(vocab[w] for w in src[0] if w)}\" -> {show(pred[0])}: "
          f"{out}/attention.png ({T} rows, {words} columns)")


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "data":
        make_data(sys.argv[2] if len(sys.argv) > 2 else "out/seq2seq")
    elif len(sys.argv) >= 3 and sys.argv[1] == "decode":
        decode(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "out/seq2seq")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
