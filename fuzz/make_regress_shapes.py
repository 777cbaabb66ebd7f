"""Regression seeds for the shape rules' int64 arithmetic (fuzz/corpus/onnx/regress-shape-*.onnx).

    .venv/bin/python fuzz/make_regress_shapes.py

Each model puts one value a model controls where a shape rule (runtime/shape/) or a kernel run
by constant folding used to compute with it unchecked: signed overflow, -INT64_MIN, a float cast
out of range. `fuzz_onnx` runs every seed first, so each one is a regression test in `make test`
(docs/fuzzing.md); before the checked arithmetic of runtime/kutil.h each stopped the harness with
a UBSan report, now `ulc_analyze` refuses the node (or leaves it unknown) with a message. The
models are small, valid protobuf and deterministic: regenerating changes nothing unless this
script does. make_corpus.py leaves regress-* files alone; this script writes only its own, and
the findings of the campaigns that followed (regress-attr-list-type.onnx, an importer's;
regress-maxpool/globalpool-no-input.onnx, a pooling rule's).
"""
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = Path(__file__).resolve().parent / "corpus" / "onnx"

I64_MAX = 2**63 - 1
I64_MIN = -(2**63)


def vi(name, dt, shape):
    return helper.make_tensor_value_info(name, dt, shape)


def const(name, values, dtype=np.int64):
    return numpy_helper.from_array(np.array(values, dtype=dtype), name)


def model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)],
                          producer_name="ulc-fuzz", ir_version=8)
    return m.SerializeToString()


def seeds():
    f32, i64 = TensorProto.FLOAT, TensorProto.INT64
    y = [vi("y", f32, None)]
    s = {}
    # Tile: repeats · dim past int64 (s_movement.c, tile_infer)
    s["tile-repeats"] = model(
        [helper.make_node("Tile", ["x", "r"], ["y"])], [vi("x", f32, [4])], y,
        [const("r", [2**62])])
    # Slice: a step of INT64_MIN, negated to count the elements (ulc_sh_slice_params)
    s["slice-step-min"] = model(
        [helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["y"])], [vi("x", f32, [4])], y,
        [const("st", [3]), const("en", [0]), const("ax", [0]), const("sp", [I64_MIN])])
    # Slice of a constant, folded: a step of 2^62 on a strided axis, times the stride
    s["slice-step-fold"] = model(
        [helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["y"])], [], y,
        [const("x", np.ones((4, 4)), np.float32), const("st", [0]), const("en", [4]),
         const("ax", [0]), const("sp", [2**62])])
    # Pad of a constant, folded: pads INT64_MIN / INT64_MAX leave 3 elements, but the kernel's
    # source index i - pad overflowed
    s["pad-crop"] = model(
        [helper.make_node("Pad", ["x", "p"], ["y"])], [], y,
        [const("x", np.ones(4), np.float32), const("p", [I64_MIN, I64_MAX])])
    # Concat: two declared inputs of 2^62 elements; their sum along the axis
    s["concat-sum"] = model(
        [helper.make_node("Concat", ["a", "a"], ["y"], axis=0)],
        [vi("a", TensorProto.BOOL, [2**62])], [vi("y", TensorProto.BOOL, None)])
    # Split: sizes that add up past int64 (opset 11: the attribute)
    s["split-sum"] = model(
        [helper.make_node("Split", ["x"], ["y", "z"], axis=0, split=[I64_MAX, I64_MAX])],
        [vi("x", f32, [2])], [vi("y", f32, None), vi("z", f32, None)], opset=11)
    # MaxPool SAME_UPPER: in + stride - 1 with a stride of INT64_MAX (ulc_nn_window_init)
    s["pool-stride"] = model(
        [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[1], strides=[I64_MAX],
                          auto_pad="SAME_UPPER")], [vi("x", f32, [1, 1, 4])], y)
    # MaxPool: (kernel - 1) · dilation past int64
    s["pool-dilation"] = model(
        [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3], dilations=[2**62])],
        [vi("x", f32, [1, 1, 4])], y)
    # MaxPool: (kernel - 1) · dilation past int64 with both at most 2^48
    s["pool-ext"] = model(
        [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2**47], dilations=[2**47])],
        [vi("x", f32, [1, 1, 4])], y)
    # MaxPool of a constant, folded: a kernel of 2^72 taps (padded and strided to one output);
    # the kernel's work estimate multiplied the taps
    s["pool-kernel-taps"] = model(
        [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2**24] * 3, pads=[2**24] * 6,
                          strides=[2**40] * 3)], [], y,
        [const("x", np.ones((1, 1, 1, 1, 1)), np.float32)])
    # MaxPool: pads that make each output dim 2^41, whose product (the plane size) overflows
    s["pool-output-product"] = model(
        [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[1, 1, 1], pads=[2**40] * 6)],
        [vi("x", f32, [1, 1, 1, 1, 1])], y)
    # ConvTranspose: stride · (in - 1) past int64
    s["convtranspose-stride"] = model(
        [helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2**62])],
        [vi("x", f32, [1, 1, 4]), vi("w", f32, [1, 1, 1])], y)
    # Conv: W[1] · group past int64 (2^33 · 2^31)
    s["conv-group"] = model(
        [helper.make_node("Conv", ["x", "w"], ["y"], group=2**31)],
        [vi("x", f32, [1, 2**31, 4]), vi("w", f32, [1, 2**33, 1])], y)
    # Add before opset 7 with broadcast = 1: axis + B's rank, axis = INT64_MAX
    s["legacy-axis"] = model(
        [helper.make_node("Add", ["a", "b"], ["y"], broadcast=1, axis=I64_MAX)],
        [vi("a", f32, [2, 3]), vi("b", f32, [3])], y, opset=6)
    # Range over uint64 values past 2^63: the kernel stored them through a negative double
    u64 = TensorProto.UINT64
    s["range-uint64"] = model(
        [helper.make_node("Range", ["s", "l", "d"], ["y"])], [], [vi("y", u64, None)],
        [const("s", 2**63 + 5, np.uint64), const("l", 2**63 + 8, np.uint64),
         const("d", 1, np.uint64)])
    return s


def attr_list_type():
    """A ConstantOfShape whose attribute says TENSORS but holds strings (fuzz_onnx's first finding
    after the audit: the IR verifier indexed the missing tensor list)."""
    a = onnx.AttributeProto(name="value", type=onnx.AttributeProto.TENSORS, strings=[b"\0\0\0@"])
    n = helper.make_node("ConstantOfShape", ["s"], ["y"])
    n.attribute.append(a)
    return model([n], [], [vi("y", TensorProto.FLOAT, None)], [const("s", [2])])


def pool_no_input(op):
    """A pooling node without its input X (fuzz_onnx's second finding after the audit: the
    pooling rules read X before asking whether it is there)."""
    n = helper.make_node(op, [], ["y"], **({"kernel_shape": [1]} if op == "MaxPool" else {}))
    return model([n], [], [vi("y", TensorProto.FLOAT, None)])


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for name, data in sorted(seeds().items()):
        (OUT / f"regress-shape-{name}.onnx").write_bytes(data)
        onnx.load_from_string(data)  # well-formed protobuf
    (OUT / "regress-attr-list-type.onnx").write_bytes(attr_list_type())
    (OUT / "regress-maxpool-no-input.onnx").write_bytes(pool_no_input("MaxPool"))
    (OUT / "regress-globalpool-no-input.onnx").write_bytes(pool_no_input("GlobalAveragePool"))
    print(f"{len(seeds()) + 3} seeds in {OUT}")


if __name__ == "__main__":
    main()
