#!/usr/bin/python3
"""Writes the binary seed inputs of the fuzz targets into fuzz/corpus/.

Run with Debian's /usr/bin/python3 (numpy).  Each seed is a small valid
file of its format, so the fuzzer starts from the paths that read data;
the outputs are committed and this script only needs to run again when a
seed is added.
"""
import gzip
import io
import json
import os
import struct

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def out(kind, name, data):
    with open(os.path.join(HERE, "corpus", kind, name), "wb") as f:
        f.write(data)


def npy_bytes(a, version=None):
    b = io.BytesIO()
    np.lib.format.write_array(b, a, version=version)
    return b.getvalue()


def npy_seeds():
    out("npy", "f4_2x3.npy", npy_bytes(np.arange(6, dtype="<f4").reshape(2, 3)))
    out("npy", "f8_scalar.npy", npy_bytes(np.array(1.5, dtype="<f8")))
    out("npy", "i8_4.npy", npy_bytes(np.array([0, -1, 7, 2**40], dtype="<i8")))
    out("npy", "i4_v2.npy", npy_bytes(np.arange(4, dtype="<i4").reshape(2, 1, 2), version=(2, 0)))
    out("npy", "u1_empty.npy", npy_bytes(np.zeros((0, 5), dtype="|u1")))
    out("npy", "b1.npy", npy_bytes(np.array([True, False])))


def safetensors_bytes(tensors, meta=None):
    header, blobs, off = {}, [], 0
    names = {np.dtype("<f4"): "F32", np.dtype("<f8"): "F64", np.dtype("<i4"): "I32",
             np.dtype("<i8"): "I64", np.dtype("|u1"): "U8"}
    if meta is not None:
        header["__metadata__"] = meta
    for name, a in tensors:
        raw = a.tobytes()
        header[name] = {"dtype": names[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def safetensors_seeds():
    out("safetensors", "two.safetensors", safetensors_bytes(
        [("fc.weight", np.arange(6, dtype="<f4").reshape(2, 3)), ("fc.bias", np.zeros(2, dtype="<f4"))]))
    out("safetensors", "types.safetensors", safetensors_bytes(
        [("a", np.array([1.0], dtype="<f8")), ("b", np.array([[1, 2]], dtype="<i4")),
         ("c", np.array([3], dtype="<i8")), ("d", np.array([255], dtype="|u1")),
         ("e", np.zeros((0, 3), dtype="<f4"))], {"format": "pt", "note": "x"}))
    out("safetensors", "empty.safetensors", safetensors_bytes([]))


def checkpoint_seeds():
    # A checkpoint of fuzz_checkpoint.c's model: dense 3 -> 2 with Adam state.
    w = np.linspace(-1, 1, 6, dtype="<f4").reshape(2, 3)
    b = np.array([0.1, -0.1], dtype="<f4")
    t = [("fc.weight", w), ("fc.bias", b),
         ("fc.weight.exp_avg", w * 0.1), ("fc.weight.exp_avg_sq", w * w * 0.01),
         ("fc.bias.exp_avg", b * 0.1), ("fc.bias.exp_avg_sq", b * b * 0.01)]
    meta = {"dlc.epoch": "3", "dlc.step": "12", "dlc.seed": "0", "dlc.model": "ck", "dlc.optimizer": "adam"}
    out("checkpoint", "adam.safetensors", safetensors_bytes(t, meta))
    out("checkpoint", "weights_only.safetensors", safetensors_bytes(t[:2]))


def idx_bytes(a, code):
    return struct.pack(">BBBB", 0, 0, code, a.ndim) + struct.pack(">%dI" % a.ndim, *a.shape) + a.tobytes()


def idx_seeds():
    img = (np.arange(2 * 3 * 3) * 13 % 256).astype("|u1").reshape(2, 3, 3)
    out("idx", "images-idx3-ubyte", idx_bytes(img, 0x08))
    out("idx", "labels-idx1-ubyte.gz", gzip.compress(idx_bytes(np.array([3, 9], dtype="|u1"), 0x08), mtime=0))
    out("idx", "i32-idx2", idx_bytes(np.array([[1, -2], [3, 4]], dtype=">i4"), 0x0C))
    out("idx", "f32-idx1", idx_bytes(np.array([0.5, -1.0], dtype=">f4"), 0x0D))
    out("idx", "i16-idx1", idx_bytes(np.array([7, -7], dtype=">i2"), 0x0B))


def csv_seeds():
    out("csv", "header.csv", b"a,b,label\n0.5,1e-3,1\n-2,3,0\n")
    out("csv", "plain.csv", b"1,2,3\n4,5,6\r\n7,8,9")
    out("csv", "first_label.csv", b"2,0.25,0.75\n0,-1.5,inf\n")


def onnx_model(name, opset, nodes, inputs, outputs, inits=()):
    from onnx import TensorProto, helper, numpy_helper
    f = TensorProto.FLOAT
    g = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info(n, f, d) for n, d in inputs],
        [helper.make_tensor_value_info(n, f, None) for n in outputs],
        [numpy_helper.from_array(np.asarray(v), n) for n, v in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="make_seeds")
    out("onnx", name + ".onnx", m.SerializeToString())


def onnx_seeds():
    from onnx import helper
    n = helper.make_node
    r = np.random.RandomState(0)
    f32 = lambda *s: r.uniform(-1, 1, s).astype("<f4")
    i64 = lambda *v: np.array(v, dtype="<i8")
    onnx_model("gemm", 13, [n("Gemm", ["x", "w", "b"], ["h"], transB=1), n("Relu", ["h"], ["r"]),
                            n("Softmax", ["r"], ["y"], axis=1)],
               [("x", ["N", 3])], ["y"], [("w", f32(2, 3)), ("b", f32(2))])
    onnx_model("conv", 11, [n("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
                            n("MaxPool", ["c"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
                            n("Flatten", ["p"], ["y"])],
               [("x", ["N", 1, 4, 4])], ["y"], [("w", f32(2, 1, 3, 3))])
    onnx_model("shapes", 13, [n("Shape", ["x"], ["s"]), n("Gather", ["s", "zero"], ["n"]),
                              n("Unsqueeze", ["n", "ax"], ["n1"]), n("Concat", ["n1", "m1"], ["t"], axis=0),
                              n("Reshape", ["x", "t"], ["y"])],
               [("x", ["batch", 2, 3])], ["y"], [("zero", np.array(0, dtype="<i8")), ("ax", i64(0)), ("m1", i64(-1))])
    onnx_model("opset11", 11, [n("Clip", ["x", "lo", "hi"], ["c"]), n("Slice", ["c", "st", "en", "ax"], ["s"]),
                               n("Pad", ["s", "pads", "v"], ["y"], mode="constant")],
               [("x", ["N", 6])], ["y"],
               [("lo", np.array(0, "<f4")), ("hi", np.array(6, "<f4")), ("st", i64(1)), ("en", i64(5)), ("ax", i64(1)),
                ("pads", i64(0, 1, 0, 2)), ("v", np.array(0.5, "<f4"))])
    onnx_model("opset7", 7, [n("Clip", ["x"], ["c"], min=-1.0, max=1.0), n("Pad", ["c"], ["p"], pads=[0, 0, 1, 1, 0, 0, 1, 1]),
                             n("Upsample", ["p"], ["y"], scales=[1.0, 1.0, 2.0, 2.0])],
               [("x", ["N", 1, 2, 2])], ["y"])
    onnx_model("reduce", 13, [n("Constant", [], ["k"], value=helper.make_tensor("k", 1, [2], [0.5, -1.0])),
                              n("Add", ["x", "k"], ["a"]), n("ReduceSum", ["a", "ax"], ["s"], keepdims=1),
                              n("ReduceMean", ["s"], ["y"], axes=[0], keepdims=0)],
               [("x", ["N", 2])], ["y"], [("ax", i64(1))])
    onnx_model("bn", 17, [n("BatchNormalization", ["x", "g", "b", "m", "v"], ["h"], epsilon=1e-5),
                          n("Resize", ["h", "", "sc"], ["u"], mode="nearest", coordinate_transformation_mode="asymmetric",
                            nearest_mode="floor"),
                          n("GlobalAveragePool", ["u"], ["y"])],
               [("x", ["N", 2, 2, 2])], ["y"],
               [("g", f32(2)), ("b", f32(2)), ("m", f32(2)), ("v", np.abs(f32(2)) + 0.5),
                ("sc", np.array([1, 1, 2, 2], "<f4"))])


def onnx_scan_seeds():
    """Scan bodies: a running sum over axis 1 whose body reads an
    initializer of the outer graph, forward and backward, and a body with
    its own Constant and two states (the forms dlc export writes)."""
    from onnx import TensorProto, helper
    n = helper.make_node
    f = TensorProto.FLOAT
    r = np.random.RandomState(1)

    def body(nodes, ins, outs):
        return helper.make_graph(nodes, "body", [helper.make_tensor_value_info(k, f, d) for k, d in ins],
                                 [helper.make_tensor_value_info(k, f, d) for k, d in outs])

    step = body([n("Mul", ["x_t", "w"], ["xw"]), n("Add", ["s", "xw"], ["s_new"]), n("Tanh", ["s_new"], ["y"])],
                [("s", ["N", 4]), ("x_t", ["N", 4])], [("s_new", ["N", 4]), ("y", ["N", 4])])
    w = [("w", r.uniform(-1, 1, 4).astype("<f4"))]
    onnx_model("scan", 17, [n("Scan", ["s0", "x"], ["s_T", "ys"], body=step, num_scan_inputs=1,
                              scan_input_axes=[1], scan_output_axes=[1])],
               [("x", ["N", 5, 4]), ("s0", ["N", 4])], ["s_T", "ys"], w)
    onnx_model("scan_reverse", 11, [n("Scan", ["s0", "x"], ["s_T", "ys"], body=step, num_scan_inputs=1,
                                      scan_input_axes=[-2], scan_output_axes=[-2], scan_input_directions=[1],
                                      scan_output_directions=[1])],
               [("x", ["N", 5, 4]), ("s0", ["N", 4])], ["s_T", "ys"], w)
    two = body([n("Constant", [], ["half"], value=helper.make_tensor("half", f, [], [0.5])),
                n("Gemm", ["x_t", "wx"], ["g"], transB=1), n("Mul", ["c", "half"], ["ch"]),
                n("Add", ["g", "ch"], ["c_new"]), n("Sigmoid", ["c_new"], ["h_new"])],
               [("h", ["N", 3]), ("c", ["N", 3]), ("x_t", ["N", 2])],
               [("h_new", ["N", 3]), ("c_new", ["N", 3]), ("h_new_y", ["N", 3])])
    two.node.append(n("Identity", ["h_new"], ["h_new_y"]))
    onnx_model("scan_two_states", 17, [n("Scan", ["h0", "h0", "x"], ["h_T", "c_T", "hs"], body=two, num_scan_inputs=1)],
               [("x", [6, "N", 2]), ("h0", ["N", 3])], ["h_T", "c_T", "hs"], [("wx", r.uniform(-1, 1, (3, 2)).astype("<f4"))])


for kind in ("npy", "safetensors", "checkpoint", "idx", "csv", "onnx"):
    os.makedirs(os.path.join(HERE, "corpus", kind), exist_ok=True)
npy_seeds()
safetensors_seeds()
checkpoint_seeds()
idx_seeds()
csv_seeds()
onnx_seeds()
onnx_scan_seeds()
