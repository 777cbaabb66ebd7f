"""`specialize` + `cleanup` on what real exporters and ulc's HF builders write: every fixture of
test_runtime_models, pinned to one of its test cases' shapes, keeps no Shape node, declares the
pinned input shapes, passes onnx.checker, and gives the same outputs as the original in
onnxruntime (≤ 1e-5 relative) and in ulc's runtime."""
import numpy as np
import onnx
import pytest

from conftest import run_ulc
from test_runtime_models import (CASES, _model_path, exported, hf_fixtures,  # noqa: F401 (fixtures)
                                 rel_error, run_ort, run_ulc_model)

# one case per model (the HF directories are covered through their ONNX export)
PARAMS = [(name, cases[-1]) for name, cases in CASES.items()
          if name != "digits_resnet.onnx"]


@pytest.mark.parametrize("name,case", PARAMS, ids=[p[0] for p in PARAMS])
def test_specialized_export_runs_the_same(name, case, exported, hf_fixtures, tmp_path):
    cid, make = case
    src = _model_path(name, "onnx", exported, hf_fixtures, tmp_path)
    feeds = make(np.random.default_rng(7))
    shapes = "|".join(f"{k}:{'x'.join(map(str, v.shape))}" for k, v in feeds.items())
    out = tmp_path / "spec.onnx"
    r = run_ulc("convert", src, "-o", out, "--passes", f"specialize{{shapes={shapes}}},cleanup",
                "--verify-each")
    assert r.returncode == 0, r.stderr
    m = onnx.load(str(out))
    onnx.checker.check_model(m, full_check=True)
    ops = [n.op_type for n in m.graph.node]
    assert "Shape" not in ops, ops
    before = len(onnx.load(str(src), load_external_data=False).graph.node)
    assert len(ops) <= before
    for i in m.graph.input:
        if i.name in feeds:
            assert [d.dim_value for d in i.type.tensor_type.shape.dim] == list(feeds[i.name].shape)
    names, ref = run_ort(src, feeds)
    names2, got = run_ort(out, feeds)
    assert names == names2
    for n, a, b in zip(names, got, ref):
        assert rel_error(a, b) <= 1e-5, (name, cid, n, rel_error(a, b))
    mine = run_ulc_model(out, feeds, tmp_path)
    for n, b in zip(names, ref):
        assert rel_error(mine[n], b) <= 1e-4, (name, cid, n)
