"""The CUDA backend's elementwise ops and fused chains (runtime/cuda/k_elementwise.cu,
k_elementwise_unary.cu, k_chain.cu) against the CPU runtime (runtime/cpu/k_elementwise*.c,
k_chain.c), on the emulator and, where one is visible, on the GPU.

Covered: every op the family registers; the binary ops on float32/float64 over broadcasting
patterns (same shapes, odd sizes, a scalar on either side, a row, a column, a middle axis, both
sides broadcast, rank 5, empty, 3×1000 so the emulator's grid-stride loops wrap) and on
int32/int64 with the CPU's integer semantics (division and Mod by 0 and -1, MIN / -1,
wrapping products, integer Pow with negative exponents); Pow with mixed dtypes and a constant
exponent 2, 3, 0.5; BitShift and the bitwise ops on unsigned and signed integers; bool logic;
Max/Min/Sum/Mean with 1 to 4 broadcast inputs and NaN; Where with a broadcast condition over
every element size; every unary op on float32 and float64 with its attributes (Gelu at opset
20, ulc's FastGelu both ways), the special values (NaN, ±inf, ±0, halves for Round), the integer
unary ops; Clip with run-time and constant bounds, one of them, none, min > max, opset 6
attributes, integers; Cast from f32/f64/i32/i64/i8/u8/bool to every one of those and to f16 and
bf16 (rounded as the CPU does), out-of-range conversions, CastLike; opset 6 legacy broadcast;
chains of elementwise nodes (GELU spelled out with tanh and with erf, which the planner
recognises, and a general 3-input program, on odd sizes and sizes where the vector loop
wraps); the clean refusal of a dtype the backend does not implement.

Data comes in through graph inputs so the nodes run on the device (constants fold on the host).
Tolerances (assert_close: |cuda - cpu| <= atol + rtol·max|cpu|): exact ops rtol 1e-6;
transcendental functions 2e-6 (the GPU's accurate expf/erff/tanhf … and the CPU's vector
functions differ by a few ulp); integer and bool outputs bit-exact.
"""
import subprocess

import numpy as np
import pytest
from onnx import TensorProto, helper

import cuda_common
from cuda_common import assert_close, cuda_mode, run_both, run_model, save_model  # noqa: F401 (the fixture)
from conftest import ulc_bin

cuda_common.DT.setdefault(np.dtype(np.int8), TensorProto.INT8)
cuda_common.DT.setdefault(np.dtype(np.uint8), TensorProto.UINT8)
cuda_common.DT.setdefault(np.dtype(np.int16), TensorProto.INT16)
cuda_common.DT.setdefault(np.dtype(np.uint16), TensorProto.UINT16)
cuda_common.DT.setdefault(np.dtype(np.uint32), TensorProto.UINT32)
cuda_common.DT.setdefault(np.dtype(np.uint64), TensorProto.UINT64)

RNG = np.random.default_rng(11)
EXACT = 1e-6
TRANS = 2e-6


def opsets(n):
    return [helper.make_opsetid("", n), helper.make_opsetid("ulc", 1)]


def ttype(dtype):
    return cuda_common.DT[np.dtype(dtype)]


def q(shape, dtype=np.float32):
    """Values on a quarter grid in [-4, 4]: ties for the comparisons, zeros for Div and Mod."""
    return (np.round(RNG.standard_normal(shape) * 8) / 4).astype(dtype)


def ints(shape, dtype, lo=-50, hi=50):
    return RNG.integers(lo, hi, size=shape).astype(dtype)


def both(tmp_path, mode, nodes, feeds, out_types, tag="m", rtol=EXACT, atol=1e-6, inits=None,
         ops=None):
    kw = {"opsets": ops} if ops else {}
    cpu, cu = run_both(tmp_path, nodes, feeds, list(out_types), mode, inits=inits,
                       out_types=out_types, tag=tag, **kw)
    assert_close(cpu, cu, rtol=rtol, atol=atol, what=tag)
    return cpu, cu


# ---- registrations ------------------------------------------------------------------------------

FAMILY = """Add Sub Mul Div Pow Mod BitShift BitwiseAnd BitwiseOr BitwiseXor And Or Xor Equal Less
Greater LessOrEqual GreaterOrEqual PRelu Max Min Sum Mean Where Abs Neg Sign Relu Floor Ceil Round
Sqrt Reciprocal Exp Log Erf Tanh Sigmoid Sin Cos Tan Asin Acos Atan Sinh Cosh Asinh Acosh Atanh
Softsign Softplus Elu Selu Celu LeakyRelu HardSigmoid HardSwish ThresholdedRelu Mish Shrink Gelu
Not BitwiseNot IsNaN IsInf Clip Cast CastLike""".split()  # ulc's FastGelu: test_unary_float


def test_ops_are_registered():
    p = subprocess.run([ulc_bin(), "--device", "cuda", "ops", "--backend", "cuda"],
                       capture_output=True, text=True, timeout=60, env=cuda_common.env_for("emulator"))
    if p.returncode != 0:
        pytest.skip(f"no emulator: {p.stderr.strip()}")
    claimed = set(p.stdout.split())
    assert not set(FAMILY) - claimed, sorted(set(FAMILY) - claimed)


# ---- binary ops, float ----------------------------------------------------------------------------

PATTERNS = {
    "same-3x1000": ((3, 1000), (3, 1000)),   # the vector loop's grid wraps (8 blocks × 256)
    "same-odd": ((7, 13), (7, 13)),          # 91: four at a time, then a tail of 3
    "scalar-b": ((3, 1000), (1,)),
    "scalar-a": ((1,), (5, 7)),
    "row": ((4, 6, 8), (8,)),
    "row-odd": ((5, 7), (7,)),               # inner 7: element by element
    "column": ((6, 1), (6, 8)),
    "middle": ((2, 3, 4, 5), (3, 1, 1)),
    "both-sides": ((4, 1, 6), (1, 5, 6)),
    "rank5": ((2, 1, 3, 1, 5), (4, 1, 6, 5)),
    "big-bcast": ((2, 3, 700), (3, 1)),      # 4200 outputs, 32-bit index maths, the grid wraps
    "empty": ((0, 5), (5,)),
}

FLOAT_BINARY = [("Add", {}), ("Sub", {}), ("Mul", {}), ("Div", {}), ("Mod", {"fmod": 1}),
                ("Mod", {"fmod": 0}), ("Max", {}), ("Min", {}), ("Equal", {}), ("Less", {}),
                ("Greater", {}), ("LessOrEqual", {}), ("GreaterOrEqual", {})]
CMP = {"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_binary_float(tmp_path, cuda_mode, pattern, dtype):
    sa, sb = PATTERNS[pattern]
    a, b = q(sa, dtype), q(sb, dtype)
    b[b == 0] = 0.75  # no infinities: assert_close compares finite values
    pa = (np.abs(a) + 0.25).astype(dtype)  # Pow's base: positive
    nodes, outs = [], {}
    for i, (op, attrs) in enumerate(FLOAT_BINARY):
        nodes.append(helper.make_node(op, ["a", "b"], [f"y{i}"], **attrs))
        outs[f"y{i}"] = TensorProto.BOOL if op in CMP else ttype(dtype)
    nodes.append(helper.make_node("Pow", ["pa", "b"], ["pw"]))
    outs["pw"] = ttype(dtype)
    both(tmp_path, cuda_mode, nodes, {"a": a, "b": b, "pa": pa}, outs, rtol=TRANS)


def test_prelu(tmp_path, cuda_mode):
    x = q((3, 4, 5, 6))
    nodes = [helper.make_node("PRelu", ["x", "s1"], ["y1"]),   # slope per channel [4,1,1]
             helper.make_node("PRelu", ["x", "s2"], ["y2"]),   # scalar
             helper.make_node("PRelu", ["x", "s3"], ["y3"]),   # same shape
             helper.make_node("PRelu", ["xi", "si"], ["y4"])]  # int32
    feeds = {"x": x, "s1": q((4, 1, 1)), "s2": q((1,)), "s3": q((3, 4, 5, 6)),
             "xi": ints((3, 5), np.int32), "si": ints((5,), np.int32)}
    both(tmp_path, cuda_mode, nodes, feeds,
         {"y1": TensorProto.FLOAT, "y2": TensorProto.FLOAT, "y3": TensorProto.FLOAT,
          "y4": TensorProto.INT32})


def test_pow_constant_exponents(tmp_path, cuda_mode):
    """A constant scalar exponent 2 or 3 (x·x, x·x·x like the CPU), 0.5, -1; a tensor exponent."""
    x = q((3, 1000))
    x[x == 0] = 0.5  # x^-1: no infinities
    nodes = [helper.make_node("Pow", ["x", f"e{i}"], [f"y{i}"]) for i in range(4)]
    nodes.append(helper.make_node("Pow", ["px", "x"], ["y4"]))
    inits = {"e0": np.array(2.0, np.float32), "e1": np.array(3.0, np.float32),
             "e2": np.array(0.5, np.float32), "e3": np.array(-1.0, np.float32)}
    both(tmp_path, cuda_mode, nodes, {"x": x, "px": np.abs(x) + 0.5},
         {f"y{i}": TensorProto.FLOAT for i in range(5)}, inits=inits, rtol=TRANS)


def test_pow_mixed_dtypes(tmp_path, cuda_mode):
    """Base f32/f64/i32/i64 with an exponent of another dtype: pow in double, converted."""
    fb, db = np.abs(q((4, 6))) + 0.5, (np.abs(q((4, 6))) + 0.5).astype(np.float64)
    ib, lb = ints((4, 6), np.int32, -5, 6), ints((4, 6), np.int64, -5, 6)
    ie, le = ints((6,), np.int32, -2, 5), ints((6,), np.int64, -2, 5)
    fe, de = q((6,)), q((6,), np.float64)
    nodes = [helper.make_node("Pow", ["fb", "le"], ["y0"]),
             helper.make_node("Pow", ["fb", "de"], ["y1"]),
             helper.make_node("Pow", ["db", "fe"], ["y2"]),
             helper.make_node("Pow", ["ib", "le"], ["y3"]),
             helper.make_node("Pow", ["lb", "ie"], ["y4"]),
             helper.make_node("Pow", ["ib", "fe"], ["y5"]),
             helper.make_node("Pow", ["lb", "de"], ["y6"]),
             helper.make_node("Pow", ["ib", "ie"], ["y7"]),
             helper.make_node("Pow", ["lb", "le"], ["y8"])]
    feeds = {"fb": fb, "db": db, "ib": ib, "lb": lb, "ie": ie, "le": le, "fe": fe, "de": de}
    outs = {"y0": TensorProto.FLOAT, "y1": TensorProto.FLOAT, "y2": TensorProto.DOUBLE,
            "y3": TensorProto.INT32, "y4": TensorProto.INT64, "y5": TensorProto.INT32,
            "y6": TensorProto.INT64, "y7": TensorProto.INT32, "y8": TensorProto.INT64}
    both(tmp_path, cuda_mode, nodes, feeds, outs, rtol=TRANS)


# ---- binary ops, integers and bool ------------------------------------------------------------------

INT_BINARY = [("Add", {}), ("Sub", {}), ("Mul", {}), ("Div", {}), ("Mod", {"fmod": 0}),
              ("Mod", {"fmod": 1}), ("Max", {}), ("Min", {}), ("BitwiseAnd", {}),
              ("BitwiseOr", {}), ("BitwiseXor", {}), ("Equal", {}), ("Less", {}), ("Greater", {}),
              ("LessOrEqual", {}), ("GreaterOrEqual", {})]


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
@pytest.mark.parametrize("pattern", ["same", "row", "scalar"])
def test_binary_int(tmp_path, cuda_mode, dtype, pattern):
    info = np.iinfo(dtype)
    a = ints((9, 300), dtype, -1000, 1000)
    special = np.array([info.min, info.max, -1, 0, 1, 7, -7, info.min + 1, 123456], dtype)
    a[:, :9] = special  # MIN / -1, x / 0, wrapping sums and products
    if pattern == "same":
        b = ints((9, 300), dtype, -9, 10)
        b[:, :9] = special[::-1]
        b[:, 9] = -1
        b[:, 10] = 0
    elif pattern == "row":
        b = ints((300,), dtype, -9, 10)
        b[:4] = [-1, 0, info.max, info.min]
    else:
        b = np.array([-1], dtype)
    nodes, outs = [], {}
    for i, (op, attrs) in enumerate(INT_BINARY):
        nodes.append(helper.make_node(op, ["a", "b"], [f"y{i}"], **attrs))
        outs[f"y{i}"] = TensorProto.BOOL if op in CMP else ttype(dtype)
    pb = ints(b.shape, dtype, -3, 12)
    nodes.append(helper.make_node("Pow", ["a", "pb"], ["pw"]))
    outs["pw"] = ttype(dtype)
    both(tmp_path, cuda_mode, nodes, {"a": a, "b": b, "pb": pb}, outs, ops=opsets(18))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.uint64])
def test_bitshift_and_bitwise_unsigned(tmp_path, cuda_mode, dtype):
    bits = np.dtype(dtype).itemsize * 8
    a = RNG.integers(0, np.iinfo(dtype).max, size=(5, 40), dtype=dtype)
    s = RNG.integers(0, bits + 3, size=(40,)).astype(dtype)  # shifts past the width give 0
    nodes = [helper.make_node("BitShift", ["a", "s"], ["l"], direction="LEFT"),
             helper.make_node("BitShift", ["a", "s"], ["r"], direction="RIGHT"),
             helper.make_node("BitwiseAnd", ["a", "s"], ["and"]),
             helper.make_node("BitwiseOr", ["a", "s"], ["or"]),
             helper.make_node("BitwiseXor", ["a", "s"], ["xor"]),
             helper.make_node("BitwiseNot", ["a"], ["not"])]
    t = ttype(dtype)
    both(tmp_path, cuda_mode, nodes, {"a": a, "s": s},
         {"l": t, "r": t, "and": t, "or": t, "xor": t, "not": t}, ops=opsets(18))


def test_bitwise_signed(tmp_path, cuda_mode):
    feeds = {"a8": ints((3, 7), np.int8), "b8": ints((7,), np.int8),
             "a16": ints((3, 7), np.int16), "b16": ints((3, 7), np.int16),
             "a32": ints((3, 7), np.int32), "b32": ints((1,), np.int32),
             "a64": ints((3, 7), np.int64), "b64": ints((3, 1), np.int64)}
    nodes, outs = [], {}
    for w in (8, 16, 32, 64):
        t = ttype(feeds[f"a{w}"].dtype)
        for op in ("BitwiseAnd", "BitwiseOr", "BitwiseXor"):
            nodes.append(helper.make_node(op, [f"a{w}", f"b{w}"], [f"{op}{w}"]))
            outs[f"{op}{w}"] = t
        nodes.append(helper.make_node("BitwiseNot", [f"a{w}"], [f"not{w}"]))
        outs[f"not{w}"] = t
    both(tmp_path, cuda_mode, nodes, feeds, outs, ops=opsets(18))


def test_bool_logic(tmp_path, cuda_mode):
    a = RNG.random((4, 5, 6)) < 0.5
    b = RNG.random((5, 1)) < 0.5
    nodes = [helper.make_node(op, ["a", "b"], [op]) for op in ("And", "Or", "Xor", "Equal")]
    nodes.append(helper.make_node("Not", ["a"], ["Not"]))
    both(tmp_path, cuda_mode, nodes, {"a": a, "b": b},
         {op: TensorProto.BOOL for op in ("And", "Or", "Xor", "Equal", "Not")})


def test_legacy_broadcast_opset6(tmp_path, cuda_mode):
    """Opset < 7: B aligned to A at `axis`."""
    a, b, c = q((2, 3, 4, 5)), q((3, 4)), q((5,))
    nodes = [helper.make_node("Add", ["a", "b"], ["y0"], broadcast=1, axis=1),
             helper.make_node("Mul", ["a", "c"], ["y1"], broadcast=1),
             helper.make_node("Sub", ["a", "a"], ["y2"])]
    both(tmp_path, cuda_mode, nodes, {"a": a, "b": b, "c": c},
         {"y0": TensorProto.FLOAT, "y1": TensorProto.FLOAT, "y2": TensorProto.FLOAT}, ops=opsets(6))


# ---- variadic ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_variadic_float(tmp_path, cuda_mode, dtype):
    x0, x1, x2, x3 = q((3, 1, 5), dtype), q((4, 5), dtype), q((5,), dtype), q((3, 4, 5), dtype)
    x0[0, 0, 1] = np.nan  # Max / Min propagate NaN
    x3[1, 2, 3] = np.nan
    nodes, outs = [], {}
    for op in ("Max", "Min", "Sum", "Mean"):
        for n in (1, 2, 3, 4):
            nodes.append(helper.make_node(op, [f"x{i}" for i in range(n)], [f"{op}{n}"]))
            outs[f"{op}{n}"] = ttype(dtype)
    both(tmp_path, cuda_mode, nodes, {"x0": x0, "x1": x1, "x2": x2, "x3": x3}, outs)


def test_variadic_int_and_large(tmp_path, cuda_mode):
    a, b, c = ints((3, 1000), np.int32), ints((1000,), np.int32), ints((3, 1), np.int32)
    la, lb = ints((2, 3), np.int64), ints((2, 3), np.int64)
    f = [q((3, 1000)) for _ in range(3)]
    nodes = [helper.make_node("Max", ["a", "b", "c"], ["mx"]),
             helper.make_node("Min", ["a", "b", "c"], ["mn"]),
             helper.make_node("Max", ["la", "lb"], ["lmx"]),
             helper.make_node("Min", ["la"], ["lmn"]),
             helper.make_node("Mean", ["f0", "f1", "f2"], ["mean"]),
             helper.make_node("Sum", ["f0", "f1", "f2"], ["sum"])]
    feeds = {"a": a, "b": b, "c": c, "la": la, "lb": lb, "f0": f[0], "f1": f[1], "f2": f[2]}
    both(tmp_path, cuda_mode, nodes, feeds,
         {"mx": TensorProto.INT32, "mn": TensorProto.INT32, "lmx": TensorProto.INT64,
          "lmn": TensorProto.INT64, "mean": TensorProto.FLOAT, "sum": TensorProto.FLOAT})


# ---- Where -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64, np.bool_, np.int16,
                                   np.uint8])
def test_where(tmp_path, cuda_mode, dtype):
    def val(shape):
        if np.dtype(dtype) == np.bool_:
            return RNG.random(shape) < 0.5
        return q(shape).astype(dtype)
    c1 = RNG.random((4, 1, 8)) < 0.5     # condition broadcast over the middle axis
    c2 = RNG.random((3, 1000)) < 0.5     # dense, the grid wraps
    c3 = np.array([True])                # scalar condition
    feeds = {"c1": c1, "c2": c2, "c3": c3, "x1": val((4, 5, 8)), "y1": val((1,)),
             "x2": val((3, 1000)), "y2": val((1000,)), "x3": val((2, 3)), "y3": val((3,)),
             "x4": val((6, 7)), "c4": RNG.random((6, 1)) < 0.5, "y4": val((1, 7))}
    nodes = [helper.make_node("Where", [f"c{i}", f"x{i}", f"y{i}"], [f"o{i}"]) for i in (1, 2, 3, 4)]
    both(tmp_path, cuda_mode, nodes, feeds, {f"o{i}": ttype(dtype) for i in (1, 2, 3, 4)})


# ---- unary ops -------------------------------------------------------------------------------------

# (op, attrs, domain): x any real; "pos": x > 0; "unit": |x| < 1; "ge1": x >= 1
UNARY = [
    ("Abs", {}, "x"), ("Neg", {}, "x"), ("Sign", {}, "x"), ("Relu", {}, "x"), ("Floor", {}, "x"),
    ("Ceil", {}, "x"), ("Round", {}, "x"), ("Sqrt", {}, "pos"), ("Reciprocal", {}, "x"),
    ("Exp", {}, "x"), ("Log", {}, "pos"), ("Erf", {}, "x"), ("Tanh", {}, "x"),
    ("Sigmoid", {}, "x"), ("Sin", {}, "x"), ("Cos", {}, "x"), ("Tan", {}, "unit"),
    ("Asin", {}, "unit"), ("Acos", {}, "unit"), ("Atan", {}, "x"), ("Sinh", {}, "x"),
    ("Cosh", {}, "x"), ("Asinh", {}, "x"), ("Acosh", {}, "ge1"), ("Atanh", {}, "unit"),
    ("Softsign", {}, "x"), ("Softplus", {}, "x"), ("Elu", {}, "x"), ("Elu", {"alpha": 0.5}, "x"),
    ("Selu", {}, "x"), ("Selu", {"alpha": 1.5, "gamma": 0.7}, "x"), ("Celu", {"alpha": 2.0}, "x"),
    ("LeakyRelu", {}, "x"), ("LeakyRelu", {"alpha": 0.3}, "x"), ("HardSigmoid", {}, "x"),
    ("HardSigmoid", {"alpha": 0.4, "beta": 0.3}, "x"), ("HardSwish", {}, "x"),
    ("ThresholdedRelu", {"alpha": 0.5}, "x"), ("Mish", {}, "x"),
    ("Shrink", {"bias": 0.25, "lambd": 0.75}, "x"), ("Gelu", {}, "x"),
    ("Gelu", {"approximate": "tanh"}, "x"), ("IsNaN", {}, "x"), ("IsInf", {}, "x"),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unary_float(tmp_path, cuda_mode, dtype):
    shape = (3, 1001)  # 3003: four at a time with a tail, the grid wraps
    feeds = {"x": (RNG.standard_normal(shape) * 3).astype(dtype),
             "pos": (RNG.random(shape) * 20 + 1e-3).astype(dtype),
             "unit": (RNG.random(shape) * 1.98 - 0.99).astype(dtype),
             "ge1": (RNG.random(shape) * 20 + 1).astype(dtype)}
    nodes, outs = [], {}
    for i, (op, attrs, dom) in enumerate(UNARY):
        nodes.append(helper.make_node(op, [dom], [f"y{i}"], **attrs))
        outs[f"y{i}"] = TensorProto.BOOL if op in ("IsNaN", "IsInf") else ttype(dtype)
    for i, approx in enumerate(("tanh", "none")):
        nodes.append(helper.make_node("FastGelu", ["x"], [f"fg{i}"], domain="ulc", approximate=approx))
        outs[f"fg{i}"] = ttype(dtype)
    nodes.append(helper.make_node("FastGelu", ["x"], ["fg2"], domain="ulc"))
    outs["fg2"] = ttype(dtype)
    both(tmp_path, cuda_mode, nodes, feeds, outs, rtol=TRANS, ops=opsets(20))


def test_unary_special_values(tmp_path, cuda_mode):
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 1e-30,
                  -3.0, 7.25, 1e30, -1e30, 88.0, -104.0], np.float32)
    ops = [("Abs", {}), ("Neg", {}), ("Sign", {}), ("Relu", {}), ("Floor", {}), ("Ceil", {}),
           ("Round", {}), ("IsNaN", {}), ("IsInf", {}), ("IsInf", {"detect_negative": 0}),
           ("IsInf", {"detect_positive": 0}), ("Exp", {}), ("Tanh", {}), ("Erf", {}),
           ("Sigmoid", {}), ("Reciprocal", {}), ("LeakyRelu", {}), ("Softplus", {}),
           ("Gelu", {}), ("Gelu", {"approximate": "tanh"}), ("HardSwish", {})]
    nodes, outs, signed_zero = [], {}, {}
    for i, (op, attrs) in enumerate(ops):
        nodes.append(helper.make_node(op, ["x"], [f"y{i}"], **attrs))
        outs[f"y{i}"] = TensorProto.BOOL if op in ("IsNaN", "IsInf") else TensorProto.FLOAT
        signed_zero[f"y{i}"] = op in ("Abs", "Neg", "Sign", "Relu", "Floor", "Ceil", "Round",
                                      "LeakyRelu", "HardSwish", "Gelu")
    cpu, cu = run_both(tmp_path, nodes, {"x": x}, list(outs), cuda_mode, out_types=outs,
                       opsets=opsets(20))
    # elementwise: each value to the CPU's within a few ulp (or both inf / NaN, zeros of the same
    # sign); below 1e-12 absolute (GELU's far negative tail, where the rounding of its argument
    # dominates) any value passes
    for k in outs:
        a, b = cpu[k], cu[k]
        assert a.dtype == b.dtype and a.shape == b.shape, k
        if a.dtype == np.bool_:
            assert np.array_equal(a, b), k
            continue
        assert np.array_equal(np.isnan(a), np.isnan(b)), (k, a, b)
        m = ~np.isnan(a)
        assert np.allclose(a[m], b[m], rtol=TRANS, atol=1e-12), (k, a, b)
        if signed_zero[k]:  # exact ops and GELU: -0 where the CPU gives -0
            z = a[m] == 0
            assert np.array_equal(np.signbit(a[m][z]), np.signbit(b[m][z])), (k, a, b)


def test_unary_int(tmp_path, cuda_mode):
    feeds = {"i": ints((3, 701), np.int32), "l": ints((3, 701), np.int64)}
    feeds["i"][0, :3] = [np.iinfo(np.int32).min, 0, -1]
    feeds["l"][0, :3] = [np.iinfo(np.int64).min, 0, -1]
    nodes, outs = [], {}
    for v in ("i", "l"):
        for op in ("Abs", "Neg", "Sign", "Relu"):
            nodes.append(helper.make_node(op, [v], [f"{op}{v}"]))
            outs[f"{op}{v}"] = ttype(feeds[v].dtype)
    both(tmp_path, cuda_mode, nodes, feeds, outs)


def test_empty(tmp_path, cuda_mode):
    x, y, c = q((0, 5)), q((5,)), np.zeros((0, 1), np.bool_)
    nodes = [helper.make_node("Add", ["x", "y"], ["a"]), helper.make_node("Exp", ["x"], ["e"]),
             helper.make_node("Cast", ["x"], ["k"], to=TensorProto.INT64),
             helper.make_node("Where", ["c", "x", "y"], ["w"]),
             helper.make_node("Clip", ["x", "lo"], ["cl"]),
             helper.make_node("Sum", ["x", "y", "x"], ["s"])]
    cpu, cu = both(tmp_path, cuda_mode, nodes, {"x": x, "y": y, "c": c, "lo": np.array([0.0], np.float32)},
                   {"a": TensorProto.FLOAT, "e": TensorProto.FLOAT, "k": TensorProto.INT64,
                    "w": TensorProto.FLOAT, "cl": TensorProto.FLOAT, "s": TensorProto.FLOAT})
    assert all(v.shape == (0, 5) for v in cu.values())


# ---- Clip ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
def test_clip(tmp_path, cuda_mode, dtype):
    x = (q((3, 1001)) * 10).astype(dtype)
    lo, hi = np.array([-7], dtype), np.array([12], dtype)
    nodes = [helper.make_node("Clip", ["x", "lo", "hi"], ["both"]),        # run-time bounds
             helper.make_node("Clip", ["x", "lo"], ["min"]),
             helper.make_node("Clip", ["x", "", "hi"], ["max"]),
             helper.make_node("Clip", ["x"], ["none"]),
             helper.make_node("Clip", ["x", "hi", "lo"], ["inverted"]),   # min > max: max
             helper.make_node("Clip", ["x", "clo", "chi"], ["const"])]    # plan constants
    t = ttype(dtype)
    both(tmp_path, cuda_mode, nodes, {"x": x, "lo": lo, "hi": hi},
         {"both": t, "min": t, "max": t, "none": t, "inverted": t, "const": t},
         inits={"clo": np.array(-3, dtype), "chi": np.array(5, dtype)})


def test_clip_opset6_attributes(tmp_path, cuda_mode):
    x = q((5, 9)) * 3
    nodes = [helper.make_node("Clip", ["x"], ["y0"], min=-1.5, max=2.0),
             helper.make_node("Clip", ["x"], ["y1"], min=0.0),
             helper.make_node("Clip", ["x"], ["y2"])]
    both(tmp_path, cuda_mode, nodes, {"x": x},
         {"y0": TensorProto.FLOAT, "y1": TensorProto.FLOAT, "y2": TensorProto.FLOAT}, ops=opsets(6))


# ---- Cast --------------------------------------------------------------------------------------------

CAST_TARGETS = [TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.INT32, TensorProto.INT64,
                TensorProto.INT8, TensorProto.UINT8, TensorProto.BOOL, TensorProto.FLOAT16,
                TensorProto.INT16, TensorProto.UINT16, TensorProto.UINT32, TensorProto.UINT64]


def cast_source(dtype):
    dt = np.dtype(dtype)
    if dt == np.bool_:
        return RNG.random((3, 41)) < 0.5
    if dt.kind == "f":
        v = (RNG.standard_normal((3, 41)) * 200).astype(dt)
        v[0, :12] = [np.nan, np.inf, -np.inf, 300.5, -300.5, 1e10, -1e10, 65519.0, 65520.0,
                     -0.0, 2.0 ** -24 * 1.5, 1e-8]
        if dt == np.float64:
            v[1, :3] = [1.0 + 2.0 ** -40, 2049.0000001, 1e300]  # double rounding to half
        return v
    info = np.iinfo(dt)
    v = RNG.integers(max(info.min, -3000), min(info.max, 3000), size=(3, 41)).astype(dt)
    v[0, :3] = [info.min, info.max, 0]
    if dt == np.int64:
        v[1, :3] = [2 ** 53 + 1, -(2 ** 62) - 12345, 2049]
    return v


@pytest.mark.parametrize("src", [np.float32, np.float64, np.int32, np.int64, np.int8, np.uint8,
                                 np.bool_])
def test_cast_matrix(tmp_path, cuda_mode, src):
    x = cast_source(src)
    nodes, outs = [], {}
    for t in CAST_TARGETS:
        nodes.append(helper.make_node("Cast", ["x"], [f"c{t}"], to=t))
        outs[f"c{t}"] = t
    # bfloat16 (not storable here): rounded, then back to float32
    nodes.append(helper.make_node("Cast", ["x"], ["b16"], to=TensorProto.BFLOAT16))
    nodes.append(helper.make_node("Cast", ["b16"], ["bf"], to=TensorProto.FLOAT))
    outs["bf"] = TensorProto.FLOAT
    nodes.append(helper.make_node("CastLike", ["x", "like"], ["cl"]))
    outs["cl"] = TensorProto.INT64
    cpu, cu = run_both(tmp_path, nodes, {"x": x, "like": np.zeros((1,), np.int64)}, list(outs),
                       cuda_mode, out_types=outs)
    for k in outs:  # conversions are exact: bit-equal (NaN where the CPU has NaN)
        a, b = cpu[k], cu[k]
        assert a.dtype == b.dtype and a.shape == b.shape, k
        if a.dtype.kind == "f":
            assert np.array_equal(a, b, equal_nan=True), (k, a[a != b], b[a != b])
        else:
            assert np.array_equal(a, b), (k, a[a != b], b[a != b])


# ---- chains ------------------------------------------------------------------------------------------

def const(v):
    return np.array(v, np.float32)


GELU_TANH = [
    helper.make_node("Pow", ["x", "three"], ["p"]),
    helper.make_node("Mul", ["p", "k1"], ["m1"]),
    helper.make_node("Add", ["x", "m1"], ["a1"]),
    helper.make_node("Mul", ["a1", "k0"], ["m2"]),
    helper.make_node("Tanh", ["m2"], ["t"]),
    helper.make_node("Add", ["t", "one"], ["a2"]),
    helper.make_node("Mul", ["x", "a2"], ["m3"]),
    helper.make_node("Mul", ["m3", "half"], ["y"]),
]
GELU_ERF = [
    helper.make_node("Div", ["x", "sqrt2"], ["d"]),
    helper.make_node("Erf", ["d"], ["e"]),
    helper.make_node("Add", ["e", "one"], ["a"]),
    helper.make_node("Mul", ["x", "a"], ["m"]),
    helper.make_node("Mul", ["m", "half"], ["y"]),
]
CONSTS = {"three": const(3.0), "k1": const(0.044715), "k0": const(0.7978845608028654),
          "one": const(1.0), "half": const(0.5), "sqrt2": const(1.4142135623730951)}


@pytest.mark.parametrize("shape", [(3, 1000), (5, 7), (4, 4096)])
@pytest.mark.parametrize("form", ["tanh", "erf", "tanh-spelled", "erf-spelled"])
def test_chain_gelu(tmp_path, cuda_mode, monkeypatch, form, shape):
    """GELU spelled out: the planner probes the chain (ucu_chain_eval) and runs one GELU
    instruction; with ULC_NO_GELU_FUSION the chain runs the nodes' program (Pow, Mul, Add,
    Tanh / Div, Erf ...). 4×4096 wraps the four-at-a-time loop, 5×7 is mostly tail."""
    if form.endswith("-spelled"):
        monkeypatch.setenv("ULC_NO_GELU_FUSION", "1")
    nodes = GELU_TANH if form.startswith("tanh") else GELU_ERF
    x = (RNG.standard_normal(shape) * 3).astype(np.float32)
    both(tmp_path, cuda_mode, nodes, {"x": x}, {"y": TensorProto.FLOAT}, inits=CONSTS, rtol=TRANS)


@pytest.mark.parametrize("shape", [(3, 1000), (7, 13), (2, 4100)])
def test_chain_program(tmp_path, cuda_mode, shape):
    """A general program over three inputs: every binary op, scalars on either side, unary ops,
    an input read twice, a value reused."""
    nodes = [
        helper.make_node("Mul", ["x", "y"], ["m"]),
        helper.make_node("Add", ["m", "z"], ["a"]),
        helper.make_node("Tanh", ["a"], ["t"]),
        helper.make_node("Sub", ["one", "t"], ["s"]),       # scalar first
        helper.make_node("Div", ["s", "x2"], ["d"]),
        helper.make_node("Sigmoid", ["d"], ["g"]),
        helper.make_node("Mul", ["g", "g"], ["gg"]),         # one register twice
        helper.make_node("Pow", ["gg", "two"], ["p"]),
        helper.make_node("Exp", ["p"], ["e"]),
        helper.make_node("Sub", ["e", "x"], ["r"]),
        helper.make_node("Abs", ["r"], ["ab"]),
        helper.make_node("Sqrt", ["ab"], ["sq"]),
        helper.make_node("Neg", ["sq"], ["n"]),
        helper.make_node("Relu", ["n"], ["rl"]),
        helper.make_node("Add", ["rl", "sq"], ["out"]),
    ]
    x = RNG.standard_normal(shape).astype(np.float32)
    feeds = {"x": x, "y": RNG.standard_normal(shape).astype(np.float32),
             "z": RNG.standard_normal(shape).astype(np.float32),
             "x2": (RNG.random(shape) + 0.5).astype(np.float32)}
    both(tmp_path, cuda_mode, nodes, feeds, {"out": TensorProto.FLOAT},
         inits={"one": const(1.0), "two": const(2.0)}, rtol=TRANS)


def test_chain_log_recip_erf(tmp_path, cuda_mode):
    nodes = [helper.make_node("Log", ["x"], ["l"]), helper.make_node("Reciprocal", ["l"], ["r"]),
             helper.make_node("Erf", ["r"], ["e"]), helper.make_node("Mul", ["e", "x"], ["y"]),
             helper.make_node("Pow", ["two", "y"], ["p"])]  # scalar base
    x = (RNG.random((3, 333)) * 5 + 1.5).astype(np.float32)
    both(tmp_path, cuda_mode, nodes, {"x": x}, {"p": TensorProto.FLOAT},
         inits={"two": const(2.0)}, rtol=TRANS)


# ---- refusal ---------------------------------------------------------------------------------------

def test_unsupported_dtype_is_refused(tmp_path, cuda_mode):
    """Add on int8 runs on the cpu; backend cuda refuses it cleanly, naming the dtype."""
    a, b = ints((3, 4), np.int8), ints((3, 4), np.int8)
    model = save_model(tmp_path / "m.onnx", [helper.make_node("Add", ["a", "b"], ["y"])],
                       {"a": a, "b": b}, ["y"], out_types={"y": TensorProto.INT8})
    run_model(tmp_path, model, {"a": a, "b": b}, "cpu")
    p = run_model(tmp_path, model, {"a": a, "b": b}, "cuda", cuda_mode, check=False)
    assert p.returncode != 0
    assert "dtype i8 is not supported by backend cuda" in p.stderr, p.stderr
