"""The CUDA backend's gradient and loss ops (domain "ulc", ir/ops_ulc.def; runtime/cuda/k_grad*.cu)
against the CPU runtime (runtime/cpu/k_grad.c, k_grad_conv.c, k_loss.c), on the emulator and,
where one is visible, on the GPU.

One ulc node per model, as tests/e2e/test_grad_kernels.py builds them: data tensors are graph
inputs (so the node runs on the device, not folded at plan time), shape inputs (x_shape,
data_shape) are int64 initializers (plan constants, read at in[i]->host). Covered:

  ReluGrad / GeluGrad (none, tanh)  odd sizes past 8 blocks × 256 (grid-stride wrap, float4 and
                                    its tail), zeros, an empty tensor
  SoftmaxGrad / LogSoftmaxGrad      axes -1 (a warp per row; rows over 1024: a block per row),
                                    1 and 0 (the column path), rank 1, empty
  LayerNormGrad                     axes -1, 1, -2; all outputs, dx only, dx + dbias (dscale
                                    absent), scale broadcast over the normalised dims, rows over
                                    1024 (block rows), many rows (chunked column sums), empty
  GatherGrad                        axes 0, 1, -1; repeated and negative indices (int64, int32),
                                    row chunks, many repeats of few rows, a constant index out of
                                    range refused
  MaxPoolGrad                       3×3 stride 2 overlapping windows, ceil_mode, dilation,
                                    asymmetric pads, auto_pad, 1-D and 3-D; random and tied values
  AveragePoolGrad                   count_include_pad 0/1, ceil_mode, asymmetric, auto_pad, 1-D, 3-D
  ConvGradData / ConvGradWeight     the direct paths (fewer than 8 output channels per group:
                                    depthwise, narrow groups) and the GEMM paths (cuBLAS + col2im /
                                    im2col, batched over images or groups, in several chunks of
                                    images), stride 2, pads (asymmetric, auto_pad), groups,
                                    depthwise, dilation, 1×1, 7×7, 1-D and 3-D; W constant and at
                                    run time; dB present and absent; an empty batch
  SoftmaxCrossEntropy(Grad)         int64 / int32 labels with ignored rows (-100, V), no labels,
                                    soft targets (one row, leading 1s, full), rows over 1024
                                    classes, every combination of the gradient inputs
  SquaredDistance(Grad)             rows of several chunks, one row, empty; da / db optional
  refusals                          a float64 input, cleanly refused on cuda as on the cpu

Tolerance: 1e-5 relative to the largest magnitude of the CPU's output (sums run in other orders).
"""
import numpy as np
import pytest
from onnx import helper

from cuda_common import assert_close, cuda_mode, run_both, run_model, save_model  # noqa: F401 (the fixture)

RNG = np.random.default_rng(4321)
RTOL, ATOL = 1e-5, 1e-7


def rnd(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def i64(*v):
    return np.array(v, np.int64)


def node(op, ins, outs, **attrs):
    return helper.make_node(op, ins, outs, domain="ulc", **attrs)


def finite(cpu, cuda):
    """Infinities must match exactly; then they are taken out of the tolerance check."""
    a, b = {}, {}
    for k in cpu:
        x, y = cpu[k], cuda.get(k, cpu[k])
        if x.dtype.kind == "f" and x.shape == y.shape:
            inf = np.isinf(x)
            assert np.array_equal(inf, np.isinf(y)) and np.array_equal(x[inf], y[inf]), k
            x, y = np.where(inf, 0, x).astype(x.dtype), np.where(inf, 0, y).astype(y.dtype)
        a[k], b[k] = x, y
    return a, b


def check(tmp_path, nodes, feeds, outputs, mode, inits=None, tag="m", rtol=RTOL):
    cpu, cuda = run_both(tmp_path, nodes, feeds, outputs, mode, inits=inits, tag=tag)
    assert_close(*finite(cpu, cuda), rtol=rtol, atol=ATOL, what=tag)
    return cpu, cuda


# ---- ReluGrad, GeluGrad -------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(3, 50, 7), (9003,), (2, 0, 4)], ids=["small", "wrap", "empty"])
def test_relu_grad(tmp_path, cuda_mode, shape):
    x = rnd(*shape)
    x.reshape(-1)[: x.size // 7] = 0.0
    y = np.maximum(x, 0)
    cpu, cuda = check(tmp_path, [node("ReluGrad", ["dy", "y"], ["dx"])],
                      {"dy": rnd(*shape), "y": y}, ["dx"], cuda_mode)
    assert np.array_equal(cpu["dx"], cuda["dx"])


@pytest.mark.parametrize("approx", ["none", "tanh"])
def test_gelu_grad(tmp_path, cuda_mode, approx):
    x = np.concatenate([np.linspace(-12, 12, 8001, dtype=np.float32), rnd(999, scale=3.0),
                        np.float32([0.0, -0.0, 1e-25, -1e-25])]).reshape(-1)
    check(tmp_path, [node("GeluGrad", ["dy", "x"], ["dx"], approximate=approx)],
          {"dy": rnd(*x.shape), "x": x}, ["dx"], cuda_mode)


# ---- SoftmaxGrad, LogSoftmaxGrad ----------------------------------------------------------------

@pytest.mark.parametrize("op", ["SoftmaxGrad", "LogSoftmaxGrad"])
@pytest.mark.parametrize("shape,axis", [((3, 130, 7), -1), ((3, 130, 7), 1), ((3, 13, 70), 0),
                                        ((5, 1500), -1), ((300,), 0), ((2, 0, 3), 1)],
                         ids=["rows", "cols", "axis0", "blockrows", "rank1", "empty"])
def test_softmax_grads(tmp_path, cuda_mode, op, shape, axis):
    x = rnd(*shape, scale=2.0)
    if x.size:
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        sm = e / e.sum(axis=axis, keepdims=True)
        y = np.log(sm) if op == "LogSoftmaxGrad" else sm
    else:
        y = x
    check(tmp_path, [node(op, ["dy", "y"], ["dx"], axis=axis)],
          {"dy": rnd(*shape), "y": y.astype(np.float32)}, ["dx"], cuda_mode)


# ---- LayerNormGrad ------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,axis,outs", [
    ((4, 6, 40), -1, ["dx", "dscale", "dbias"]),
    ((3, 7, 9), 1, ["dx", "dscale", "dbias"]),
    ((5, 6, 8), -2, ["dx", "dscale", "dbias"]),
    ((3, 1100), -1, ["dx", "dscale", "dbias"]),        # block rows
    ((700, 24), -1, ["dx", "dscale", "dbias"]),        # many rows: chunked column sums
    ((4, 6, 40), -1, ["dx"]),
    ((4, 6, 40), -1, ["dx", "", "dbias"]),
    ((4, 6, 40), -1, ["dx", "dscale"]),
    ((0, 6), -1, ["dx", "dscale", "dbias"]),
], ids=["last", "axis1", "axis-2", "blockrows", "manyrows", "dxonly", "dbias", "dscale", "empty"])
def test_layernorm_grad(tmp_path, cuda_mode, shape, axis, outs):
    x = rnd(*shape, scale=2.0) + 3.0
    norm = shape[axis % len(shape):]
    check(tmp_path, [node("LayerNormGrad", ["dy", "x", "scale"], outs, axis=axis, epsilon=1e-3)],
          {"dy": rnd(*shape), "x": x, "scale": rnd(*norm) + 1.0}, [o for o in outs if o], cuda_mode)


@pytest.mark.parametrize("sshape", [(1, 8), (6, 1), (8,)])
def test_layernorm_grad_broadcast_scale(tmp_path, cuda_mode, sshape):
    shape = (5, 6, 8)
    outs = ["dx", "dscale", "dbias"]
    check(tmp_path, [node("LayerNormGrad", ["dy", "x", "scale"], outs, axis=-2)],
          {"dy": rnd(*shape), "x": rnd(*shape), "scale": rnd(*sshape) + 1.0}, outs, cuda_mode)


# ---- GatherGrad ---------------------------------------------------------------------------------

@pytest.mark.parametrize("axis,dshape,ind", [
    (0, (5, 4, 3), [[0, -1, 2], [2, 2, 4]]),
    (1, (5, 4, 3), [3, -4, 3, 1, 3]),
    (-1, (2, 3, 6), [[5], [-6], [0]]),
    (0, (10, 700), [3, 3, -7, 9, 0, 3]),
    (1, (40, 6, 2), [[1, 1], [5, -1]]),
    (0, (900, 1), [5, -1, 5, 899, 0, 5, 5]),   # one column: many row chunks
])
@pytest.mark.parametrize("idt", [np.int64, np.int32])
def test_gather_grad(tmp_path, cuda_mode, axis, dshape, ind, idt):
    ind = np.array(ind, idt)
    ax = axis % len(dshape)
    dy = rnd(*(dshape[:ax] + ind.shape + dshape[ax + 1:]))
    check(tmp_path, [node("GatherGrad", ["dy", "ind", "shape"], ["dd"], axis=axis)],
          {"dy": dy, "ind": ind}, ["dd"], cuda_mode, inits={"shape": i64(*dshape)})


def test_gather_grad_repeats(tmp_path, cuda_mode):
    """Many repeats of a few rows: sums in index order, as on the CPU (and the same bits twice)."""
    ind = RNG.integers(-8, 8, size=2000).astype(np.int64)
    feeds = {"dy": rnd(2000, 300), "ind": ind}
    nodes = [node("GatherGrad", ["dy", "ind", "shape"], ["dd"], axis=0)]
    cpu, cuda = check(tmp_path, nodes, feeds, ["dd"], cuda_mode, inits={"shape": i64(8, 300)})
    _, again = run_both(tmp_path, nodes, feeds, ["dd"], cuda_mode, inits={"shape": i64(8, 300)},
                        tag="again")
    assert again["dd"].tobytes() == cuda["dd"].tobytes()


def test_gather_grad_constant_index_out_of_range(tmp_path, cuda_mode):
    model = save_model(tmp_path / "g.onnx",
                       [helper.make_node("GatherGrad", ["dy", "ind", "s"], ["dd"], domain="ulc",
                                         name="g_bwd")],
                       {"dy": rnd(2, 3)}, ["dd"], inits={"ind": i64(1, 5), "s": i64(5, 3)})
    p = run_model(tmp_path, model, {"dy": rnd(2, 3)}, "cuda", cuda_mode, check=False)
    assert p.returncode != 0 and "g_bwd" in p.stderr and "indices[1] = 5 is out of range" in p.stderr, p.stderr


# ---- pooling ------------------------------------------------------------------------------------

def pool_attrs(k, s=None, pads=None, d=None, ceil=0, cip=None, auto_pad=None):
    a = {"kernel_shape": list(k)}
    if s: a["strides"] = list(s)
    if pads: a["pads"] = list(pads)
    if d: a["dilations"] = list(d)
    if ceil: a["ceil_mode"] = 1
    if cip is not None: a["count_include_pad"] = cip
    if auto_pad: a["auto_pad"] = auto_pad
    return a


def pool_out(shape, attrs):
    """The pooling's output shape (ulc's rule: ceil_mode drops a window starting in the end pad)."""
    nsp = len(shape) - 2
    k, s = attrs["kernel_shape"], attrs.get("strides", [1] * nsp)
    d = attrs.get("dilations", [1] * nsp)
    out = []
    for i in range(nsp):
        ext = (k[i] - 1) * d[i] + 1
        if attrs.get("auto_pad") in ("SAME_UPPER", "SAME_LOWER"):
            out.append(-(-shape[2 + i] // s[i]))
            continue
        pads = attrs.get("pads", [0] * 2 * nsp)
        pb, pe = pads[i], pads[nsp + i]
        span = shape[2 + i] + pb + pe - ext
        if attrs.get("ceil_mode"):
            o = -(-span // s[i]) + 1
            if (o - 1) * s[i] >= shape[2 + i] + pb:
                o -= 1
        else:
            o = span // s[i] + 1
        out.append(o)
    return (shape[0], shape[1], *out)


MAXPOOL_CASES = [
    ((2, 3, 9, 10), pool_attrs((3, 3), (2, 2), (1, 1, 1, 1))),       # overlapping windows
    ((2, 3, 9, 10), pool_attrs((3, 3), (2, 2))),
    ((2, 3, 9, 10), pool_attrs((2, 2), (2, 2), ceil=1)),
    ((2, 3, 9, 10), pool_attrs((3, 2), (1, 2), (1, 0, 1, 0), d=(2, 2), ceil=1)),
    ((1, 2, 8, 9), pool_attrs((3, 3), (2, 2), (0, 1, 2, 0))),
    ((1, 2, 8, 10), pool_attrs((3, 3), (2, 2), auto_pad="SAME_LOWER")),
    ((2, 3, 11), pool_attrs((3,), (2,), (1, 1))),
    ((1, 2, 5, 6, 7), pool_attrs((2, 3, 2), (2, 1, 2), (1, 1, 0, 1, 1, 0), ceil=1)),
    ((2, 4, 30, 31), pool_attrs((3, 3), (1, 1), (1, 1, 1, 1))),    # past 8 blocks × 256
]


@pytest.mark.parametrize("ties", [0, 1])
@pytest.mark.parametrize("case", range(len(MAXPOOL_CASES)))
def test_maxpool_grad(tmp_path, cuda_mode, case, ties):
    shape, attrs = MAXPOOL_CASES[case]
    x = RNG.integers(0, 3, size=shape).astype(np.float32) if ties else rnd(*shape)
    check(tmp_path, [node("MaxPoolGrad", ["dy", "x"], ["dx"], **attrs)],
          {"dy": rnd(*pool_out(shape, attrs)), "x": x}, ["dx"], cuda_mode)


AVGPOOL_CASES = [
    ((2, 3, 9, 10), pool_attrs((3, 3), (2, 2), (1, 1, 1, 1), cip=0)),
    ((2, 3, 9, 10), pool_attrs((3, 3), (2, 2), (1, 1, 1, 1), cip=1)),
    ((2, 3, 9, 10), pool_attrs((2, 3), (2, 2), (1, 1, 1, 1), ceil=1, cip=0)),
    ((1, 2, 7, 8), pool_attrs((3, 3), (2, 2), (1, 1, 1, 1), ceil=1, cip=1)),
    ((1, 2, 7, 8), pool_attrs((3, 2), (2, 1), (0, 1, 2, 0), cip=0)),
    ((1, 2, 7, 8), pool_attrs((3, 2), (2, 3), (0, 1, 2, 0), cip=1)),
    ((1, 2, 7, 8), pool_attrs((4, 3), (2, 2), auto_pad="SAME_UPPER")),
    ((2, 3, 11), pool_attrs((3,), (2,), (1, 1), cip=1)),
    ((1, 2, 5, 6, 5), pool_attrs((2, 3, 2), (2, 1, 2), (1, 1, 0, 1, 1, 0), cip=0)),
    ((1, 1, 5, 6, 5), pool_attrs((2, 3, 2), (2, 2, 2), (1, 1, 0, 1, 1, 1), ceil=1, cip=1)),
]


@pytest.mark.parametrize("case", range(len(AVGPOOL_CASES)))
def test_avgpool_grad(tmp_path, cuda_mode, case):
    shape, attrs = AVGPOOL_CASES[case]
    check(tmp_path, [node("AveragePoolGrad", ["dy", "xs"], ["dx"], **attrs)],
          {"dy": rnd(*pool_out(shape, attrs))}, ["dx"], cuda_mode, inits={"xs": i64(*shape)})


def test_shape_inputs_fed_at_run_time(tmp_path, cuda_mode):
    """x_shape / data_shape as graph inputs: plan-keyed constants, read at their host bytes."""
    attrs = pool_attrs((3, 3), (2, 2), (1, 1, 1, 1), cip=1)
    check(tmp_path, [node("AveragePoolGrad", ["dy", "xs"], ["dx"], **attrs)],
          {"dy": rnd(2, 3, 5, 5), "xs": i64(2, 3, 9, 10)}, ["dx"], cuda_mode, tag="avg")
    check(tmp_path, [node("ConvGradData", ["dy", "W", "xs"], ["dx"], pads=[1, 1, 1, 1])],
          {"dy": rnd(2, 16, 6, 5), "W": rnd(16, 3, 3, 3), "xs": i64(2, 3, 6, 5)}, ["dx"], cuda_mode,
          tag="conv")
    check(tmp_path, [node("GatherGrad", ["dy", "ind", "shape"], ["dd"], axis=1)],
          {"dy": rnd(3, 4, 2), "ind": i64(1, -1, 1, 0), "shape": i64(3, 5, 2)}, ["dd"], cuda_mode,
          tag="gather")


# ---- convolution ----------------------------------------------------------------------------------

def conv_attrs(s=None, pads=None, d=None, group=1, auto_pad=None):
    a = {}
    if s: a["strides"] = list(s)
    if pads: a["pads"] = list(pads)
    if d: a["dilations"] = list(d)
    if group != 1: a["group"] = group
    if auto_pad: a["auto_pad"] = auto_pad
    return a


def conv_out(xs, ws, attrs):
    nsp = len(xs) - 2
    s = attrs.get("strides", [1] * nsp)
    d = attrs.get("dilations", [1] * nsp)
    out = []
    for i in range(nsp):
        ext = (ws[2 + i] - 1) * d[i] + 1
        ap = attrs.get("auto_pad")
        if ap in ("SAME_UPPER", "SAME_LOWER"):
            out.append(-(-xs[2 + i] // s[i]))
        else:
            pads = attrs.get("pads", [0] * 2 * nsp)
            out.append((xs[2 + i] + pads[i] + pads[nsp + i] - ext) // s[i] + 1)
    return (xs[0], ws[0], *out)


CONV_CASES = [  # x shape, W shape, attrs (M / group < 8: the direct paths; else the GEMM paths)
    ((2, 4, 9, 8), (6, 4, 3, 3), conv_attrs(pads=(1, 1, 1, 1))),                       # direct
    ((2, 4, 9, 8), (16, 4, 3, 3), conv_attrs(pads=(1, 1, 1, 1))),                      # gemm
    ((2, 4, 9, 8), (16, 4, 3, 3), conv_attrs(s=(2, 2), pads=(1, 2, 1, 2))),
    ((2, 4, 11, 10), (8, 4, 3, 2), conv_attrs(s=(1, 2), d=(2, 3), pads=(2, 1, 2, 1))),
    ((2, 4, 9, 8), (6, 2, 3, 3), conv_attrs(pads=(1, 1, 1, 1), group=2)),              # direct
    ((2, 4, 9, 8), (16, 2, 3, 3), conv_attrs(s=(2, 2), pads=(1, 1, 1, 1), group=2)),   # gemm groups
    ((2, 4, 9, 8), (8, 1, 3, 3), conv_attrs(s=(2, 2), pads=(1, 1, 1, 1), group=4)),
    ((2, 6, 9, 8), (6, 1, 5, 5), conv_attrs(pads=(2, 2, 2, 2), group=6)),              # depthwise
    ((2, 6, 9, 8), (12, 1, 3, 3), conv_attrs(s=(2, 2), pads=(1, 1, 1, 1), group=6)),   # multiplier 2
    ((2, 8, 7, 6), (16, 8, 1, 1), conv_attrs()),                                        # 1×1
    ((2, 8, 7, 6), (8, 8, 1, 1), conv_attrs(s=(2, 2))),                                 # 1×1 stride 2
    ((1, 3, 15, 14), (8, 3, 7, 7), conv_attrs(s=(2, 2), pads=(3, 3, 3, 3))),           # 7×7 stem
    ((2, 3, 9, 8), (8, 3, 3, 3), conv_attrs(s=(2, 2), pads=(0, 1, 2, 0))),             # asymmetric
    ((1, 3, 7, 8), (8, 3, 4, 3), conv_attrs(s=(2, 2), auto_pad="SAME_UPPER")),
    ((1, 3, 7, 8), (4, 3, 4, 3), conv_attrs(s=(2, 2), auto_pad="SAME_LOWER")),
    ((1, 3, 7, 8), (8, 3, 3, 3), conv_attrs(s=(2, 2), auto_pad="VALID")),
    ((2, 3, 15), (8, 3, 4), conv_attrs(s=(2,), d=(2,), pads=(1, 2))),                  # 1-D
    ((2, 4, 15), (4, 2, 3), conv_attrs(pads=(1, 1), group=2)),
    ((1, 2, 5, 6, 7), (8, 2, 2, 3, 2), conv_attrs(s=(1, 2, 1), pads=(1, 1, 0, 1, 1, 1))),  # 3-D
    ((5, 3, 6, 6), (8, 3, 3, 3), conv_attrs(pads=(1, 1, 1, 1))),   # several images per chunk
    ((3, 2, 5, 5), (8, 2, 3, 3), conv_attrs(pads=(1, 1, 1, 1))),   # one chunk of 3 images
]


@pytest.mark.parametrize("case", range(len(CONV_CASES)))
def test_conv_grads(tmp_path, cuda_mode, case):
    xs, ws, attrs = CONV_CASES[case]
    x, w, dy = rnd(*xs), rnd(*ws, scale=0.5), rnd(*conv_out(xs, ws, attrs))
    wattrs = dict(attrs, kernel_shape=list(ws[2:]))
    # W a plan constant; dW with dB
    check(tmp_path, [node("ConvGradData", ["dy", "W", "xs"], ["dx"], **attrs),
                     node("ConvGradWeight", ["dy", "x"], ["dW", "dB"], **wattrs)],
          {"dy": dy, "x": x}, ["dx", "dW", "dB"], cuda_mode, inits={"W": w, "xs": i64(*xs)})
    # W at run time; dW without dB
    check(tmp_path, [node("ConvGradData", ["dy", "W", "xs"], ["dx"], **attrs),
                     node("ConvGradWeight", ["dy", "x"], ["dW"], **wattrs)],
          {"dy": dy, "x": x, "W": w}, ["dx", "dW"], cuda_mode, inits={"xs": i64(*xs)}, tag="rt")


@pytest.mark.parametrize("ws", [(4, 3, 3, 3), (16, 3, 3, 3)], ids=["direct", "gemm"])
def test_conv_grads_empty_batch(tmp_path, cuda_mode, ws):
    xs = (0, 3, 6, 6)
    attrs = conv_attrs(pads=(1, 1, 1, 1))
    check(tmp_path, [node("ConvGradData", ["dy", "W", "xs"], ["dx"], **attrs),
                     node("ConvGradWeight", ["dy", "x"], ["dW", "dB"], kernel_shape=[3, 3], **attrs)],
          {"dy": rnd(0, ws[0], 6, 6), "x": rnd(*xs), "W": rnd(*ws)}, ["dx", "dW", "dB"], cuda_mode,
          inits={"xs": i64(*xs)})


# ---- SoftmaxCrossEntropy / SoftmaxCrossEntropyGrad ------------------------------------------------

@pytest.mark.parametrize("shape,ydt,p_kind", [
    ((4, 7), np.int64, None), ((3, 5, 1003), np.int64, "row"), ((2, 6, 37), np.int32, "full"),
    ((5, 9), None, "row"), ((2, 3, 50), np.int64, "row3"), ((3, 1500), np.int32, "full"),
    ((300, 20), np.int64, None), ((2, 0), np.int64, None)],
    ids=["small", "rows1003", "int32-full", "nolabels", "row3", "blockrows", "wrap", "noclasses"])
def test_softmax_cross_entropy(tmp_path, cuda_mode, shape, ydt, p_kind):
    V = shape[-1]
    feeds, ins = {"z": rnd(*shape, scale=4.0)}, ["z"]
    if ydt is not None:
        y = RNG.integers(0, max(V, 1), size=shape[:-1]).astype(ydt)
        y.flat[0] = -100
        y.flat[-1] = V
        feeds["y"] = y
    ins.append("y" if ydt is not None else "")
    if p_kind:
        pshape = {"row": (V,), "row3": (1, 1, V), "full": shape}[p_kind]
        p = RNG.uniform(0, 1, size=pshape).astype(np.float32)
        feeds["p"] = p / p.sum(-1, keepdims=True)
        ins.append("p")
    outs = ["ce", "lse"] + (["sce"] if p_kind else [])
    check(tmp_path, [node("SoftmaxCrossEntropy", ins, outs)], feeds, outs, cuda_mode)


@pytest.mark.parametrize("V", [61, 1100], ids=["warp", "block"])
@pytest.mark.parametrize("given", [("dce",), ("dce", "dlse"), ("dsce",), ("dlse", "dsce"),
                                   ("dce", "dlse", "dsce")])
def test_softmax_cross_entropy_grad(tmp_path, cuda_mode, given, V):
    shape = (3, 4, V)
    z = rnd(*shape, scale=3.0)
    y = RNG.integers(0, V, size=shape[:-1]).astype(np.int64)
    y[0, 1] = -100
    y[2, 3] = V
    zz = z.astype(np.float64)
    m = zz.max(-1, keepdims=True)
    lse = (m + np.log(np.exp(zz - m).sum(-1, keepdims=True)))[..., 0].astype(np.float32)
    feeds = {"z": z, "y": y, "lse": lse}
    ins = ["z", "y", "lse"] + [g if g in given else "" for g in ("dce", "dlse", "dsce")]
    if "dsce" in given:
        ins.append("p")
        feeds["p"] = RNG.uniform(0, 1, size=(V,)).astype(np.float32)
    while ins[-1] == "":
        ins.pop()
    for g in given:
        feeds[g] = rnd(*shape[:-1])
    check(tmp_path, [node("SoftmaxCrossEntropyGrad", ins, ["dz"])], feeds, ["dz"], cuda_mode)


def test_softmax_cross_entropy_grad_int32_full_p(tmp_path, cuda_mode):
    shape, V = (5, 33), 33
    z = rnd(*shape)
    zz = z.astype(np.float64)
    lse = np.log(np.exp(zz).sum(-1)).astype(np.float32)
    y = RNG.integers(-1, V + 1, size=(5,)).astype(np.int32)
    p = RNG.uniform(0, 1, size=shape).astype(np.float32)
    feeds = {"z": z, "y": y, "lse": lse, "dce": rnd(5), "dlse": rnd(5), "dsce": rnd(5), "p": p}
    check(tmp_path, [node("SoftmaxCrossEntropyGrad", ["z", "y", "lse", "dce", "dlse", "dsce", "p"],
                          ["dz"])], feeds, ["dz"], cuda_mode)


# ---- SquaredDistance / SquaredDistanceGrad -----------------------------------------------------

@pytest.mark.parametrize("shape", [(4, 7), (3, 5, 1003), (2, 40001), (6,), (2, 0, 5), (3, 0)],
                         ids=["small", "3d", "chunks", "one-row", "empty", "no-features"])
def test_squared_distance(tmp_path, cuda_mode, shape):
    check(tmp_path, [node("SquaredDistance", ["a", "b"], ["d"])],
          {"a": rnd(*shape, scale=2.0), "b": rnd(*shape)}, ["d"], cuda_mode)


@pytest.mark.parametrize("outs", [["da"], ["da", "db"]])
def test_squared_distance_grad(tmp_path, cuda_mode, outs):
    shape = (3, 4, 701)
    check(tmp_path, [node("SquaredDistanceGrad", ["a", "b", "dd"], outs)],
          {"a": rnd(*shape), "b": rnd(*shape), "dd": rnd(*shape[:-1])}, [o for o in outs if o],
          cuda_mode)


# ---- refusals -------------------------------------------------------------------------------------

def test_float64_is_refused(tmp_path, cuda_mode):
    d = rnd(2, 3).astype(np.float64)
    model = save_model(tmp_path / "r.onnx",
                       [helper.make_node("ReluGrad", ["dy", "y"], ["dx"], domain="ulc",
                                         name="relu_bwd")], {"dy": d, "y": d}, ["dx"])
    p = run_model(tmp_path, model, {"dy": d, "y": d}, "cuda", cuda_mode, check=False)
    assert p.returncode == 4, p.stderr
    assert "relu_bwd" in p.stderr and "f64" in p.stderr and "Sanitizer" not in p.stderr, p.stderr
