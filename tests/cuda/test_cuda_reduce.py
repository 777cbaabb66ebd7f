"""The CUDA backend's reductions and normalisations (runtime/cuda/k_reduce.cu) against the CPU
runtime (runtime/cpu/k_reduce.c, k_reduce_norm.c), on the emulator and, where one is visible, on
the GPU.

Every op the family registers runs with its attribute paths:
  - the ten Reduce* ops in one model per case (so one run covers them all) over axes last, first,
    middle, several non-adjacent ones (both kernel layouts: the last axis reduced or kept), all
    and none, keepdims 0 / 1, ranks 1 to 5, rows of 1, 7, 2100 and 3000 elements (one warp, one
    block, and the reduced range split over several blocks with a combine pass), more rows than
    8 blocks hold (the emulator's grid-stride loops wrap), empty slices and empty outputs; axes
    as an attribute (opsets 11 and 13) and as a constant input (opset 18) with
    noop_with_empty_axes; int32 / int64 / uint8 data and bool Max / Min;
  - ArgMax / ArgMin: axes first, middle and last, keepdims, ties with and without
    select_last_index, NaN, int and float dtypes;
  - Softmax / LogSoftmax with axis -1, 0, 1 at opset 11 (the trailing block, coerced to 2-D) and
    13 (one axis), rows of 1, 7, 64 (4-wide loads) and 3000 elements, rows at +1000, -inf masks,
    rows all -inf, NaN and +inf;
  - LayerNormalization: axis -1 and -2, with and without B, the Mean / InvStdDev outputs (float
    and double stash), Scale and B broadcast to the normalised dims, rows of 1, 7, 3000, a large
    mean offset, float64 data;
  - the clean refusals: a dtype the backend does not implement, an axes input that is not a
    constant.
Inputs are graph inputs, so the nodes run on the device. Tolerances: 1e-5 relative to the largest
|value| of an output (summation order differs from the CPU's), integer outputs exact; infinities
must match in place and sign.
"""
import subprocess

import numpy as np
import pytest
from onnx import TensorProto, helper

import cuda_common
from cuda_common import assert_close, env_for, run_both, run_model, save_model
from cuda_common import cuda_mode  # noqa: F401  (the fixture)
from conftest import ulc_bin

cuda_common.DT.setdefault(np.dtype(np.uint8), TensorProto.UINT8)
cuda_common.DT.setdefault(np.dtype(np.int16), TensorProto.INT16)

RNG = np.random.default_rng(11)

REDUCTIONS = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
              "ReduceL2", "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp"]
FAMILY = REDUCTIONS + ["ArgMax", "ArgMin", "Softmax", "LogSoftmax", "LayerNormalization"]


def opsets(n):
    return [helper.make_opsetid("", n), helper.make_opsetid("ulc", 1)]


def i64(*v):
    return np.array(v, dtype=np.int64)


def close(cpu, cuda, rtol=1e-5, atol=1e-6, what=""):
    """assert_close, with infinities compared exactly (in place and sign) first."""
    c2, g2 = {}, {}
    for k in cpu:
        a, b = cpu[k], cuda.get(k)
        assert b is not None, (what, k, sorted(cuda))
        if a.dtype.kind == "f" and a.shape == b.shape:
            ia, ib = np.isinf(a), np.isinf(b)
            assert np.array_equal(ia, ib) and np.array_equal(a[ia], b[ib]), (what, k, "infinities differ")
            a, b = np.where(ia, 0, a), np.where(ib, 0, b)
        c2[k], g2[k] = a, b
    assert_close(c2, g2, rtol=rtol, atol=atol, what=what)


def check(tmp_path, mode, nodes, feeds, outputs, inits=None, out_types=None, ops=17, tag="m",
          rtol=1e-5):
    cpu, cu = run_both(tmp_path, nodes, feeds, outputs, mode, inits=inits, out_types=out_types,
                       tag=tag, opsets=opsets(ops))
    close(cpu, cu, rtol=rtol, what=tag)
    return cpu, cu


def test_ops_are_registered():
    p = subprocess.run([ulc_bin(), "--device", "cuda", "ops", "--backend", "cuda"],
                       capture_output=True, text=True, timeout=60, env=env_for("emulator"))
    if p.returncode != 0:
        pytest.skip(f"no emulator: {p.stderr.strip()}")
    claimed = set(p.stdout.split())
    assert not set(FAMILY) - claimed, sorted(set(FAMILY) - claimed)


# ---- Reduce* ----------------------------------------------------------------------------------

def reduce_nodes(axes, keepdims, opset, ops=REDUCTIONS, dtype_in="x", pos_in="p", **attrs):
    """One node per op; LogSum and Prod read the positive input. Axes: an attribute before the
    input form (ReduceSum: 13, the others: 18), else the initializer "axes" (None: no axes)."""
    nodes = []
    for op in ops:
        src = pos_in if op in ("ReduceLogSum", "ReduceProd") else dtype_in
        input_form = opset >= (13 if op == "ReduceSum" else 18)
        kw = dict(attrs)
        if keepdims is not None:
            kw["keepdims"] = keepdims
        ins = [src]
        if axes is not None:
            if input_form:
                ins.append("axes")
            else:
                kw["axes"] = list(axes)
        nodes.append(helper.make_node(op, ins, [op], **kw))
    return nodes


def reduce_case(tmp_path, mode, shape, axes, keepdims, opset=18, dtype=np.float32, ops=REDUCTIONS,
                tag="r", **attrs):
    dt = np.dtype(dtype)
    if dt.kind == "f":
        x = RNG.standard_normal(shape).astype(dt)
        p = RNG.uniform(0.8, 1.25, shape).astype(dt)
    elif dt == np.bool_:
        x = p = RNG.random(shape) < 0.5
    else:
        lo = 0 if dt.kind == "u" else -20
        x = RNG.integers(lo, 20, size=shape).astype(dt)
        p = RNG.integers(1, 3, size=shape).astype(dt)
    inits = {"axes": i64(*axes)} if axes is not None and opset >= 13 else None
    nodes = reduce_nodes(axes, keepdims, opset, ops, **attrs)
    used = {n.input[0] for n in nodes}
    feeds = {k: v for k, v in {"x": x, "p": p}.items() if k in used}
    out_types = {op: cuda_common.DT[dt] for op in ops}
    return check(tmp_path, mode, nodes, feeds, list(ops), inits=inits, out_types=out_types,
                 ops=opset, tag=tag)


REDUCE_CASES = [
    # shape, axes, keepdims
    ((3000,), [0], 1),              # rank 1, a long row: split over blocks, combined
    ((3000,), [-1], 0),             # to a scalar
    ((5, 7), [-1], 1),              # short rows, a warp each
    ((300, 7), [1], 0),             # 10 blocks of 32 8-lane workers: the grid-stride loop wraps
    ((6, 1), [1], 1),               # rows of one element
    ((10, 2100), [-1], 0),          # a block per row, split in two; 10 rows: the grid wraps
    ((9, 4), [0], 1),               # first axis: columns
    ((3000, 3), [0], 0),            # first axis, long: columns split over blocks
    ((3, 5, 7), [1], 1),            # middle axis
    ((10, 5, 40), [-2], 0),         # middle, 20 column tiles: the grid wraps
    ((3, 4, 5, 6), [0, 2], 1),      # non-adjacent, last axis kept (R K R K)
    ((3, 4, 5, 6), [1, -1], 0),     # non-adjacent, last axis reduced (K R K R)
    ((2, 3, 4), None, 1),           # no axes: all
    ((2, 3, 2, 3, 2), [0, 2, 4], 0),  # rank 5, three groups
    ((4, 1, 5), [1], 0),            # only a size-1 axis: a copy
    ((2, 1, 3, 1), [0, 1, 3], 1),   # size-1 axes merge away
]


@pytest.mark.parametrize("shape,axes,keepdims", REDUCE_CASES,
                         ids=[f"{'x'.join(map(str, s))}-{a}-k{k}" for s, a, k in REDUCE_CASES])
def test_reduce(tmp_path, cuda_mode, shape, axes, keepdims):
    reduce_case(tmp_path, cuda_mode, shape, axes, keepdims)


@pytest.mark.parametrize("opset", [11, 13])
def test_reduce_axes_attribute(tmp_path, cuda_mode, opset):
    """Axes as an attribute (ReduceSum's is an input from 13), negative, keepdims default."""
    reduce_case(tmp_path, cuda_mode, (4, 6, 5), [-1, 0], None, opset=opset)
    reduce_case(tmp_path, cuda_mode, (4, 6, 5), None, 0, opset=opset, tag="all")


def test_reduce_noop_with_empty_axes(tmp_path, cuda_mode):
    """Opset 18, no axes: all axes, or the identity with noop_with_empty_axes=1 (an empty axes
    input the same)."""
    x = RNG.standard_normal((3, 4, 5)).astype(np.float32)
    nodes = [helper.make_node("ReduceMean", ["x"], ["all"], keepdims=0),
             helper.make_node("ReduceMax", ["x"], ["same"], noop_with_empty_axes=1),
             helper.make_node("ReduceSum", ["x", "none"], ["same2"], noop_with_empty_axes=1),
             helper.make_node("ReduceL2", ["x", "none"], ["all2"], noop_with_empty_axes=0)]
    cpu, cu = check(tmp_path, cuda_mode, nodes, {"x": x}, ["all", "same", "same2", "all2"],
                    inits={"none": np.zeros(0, np.int64)}, ops=18)
    assert np.array_equal(cu["same"], x) and np.array_equal(cu["same2"], x)
    assert cu["all"].shape == () and cu["all2"].shape == (1, 1, 1)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.float64])
def test_reduce_dtypes(tmp_path, cuda_mode, dtype):
    """Integers exactly (64-bit wrap; Mean truncates; L2 / LogSum / LogSumExp in double, then
    truncated); float64 in double."""
    reduce_case(tmp_path, cuda_mode, (6, 300), [1], 1, dtype=dtype)
    reduce_case(tmp_path, cuda_mode, (40, 3, 5), [0, 2], 0, dtype=dtype, tag="cols")


def test_reduce_bool_max_min(tmp_path, cuda_mode):
    """Bool Max / Min are any / all (opset 20)."""
    reduce_case(tmp_path, cuda_mode, (7, 33), [1], 0, dtype=np.bool_, opset=20,
                ops=["ReduceMax", "ReduceMin"])
    reduce_case(tmp_path, cuda_mode, (7, 33), [0], 1, dtype=np.bool_, opset=20,
                ops=["ReduceMax", "ReduceMin"], tag="cols")


def test_reduce_empty(tmp_path, cuda_mode):
    """An empty slice gives the op's value over nothing (0, NaN, -inf, +inf, 1, -inf...); an
    empty kept axis gives an empty output."""
    reduce_case(tmp_path, cuda_mode, (3, 0), [1], 1)
    reduce_case(tmp_path, cuda_mode, (0, 4), [0], 0, tag="first")
    reduce_case(tmp_path, cuda_mode, (0, 4), [1], 1, tag="none")
    reduce_case(tmp_path, cuda_mode, (3, 0), [1], 0, dtype=np.int64, tag="int")


def test_reduce_special_values(tmp_path, cuda_mode):
    """NaN propagates through Max / Min / Sum; LogSumExp: large values do not overflow, +inf
    rows give inf, all -inf rows -inf."""
    x = RNG.standard_normal((6, 40)).astype(np.float32)
    x[0, 5] = np.nan
    x[1] += 1000.0
    x[2, 7] = np.inf
    x[3, :] = -np.inf
    x[4, 3] = -np.inf
    ops = ["ReduceSum", "ReduceMax", "ReduceMin", "ReduceLogSumExp", "ReduceL1"]
    nodes = [helper.make_node(op, ["x", "axes"], [op], keepdims=0) for op in ops]
    check(tmp_path, cuda_mode, nodes, {"x": x}, ops, inits={"axes": i64(1)}, ops=18)
    nodes = [helper.make_node(op, ["x", "axes"], [op], keepdims=0) for op in ops]
    check(tmp_path, cuda_mode, nodes, {"x": np.ascontiguousarray(x.T)}, ops,
          inits={"axes": i64(0)}, ops=18, tag="cols")


def test_reduce_large_all(tmp_path, cuda_mode):
    """A 40000-element sum and mean to one value: many splits, then the combine."""
    reduce_case(tmp_path, cuda_mode, (40, 1000), None, 0, ops=["ReduceSum", "ReduceMean",
                                                              "ReduceMax", "ReduceLogSumExp"])


# ---- ArgMax / ArgMin ----------------------------------------------------------------------------

ARG_CASES = [
    # shape, axis, keepdims, dtype
    ((3000,), 0, 1, np.float32),       # one long row: a block
    ((5, 7), -1, 0, np.float32),        # short rows
    ((200, 9), 1, 1, np.int64),        # the grid wraps
    ((0, 5), 1, 1, np.float32),        # empty output
    ((4, 6, 5), 1, 1, np.float32),     # middle: columns
    ((9, 4), 0, 0, np.int32),          # first axis
    ((2, 3, 4, 5), 2, 0, np.float64),  # rank 4
    ((600, 3), 0, 1, np.uint8),        # long columns
    ((1,), 0, 1, np.float32),
]


@pytest.mark.parametrize("shape,axis,keepdims,dtype", ARG_CASES,
                         ids=[f"{'x'.join(map(str, s))}-{a}-k{k}-{np.dtype(d).name}"
                              for s, a, k, d in ARG_CASES])
def test_argmax_argmin(tmp_path, cuda_mode, shape, axis, keepdims, dtype):
    """Values from {0, 1, 2, 3}: ties everywhere, first and last index."""
    x = RNG.integers(0, 4, size=shape).astype(dtype)
    nodes, outs = [], []
    for op in ("ArgMax", "ArgMin"):
        for last in (0, 1):
            name = f"{op}{last}"
            nodes.append(helper.make_node(op, ["x"], [name], axis=axis, keepdims=keepdims,
                                          select_last_index=last))
            outs.append(name)
    cpu, cu = check(tmp_path, cuda_mode, nodes, {"x": x}, outs,
                    out_types={o: TensorProto.INT64 for o in outs}, ops=13)
    xm = np.moveaxis(x, axis, -1)
    ref = np.argmax(xm, axis=-1)
    ref_last = xm.shape[-1] - 1 - np.argmax(xm[..., ::-1], axis=-1)
    if keepdims:
        ref, ref_last = np.expand_dims(ref, axis), np.expand_dims(ref_last, axis)
    assert np.array_equal(cu["ArgMax0"], ref) and np.array_equal(cu["ArgMax1"], ref_last)


def test_argmax_nan_and_default_axis(tmp_path, cuda_mode):
    """NaN is the extreme (numpy): the first NaN, or the last with select_last_index; the default
    axis is 0."""
    x = RNG.standard_normal((6, 50)).astype(np.float32)
    x[1, 3] = x[1, 30] = np.nan
    x[4, 0] = np.nan
    nodes, outs = [], []
    for op in ("ArgMax", "ArgMin"):
        for last in (0, 1):
            for axis in (0, 1):
                name = f"{op}{last}{axis}"
                nodes.append(helper.make_node(op, ["x"], [name], axis=axis, select_last_index=last))
                outs.append(name)
    nodes.append(helper.make_node("ArgMax", ["x"], ["dflt"]))
    outs.append("dflt")
    check(tmp_path, cuda_mode, nodes, {"x": x}, outs,
          out_types={o: TensorProto.INT64 for o in outs}, ops=13)


# ---- Softmax / LogSoftmax -------------------------------------------------------------------------

def softmax_case(tmp_path, mode, x, axis, opset, tag="s"):
    nodes, outs = [], []
    for op in ("Softmax", "LogSoftmax"):
        kw = {} if axis is None else {"axis": axis}
        nodes.append(helper.make_node(op, ["x"], [op], **kw))
        outs.append(op)
    t = cuda_common.DT[x.dtype]
    return check(tmp_path, mode, nodes, {"x": x}, outs, out_types={o: t for o in outs}, ops=opset,
                 tag=tag)


SOFTMAX_CASES = [
    # shape, axis, opset
    ((3, 4, 5), -1, 11), ((3, 4, 5), 0, 11), ((3, 4, 5), 1, 11), ((3, 4, 5), None, 11),
    ((3, 4, 5), -1, 13), ((3, 4, 5), 0, 13), ((3, 4, 5), 1, 13), ((3, 4, 5), None, 13),
    ((2, 3000), -1, 13),     # a block per row
    ((5, 64), -1, 13),       # 4-wide loads
    ((300, 8), 1, 13),       # the grid wraps
    ((10, 1100), -1, 13),    # a block per row, 4-wide, the grid wraps
    ((3, 4), 2, 11),         # opset 11, axis = rank: each element alone
    ((7, 1), -1, 13),        # rows of one
    ((4, 7), -1, 13),
    ((2, 700, 3), 1, 13),    # long columns
    ((2, 3, 4, 5), 3, 11),   # opset 11 at axis = rank - 1
]


@pytest.mark.parametrize("shape,axis,opset", SOFTMAX_CASES,
                         ids=[f"{'x'.join(map(str, s))}-{a}-o{o}" for s, a, o in SOFTMAX_CASES])
def test_softmax(tmp_path, cuda_mode, shape, axis, opset):
    x = (RNG.standard_normal(shape) * 3).astype(np.float32)
    softmax_case(tmp_path, cuda_mode, x, axis, opset)


@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_stability_and_masks(tmp_path, cuda_mode, axis):
    """Rows at +1000 (no overflow), -inf masks, a row all -inf (NaN, as the CPU), a NaN, a +inf
    (the row NaN); along the last axis (rows) and the first (columns); float and 4-wide rows."""
    for n in (40, 37):
        x = RNG.standard_normal((8, n)).astype(np.float32)
        x[0] += 1000.0
        x[1, ::3] = -np.inf
        x[2] = -np.inf
        x[3, 4] = np.nan
        x[4, 2] = np.inf
        x[5, 1:] = -np.inf
        x = x if axis == -1 else np.ascontiguousarray(x.T)
        softmax_case(tmp_path, cuda_mode, x, axis, 13, tag=f"n{n}")


def test_softmax_float64(tmp_path, cuda_mode):
    softmax_case(tmp_path, cuda_mode, RNG.standard_normal((6, 33)), -1, 13)
    softmax_case(tmp_path, cuda_mode, RNG.standard_normal((6, 33, 2)), 1, 13, tag="cols")
    softmax_case(tmp_path, cuda_mode, np.zeros((3, 0, 2)), 1, 13, tag="empty")


# ---- LayerNormalization ------------------------------------------------------------------------

def ln_case(tmp_path, mode, shape, axis, bias=True, extra=True, pshape=None, offset=0.0,
            dtype=np.float32, stash=None, tag="ln"):
    x = (RNG.standard_normal(shape) * 2 + offset).astype(dtype)
    nshape = shape[axis:] if axis is not None and axis >= 0 else shape[(axis or -1):]
    pshape = nshape if pshape is None else pshape
    feeds = {"x": x, "g": RNG.standard_normal(pshape).astype(dtype)}
    ins = ["x", "g"]
    if bias:
        feeds["b"] = RNG.standard_normal(pshape).astype(dtype)
        ins.append("b")
    outs = ["y", "mean", "inv"] if extra else ["y"]
    kw = {} if axis is None else {"axis": axis}
    if stash is not None:
        kw["stash_type"] = stash
    st = TensorProto.DOUBLE if stash == TensorProto.DOUBLE else TensorProto.FLOAT
    t = cuda_common.DT[np.dtype(dtype)]
    out_types = {"y": t, "mean": st, "inv": st}
    node = helper.make_node("LayerNormalization", ins, outs, **kw)
    return check(tmp_path, mode, [node], feeds, outs, out_types=out_types, ops=17, tag=tag)


LN_CASES = [
    # shape, axis, bias, extra outputs
    ((4, 32), -1, True, True),
    ((4, 32), None, False, True),    # default axis -1, no B
    ((3, 5, 7), -2, True, True),     # two normalised dims
    ((3, 5, 7), -2, False, False),
    ((2, 3000), -1, True, True),     # a block per row
    ((300, 7), 1, True, False),      # the grid wraps
    ((3, 0), -1, True, True),        # nothing to normalise: Mean and InvStdDev NaN
    ((6, 1), -1, True, True),        # rows of one: σ = 0
    ((2, 3, 4, 5), 1, True, True),   # rank 4, three normalised dims
    ((9,), 0, True, True),           # rank 1
]


@pytest.mark.parametrize("shape,axis,bias,extra", LN_CASES,
                         ids=[f"{'x'.join(map(str, s))}-{a}-b{int(b)}-e{int(e)}"
                              for s, a, b, e in LN_CASES])
def test_layernorm(tmp_path, cuda_mode, shape, axis, bias, extra):
    ln_case(tmp_path, cuda_mode, shape, axis, bias, extra)


def test_layernorm_broadcast_params(tmp_path, cuda_mode):
    """Scale / B of fewer dims than the normalised ones (expanded on the device first)."""
    ln_case(tmp_path, cuda_mode, (3, 5, 7), -2, pshape=(7,))
    ln_case(tmp_path, cuda_mode, (3, 5, 7), -2, pshape=(5, 1), tag="col")
    ln_case(tmp_path, cuda_mode, (2, 3, 4, 5), 1, pshape=(1, 4, 5), tag="lead1")


def test_layernorm_offset_and_stash(tmp_path, cuda_mode):
    """Rows with |μ| >> σ keep their precision; stash_type double gives double Mean / InvStdDev;
    float64 data."""
    ln_case(tmp_path, cuda_mode, (4, 300), -1, offset=1e4)
    ln_case(tmp_path, cuda_mode, (4, 30), -1, stash=TensorProto.DOUBLE, tag="stash")
    ln_case(tmp_path, cuda_mode, (4, 30), -1, dtype=np.float64, stash=TensorProto.DOUBLE, tag="f64")
    ln_case(tmp_path, cuda_mode, (0, 30), -1, tag="empty")


# ---- refusals ------------------------------------------------------------------------------------

def test_unsupported_dtype_is_refused(tmp_path, cuda_mode):
    x = RNG.integers(-5, 5, size=(3, 4)).astype(np.int16)
    for op in ("ReduceSum", "ArgMax"):
        model = save_model(tmp_path / f"{op}.onnx", [helper.make_node(op, ["x"], ["y"])], {"x": x},
                           ["y"], out_types={"y": TensorProto.INT16 if op != "ArgMax" else TensorProto.INT64})
        assert run_model(tmp_path, model, {"x": x}, "cpu").get("y") is not None
        p = run_model(tmp_path, model, {"x": x}, "cuda", cuda_mode, check=False)
        assert p.returncode != 0 and "not supported by backend cuda" in p.stderr, p.stderr


def test_axes_input_must_be_constant(tmp_path, cuda_mode):
    """Axes from a graph input: the CPU reads them; the device needs them at plan time."""
    x = RNG.standard_normal((3, 4)).astype(np.float32)
    feeds = {"x": x, "axes": i64(1)}
    model = save_model(tmp_path / "a.onnx", [helper.make_node("ReduceMean", ["x", "axes"], ["y"])],
                       feeds, ["y"], opsets=opsets(18))
    cpu = run_model(tmp_path, model, feeds, "cpu")
    p = run_model(tmp_path, model, feeds, "cuda", cuda_mode, check=False)
    if p.returncode == 0:  # the planner made the axes a constant of the plan
        cu = run_model(tmp_path, model, feeds, "cuda", cuda_mode)
        close(cpu, cu)
    else:
        assert "constant" in p.stderr, p.stderr


def test_half_inputs(tmp_path, cuda_mode):
    """float16 data is computed as float32 by the planner and rounded back: the same path."""
    x = RNG.standard_normal((6, 50)).astype(np.float16)
    nodes = [helper.make_node("Softmax", ["x"], ["s"]),
             helper.make_node("ReduceMean", ["x", "axes"], ["m"]),
             helper.make_node("ArgMax", ["x"], ["a"], axis=1)]
    check(tmp_path, cuda_mode, nodes, {"x": x}, ["s", "m", "a"], inits={"axes": i64(-1)},
          out_types={"s": TensorProto.FLOAT16, "m": TensorProto.FLOAT16, "a": TensorProto.INT64},
          ops=18, rtol=1e-3)
