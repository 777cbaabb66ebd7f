"""Pass pipelines from the CLI (docs/cli.md, `--passes`): the parser's errors, specialize
(pinned shapes, inferred shapes recorded, Shape chains folded) and cleanup (constant folding,
Identity bypass, dead nodes), checked by running the results in onnxruntime."""
import io

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from conftest import run_ulc

EXIT_USAGE, EXIT_INPUT = 1, 2


def ort_run(path, feeds):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


class Flatten(torch.nn.Module):
    """A conv net whose export holds Shape → Gather → Unsqueeze → Concat → Reshape chains."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4 * 8 * 8, 5)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        h = h.reshape(h.shape[0], h.shape[1] * h.shape[2] * h.shape[3])
        return self.fc(h)


@pytest.fixture(scope="module")
def torch_model(tmp_path_factory):
    torch.manual_seed(0)
    m = Flatten().eval()
    p = tmp_path_factory.mktemp("tm") / "flatten.onnx"
    torch.onnx.export(m, torch.randn(2, 3, 8, 8), str(p), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=17)
    ops = [n.op_type for n in onnx.load(str(p)).graph.node]
    assert "Shape" in ops and "Reshape" in ops, ops  # the export has the chain under test
    return p


def ops_of(path):
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def test_specialize_pins_shapes_and_folds_shape_chains(tmp_path, torch_model):
    out = tmp_path / "s.onnx"
    run_ulc("convert", torch_model, "-o", out, "--passes", "specialize{batch=3},cleanup",
            "--verify-each", check=True)
    m = onnx.load(str(out))
    onnx.checker.check_model(m, full_check=True)
    ops = ops_of(out)
    for gone in ("Shape", "Gather", "Unsqueeze", "Concat"):
        assert gone not in ops, ops
    assert ops.count("Conv") == 1 and ops.count("Gemm") + ops.count("MatMul") == 1
    dims = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [3, 3, 8, 8]
    # every intermediate got its inferred shape
    shapes = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim] for vi in m.graph.value_info}
    assert [3, 4, 8, 8] in shapes.values()
    x = np.random.default_rng(0).standard_normal((3, 3, 8, 8)).astype(np.float32)
    (a,) = ort_run(torch_model, {"x": x})
    (b,) = ort_run(out, {"x": x})
    np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)


def test_specialize_by_dim_name_and_shapes(tmp_path, torch_model):
    out = tmp_path / "d.onnx"
    run_ulc("convert", torch_model, "-o", out, "--passes", "specialize{dims=batch:5}", check=True)
    assert [d.dim_value for d in onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim] == [5, 3, 8, 8]
    out2 = tmp_path / "s.onnx"
    run_ulc("convert", torch_model, "-o", out2, "--passes", "specialize{shapes=x:1x3x8x8}", check=True)
    assert [d.dim_value for d in onnx.load(str(out2)).graph.input[0].type.tensor_type.shape.dim] == [1, 3, 8, 8]


def test_specialize_errors(tmp_path, torch_model):
    out = tmp_path / "e.onnx"
    cases = [
        ("specialize", "dim 0 of input 'x' (batch) is not pinned"),
        ("specialize{dims=nope:3}", "names 'nope', which is no symbolic dim"),
        ("specialize{shapes=y:1x3x8x8}", "names 'y', which is no graph input"),
        ("specialize{shapes=x:1x3x8}", "has rank 4, the shape given has 3 dims"),
        ("specialize{shapes=x:1x4x8x8}", "fixes dim 1 to 3"),
        ("specialize{batch=two}", "batch=two: expected an integer"),
        ("specialize{shapes=x:1x3x9x9}", "fixes dim 2 to 8, the shape given says 9"),
    ]
    for pipeline, msg in cases:
        r = run_ulc("convert", torch_model, "-o", out, "--passes", pipeline)
        assert r.returncode in (EXIT_USAGE, EXIT_INPUT), (pipeline, r.returncode, r.stderr)
        assert msg in r.stderr, (pipeline, r.stderr)
        assert not out.exists()


@pytest.mark.parametrize("pipeline,msg", [
    ("nosuchpass", "unknown pass 'nosuchpass' (passes: specialize, cleanup"),
    ("cleanup{bogus=1}", "pass cleanup: unknown option 'bogus' (options: limit)"),
    ("cleanup{limit=1", "are not closed with '}'"),
    ("cleanup{limit}", "option 'limit' has no value"),
    ("cleanup{limit=1,limit=2}", "option 'limit' given twice"),
    ("cleanup,,cleanup", "empty pass name"),
    ("", "empty pass name"),
    ("cleanup{limit=-1}", "expected an integer in [0,"),
    ("cleanup x", "unknown pass 'cleanup x'"),
    ("cleanup{limit=1} x", "unexpected 'x' after pass 'cleanup'"),
])
def test_pipeline_errors(tmp_path, torch_model, pipeline, msg):
    out = tmp_path / "o.onnx"
    r = run_ulc("convert", torch_model, "-o", out, "--passes", pipeline)
    assert r.returncode == EXIT_USAGE, r.stderr
    assert msg in r.stderr, r.stderr
    assert not out.exists()


def test_print_ir_after_and_needs_passes(tmp_path, torch_model):
    out = tmp_path / "o.onnx"
    r = run_ulc("convert", torch_model, "-o", out, "--passes", "specialize{batch=1},cleanup",
                "--print-ir-after=specialize", check=True)
    assert "IR after specialize" in r.stdout and "IR after cleanup" not in r.stdout
    r = run_ulc("convert", torch_model, "-o", out, "--passes", "cleanup", "--print-ir-after", "all", check=True)
    assert "IR after cleanup" in r.stdout
    r = run_ulc("convert", torch_model, "-o", out, "--verify-each")
    assert r.returncode == EXIT_USAGE and "need --passes" in r.stderr
    r = run_ulc("convert", torch_model, "-o", out, "--passes", "cleanup", "--print-ir-after=nope")
    assert r.returncode == EXIT_USAGE and "unknown pass 'nope'" in r.stderr


def folding_model():
    """x + ((c1 * c2) reshaped by a Shape chain of a constant) through Identity, plus a dead branch."""
    c1 = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "c1")
    c2 = numpy_helper.from_array(np.full((2, 3), 2.0, np.float32), "c2")
    w = numpy_helper.from_array(np.ones((6,), np.float32), "w_unused")  # a weight: must stay
    nodes = [
        helper.make_node("Mul", ["c1", "c2"], ["p"], name="mul"),
        helper.make_node("Constant", [], ["shp"], name="const", value=numpy_helper.from_array(
            np.array([6], np.int64))),
        helper.make_node("Reshape", ["p", "shp"], ["p6"], name="reshape"),
        helper.make_node("Identity", ["p6"], ["p6i"], name="ident"),
        helper.make_node("Add", ["x", "p6i"], ["y"], name="add"),
        helper.make_node("Neg", ["x"], ["dead"], name="dead_neg"),
    ]
    g = helper.make_graph(nodes, "fold", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 6])], [c1, c2, w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_cleanup_folds_bypasses_and_prunes(tmp_path):
    src = tmp_path / "f.onnx"
    onnx.save(folding_model(), str(src))
    out = tmp_path / "c.onnx"
    run_ulc("convert", src, "-o", out, "--passes", "cleanup", "--verify-each", check=True)
    m = onnx.load(str(out))
    onnx.checker.check_model(m, full_check=True)
    assert [n.op_type for n in m.graph.node] == ["Add"]
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    assert "w_unused" in inits and "c1" in inits  # model weights are never dropped
    folded = [v for k, v in inits.items() if k not in ("c1", "c2", "w_unused")]
    assert len(folded) == 1
    np.testing.assert_array_equal(folded[0], np.arange(6, dtype=np.float32) * 2)
    x = np.random.default_rng(1).standard_normal((4, 6)).astype(np.float32)
    np.testing.assert_allclose(ort_run(out, {"x": x})[0], ort_run(src, {"x": x})[0], rtol=0, atol=0)


def test_cleanup_limit_keeps_large_results(tmp_path):
    src = tmp_path / "f.onnx"
    onnx.save(folding_model(), str(src))
    out = tmp_path / "c.onnx"
    run_ulc("convert", src, "-o", out, "--passes", "cleanup{limit=8}", check=True)
    ops = ops_of(out)
    assert "Mul" in ops and "Reshape" in ops  # 24-byte results stay computed
    assert "Neg" not in ops and "Identity" not in ops
