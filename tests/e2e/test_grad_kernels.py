"""The CPU kernels of ulc's own gradient ops (domain "ulc", ir/ops_ulc.def) through `ulc run`:
tiny ONNX models of one gradient node each, compared with torch autograd (torch 1.13 CPU), and,
where torch has no spelling (asymmetric pads, auto_pad, ceil_mode with count_include_pad, 4-D
convolutions), with ulc's own forward kernels: the gradient of a linear op is its transpose, so
the forward run on a batch of basis inputs gives the Jacobian that the gradient run on a batch of
basis dy must transpose exactly."""
import os
import subprocess

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file, save_file

from conftest import ulc_bin

OPSETS = [helper.make_opsetid("", 17), helper.make_opsetid("ulc", 1)]
RNG = np.random.default_rng(1234)


def rnd(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def node(op, ins, outs, **attrs):
    domain = "" if op in ("Conv", "AveragePool", "MaxPool") else "ulc"
    return helper.make_node(op, ins, outs, domain=domain, **attrs)


def run_nodes(tmp_path, nodes, feeds, outputs, inits=None, threads=None, tag="m", check=True):
    """Builds a model of `nodes` (graph inputs: feeds, initializers: inits), runs it with ulc and
    returns {output: array} (or the CompletedProcess when check is False)."""
    inits = inits or {}
    dt = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE,
          np.dtype(np.int64): TensorProto.INT64, np.dtype(np.int32): TensorProto.INT32}
    ins = [helper.make_tensor_value_info(k, dt[v.dtype], list(v.shape)) for k, v in feeds.items()]
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs]
    g = helper.make_graph(nodes, "grad", ins, outs,
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = tmp_path / f"{tag}.onnx"
    onnx.save(helper.make_model(g, opset_imports=OPSETS), str(model))
    inp, out = tmp_path / f"{tag}_in.safetensors", tmp_path / f"{tag}_out.safetensors"
    save_file({k: np.ascontiguousarray(v) for k, v in feeds.items()}, str(inp))
    cmd = [ulc_bin(), "run", str(model), "--input", str(inp), "-o", str(out)]
    if threads:
        cmd += ["--threads", str(threads)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if not check:
        return p
    assert p.returncode == 0, p.stderr
    return load_file(str(out))


def close(got, ref, rtol=1e-4):
    ref = np.asarray(ref, np.float64)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    scale = max(np.abs(ref).max(), 1e-30)
    err = np.abs(got.astype(np.float64) - ref).max() / scale
    assert err <= rtol, err


def tgrad(fn, dy, *xs):
    """Gradients of fn(*xs) against dy (torch autograd, float64 for a tight reference)."""
    ts = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in xs]
    y = fn(*ts)
    y.backward(torch.tensor(dy, dtype=torch.float64))
    return [t.grad.numpy() for t in ts]


def i64(*v):
    return np.array(v, np.int64)


# ---- elementwise ---------------------------------------------------------------------------------

def test_relu_grad(tmp_path):
    x = rnd(3, 50, 7)
    x[0, :5] = 0.0
    y = np.maximum(x, 0)
    dy = rnd(3, 50, 7)
    r = run_nodes(tmp_path, [node("ReluGrad", ["dy", "y"], ["dx"])], {"dy": dy, "y": y}, ["dx"])
    assert np.array_equal(r["dx"], np.where(y > 0, dy, 0).astype(np.float32))


@pytest.mark.parametrize("approx", ["none", "tanh"])
def test_gelu_grad(tmp_path, approx):
    x = np.concatenate([np.linspace(-9, 9, 2001, dtype=np.float32), rnd(999, scale=3.0),
                        np.float32([0.0, -0.0, 1e-25, -1e-25])]).reshape(4, -1)
    dy = rnd(*x.shape)
    r = run_nodes(tmp_path, [node("GeluGrad", ["dy", "x"], ["dx"], approximate=approx)],
                  {"dy": dy, "x": x}, ["dx"])
    (ref,) = tgrad(lambda t: F.gelu(t, approximate=approx), dy, x)
    # absolute error against the largest gradient, plus a relative check where it is not tiny
    close(r["dx"], ref, 2e-6)
    big = np.abs(ref) > 1e-3
    rel = np.abs(r["dx"][big] - ref[big]) / np.abs(ref[big])
    assert rel.max() < 1e-4, rel.max()


# ---- softmax ------------------------------------------------------------------------------------

@pytest.mark.parametrize("log", [0, 1])
@pytest.mark.parametrize("axis", [-1, 1, 0])
def test_softmax_grads(tmp_path, log, axis):
    x = rnd(3, 130, 7, scale=2.0)
    fn = (lambda t: F.log_softmax(t, dim=axis)) if log else (lambda t: F.softmax(t, dim=axis))
    y = fn(torch.tensor(x)).numpy()
    dy = rnd(*x.shape)
    op = "LogSoftmaxGrad" if log else "SoftmaxGrad"
    r = run_nodes(tmp_path, [node(op, ["dy", "y"], ["dx"], axis=axis)], {"dy": dy, "y": y}, ["dx"])
    (ref,) = tgrad(fn, dy, x)
    close(r["dx"], ref)


def test_softmax_grad_default_axis_rows(tmp_path):
    x = rnd(4, 1000, scale=3.0)
    y = F.softmax(torch.tensor(x), dim=-1).numpy()
    dy = rnd(4, 1000)
    r = run_nodes(tmp_path, [node("SoftmaxGrad", ["dy", "y"], ["dx"])], {"dy": dy, "y": y}, ["dx"])
    (ref,) = tgrad(lambda t: F.softmax(t, dim=-1), dy, x)
    close(r["dx"], ref)


# ---- LayerNorm ----------------------------------------------------------------------------------

@pytest.mark.parametrize("axis,shape", [(-1, (4, 6, 40)), (2, (4, 6, 40)), (-2, (5, 6, 8)),
                                        (1, (3, 7, 9))])
def test_layernorm_grad(tmp_path, axis, shape):
    x = rnd(*shape, scale=2.0) + 3.0
    ax = axis % len(shape)
    norm = shape[ax:]
    scale, bias = rnd(*norm) + 1.0, rnd(*norm)
    dy = rnd(*shape)
    r = run_nodes(tmp_path, [node("LayerNormGrad", ["dy", "x", "scale"], ["dx", "dscale", "dbias"],
                                  axis=axis, epsilon=1e-3)],
                  {"dy": dy, "x": x, "scale": scale}, ["dx", "dscale", "dbias"])
    ref = tgrad(lambda t, w, b: F.layer_norm(t, norm, w, b, eps=1e-3), dy, x, scale, bias)
    for got, want in zip([r["dx"], r["dscale"], r["dbias"]], ref):
        close(got, want)


def test_layernorm_grad_broadcast_scale_and_dx_only(tmp_path):
    shape, norm = (5, 6, 8), (6, 8)
    x, dy = rnd(*shape), rnd(*shape)
    scale = rnd(1, 8) + 1.0  # broadcasts over the normalised [6, 8]
    r = run_nodes(tmp_path, [node("LayerNormGrad", ["dy", "x", "scale"], ["dx", "dscale"], axis=-2)],
                  {"dy": dy, "x": x}, ["dx", "dscale"], inits={"scale": scale})
    ref = tgrad(lambda t, w: F.layer_norm(t, norm, w.expand(*norm), None, eps=1e-5), dy, x, scale)
    close(r["dx"], ref[0])
    close(r["dscale"], ref[1])
    # only dx asked for
    r = run_nodes(tmp_path, [node("LayerNormGrad", ["dy", "x", "scale"], ["dx"], axis=-2)],
                  {"dy": dy, "x": x}, ["dx"], inits={"scale": scale}, tag="dxonly")
    close(r["dx"], ref[0])


def test_layernorm_grad_same_bits_any_threads(tmp_path):
    """Rows and columns are items of one thread each, summed in a fixed order: 1 or 2 threads,
    the same bits."""
    x, dy, scale = rnd(300, 96), rnd(300, 96), rnd(96)
    nodes = [node("LayerNormGrad", ["dy", "x", "scale"], ["dx", "dscale", "dbias"])]
    a, b = (run_nodes(tmp_path, nodes, {"dy": dy, "x": x}, ["dx", "dscale", "dbias"],
                      inits={"scale": scale}, threads=t, tag=f"t{t}") for t in (1, 2))
    for k in a:
        assert a[k].tobytes() == b[k].tobytes(), k


# ---- GatherGrad ---------------------------------------------------------------------------------

@pytest.mark.parametrize("axis,dshape,ind", [
    (0, (5, 4, 3), [[0, -1, 2], [2, 2, 4]]),
    (1, (5, 4, 3), [3, -4, 3, 1, 3]),
    (-1, (2, 3, 6), [[5], [-6], [0]]),
    (0, (10, 700), [3, 3, -7, 9, 0, 3]),   # few outer indices: columns split across threads
    (1, (40, 6, 2), [[1, 1], [5, -1]]),
])
@pytest.mark.parametrize("idt", [np.int64, np.int32])
def test_gather_grad(tmp_path, axis, dshape, ind, idt):
    ind = np.array(ind, idt)
    ax = axis % len(dshape)
    norm = np.where(ind < 0, ind + dshape[ax], ind)
    dyshape = dshape[:ax] + ind.shape + dshape[ax + 1:]
    dy = rnd(*dyshape)
    r = run_nodes(tmp_path, [node("GatherGrad", ["dy", "ind", "shape"], ["dd"], axis=axis)],
                  {"dy": dy, "ind": ind}, ["dd"], inits={"shape": i64(*dshape)})
    idx = torch.tensor(norm.astype(np.int64))
    (ref,) = tgrad(lambda d: d[(slice(None),) * ax + (idx,)], dy, np.zeros(dshape, np.float32))
    close(r["dd"], ref, 1e-6)


def test_gather_grad_repeated_indices_deterministic(tmp_path):
    """Many repeats of a few rows: sums in index order, the same bits on every run."""
    ind = RNG.integers(-8, 8, size=4000).astype(np.int64)
    dy = rnd(4000, 300)
    outs = [run_nodes(tmp_path, [node("GatherGrad", ["dy", "ind", "shape"], ["dd"], axis=0)],
                      {"dy": dy, "ind": ind}, ["dd"], inits={"shape": i64(8, 300)}, threads=t,
                      tag=f"t{t}_{i}")["dd"] for i, t in enumerate([2, 2, 1])]
    assert outs[0].tobytes() == outs[1].tobytes() == outs[2].tobytes()
    ref = np.zeros((8, 300), np.float64)
    for p, v in enumerate(np.where(ind < 0, ind + 8, ind)):
        ref[v] += dy[p]
    close(outs[0], ref, 1e-5)


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


MAXPOOL_CASES = [  # x shape, attrs, torch reference (on x padded with -inf by `tpad`)
    ((2, 3, 9, 10), pool_attrs((3, 3), (2, 2), (1, 1, 1, 1)),
     lambda t: F.max_pool2d(t, 3, 2, 1)),
    ((2, 3, 9, 10), pool_attrs((2, 2), (2, 2), ceil=1), lambda t: F.max_pool2d(t, 2, 2, ceil_mode=True)),
    ((2, 3, 9, 10), pool_attrs((3, 2), (1, 2), (1, 0, 1, 0), d=(2, 2), ceil=1),
     lambda t: F.max_pool2d(t, (3, 2), (1, 2), (1, 0), dilation=2, ceil_mode=True)),
    ((1, 2, 8, 9), pool_attrs((3, 3), (2, 2), (0, 1, 2, 0)),  # asymmetric: top 0, left 1, bottom 2
     lambda t: F.max_pool2d(F.pad(t, (1, 0, 0, 2), value=-np.inf), 3, 2)),
    ((1, 2, 8, 10), pool_attrs((3, 3), (2, 2), auto_pad="SAME_LOWER"),  # W: total 1, before
     lambda t: F.max_pool2d(F.pad(t, (1, 0, 1, 1), value=-np.inf), 3, 2)),
    ((2, 3, 11), pool_attrs((3,), (2,), (1, 1)), lambda t: F.max_pool1d(t, 3, 2, 1)),
    ((1, 2, 5, 6, 7), pool_attrs((2, 3, 2), (2, 1, 2), (1, 1, 0, 1, 1, 0), ceil=1),
     lambda t: F.max_pool3d(t, (2, 3, 2), (2, 1, 2), (1, 1, 0), ceil_mode=True)),
]


@pytest.mark.parametrize("ties", [0, 1])
@pytest.mark.parametrize("case", range(len(MAXPOOL_CASES)))
def test_maxpool_grad(tmp_path, case, ties):
    shape, attrs, fn = MAXPOOL_CASES[case]
    # ties: small integers, so windows have several maxima (the first, row-major, takes dy)
    x = RNG.integers(0, 3, size=shape).astype(np.float32) if ties else rnd(*shape)
    y = fn(torch.tensor(x))
    dy = rnd(*y.shape)
    r = run_nodes(tmp_path, [node("MaxPoolGrad", ["dy", "x"], ["dx"], **attrs)], {"dy": dy, "x": x},
                  ["dx"])
    xt = torch.tensor(x, requires_grad=True)  # float32: torch's tie rule on the same values
    fn(xt).backward(torch.tensor(dy))
    close(r["dx"], xt.grad.numpy(), 1e-6)


AVGPOOL_CASES = [  # x shape, attrs, torch reference or None (then only the Jacobian check)
    ((2, 3, 9, 10), pool_attrs((3, 3), (2, 2), (1, 1, 1, 1), cip=0),
     lambda t: F.avg_pool2d(t, 3, 2, 1, count_include_pad=False)),
    ((2, 3, 9, 10), pool_attrs((3, 3), (2, 2), (1, 1, 1, 1), cip=1),
     lambda t: F.avg_pool2d(t, 3, 2, 1, count_include_pad=True)),
    ((2, 3, 9, 10), pool_attrs((2, 3), (2, 2), (1, 1, 1, 1), ceil=1, cip=0),
     lambda t: F.avg_pool2d(t, (2, 3), 2, 1, ceil_mode=True, count_include_pad=False)),
    ((1, 2, 7, 8), pool_attrs((3, 3), (2, 2), (1, 1, 1, 1), ceil=1, cip=1), None),  # kernel-size divisor
    ((1, 2, 7, 8), pool_attrs((3, 2), (2, 1), (0, 1, 2, 0), cip=0), None),  # asymmetric
    ((1, 2, 7, 8), pool_attrs((3, 2), (2, 3), (0, 1, 2, 0), cip=1),
     lambda t: F.avg_pool2d(F.pad(t, (1, 0, 0, 2)), (3, 2), (2, 3))),
    ((1, 2, 7, 8), pool_attrs((4, 3), (2, 2), auto_pad="SAME_UPPER"), None),
    ((2, 3, 11), pool_attrs((3,), (2,), (1, 1), cip=1), lambda t: F.avg_pool1d(t, 3, 2, 1)),
    ((1, 2, 5, 6, 5), pool_attrs((2, 3, 2), (2, 1, 2), (1, 1, 0, 1, 1, 0), cip=0),
     lambda t: F.avg_pool3d(t, (2, 3, 2), (2, 1, 2), (1, 1, 0), count_include_pad=False)),
    ((1, 1, 5, 6, 5), pool_attrs((2, 3, 2), (2, 2, 2), (1, 1, 0, 1, 1, 1), ceil=1, cip=1), None),
]


@pytest.mark.parametrize("case", range(len(AVGPOOL_CASES)))
def test_avgpool_grad(tmp_path, case):
    shape, attrs, fn = AVGPOOL_CASES[case]
    n, c, sp = shape[0], shape[1], shape[2:]
    # Jacobian check against ulc's AveragePool: forward on every basis image, gradient of every
    # basis dy; J_grad must be J_fwd transposed.
    isz = int(np.prod(sp))
    xb = np.eye(isz, dtype=np.float32).reshape((isz, 1) + sp)
    fw = run_nodes(tmp_path, [node("AveragePool", ["x"], ["y"], **attrs)], {"x": xb}, ["y"],
                   tag="fwd")["y"]
    osp = fw.shape[2:]
    osz = int(np.prod(osp))
    dyb = np.eye(osz, dtype=np.float32).reshape((osz, 1) + osp)
    gw = run_nodes(tmp_path, [node("AveragePoolGrad", ["dy", "xs"], ["dx"], **attrs)], {"dy": dyb},
                   ["dx"], inits={"xs": i64(osz, 1, *sp)}, tag="grad")["dx"]
    jf = fw.reshape(isz, osz)   # jf[i, o] = d y[o] / d x[i]
    jg = gw.reshape(osz, isz)   # jg[o, i] = dx[i] for dy = e_o
    np.testing.assert_allclose(jg, jf.T, rtol=1e-6, atol=1e-7)
    # the real shapes, against torch where it has the same rule
    dy = rnd(n, c, *osp)
    r = run_nodes(tmp_path, [node("AveragePoolGrad", ["dy", "xs"], ["dx"], **attrs)], {"dy": dy},
                  ["dx"], inits={"xs": i64(*shape)})
    assert r["dx"].shape == shape
    if fn is not None:
        (ref,) = tgrad(fn, dy, np.zeros(shape, np.float32))
        close(r["dx"], ref, 1e-5)


def test_avgpool_grad_shape_as_graph_input(tmp_path):
    """x_shape fed at run time: its bytes key the plan, as every shape-deciding input's do."""
    dy = rnd(2, 3, 5, 5)
    attrs = pool_attrs((3, 3), (2, 2), (1, 1, 1, 1), cip=1)
    r = run_nodes(tmp_path, [node("AveragePoolGrad", ["dy", "xs"], ["dx"], **attrs)],
                  {"dy": dy, "xs": i64(2, 3, 9, 10)}, ["dx"])
    (ref,) = tgrad(lambda t: F.avg_pool2d(t, 3, 2, 1), dy, np.zeros((2, 3, 9, 10), np.float32))
    close(r["dx"], ref, 1e-5)


# ---- convolution ----------------------------------------------------------------------------------

def conv_attrs(s=None, pads=None, d=None, group=1, auto_pad=None, kernel=None):
    a = {}
    if s: a["strides"] = list(s)
    if pads: a["pads"] = list(pads)
    if d: a["dilations"] = list(d)
    if group != 1: a["group"] = group
    if auto_pad: a["auto_pad"] = auto_pad
    if kernel: a["kernel_shape"] = list(kernel)
    return a


def tpad(t, pads):
    """ONNX pads [b1, b2.., e1, e2..] as F.pad's (last dim first) zero padding."""
    n = len(pads) // 2
    fp = []
    for i in reversed(range(n)):
        fp += [pads[i], pads[n + i]]
    return F.pad(t, fp)


CONV_CASES = [  # x shape, W shape, attrs, ONNX pads for the torch reference (zero-padded first)
    ((2, 4, 9, 8), (6, 4, 3, 3), conv_attrs(pads=(1, 1, 1, 1)), (1, 1, 1, 1)),
    ((2, 4, 9, 8), (6, 4, 3, 3), conv_attrs(s=(2, 2), pads=(1, 2, 1, 2)), (1, 2, 1, 2)),
    ((2, 4, 11, 10), (5, 4, 3, 2), conv_attrs(s=(1, 2), d=(2, 3), pads=(2, 1, 2, 1)), (2, 1, 2, 1)),
    ((2, 4, 9, 8), (6, 2, 3, 3), conv_attrs(pads=(1, 1, 1, 1), group=2), (1, 1, 1, 1)),
    ((2, 4, 9, 8), (8, 1, 3, 3), conv_attrs(s=(2, 2), pads=(1, 1, 1, 1), group=4), (1, 1, 1, 1)),
    ((2, 6, 9, 8), (6, 1, 5, 5), conv_attrs(pads=(2, 2, 2, 2), group=6), (2, 2, 2, 2)),  # depthwise
    ((2, 3, 9, 8), (4, 3, 3, 3), conv_attrs(s=(2, 2), pads=(0, 1, 2, 0)), (0, 1, 2, 0)),  # asymmetric
    ((1, 3, 7, 8), (4, 3, 4, 3), conv_attrs(s=(2, 2), auto_pad="SAME_UPPER"), (1, 0, 2, 1)),
    ((1, 3, 7, 8), (4, 3, 4, 3), conv_attrs(s=(2, 2), auto_pad="SAME_LOWER"), (2, 1, 1, 0)),
    ((1, 3, 7, 8), (4, 3, 3, 3), conv_attrs(s=(2, 2), auto_pad="VALID"), (0, 0, 0, 0)),
    ((2, 3, 15), (5, 3, 4), conv_attrs(s=(2,), d=(2,), pads=(1, 2)), (1, 2)),  # 1-D
    ((2, 4, 15), (4, 2, 3), conv_attrs(pads=(1, 1), group=2), (1, 1)),
    ((1, 2, 5, 6, 7), (3, 2, 2, 3, 2), conv_attrs(s=(1, 2, 1), pads=(1, 1, 0, 1, 1, 1)),
     (1, 1, 0, 1, 1, 1)),  # 3-D
]


def conv_ref(x, w, b, dy, attrs, pads):
    nsp = x.ndim - 2
    conv = [F.conv1d, F.conv2d, F.conv3d][nsp - 1]
    return tgrad(lambda xt, wt, bt: conv(tpad(xt, pads), wt, bt, stride=attrs.get("strides", 1),
                                         dilation=attrs.get("dilations", 1),
                                         groups=attrs.get("group", 1)), dy, x, w, b)


@pytest.mark.parametrize("case", range(len(CONV_CASES)))
def test_conv_grads(tmp_path, case):
    xs, ws, attrs, pads = CONV_CASES[case]
    x, w, b = rnd(*xs), rnd(*ws, scale=0.5), rnd(ws[0])
    nsp = len(xs) - 2
    with torch.no_grad():
        yshape = [F.conv1d, F.conv2d, F.conv3d][nsp - 1](
            tpad(torch.tensor(x), pads), torch.tensor(w), stride=attrs.get("strides", 1),
            dilation=attrs.get("dilations", 1), groups=attrs.get("group", 1)).shape
    dy = rnd(*yshape)
    gx, gw, gb = conv_ref(x, w, b, dy, attrs, pads)
    wattrs = dict(attrs, kernel_shape=list(ws[2:]))
    # W a constant (packed once in prepare) for dx; dW and dB from dy and x
    r = run_nodes(tmp_path, [node("ConvGradData", ["dy", "W", "xs"], ["dx"], **attrs),
                             node("ConvGradWeight", ["dy", "x"], ["dW", "dB"], **wattrs)],
                  {"dy": dy, "x": x}, ["dx", "dW", "dB"], inits={"W": w, "xs": i64(*xs)})
    close(r["dx"], gx)
    close(r["dW"], gw)
    close(r["dB"], gb)
    # W a run-time input (reordered every run); dW without dB
    r = run_nodes(tmp_path, [node("ConvGradData", ["dy", "W", "xs"], ["dx"], **attrs),
                             node("ConvGradWeight", ["dy", "x"], ["dW"], **wattrs)],
                  {"dy": dy, "x": x, "W": w}, ["dx", "dW"], inits={"xs": i64(*xs)}, tag="rt")
    close(r["dx"], gx)
    close(r["dW"], gw)


@pytest.mark.parametrize("xs,ws,attrs", [
    ((1, 2, 4, 3, 3, 4), (3, 2, 2, 1, 2, 3), conv_attrs(s=(1, 2, 1, 1), pads=(1, 0, 0, 1, 0, 1, 1, 0))),
    ((1, 2, 6, 7), (4, 1, 3, 3), conv_attrs(s=(2, 1), d=(1, 2), pads=(1, 2, 0, 1), group=2)),
])
def test_conv_grads_against_ulc_conv(tmp_path, xs, ws, attrs):
    """Jacobian check against ulc's Conv: 4 spatial dims (the direct loops: oneDNN stops at 3)
    and a grouped, dilated, asymmetric 2-D case (oneDNN). ConvGradData's rows are Conv's columns;
    ConvGradWeight is checked through Conv's linearity in W: <Conv(x, W), dy> = <W, dW>."""
    n, c, sp = xs[0], xs[1], xs[2:]
    w = rnd(*ws)
    per = c * int(np.prod(sp))
    xb = np.eye(per, dtype=np.float32).reshape((per, c) + sp)
    fw = run_nodes(tmp_path, [node("Conv", ["x", "W"], ["y"], **attrs)], {"x": xb}, ["y"],
                   inits={"W": w}, tag="fwd")["y"]
    oshape = fw.shape[1:]
    osz = int(np.prod(oshape))
    dyb = np.eye(osz, dtype=np.float32).reshape((osz,) + oshape)
    gd = run_nodes(tmp_path, [node("ConvGradData", ["dy", "W", "xs"], ["dx"], **attrs)],
                   {"dy": dyb, "W": w}, ["dx"], inits={"xs": i64(osz, c, *sp)}, tag="gd")["dx"]
    np.testing.assert_allclose(gd.reshape(osz, per), fw.reshape(per, osz).T, rtol=1e-5, atol=1e-6)
    # weights: <Conv(x, W), dy> is linear in W, so its gradient is ConvGradWeight(dy, x)
    x = rnd(2, c, *sp)
    dy = rnd(2, *oshape)
    wattrs = dict(attrs, kernel_shape=list(ws[2:]))
    r = run_nodes(tmp_path, [node("ConvGradWeight", ["dy", "x"], ["dW", "dB"], **wattrs)],
                  {"dy": dy, "x": x}, ["dW", "dB"], tag="gw")
    basis = np.eye(w.size, dtype=np.float32).reshape((w.size,) + ws)
    ys = []
    for i in range(0, w.size, 64):  # a forward per weight basis vector, 64 per model
        blk = basis[i:i + 64]
        nodes, outs = [], []
        inits = {}
        for j in range(len(blk)):
            inits[f"W{j}"] = blk[j]
            nodes.append(node("Conv", ["x", f"W{j}"], [f"y{j}"], **attrs))
            outs.append(f"y{j}")
        got = run_nodes(tmp_path, nodes, {"x": x}, outs, inits=inits, tag=f"wb{i}")
        ys += [float((got[o].astype(np.float64) * dy).sum()) for o in outs]
    close(r["dW"], np.array(ys).reshape(ws), 1e-5)
    close(r["dB"], dy.astype(np.float64).sum(axis=tuple(i for i in range(dy.ndim) if i != 1)), 1e-5)


def test_conv_grad_weight_deterministic(tmp_path):
    x, dy = rnd(4, 8, 20, 20), rnd(4, 16, 20, 20)
    nodes = [node("ConvGradWeight", ["dy", "x"], ["dW", "dB"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])]
    a = run_nodes(tmp_path, nodes, {"dy": dy, "x": x}, ["dW", "dB"], threads=2, tag="a")
    b = run_nodes(tmp_path, nodes, {"dy": dy, "x": x}, ["dW", "dB"], threads=2, tag="b")
    assert a["dW"].tobytes() == b["dW"].tobytes() and a["dB"].tobytes() == b["dB"].tobytes()


# ---- errors --------------------------------------------------------------------------------------

def refused(p, code, *words):
    """ulc failed cleanly: the documented exit code, one error line naming what it should."""
    assert p.returncode == code, (p.returncode, p.stderr)
    assert "Sanitizer" not in p.stderr and "ulc: error:" in p.stderr, p.stderr
    for w in words:
        assert w in p.stderr, (w, p.stderr)


def test_wrong_dtype_is_refused_clearly(tmp_path):
    d = rnd(2, 3).astype(np.float64)
    p = run_nodes(tmp_path, [helper.make_node("ReluGrad", ["dy", "y"], ["dx"], domain="ulc",
                                              name="relu_bwd")],
                  {"dy": d, "y": d}, ["dx"], check=False)
    refused(p, 4, "relu_bwd", "f64", "float32")
    x = rnd(1, 2, 5, 5).astype(np.float64)
    p = run_nodes(tmp_path, [helper.make_node("ConvGradWeight", ["dy", "x"], ["dW"], domain="ulc",
                                              name="conv_bwd", kernel_shape=[3, 3])],
                  {"dy": rnd(1, 2, 3, 3), "x": x}, ["dW"], check=False, tag="conv")
    refused(p, 4, "conv_bwd", "input 1 (x)", "float32")
    p = run_nodes(tmp_path, [helper.make_node("GatherGrad", ["dy", "ind", "s"], ["dd"], domain="ulc",
                                              name="g_bwd")],
                  {"dy": rnd(2, 3), "ind": rnd(2)}, ["dd"], inits={"s": i64(5, 3)}, check=False,
                  tag="gf")
    refused(p, 4, "g_bwd", "indices", "int64")


def test_bad_shapes_and_indices_are_refused_clearly(tmp_path):
    p = run_nodes(tmp_path, [helper.make_node("MaxPoolGrad", ["dy", "x"], ["dx"], domain="ulc",
                                              name="mp_bwd", kernel_shape=[2, 2], strides=[2, 2])],
                  {"dy": rnd(1, 1, 3, 3), "x": rnd(1, 1, 8, 8)}, ["dx"], check=False)
    refused(p, 2, "mp_bwd", "f32[1,1,4,4]")
    p = run_nodes(tmp_path, [helper.make_node("GatherGrad", ["dy", "ind", "s"], ["dd"], domain="ulc",
                                              name="g_bwd")],
                  {"dy": rnd(2, 3), "ind": i64(1, 5)}, ["dd"], inits={"s": i64(5, 3)}, check=False,
                  tag="g")
    refused(p, 2, "g_bwd", "indices[1] = 5 is out of range")
    p = run_nodes(tmp_path, [helper.make_node("ConvGradData", ["dy", "W", "s"], ["dx"], domain="ulc",
                                              name="c_bwd", pads=[1, 1, 1, 1])],
                  {"dy": rnd(1, 4, 6, 6), "W": rnd(4, 2, 3, 3)}, ["dx"],
                  inits={"s": i64(1, 3, 6, 6)}, check=False, tag="c")
    refused(p, 2, "c_bwd", "W[1]")


# ---- SoftmaxCrossEntropy / SoftmaxCrossEntropyGrad (ulc's fused loss) ------------------------------

def sce_ref(z, y, p):
    z = z.astype(np.float64)
    m = z.max(-1, keepdims=True)
    lse = (m + np.log(np.exp(z - m).sum(-1, keepdims=True)))[..., 0]
    V = z.shape[-1]
    ce = np.zeros(lse.shape)
    if y is not None:
        ok = (y >= 0) & (y < V)
        yy = np.where(ok, y, 0)
        ce = np.where(ok, lse - np.take_along_axis(z, yy[..., None], -1)[..., 0], 0.0)
    sce = None
    if p is not None:
        pb = np.broadcast_to(p.astype(np.float64), z.shape)
        sce = lse * pb.sum(-1) - (pb * z).sum(-1)
    return ce, lse, sce


@pytest.mark.parametrize("shape,ydt,p_kind", [
    ((4, 7), np.int64, None), ((3, 5, 1003), np.int64, "row"), ((2, 6, 37), np.int32, "full"),
    ((5, 9), None, "row"), ((2, 3, 50), np.int64, "row3")])
def test_softmax_cross_entropy_forward(tmp_path, shape, ydt, p_kind):
    V = shape[-1]
    z = rnd(*shape, scale=4.0)
    feeds, ins = {"z": z}, ["z"]
    y = None
    if ydt is not None:
        y = RNG.integers(0, V, size=shape[:-1]).astype(ydt)
        y.flat[0] = -100          # ignored (padding)
        y.flat[-1] = V            # past the classes: ignored too
        feeds["y"] = y
    ins.append("y" if ydt is not None else "")
    p = None
    if p_kind:
        pshape = {"row": (V,), "row3": (1, 1, V), "full": shape}[p_kind]
        p = RNG.uniform(0, 1, size=pshape).astype(np.float32)
        p /= p.sum(-1, keepdims=True)
        feeds["p"] = p
        ins.append("p")
    outs = ["ce", "lse"] + (["sce"] if p is not None else [])
    got = run_nodes(tmp_path, [node("SoftmaxCrossEntropy", ins, outs)], feeds, outs)
    ce, lse, sce = sce_ref(z, y, p)
    close(got["lse"], lse, 1e-6)
    close(got["ce"], ce, 1e-5)
    if p is not None:
        close(got["sce"], sce, 1e-5)
    # the same bytes at any thread count
    again = run_nodes(tmp_path, [node("SoftmaxCrossEntropy", ins, outs)], feeds, outs, threads=1,
                      tag="t1")
    for o in outs:
        assert again[o].tobytes() == got[o].tobytes(), o


@pytest.mark.parametrize("given", [("dce",), ("dce", "dlse"), ("dsce",), ("dce", "dlse", "dsce")])
def test_softmax_cross_entropy_grad(tmp_path, given):
    shape, V = (3, 4, 61), 61
    z = rnd(*shape, scale=3.0)
    y = RNG.integers(0, V, size=shape[:-1]).astype(np.int64)
    y[0, 1] = -100
    p = RNG.uniform(0, 1, size=(V,)).astype(np.float32)
    _, lse, _ = sce_ref(z, None, None)
    lse = lse.astype(np.float32)
    feeds = {"z": z, "y": y, "lse": lse}
    g = {k: rnd(*shape[:-1]) for k in ("dce", "dlse", "dsce")}
    ins = ["z", "y", "lse"] + [k if k in given else "" for k in ("dce", "dlse", "dsce")]
    if "dsce" in given:
        ins.append("p")
        feeds["p"] = p
    while ins[-1] == "":
        ins.pop()
    for k in given:
        feeds[k] = g[k]
    got = run_nodes(tmp_path, [node("SoftmaxCrossEntropyGrad", ins, ["dz"])], feeds, ["dz"])["dz"]
    q = np.exp(z.astype(np.float64) - lse[..., None])
    ok = (y >= 0) & (y < V)
    dce = np.where(ok, g["dce"], 0.0) if "dce" in given else np.zeros(shape[:-1])
    dlse = g["dlse"] if "dlse" in given else 0.0
    dsce = g["dsce"] if "dsce" in given else np.zeros(shape[:-1])
    ref = (dce + dlse + dsce * p.astype(np.float64).sum())[..., None] * q - dsce[..., None] * p
    oh = np.zeros(shape)
    np.put_along_axis(oh, np.where(ok, y, 0)[..., None], 1.0, -1)
    ref -= dce[..., None] * oh
    close(got, ref, 1e-5)


@pytest.mark.parametrize("case,msg", [
    ("yshape", "without its class axis"), ("pshape", "soft targets are one row"),
    ("dsce_no_p", "without p"), ("ydtype", "int32 or int64")])
def test_softmax_cross_entropy_bad_inputs(tmp_path, case, msg):
    z = rnd(2, 3, 4)
    feeds = {"z": z, "y": np.zeros((2, 3), np.int64)}
    ins, op, outs = ["z", "y"], "SoftmaxCrossEntropy", ["ce", "lse"]
    if case == "yshape":
        feeds["y"] = np.zeros((2, 4), np.int64)
    elif case == "pshape":
        feeds["p"] = rnd(3, 4)
        ins.append("p")
        outs.append("sce")
    elif case == "ydtype":
        feeds["y"] = np.zeros((2, 3), np.float32)
    else:
        op, outs = "SoftmaxCrossEntropyGrad", ["dz"]
        feeds.update(lse=rnd(2, 3), dsce=rnd(2, 3))
        ins = ["z", "y", "lse", "", "", "dsce"]
    p = run_nodes(tmp_path, [node(op, ins, outs)], feeds, outs, check=False)
    assert p.returncode != 0
    assert msg in p.stderr and op in p.stderr, p.stderr


# ---- SquaredDistance / SquaredDistanceGrad (RFA's fused feature distance) --------------------------

@pytest.mark.parametrize("shape", [(4, 7), (3, 5, 1003), (2, 150001), (6,), (2, 0, 5)],
                         ids=["small", "3d", "chunks", "one-row", "empty"])
def test_squared_distance_forward(tmp_path, shape):
    a, b = rnd(*shape, scale=2.0), rnd(*shape)
    got = run_nodes(tmp_path, [node("SquaredDistance", ["a", "b"], ["d"])], {"a": a, "b": b}, ["d"])["d"]
    ref = ((a.astype(np.float64) - b) ** 2).sum(-1)
    assert got.shape == ref.shape
    if ref.size:
        close(got, ref, 1e-6)
    again = run_nodes(tmp_path, [node("SquaredDistance", ["a", "b"], ["d"])], {"a": a, "b": b}, ["d"],
                      threads=1, tag="t1")["d"]
    assert again.tobytes() == got.tobytes()   # the same bytes at any thread count


@pytest.mark.parametrize("outs", [["da"], ["da", "db"]])
def test_squared_distance_grad(tmp_path, outs):
    shape = (3, 4, 70001)   # rows of two chunks
    a, b, dd = rnd(*shape), rnd(*shape), rnd(*shape[:-1])
    got = run_nodes(tmp_path, [node("SquaredDistanceGrad", ["a", "b", "dd"], outs)],
                    {"a": a, "b": b, "dd": dd}, outs)
    ref = 2.0 * dd.astype(np.float64)[..., None] * (a.astype(np.float64) - b)
    close(got["da"], ref, 1e-6)
    if "db" in outs:
        close(got["db"], -ref, 1e-6)


@pytest.mark.parametrize("case,msg", [("bshape", "it must have a's shape"),
                                      ("ddshape", "without its class axis"),
                                      ("dtype", "float32")])
def test_squared_distance_bad_inputs(tmp_path, case, msg):
    feeds = {"a": rnd(2, 3), "b": rnd(2, 3)}
    op, ins, outs = "SquaredDistance", ["a", "b"], ["d"]
    if case == "bshape":
        feeds["b"] = rnd(2, 4)
    elif case == "dtype":
        feeds["b"] = rnd(2, 3).astype(np.float64)
    else:
        op, ins, outs = "SquaredDistanceGrad", ["a", "b", "dd"], ["da"]
        feeds["dd"] = rnd(3)
    p = run_nodes(tmp_path, [node(op, ins, outs)], feeds, outs, check=False)
    assert p.returncode != 0
    assert msg in p.stderr and op in p.stderr, p.stderr


# ---- FastGelu (GELU's tanh form at any opset; training graphs' gelu_new) ---------------------------

def gelu_tanh_ref(x):
    x = x.astype(np.float64)
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def test_fast_gelu_forward_and_grad(tmp_path):
    x = rnd(3, 5, 701, scale=3.0)
    got = run_nodes(tmp_path, [node("FastGelu", ["x"], ["y"])], {"x": x}, ["y"])["y"]
    ref = gelu_tanh_ref(x)
    np.testing.assert_allclose(got, ref, rtol=2e-6, atol=1e-6)
    # its gradient op, as autodiff emits it (GeluGrad, approximate "tanh")
    dy = rnd(3, 5, 701)
    g = run_nodes(tmp_path, [helper.make_node("GeluGrad", ["dy", "x"], ["dx"], domain="ulc",
                                              approximate="tanh")], {"dy": dy, "x": x}, ["dx"],
                  tag="g")["dx"]
    h = 1e-4
    num = (gelu_tanh_ref(x.astype(np.float64) + h) - gelu_tanh_ref(x.astype(np.float64) - h)) / (2 * h)
    close(g, dy * num, 1e-5)
