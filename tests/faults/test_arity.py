"""Input and output counts against the op's schema (ir/arity.def, issue 16 item 5): a node
without a required input or output, or with more than its op takes, is refused at import (exit
2, one line naming the file, the node and the count) — the class of fuzz_onnx findings where a
shape rule read an input slot the node did not have. onnx.checker refuses the same models."""
import onnx
import pytest
from onnx import TensorProto, helper

from conftest import run_ulc


def model(node, inputs=("x",), outputs=("y",), opset=17):
    nodes = [node]
    if not node.output:  # the graph still needs an output: a node of its own makes it
        nodes.append(helper.make_node("Relu", ["x"], ["y"], name="other"))
    g = helper.make_graph(nodes, "g",
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 1, 4, 4])
                           for n in inputs],
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, None)
                           for n in outputs])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


CASES = {
    "maxpool-no-input": (helper.make_node("MaxPool", [], ["y"], name="p", kernel_shape=[2, 2]),
                         (), "input 0 is missing"),
    "conv-one-input": (helper.make_node("Conv", ["x"], ["y"], name="c"), ("x",),
                       "input 1 is missing"),
    "relu-two-inputs": (helper.make_node("Relu", ["x", "x"], ["y"], name="r"), ("x",),
                        "2 inputs, but Relu at opset 17 takes at most 1"),
    "relu-two-outputs": (helper.make_node("Relu", ["x"], ["y", "z"], name="r"), ("x",),
                         "2 outputs, but Relu at opset 17 has at most 1"),
    "slice-no-output": (helper.make_node("Slice", ["x", "x", "x"], [], name="s"), ("x",),
                        "output 0 is missing"),
    "add-empty-second": (helper.make_node("Add", ["x", ""], ["y"], name="a"), ("x",),
                         "input 1 is missing"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_arity_refused(tmp_path, case):
    node, inputs, needle = CASES[case]
    m = model(node, inputs=inputs, outputs=node.output or ("y",))
    path = tmp_path / "m.onnx"
    onnx.save(m, path)
    with pytest.raises(onnx.checker.ValidationError):
        onnx.checker.check_model(m)
    r = run_ulc("convert", path, "-o", tmp_path / "out.onnx")
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ulc: error: ") and str(path) in lines[0], r.stderr
    assert f"node '{node.name}'" in lines[0] and needle in lines[0], r.stderr
    assert not (tmp_path / "out.onnx").exists()


def test_optional_inputs_may_be_left_out(tmp_path):
    """Clip's min and max are optional: an empty name for min with max given is fine."""
    g = helper.make_graph([helper.make_node("Clip", ["x", "", "hi"], ["y"], name="c")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
                          [helper.make_tensor("hi", TensorProto.FLOAT, [], [1.0])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(m)
    path = tmp_path / "m.onnx"
    onnx.save(m, path)
    r = run_ulc("convert", path, "-o", tmp_path / "out.onnx")
    assert r.returncode == 0, r.stderr
