"""Finite-difference checks of every backward rule autodiff has (`ulc ops --grad`).

Each case is a one-op ONNX model (plus constants). `ulc grad` differentiates
L = Σ y ⊙ S (S random) with respect to every float32 graph input; the reference is a central
difference of the same L computed by onnxruntime, element by element. The op list comes from
ulc itself, so a rule added without a case here fails `test_every_rule_has_a_case`."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file, save_file

from conftest import run_ulc

F = TensorProto.FLOAT
EPS = 1e-2


def rnd(shape, seed, lo=-1.0, hi=1.0, away=0.0):
    """Uniform in [lo, hi]; with `away`, no value within `away` of 0 (kinks of Relu/Abs)."""
    r = np.random.default_rng(seed).uniform(lo, hi, size=shape).astype(np.float32)
    if away:
        r = np.where(np.abs(r) < away, np.sign(r + 1e-9) * away + r, r).astype(np.float32)
    return r


def distinct(shape, seed):
    """A permutation of evenly spaced values: no ties within 2·EPS (MaxPool's argmax)."""
    n = int(np.prod(shape))
    return (np.random.default_rng(seed).permutation(n).astype(np.float32) * 0.05 - n * 0.025).reshape(shape)


class Case:
    def __init__(self, name, op, nodes, inputs, consts=(), opset=17, out="y"):
        self.name, self.op, self.nodes, self.inputs = name, op, nodes, inputs
        self.consts, self.opset, self.out = consts, opset, out


def single(op, inputs, attrs=None, consts=(), opset=17, name=None, in_names=None, n_out=1):
    names = in_names or list(inputs)
    outs = ["y"] if n_out == 1 else [f"y{i}" for i in range(n_out)]
    node = helper.make_node(op, names, outs, **(attrs or {}))
    nodes = [node]
    if n_out > 1:  # combine the outputs the loss reads (not the middle one: a missing dy)
        used = [o for i, o in enumerate(outs) if i != 1]
        nodes.append(helper.make_node("Concat", used, ["y"], axis=-1))
    return Case(name or op, op, nodes, inputs, consts, opset)


def const(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def i64(name, vals):
    return const(name, np.array(vals, dtype=np.int64))


CASES = [
    single("Add", {"a": rnd((2, 3, 4), 1), "b": rnd((3, 1), 2)}),
    single("Sub", {"a": rnd((3, 1), 1), "b": rnd((2, 3, 4), 2)}),
    single("Mul", {"a": rnd((2, 3, 4), 1), "b": rnd((4,), 2)}),
    single("Div", {"a": rnd((2, 3, 4), 1), "b": rnd((3, 1), 2, 0.5, 1.5)}),
    single("Pow", {"a": rnd((2, 3), 1, 0.5, 1.5), "b": rnd((3,), 2, 0.5, 2.5)}),
    single("Pow", {"a": rnd((2, 3), 1, 0.5, 1.5)}, consts=[const("e", np.float32(2.0))],
           in_names=["a", "e"], name="Pow_const_exponent"),
    single("Sum", {"a": rnd((2, 3), 1), "b": rnd((3,), 2), "c": rnd((2, 1), 3)}),
    single("Where", {"a": rnd((2, 3), 1), "b": rnd((3,), 2)},
           consts=[const("c", np.array([[True, False, True], [False, True, True]]))],
           in_names=["c", "a", "b"]),
    single("Expand", {"x": rnd((3, 1), 1)}, consts=[i64("s", [2, 3, 4])], in_names=["x", "s"]),
    single("Identity", {"x": rnd((2, 3), 1)}),
    single("Dropout", {"x": rnd((2, 3), 1)}),
    single("Neg", {"x": rnd((2, 3), 1)}),
    single("Exp", {"x": rnd((2, 3), 1)}),
    single("Log", {"x": rnd((2, 3), 1, 0.5, 2.0)}),
    single("Sqrt", {"x": rnd((2, 3), 1, 0.5, 2.0)}),
    single("Reciprocal", {"x": rnd((2, 3), 1, 0.5, 2.0)}),
    single("Abs", {"x": rnd((2, 3), 1, away=0.1)}),
    single("Tanh", {"x": rnd((2, 3), 1)}),
    single("Sigmoid", {"x": rnd((2, 3), 1)}),
    single("Erf", {"x": rnd((2, 3), 1)}),
    single("Relu", {"x": rnd((3, 4), 1, away=0.1)}),
    single("LeakyRelu", {"x": rnd((3, 4), 1, away=0.1)}, {"alpha": 0.2}),
    single("Gelu", {"x": rnd((3, 4), 1, -3, 3)}, opset=20),
    single("Gelu", {"x": rnd((3, 4), 1, -3, 3)}, {"approximate": "tanh"}, opset=20, name="Gelu_tanh"),
    single("Cast", {"x": rnd((2, 3), 1)}, {"to": F}),
    single("CastLike", {"x": rnd((2, 3), 1)}, consts=[const("t", np.float32(0))], in_names=["x", "t"]),
    single("MatMul", {"a": rnd((2, 3, 4), 1), "b": rnd((4, 5), 2)}),
    single("MatMul", {"a": rnd((2, 1, 3, 4), 1), "b": rnd((3, 4, 2), 2)}, name="MatMul_broadcast"),
    single("Gemm", {"a": rnd((3, 4), 1), "b": rnd((4, 5), 2), "c": rnd((5,), 3)},
           {"alpha": 0.7, "beta": 1.3}),
    single("Gemm", {"a": rnd((4, 3), 1), "b": rnd((5, 4), 2), "c": rnd((3, 1), 3)},
           {"transA": 1, "transB": 1, "alpha": 1.1}, name="Gemm_tAtB"),
    single("Gemm", {"a": rnd((4, 3), 1), "b": rnd((4, 5), 2)}, {"transA": 1}, name="Gemm_tA"),
    single("Gemm", {"a": rnd((3, 4), 1), "b": rnd((5, 4), 2)}, {"transB": 1}, name="Gemm_tB"),
    single("Conv", {"x": rnd((2, 4, 7, 7), 1), "w": rnd((6, 2, 3, 3), 2), "b": rnd((6,), 3)},
           {"group": 2, "strides": [2, 2], "pads": [1, 0, 1, 2]}),
    single("Conv", {"x": rnd((1, 3, 8, 8), 1), "w": rnd((4, 3, 3, 3), 2)},
           {"dilations": [2, 2], "pads": [2, 2, 2, 2]}, name="Conv_dilated"),
    single("Conv", {"x": rnd((2, 3, 9), 1), "w": rnd((4, 3, 3), 2)}, {"strides": [2]},
           name="Conv_1d"),
    single("Conv", {"x": rnd((1, 4, 6, 6), 1), "w": rnd((4, 1, 3, 3), 2)},
           {"group": 4, "pads": [1, 1, 1, 1]}, name="Conv_depthwise"),
    # 3x3 stride 1 with channel counts in multiples of 8: the Winograd kernels (forward F(2,3) on
    # these small outputs, ConvGradData too), asymmetric pads up to 2, an odd output block count
    single("Conv", {"x": rnd((2, 8, 6, 7), 1), "w": rnd((24, 8, 3, 3), 2, -0.3, 0.3),
                    "b": rnd((24,), 3)}, {"pads": [2, 1, 0, 2]}, name="Conv_winograd"),
    single("Conv", {"x": rnd((1, 16, 9, 9), 1), "w": rnd((8, 16, 3, 3), 2, -0.3, 0.3)},
           {"pads": [1, 1, 1, 1]}, name="Conv_winograd_m8"),
    # a residual block: ConvGradData of the second conv with the ReluGrad fused into its
    # Winograd output, the first one's with the fan-in Add (dy of the skip) fused. The first
    # conv's bias (+-3 by channel) keeps Relu's inputs away from its kink, where central
    # differences would not be the gradient, while half the mask is 0.
    Case("Conv_relu_residual", "Conv",
         [helper.make_node("Conv", ["x", "w1", "b1"], ["h"], pads=[1, 1, 1, 1]),
          helper.make_node("Relu", ["h"], ["r"]),
          helper.make_node("Conv", ["r", "w2"], ["c"], pads=[1, 1, 1, 1]),
          helper.make_node("Add", ["c", "x"], ["y"])],
         {"x": rnd((1, 8, 5, 5), 11), "w1": rnd((8, 8, 3, 3), 12, -0.3, 0.3),
          "b1": np.array([3, -3] * 4, dtype=np.float32), "w2": rnd((8, 8, 3, 3), 13, -0.3, 0.3)}),
    # stride 2: the im2col form of the engine forward (weights a graph input: set every run)
    single("Conv", {"x": rnd((2, 8, 9, 8), 1), "w": rnd((16, 8, 3, 3), 2, -0.3, 0.3),
                    "b": rnd((16,), 3)}, {"strides": [2, 2], "pads": [1, 0, 0, 1]},
           name="Conv_stride2_im2col"),
    single("MaxPool", {"x": distinct((1, 2, 6, 6), 1)},
           {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    single("AveragePool", {"x": rnd((1, 2, 6, 6), 1)},
           {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    single("AveragePool", {"x": rnd((1, 2, 7, 7), 1)},
           {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1, "count_include_pad": 1},
           name="AveragePool_ceil"),
    single("GlobalAveragePool", {"x": rnd((2, 3, 4, 4), 1)}),
    single("BatchNormalization", {"x": rnd((2, 3, 4, 4), 1), "s": rnd((3,), 2), "b": rnd((3,), 3)},
           {"epsilon": 1e-3}, consts=[const("m", rnd((3,), 4)), const("v", rnd((3,), 5, 0.5, 1.5))],
           in_names=["x", "s", "b", "m", "v"]),
    single("LayerNormalization", {"x": rnd((2, 3, 8), 1), "s": rnd((8,), 2), "b": rnd((8,), 3)},
           {"epsilon": 1e-5}, in_names=["x", "s", "b"]),
    single("LayerNormalization", {"x": rnd((2, 3, 4), 1), "s": rnd((3, 4), 2)},
           {"axis": 1}, in_names=["x", "s"], name="LayerNormalization_2axes"),
    single("Softmax", {"x": rnd((2, 5, 3), 1, -2, 2)}, {"axis": 1}),
    single("LogSoftmax", {"x": rnd((2, 5, 3), 1, -2, 2)}),
    single("ReduceMean", {"x": rnd((2, 3, 4), 1)}, {"axes": [1], "keepdims": 0}),
    single("ReduceSum", {"x": rnd((2, 3, 4), 1)}, consts=[i64("ax", [0, 2])], in_names=["x", "ax"]),
    single("Reshape", {"x": rnd((2, 3, 4), 1)}, consts=[i64("s", [4, -1])], in_names=["x", "s"]),
    single("Flatten", {"x": rnd((2, 3, 4), 1)}, {"axis": 2}),
    single("Squeeze", {"x": rnd((2, 1, 4), 1)}, consts=[i64("ax", [1])], in_names=["x", "ax"]),
    single("Unsqueeze", {"x": rnd((2, 4), 1)}, consts=[i64("ax", [0, 3])], in_names=["x", "ax"]),
    single("Transpose", {"x": rnd((2, 3, 4), 1)}, {"perm": [2, 0, 1]}),
    single("Slice", {"x": rnd((4, 6), 1)},
           consts=[i64("st", [1, -5]), i64("en", [3, 100]), i64("ax", [0, 1])],
           in_names=["x", "st", "en", "ax"]),
    single("Gather", {"x": rnd((5, 3), 1)}, consts=[i64("i", [[0, 4], [-1, 2]])], in_names=["x", "i"]),
    single("Gather", {"x": rnd((2, 5), 1)}, {"axis": 1}, consts=[i64("i", [3, 3, 0])],
           in_names=["x", "i"], name="Gather_axis1"),
    single("Concat", {"a": rnd((2, 3), 1), "b": rnd((2, 1), 2), "c": rnd((2, 2), 3)}, {"axis": 1}),
    single("Split", {"x": rnd((2, 6), 1)}, {"axis": 1}, consts=[i64("sp", [1, 2, 3])],
           in_names=["x", "sp"], n_out=3),
]


def build(case):
    inputs = [helper.make_tensor_value_info(k, F, v.shape) for k, v in case.inputs.items()]
    graph = helper.make_graph(case.nodes, case.name, inputs,
                              [helper.make_tensor_value_info("y", F, None)], list(case.consts))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", case.opset)])


def fd_grads(model, feeds, seed_arr):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])

    def loss(f):
        return float(np.sum(sess.run(["y"], f)[0].astype(np.float64) * seed_arr))

    out = {}
    for k, v in feeds.items():
        g = np.zeros(v.size)
        for j in range(v.size):
            f = {kk: vv.copy() for kk, vv in feeds.items()}
            f[k].flat[j] += EPS
            lp = loss(f)
            f[k].flat[j] -= 2 * EPS
            lm = loss(f)
            g[j] = (lp - lm) / (2 * EPS)
        out[k] = g.reshape(v.shape)
    return out


def test_every_rule_has_a_case(ulc):
    ruled = set(ulc("ops", "--grad", check=True).stdout.split())
    covered = {c.op for c in CASES}
    assert ruled, "ulc ops --grad listed nothing"
    assert not ruled - covered, f"backward rules without a gradient check: {sorted(ruled - covered)}"
    assert not covered - ruled, f"cases for ops without a rule: {sorted(covered - ruled)}"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_gradient_matches_finite_differences(ulc, tmp_path, case):
    model = build(case)
    y = ort.InferenceSession(model.SerializeToString(),
                             providers=["CPUExecutionProvider"]).run(["y"], case.inputs)[0]
    seed = rnd(y.shape, 99)
    onnx.save(model, tmp_path / "m.onnx")
    save_file({**case.inputs, "grad:y": seed}, str(tmp_path / "feeds.safetensors"))
    ulc("grad", tmp_path / "m.onnx", "--input", tmp_path / "feeds.safetensors",
        "-o", tmp_path / "g.safetensors", check=True)
    got = load_file(str(tmp_path / "g.safetensors"))
    assert np.isclose(got["loss"], np.sum(y.astype(np.float64) * seed), rtol=1e-4, atol=1e-4)
    ref = fd_grads(model, case.inputs, seed.astype(np.float64))
    for k in case.inputs:
        g, r = got[f"grad:{k}"], ref[k]
        assert g.shape == r.shape, (k, g.shape, r.shape)
        np.testing.assert_allclose(g, r, rtol=1e-2, atol=2e-3, err_msg=f"d/d{k}")


# ---- ulc's fused loss: SoftmaxCrossEntropy (domain "ulc", ir/ops_ulc.def) -------------------------
# onnxruntime cannot run ulc's own op, so the finite differences run on its ONNX spelling
# (LogSoftmax, a one-hot of the labels, ReduceSum), and `ulc grad` on the fused node.

def sce_models(with_p, outputs, p_shape):
    """The fused node and its ONNX spelling, reading z [2, 3, 5], y [2, 3] (int64 constant, with
    an ignored label -100 and one past the classes) and, with_p, soft targets p (a constant of
    p_shape); y = Concat of the requested outputs (ce, lse, sce) on the last axis."""
    V = 5
    y = i64("lab", [[0, 4, -100], [2, 5, 1]])
    consts = [y, i64("ax", [-1]), i64("cls", list(range(V)))]
    if with_p:
        p = np.random.default_rng(7).uniform(0.0, 1.0, size=p_shape).astype(np.float32)
        consts.append(const("p", p))
    fused = [helper.make_node("SoftmaxCrossEntropy", ["z", "lab"] + (["p"] if with_p else []),
                              ["ce", "lse"] + (["sce"] if with_p else []), domain="ulc")]
    ref = [helper.make_node("LogSoftmax", ["z"], ["lp"], axis=-1),
           helper.make_node("ReduceLogSumExp", ["z"], ["lse"], axes=[-1], keepdims=0),
           helper.make_node("Unsqueeze", ["lab", "ax"], ["lab1"]),
           helper.make_node("Equal", ["lab1", "cls"], ["eq"]),
           helper.make_node("Cast", ["eq"], ["oh"], to=TensorProto.FLOAT),
           helper.make_node("Mul", ["oh", "lp"], ["ohlp"]),
           helper.make_node("ReduceSum", ["ohlp", "ax"], ["nce"], keepdims=0),
           helper.make_node("Neg", ["nce"], ["ce"])]
    if with_p:
        ref += [helper.make_node("Mul", ["p", "lp"], ["plp"]),
                helper.make_node("ReduceSum", ["plp", "ax"], ["nsce"], keepdims=0),
                helper.make_node("Neg", ["nsce"], ["sce"])]
    tail = [helper.make_node("Concat", outputs, ["y"], axis=-1)]
    inputs = [helper.make_tensor_value_info("z", F, [2, 3, V])]
    out = [helper.make_tensor_value_info("y", F, None)]
    mk = lambda nodes, extra: helper.make_model(  # noqa: E731
        helper.make_graph(nodes + tail, "sce", inputs, out, consts),
        opset_imports=[helper.make_opsetid("", 17)] + extra)
    return mk(fused, [helper.make_opsetid("ulc", 1)]), mk(ref, [])


@pytest.mark.parametrize("with_p,outputs,p_shape", [
    (False, ["ce"], None),
    (False, ["ce", "lse"], None),
    (True, ["ce", "sce"], (5,)),
    (True, ["sce"], (1, 1, 5)),
    (True, ["ce", "lse", "sce"], (2, 3, 5)),
], ids=["ce", "ce+lse", "ce+sce-row", "sce-row3", "all-per-row"])
def test_softmax_cross_entropy_gradient(ulc, tmp_path, with_p, outputs, p_shape):
    fused, ref = sce_models(with_p, outputs, p_shape)
    z = rnd((2, 3, 5), 3, -3.0, 3.0)
    y = ort.InferenceSession(ref.SerializeToString(),
                             providers=["CPUExecutionProvider"]).run(["y"], {"z": z})[0]
    seed = rnd(y.shape, 99)
    onnx.save(fused, tmp_path / "m.onnx")
    save_file({"z": z, "grad:y": seed}, str(tmp_path / "feeds.safetensors"))
    ulc("grad", tmp_path / "m.onnx", "--input", tmp_path / "feeds.safetensors",
        "-o", tmp_path / "g.safetensors", check=True)
    got = load_file(str(tmp_path / "g.safetensors"))
    assert np.isclose(got["loss"], np.sum(y.astype(np.float64) * seed), rtol=1e-4, atol=1e-4)
    r = fd_grads(ref, {"z": z}, seed.astype(np.float64))["z"]
    np.testing.assert_allclose(got["grad:z"], r, rtol=1e-2, atol=2e-3)


def check_fused_against_spelled(ulc, tmp_path, fused, ref, feeds):
    """`ulc grad` through the fused model against finite differences of its ONNX spelling (the
    same inputs and output y), every input differentiated."""
    y = ort.InferenceSession(ref.SerializeToString(),
                             providers=["CPUExecutionProvider"]).run(["y"], feeds)[0]
    seed = rnd(y.shape, 99)
    onnx.save(fused, tmp_path / "m.onnx")
    save_file({**feeds, "grad:y": seed}, str(tmp_path / "feeds.safetensors"))
    ulc("grad", tmp_path / "m.onnx", "--input", tmp_path / "feeds.safetensors",
        "-o", tmp_path / "g.safetensors", check=True)
    got = load_file(str(tmp_path / "g.safetensors"))
    assert np.isclose(got["loss"], np.sum(y.astype(np.float64) * seed), rtol=1e-4, atol=1e-4)
    r = fd_grads(ref, feeds, seed.astype(np.float64))
    for k in feeds:
        np.testing.assert_allclose(got[f"grad:{k}"], r[k], rtol=1e-2, atol=2e-3, err_msg=f"d/d{k}")


# ---- ulc's fused feature distance: SquaredDistance (RFA's l2sq) ------------------------------------

@pytest.mark.parametrize("shape", [(2, 3, 5), (4, 9)], ids=["3d", "2d"])
def test_squared_distance_gradient(ulc, tmp_path, shape):
    """`ulc grad` through the fused node against finite differences of its ONNX spelling; both
    operands trained (da and db)."""
    inputs = [helper.make_tensor_value_info(k, F, list(shape)) for k in ("a", "b")]
    out = [helper.make_tensor_value_info("y", F, None)]
    fused = helper.make_model(helper.make_graph(
        [helper.make_node("SquaredDistance", ["a", "b"], ["y"], domain="ulc")], "sq", inputs, out),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ulc", 1)])
    ref = helper.make_model(helper.make_graph(
        [helper.make_node("Sub", ["a", "b"], ["e"]), helper.make_node("Mul", ["e", "e"], ["e2"]),
         helper.make_node("ReduceSum", ["e2", "ax"], ["y"], keepdims=0)],
        "sq", inputs, out, [i64("ax", [-1])]), opset_imports=[helper.make_opsetid("", 17)])
    check_fused_against_spelled(ulc, tmp_path, fused, ref,
                                {"a": rnd(shape, 3, -2.0, 2.0), "b": rnd(shape, 4)})


def test_fast_gelu_gradient(ulc, tmp_path):
    """`ulc grad` through ulc's FastGelu against finite differences of GPT-2's spelled-out
    gelu_new (Pow, Mul, Add, Tanh)."""
    shape = (2, 3, 4)
    inputs = [helper.make_tensor_value_info("x", F, list(shape))]
    out = [helper.make_tensor_value_info("y", F, None)]
    fused = helper.make_model(helper.make_graph(
        [helper.make_node("FastGelu", ["x"], ["y"], domain="ulc")], "g", inputs, out),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ulc", 1)])
    c = lambda n, v: const(n, np.float32(v))  # noqa: E731
    ref = helper.make_model(helper.make_graph(
        [helper.make_node("Pow", ["x", "three"], ["x3"]), helper.make_node("Mul", ["x3", "k"], ["m1"]),
         helper.make_node("Add", ["x", "m1"], ["inner"]), helper.make_node("Mul", ["inner", "s"], ["m2"]),
         helper.make_node("Tanh", ["m2"], ["th"]), helper.make_node("Add", ["th", "one"], ["t"]),
         helper.make_node("Mul", ["x", "half"], ["h"]), helper.make_node("Mul", ["h", "t"], ["y"])],
        "g", inputs, out, [c("three", 3.0), c("k", 0.044715), c("s", np.sqrt(2 / np.pi)),
                           c("one", 1.0), c("half", 0.5)]),
        opset_imports=[helper.make_opsetid("", 17)])
    check_fused_against_spelled(ulc, tmp_path, fused, ref, {"x": rnd(shape, 5, -3.0, 3.0)})


def test_fast_gelu_erf_gradient(ulc, tmp_path):
    """`ulc grad` through ulc's FastGelu with approximate "none" (the erf form training graphs put
    in place of ViT's/BERT's gelu) against finite differences of that formula spelled out (Div,
    Erf, Add, Mul, Mul)."""
    shape = (2, 3, 4)
    inputs = [helper.make_tensor_value_info("x", F, list(shape))]
    out = [helper.make_tensor_value_info("y", F, None)]
    fused = helper.make_model(helper.make_graph(
        [helper.make_node("FastGelu", ["x"], ["y"], domain="ulc", approximate="none")], "g", inputs, out),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ulc", 1)])
    c = lambda n, v: const(n, np.float32(v))  # noqa: E731
    ref = helper.make_model(helper.make_graph(
        [helper.make_node("Div", ["x", "r2"], ["d"]), helper.make_node("Erf", ["d"], ["e"]),
         helper.make_node("Add", ["e", "one"], ["t"]), helper.make_node("Mul", ["x", "t"], ["m"]),
         helper.make_node("Mul", ["m", "half"], ["y"])],
        "g", inputs, out, [c("r2", np.sqrt(2.0)), c("one", 1.0), c("half", 0.5)]),
        opset_imports=[helper.make_opsetid("", 17)])
    check_fused_against_spelled(ulc, tmp_path, fused, ref, {"x": rnd(shape, 5, -3.0, 3.0)})


# ---- ulc's fused attention: Attention / AttentionGrad (train/attention.c, runtime/cpu/k_attn.c) ----

def attention_models(program, tq=5, tk=6):
    """The ulc Attention node with score program `program` (list of (code, imm)) and its ONNX
    spelling (MatMul, the transforms, Softmax, MatMul); masks are constants of both. Codes as
    ir/ops_ulc.def: 0 Mul, 1 Div, 2 Where(mask, S, imm), 3 Where(mask, imm, S), 4 Add(mask)."""
    r = np.random.default_rng(5)
    shapes = {"q": [2, 2, tq, 4], "kt": [2, 2, 4, tk], "v": [2, 2, tk, 3]}
    inputs = [helper.make_tensor_value_info(k, F, s) for k, s in shapes.items()]
    out = [helper.make_tensor_value_info("y", F, None)]
    consts, masks, nodes, cur = [], [], [helper.make_node("MatMul", ["q", "kt"], ["s0"])], "s0"
    for i, (code, imm) in enumerate(program):
        nxt = f"s{i + 1}"
        if code in (0, 1):
            consts.append(const(f"c{i}", np.array(imm, np.float32)))
            nodes.append(helper.make_node("Mul" if code == 0 else "Div", [cur, f"c{i}"], [nxt]))
        elif code in (2, 3):
            m = r.uniform(size=(tq, tk)) < 0.7
            m[1, :] = code == 3  # a query row that sees no key: uniform probabilities, no gradient
            consts += [const(f"m{i}", m), const(f"c{i}", np.array(imm, np.float32))]
            ins = [f"m{i}", cur, f"c{i}"] if code == 2 else [f"m{i}", f"c{i}", cur]
            nodes.append(helper.make_node("Where", ins, [nxt]))
            masks.append(f"m{i}")
        else:
            consts.append(const(f"m{i}", (r.uniform(size=(2, 1, 1, tk)) < 0.3) * np.float32(-30.0)))
            nodes.append(helper.make_node("Add", [cur, f"m{i}"], [nxt]))
            masks.append(f"m{i}")
        cur = nxt
    spelled = nodes + [helper.make_node("Softmax", [cur], ["p"], axis=-1), helper.make_node("MatMul", ["p", "v"], ["y"])]
    fused_node = helper.make_node("Attention", ["q", "kt", "v"] + masks, ["y"], domain="ulc")
    if program:
        fused_node.attribute.extend([helper.make_attribute("ops", [c for c, _ in program]),
                                     helper.make_attribute("imms", [float(v) for _, v in program])])
    ops = [helper.make_opsetid("", 17), helper.make_opsetid("ulc", 1)]
    fused = helper.make_model(helper.make_graph([fused_node], "a", inputs, out, consts), opset_imports=ops)
    ref = helper.make_model(helper.make_graph(spelled, "a", inputs, out, consts), opset_imports=ops[:1])
    feeds = {"q": rnd(shapes["q"], 6, -2.0, 2.0), "kt": rnd(shapes["kt"], 7, -2.0, 2.0), "v": rnd(shapes["v"], 8)}
    return fused, ref, feeds


ATTN_PROGRAMS = {
    "plain": [],
    "gpt2": [(1, 2.0), (2, -1e4), (4, 0.0)],      # Div, causal-style Where (S kept where true), pad Add
    "reversed": [(0, 0.5), (3, -1e4)],            # Mul, Where(mask, fill, S)
    "scaled-twice": [(1, 2.0), (4, 0.0), (0, 1.5), (2, -1e4)],
}


@pytest.mark.parametrize("program", list(ATTN_PROGRAMS), ids=list(ATTN_PROGRAMS))
def test_attention_gradient(ulc, tmp_path, program):
    """`ulc grad` through ulc's Attention (its backward: one AttentionGrad recomputing the
    probabilities) against finite differences of the ONNX spelling; q, kt and v all trained;
    Tq != Tk; a query row every key of which is masked."""
    fused, ref, feeds = attention_models(ATTN_PROGRAMS[program])
    check_fused_against_spelled(ulc, tmp_path, fused, ref, feeds)


@pytest.mark.parametrize("program", ["gpt2", "reversed"])
def test_attention_spelled_out_is_fused_for_autodiff(ulc, tmp_path, program):
    """The ONNX spelling differentiated by `ulc grad` (which fuses it into one Attention, as
    training graphs do) against finite differences of itself."""
    _, ref, feeds = attention_models(ATTN_PROGRAMS[program])
    check_fused_against_spelled(ulc, tmp_path, ref, ref, feeds)


def test_attention_with_a_learned_bias_keeps_its_nodes(ulc, tmp_path):
    """An additive score mask that is differentiated itself (a learned attention bias, e.g. a
    relative-position table) keeps the nodes, which carry its gradient: `ulc grad` through the
    spelling against finite differences, the bias among the inputs."""
    _, ref, feeds = attention_models(ATTN_PROGRAMS["gpt2"])
    g = ref.graph
    bias = next(i for i in g.initializer if i.name == "m2")
    feeds = {**feeds, "m2": (numpy_helper.to_array(bias) * 0 + rnd((2, 1, 1, 6), 11)).astype(np.float32)}
    g.initializer.remove(bias)
    g.input.append(helper.make_tensor_value_info("m2", F, [2, 1, 1, 6]))
    check_fused_against_spelled(ulc, tmp_path, ref, ref, feeds)
