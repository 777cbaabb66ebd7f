"""The CUDA backend's attention family (runtime/cuda/k_attn.cu) against the CPU runtime
(runtime/cpu/k_attn.c):

  - the planner's fused step (runtime/attn.c): ONNX models spelling attention as MatMul(Q, Kᵀ)
    → Div/Mul by a scale → Where with a bool mask / Add of a float mask → Softmax → MatMul(·, V),
    with the heads' Transposes ([B, T, H, D] → [B, H, T, D] and back) that the planner folds
    into strided views, so the flash kernel reads Q and V and writes O through them;
  - ulc's Attention and AttentionGrad nodes (domain "ulc", what training graphs hold) directly,
    with masks broadcasting to the scores, outputs left out, empty key sets.

Operands and masks are graph inputs (or, for the fused step, Reshapes of them), so the nodes
run on the device and nothing folds; the fused tests also check, from the device's profile,
that the plan ran one fused step. Tolerance: 1e-5 of the largest |cpu| value (the online softmax
sums in another order than the CPU's row softmax; cuBLAS's products in another than oneDNN's).
"""
import numpy as np
import pytest
from onnx import TensorProto, helper

from cuda_common import assert_close, cuda_mode, run_both, run_model, save_model  # noqa: F401 (the fixture)

RNG = np.random.default_rng(2024)


def rnd(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def scalar(v):
    return np.array(v, np.float32)


# ---- the planner's fused step -------------------------------------------------------------------
#
# The fused step's operands must be made by steps of the plan (or be constants): each tensor
# operand comes in flat and a Reshape gives it its shape (as the exports' head splits do).

def fused_nodes(ops, views=True):
    """The attention nodes: q [B, Tq, H, D] and v [B, Tk, H, Dv] transposed to heads-first (when
    views), kt [B, H, D, Tk]; ops: the score transforms as ("div"|"mul", init), ("where", cond,
    fill, s_is_x), ("add", mask); the output transposed back to [B, Tq, H, Dv] (when views)."""
    nodes = []
    q, v = "q", "v"
    if views:
        nodes += [helper.make_node("Transpose", ["q"], ["qh"], perm=[0, 2, 1, 3]),
                  helper.make_node("Transpose", ["v"], ["vh"], perm=[0, 2, 1, 3])]
        q, v = "qh", "vh"
    nodes.append(helper.make_node("MatMul", [q, "kt"], ["s0"]))
    cur = "s0"
    for i, op in enumerate(ops):
        out = f"s{i + 1}"
        if op[0] in ("div", "mul"):
            nodes.append(helper.make_node(op[0].capitalize(), [cur, op[1]], [out]))
        elif op[0] == "where":
            _, cond, fill, s_is_x = op
            nodes.append(helper.make_node("Where", [cond, cur, fill] if s_is_x else [cond, fill, cur], [out]))
        else:
            nodes.append(helper.make_node("Add", [op[1], cur], [out]))
        cur = out
    nodes += [helper.make_node("Softmax", [cur], ["p"], axis=-1),
              helper.make_node("MatMul", ["p", v], ["o"] if views else ["y"])]
    if views:
        nodes.append(helper.make_node("Transpose", ["o"], ["y"], perm=[0, 2, 1, 3]))
    return nodes


def run_fused(tmp_path, mode, ops, feeds, inits, views=True):
    """The model of fused_nodes(ops) with every feed given flat and reshaped: cpu and cuda
    outputs."""
    nodes, flat = [], {}
    inits = dict(inits)
    for name, x in feeds.items():
        flat[name + "_flat"] = x.reshape(-1)
        inits[name + "_shape"] = np.array(x.shape, np.int64)
        nodes.append(helper.make_node("Reshape", [name + "_flat", name + "_shape"], [name]))
    out = run_both(tmp_path, nodes + fused_nodes(ops, views), flat, ["y"], mode, inits=inits)
    # the device ran one fused step: its profile holds one MatMul (the step takes the last
    # node's place) and no Softmax, scale, mask or Transpose of the heads
    p = run_model(tmp_path, tmp_path / "m.onnx", flat, "cuda", mode, tag="prof", check=False,
                  extra=("--repeat", "2", "--profile"))
    assert p.returncode == 0, p.stderr
    table = p.stderr.split("mean ms\n", 1)[1].split("slowest nodes", 1)[0]
    ran = {line.split()[0]: int(line.split()[3]) for line in table.strip().splitlines()}
    assert ran == {"MatMul": 1}, f"not one fused step: {ran}"
    return out


def fused_case(b, h, tq, tk, d, dv, views=True):
    if views:
        return {"q": rnd(b, tq, h, d), "kt": rnd(b, h, d, tk), "v": rnd(b, tk, h, dv)}
    return {"q": rnd(b, h, tq, d), "kt": rnd(b, h, d, tk), "v": rnd(b, h, tk, dv)}


def causal(tq, tk):
    """[1, 1, Tq, Tk]: query i (the last Tq of Tk positions) sees keys up to Tk - Tq + i."""
    return np.tril(np.ones((tq, tk), bool), k=tk - tq)[None, None]


def padding(b, tk, fill):
    """[B, 1, 1, Tk] float: 0 where a key is real, `fill` for left padding (batch entry 0)."""
    m = np.zeros((b, 1, 1, tk), np.float32)
    m[0, ..., : max(1, tk // 3)] = fill
    return m


@pytest.mark.parametrize("b,h,tq,tk,d", [(2, 3, 37, 37, 8), (1, 2, 70, 45, 64), (2, 2, 5, 33, 8)])
def test_fused_scale_only(tmp_path, cuda_mode, b, h, tq, tk, d):
    """ViT's spelling (Div by √D) through the heads' views: D 8 and 64, Tq != Tk, sizes that
    are not multiples of the tiles (32 keys, 4..64 query rows)."""
    feeds = fused_case(b, h, tq, tk, d, d)
    inits = {"scale": scalar(np.sqrt(d))}
    cpu, cuda = run_fused(tmp_path, cuda_mode, [("div", "scale")], feeds, inits)
    assert_close(cpu, cuda, what=f"fused {b},{h},{tq},{tk},{d}")


@pytest.mark.parametrize("tq,tk", [(40, 40), (17, 70)])
def test_fused_causal_and_padding(tmp_path, cuda_mode, tq, tk):
    """GPT-2's spelling: Div, Where(causal, S, min) with the causal mask an initializer
    [1, 1, Tq, Tk], then Add of a [B, 1, 1, Tk] padding mask given as an input (left padding:
    the padded rows of batch entry 0 see only -FLT_MAX scores)."""
    b, h, d = 2, 2, 64
    feeds = fused_case(b, h, tq, tk, d, d)
    fill = np.finfo(np.float32).min
    feeds["pad"] = padding(b, tk, fill)
    inits = {"scale": scalar(np.sqrt(d)), "causal": causal(tq, tk), "fill": scalar(fill)}
    ops = [("div", "scale"), ("where", "causal", "fill", True), ("add", "pad")]
    cpu, cuda = run_fused(tmp_path, cuda_mode, ops, feeds, inits)
    assert_close(cpu, cuda, what=f"causal {tq},{tk}")


def test_fused_mul_reversed_where_as_input(tmp_path, cuda_mode):
    """Mul by 1/√D first, then Where(¬causal, fill, S) (the fill on the true side) with the
    mask a graph input of shape [Tq, Tk] (broadcast over batch and heads)."""
    b, h, tq, tk, d = 2, 3, 33, 33, 8
    feeds = fused_case(b, h, tq, tk, d, d)
    feeds["anti"] = ~causal(tq, tk)[0, 0]
    inits = {"inv": scalar(1 / np.sqrt(d)), "fill": scalar(-1e4)}
    ops = [("mul", "inv"), ("where", "anti", "fill", False)]
    cpu, cuda = run_fused(tmp_path, cuda_mode, ops, feeds, inits)
    assert_close(cpu, cuda, what="mul + where(fill, S)")


def test_fused_fully_masked_rows(tmp_path, cuda_mode):
    """A row whose every score is -inf (a Where with fill -inf and a mask row all false, and
    the padding Add of -inf on a whole batch entry): the CPU's softmax gives NaN there (0 / 0),
    and so does the GPU; every other row is finite and matches."""
    b, h, tq, tk, d = 2, 2, 9, 40, 8
    feeds = fused_case(b, h, tq, tk, d, d)
    cond = np.ones((1, 1, tq, tk), bool)
    cond[..., 3, :] = False          # row 3 of every entry fully masked
    cond[..., 5, 7:] = False         # row 5: some keys left
    cond[..., 6, :35] = False        # row 6: the first key tile all -inf, then scores
    feeds["cond"] = cond
    pad = np.zeros((b, 1, 1, tk), np.float32)
    pad[1, ..., :] = -np.inf         # batch entry 1: every key padded
    feeds["pad"] = pad
    inits = {"scale": scalar(np.sqrt(d)), "fill": scalar(-np.inf)}
    ops = [("div", "scale"), ("where", "cond", "fill", True), ("add", "pad")]
    cpu, cuda = run_fused(tmp_path, cuda_mode, ops, feeds, inits)
    y = cpu["y"]
    assert np.isnan(y[0, 3]).all() and np.isnan(y[1]).all() and np.isfinite(y[0, 5:7]).all()
    assert_close(cpu, cuda, what="fully masked rows")


@pytest.mark.parametrize("d,dv,tq", [(80, 80, 20), (128, 32, 50), (160, 200, 6), (3, 5, 1)])
def test_fused_head_dims(tmp_path, cuda_mode, d, dv, tq):
    """Head dims 80 (three column groups per lane), 128, past 128 (D in chunks, Dv in two
    passes of 128 columns), odd ones (3 and 5: padded to the float4 step); one query row."""
    b, h, tk = 1, 2, 35
    feeds = fused_case(b, h, tq, tk, d, dv)
    inits = {"scale": scalar(np.sqrt(d))}
    cpu, cuda = run_fused(tmp_path, cuda_mode, [("div", "scale")], feeds, inits)
    assert_close(cpu, cuda, what=f"d {d} dv {dv}")


def test_fused_dense_rank3(tmp_path, cuda_mode):
    """No heads' Transposes (dense operands) and rank 3 ([B, T, D]), more query tiles than the
    emulator's 8 blocks so the tile loop wraps; an Add of a scalar (a one-element mask) and of a
    [B, 1, Tk] padding mask."""
    b, tq, tk, d = 5, 70, 50, 16
    feeds = {"q": rnd(b, tq, d), "kt": rnd(b, d, tk), "v": rnd(b, tk, d)}
    feeds["pad"] = padding(b, tk, -1e9)[:, 0]
    inits = {"scale": scalar(0.25), "bias": scalar(0.75)}
    ops = [("mul", "scale"), ("add", "bias"), ("add", "pad")]
    cpu, cuda = run_fused(tmp_path, cuda_mode, ops, feeds, inits, views=False)
    assert_close(cpu, cuda, what="rank 3")


# ---- ulc's Attention and AttentionGrad ----------------------------------------------------------

def attn_node(op, ins, outs, ops, imms):
    return helper.make_node(op, ins, outs, domain="ulc", ops=ops, imms=[float(x) for x in imms])


def attn_inputs(lead, tq, tk, d, dv, grad=False):
    f = {"q": rnd(*lead, tq, d), "kt": rnd(*lead, d, tk), "v": rnd(*lead, tk, dv)}
    if grad:
        f["do"] = rnd(*lead, tq, dv)
    return f


@pytest.mark.parametrize("lead,tq,tk,d,dv", [((2, 3), 37, 29, 16, 8), ((), 5, 70, 8, 12), ((2, 1, 2), 9, 9, 4, 4)])
def test_attention_op(tmp_path, cuda_mode, lead, tq, tk, d, dv):
    """Attention with Div, Where (keep where true), Add: masks of shapes [Tq, Tk] (bool) and
    [..., 1, Tk] (float) broadcasting to the scores; ranks 2 to 5."""
    feeds = attn_inputs(lead, tq, tk, d, dv)
    feeds["m"] = causal(tq, tk)[0, 0] if tq <= tk else np.tril(np.ones((tq, tk), bool))
    feeds["a"] = rnd(*lead[:-1], *([1] if lead else []), 1, tk, scale=0.5) if lead else rnd(1, tk)
    node = attn_node("Attention", ["q", "kt", "v", "m", "a"], ["o"], [1, 2, 4], [np.sqrt(d), -1e4, 0])
    cpu, cuda = run_both(tmp_path, [node], feeds, ["o"], cuda_mode)
    assert_close(cpu, cuda, what=f"Attention {lead}")


def test_attention_op_mul_where_fill_on_true(tmp_path, cuda_mode):
    """ops 0 (Mul) and 3 (Where: the fill where the mask is true), with a fully masked row
    (fill -inf: NaN as on the CPU)."""
    lead, tq, tk, d, dv = (2, 2), 6, 33, 8, 8
    feeds = attn_inputs(lead, tq, tk, d, dv)
    m = ~causal(tq, tk)
    m[..., 2, :] = True
    feeds["m"] = m
    node = attn_node("Attention", ["q", "kt", "v", "m"], ["o"], [0, 3], [0.3, -np.inf])
    cpu, cuda = run_both(tmp_path, [node], feeds, ["o"], cuda_mode)
    assert np.isnan(cpu["o"][..., 2, :]).all()
    assert_close(cpu, cuda, what="Attention mul/where-on-true")


def test_attention_op_no_keys(tmp_path, cuda_mode):
    """Tk = 0: O is an empty sum (zeros); AttentionGrad's outputs too."""
    lead, tq, d, dv = (2,), 4, 3, 5
    feeds = attn_inputs(lead, tq, 0, d, dv, grad=True)
    nodes = [attn_node("Attention", ["q", "kt", "v"], ["o"], [1], [2.0]),
             attn_node("AttentionGrad", ["q", "kt", "v", "do"], ["dq", "dkt", "dv"], [1], [2.0])]
    cpu, cuda = run_both(tmp_path, nodes, feeds, ["o", "dq", "dkt", "dv"], cuda_mode)
    assert not cpu["o"].any() and not cpu["dq"].any()
    assert_close(cpu, cuda, what="no keys")


@pytest.mark.parametrize("lead,tq,tk,d,dv,chunk", [((2, 3), 37, 29, 16, 8, None), ((), 45, 70, 8, 12, None),
                                                   ((2, 1, 2), 9, 9, 4, 4, None), ((2, 3), 11, 13, 8, 8, 4)])
def test_attention_grad(tmp_path, cuda_mode, monkeypatch, lead, tq, tk, d, dv, chunk):
    """AttentionGrad: dq, dkt, dv with Div, Where (keep where true) and a float Add mask
    (broadcast); P recomputed; the transforms undone (scale, masked scores zero). chunk: the
    batch entries per chunk of the gradient's scratch (6 entries in chunks of 4, 2)."""
    if chunk:
        monkeypatch.setenv("ULC_CUDA_ATTN_GRAD_CHUNK", str(chunk))
    feeds = attn_inputs(lead, tq, tk, d, dv, grad=True)
    feeds["m"] = np.tril(np.ones((tq, tk), bool), k=max(0, tk - tq))
    feeds["a"] = rnd(1, tk, scale=0.5)
    node = attn_node("AttentionGrad", ["q", "kt", "v", "do", "m", "a"], ["dq", "dkt", "dv"], [1, 2, 4],
                     [np.sqrt(d), -1e4, 0])
    cpu, cuda = run_both(tmp_path, [node], feeds, ["dq", "dkt", "dv"], cuda_mode)
    assert_close(cpu, cuda, what=f"AttentionGrad {lead}")


@pytest.mark.parametrize("outs", [["dq", "", "dv"], ["dq", "dkt"], ["dq"]])
def test_attention_grad_outputs_left_out(tmp_path, cuda_mode, outs):
    """Outputs left out (dkt, dv; the planner needs the first) are not computed; the others
    are the same. The Where's fill (0.25) is a score like the others, so the masked scores'
    probabilities are not negligible and only the undoing of the Where zeroes their gradient."""
    lead, tq, tk, d, dv = (2, 2), 20, 24, 8, 8
    feeds = attn_inputs(lead, tq, tk, d, dv, grad=True)
    feeds["m"] = ~causal(tq, tk)
    node = attn_node("AttentionGrad", ["q", "kt", "v", "do", "m"], outs, [0, 3], [0.35, 0.25])
    cpu, cuda = run_both(tmp_path, [node], feeds, [o for o in outs if o], cuda_mode)
    assert_close(cpu, cuda, what=f"AttentionGrad {outs}")


def test_attention_forward_and_grad_together(tmp_path, cuda_mode):
    """Attention and its AttentionGrad in one model (as training graphs hold them), the
    gradient's input do computed on the device from the output."""
    lead, tq, tk, d, dv = (3, 2), 18, 18, 16, 16
    feeds = attn_inputs(lead, tq, tk, d, dv)
    feeds["m"] = causal(tq, tk)
    nodes = [attn_node("Attention", ["q", "kt", "v", "m"], ["o"], [1, 2], [4.0, -1e9]),
             attn_node("AttentionGrad", ["q", "kt", "v", "o", "m"], ["dq", "dkt", "dv"], [1, 2], [4.0, -1e9])]
    cpu, cuda = run_both(tmp_path, nodes, feeds, ["o", "dq", "dkt", "dv"], cuda_mode)
    assert_close(cpu, cuda, what="forward + grad")


def test_attention_refuses_float64(tmp_path, cuda_mode):
    """q, kt, v in float64: refused cleanly with a message naming the node (the shape rule's
    "float32 only", as on the CPU), never computed."""
    feeds = {k: x.astype(np.float64) for k, x in attn_inputs((2,), 4, 5, 3, 3).items()}
    node = attn_node("Attention", ["q", "kt", "v"], ["o"], [1], [2.0])
    model = save_model(tmp_path / "f64.onnx", [node], feeds, ["o"], out_types={"o": TensorProto.DOUBLE})
    p = run_model(tmp_path, model, feeds, "cuda", cuda_mode, check=False)
    assert p.returncode == 4, (p.returncode, p.stderr)  # unsupported
    assert "Attention" in p.stderr and "float32" in p.stderr, p.stderr
