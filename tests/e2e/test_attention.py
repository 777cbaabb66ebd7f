"""Fused attention (runtime/attn.c, runtime/cpu/k_attn.c): MatMul(Q, Kᵀ) → scale / masks →
Softmax → MatMul(·, V) as ViT's and GPT-2's exports spell it becomes one step. Every case is
checked against onnxruntime and against the unfused nodes (ULC_NO_ATTENTION_FUSION=1): the fused
step applies the nodes' own operations in their order, so the two agree to the bit on these
shapes; the plan's activations shrink by the score matrices it no longer holds.

Training graphs (and `ulc grad`) hold the same pattern as one ulc Attention node whose backward
recomputes the probabilities (train/attention.c, AttentionGrad): its gradients are checked here
against the unfused nodes' and in tests/grad against finite differences."""
import os
import re
import subprocess

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as TP, helper as h, numpy_helper as nh
from safetensors.numpy import load_file, save_file

from conftest import ulc_bin

ACT = re.compile(r"activations [0-9.]+ MiB \(([0-9.]+) MiB unshared\)")


def run(model, feeds, tmp_path, tag, env=None):
    inp = tmp_path / f"{tag}.in.safetensors"
    out = tmp_path / f"{tag}.out.safetensors"
    save_file(feeds, str(inp))
    p = subprocess.run([ulc_bin(), "run", str(model), "--input", str(inp), "-o", str(out), "--repeat", "2"],
                       capture_output=True, text=True, env=dict(os.environ, **(env or {})))
    assert p.returncode == 0, p.stderr
    return load_file(str(out)), float(ACT.search(p.stderr)[1])  # every activation's bytes


def heads(prefix, x, w, b, t, nh_, d, perm):
    """x · w + b reshaped to [B, T, H, D] and transposed by perm."""
    return [h.make_node("MatMul", [x, w], [f"{prefix}_mm"]), h.make_node("Add", [f"{prefix}_mm", b], [f"{prefix}_lin"]),
            h.make_node("Reshape", [f"{prefix}_lin", "shape4"], [f"{prefix}_4d"]),
            h.make_node("Transpose", [f"{prefix}_4d"], [f"{prefix}_h"], perm=perm)]


def attention_model(path, batch, t, nheads, d, style, seed=0):
    """One attention block; style "vit" (Div by √d), "gpt2" (Div, Cast, Where with the causal mask,
    Add of the padding mask, Cast after Softmax), "gpt2_rev" (Mul by 1/√d, Where(¬causal, fill,
    S)), "not_last_axis" (Softmax over the query axis: must stay unfused), "scores_out" (the
    scores are a graph output too: must stay unfused)."""
    rng = np.random.default_rng(seed)
    e = nheads * d
    inits = [nh.from_array(np.array([batch, t, nheads, d], np.int64), "shape4"),
             nh.from_array(np.array([batch, t, e], np.int64), "shape3")]
    for n in ("q", "k", "v"):
        inits += [nh.from_array((rng.standard_normal((e, e)) * 0.2).astype(np.float32), f"w{n}"),
                  nh.from_array((rng.standard_normal(e) * 0.1).astype(np.float32), f"b{n}")]
    nodes = heads("q", "x", "wq", "bq", t, nheads, d, [0, 2, 1, 3]) + \
        heads("k", "x", "wk", "bk", t, nheads, d, [0, 2, 3, 1]) + \
        heads("v", "x", "wv", "bv", t, nheads, d, [0, 2, 1, 3])
    nodes.append(h.make_node("MatMul", ["q_h", "k_h"], ["s"]))
    inputs = [h.make_tensor_value_info("x", TP.FLOAT, [batch, t, e])]
    feeds = {"x": rng.standard_normal((batch, t, e)).astype(np.float32)}
    inits.append(nh.from_array(np.array(np.sqrt(d), np.float32), "scale"))
    cur = "s"
    if style in ("vit", "not_last_axis", "scores_out", "gpt2"):
        nodes.append(h.make_node("Div", ["s", "scale"], ["s1"]))
        cur = "s1"
    if style in ("gpt2", "gpt2_rev"):
        causal = np.tril(np.ones((t, t), bool))[None, None]
        inits.append(nh.from_array(np.array(np.finfo(np.float32).min, np.float32), "fill"))
        if style == "gpt2":
            inits.append(nh.from_array(causal, "causal"))
            nodes += [h.make_node("Cast", [cur], ["s_c"], to=TP.FLOAT),
                      h.make_node("Where", ["causal", "s_c", "fill"], ["s_w"])]
        else:
            inits += [nh.from_array(~causal, "anticausal"),
                      nh.from_array(np.array(1 / np.sqrt(d), np.float32), "inv")]
            nodes += [h.make_node("Mul", ["inv", cur], ["s_m"]),
                      h.make_node("Where", ["anticausal", "fill", "s_m"], ["s_w"])]
        # the padding mask from an int64 input, as GPT-2 computes it: (1 - mask) · min
        mask = np.ones((batch, t), np.int64)
        mask[0, : t // 3] = 0  # left padding in the first sequence
        feeds["attention_mask"] = mask
        inputs.append(h.make_tensor_value_info("attention_mask", TP.INT64, [batch, t]))
        inits += [nh.from_array(np.array([1, 2], np.int64), "ax12"), nh.from_array(np.array(1.0, np.float32), "one")]
        nodes += [h.make_node("Unsqueeze", ["attention_mask", "ax12"], ["m4"]),
                  h.make_node("Cast", ["m4"], ["m4f"], to=TP.FLOAT), h.make_node("Sub", ["one", "m4f"], ["m_inv"]),
                  h.make_node("Mul", ["m_inv", "fill"], ["m_add"]), h.make_node("Add", ["s_w", "m_add"], ["s_a"])]
        cur = "s_a"
    axis = 2 if style == "not_last_axis" else -1
    nodes.append(h.make_node("Softmax", [cur], ["p"], axis=axis))
    cur = "p"
    if style == "gpt2":
        nodes.append(h.make_node("Cast", ["p"], ["p_c"], to=TP.FLOAT))
        cur = "p_c"
    nodes += [h.make_node("MatMul", [cur, "v_h"], ["o"]), h.make_node("Transpose", ["o"], ["o_t"], perm=[0, 2, 1, 3]),
              h.make_node("Reshape", ["o_t", "shape3"], ["y"])]
    outputs = [h.make_tensor_value_info("y", TP.FLOAT, None)]
    if style == "scores_out":
        outputs.append(h.make_tensor_value_info("s1", TP.FLOAT, None))
    g = h.make_graph(nodes, "attn", inputs, outputs, inits)
    onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), str(path))
    return feeds


def check(tmp_path, batch, t, nheads, d, style, fused_smaller):
    model = tmp_path / f"{style}_{t}.onnx"
    feeds = attention_model(model, batch, t, nheads, d, style)
    got, act = run(model, feeds, tmp_path, "fused")
    ref_nodes, act_nodes = run(model, feeds, tmp_path, "nodes", {"ULC_NO_ATTENTION_FUSION": "1"})
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    for name, ref in zip(names, sess.run(None, feeds)):
        scale = max(np.abs(ref).max(), 1e-6)
        assert np.abs(got[name].astype(np.float64) - ref).max() / scale <= 1e-5, (style, t, name)
        assert np.abs(got[name] - ref_nodes[name]).max() / scale <= 1e-6, (style, t, name)
    # the scores, their scaled/masked copies and P: at least two [B, H, T, T] matrices gone
    # (ulc prints MiB to a tenth: sizes below that are not measured)
    scores_mib = batch * nheads * t * t * 4 / 2**20
    if not fused_smaller:
        assert act == act_nodes, (act, act_nodes)
    elif scores_mib >= 0.2:
        assert act <= act_nodes - 2 * scores_mib + 0.1, (act, act_nodes, scores_mib)


@pytest.mark.parametrize("t", [5, 70, 197])
def test_vit_attention_fused(tmp_path, t):
    """ViT's spelling, query counts below, across and not a multiple of the 32-row blocks."""
    check(tmp_path, 2, t, 3, 16, "vit", True)


def test_long_keys_smaller_blocks(tmp_path):
    """600 keys: the kernel takes fewer query rows per block to keep the block in L2; the
    [3, 600, 600] scores (4 MiB) leave the arena."""
    check(tmp_path, 1, 600, 3, 8, "vit", True)


@pytest.mark.parametrize("style,t", [("gpt2", 37), ("gpt2", 128), ("gpt2_rev", 33)])
def test_gpt2_attention_fused(tmp_path, style, t):
    """GPT-2's spelling: the causal Where (either operand order), the padding mask's Add with
    left-padded rows, the Casts; Mul by 1/√d instead of Div."""
    check(tmp_path, 2, t, 4, 8, style, True)


@pytest.mark.parametrize("style", ["not_last_axis", "scores_out"])
def test_patterns_left_alone(tmp_path, style):
    """A Softmax over another axis, or scores read by something else, keep the nodes."""
    check(tmp_path, 2, 24, 2, 8, style, False)


@pytest.mark.parametrize("style,t", [("vit", 128), ("gpt2", 96), ("gpt2_rev", 64)])
def test_head_transposes_fold_in(tmp_path, style, t):
    """The Transposes that split the heads (Q and V of [B, T, H, D]) and merge them back are
    folded into the fused step: it reads and writes those layouts through strided views
    (runtime/attn.c; ULC_NO_ATTENTION_VIEWS=1 keeps them; Kᵀ's stays). Same outputs; the plan
    holds three [B, T, C] tensors fewer."""
    model = tmp_path / f"{style}_{t}.onnx"
    feeds = attention_model(model, 2, t, 4, 64, style)
    got, act = run(model, feeds, tmp_path, "views")
    ref, act_kept = run(model, feeds, tmp_path, "kept", {"ULC_NO_ATTENTION_VIEWS": "1"})
    scale = max(np.abs(ref["y"]).max(), 1e-6)
    assert np.abs(got["y"] - ref["y"]).max() / scale <= 1e-6
    tensor_mib = 2 * t * 256 * 4 / 2**20
    assert act <= act_kept - 2 * tensor_mib + 0.1, (act, act_kept, tensor_mib)


def test_head_transpose_read_elsewhere_stays(tmp_path):
    """A head-split Transpose whose output something else reads too (here: a graph output) is
    kept; the fused step reads it as it is."""
    model = tmp_path / "m.onnx"
    feeds = attention_model(model, 2, 40, 2, 8, "vit")
    m = onnx.load(str(model))
    m.graph.output.append(h.make_tensor_value_info("q_h", TP.FLOAT, None))
    onnx.save(m, str(model))
    got, _ = run(model, feeds, tmp_path, "fused")
    ref = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(["y", "q_h"], feeds)
    for name, r in zip(["y", "q_h"], ref):
        assert np.abs(got[name] - r).max() / max(np.abs(r).max(), 1e-6) <= 1e-5, name


def grads(model, feeds, tmp_path, tag, env=None):
    """`ulc grad` of Σ y with respect to x and every weight."""
    inp, out = tmp_path / f"{tag}.in.safetensors", tmp_path / f"{tag}.grad.safetensors"
    save_file(feeds, str(inp))
    p = subprocess.run([ulc_bin(), "grad", str(model), "--input", str(inp), "-o", str(out), "--wrt", "w*|b*|x",
                        "--threads", "2"], capture_output=True, text=True, env=dict(os.environ, **(env or {})))
    assert p.returncode == 0, p.stderr
    return load_file(str(out))


@pytest.mark.parametrize("style,t", [("vit", 197), ("gpt2", 37), ("gpt2_rev", 33), ("vit", 600)])
def test_backward_through_fused_attention(tmp_path, style, t):
    """The gradients through one Attention node (AttentionGrad: P recomputed block by block; at
    600 keys the query rows come in several blocks, dKᵀ and dV accumulated over them) against the
    unfused nodes' backward, which keeps S and P. bk gets no true gradient (softmax ignores a
    per-row constant), so each gradient is compared on the scale of the largest weight gradient."""
    model = tmp_path / f"{style}_{t}.onnx"
    feeds = attention_model(model, 2, t, 3, 16, style)
    got = grads(model, feeds, tmp_path, "fused")
    ref = grads(model, feeds, tmp_path, "nodes", {"ULC_NO_ATTENTION_FUSION": "1"})
    assert set(got) == set(ref)
    scale = max(np.abs(ref[k]).max() for k in ref if k.startswith("grad:w"))
    for k in ref:
        err = np.abs(got[k].astype(np.float64) - ref[k]).max()
        assert err <= 2e-6 * max(scale, np.abs(ref[k]).max()), (k, err, scale)
    # the fused backward did run: its sums round differently
    assert any(got[k].tobytes() != ref[k].tobytes() for k in ("grad:wq", "grad:wk", "grad:x"))


@pytest.mark.parametrize("case,msg", [
    ("kt_dim", "its dim 2 must be q's D = 4"),
    ("mask_dtype", "expected bool broadcasting to the scores' shape"),
    ("missing_mask", "reads input 3 (a mask), which is missing"),
    ("bad_code", "ops[0] = 7"),
])
def test_attention_op_refuses_bad_nodes(tmp_path, case, msg):
    """ulc's Attention node with inconsistent inputs or attributes: a clear error naming the
    node and what was expected, exit 2, never a crash."""
    q = np.zeros((2, 3, 5, 4), np.float32)
    kt = np.zeros((2, 3, 3 if case == "kt_dim" else 4, 6), np.float32)
    v = np.zeros((2, 3, 6, 2), np.float32)
    ins, inits = ["q", "kt", "v"], []
    ops, imms = [2], [-1e4]
    if case == "mask_dtype":
        inits.append(nh.from_array(np.ones((5, 6), np.float32), "m"))
        ins.append("m")
    elif case == "bad_code":
        ops = [7]
    elif case == "kt_dim":
        inits.append(nh.from_array(np.ones((5, 6), bool), "m"))
        ins.append("m")
    node = h.make_node("Attention", ins, ["y"], domain="ulc", ops=ops, imms=imms)
    feeds = {"q": q, "kt": kt, "v": v}
    g = h.make_graph([node], "a", [h.make_tensor_value_info(k, TP.FLOAT, list(a.shape)) for k, a in feeds.items()],
                     [h.make_tensor_value_info("y", TP.FLOAT, None)], inits)
    model = tmp_path / "bad.onnx"
    onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("ulc", 1)]), str(model))
    save_file(feeds, str(tmp_path / "in.safetensors"))
    p = subprocess.run([ulc_bin(), "run", str(model), "--input", str(tmp_path / "in.safetensors"), "-o",
                        str(tmp_path / "out.safetensors")], capture_output=True, text=True)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert msg in p.stderr and "Attention" in p.stderr, p.stderr


def test_head_dim_one_transposed_keys(tmp_path):
    """Keys [B, H, T, 1] transposed by [0, 1, 3, 2]: the Transpose's view would have row and
    column strides of 1, which no product reads (lda < Tk), so it stays; same result as
    onnxruntime."""
    b, hh, t = 2, 3, 9
    rng = np.random.default_rng(7)
    feeds = {k: rng.standard_normal((b, hh, t, 1)).astype(np.float32) for k in ("q", "k", "v")}
    nodes = [h.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]), h.make_node("MatMul", ["q", "kt"], ["s"]),
             h.make_node("Softmax", ["s"], ["p"], axis=-1), h.make_node("MatMul", ["p", "v"], ["y"])]
    g = h.make_graph(nodes, "a", [h.make_tensor_value_info(k, TP.FLOAT, list(v.shape)) for k, v in feeds.items()],
                     [h.make_tensor_value_info("y", TP.FLOAT, None)])
    model = tmp_path / "d1.onnx"
    onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), str(model))
    got, _ = run(model, feeds, tmp_path, "d1")
    ref = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(["y"], feeds)[0]
    assert np.abs(got["y"] - ref).max() <= 1e-5 * max(np.abs(ref).max(), 1.0)
