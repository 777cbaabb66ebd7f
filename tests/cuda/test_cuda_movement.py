"""The CUDA backend's shape and data-movement ops (runtime/cuda/k_movement.cu) against the CPU
runtime (runtime/cpu/k_shape.c, k_shape_move.c), on the emulator and, where one is visible, on
the GPU.

Every op the family registers runs with its attribute paths: Transpose (ranks 2 to 5, the tiled
shared-memory path and the strided-copy path, the attention head permutations on sizes that are
not multiples of 32, identity, merged dims, empty), Concat / Split (axes first, middle and last,
parts of different sizes, empty parts, more parts than one launch's table), Slice (negative
starts, ends and steps, axes subsets, the opset-9 attributes), Gather (axes 0, 1, -1, int32 and
int64 indices, negative and scalar indices, constant and run-time indices, the zero rows of a
run-time index out of range), GatherElements, Expand, Tile, Pad (constant, reflect, edge, wrap,
negative pads, axes, the constant as a run-time input, the opset-10 attributes), Trilu (upper and
lower, k constant and run-time), Dropout (mask), and the views between them. Data comes in
through graph inputs, so nodes run on the device instead of being folded on the host at plan
time; a few cases have more than 8 blocks × 256 elements so that the emulator's grid-stride loops
wrap. Movement is exact: every comparison is bit-exact (assert_close with zero tolerance).
"""
import subprocess

import numpy as np
import pytest
from onnx import TensorProto, helper

import cuda_common
from cuda_common import cuda_mode  # noqa: F401 (the fixture)
from cuda_common import assert_close, env_for, run_both, run_model, save_model
from conftest import ulc_bin

# element sizes 1 and 2 besides the suite's dtypes
cuda_common.DT.setdefault(np.dtype(np.int16), TensorProto.INT16)
cuda_common.DT.setdefault(np.dtype(np.uint8), TensorProto.UINT8)
cuda_common.DT.setdefault(np.dtype(np.int8), TensorProto.INT8)

RNG = np.random.default_rng(7)


def opsets(n):
    return [helper.make_opsetid("", n), helper.make_opsetid("ulc", 1)]


def arr(shape, dtype=np.float32):
    dt = np.dtype(dtype)
    if dt == np.bool_:
        return RNG.random(shape) < 0.5
    if dt.kind in "iu":
        lo = 0 if dt.kind == "u" else -100
        return RNG.integers(lo, 100, size=shape).astype(dt)
    return RNG.standard_normal(shape).astype(dt)


def otype(a):
    return cuda_common.DT[np.asarray(a).dtype]


def check(tmp_path, mode, nodes, feeds, outputs, inits=None, ref=None, tag="m", ops=None):
    """Runs on cpu and cuda and compares bit-exactly; ref: {output: expected array} (numpy)."""
    out_types = {}
    for o in outputs:
        if ref and o in ref:
            out_types[o] = otype(ref[o])
    if not out_types and outputs:
        first = next(iter(feeds.values()))
        out_types = {o: otype(first) for o in outputs}
    kw = {"opsets": ops} if ops else {}
    cpu, cu = run_both(tmp_path, nodes, feeds, outputs, mode, inits=inits, out_types=out_types,
                       tag=tag, **kw)
    assert_close(cpu, cu, rtol=0, atol=0, what=tag)
    for k, v in (ref or {}).items():
        assert cu[k].shape == v.shape, (k, cu[k].shape, v.shape)
        assert np.array_equal(cu[k], v), k
    return cu


def i64(*v):
    return np.array(v, dtype=np.int64)


# ---- the family's registrations ------------------------------------------------------------------

FAMILY = """Identity Reshape Flatten Squeeze Unsqueeze Dropout ConstantOfShape Range Transpose
Concat Split Slice Gather GatherElements Expand Tile Trilu Pad""".split()


def test_ops_are_registered():
    p = subprocess.run([ulc_bin(), "--device", "cuda", "ops", "--backend", "cuda"],
                       capture_output=True, text=True, timeout=60, env=env_for("emulator"))
    if p.returncode != 0:
        pytest.skip(f"no emulator: {p.stderr.strip()}")
    claimed = set(p.stdout.split())
    assert not set(FAMILY) - claimed, sorted(set(FAMILY) - claimed)


# ---- Transpose -----------------------------------------------------------------------------------

TRANSPOSES = [
    ((70, 99), [1, 0], np.float32),             # tiled 2-D: 12 tiles, the grid wraps
    ((2, 3, 4), None, np.int64),                # default: reversed
    ((3, 33, 5, 17), [0, 2, 1, 3], np.float32),  # [B,T,H,D] -> [B,H,T,D], D not a word multiple
    ((2, 37, 5, 16), [0, 2, 1, 3], np.float32),  # same, D·4 bytes a multiple of 16
    ((2, 5, 37, 16), [0, 2, 1, 3], np.float32),  # [B,H,T,D] -> [B,T,H,D]
    ((2, 3, 33, 20), [0, 1, 3, 2], np.float32),  # K^T: the last two dims, tiled
    ((2, 35, 6, 7), [0, 2, 3, 1], np.float32),   # NCHW -> NHWC: tiled with an outer axis
    ((2, 3, 4, 5, 6), [4, 2, 0, 3, 1], np.int32),  # rank 5, general
    ((2, 3, 4, 5, 6), [0, 1, 2, 3, 4], np.bool_),  # identity
    ((3, 1, 4, 1, 5), [1, 3, 0, 2, 4], np.float64),  # size-1 axes merge into one copy
    ((4, 0, 3), [2, 0, 1], np.float32),          # empty
    ((33, 40), [1, 0], np.int16),                # 2-byte elements, tiled
    ((7, 9, 34), [2, 0, 1], np.uint8),           # 1-byte elements
    ((5, 6, 7), [1, 0, 2], np.int8),             # 1-byte rows, widened copy
]


@pytest.mark.parametrize("shape,perm,dtype", TRANSPOSES,
                         ids=[f"{'x'.join(map(str, s))}-{p}-{np.dtype(d).name}"
                              for s, p, d in TRANSPOSES])
def test_transpose(tmp_path, cuda_mode, shape, perm, dtype):
    x = arr(shape, dtype)
    kw = {"perm": perm} if perm is not None else {}
    ref = np.transpose(x, perm)
    check(tmp_path, cuda_mode, [helper.make_node("Transpose", ["x"], ["y"], **kw)], {"x": x},
          ["y"], ref={"y": ref})


def test_transpose_through_views(tmp_path, cuda_mode):
    """Reshape / Flatten / Squeeze / Unsqueeze / Identity are views between device steps."""
    x = arr((2, 6, 1, 10))
    nodes = [
        helper.make_node("Squeeze", ["x", "ax2"], ["s"]),                  # [2,6,10]
        helper.make_node("Reshape", ["s", "shp"], ["r"]),                  # [2,3,2,10]
        helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 1, 3]),    # [2,2,3,10]
        helper.make_node("Flatten", ["t"], ["f"], axis=2),                 # [4,30]
        helper.make_node("Unsqueeze", ["f", "ax0"], ["u"]),                # [1,4,30]
        helper.make_node("Identity", ["u"], ["i"]),
        helper.make_node("Transpose", ["i"], ["y"], perm=[2, 1, 0]),       # [30,4,1]
    ]
    ref = x.reshape(2, 6, 10).reshape(2, 3, 2, 10).transpose(0, 2, 1, 3).reshape(4, 30)[None]
    ref = ref.transpose(2, 1, 0)
    check(tmp_path, cuda_mode, nodes, {"x": x}, ["y"],
          inits={"ax2": i64(2), "shp": i64(2, 3, 2, 10), "ax0": i64(0)}, ref={"y": ref})


# ---- Concat, Split -------------------------------------------------------------------------------

@pytest.mark.parametrize("axis,dtype", [(0, np.float32), (1, np.int64), (-1, np.float32),
                                        (-1, np.bool_), (2, np.int16)])
def test_concat(tmp_path, cuda_mode, axis, dtype):
    base = [4, 5, 6]
    ax = axis % 3
    feeds = {}
    for i, n in enumerate([3, 1, 7]):
        s = list(base)
        s[ax] = n
        feeds[f"x{i}"] = arr(s, dtype)
    ref = np.concatenate(list(feeds.values()), axis=axis)
    check(tmp_path, cuda_mode, [helper.make_node("Concat", list(feeds), ["y"], axis=axis)], feeds,
          ["y"], ref={"y": ref})


def test_concat_large_and_empty(tmp_path, cuda_mode):
    """3000 elements (the grid wraps), a part with no rows, and a part of odd row bytes."""
    a, b, c = arr((30, 40, 2)), arr((30, 0, 2)), arr((30, 9, 2))
    ref = np.concatenate([a, b, c], axis=1)
    check(tmp_path, cuda_mode, [helper.make_node("Concat", ["a", "b", "c"], ["y"], axis=1)],
          {"a": a, "b": b, "c": c}, ["y"], ref={"y": ref})


def test_concat_many_parts(tmp_path, cuda_mode):
    """40 parts: more than one launch's table of 32."""
    feeds = {f"x{i}": arr((2, 1 + i % 3, 3)) for i in range(40)}
    ref = np.concatenate(list(feeds.values()), axis=1)
    check(tmp_path, cuda_mode, [helper.make_node("Concat", list(feeds), ["y"], axis=1)], feeds,
          ["y"], ref={"y": ref})


@pytest.mark.parametrize("axis,sizes", [(0, [2, 3, 1]), (1, [4, 0, 6]), (-1, [1, 5, 7])])
def test_split_sizes(tmp_path, cuda_mode, axis, sizes):
    shape = [6, 10, 13]
    shape[axis] = sum(sizes)
    x = arr(shape, np.int64 if axis == 1 else np.float32)
    outs = [f"y{i}" for i in range(len(sizes))]
    refs = np.split(x, np.cumsum(sizes)[:-1], axis=axis)
    check(tmp_path, cuda_mode, [helper.make_node("Split", ["x", "split"], outs, axis=axis)],
          {"x": x}, outs, inits={"split": i64(*sizes)}, ref=dict(zip(outs, refs)))


def test_split_equal_and_uneven(tmp_path, cuda_mode):
    """No sizes: equal parts, an uneven dim giving ceil-sized parts and a smaller last one."""
    x = arr((3, 11, 70))  # 2310 elements
    outs = ["a", "b", "c"]
    refs = [x[:, 0:4], x[:, 4:8], x[:, 8:11]]
    check(tmp_path, cuda_mode, [helper.make_node("Split", ["x"], outs, axis=1)], {"x": x}, outs,
          ref=dict(zip(outs, refs)))


def test_split_opset11_attribute(tmp_path, cuda_mode):
    x = arr((4, 9), np.int64)
    outs = ["a", "b"]
    check(tmp_path, cuda_mode, [helper.make_node("Split", ["x"], outs, axis=-1, split=[2, 7])],
          {"x": x}, outs, ref={"a": x[:, :2], "b": x[:, 2:]}, ops=opsets(11))


def test_split_num_outputs(tmp_path, cuda_mode):
    x = arr((7, 4), np.bool_)
    outs = ["a", "b", "c"]
    refs = [x[0:3], x[3:6], x[6:7]]
    check(tmp_path, cuda_mode, [helper.make_node("Split", ["x"], outs, axis=0, num_outputs=3)],
          {"x": x}, outs, ref=dict(zip(outs, refs)), ops=opsets(18))


# ---- Slice ---------------------------------------------------------------------------------------

SLICES = [
    # data shape, starts, ends, axes, steps, the numpy index
    ((9, 24), [1, -9], [-1, 100], None, None, np.s_[1:-1, -9:]),
    ((9, 24), [-2], [-100], [1], [-1], np.s_[:, -2::-1]),
    ((9, 12, 24), [10, 0, -1], [-100, 7, 0], [2, 0, -2], [-3, 2, -1],
     np.s_[0:7:2, -1:0:-1, 10::-3]),
    ((9, 12, 24), [0, 3], [50, 4], [-1, 1], [5, 1], np.s_[:, 3:4, 0:50:5]),
    ((9, 24), [5], [5], [0], [1], np.s_[5:5]),  # empty
]


@pytest.mark.parametrize("shape,starts,ends,axes,steps,idx", SLICES,
                         ids=[str(i) for i in range(len(SLICES))])
def test_slice(tmp_path, cuda_mode, shape, starts, ends, axes, steps, idx):
    x = arr(shape)
    ins, inits = ["x", "st", "en"], {"st": i64(*starts), "en": i64(*ends)}
    if axes is not None:
        ins.append("ax")
        inits["ax"] = i64(*axes)
    if steps is not None:
        if axes is None:
            ins.append("")
        ins.append("sp")
        inits["sp"] = i64(*steps)
    check(tmp_path, cuda_mode, [helper.make_node("Slice", ins, ["y"])], {"x": x}, ["y"],
          inits=inits, ref={"y": x[idx]})


def test_slice_large_int64(tmp_path, cuda_mode):
    x = arr((40, 3, 30), np.int64)  # 3600 elements
    check(tmp_path, cuda_mode, [helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["y"])],
          {"x": x}, ["y"], inits={"st": i64(-1, 1), "en": i64(-1000, 30), "ax": i64(0, 2),
                                  "sp": i64(-1, 1)},
          ref={"y": x[::-1, :, 1:30]})


def test_slice_opset9_attributes(tmp_path, cuda_mode):
    x = arr((6, 8), np.int32)
    node = helper.make_node("Slice", ["x"], ["y"], starts=[1, -5], ends=[5, 1000], axes=[0, 1])
    check(tmp_path, cuda_mode, [node], {"x": x}, ["y"], ref={"y": x[1:5, -5:]}, ops=opsets(9))


# ---- Gather, GatherElements ----------------------------------------------------------------------

@pytest.mark.parametrize("axis,idx", [
    (0, np.array([[0, -1], [2, 1]], np.int64)),
    (1, np.array([3, -4, 0], np.int32)),
    (-1, np.array(-2, np.int64)),          # a scalar index drops the axis
    (1, np.array(2, np.int32)),
    (2, np.zeros((2, 0), np.int64)),       # no indices: an empty output
])
def test_gather_runtime_indices(tmp_path, cuda_mode, axis, idx):
    x = arr((5, 6, 7))
    ref = np.take(x, idx, axis=axis)
    nodes = [helper.make_node("Gather", ["x", "i"], ["y"], axis=axis)]
    feeds, inits = {"x": x, "i": idx}, None
    if idx.ndim == 0:
        # the suite's files hold no rank-0 tensors: a [1] input reshaped to a run-time scalar
        nodes.insert(0, helper.make_node("Reshape", ["i1", "scalar"], ["i"]))
        feeds = {"x": x, "i1": idx.reshape(1)}
        inits = {"scalar": np.zeros(0, np.int64)}
    check(tmp_path, cuda_mode, nodes, feeds, ["y"], inits=inits, ref={"y": ref})


def test_gather_constant_indices(tmp_path, cuda_mode):
    """Constant indices (checked in prepare) on run-time data; bool and int64 data."""
    x = arr((4, 9, 3), np.bool_)
    idx = np.array([[-1, 0, 8], [3, 3, -9]], np.int64)
    check(tmp_path, cuda_mode, [helper.make_node("Gather", ["x", "i"], ["y"], axis=1)],
          {"x": x}, ["y"], inits={"i": idx}, ref={"y": np.take(x, idx, axis=1)}, tag="b")
    x = arr((10, 3), np.int64)
    idx = np.array([9, -10, 4], np.int32)
    check(tmp_path, cuda_mode, [helper.make_node("Gather", ["x", "i"], ["y"], axis=0)],
          {"x": x}, ["y"], inits={"i": idx}, ref={"y": np.take(x, idx, axis=0)}, tag="l")


def test_gather_embedding(tmp_path, cuda_mode):
    """A constant table and run-time token ids: rows of 64 floats (16-byte words), 3072 outputs."""
    table = arr((50, 64))
    ids = RNG.integers(-50, 50, size=(4, 12)).astype(np.int64)
    check(tmp_path, cuda_mode, [helper.make_node("Gather", ["w", "ids"], ["y"])], {"ids": ids},
          ["y"], inits={"w": table}, ref={"y": np.take(table, ids, axis=0)})


def test_gather_constant_index_out_of_range_fails(tmp_path, cuda_mode):
    x = arr((4, 5))
    model = save_model(tmp_path / "g.onnx", [helper.make_node("Gather", ["x", "i"], ["y"])],
                       {"x": x}, ["y"], inits={"i": i64(1, 4)})
    p = run_model(tmp_path, model, {"x": x}, "cuda", cuda_mode, check=False)
    assert p.returncode != 0
    assert "index 4" in p.stderr and "out of range" in p.stderr, p.stderr


def test_gather_runtime_index_out_of_range_gives_zeros(tmp_path, cuda_mode):
    """The CPU refuses; the device cannot report without a sync: the row is zeros."""
    x = arr((4, 5)) + 10
    model = save_model(tmp_path / "g.onnx", [helper.make_node("Gather", ["x", "i"], ["y"])],
                       {"x": x, "i": i64(1, 4, -5, 2)}, ["y"])
    y = run_model(tmp_path, model, {"x": x, "i": i64(1, 4, -5, 2)}, "cuda", cuda_mode)["y"]
    assert np.array_equal(y[0], x[1]) and np.array_equal(y[3], x[2])
    assert not y[1].any() and not y[2].any()


@pytest.mark.parametrize("axis,dtype", [(0, np.int64), (1, np.int32), (-1, np.int64)])
def test_gather_elements(tmp_path, cuda_mode, axis, dtype):
    x = arr((6, 7, 8))
    ishape = [5, 6, 8]  # smaller than the data on the other axes
    ishape[axis] = 9
    n = x.shape[axis]
    idx = RNG.integers(-n, n, size=ishape).astype(dtype)
    grid = list(np.indices(ishape))
    grid[axis % 3] = np.where(idx < 0, idx + n, idx)
    ref = x[tuple(grid)]
    check(tmp_path, cuda_mode, [helper.make_node("GatherElements", ["x", "i"], ["y"], axis=axis)],
          {"x": x, "i": idx}, ["y"], ref={"y": ref})


# ---- Expand, Tile --------------------------------------------------------------------------------

@pytest.mark.parametrize("xshape,shape,dtype", [
    ((3, 1), (2, 3, 4), np.float32),
    ((1,), (5,), np.int64),
    ((4, 1, 6), (4, 100, 6), np.float32),  # 2400 elements, the middle broadcast
    ((2, 1, 1, 3), (1, 5, 4, 1), np.bool_),
    ((1, 8), (0, 8), np.float32),          # empty
])
def test_expand(tmp_path, cuda_mode, xshape, shape, dtype):
    x = arr(xshape, dtype)
    ref = x * np.ones(shape, dtype=dtype) if dtype != np.bool_ else np.broadcast_to(
        x, np.broadcast_shapes(xshape, shape)).copy()
    check(tmp_path, cuda_mode, [helper.make_node("Expand", ["x", "s"], ["y"])], {"x": x}, ["y"],
          inits={"s": i64(*shape)}, ref={"y": np.ascontiguousarray(ref.astype(dtype))})


@pytest.mark.parametrize("xshape,reps,dtype", [
    ((2, 3), (2, 3), np.float32),
    ((3, 1, 4), (1, 5, 2), np.int64),
    ((7, 13), (3, 8), np.float32),  # 2184 elements
    ((2, 2), (0, 3), np.int32),     # empty
])
def test_tile(tmp_path, cuda_mode, xshape, reps, dtype):
    x = arr(xshape, dtype)
    check(tmp_path, cuda_mode, [helper.make_node("Tile", ["x", "r"], ["y"])], {"x": x}, ["y"],
          inits={"r": i64(*reps)}, ref={"y": np.tile(x, reps)})


# ---- Pad -----------------------------------------------------------------------------------------

PADS = [
    ("constant", [1, 2, 0, 3], None),
    ("constant", [0, -1, 2, -2], 7.5),   # negative pads crop
    ("reflect", [2, 3, 1, 4], None),
    ("reflect", [-1, 2, 3, -2], None),
    ("edge", [3, 0, 2, 5], None),
    ("wrap", [2, 4, 5, 1], None),
]


@pytest.mark.parametrize("mode,pads,value", PADS,
                         ids=[f"{m}{i}" for i, (m, _, _) in enumerate(PADS)])
def test_pad(tmp_path, cuda_mode, mode, pads, value):
    x = arr((5, 6))
    ins, inits = ["x", "p"], {"p": i64(*pads)}
    if value is not None:
        ins.append("v")
        inits["v"] = np.array(value, np.float32)
    np_pads = [(pads[0], pads[2]), (pads[1], pads[3])]
    crop = tuple(slice(-b if b < 0 else 0, x.shape[d] + e if e < 0 else None)
                 for d, (b, e) in enumerate(np_pads))
    grow = [(max(b, 0), max(e, 0)) for b, e in np_pads]
    if mode == "constant":
        ref = np.pad(x[crop], grow, mode="constant", constant_values=value or 0)
    else:
        ref = np.pad(x, [(max(b, 0), max(e, 0)) for b, e in np_pads],
                     mode={"reflect": "reflect", "edge": "edge", "wrap": "wrap"}[mode])
        ref = ref[tuple(slice(-b if b < 0 else 0, ref.shape[d] + e if e < 0 else None)
                        for d, (b, e) in enumerate(np_pads))]
    check(tmp_path, cuda_mode, [helper.make_node("Pad", ins, ["y"], mode=mode)], {"x": x}, ["y"],
          inits=inits, ref={"y": ref}, ops=opsets(19))


def test_pad_axes_int64_large(tmp_path, cuda_mode):
    """Pads on two axes of a rank-4 int64 tensor (axes input, opset 18), 2880 elements."""
    x = arr((2, 3, 10, 12), np.int64)
    ref = np.pad(x, [(0, 0), (0, 0), (1, 1), (0, 4)], mode="edge")
    check(tmp_path, cuda_mode, [helper.make_node("Pad", ["x", "p", "", "a"], ["y"], mode="edge")],
          {"x": x}, ["y"], inits={"p": i64(1, 0, 1, 4), "a": i64(-2, 3)}, ref={"y": ref},
          ops=opsets(18))


def test_pad_runtime_constant(tmp_path, cuda_mode):
    """constant_value a graph input: the kernel reads it on the device."""
    x = arr((3, 4, 5))
    v = np.array([-3.25], np.float32)  # one element (the suite's files hold no rank-0 tensors)
    ref = np.pad(x, [(1, 0), (0, 2), (3, 1)], constant_values=-3.25)
    check(tmp_path, cuda_mode, [helper.make_node("Pad", ["x", "p", "v"], ["y"])], {"x": x, "v": v},
          ["y"], inits={"p": i64(1, 0, 3, 0, 2, 1)}, ref={"y": ref})


def test_pad_bool_and_empty(tmp_path, cuda_mode):
    x = arr((3, 4), np.bool_)
    check(tmp_path, cuda_mode, [helper.make_node("Pad", ["x", "p"], ["y"], mode="reflect")],
          {"x": x}, ["y"], inits={"p": i64(2, 1, 0, 3)},
          ref={"y": np.pad(x, [(2, 0), (1, 3)], mode="reflect")}, tag="b")
    x = arr((0, 4))
    check(tmp_path, cuda_mode, [helper.make_node("Pad", ["x", "p", "v"], ["y"])], {"x": x}, ["y"],
          inits={"p": i64(1, 0, 2, 1), "v": np.array(2.0, np.float32)},
          ref={"y": np.full((3, 5), 2.0, np.float32)}, tag="e")


def test_pad_opset10_attributes(tmp_path, cuda_mode):
    x = arr((4, 5), np.int32)
    node = helper.make_node("Pad", ["x"], ["y"], pads=[1, 0, 0, 2], value=9.0)
    check(tmp_path, cuda_mode, [node], {"x": x}, ["y"],
          ref={"y": np.pad(x, [(1, 0), (0, 2)], constant_values=9)}, ops=opsets(10))


# ---- Trilu ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("upper,k,dtype", [(1, None, np.float32), (0, None, np.float32),
                                           (1, 2, np.int64), (0, -3, np.bool_),
                                           (1, -100, np.float32), (0, 100, np.float32)])
def test_trilu(tmp_path, cuda_mode, upper, k, dtype):
    x = arr((3, 2, 7, 9), dtype)
    kk = 0 if k is None else k
    ref = np.triu(x, kk) if upper else np.tril(x, kk)
    ins, inits = ["x"], {}
    if k is not None:
        ins.append("k")
        inits["k"] = np.array(k, np.int64)
    check(tmp_path, cuda_mode, [helper.make_node("Trilu", ins, ["y"], upper=upper)], {"x": x},
          ["y"], inits=inits, ref={"y": ref})


def test_trilu_runtime_k_large(tmp_path, cuda_mode):
    """k a graph input (read on the device); 2400 elements."""
    x = arr((4, 20, 30))
    k = np.array([-4], np.int64)  # one element (the suite's files hold no rank-0 tensors)
    check(tmp_path, cuda_mode, [helper.make_node("Trilu", ["x", "k"], ["y"], upper=0)],
          {"x": x, "k": k}, ["y"], ref={"y": np.tril(x, -4)})


# ---- Dropout, constants --------------------------------------------------------------------------

def test_dropout_inference_with_mask(tmp_path, cuda_mode):
    x = arr((6, 7))
    nodes = [helper.make_node("Dropout", ["x", "r", "t"], ["y", "m"])]
    check(tmp_path, cuda_mode, nodes, {"x": x}, ["y", "m"],
          inits={"r": np.array(0.3, np.float32), "t": np.array(False)},
          ref={"y": x, "m": np.ones((6, 7), bool)})


def test_dropout_opset9_mask_dtype(tmp_path, cuda_mode):
    """Before opset 10 the mask has the data's dtype."""
    x = arr((5, 3), np.float64)
    check(tmp_path, cuda_mode, [helper.make_node("Dropout", ["x"], ["y", "m"])], {"x": x},
          ["y", "m"], ref={"y": x, "m": np.ones((5, 3))}, ops=opsets(9))


def test_dropout_training_is_refused(tmp_path, cuda_mode):
    x = arr((3, 3))
    model = save_model(tmp_path / "d.onnx", [helper.make_node("Dropout", ["x", "r", "t"], ["y"])],
                       {"x": x}, ["y"], inits={"r": np.array(0.5, np.float32),
                                               "t": np.array(True)})
    p = run_model(tmp_path, model, {"x": x}, "cuda", cuda_mode, check=False)
    assert p.returncode != 0 and "training_mode" in p.stderr, p.stderr


def test_constants_feed_device_ops(tmp_path, cuda_mode):
    """ConstantOfShape and Range are plan constants (folded on the host); their values reach
    device steps."""
    x = arr((3, 4), np.int64)
    nodes = [
        helper.make_node("ConstantOfShape", ["s"], ["c"],
                         value=helper.make_tensor("v", TensorProto.INT64, [1], [7])),
        helper.make_node("Range", ["a", "b", "d"], ["r"]),
        helper.make_node("Unsqueeze", ["r", "ax"], ["r2"]),
        helper.make_node("Concat", ["x", "c", "r2"], ["y"], axis=0),
    ]
    ref = np.concatenate([x, np.full((2, 4), 7, np.int64), np.arange(2, 10, 2)[None]], axis=0)
    check(tmp_path, cuda_mode, nodes, {"x": x}, ["y"],
          inits={"s": i64(2, 4), "a": np.array(2, np.int64), "b": np.array(10, np.int64),
                 "d": np.array(2, np.int64), "ax": i64(0)}, ref={"y": ref})
