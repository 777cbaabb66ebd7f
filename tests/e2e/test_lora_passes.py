"""The lora-inject and lora-merge passes and `convert --emit-adapter` from the CLI (docs/cli.md):

  - inject then merge gives back the model byte for byte (PEFT's init: B = 0);
  - an injected model (init=random) runs in onnxruntime with the outputs of the base model whose
    weights got the LoRA delta computed here in numpy (W + scale * B @ A in the weight's layout);
  - merging gives the injected model's outputs, in the same pipeline or after an ONNX round trip
    (the adapters ride in the "ulc.lora" metadata), and the emitted PEFT adapter merged with
    `ulc merge` gives the same bytes;
  - targets / include / exclude select the expected modules (torch scopes read as module names);
  - bad options, grouped convolutions, half activations, an adapter directory that exists: a clear
    error, a non-zero exit and no output.
"""
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file

from conftest import ROOT, run_ulc

sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
import gen_exporters  # noqa: E402

EXIT_USAGE, EXIT_INPUT, EXIT_UNSUPPORTED = 1, 2, 4
FIXTURES = ["resnet18_op17.onnx", "vit_op17.onnx", "gpt2_tiny.onnx"]


@pytest.fixture(scope="module")
def exported(fixture_dir):
    return gen_exporters.generate(fixture_dir)


def ort_run(path, feeds):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def records(model):
    """The ulc.lora metadata of an ONNX model as a list of dicts (docs: ir/lora.h)."""
    from urllib.parse import unquote
    meta = {p.key: p.value for p in model.metadata_props}
    lines = meta["ulc.lora"].splitlines()
    assert lines[0] == "ulc.lora 1"
    out = []
    for line in lines[1:]:
        rec = dict(f.split("=", 1) for f in line.split(" "))
        out.append({k: unquote(v) for k, v in rec.items()})
    return out


def scale(rec):
    r, alpha = int(rec["r"]), float(rec["alpha"])
    return alpha / np.sqrt(r) if rec["rslora"] == "1" else alpha / r


def merged_weight(w, a, b, rec):
    """W + scale * delta in W's layout, float64 (a, b: the graph's factors)."""
    s = scale(rec)
    if rec["kind"] == "conv":
        d = np.einsum("or,ri...->oi...", b.reshape(b.shape[0], b.shape[1]).astype(np.float64), a)
    elif rec["kind"] == "linear_in_out":
        d = a.astype(np.float64) @ b           # [in, r] @ [r, out]
    else:
        d = (a.astype(np.float64) @ b).T       # [out, in]
    return (w + s * d).astype(np.float32)


def reference_model(base_path, injected, out_path):
    """The base model with every recorded weight replaced by W + delta."""
    inits = {i.name: numpy_helper.to_array(i) for i in injected.graph.initializer}
    base = onnx.load(str(base_path))
    new = {}
    for rec in records(injected):
        w = inits[rec["weight"]]
        new[rec["weight"]] = merged_weight(w, inits[rec["a"]], inits[rec["b"]], rec)
    for i in base.graph.initializer:
        if i.name in new:
            i.CopyFrom(numpy_helper.from_array(new[i.name], i.name))
    onnx.save(base, str(out_path))
    return len(new)


def modules(path):
    return [r["module"] for r in records(onnx.load(str(path)))]


@pytest.mark.parametrize("name", FIXTURES)
def test_inject_then_merge_is_the_identity(ulc, exported, tmp_path, name):
    src = exported / name
    plain, round_trip = tmp_path / "plain.onnx", tmp_path / "lora.onnx"
    assert ulc("convert", src, "-o", plain).returncode == 0
    r = ulc("convert", src, "-o", round_trip, "--passes", "lora-inject{rank=4},lora-merge",
            "--verify-each")
    assert r.returncode == 0, r.stderr
    assert "modules adapted (rank 4" in r.stderr
    assert plain.read_bytes() == round_trip.read_bytes()


@pytest.mark.parametrize("name", FIXTURES)
def test_injected_model_is_base_plus_delta(ulc, exported, tmp_path, name):
    src, inj, ref = exported / name, tmp_path / "inj.onnx", tmp_path / "ref.onnx"
    r = ulc("convert", src, "-o", inj, "--passes",
            "lora-inject{rank=4,alpha=6,init=random,seed=7}", "--verify-each")
    assert r.returncode == 0, r.stderr
    m = onnx.load(str(inj))
    onnx.checker.check_model(m)
    base = onnx.load(str(src))
    recs = records(m)
    n = reference_model(src, m, ref)
    assert n == len(recs) > 0
    assert len(m.graph.node) == len(base.graph.node) + 4 * n
    # names and structure (ir/lora.h)
    nodes = {nd.name: nd for nd in m.graph.node}
    inits = {i.name: i for i in m.graph.initializer}
    for rec in recs:
        mod = rec["module"]
        for part in ("lora_A", "lora_B", "lora_scale", "lora_add"):
            assert f"{mod}.{part}" in nodes
        assert nodes[f"{mod}.lora_add"].output[0] == rec["out"]
        assert nodes[rec["node"]].output[0] == rec["base_out"]
        assert inits[rec["a"]].data_type == TensorProto.FLOAT
        assert rec["a"] == f"{mod}.lora_A.weight" and rec["b"] == f"{mod}.lora_B.weight"
        assert numpy_helper.to_array(inits[f"{mod}.lora_scaling"]) == np.float32(6 / 4)
    feeds = gen_exporters.feeds(name)
    got, want = ort_run(inj, feeds), ort_run(ref, feeds)
    plain = ort_run(src, feeds)
    for g, w, p in zip(got, want, plain):
        tol = 1e-4 * max(1.0, float(np.abs(w).max()))
        assert np.abs(g - w).max() <= tol, float(np.abs(g - w).max())
        assert np.abs(g - p).max() > 100 * tol  # the adapters do change the outputs


# modules a PEFT adapter can name: not ViT's in_proj MatMul (its scope also holds out_proj's
# Gemm), not ResNet's convolutions (torch folded BatchNorm into their weights)
PEFT_SELECTION = {"resnet18_op17.onnx": "targets=Gemm", "vit_op17.onnx": "exclude=*self_attention",
                  "gpt2_tiny.onnx": "include=*"}


@pytest.mark.parametrize("name", FIXTURES)
def test_merge_keeps_outputs(ulc, exported, tmp_path, name):
    src = exported / name
    inj, back, once = tmp_path / "inj.onnx", tmp_path / "back.onnx", tmp_path / "once.onnx"
    p = "lora-inject{rank=3,init=random,seed=2,rslora=1}"
    assert ulc("convert", src, "-o", inj, "--passes", p).returncode == 0
    # merged after an ONNX round trip: the records come back from the metadata
    r = ulc("convert", inj, "-o", back, "--passes", "lora-merge", "--verify-each")
    assert r.returncode == 0, r.stderr
    # ... and in the same pipeline
    r = ulc("convert", src, "-o", once, "--passes", p + ",lora-merge")
    assert r.returncode == 0, r.stderr
    assert back.read_bytes() == once.read_bytes()
    m, base = onnx.load(str(back)), onnx.load(str(src))
    assert [n.name for n in m.graph.node] == [n.name for n in base.graph.node]
    assert [n.output for n in m.graph.node] == [n.output for n in base.graph.node]
    assert [i.name for i in m.graph.initializer] == [i.name for i in base.graph.initializer]
    assert "ulc.lora" not in {p.key for p in m.metadata_props}
    feeds = gen_exporters.feeds(name)
    for g, w in zip(ort_run(back, feeds), ort_run(inj, feeds)):
        assert np.allclose(g, w, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(w).max())))


@pytest.mark.parametrize("name", FIXTURES)
def test_emitted_adapter_merges_to_the_same_bytes(ulc, exported, tmp_path, name):
    src = exported / name
    inj, once, via_merge = tmp_path / "inj.onnx", tmp_path / "once.onnx", tmp_path / "via.onnx"
    p = f"lora-inject{{rank=3,init=random,seed=2,{PEFT_SELECTION[name]}}}"
    assert ulc("convert", src, "-o", inj, "--passes", p).returncode == 0
    ad = tmp_path / "adapter"
    r = ulc("convert", src, "-o", once, "--passes", p + ",lora-merge", "--emit-adapter", ad)
    assert r.returncode == 0, r.stderr
    # the emitted adapter, merged by `ulc merge`, gives the same bytes
    r = ulc("merge", src, "--lora", ad, "-o", via_merge)
    assert r.returncode == 0, r.stderr
    assert via_merge.read_bytes() == once.read_bytes()
    # PEFT's layout: lora_A [r, in(, k...)], lora_B [out, r(, 1...)]
    w = load_file(str(ad / "adapter_model.safetensors"))
    inj_m = onnx.load(str(inj))
    inits = {i.name: numpy_helper.to_array(i) for i in inj_m.graph.initializer}
    recs = records(inj_m)
    assert len(w) == 2 * len(recs)
    for rec in recs:
        a = w[f"base_model.model.{rec['module']}.lora_A.weight"]
        b = w[f"base_model.model.{rec['module']}.lora_B.weight"]
        ga, gb = inits[rec["a"]], inits[rec["b"]]
        if rec["kind"] == "conv":
            assert np.array_equal(a, ga) and np.array_equal(b, gb)
        else:
            assert np.array_equal(a, ga.T) and np.array_equal(b, gb.T)
    cfg = json.loads((ad / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["r"] == 3 and cfg["lora_alpha"] == 3
    assert cfg["target_modules"] == [r["module"] for r in recs]
    # GPT-2's Conv1D weights are [in, out], but its lm_head (torch's MatMul copy) is an nn.Linear
    assert cfg["fan_in_fan_out"] is False


def test_merged_weights_are_bit_exact_and_skip_zero_deltas(ulc, tmp_path):
    """-0.0 weights stay -0.0 when B = 0; a random adapter changes exactly the adapted weights."""
    w = np.array([[-0.0, 1.0, 2.0], [3.0, -0.0, 5.0]], np.float32)  # [in 2, out 3]
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "fc.weight"], ["y"], name="/fc/MatMul")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(w, "fc.weight")])
    src = tmp_path / "m.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    plain, out = tmp_path / "plain.onnx", tmp_path / "out.onnx"
    assert ulc("convert", src, "-o", plain).returncode == 0
    r = ulc("convert", src, "-o", out, "--passes", "lora-inject{rank=1},lora-merge")
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == plain.read_bytes()
    got = numpy_helper.to_array(onnx.load(str(out)).graph.initializer[0])
    assert np.signbit(got[0, 0]) and np.signbit(got[1, 1])


def test_selection(ulc, exported, tmp_path):
    vit, rn, gpt = exported / "vit_op17.onnx", exported / "resnet18_op17.onnx", exported / "gpt2_tiny.onnx"
    out = tmp_path / "o.onnx"

    def chosen(src, opts):
        r = ulc("convert", src, "-o", out, "--passes", f"lora-inject{{{opts}}}")
        assert r.returncode == 0, r.stderr
        return modules(out)

    assert chosen(vit, "targets=Gemm") == [
        "encoder.layers.encoder_layer_0.self_attention.out_proj",
        "encoder.layers.encoder_layer_1.self_attention.out_proj", "heads.head"]
    assert chosen(vit, "targets=Conv|MatMul,include=conv_proj|*.mlp.*,exclude=*layer_1*") == [
        "conv_proj", "encoder.layers.encoder_layer_0.mlp.0", "encoder.layers.encoder_layer_0.mlp.3"]
    # torch scopes: "/layer2/layer2.0/downsample/downsample.0/Conv" is module layer2.0.downsample.0
    conv = chosen(rn, "targets=Conv")
    assert len(conv) == 20 and conv[0] == "conv1" and "layer1.0.conv1" in conv
    assert "layer2.0.downsample.0" in conv
    assert chosen(rn, "include=fc") == ["fc"]
    g = chosen(gpt, "include=*.h.1.*")
    assert g == [f"m.transformer.h.1.{x}" for x in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")]
    kinds = {r["module"]: r["kind"] for r in records(onnx.load(str(out)))}
    assert set(kinds.values()) == {"linear_in_out"}  # GPT2's Conv1D weights, Gemm transB=0
    assert chosen(gpt, "include=m.lm_head") == ["m.lm_head"]  # torch's MatMul copy, by scope
    # nothing matches: fine, nothing changes
    r = ulc("convert", vit, "-o", out, "--passes", "lora-inject{include=nothing}")
    assert r.returncode == 0 and "0 modules adapted" in r.stderr


def test_inject_twice_and_again_after_merge(ulc, exported, tmp_path):
    vit = exported / "vit_op17.onnx"
    out, plain = tmp_path / "o.onnx", tmp_path / "p.onnx"
    r = ulc("convert", vit, "-o", out, "--passes",
            "lora-inject{include=heads.head,rank=2},lora-inject{targets=Gemm,rank=4}")
    assert r.returncode == 0, r.stderr
    assert "already adapted" in r.stderr
    recs = records(onnx.load(str(out)))
    assert [(x["module"], x["r"]) for x in recs] == [
        ("heads.head", "2"), ("encoder.layers.encoder_layer_0.self_attention.out_proj", "4"),
        ("encoder.layers.encoder_layer_1.self_attention.out_proj", "4")]
    # merge, inject the same modules again, merge: the names a merge left behind are reused
    assert ulc("convert", vit, "-o", plain).returncode == 0
    r = ulc("convert", vit, "-o", out, "--passes",
            "lora-inject{targets=Gemm},lora-merge,lora-inject{targets=Gemm},lora-merge",
            "--verify-each")
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == plain.read_bytes()


def small_model(tmp_path, nodes, inits, x_shape, y_shape, name="m.onnx"):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    p = tmp_path / name
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(p))
    return p


@pytest.mark.parametrize("case", ["conv1d", "conv3d_dilated", "conv2d_same", "gemm_alpha", "matmul_transpose",
                                  "matmul_rank3"])
def test_other_layouts(ulc, tmp_path, case):
    """Conv of any rank (strides, pads, dilations kept), Gemm with alpha, the graph builders'
    MatMul(x, Transpose(W)), a rank-3 MatMul input: base + delta, and merge gives it back."""
    rng = np.random.default_rng(0)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    if case == "conv1d":
        nodes = [helper.make_node("Conv", ["x", "c.weight", "c.bias"], ["y"], name="/c/Conv",
                                  kernel_shape=[3], pads=[1, 1], strides=[2])]
        inits, xs, ys = {"c.weight": f(6, 4, 3), "c.bias": f(6)}, [2, 4, 9], [2, 6, 5]
    elif case == "conv3d_dilated":
        nodes = [helper.make_node("Conv", ["x", "c.weight"], ["y"], name="/c/Conv",
                                  dilations=[1, 2, 1], pads=[0, 2, 1, 1, 2, 1])]
        inits, xs, ys = {"c.weight": f(5, 3, 2, 3, 3)}, [1, 3, 4, 6, 5], [1, 5, 4, 6, 5]
    elif case == "conv2d_same":
        nodes = [helper.make_node("Conv", ["x", "c.weight"], ["y"], name="/c/Conv",
                                  strides=[2, 2], auto_pad="SAME_UPPER")]
        inits, xs, ys = {"c.weight": f(4, 3, 4, 4)}, [2, 3, 7, 7], [2, 4, 4, 4]
    elif case == "gemm_alpha":
        nodes = [helper.make_node("Gemm", ["x", "fc.weight", "fc.bias"], ["y"], name="/fc/Gemm",
                                  alpha=0.5, beta=2.0, transB=1)]
        inits, xs, ys = {"fc.weight": f(7, 5), "fc.bias": f(7)}, [3, 5], [3, 7]
    elif case == "matmul_transpose":
        nodes = [helper.make_node("Transpose", ["q.weight"], ["wt"], name="/q/Transpose", perm=[1, 0]),
                 helper.make_node("MatMul", ["x", "wt"], ["y"], name="/q/MatMul")]
        inits, xs, ys = {"q.weight": f(6, 6)}, [2, 3, 6], [2, 3, 6]
    else:
        nodes = [helper.make_node("MatMul", ["x", "onnx::MatMul_9"], ["y"], name="/enc/lin/MatMul")]
        inits, xs, ys = {"onnx::MatMul_9": f(4, 6)}, [2, 3, 4], [2, 3, 6]
    src = small_model(tmp_path, nodes, inits, xs, ys)
    inj, ref, back = tmp_path / "inj.onnx", tmp_path / "ref.onnx", tmp_path / "back.onnx"
    r = ulc("convert", src, "-o", inj, "--passes", "lora-inject{rank=2,init=random,seed=1}")
    assert r.returncode == 0, r.stderr
    m = onnx.load(str(inj))
    onnx.checker.check_model(m)
    assert reference_model(src, m, ref) == 1
    x = {"x": f(*xs)}
    (got,), (want,) = ort_run(inj, x), ort_run(ref, x)
    assert np.allclose(got, want, rtol=1e-4, atol=1e-5), float(np.abs(got - want).max())
    r = ulc("convert", inj, "-o", back, "--passes", "lora-merge")
    assert r.returncode == 0, r.stderr
    (merged,) = ort_run(back, x)
    assert np.allclose(merged, got, rtol=1e-4, atol=1e-5)
    assert [n.name for n in onnx.load(str(back)).graph.node] == [n.name for n in nodes]
    if case == "matmul_rank3":
        assert records(m)[0]["module"] == "enc.lin"


def test_bad_options_and_graphs(ulc, tmp_path):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 4)).astype(np.float32)
    mm = small_model(tmp_path, [helper.make_node("MatMul", ["x", "fc.weight"], ["y"], name="/fc/MatMul")],
                     {"fc.weight": w}, [2, 4], [2, 4])
    out = tmp_path / "out.onnx"

    def fails(src, passes, code, *words, extra=()):
        r = ulc("convert", src, "-o", out, "--passes", passes, *extra)
        assert r.returncode == code, (passes, r.returncode, r.stderr)
        for wd in words:
            assert wd in r.stderr, (wd, r.stderr)
        assert not out.exists()
        return r

    fails(mm, "lora-inject{ranks=4}", EXIT_USAGE, "unknown option 'ranks'", "rank")
    fails(mm, "lora-inject{rank=0}", EXIT_USAGE, "rank=0")
    fails(mm, "lora-inject{rank=four}", EXIT_USAGE, "rank=four")
    fails(mm, "lora-inject{alpha=-1}", EXIT_USAGE, "alpha=-1")
    fails(mm, "lora-inject{targets=Relu}", EXIT_USAGE, "'Relu'")
    fails(mm, "lora-inject{init=xavier}", EXIT_USAGE, "init=xavier")
    fails(mm, "lora-inject{rslora=2}", EXIT_USAGE, "rslora=2")
    fails(mm, "lora-merge{keep=1}", EXIT_USAGE, "unknown option 'keep'")
    fails(mm, "lora-merge", EXIT_INPUT, "no LoRA adapters")
    # grouped convolution: named, with the way out
    gc = small_model(tmp_path, [helper.make_node("Conv", ["x", "dw.weight"], ["y"], name="/dw/Conv",
                                                 group=4, kernel_shape=[3, 3], pads=[1, 1, 1, 1])],
                     {"dw.weight": rng.standard_normal((4, 1, 3, 3)).astype(np.float32)},
                     [1, 4, 5, 5], [1, 4, 5, 5], "gc.onnx")
    fails(gc, "lora-inject", EXIT_UNSUPPORTED, "/dw/Conv", "group=4", "exclude=dw")
    assert ulc("convert", gc, "-o", out, "--passes", "lora-inject{exclude=dw}").returncode == 0
    out.unlink()
    # Gemm with transA; a half-precision weight
    ta = small_model(tmp_path, [helper.make_node("Gemm", ["x", "fc.weight"], ["y"], name="/fc/Gemm",
                                                 transA=1)], {"fc.weight": w}, [4, 2], [2, 4], "ta.onnx")
    fails(ta, "lora-inject", EXIT_UNSUPPORTED, "/fc/Gemm", "transA")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "fc.weight"], ["y"], name="/fc/MatMul")],
                          "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [2, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [2, 4])],
                          [numpy_helper.from_array(w.astype(np.float16), "fc.weight")])
    half = tmp_path / "half.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(half))
    fails(half, "lora-inject", EXIT_UNSUPPORTED, "/fc/MatMul", "input 'x' is f16", "exclude=fc")
    # a half weight with float32 activations is adapted (tests/e2e/test_half.py: the arithmetic)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "fc.weight"], ["y"], name="/fc/MatMul")],
                          "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
                          [numpy_helper.from_array(w.astype(np.float16), "fc.weight")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(half))
    r = ulc("convert", half, "-o", out, "--passes", "lora-inject{init=random},lora-merge")
    assert r.returncode == 0 and "1 module adapted" in r.stderr, r.stderr
    merged = {i.name: i for i in onnx.load(str(out)).graph.initializer}
    assert merged["fc.weight"].data_type == TensorProto.FLOAT16
    out.unlink()
    # a shared weight is skipped, and said so
    sh = small_model(tmp_path, [helper.make_node("MatMul", ["x", "fc.weight"], ["h"], name="/a/MatMul"),
                                helper.make_node("MatMul", ["h", "fc.weight"], ["y"], name="/b/MatMul")],
                     {"fc.weight": w}, [2, 4], [2, 4], "sh.onnx")
    r = ulc("convert", sh, "-o", out, "--passes", "lora-inject")
    assert r.returncode == 0 and "0 modules adapted" in r.stderr and "shared" in r.stderr
    out.unlink()


def test_emit_adapter_errors(ulc, exported, tmp_path):
    vit = exported / "vit_op17.onnx"
    out, ad = tmp_path / "out.onnx", tmp_path / "ad"
    # no adapters
    r = ulc("convert", vit, "-o", out, "--emit-adapter", ad)
    assert r.returncode == EXIT_INPUT and "no LoRA adapters" in r.stderr
    assert not out.exists() and not ad.exists()
    # a module PEFT cannot name: ViT's in_proj MatMul shares its scope with out_proj's Gemm
    r = ulc("convert", vit, "-o", out, "--passes", "lora-inject", "--emit-adapter", ad)
    assert r.returncode == EXIT_UNSUPPORTED, r.stderr
    assert "self_attention" in r.stderr and "exclude=" in r.stderr
    assert not out.exists() and not ad.exists()
    # resnet: torch folded BatchNorm into the Conv weights (onnx::Conv_*)
    rn = exported / "resnet18_op17.onnx"
    r = ulc("convert", rn, "-o", out, "--passes", "lora-inject{targets=Conv}", "--emit-adapter", ad)
    assert r.returncode == EXIT_UNSUPPORTED and "onnx::Conv_" in r.stderr
    assert not out.exists() and not ad.exists()
    # existing files are never overwritten; nothing else is written either
    p = "lora-inject{targets=Gemm}"
    assert ulc("convert", vit, "-o", out, "--passes", p, "--emit-adapter", ad).returncode == 0
    cfg = (ad / "adapter_config.json").read_bytes()
    out2 = tmp_path / "out2.onnx"
    r = ulc("convert", vit, "-o", out2, "--passes", p, "--emit-adapter", ad)
    assert r.returncode == EXIT_USAGE and "already exists" in r.stderr
    assert not out2.exists() and (ad / "adapter_config.json").read_bytes() == cfg
    notdir = tmp_path / "file"
    notdir.write_text("x")
    r = ulc("convert", vit, "-o", out2, "--passes", p, "--emit-adapter", notdir)
    assert r.returncode == EXIT_USAGE and "not a directory" in r.stderr
    # an injected model read back can emit its adapter without passes
    ad2 = tmp_path / "ad2"
    r = ulc("convert", out, "-o", out2, "--emit-adapter", ad2)
    assert r.returncode == 0, r.stderr
    assert load_file(str(ad2 / "adapter_model.safetensors")).keys() == \
        load_file(str(ad / "adapter_model.safetensors")).keys()


def test_init_and_seed(ulc, exported, tmp_path):
    """PEFT's init: B = 0, A ~ U(+-1/sqrt(fan_in)); draws depend on the seed and the module only."""
    vit = exported / "vit_op17.onnx"

    def factors(opts, name):
        out = tmp_path / f"{name}.onnx"
        r = ulc("convert", vit, "-o", out, "--passes", f"lora-inject{{{opts}}}")
        assert r.returncode == 0, r.stderr
        return initializers_of(out)

    full = factors("rank=8", "full")
    a, b = full["conv_proj.lora_A.weight"], full["conv_proj.lora_B.weight"]
    assert a.shape == (8, 3, 8, 8) and b.shape == (64, 8, 1, 1)
    bound = 1 / np.sqrt(3 * 8 * 8)
    assert not b.any() and np.abs(a).max() <= bound and np.abs(a).max() > 0.95 * bound
    assert abs(float(a.mean())) < 0.1 * bound
    head_a = full["heads.head.lora_A.weight"]  # [in 64, r 8]
    assert head_a.shape == (64, 8) and np.abs(head_a).max() <= 1 / 8
    only = factors("rank=8,include=heads.head", "only")
    assert np.array_equal(only["heads.head.lora_A.weight"], head_a)
    again = factors("rank=8", "again")
    assert all(np.array_equal(again[k], v) for k, v in full.items())
    other = factors("rank=8,seed=1", "other")
    assert not np.array_equal(other["heads.head.lora_A.weight"], head_a)
    rnd = factors("rank=8,init=random,include=heads.head", "rnd")
    b = rnd["heads.head.lora_B.weight"]  # [r 8, out 10]
    assert b.shape == (8, 10) and b.any() and np.abs(b).max() <= 1 / np.sqrt(8)


def initializers_of(path):
    return {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
