"""Weights packed once per plan (runtime/cpu/k_nn_gemm.c's packed matmul, k_nn_wino.c's AVX-512
products) and held once (runtime/session.c: a packed weight's mapped pages and plan copies are
let go). Each path is checked against onnxruntime and against the path it replaces, switched off
with its environment variable (ULC_NO_PACKED_MATMUL, ULC_NO_AVX512)."""
import os
import subprocess

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as TP, helper as h, numpy_helper as nh
from safetensors.numpy import load_file, save_file

from conftest import ulc_bin


def _has_avx512f():
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and " avx512f" in line for line in f)
    except OSError:
        return False


def _run(model, inp, out, env=None):
    p = subprocess.run([ulc_bin(), "run", str(model), "--input", str(inp), "-o", str(out)],
                       capture_output=True, text=True, env=dict(os.environ, **(env or {})))
    assert p.returncode == 0, p.stderr
    return load_file(str(out))


def _save(tmp_path, nodes, inputs, outputs, inits, feeds, opset=17):
    g = h.make_graph(nodes, "m", inputs, outputs, inits)
    model = tmp_path / "m.onnx"
    onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", opset)]), str(model))
    inp = tmp_path / "in.safetensors"
    save_file(feeds, str(inp))
    return model, inp


def _check_against_ort(model, feeds, got, tol):
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    for out, ref in zip(sess.get_outputs(), sess.run(None, feeds)):
        err = np.abs(got[out.name].astype(np.float64) - ref).max() / max(np.abs(ref).max(), 1e-6)
        assert err <= tol, (out.name, err)


# (name, A's shape, op, attributes, B's stored shape, C's shape or None)
PRODUCTS = [
    ("linear_transB_bias", (37, 384), "Gemm", {"transB": 1}, (1536, 384), (1536,)),
    ("conv1d_bias_row", (50, 768), "Gemm", {}, (768, 2304), (1, 2304)),
    ("gemm_no_c", (9, 256), "Gemm", {}, (256, 512), None),
    ("gemm_full_c", (16, 256), "Gemm", {}, (256, 384), (16, 384)),            # C not a bias: sgemm
    ("gemm_alpha", (16, 256), "Gemm", {"alpha": 0.5, "beta": 2.0}, (256, 384), (384,)),  # sgemm
    ("gemm_transA", (256, 12), "Gemm", {"transA": 1, "transB": 1}, (384, 256), (384,)),  # sgemm
    ("matmul_3d_a", (2, 65, 384), "MatMul", {}, (384, 1152), None),
    ("matmul_wide", (1, 7, 256), "MatMul", {}, (256, 5000), None),             # a vocabulary head
    ("matmul_small", (5, 64), "MatMul", {}, (64, 64), None),                   # too small to pack
]


@pytest.mark.parametrize("name,a_shape,op,attrs,b_shape,c_shape", PRODUCTS, ids=[p[0] for p in PRODUCTS])
def test_packed_products_match(tmp_path, name, a_shape, op, attrs, b_shape, c_shape):
    """Products with a constant B: onnxruntime's result with the packed matmul on and off, and the
    two within float32 rounding of each other (they sum in different orders)."""
    rng = np.random.default_rng(len(name))
    a = rng.standard_normal(a_shape).astype(np.float32)
    inits = [nh.from_array((rng.standard_normal(b_shape) * 0.05).astype(np.float32), "B")]
    ins = ["a", "B"]
    if c_shape is not None:
        inits.append(nh.from_array(rng.standard_normal(c_shape).astype(np.float32), "C"))
        ins.append("C")
    node = h.make_node(op, ins, ["y"], **attrs)
    # a Relu after it: fused into the product's step, applied after the packed kernel
    nodes = [node, h.make_node("Relu", ["y"], ["r"])]
    model, inp = _save(tmp_path, nodes, [h.make_tensor_value_info("a", TP.FLOAT, a_shape)],
                       [h.make_tensor_value_info("y", TP.FLOAT, None), h.make_tensor_value_info("r", TP.FLOAT, None)],
                       inits, {"a": a})
    packed = _run(model, inp, tmp_path / "packed.safetensors")
    plain = _run(model, inp, tmp_path / "plain.safetensors", {"ULC_NO_PACKED_MATMUL": "1"})
    for got in (packed, plain):
        _check_against_ort(model, {"a": a}, got, 1e-5)
    for k in packed:
        scale = max(np.abs(plain[k]).max(), 1e-6)
        assert np.abs(packed[k] - plain[k]).max() / scale <= 1e-5, k


@pytest.mark.parametrize("addend,act", [("row", "Relu"), ("row", "Tanh"), ("row_2d", "Sigmoid"), ("full", "Relu"),
                                         ("none", "Tanh"), ("row", "gelu_erf"), ("row", "gelu_tanh"),
                                         ("none", "gelu_tanh")])
def test_packed_linear_epilogue(tmp_path, addend, act):
    """A linear layer's bias Add and activation fused into the packed product: a bias row (N
    values, as [N] or [1, N]) goes in as the primitive's bias and the activation as its post-op;
    a full-shape addend (a residual) is added after it, then the activation."""
    rng = np.random.default_rng(11)
    m, k, n = 50, 384, 768
    a = rng.standard_normal((2, m, k)).astype(np.float32)
    inits = [nh.from_array((rng.standard_normal((k, n)) * 0.05).astype(np.float32), "W")]
    nodes = [h.make_node("MatMul", ["a", "W"], ["y"])]
    inputs = [h.make_tensor_value_info("a", TP.FLOAT, a.shape)]
    feeds = {"a": a}
    cur = "y"
    if addend != "none":
        if addend == "full":
            feeds["r"] = rng.standard_normal((2, m, n)).astype(np.float32)
            inputs.append(h.make_tensor_value_info("r", TP.FLOAT, (2, m, n)))
        else:
            shape = (n,) if addend == "row" else (1, n)
            inits.append(nh.from_array(rng.standard_normal(shape).astype(np.float32), "r"))
        nodes.append(h.make_node("Add", ["y", "r"], ["z"]))
        cur = "z"
    if act == "gelu_erf":  # the exporters' spellings: the planner fuses them as one GELU
        inits += [nh.from_array(np.array(v, np.float32), nm) for nm, v in (("sqrt2", 1.4142135), ("one", 1.0), ("half", 0.5))]
        nodes += [h.make_node("Div", [cur, "sqrt2"], ["e1"]), h.make_node("Erf", ["e1"], ["e2"]),
                  h.make_node("Add", ["e2", "one"], ["e3"]), h.make_node("Mul", [cur, "e3"], ["e4"]),
                  h.make_node("Mul", ["e4", "half"], ["out"])]
    elif act == "gelu_tanh":
        inits += [nh.from_array(np.array(v, np.float32), nm)
                  for nm, v in (("three", 3.0), ("k", 0.044715), ("s", 0.7978846), ("one", 1.0), ("half", 0.5))]
        nodes += [h.make_node("Pow", [cur, "three"], ["t1"]), h.make_node("Mul", ["k", "t1"], ["t2"]),
                  h.make_node("Add", [cur, "t2"], ["t3"]), h.make_node("Mul", ["s", "t3"], ["t4"]),
                  h.make_node("Tanh", ["t4"], ["t5"]), h.make_node("Add", ["one", "t5"], ["t6"]),
                  h.make_node("Mul", ["half", cur], ["t7"]), h.make_node("Mul", ["t7", "t6"], ["out"])]
    else:
        nodes.append(h.make_node(act, [cur], ["out"]))
    model, inp = _save(tmp_path, nodes, inputs, [h.make_tensor_value_info("out", TP.FLOAT, None)], inits, feeds)
    packed = _run(model, inp, tmp_path / "packed.safetensors")
    plain = _run(model, inp, tmp_path / "plain.safetensors", {"ULC_NO_PACKED_MATMUL": "1"})
    _check_against_ort(model, feeds, packed, 1e-5)
    scale = max(np.abs(plain["out"]).max(), 1e-6)
    assert np.abs(packed["out"] - plain["out"]).max() / scale <= 1e-5


def test_shared_weight_read_after_packing(tmp_path):
    """A weight one product packs and another op reads as it is (a tied embedding: Gather of the
    rows, MatMul by its transpose kept as a second initializer; here one initializer read by a
    packing MatMul and by an Add): the unpacked reader still sees the model's bytes."""
    rng = np.random.default_rng(7)
    w = (rng.standard_normal((512, 512)) * 0.05).astype(np.float32)
    a = rng.standard_normal((3, 512)).astype(np.float32)
    nodes = [h.make_node("MatMul", ["a", "W"], ["y"]), h.make_node("Add", ["y", "W3"], ["z"]),
             h.make_node("Gather", ["W", "idx"], ["g"], axis=0)]
    inits = [nh.from_array(w, "W"), nh.from_array(w[:3], "W3"), nh.from_array(np.array([0, 511, 7], np.int64), "idx")]
    model, inp = _save(tmp_path, nodes, [h.make_tensor_value_info("a", TP.FLOAT, a.shape)],
                       [h.make_tensor_value_info(n, TP.FLOAT, None) for n in ("z", "g")], inits, {"a": a})
    got = _run(model, inp, tmp_path / "o.safetensors")
    _check_against_ort(model, {"a": a}, got, 1e-5)
    assert np.array_equal(got["g"], w[[0, 511, 7]])


@pytest.mark.skipif(not _has_avx512f(), reason="no AVX-512F on this CPU: the AVX2 products are the only ones")
def test_winograd_avx512_products_same_bytes(tmp_path):
    """3x3 stride-1 convolutions whose output channels make pairs of 16-channel groups, a lone
    16-channel group and an 8-channel last group (16, 24, 40, 64): the AVX-512 products give the
    AVX2 ones' bytes exactly (the same channel sum in the same order), at batch 1 and 4."""
    rng = np.random.default_rng(3)
    chans = [8, 16, 24, 40, 64]
    nodes, inits = [], []
    prev = "x"
    for i, (c, m) in enumerate(zip(chans, chans[1:])):
        inits += [nh.from_array((rng.standard_normal((m, c, 3, 3)) * 0.2).astype(np.float32), f"w{i}"),
                  nh.from_array(rng.standard_normal(m).astype(np.float32), f"b{i}")]
        nodes += [h.make_node("Conv", [prev, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
                  h.make_node("Relu", [f"c{i}"], [f"r{i}"])]
        prev = f"r{i}"
    for batch in (1, 4):
        d = tmp_path / f"b{batch}"
        d.mkdir()
        x = rng.standard_normal((batch, 8, 23, 29)).astype(np.float32)
        model, inp = _save(d, nodes, [h.make_tensor_value_info("x", TP.FLOAT, x.shape)],
                           [h.make_tensor_value_info(prev, TP.FLOAT, None)], inits, {"x": x})
        zmm = _run(model, inp, d / "zmm.safetensors")
        ymm = _run(model, inp, d / "ymm.safetensors", {"ULC_NO_AVX512": "1"})
        assert np.array_equal(zmm[prev], ymm[prev]), batch
        _check_against_ort(model, {"x": x}, zmm, 1e-5)


def _peak_rss_kib(cmd, env=None):
    """GNU time's maximum resident set size of cmd, in KiB."""
    p = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True,
                       env=dict(os.environ, **(env or {})))
    assert p.returncode == 0, p.stderr
    return int(p.stderr.strip().splitlines()[-1])


@pytest.mark.skipif(not os.path.exists("/usr/bin/time"), reason="GNU time is not installed")
@pytest.mark.skipif(os.environ.get("ULC_SANITIZED") == "1",
                    reason="ASan holds freed memory in quarantine: resident sizes mean nothing there")
@pytest.mark.parametrize("transposed", [False, True], ids=["copied", "folded_transpose"])
def test_packed_weight_resident_once(tmp_path, transposed):
    """A 64 MiB weight at an unaligned offset of its ONNX file (raw_data right after a 1-byte
    initializer) is copied to be aligned, then packed: the mapped pages and the copy are let go,
    so the peak resident set stays near one copy plus the packed one, not three (mapping, copy,
    packed: 192 MiB before). The same for a weight stored [out, in] and transposed by a node, as
    ulc's Hugging Face importer writes linear layers: the fold's result is the copy let go."""
    rng = np.random.default_rng(1)
    k, n = 2048, 8192
    w = rng.standard_normal((k, n)).astype(np.float32)
    a = rng.standard_normal((4, k)).astype(np.float32)
    if transposed:
        inits = [nh.from_array(np.array([1], np.uint8), "pad"), nh.from_array(np.ascontiguousarray(w.T), "Wt")]
        nodes = [h.make_node("Transpose", ["Wt"], ["W"], perm=[1, 0]), h.make_node("MatMul", ["a", "W"], ["y"]),
                 h.make_node("Cast", ["pad"], ["p"], to=TP.FLOAT)]
    else:
        inits = [nh.from_array(np.array([1], np.uint8), "pad"), nh.from_array(w, "W")]
        nodes = [h.make_node("MatMul", ["a", "W"], ["y"]), h.make_node("Cast", ["pad"], ["p"], to=TP.FLOAT)]
    model, inp = _save(tmp_path, nodes, [h.make_tensor_value_info("a", TP.FLOAT, a.shape)],
                       [h.make_tensor_value_info("y", TP.FLOAT, None), h.make_tensor_value_info("p", TP.FLOAT, None)],
                       inits, {"a": a})
    mib = w.nbytes / 2**20
    # the process with no weight at all: the binary, its libraries, oneDNN's start-up
    small = tmp_path / "small"
    small.mkdir()
    m0, i0 = _save(small, [h.make_node("MatMul", ["a", "W"], ["y"])], [h.make_tensor_value_info("a", TP.FLOAT, (4, 8))],
                   [h.make_tensor_value_info("y", TP.FLOAT, None)], [nh.from_array(w[:8, :8].copy(), "W")],
                   {"a": a[:, :8].copy()})
    base = _peak_rss_kib([ulc_bin(), "run", str(m0), "--input", str(i0), "-o", str(small / "o.safetensors")]) / 1024
    peak = _peak_rss_kib([ulc_bin(), "run", str(model), "--input", str(inp), "-o", str(tmp_path / "o.safetensors")]) / 1024
    assert peak - base <= 2.3 * mib, f"peak {peak:.0f} MiB with a {mib:.0f} MiB weight (start-up {base:.0f} MiB)"
    got = load_file(str(tmp_path / "o.safetensors"))
    ref = a.astype(np.float64) @ w.astype(np.float64)
    assert np.abs(got["y"] - ref).max() / np.abs(ref).max() <= 1e-5


# ---- a transformer layer's residual Add folded into the product (runtime/fuse.c) ----------------

@pytest.mark.parametrize("act,packed", [(None, True), ("Sigmoid", True), (None, False), ("Relu", False)],
                         ids=["bias+residual", "bias+sigmoid+residual", "sgemm:bias+residual", "sgemm:bias+relu+residual"])
def test_residual_add_folds_into_the_product(tmp_path, act, packed):
    """MatMul → Add(bias) [→ activation] → Add(residual stream) is one step: the packed matmul
    applies the residual as oneDNN's binary post-op, sgemm in its pass over Y after the product
    (ULC_NO_PACKED_MATMUL=1). Same outputs as the separate Add (ULC_NO_RESIDUAL_FUSION=1) and as
    onnxruntime; no Add runs as its own step (the profile's op table)."""
    rng = np.random.default_rng(3)
    t, c, n = 197, 384, 384
    nodes = [h.make_node("MatMul", ["x", "w"], ["xw"]), h.make_node("Add", ["xw", "b"], ["lin"])]
    cur = "lin"
    if act:
        nodes.append(h.make_node(act, [cur], ["a"]))
        cur = "a"
    nodes.append(h.make_node("Add", ["h", cur], ["y"]))
    inits = [nh.from_array((rng.standard_normal((c, n)) * 0.05).astype(np.float32), "w"),
             nh.from_array((rng.standard_normal(n) * 0.1).astype(np.float32), "b")]
    feeds = {"x": rng.standard_normal((1, t, c)).astype(np.float32),
             "h": rng.standard_normal((1, t, n)).astype(np.float32)}
    inputs = [h.make_tensor_value_info(k, TP.FLOAT, list(v.shape)) for k, v in feeds.items()]
    model, inp = _save(tmp_path, nodes, inputs, [h.make_tensor_value_info("y", TP.FLOAT, None)], inits, feeds)
    base = {} if packed else {"ULC_NO_PACKED_MATMUL": "1"}

    def run(tag, env):
        out = tmp_path / f"{tag}.safetensors"
        p = subprocess.run([ulc_bin(), "run", str(model), "--input", str(inp), "-o", str(out), "--repeat", "2",
                            "--profile"], capture_output=True, text=True, env=dict(os.environ, **base, **env))
        assert p.returncode == 0, p.stderr
        ops = {ln.split()[0] for ln in p.stderr.splitlines() if ln[:1].isalpha() and "ms" not in ln.split()[0]}
        return load_file(str(out)), ops

    got, ops = run("fused", {})
    ref, ref_ops = run("add", {"ULC_NO_RESIDUAL_FUSION": "1"})
    _check_against_ort(model, feeds, got, 1e-5)
    np.testing.assert_allclose(got["y"], ref["y"], rtol=1e-6, atol=1e-6)
    assert "MatMul" in ops and "Add" not in ops and "Mul" not in ops, ops
    assert "Add" in ref_ops, ref_ops


def test_residual_then_gelu_keeps_the_order(tmp_path):
    """MatMul → Add(bias) → Add(residual) → GELU spelled in elementwise ops: the residual folds
    into the product, and the GELU chain must then not become the product's activation (it
    would apply before the residual). Against onnxruntime and the unfused Add."""
    rng = np.random.default_rng(4)
    nodes = [h.make_node("MatMul", ["x", "w"], ["xw"]), h.make_node("Add", ["xw", "b"], ["lin"]),
             h.make_node("Add", ["lin", "x"], ["r"]), h.make_node("Div", ["r", "sqrt2"], ["g1"]),
             h.make_node("Erf", ["g1"], ["g2"]), h.make_node("Add", ["g2", "one"], ["g3"]),
             h.make_node("Mul", ["r", "g3"], ["g4"]), h.make_node("Mul", ["g4", "half"], ["y"])]
    inits = [nh.from_array((rng.standard_normal((256, 256)) * 0.1).astype(np.float32), "w"),
             nh.from_array((rng.standard_normal(256) * 0.1).astype(np.float32), "b"),
             nh.from_array(np.array(np.sqrt(2.0), np.float32), "sqrt2"), nh.from_array(np.array(1.0, np.float32), "one"),
             nh.from_array(np.array(0.5, np.float32), "half")]
    feeds = {"x": rng.standard_normal((64, 256)).astype(np.float32)}
    model, inp = _save(tmp_path, nodes, [h.make_tensor_value_info("x", TP.FLOAT, [64, 256])],
                       [h.make_tensor_value_info("y", TP.FLOAT, None)], inits, feeds)
    for env in ({}, {"ULC_NO_PACKED_MATMUL": "1"}):
        got = _run(model, inp, tmp_path / "o.safetensors", env)
        _check_against_ort(model, feeds, got, 1e-5)
