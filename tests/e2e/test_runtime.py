"""The CPU runtime's planner as a user meets it through `ulc run`: the ops the issue requires are
claimed, fusion (elementwise chains such as exported GELUs) changes no bit of the results and
Conv + Add + Relu post-ops change a few ulp at most, activations share memory by liveness, --profile and --repeat
report, and the outputs match onnxruntime."""
import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file, save_file

from conftest import ROOT, run_ulc

DIGITS = ROOT / "models" / "digits" / "digits_resnet.onnx"

# Issue 4's list: every op the exports of ResNet, ViT, CLIP and GPT2 use.
REQUIRED_OPS = """Conv BatchNormalization Relu MaxPool AveragePool GlobalAveragePool Flatten Gemm MatMul
Add Sub Mul Div Pow Sqrt Erf Tanh Sigmoid Neg Exp Log Reciprocal LayerNormalization Softmax
LogSoftmax Gelu Transpose Reshape Concat Split Slice Gather Squeeze Unsqueeze Shape
ConstantOfShape Constant Expand Where Equal Less Greater Not Cast Range ReduceMean ReduceSum
ReduceMax Trilu Identity Clip ArgMax""".split()


def test_required_ops_are_claimed():
    r = run_ulc("ops", check=True)
    claimed = set(r.stdout.split())
    assert not set(REQUIRED_OPS) - claimed, sorted(set(REQUIRED_OPS) - claimed)
    assert run_ulc("ops", "--backend", "gpu9").returncode == 1


def gelu_model(path):
    """Two exported GELU spellings after MatMul + bias, each feeding another MatMul (as in a
    transformer's MLP): erf (Div → Erf → Add → Mul → Mul) and tanh (Pow → Mul → Add → Mul →
    Tanh → Add → Mul → Mul, operands in torch's orders)."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((32, 96)).astype(np.float32) * 0.3, "w")
    w2 = numpy_helper.from_array(rng.standard_normal((96, 16)).astype(np.float32) * 0.3, "w2")
    b = numpy_helper.from_array(rng.standard_normal(96).astype(np.float32), "b")
    b2 = numpy_helper.from_array(rng.standard_normal(96).astype(np.float32), "b2")
    c = lambda name, v: numpy_helper.from_array(np.array(v, np.float32), name)
    inits = [w, w2, b, b2, c("sqrt2", 1.4142135), c("one", 1.0), c("half", 0.5), c("three", 3.0),
             c("k", 0.044715), c("s", 0.7978846)]
    n = helper.make_node
    nodes = [
        n("MatMul", ["x", "w"], ["h0"]), n("Add", ["h0", "b"], ["h"]),
        n("MatMul", ["x", "w"], ["g0"]), n("Add", ["b2", "g0"], ["g"]),
        # erf GELU of h
        n("Div", ["h", "sqrt2"], ["e1"]), n("Erf", ["e1"], ["e2"]), n("Add", ["e2", "one"], ["e3"]),
        n("Mul", ["h", "e3"], ["e4"]), n("Mul", ["e4", "half"], ["gelu_erf"]),
        n("MatMul", ["gelu_erf", "w2"], ["y1"]),
        # tanh GELU of g
        n("Pow", ["g", "three"], ["t1"]), n("Mul", ["k", "t1"], ["t2"]), n("Add", ["g", "t2"], ["t3"]),
        n("Mul", ["s", "t3"], ["t4"]), n("Tanh", ["t4"], ["t5"]), n("Add", ["one", "t5"], ["t6"]),
        n("Mul", ["half", "g"], ["t7"]), n("Mul", ["t7", "t6"], ["gelu_tanh"]),
        n("MatMul", ["gelu_tanh", "w2"], ["y2"]),
    ]
    g = helper.make_graph(nodes, "gelu", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 64, 32])],
                          [helper.make_tensor_value_info("y1", TensorProto.FLOAT, ["B", 64, 16]),
                           helper.make_tensor_value_info("y2", TensorProto.FLOAT, ["B", 64, 16])], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def run_envs(tmp_path, model, feeds, envs, extra=()):
    """Runs model once per {tag: env}; returns {tag: (output bytes, stderr)}."""
    import os
    import subprocess
    from conftest import ulc_bin
    inp = tmp_path / "in.safetensors"
    save_file(feeds, str(inp))
    outs = {}
    for tag, env in envs.items():
        o = tmp_path / f"{tag}.safetensors"
        p = subprocess.run([ulc_bin(), "run", str(model), "--input", str(inp), "-o", str(o), *extra],
                           capture_output=True, text=True, env=dict(os.environ, **env))
        assert p.returncode == 0, p.stderr
        outs[tag] = (o.read_bytes(), p.stderr)
    return outs


def run_both(tmp_path, model, feeds):
    outs = run_envs(tmp_path, model, feeds, {"fused": {}, "unfused": {"ULC_NO_FUSION": "1"}})
    return {k: v[0] for k, v in outs.items()}


def test_chains_change_no_bit_and_gelus_fold_into_matmuls(tmp_path):
    model = tmp_path / "gelu.onnx"
    gelu_model(model)
    x = np.random.default_rng(1).standard_normal((3, 64, 32)).astype(np.float32)
    outs = run_envs(tmp_path, model, {"x": x},
                    {"chains": {"ULC_NO_GELU_FUSION": "1"}, "unfused": {"ULC_NO_FUSION": "1"}, "fused": {}},
                    extra=("--repeat", "2", "--profile"))
    # elementwise chains compute exactly what the nodes did
    assert outs["chains"][0] == outs["unfused"][0]
    # recognised GELUs become the MatMuls' activation: nothing else runs
    prof = outs["fused"][1]
    ops = set(re.findall(r"^(\w+)\s+[\d.]+\s+[\d.]+%", prof, re.M))
    assert ops == {"MatMul"}, prof
    assert "Erf" in outs["chains"][1] or "Mul" in outs["chains"][1]
    got = load_file(str(tmp_path / "fused.safetensors"))
    ref = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    for name, r in zip(["y1", "y2"], ref):
        err = np.abs(got[name].astype(np.float64) - r).max() / np.abs(r).max()
        assert err <= 1e-5, (name, err)


def test_fused_resnet_matches_unfused(tmp_path):
    """Conv + Add + Relu run as oneDNN post-ops, which round in another order: a few ulp."""
    x = load_file(str(ROOT / "models" / "digits" / "test.safetensors"))["input"][:50]
    run_both(tmp_path, DIGITS, {"input": x})
    a = load_file(str(tmp_path / "fused.safetensors"))["logits"].astype(np.float64)
    b = load_file(str(tmp_path / "unfused.safetensors"))["logits"].astype(np.float64)
    assert np.abs(a - b).max() <= 1e-6 * np.abs(b).max()
    assert (a.argmax(1) == b.argmax(1)).all()


def chain_model(path, depth=24):
    """A deep chain of Relu(Add(h, c)) steps: without sharing, every step needs its own buffer."""
    nodes, prev = [], "x"
    inits = []
    for i in range(depth):
        inits.append(numpy_helper.from_array(np.full((256,), 0.01 * i, np.float32), f"c{i}"))
        nodes.append(helper.make_node("Add", [prev, f"c{i}"], [f"a{i}"]))
        nodes.append(helper.make_node("Sigmoid", [f"a{i}"], [f"s{i}"]))
        nodes.append(helper.make_node("Transpose", [f"s{i}"], [f"h{i}"], perm=[1, 0]) if i % 2 == 0 else
                     helper.make_node("Neg", [f"s{i}"], [f"h{i}"]))
        prev = f"h{i}"
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [256, 256])],
                          [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [256, 256])], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return prev


def test_activations_share_memory_and_repeat_reports(tmp_path):
    model = tmp_path / "chain.onnx"
    out_name = chain_model(model)
    x = np.random.default_rng(2).standard_normal((256, 256)).astype(np.float32)
    inp = tmp_path / "in.safetensors"
    save_file({"x": x}, str(inp))
    r = run_ulc("run", model, "--input", inp, "-o", tmp_path / "o.safetensors", "--repeat", "3",
                "--profile", check=True)
    m = re.search(r"first run \(with planning\) [\d.]+ ms; median of 2 more [\d.]+ ms, min [\d.]+ ms; "
                  r"activations ([\d.]+) MiB \(([\d.]+) MiB unshared\)", r.stderr)
    assert m, r.stderr
    planned, unshared = float(m.group(1)), float(m.group(2))
    assert planned <= 0.8 and unshared >= 5 * planned, (planned, unshared)  # ~3 live 256 KiB buffers
    assert "profile (every run so far" in r.stderr and "Transpose" in r.stderr and "slowest nodes" in r.stderr
    got = load_file(str(tmp_path / "o.safetensors"))[out_name]
    (ref,) = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_new_shapes_make_new_plans_and_threads_agree(tmp_path):
    """eval runs full batches and a last partial one (two plans); thread counts agree bit for bit."""
    data = ROOT / "models" / "digits" / "test.safetensors"
    outs = []
    for t in ("1", "2", "3"):
        r = run_ulc("eval", DIGITS, "--data", data, "--batch", "7", "--threads", t, "--json", check=True)
        outs.append(r.stdout)
    assert outs[0] == outs[1] == outs[2]
    assert '"correct":\t359' in outs[0]


def test_usage_errors(tmp_path):
    inp = tmp_path / "in.safetensors"
    save_file({"input": np.zeros((1, 1, 8, 8), np.float32)}, str(inp))
    cases = [
        (["run", DIGITS, "--input", inp], "no output given"),
        (["run", DIGITS, "-o", tmp_path / "o.safetensors"], "no input given"),
        (["run", DIGITS, "--input", inp, "-o", inp], "would overwrite an input"),
        (["run", DIGITS, "--input", inp, "-o", tmp_path / "o.safetensors", "--threads", "x"], "--threads needs"),
        (["run", DIGITS, "--input", inp, "-o", tmp_path / "o.safetensors", "--repeat", "0"], "--repeat needs"),
        (["run", DIGITS, "--input", inp, "-o", tmp_path / "o.safetensors", "--bogus"], "unknown option"),
        (["eval", DIGITS], "no data given"),
        (["eval", DIGITS, "--data", inp, "--batch", "0"], "--batch needs"),
    ]
    for args, msg in cases:
        r = run_ulc(*args)
        assert r.returncode == 1, (args, r.stderr)
        assert msg in r.stderr, (args, r.stderr)
    assert not (tmp_path / "o.safetensors").exists()
    r = run_ulc("eval", DIGITS, "--data", inp)
    assert r.returncode == 2 and "expected tensors 'input'" in r.stderr and "'label'" in r.stderr


def norm_model(path):
    """LayerNorm → Softmax → ReduceMean/ReduceSum/ReduceMax → Sigmoid/Exp/Tanh: the kernels with
    AVX2 paths and portable twins."""
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.standard_normal(77).astype(np.float32), "g"),
             numpy_helper.from_array(rng.standard_normal(77).astype(np.float32), "bb"),
             numpy_helper.from_array(np.array([1], np.int64), "ax"),
             numpy_helper.from_array(np.array([2], np.int64), "ax2")]
    n = helper.make_node
    nodes = [n("LayerNormalization", ["x", "g", "bb"], ["ln"], axis=-1, epsilon=1e-5),
             n("Softmax", ["ln"], ["sm"], axis=-1), n("Tanh", ["ln"], ["th"]), n("Exp", ["sm"], ["ex"]),
             n("Sigmoid", ["th"], ["sg"]), n("Add", ["ex", "sg"], ["s2"]),
             n("ReduceMean", ["s2", "ax"], ["rm"], keepdims=1), n("ReduceSum", ["s2", "ax"], ["rs"], keepdims=0),
             n("ReduceMax", ["s2", "ax2"], ["rx"], keepdims=1)]
    g = helper.make_graph(nodes, "norm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 41, 77])],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in ("sm", "rm", "rs", "rx")],
                          inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), str(path))


@pytest.mark.parametrize("which", ["gelu", "norm", "digits"])
def test_portable_twins_agree_with_simd(tmp_path, which):
    """ULC_NO_SIMD=1 forces the portable loops; both agree with each other and onnxruntime."""
    import os
    import subprocess
    from conftest import ulc_bin
    if which == "gelu":
        model = tmp_path / "m.onnx"
        gelu_model(model)
        feeds = {"x": np.random.default_rng(4).standard_normal((2, 64, 32)).astype(np.float32)}
    elif which == "norm":
        model = tmp_path / "m.onnx"
        norm_model(model)
        feeds = {"x": (np.random.default_rng(5).standard_normal((3, 41, 77)) * 3).astype(np.float32)}
    else:
        model = DIGITS
        feeds = {"input": load_file(str(ROOT / "models" / "digits" / "test.safetensors"))["input"][:40]}
    inp = tmp_path / "in.safetensors"
    save_file(feeds, str(inp))
    got = {}
    for tag, env in (("simd", {}), ("portable", {"ULC_NO_SIMD": "1"})):
        o = tmp_path / f"{tag}.safetensors"
        p = subprocess.run([ulc_bin(), "run", str(model), "--input", str(inp), "-o", str(o)],
                           capture_output=True, text=True, env=dict(os.environ, **env))
        assert p.returncode == 0, p.stderr
        got[tag] = load_file(str(o))
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    for out, ref in zip(sess.get_outputs(), sess.run(None, feeds)):
        scale = max(np.abs(ref).max(), 1e-6)
        for tag in got:
            err = np.abs(got[tag][out.name].astype(np.float64) - ref).max() / scale
            assert err <= 2e-5, (which, tag, out.name, err)


@pytest.mark.parametrize("ta,tb,n,c_shape", [
    (0, 0, 256, (256,)), (0, 1, 256, (256,)), (1, 1, 256, (1, 256)), (1, 0, 384, None),
    (0, 1, 200, (40, 200)), (0, 0, 200, ()), (0, 1, 128, (40, 1)),
])
def test_gemm_with_constant_b_matches_onnxruntime(tmp_path, ta, tb, n, c_shape):
    """Gemm with an initializer B is copied once as op(B) with padded rows (runtime/cpu/
    k_nn_gemm.c, gemm_copy_b): every transA/transB pair, C broadcast every way, alpha/beta."""
    rng = np.random.default_rng(ta * 4 + tb * 2 + n)
    m, k = 40, 384
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    inits = [numpy_helper.from_array(b, "B")]
    inputs = ["A", "B"]
    if c_shape is not None:
        inits.append(numpy_helper.from_array(rng.standard_normal(c_shape).astype(np.float32), "C"))
        inputs.append("C")
    node = helper.make_node("Gemm", inputs, ["Y"], transA=ta, transB=tb, alpha=0.5, beta=2.0)
    g = helper.make_graph([node], "gemm", [helper.make_tensor_value_info("A", TensorProto.FLOAT, a.shape)],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], inits)
    model = tmp_path / "gemm.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(model))
    save_file({"A": a}, str(tmp_path / "in.safetensors"))
    r = run_ulc("run", model, "--input", tmp_path / "in.safetensors", "-o", tmp_path / "out.safetensors")
    assert r.returncode == 0, r.stderr
    got = load_file(str(tmp_path / "out.safetensors"))["Y"]
    ref = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"A": a})[0]
    assert got.shape == ref.shape == (m, n)
    assert np.abs(got - ref).max() / np.abs(ref).max() <= 1e-5
