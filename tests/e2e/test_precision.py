"""--precision bf16 on the CPU (runtime/cpu/k_nn_gemm.c's packed products, k_nn_conv.c's oneDNN
convolutions; docs/cli.md, "Precision"): a linear layer's product and a convolution take their
input and weight rounded to bfloat16 (to nearest even) and sum in float32; bias, activation,
residual and every other op stay float32.

Where the CPU has bfloat16 matrix instructions (oneDNN's ISA avx512_core_bf16 or amx: the flags
avx512_bf16 or amx_bf16), the outputs are checked against numpy on the rounded operands, shown
to differ from float32 (so bf16 really ran), and kept within bfloat16's error of float32. Where
it has none, the refusal is checked instead: exit 2 with why, and nothing written."""
import json
import os
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP, helper as h, numpy_helper as nh
from safetensors.numpy import load_file, save_file

from conftest import ulc_bin

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIGITS = os.path.join(ROOT, "models", "digits")


def _cpu_has_bf16():
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _bf16(x):
    """float32 → bfloat16 → float32, round to nearest even (what oneDNN's reorder does)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32)


def _gelu(x):
    from math import erf, sqrt
    return 0.5 * x * (1.0 + np.vectorize(lambda v: erf(v / sqrt(2.0)))(x))


def _ulc(*args, env=None):
    return subprocess.run([ulc_bin(), *map(str, args)], capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})))


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    """x [2, 24, 256] → Gemm-like MatMul+bias → Gelu → MatMul [1024, 256] + residual, and a wide
    head MatMul [256, 5000] (a vocabulary projection): every product large enough to pack."""
    d = tmp_path_factory.mktemp("bf16")
    rng = np.random.default_rng(7)
    w1 = (rng.standard_normal((256, 1024)) / 16).astype(np.float32)
    b1 = rng.standard_normal(1024).astype(np.float32) * 0.1
    w2 = (rng.standard_normal((1024, 256)) / 32).astype(np.float32)
    wh = (rng.standard_normal((256, 5000)) / 16).astype(np.float32)
    nodes = [
        h.make_node("MatMul", ["x", "w1"], ["p1"]),
        h.make_node("Add", ["p1", "b1"], ["a1"]),
        h.make_node("Gelu", ["a1"], ["g1"], domain="com.microsoft"),
        h.make_node("MatMul", ["g1", "w2"], ["p2"]),
        h.make_node("Add", ["p2", "x"], ["y"]),
        h.make_node("MatMul", ["y", "wh"], ["logits"]),
    ]
    # Gelu as the plain erf formula (opset 17 has no Gelu): Div, Erf, Add, Mul, Mul
    nodes[2:3] = [
        h.make_node("Div", ["a1", "sqrt2"], ["t0"]), h.make_node("Erf", ["t0"], ["t1"]),
        h.make_node("Add", ["t1", "one"], ["t2"]), h.make_node("Mul", ["a1", "t2"], ["t3"]),
        h.make_node("Mul", ["t3", "half"], ["g1"]),
    ]
    inits = [nh.from_array(w1, "w1"), nh.from_array(b1, "b1"), nh.from_array(w2, "w2"), nh.from_array(wh, "wh"),
             nh.from_array(np.array(np.sqrt(2.0), np.float32), "sqrt2"),
             nh.from_array(np.array(1.0, np.float32), "one"), nh.from_array(np.array(0.5, np.float32), "half")]
    g = h.make_graph(nodes, "mlp", [h.make_tensor_value_info("x", TP.FLOAT, [2, 24, 256])],
                     [h.make_tensor_value_info("y", TP.FLOAT, None), h.make_tensor_value_info("logits", TP.FLOAT, None)],
                     inits)
    model = d / "mlp.onnx"
    onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), str(model))
    x = rng.standard_normal((2, 24, 256)).astype(np.float32)
    inp = d / "x.safetensors"
    save_file({"x": x}, str(inp))
    return d, model, inp, dict(x=x, w1=w1, b1=b1, w2=w2, wh=wh)


def _reference(p, rounded):
    r = _bf16 if rounded else (lambda a: a.astype(np.float32))
    x = p["x"].astype(np.float64)
    a1 = r(p["x"]).astype(np.float64) @ r(p["w1"]).astype(np.float64) + p["b1"]
    g1 = _gelu(a1).astype(np.float32)
    y = r(g1).astype(np.float64) @ r(p["w2"]).astype(np.float64) + x
    y32 = y.astype(np.float32)
    logits = r(y32).astype(np.float64) @ r(p["wh"]).astype(np.float64)
    return {"y": y, "logits": logits}


def _rel(a, b):
    return float(np.abs(a.astype(np.float64) - b).max() / max(np.abs(b).max(), 1e-30))


@pytest.mark.skipif(not _cpu_has_bf16(), reason="this CPU has no bfloat16 matrix instructions: "
                    "test_bf16_refused_without_the_instructions checks the refusal instead")
def test_bf16_products_round_both_operands(mlp):
    d, model, inp, p = mlp
    out32, out16 = d / "fp32.safetensors", d / "bf16.safetensors"
    a = _ulc("run", model, "--input", inp, "-o", out32)
    b = _ulc("--precision", "bf16", "run", model, "--input", inp, "-o", out16)
    assert a.returncode == 0, a.stderr
    assert b.returncode == 0, b.stderr
    f32, b16 = load_file(str(out32)), load_file(str(out16))
    ref32, ref16 = _reference(p, False), _reference(p, True)
    for name in ("y", "logits"):
        assert _rel(f32[name], ref32[name]) < 1e-5, name          # float32 as before
        assert _rel(b16[name], ref16[name]) < 2e-4, name          # bfloat16 operands, float32 sums
        assert _rel(b16[name], ref32[name]) < 3e-2, name          # within bfloat16's error of float32
        assert _rel(b16[name], ref32[name]) > 1e-4, name          # and not float32: bf16 ran
    # every thread count gives the same rounding (the products' sums may differ in order)
    c = _ulc("--precision", "bf16", "run", model, "--input", inp, "-o", d / "t1.safetensors", "--threads", "1")
    assert c.returncode == 0, c.stderr
    t1 = load_file(str(d / "t1.safetensors"))
    assert _rel(t1["logits"], b16["logits"].astype(np.float64)) < 1e-5


def _conv3x3(x, w):
    """3x3, stride 1, pad 1 convolution in float64 (NCHW, OIHW)."""
    n, c, hh, ww = x.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    cols = np.stack([xp[:, :, i:i + hh, j:j + ww] for i in range(3) for j in range(3)], axis=2)  # n c 9 h w
    return np.einsum("nckhw,mck->nmhw", cols, w.reshape(w.shape[0], c, 9).astype(np.float64))


def _conv_ref(x, w, b):
    """_conv3x3 + bias, then Relu."""
    return np.maximum(_conv3x3(x, w) + b[None, :, None, None], 0)


@pytest.mark.skipif(not _cpu_has_bf16(), reason="this CPU has no bfloat16 matrix instructions: "
                    "test_bf16_refused_without_the_instructions checks the refusal instead")
@pytest.mark.parametrize("batch", [1, 4])
def test_bf16_convolutions_round_both_operands(tmp_path, batch):
    """Conv + bias + Relu (one fused step): X and W rounded to bfloat16, float32 sums and output."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((batch, 32, 14, 14)).astype(np.float32)
    w = (rng.standard_normal((64, 32, 3, 3)) / 17).astype(np.float32)
    b = (rng.standard_normal(64) * 0.1).astype(np.float32)
    g = h.make_graph([h.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), h.make_node("Relu", ["c"], ["y"])],
                     "conv", [h.make_tensor_value_info("x", TP.FLOAT, list(x.shape))],
                     [h.make_tensor_value_info("y", TP.FLOAT, None)], [nh.from_array(w, "w"), nh.from_array(b, "b")])
    model, inp = tmp_path / "conv.onnx", tmp_path / "x.safetensors"
    onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), str(model))
    save_file({"x": x}, str(inp))
    outs = {}
    for prec in ("fp32", "bf16"):
        p = _ulc("--precision", prec, "run", model, "--input", inp, "-o", tmp_path / f"{prec}.safetensors")
        assert p.returncode == 0, p.stderr
        outs[prec] = load_file(str(tmp_path / f"{prec}.safetensors"))["y"]
    ref32, ref16 = _conv_ref(x, w, b), _conv_ref(_bf16(x), _bf16(w), b)
    assert _rel(outs["fp32"], ref32) < 1e-5
    assert _rel(outs["bf16"], ref16) < 2e-4
    assert 1e-4 < _rel(outs["bf16"], ref32) < 3e-2


@pytest.mark.skipif(_cpu_has_bf16(), reason="this CPU has bfloat16 matrix instructions: "
                    "test_bf16_products_round_both_operands runs instead")
def test_bf16_refused_without_the_instructions(mlp):
    d, model, inp, _ = mlp
    out = d / "never.safetensors"
    p = _ulc("--precision", "bf16", "run", model, "--input", inp, "-o", out)
    assert p.returncode == 2, p.stderr
    assert "no bfloat16 matrix instructions" in p.stderr and "use fp32" in p.stderr, p.stderr
    assert not out.exists()


def test_bf16_refused_where_oneDNN_is_held_below_it(mlp):
    """ONEDNN_MAX_CPU_ISA caps what oneDNN may use: bf16 is then refused on any machine."""
    d, model, inp, _ = mlp
    out = d / "capped.safetensors"
    p = _ulc("--precision", "bf16", "run", model, "--input", inp, "-o", out, env={"ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert p.returncode == 2, p.stderr
    assert "oneDNN's ISA here: avx2" in p.stderr, p.stderr
    assert not out.exists()


@pytest.mark.parametrize("args,code,needle", [
    (["--precision", "tf32"], 1, "applies to --device cuda only"),
    (["--precision", "fp16"], 1, "expected fp32, tf32 or bf16"),
    (["--device", "cuda", "--precision", "bf16"], 2, "not offered on cuda"),
])
def test_precision_refusals(mlp, args, code, needle):
    d, model, inp, _ = mlp
    # cuda: the emulator where it is built in (the refusal comes before any device is looked for)
    p = _ulc(*args, "run", model, "--input", inp, "-o", d / "refused.safetensors", env={"ULC_CUDA_EMULATE": "1"})
    assert p.returncode == code, p.stderr
    if "cuda" in args and "cuda" not in _ulc("--version").stdout:  # a build without it (the sanitizer's)
        needle = "built without the CUDA backend"
    assert needle in p.stderr, p.stderr
    assert not (d / "refused.safetensors").exists()


@pytest.mark.skipif(not _cpu_has_bf16(), reason="this CPU has no bfloat16 matrix instructions")
def test_bf16_main_job_names_its_precision(tmp_path):
    """The digits main job under bf16 (its convolutions in bfloat16; its head too small to pack):
    the gates pass and the report's device says bf16."""
    spec = json.loads(open(os.path.join(DIGITS, "forget_digit.json")).read())
    spec["data"] = {k: os.path.join(DIGITS, v) for k, v in spec["data"].items()}
    spec["gates"] = {"forget_acc_max": 0.05, "retain_acc_drop_max": 0.05}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    rep = tmp_path / "report.json"
    p = _ulc("--precision", "bf16", os.path.join(DIGITS, "digits_resnet.onnx"), "--forget", tmp_path / "spec.json",
             "-o", tmp_path / "out.onnx", "--report", rep, "-q")
    assert p.returncode == 0, p.stderr
    r = json.loads(rep.read_text())
    assert r["device"] == "cpu, bf16"
    assert r["gates"] and all(g["passed"] for g in r["gates"])


@pytest.mark.skipif(not _cpu_has_bf16(), reason="this CPU has no bfloat16 matrix instructions")
def test_bf16_training_follows_fp32_and_writes_float32(tmp_path):
    """Every weight of the digits ResNet trained 12 SGD steps under fp32 and under bf16: the same
    batches give a loss curve close to float32's (not the same bits: its convolutions ran in
    bfloat16), and the weights written are float32 with the same names."""
    curves, models = {}, {}
    for prec in ("fp32", "bf16"):
        out, lj = tmp_path / f"{prec}.onnx", tmp_path / f"{prec}.json"
        p = _ulc("--precision", prec, "train", os.path.join(DIGITS, "digits_resnet.onnx"), "--data",
                 os.path.join(DIGITS, "train.safetensors"), "-o", out, "--params", "*", "--optimizer", "sgd",
                 "--lr", "0.05", "--momentum", "0.9", "--batch-size", "64", "--max-steps", "12", "--seed", "1",
                 "-q", "--losses", lj)
        assert p.returncode == 0, p.stderr
        curves[prec] = np.array(json.loads(lj.read_text())["loss"], dtype=np.float64)
        models[prec] = onnx.load(str(out))
    a, b = curves["fp32"], curves["bf16"]
    assert a.shape == b.shape == (12,) and np.all(np.isfinite(b))
    assert not np.array_equal(a, b)
    # the model is trained already (losses ~4e-3, set by a few rows): bfloat16 moves each by ~5 %
    assert np.abs(a - b).max() <= 0.2 * np.abs(a).max(), (a, b)
    inits = {i.name: i for i in models["bf16"].graph.initializer}
    assert set(inits) == {i.name for i in models["fp32"].graph.initializer}
    assert all(i.data_type == TP.FLOAT for i in inits.values() if i.data_type in (TP.FLOAT, TP.BFLOAT16, TP.FLOAT16))


@pytest.mark.skipif(not _cpu_has_bf16(), reason="this CPU has no bfloat16 matrix instructions")
def test_bf16_convolution_input_gradient(tmp_path):
    """ulc grad through a 3x3 convolution: dX = the transposed convolution of dY with W, from dY and
    W rounded to bfloat16 under bf16 (float32 sums), float32's under fp32."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 32, 12, 12)).astype(np.float32)
    w = (rng.standard_normal((64, 32, 3, 3)) / 17).astype(np.float32)
    dy = rng.standard_normal((2, 64, 12, 12)).astype(np.float32)
    g = h.make_graph([h.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "conv",
                     [h.make_tensor_value_info("x", TP.FLOAT, list(x.shape))],
                     [h.make_tensor_value_info("y", TP.FLOAT, None)], [nh.from_array(w, "w")])
    model, feeds = tmp_path / "conv.onnx", tmp_path / "feeds.safetensors"
    onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), str(model))
    save_file({"x": x, "grad:y": dy}, str(feeds))
    got = {}
    for prec in ("fp32", "bf16"):
        out = tmp_path / f"g_{prec}.safetensors"
        p = _ulc("--precision", prec, "grad", model, "--input", feeds, "-o", out, "--wrt", "x")
        assert p.returncode == 0, p.stderr
        got[prec] = load_file(str(out))["grad:x"]
    wt = np.flip(w, axis=(2, 3)).transpose(1, 0, 2, 3)  # [C, M, 3, 3], taps reversed
    ref32, ref16 = _conv3x3(dy, wt), _conv3x3(_bf16(dy), _bf16(np.ascontiguousarray(wt)))
    assert _rel(got["fp32"], ref32) < 1e-5
    assert _rel(got["bf16"], ref16) < 2e-4
    assert 1e-4 < _rel(got["bf16"], ref32) < 3e-2
