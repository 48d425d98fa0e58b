"""bench/torch_interop.py — weights move between dlc and PyTorch.

1. dlc -> PyTorch: loads a checkpoint written by `dlc train samples/mlp.dl
   --save FILE` into torch.nn.Sequential (names map fc1.weight -> 0.weight,
   fc2 -> 2, logits -> 4; shapes as nn.Linear), and reports its test
   accuracy.
2. PyTorch -> dlc: saves the weights of a fresh torch model as safetensors
   under dlc's names, runs `dlc run --params` on 256 test images and
   compares the logits with torch's.

usage: python3 bench/torch_interop.py DLC_EXE CHECKPOINT DATA_DIR WORKDIR
"""
import gzip
import json
import struct
import subprocess
import sys

import numpy as np
import torch
from torch import nn

NAMES = {"fc1": "0", "fc2": "2", "logits": "4"}


def read_st(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        out[k] = np.frombuffer(data[8 + n + s:8 + n + e], dtype=np.float32).reshape(v["shape"])
    return out


def write_st(path, tensors):
    header, blobs, off = {}, [], 0
    for k, a in tensors.items():
        b = np.ascontiguousarray(a, dtype=np.float32).tobytes()
        header[k] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    rank = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(rank)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank).reshape(dims)


def net():
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))


def main():
    dlc, ckpt, data_dir, work = sys.argv[1:5]
    x = idx(f"{data_dir}/t10k-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / 255
    y = idx(f"{data_dir}/t10k-labels-idx1-ubyte.gz").astype(np.int64)

    # dlc -> torch
    st = read_st(ckpt)
    model = net()
    state = {f"{NAMES[k.split('.')[0]]}.{k.split('.')[1]}": torch.from_numpy(v.copy())
             for k, v in st.items() if k.count(".") == 1}
    model.load_state_dict(state)
    with torch.no_grad():
        acc = (model(torch.from_numpy(x)).argmax(1).numpy() == y).mean()
    print(f"dlc checkpoint in PyTorch: test accuracy {acc * 100:.2f}%")

    # torch -> dlc
    torch.manual_seed(1)
    fresh = net()
    inv = {v: k for k, v in NAMES.items()}
    write_st(f"{work}/torch_weights.safetensors",
             {f"{inv[k.split('.')[0]]}.{k.split('.')[1]}": v.detach().numpy() for k, v in fresh.state_dict().items()})
    np.save(f"{work}/x256.npy", x[:256])
    subprocess.run([dlc, "run", "samples/mlp.dl", "--backend=c", "--input", f"x={work}/x256.npy",
                    "--params", f"{work}/torch_weights.safetensors", "--output", f"logits={work}/logits256.npy"],
                   check=True)
    got = np.load(f"{work}/logits256.npy")
    with torch.no_grad():
        want = fresh(torch.from_numpy(x[:256])).numpy()
    err = np.abs(got - want).max() / np.abs(want).max()
    print(f"PyTorch weights in dlc: max norm-wise difference of the logits {err:.2e}")
    sys.exit(0 if err < 1e-5 else 1)


if __name__ == "__main__":
    main()
