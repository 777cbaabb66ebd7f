"""NCHW8C layouts between convolutions and pools (runtime/layout.c) on the edges:
channel counts that are and are not multiples of 8, MaxPool with its Indices output between
convs, AveragePool with ceil_mode and count_include_pad, plain/blocked boundaries on both sides
of a pool, a broadcast addend, grouped/dilated/strided convs with a per-channel addend and Clip.
Every output must match onnxruntime."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as TP, helper as h, numpy_helper as nh
from safetensors.numpy import load_file, save_file

from conftest import run_ulc

rng = np.random.default_rng(0)


def W(name, *shape):
    return nh.from_array(rng.standard_normal(shape).astype(np.float32) * 0.3, name)


vi = lambda n, s, t=TP.FLOAT: h.make_tensor_value_info(n, t, s if s is not None else ["d0","d1","d2","d3"])
def cases(C):
    out = []
    x = rng.standard_normal((2, 3, 17, 15)).astype(np.float32)
    base = [h.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1,1,1,1]), h.make_node("Relu", ["c1"], ["r1"])]
    inits = [W("w1", C, 3, 3, 3), W("b1", C), W("w2", C, C, 3, 3), W("w3", 4, C, 1, 1)]
    # maxpool with Indices between convs
    out.append((f"mp_idx_C{C}", base + [h.make_node("MaxPool", ["r1"], ["p", "idx"], kernel_shape=[3,3], strides=[2,2], pads=[1,1,1,1]),
        h.make_node("Conv", ["p", "w2"], ["y"], pads=[1,1,1,1])], [vi("x", x.shape)], [vi("y", None), vi("idx", None, TP.INT64)], inits, {"x": x}))
    # avgpool ceil_mode include pad between convs, then conv + residual add + relu, then global max pool
    out.append((f"avg_ceil_C{C}", base + [h.make_node("AveragePool", ["r1"], ["p"], kernel_shape=[3,3], strides=[2,2], pads=[1,1,1,1], ceil_mode=1, count_include_pad=1),
        h.make_node("Conv", ["p", "w2"], ["c2"], pads=[1,1,1,1]), h.make_node("Add", ["c2", "p"], ["a"]), h.make_node("Sigmoid", ["a"], ["s"]),
        h.make_node("Conv", ["s", "w2"], ["c3"], pads=[1,1,1,1]), h.make_node("GlobalMaxPool", ["c3"], ["y"])], [vi("x", x.shape)], [vi("y", None)], inits, {"x": x}))
    out.append((f"avg_excl_C{C}", base + [h.make_node("AveragePool", ["r1"], ["p"], kernel_shape=[2,3], strides=[1,2], pads=[1,0,1,2], count_include_pad=0, ceil_mode=1),
        h.make_node("Conv", ["p", "w3"], ["c2"]), h.make_node("GlobalAveragePool", ["c2"], ["y"])], [vi("x", x.shape)], [vi("y", None)], inits, {"x": x}))
    # maxpool plain input -> blocked output; blocked input -> plain output (graph output / relu)
    xi = rng.standard_normal((2, C, 12, 12)).astype(np.float32)
    out.append((f"mp_plain_in_C{C}", [h.make_node("MaxPool", ["xi"], ["p"], kernel_shape=[2,2], strides=[2,2], dilations=[1,1]),
        h.make_node("Conv", ["p", "w2"], ["y"], pads=[1,1,1,1])], [vi("xi", xi.shape)], [vi("y", None)], inits, {"xi": xi}))
    out.append((f"mp_plain_out_C{C}", [h.make_node("Conv", ["xi", "w2"], ["c"], pads=[1,1,1,1]), h.make_node("MaxPool", ["c"], ["y"], kernel_shape=[3,3], strides=[1,1], pads=[1,1,1,1]),
        h.make_node("Relu", ["y"], ["z"])], [vi("xi", xi.shape)], [vi("y", None), vi("z", None)], inits, {"xi": xi}))
    # broadcast addend (ADD_OTHER) that is blocked: conv on a batch-1 input added to a batch-2 conv
    x1 = rng.standard_normal((1, C, 10, 10)).astype(np.float32); x2 = rng.standard_normal((2, C, 10, 10)).astype(np.float32)
    out.append((f"add_other_C{C}", [h.make_node("Conv", ["x1", "w2"], ["a1"], pads=[1,1,1,1]), h.make_node("Conv", ["x2", "w2"], ["a2"], pads=[1,1,1,1]),
        h.make_node("Add", ["a2", "a1"], ["s"]), h.make_node("Relu", ["s"], ["r"]), h.make_node("Conv", ["r", "w2"], ["c3"], pads=[1,1,1,1]),
        h.make_node("Conv", ["a1", "w2"], ["c4"], pads=[1,1,1,1]), h.make_node("Add", ["c3", "c4"], ["y"])],
        [vi("x1", x1.shape), vi("x2", x2.shape)], [vi("y", None)], inits, {"x1": x1, "x2": x2}))
    # channel addend + grouped conv + dilation + stride
    inits2 = inits + [W("wg", C, 1, 3, 3), nh.from_array(rng.standard_normal((1, C, 1, 1)).astype(np.float32), "cb")]
    out.append((f"group_chan_C{C}", [h.make_node("Conv", ["xi", "w2"], ["c"], pads=[1,1,1,1]), h.make_node("Conv", ["c", "wg"], ["d"], group=C, strides=[2,2], dilations=[2,2], pads=[2,2,2,2]),
        h.make_node("Add", ["d", "cb"], ["e"]), h.make_node("Clip", ["e", "", ""], ["f"]), h.make_node("Conv", ["f", "w3"], ["y"])], [vi("xi", xi.shape)], [vi("y", None)], inits2, {"xi": xi}))
    return out


CASES = [c for C in (8, 5, 13) for c in cases(C)]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_layout_edges_match_onnxruntime(tmp_path, case):
    name, nodes, inputs, outputs, inits, feeds = case
    m = h.make_model(h.make_graph(nodes, name, inputs, outputs, inits), opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    p, inp, out = tmp_path / "m.onnx", tmp_path / "in.safetensors", tmp_path / "out.safetensors"
    onnx.save(m, str(p))
    save_file(feeds, str(inp))
    run_ulc("run", p, "--input", inp, "-o", out, "--threads", "2", check=True)
    got = load_file(str(out))
    s = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
    for o, ref in zip(s.get_outputs(), s.run(None, feeds)):
        g = got[o.name]
        assert g.shape == ref.shape and g.dtype == ref.dtype, (o.name, g.shape, ref.shape)
        if ref.dtype == np.int64:
            np.testing.assert_array_equal(g, ref)
        else:
            np.testing.assert_allclose(g, ref, rtol=1e-4, atol=1e-4)
