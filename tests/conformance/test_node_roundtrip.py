"""Every model of the ONNX backend test data (node, simple, pytorch-converted, pytorch-operator,
light — as shipped in the onnx wheel) round-trips through `ulc convert`:

  (a) ulc exits 0;
  (b) the output is the same model: parsed by onnx and re-serialized deterministically, it is
      byte-identical to the original (every field, doc string and unknown field survives);
  (c) converting the output again gives the same model (import -> export -> import is stable);
  (d) onnx.checker's full check passes on the output whenever it passes on the original, and
      fails with the same message where the original itself fails.
"""
import os
from pathlib import Path

import onnx
import pytest

from conftest import run_ulc

DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"
SUITES = ["node", "simple", "pytorch-converted", "pytorch-operator", "light"]


def _models():
    found = []
    for suite in SUITES:
        d = DATA / suite
        if d.is_dir():
            found += sorted(d.glob("*/model.onnx"))
    return found


MODELS = _models()


def test_backend_data_present():
    node = list((DATA / "node").glob("*/model.onnx"))
    assert len(node) > 1000, f"ONNX backend node test data missing under {DATA / 'node'}"


def _canonical(path):
    return onnx.load(str(path), load_external_data=False).SerializeToString(deterministic=True)


def _full_check(path):
    try:
        onnx.checker.check_model(str(path), full_check=True)
        return None
    except Exception as e:  # the checker raises several exception types
        return f"{type(e).__name__}: {e}".replace(str(path), "MODEL")


@pytest.mark.parametrize("model", MODELS, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}")
def test_roundtrip(model, tmp_path):
    out = tmp_path / "out.onnx"
    r = run_ulc("convert", model, "-o", out)
    assert r.returncode == 0, r.stderr
    assert _canonical(out) == _canonical(model), "ulc changed the model"

    out2 = tmp_path / "out2.onnx"
    r = run_ulc("convert", out, "-o", out2)
    assert r.returncode == 0, r.stderr
    assert out2.read_bytes() == out.read_bytes(), "a second round trip is not byte-identical"

    orig_err, out_err = _full_check(model), _full_check(out)
    if orig_err is None:
        assert out_err is None, f"onnx.checker rejects ulc's output: {out_err}"
    else:
        assert out_err == orig_err, f"original fails the checker with {orig_err!r}, output with {out_err!r}"
