"""The CUDA backend's neural-network family (runtime/cuda/k_nn.cu) against the CPU runtime
(runtime/cpu/k_nn*.c), on the emulator and, where one is visible, on the GPU.

Covered: MatMul (2-D odd sizes, a batch folded into M, 4-D batches that broadcast on either
side or both, 1-D operands on either side, K = 300, K = 0, empty, float64 and the integer types
on the direct loop), Gemm (every transA/transB, alpha/beta, C absent, scalar, row, column, full;
float64 and int64 with alpha/beta), the fused epilogues the planner puts into a product
(bias + Relu, bias + Gelu / Tanh / Sigmoid / LeakyRelu / Clip, bias + residual, a broadcast
addend that is not a block, a ReluGrad mask), Conv (2-D 3×3 stride 1 and 2, 1×1 with and
without stride, the ResNet stem 7×7/2, groups 2 on one and several images, depthwise, dilation 2,
asymmetric pads, auto_pad, 1-D and 3-D, bias or none, float64, Conv → BatchNormalization → Relu
folded by the planner, Conv → Add → Add fused), ConvTranspose (strides, pads, output_padding,
output_shape, groups, dilation, 1-D, float64), MaxPool (ceil_mode, pads, dilations, Indices in
both storage orders, int8 / uint8, 1-D and 3-D), AveragePool (count_include_pad, ceil_mode),
the global poolings (planes short and long, float64), BatchNormalization (constant and run-time
statistics, spatial rank 0 to 3, float64, the training form's running statistics, fused Add +
Relu), empty tensors and the clean refusal of dtypes the op does not take.

Tolerances: products and convolutions accumulate in another order than oneDNN, so they compare
within 1e-5 of the output's largest magnitude (2e-5 where K is 300); pooling, BatchNormalization
and the integer paths compare within 1e-6 (max pooling and integers exactly).
"""
import numpy as np
import pytest
from onnx import TensorProto, helper

import cuda_common
from cuda_common import assert_close, run_both, save_model, run_model
from cuda_common import cuda_mode  # noqa: F401  (the fixture: emulator, and gpu where one is visible)

cuda_common.DT.setdefault(np.dtype(np.uint8), TensorProto.UINT8)
cuda_common.DT.setdefault(np.dtype(np.int8), TensorProto.INT8)
cuda_common.DT.setdefault(np.dtype(np.uint32), TensorProto.UINT32)
cuda_common.DT.setdefault(np.dtype(np.uint64), TensorProto.UINT64)

RNG = np.random.default_rng(11)


def opsets(n):
    return [helper.make_opsetid("", n), helper.make_opsetid("ulc", 1)]


def arr(shape, dtype=np.float32, lo=-20, hi=20):
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        return RNG.integers(0 if dt.kind == "u" else lo, hi, size=shape).astype(dt)
    return RNG.standard_normal(shape).astype(dt)


def both(tmp_path, mode, nodes, feeds, outputs, inits=None, out_types=None, ops=None,
         rtol=1e-5, atol=1e-6, tag="m"):
    kw = {"opsets": ops} if ops else {}
    cpu, cuda = run_both(tmp_path, nodes, feeds, outputs, mode, inits=inits, out_types=out_types,
                         tag=tag, **kw)
    assert_close(cpu, cuda, rtol=rtol, atol=atol, what=tag)
    return cpu, cuda


def otypes(outputs, dtype):
    return {o: cuda_common.DT[np.dtype(dtype)] for o in outputs}


# ---- MatMul --------------------------------------------------------------------------------------

MATMUL_SHAPES = [
    ([7, 13], [13, 5]),              # odd sizes, one sgemm
    ([3, 7, 13], [13, 5]),           # batch folded into M
    ([2, 3, 7, 13], [13, 5]),
    ([2, 3, 4, 6], [2, 3, 6, 5]),    # both batched, equal dims: one strided-batched call
    ([2, 3, 4, 6], [2, 1, 6, 5]),    # B broadcast inside: rows merged per outer entry
    ([2, 1, 4, 6], [1, 3, 6, 5]),    # both broadcast: a loop of batched calls
    ([4, 6], [2, 3, 6, 5]),          # A broadcast over B's batch (stride 0)
    ([1, 3, 4, 6], [2, 3, 6, 5]),
    ([3, 1, 2, 4, 6], [5, 1, 6, 3]),  # rank 5 against 4
    ([13], [13, 5]),                 # 1-D operands
    ([7, 13], [13]),
    ([13], [13]),
    ([2, 3, 13], [13]),
    ([13], [2, 13, 5]),
    ([17, 300], [300, 9]),           # large K
    ([3, 0], [0, 4]),                # K = 0: zeros
    ([0, 5], [5, 3]),                # empty
    ([2, 0, 5], [5, 3]),
]


@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES, ids=[f"{a}x{b}" for a, b in MATMUL_SHAPES])
def test_matmul_shapes(tmp_path, cuda_mode, sa, sb):
    k = sa[-1]
    rtol = 2e-5 if k >= 300 else 1e-5
    both(tmp_path, cuda_mode, [helper.make_node("MatMul", ["a", "b"], ["y"])],
         {"a": arr(sa), "b": arr(sb)}, ["y"], rtol=rtol)


def test_matmul_constant_weight(tmp_path, cuda_mode):
    """B an initializer (a linear layer's weight, uploaded once), A a graph input."""
    both(tmp_path, cuda_mode, [helper.make_node("MatMul", ["a", "w"], ["y"])],
         {"a": arr([2, 5, 24])}, ["y"], inits={"w": arr([24, 10])})


@pytest.mark.parametrize("dtype", [np.float64, np.int64, np.int32, np.uint32, np.uint64])
def test_matmul_other_dtypes(tmp_path, cuda_mode, dtype):
    # 40·70 = 2800 outputs: more than the emulator's 8 blocks × 256, so the loop wraps
    shapes = [([40, 30], [30, 70]), ([2, 3, 4, 5], [3, 5, 6]), ([5], [2, 5, 3]), ([4, 5], [5])]
    for i, (sa, sb) in enumerate(shapes):
        lo, hi = (-1000, 1000) if np.dtype(dtype).kind == "i" else (0, 1000)
        a = arr(sa, dtype, lo, hi)
        b = arr(sb, dtype, lo, hi)
        if np.dtype(dtype).kind in "iu":  # large values: the products wrap as the CPU's
            a = (a * 1234567).astype(dtype)
        both(tmp_path, cuda_mode, [helper.make_node("MatMul", ["a", "b"], ["y"])], {"a": a, "b": b},
             ["y"], out_types=otypes(["y"], dtype), tag=f"mm{i}")


# ---- Gemm ----------------------------------------------------------------------------------------

C_SHAPES = [None, [], [1], [5], [1, 5], [7, 1], [7, 5]]


@pytest.mark.parametrize("ta", [0, 1])
@pytest.mark.parametrize("tb", [0, 1])
def test_gemm_transposes(tmp_path, cuda_mode, ta, tb):
    M, K, N = 7, 13, 5
    a = arr([K, M] if ta else [M, K])
    b = arr([N, K] if tb else [K, N])
    for i, cs in enumerate(C_SHAPES):
        feeds, inits = {"a": a, "b": b}, {}
        ins = ["a", "b"]
        if cs is not None:  # a scalar C as an initializer (inputs of rank 0 do not round-trip)
            (inits if cs == [] else feeds)["c"] = arr(cs)
            ins.append("c")
        alpha, beta = [(1.0, 1.0), (0.5, 2.0), (-1.5, 0.0)][i % 3]
        node = helper.make_node("Gemm", ins, ["y"], transA=ta, transB=tb, alpha=alpha, beta=beta)
        both(tmp_path, cuda_mode, [node], feeds, ["y"], inits=inits, tag=f"g{i}")


def test_gemm_constant_weight_bias(tmp_path, cuda_mode):
    """torch's Linear export: transB = 1, W and the bias initializers, then Relu."""
    nodes = [helper.make_node("Gemm", ["x", "w", "bias"], ["h"], transB=1),
             helper.make_node("Relu", ["h"], ["y"])]
    both(tmp_path, cuda_mode, nodes, {"x": arr([9, 300])}, ["y"],
         inits={"w": arr([33, 300]), "bias": arr([33])}, rtol=2e-5)


def test_gemm_k0(tmp_path, cuda_mode):
    node = helper.make_node("Gemm", ["a", "b", "c"], ["y"], alpha=2.0, beta=0.5)
    both(tmp_path, cuda_mode, [node], {"a": arr([4, 0]), "b": arr([0, 3]), "c": arr([3])}, ["y"])


@pytest.mark.parametrize("dtype", [np.float64, np.int64, np.int32])
def test_gemm_other_dtypes(tmp_path, cuda_mode, dtype):
    for i, (ta, tb, alpha, beta) in enumerate([(0, 0, 1.0, 1.0), (1, 1, 2.0, 3.0), (0, 1, 1.0, 0.0)]):
        M, K, N = 45, 11, 50  # 2250 outputs
        a = arr([K, M] if ta else [M, K], dtype)
        b = arr([N, K] if tb else [K, N], dtype)
        node = helper.make_node("Gemm", ["a", "b", "c"], ["y"], transA=ta, transB=tb, alpha=alpha,
                                beta=beta)
        both(tmp_path, cuda_mode, [node], {"a": a, "b": b, "c": arr([M, 1], dtype)}, ["y"],
             out_types=otypes(["y"], dtype), tag=f"g{i}")


# ---- fused epilogues -------------------------------------------------------------------------------

def act_nodes(kind, x, y):
    if kind == "relu":
        return [helper.make_node("Relu", [x], [y])], {}
    if kind == "gelu":
        return [helper.make_node("Gelu", [x], [y])], {}
    if kind == "gelu_tanh":
        return [helper.make_node("Gelu", [x], [y], approximate="tanh")], {}
    if kind == "tanh":
        return [helper.make_node("Tanh", [x], [y])], {}
    if kind == "sigmoid":
        return [helper.make_node("Sigmoid", [x], [y])], {}
    if kind == "leaky":
        return [helper.make_node("LeakyRelu", [x], [y], alpha=0.2)], {}
    if kind == "clip":
        return ([helper.make_node("Clip", [x, "lo", "hi"], [y])],
                {"lo": np.array(-0.5, np.float32), "hi": np.array(0.75, np.float32)})
    raise ValueError(kind)


@pytest.mark.parametrize("act", ["relu", "gelu", "gelu_tanh", "tanh", "sigmoid", "leaky", "clip"])
def test_matmul_bias_activation(tmp_path, cuda_mode, act):
    """MatMul → Add(bias) → activation: one fused step."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "bias"], ["z"])]
    an, ai = act_nodes(act, "z", "y")
    both(tmp_path, cuda_mode, nodes + an, {"x": arr([2, 7, 16])}, ["y"],
         inits={"w": arr([16, 11]), "bias": arr([11]), **ai}, ops=opsets(20))


def test_matmul_bias_residual(tmp_path, cuda_mode):
    """A transformer layer's MatMul → Add(bias) → Add(residual)."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node("Add", ["bias", "h"], ["z"]),
             helper.make_node("Add", ["z", "r"], ["y"])]
    both(tmp_path, cuda_mode, nodes, {"x": arr([3, 5, 16]), "r": arr([3, 5, 12])}, ["y"],
         inits={"w": arr([16, 12]), "bias": arr([12])})


def test_matmul_bias_gelu_residual(tmp_path, cuda_mode):
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node("Add", ["h", "bias"], ["z"]),
             helper.make_node("Gelu", ["z"], ["g"]),
             helper.make_node("Add", ["r", "g"], ["y"])]
    both(tmp_path, cuda_mode, nodes, {"x": arr([4, 16]), "r": arr([4, 12])}, ["y"],
         inits={"w": arr([16, 12]), "bias": arr([12])}, ops=opsets(20))


@pytest.mark.parametrize("ashape", [[4, 1], [2, 1, 1, 5], [2, 3, 4, 5], [1], [3, 1, 5]],
                         ids=["column", "strided", "full", "scalar", "middle"])
def test_matmul_addend_broadcast(tmp_path, cuda_mode, ashape):
    """Addends that broadcast to [2, 3, 4, 5] as a block or through strides (graph inputs)."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "z"], ["s"]),
             helper.make_node("Relu", ["s"], ["y"])]
    both(tmp_path, cuda_mode, nodes, {"x": arr([2, 3, 4, 6]), "w": arr([6, 5]), "z": arr(ashape)}, ["y"])


def test_gemm_c_then_add_relu(tmp_path, cuda_mode):
    """Gemm's own C (beta) and a fused addend and activation after it."""
    nodes = [helper.make_node("Gemm", ["a", "b", "c"], ["h"], beta=0.5, alpha=2.0),
             helper.make_node("Add", ["h", "z"], ["s"]),
             helper.make_node("Relu", ["s"], ["y"])]
    both(tmp_path, cuda_mode, nodes, {"a": arr([6, 8]), "b": arr([8, 5]), "c": arr([6, 1]),
                                      "z": arr([6, 5])}, ["y"])


def test_matmul_relugrad_mask(tmp_path, cuda_mode):
    """MatMul → ReluGrad(·, mask): the mask fused into the product's epilogue."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node("ReluGrad", ["h", "m"], ["y"], domain="ulc")]
    m = np.maximum(arr([3, 7, 5]), 0)
    both(tmp_path, cuda_mode, nodes, {"x": arr([3, 7, 9]), "w": arr([9, 5]), "m": m}, ["y"])


def test_matmul_f64_bias_relu(tmp_path, cuda_mode):
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "bias"], ["z"]),
             helper.make_node("Relu", ["z"], ["y"])]
    both(tmp_path, cuda_mode, nodes, {"x": arr([3, 6], np.float64), "w": arr([6, 4], np.float64),
                                      "bias": arr([4], np.float64)}, ["y"],
         out_types=otypes(["y"], np.float64))


# ---- Conv ----------------------------------------------------------------------------------------

CONVS = [
    # id, X, W, attributes, bias
    ("3x3s1p1", [2, 4, 9, 11], [6, 4, 3, 3], dict(pads=[1, 1, 1, 1]), True),
    ("3x3s2p1", [2, 4, 9, 11], [6, 4, 3, 3], dict(pads=[1, 1, 1, 1], strides=[2, 2]), True),
    ("1x1", [2, 8, 7, 5], [5, 8, 1, 1], {}, True),
    ("1x1_nobias", [3, 8, 6, 6], [4, 8, 1, 1], {}, False),
    ("1x1s2", [2, 8, 7, 5], [5, 8, 1, 1], dict(strides=[2, 2]), True),
    ("stem7x7s2", [1, 3, 24, 24], [8, 3, 7, 7], dict(pads=[3, 3, 3, 3], strides=[2, 2]), False),
    ("group2_n1", [1, 6, 8, 8], [4, 3, 3, 3], dict(group=2, pads=[1, 1, 1, 1]), True),
    ("group2_n3", [3, 6, 8, 8], [4, 3, 3, 3], dict(group=2, pads=[1, 1, 1, 1]), True),
    ("depthwise", [2, 6, 9, 9], [6, 1, 3, 3], dict(group=6, pads=[1, 1, 1, 1]), True),
    ("depthwise_x2", [1, 4, 9, 9], [8, 1, 3, 3], dict(group=4, strides=[2, 2]), True),
    ("dilation2", [2, 3, 12, 12], [5, 3, 3, 3], dict(dilations=[2, 2], pads=[2, 2, 2, 2]), True),
    ("asym_pads", [1, 3, 8, 10], [4, 3, 3, 2], dict(pads=[0, 1, 2, 1]), True),
    ("same_upper", [1, 3, 9, 8], [4, 3, 4, 3], dict(auto_pad="SAME_UPPER", strides=[2, 2]), True),
    ("same_lower", [1, 3, 9, 8], [4, 3, 4, 3], dict(auto_pad="SAME_LOWER", strides=[2, 1]), True),
    ("valid", [1, 3, 9, 8], [4, 3, 3, 3], dict(auto_pad="VALID"), True),
    ("conv1d", [2, 5, 17], [7, 5, 3], dict(pads=[1, 2], strides=[2]), True),
    ("conv1d_dil", [2, 4, 20], [3, 4, 5], dict(dilations=[3]), False),
    ("conv3d", [1, 3, 5, 6, 7], [4, 3, 3, 3, 3], dict(pads=[1, 0, 1, 1, 1, 0]), True),
    ("bigK", [1, 34, 6, 6], [9, 34, 3, 3], dict(pads=[1, 1, 1, 1]), True),  # K = 306
    ("wide", [1, 2, 40, 40], [3, 2, 3, 3], dict(pads=[1, 1, 1, 1]), True),  # > 2048 outputs
]


@pytest.mark.parametrize("cid,xs,ws,attrs,bias", CONVS, ids=[c[0] for c in CONVS])
def test_conv(tmp_path, cuda_mode, cid, xs, ws, attrs, bias):
    ins = ["x", "w"] + (["b"] if bias else [])
    feeds = {"x": arr(xs), "w": arr(ws)}
    if bias:
        feeds["b"] = arr([ws[0]])
    rtol = 2e-5 if ws[1] * int(np.prod(ws[2:])) >= 300 else 1e-5
    both(tmp_path, cuda_mode, [helper.make_node("Conv", ins, ["y"], **attrs)], feeds, ["y"], rtol=rtol,
         tag=cid)


def test_conv_constant_weights(tmp_path, cuda_mode):
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1], strides=[2, 2])
    both(tmp_path, cuda_mode, [node], {"x": arr([2, 4, 10, 10])}, ["y"],
         inits={"w": arr([8, 4, 3, 3]), "b": arr([8])})


def test_conv_f64(tmp_path, cuda_mode):
    for i, (xs, ws, attrs) in enumerate([([2, 4, 9, 7], [6, 2, 3, 3], dict(group=2, pads=[1, 0, 1, 2])),
                                         ([1, 3, 11], [2, 3, 3], dict(dilations=[2], strides=[2]))]):
        feeds = {"x": arr(xs, np.float64), "w": arr(ws, np.float64), "b": arr([ws[0]], np.float64)}
        both(tmp_path, cuda_mode, [helper.make_node("Conv", ["x", "w", "b"], ["y"], **attrs)], feeds, ["y"],
             out_types=otypes(["y"], np.float64), tag=f"c{i}")


def test_conv_bn_relu(tmp_path, cuda_mode):
    """Conv → BatchNormalization → Relu with constant weights and statistics: the planner folds
    the BatchNormalization into the Conv and fuses the Relu."""
    C, M = 4, 6
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["h"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["h", "s", "bb", "mu", "var"], ["n"], epsilon=1e-3),
             helper.make_node("Relu", ["n"], ["y"])]
    inits = {"w": arr([M, C, 3, 3]), "b": arr([M]), "s": arr([M]), "bb": arr([M]), "mu": arr([M]),
             "var": (RNG.random(M) + 0.5).astype(np.float32)}
    both(tmp_path, cuda_mode, nodes, {"x": arr([2, C, 8, 8])}, ["y"], inits=inits)


def test_conv_add_relu_residual(tmp_path, cuda_mode):
    """A residual block's end: Conv → Add(shortcut) → Relu, and Conv → Add(channel bias) →
    Add(residual)."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["h"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["h", "sc"], ["s"]),
             helper.make_node("Relu", ["s"], ["y"])]
    both(tmp_path, cuda_mode, nodes, {"x": arr([2, 3, 6, 6]), "sc": arr([2, 5, 6, 6])}, ["y"],
         inits={"w": arr([5, 3, 3, 3])}, tag="a")
    nodes = [helper.make_node("Conv", ["x", "w"], ["h"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["h", "cb"], ["s"]),
             helper.make_node("Add", ["s", "r"], ["y"])]
    both(tmp_path, cuda_mode, nodes, {"x": arr([2, 3, 6, 6]), "r": arr([2, 5, 6, 6])}, ["y"],
         inits={"w": arr([5, 3, 3, 3]), "cb": arr([5, 1, 1])}, tag="b")


def test_conv_chunks(tmp_path, cuda_mode, monkeypatch):
    """The batch in chunks of 2 images (ULC_CUDA_NN_COL_BYTES bounds the column buffer): the
    per-group batched calls, then a last chunk of one image batched over the groups."""
    monkeypatch.setenv("ULC_CUDA_NN_COL_BYTES", str(2 * 4 * 9 * 36 * 4 + 1))
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], group=2, pads=[1, 1, 1, 1])
    both(tmp_path, cuda_mode, [node], {"x": arr([5, 4, 6, 6]), "w": arr([6, 2, 3, 3]), "b": arr([6])}, ["y"],
         tag="conv")
    monkeypatch.setenv("ULC_CUDA_NN_COL_BYTES", str(2 * 6 * 4 * 9 * 4 + 1))
    nodes = [helper.make_node("ConvTranspose", ["x", "w", "b"], ["h"], group=2, strides=[2, 2]),
             helper.make_node("Relu", ["h"], ["y"])]
    both(tmp_path, cuda_mode, nodes, {"x": arr([5, 4, 3, 3]), "w": arr([4, 3, 2, 2]), "b": arr([6])}, ["y"],
         tag="convt")


def test_conv_empty(tmp_path, cuda_mode):
    both(tmp_path, cuda_mode, [helper.make_node("Conv", ["x", "w", "b"], ["y"])],
         {"x": arr([0, 3, 5, 5]), "w": arr([2, 3, 3, 3]), "b": arr([2])}, ["y"])


# ---- ConvTranspose -------------------------------------------------------------------------------

CONVTS = [
    ("s2p1op1", [2, 4, 5, 6], [4, 3, 3, 3], dict(strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]), True),
    ("s1", [1, 3, 6, 6], [3, 5, 3, 3], {}, False),
    ("group2", [2, 4, 5, 5], [4, 2, 3, 3], dict(group=2, strides=[2, 2]), True),
    ("group2_n1", [1, 4, 5, 5], [4, 3, 2, 2], dict(group=2, strides=[2, 2]), True),
    ("dilation", [1, 2, 5, 5], [2, 3, 3, 3], dict(dilations=[2, 2], pads=[1, 0, 2, 1]), True),
    ("output_shape", [1, 2, 4, 4], [2, 3, 3, 3], dict(strides=[2, 2], output_shape=[10, 9]), True),
    ("same_upper", [1, 2, 4, 5], [2, 3, 3, 3], dict(strides=[2, 2], auto_pad="SAME_UPPER"), False),
    ("conv1d", [2, 3, 7], [3, 4, 4], dict(strides=[3], pads=[1, 2]), True),
    ("conv3d", [1, 2, 3, 4, 3], [2, 2, 2, 3, 2], dict(strides=[2, 1, 2]), True),
    ("wide", [1, 2, 12, 12], [2, 4, 3, 3], dict(strides=[2, 2]), True),  # 2500 outputs
]


@pytest.mark.parametrize("cid,xs,ws,attrs,bias", CONVTS, ids=[c[0] for c in CONVTS])
def test_conv_transpose(tmp_path, cuda_mode, cid, xs, ws, attrs, bias):
    ins = ["x", "w"] + (["b"] if bias else [])
    feeds = {"x": arr(xs), "w": arr(ws)}
    if bias:
        feeds["b"] = arr([ws[1] * attrs.get("group", 1)])
    both(tmp_path, cuda_mode, [helper.make_node("ConvTranspose", ins, ["y"], **attrs)], feeds, ["y"],
         tag=cid)


def test_conv_transpose_fused_and_f64(tmp_path, cuda_mode):
    nodes = [helper.make_node("ConvTranspose", ["x", "w", "b"], ["h"], strides=[2, 2]),
             helper.make_node("Add", ["h", "z"], ["s"]),
             helper.make_node("Relu", ["s"], ["y"])]
    both(tmp_path, cuda_mode, nodes, {"x": arr([2, 3, 4, 4]), "z": arr([1, 5, 1, 1])}, ["y"],
         inits={"w": arr([3, 5, 3, 3]), "b": arr([5])}, tag="fused")
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], strides=[2, 2], pads=[0, 1, 1, 0])
    both(tmp_path, cuda_mode, [node], {"x": arr([1, 2, 4, 3], np.float64), "w": arr([2, 3, 3, 3], np.float64),
                                       "b": arr([3], np.float64)}, ["y"],
         out_types=otypes(["y"], np.float64), tag="f64")


# ---- pooling -------------------------------------------------------------------------------------

POOLS = [
    ("max3x3s2p1", "MaxPool", [2, 3, 11, 11], dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    ("max_ceil", "MaxPool", [1, 2, 10, 9], dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)),
    ("max_dil", "MaxPool", [1, 2, 10, 10], dict(kernel_shape=[2, 3], dilations=[2, 2], pads=[1, 0, 1, 2])),
    ("max1d", "MaxPool", [2, 3, 17], dict(kernel_shape=[4], strides=[3], ceil_mode=1)),
    ("max3d", "MaxPool", [1, 2, 5, 6, 7], dict(kernel_shape=[2, 3, 2], strides=[2, 2, 2], pads=[0, 1, 1, 1, 1, 0])),
    ("max_wide", "MaxPool", [2, 3, 30, 30], dict(kernel_shape=[2, 2], strides=[1, 1])),  # 5046 outputs
    ("max_same", "MaxPool", [1, 2, 7, 8], dict(kernel_shape=[3, 2], strides=[2, 2], auto_pad="SAME_UPPER")),
    ("avg", "AveragePool", [2, 3, 9, 9], dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    ("avg_incl", "AveragePool", [2, 3, 9, 9], dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                                                    count_include_pad=1)),
    ("avg_ceil", "AveragePool", [1, 2, 10, 9], dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)),
    ("avg_ceil_incl", "AveragePool", [1, 2, 10, 9], dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1,
                                                         count_include_pad=1, pads=[1, 0, 0, 1])),
    ("avg1d", "AveragePool", [2, 3, 12], dict(kernel_shape=[5], strides=[2], pads=[2, 2])),
    ("avg3d", "AveragePool", [1, 2, 4, 5, 6], dict(kernel_shape=[2, 2, 3], strides=[2, 1, 2], count_include_pad=1,
                                                   pads=[0, 1, 1, 1, 0, 1])),
    ("avg_wide", "AveragePool", [1, 3, 40, 40], dict(kernel_shape=[2, 2])),
]


@pytest.mark.parametrize("pid,op,xs,attrs", POOLS, ids=[p[0] for p in POOLS])
def test_pool(tmp_path, cuda_mode, pid, op, xs, attrs):
    both(tmp_path, cuda_mode, [helper.make_node(op, ["x"], ["y"], **attrs)], {"x": arr(xs)}, ["y"],
         rtol=1e-6, atol=1e-6, tag=pid)


def test_pool_windows_in_padding(tmp_path, cuda_mode):
    """Pads as large as the kernel: windows wholly in the padding (max: the lowest float, average:
    0), an AveragePool with dilations (opset 19), and an empty batch."""
    for i, (op, attrs) in enumerate([("MaxPool", dict(kernel_shape=[2, 2], pads=[2, 2, 2, 2])),
                                     ("AveragePool", dict(kernel_shape=[2, 2], pads=[2, 2, 2, 2])),
                                     ("AveragePool", dict(kernel_shape=[2, 2], pads=[2, 2, 2, 2],
                                                          count_include_pad=1)),
                                     ("AveragePool", dict(kernel_shape=[2, 3], dilations=[2, 2],
                                                          pads=[1, 1, 1, 1], ceil_mode=1))]):
        both(tmp_path, cuda_mode, [helper.make_node(op, ["x"], ["y"], **attrs)], {"x": arr([1, 2, 5, 6])}, ["y"],
             ops=opsets(19), rtol=1e-6, atol=1e-6, tag=f"p{i}")
    both(tmp_path, cuda_mode, [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2])],
         {"x": arr([0, 2, 5, 6])}, ["y"], tag="empty")


@pytest.mark.parametrize("order", [0, 1])
def test_maxpool_indices(tmp_path, cuda_mode, order):
    for i, (xs, attrs) in enumerate([([2, 3, 9, 8], dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
                                     ([1, 2, 4, 5, 6], dict(kernel_shape=[2, 2, 2], strides=[2, 2, 2],
                                                            ceil_mode=1))]):
        node = helper.make_node("MaxPool", ["x"], ["y", "ind"], storage_order=order, **attrs)
        both(tmp_path, cuda_mode, [node], {"x": arr(xs)}, ["y", "ind"], out_types={"ind": TensorProto.INT64},
             rtol=0, atol=0, tag=f"i{i}")


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.float64])
def test_maxpool_dtypes(tmp_path, cuda_mode, dtype):
    x = arr([2, 3, 9, 9], dtype, -128, 127) if np.dtype(dtype).kind == "i" else arr([2, 3, 9, 9], dtype, 0, 255)
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    both(tmp_path, cuda_mode, [node], {"x": x}, ["y"], out_types=otypes(["y"], dtype), rtol=0, atol=0)


def test_avgpool_f64(tmp_path, cuda_mode):
    node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 2], strides=[2, 2], ceil_mode=1)
    both(tmp_path, cuda_mode, [node], {"x": arr([2, 3, 9, 8], np.float64)}, ["y"],
         out_types=otypes(["y"], np.float64), rtol=1e-12, atol=1e-12)


# short planes (a thread each) and long ones (a block each; 12 planes > the emulator's 8 blocks)
GPOOLS = [[2, 3, 7, 7], [2, 6, 9, 9], [1, 4, 100], [2, 3], [1, 2, 3, 4, 5], [3, 700, 2, 2], [0, 3, 4, 4]]


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
@pytest.mark.parametrize("xs", GPOOLS, ids=["x".join(map(str, s)) for s in GPOOLS])
def test_global_pool(tmp_path, cuda_mode, op, xs):
    both(tmp_path, cuda_mode, [helper.make_node(op, ["x"], ["y"])], {"x": arr(xs)}, ["y"], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
def test_global_pool_f64(tmp_path, cuda_mode, op):
    for i, xs in enumerate([[2, 3, 5, 5], [1, 2, 20, 20]]):
        both(tmp_path, cuda_mode, [helper.make_node(op, ["x"], ["y"])], {"x": arr(xs, np.float64)}, ["y"],
             out_types=otypes(["y"], np.float64), rtol=1e-12, atol=1e-12, tag=f"p{i}")


# ---- BatchNormalization --------------------------------------------------------------------------

def bn_params(c, dtype=np.float32):
    return {"s": arr([c], dtype), "bb": arr([c], dtype), "mu": arr([c], dtype),
            "var": (RNG.random(c) + 0.5).astype(dtype)}


@pytest.mark.parametrize("xs", [[2, 3], [2, 3, 7], [2, 3, 4, 5], [1, 2, 3, 4, 5], [3, 5, 30, 30]],
                         ids=["r2", "r3", "r4", "r5", "wide"])
def test_batchnorm(tmp_path, cuda_mode, xs):
    """Statistics as graph inputs (a run-time fold on the device) and as initializers."""
    c = xs[1]
    node = helper.make_node("BatchNormalization", ["x", "s", "bb", "mu", "var"], ["y"], epsilon=1e-4)
    feeds = {"x": arr(xs), **bn_params(c)}
    both(tmp_path, cuda_mode, [node], feeds, ["y"], tag="inputs")
    both(tmp_path, cuda_mode, [node], {"x": feeds["x"]}, ["y"], inits=bn_params(c), tag="consts")


def test_batchnorm_f64_and_mixed(tmp_path, cuda_mode):
    node = helper.make_node("BatchNormalization", ["x", "s", "bb", "mu", "var"], ["y"])
    both(tmp_path, cuda_mode, [node], {"x": arr([2, 3, 4, 4], np.float64), **bn_params(3, np.float64)}, ["y"],
         out_types=otypes(["y"], np.float64), rtol=1e-12, atol=1e-12, tag="f64")
    both(tmp_path, cuda_mode, [node], {"x": arr([2, 3, 4, 4]), **bn_params(3, np.float64)}, ["y"], tag="mixed")


def test_batchnorm_spatial0(tmp_path, cuda_mode):
    """Opset 7's spatial = 0: a scale, bias, mean and variance per channel and position."""
    node = helper.make_node("BatchNormalization", ["x", "s", "bb", "mu", "var"], ["y"], spatial=0)
    both(tmp_path, cuda_mode, [node], {"x": arr([3, 2, 4, 5]), **bn_params(2 * 4 * 5)}, ["y"], ops=opsets(7))


def test_batchnorm_training(tmp_path, cuda_mode):
    """Batch statistics (one block per channel; 10 channels > the emulator's 8 blocks) and the
    running statistics."""
    node = helper.make_node("BatchNormalization", ["x", "s", "bb", "mu", "var"], ["y", "rm", "rv"],
                            training_mode=1, momentum=0.8, epsilon=1e-3)
    both(tmp_path, cuda_mode, [node], {"x": arr([4, 3, 5, 6]), **bn_params(3)}, ["y", "rm", "rv"], tag="c3")
    both(tmp_path, cuda_mode, [node], {"x": arr([3, 10, 40]), **bn_params(10)}, ["y", "rm", "rv"], tag="c10")
    both(tmp_path, cuda_mode, [node], {"x": arr([2, 3, 4], np.float64), **bn_params(3, np.float64)},
         ["y", "rm", "rv"], out_types=otypes(["y", "rm", "rv"], np.float64), rtol=1e-12, atol=1e-12, tag="f64")


def test_batchnorm_add_relu(tmp_path, cuda_mode):
    nodes = [helper.make_node("BatchNormalization", ["x", "s", "bb", "mu", "var"], ["n"]),
             helper.make_node("Add", ["n", "z"], ["a"]),
             helper.make_node("Relu", ["a"], ["y"])]
    both(tmp_path, cuda_mode, nodes, {"x": arr([2, 4, 5, 5]), "z": arr([2, 4, 5, 5])}, ["y"], inits=bn_params(4))


def test_batchnorm_empty(tmp_path, cuda_mode):
    node = helper.make_node("BatchNormalization", ["x", "s", "bb", "mu", "var"], ["y"])
    both(tmp_path, cuda_mode, [node], {"x": arr([0, 3, 4]), **bn_params(3)}, ["y"])


# ---- refusals ------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["matmul_i8", "maxpool_i32", "conv_i32"])
def test_refused_dtype(tmp_path, cuda_mode, case):
    """A dtype the op does not take fails cleanly on cuda (exit code, a message naming the node)."""
    if case == "matmul_i8":
        nodes, feeds = [helper.make_node("MatMul", ["a", "b"], ["y"], name="mm")], \
            {"a": arr([3, 4], np.int8), "b": arr([4, 2], np.int8)}
        ot = TensorProto.INT8
    elif case == "maxpool_i32":
        nodes, feeds = [helper.make_node("MaxPool", ["a"], ["y"], kernel_shape=[2, 2], name="mp")], \
            {"a": arr([1, 2, 4, 4], np.int32)}
        ot = TensorProto.INT32
    else:
        nodes, feeds = [helper.make_node("Conv", ["a", "b"], ["y"], name="cv")], \
            {"a": arr([1, 2, 4, 4], np.int32), "b": arr([1, 2, 3, 3], np.int32)}
        ot = TensorProto.INT32
    model = save_model(tmp_path / "m.onnx", nodes, feeds, ["y"], out_types={"y": ot})
    p = run_model(tmp_path, model, feeds, "cuda", cuda_mode, check=False)
    assert p.returncode != 0
    assert nodes[0].name in p.stderr and "dtype" in p.stderr, p.stderr
