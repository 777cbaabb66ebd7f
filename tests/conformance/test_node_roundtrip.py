"""Every model of the ONNX backend test data shipped in the onnx wheel round-trips through
`ulc convert`:

  (a) `ulc convert model.onnx -o OUT.onnx` exits 0 (and no sanitizer report on stderr);
  (b) OUT is the same model: parsed by onnx and re-serialized deterministically, it is
      byte-identical to the original (every field, doc string and unknown field survives);
  (c) `ulc convert OUT.onnx -o OUT2.onnx` works too and OUT2 is the same model as OUT (and the
      same bytes: import -> export -> import -> export is stable);
  (d) onnx.checker's full check passes on OUT whenever it passes on the original; where the
      original itself fails it, OUT fails with the same error text. Those originals are
      collected and their count is printed in the terminal summary (data, not a skip).

test_node_roundtrip covers backend/test/data/node (one test per model, id = the test directory
name); test_other_roundtrip covers the other model suites (simple, pytorch-converted,
pytorch-operator, light). A missing or empty data directory fails the run rather than skipping.
"""
from pathlib import Path

import onnx
import pytest

from conftest import run_ulc

DATA = Path(onnx.__file__).resolve().parent / "backend" / "test" / "data"
NODE = DATA / "node"
OTHER_SUITES = ["simple", "pytorch-converted", "pytorch-operator", "light"]


def _node_models():
    return sorted(NODE.glob("*/model.onnx")) if NODE.is_dir() else []


def _other_models():
    found = []
    for suite in OTHER_SUITES:
        d = DATA / suite
        if d.is_dir():
            # test_*/model.onnx in most suites; `light` keeps light_*.onnx files at its top level
            found += sorted(d.glob("*/model.onnx")) + sorted(d.glob("*.onnx"))
    return found


def _params(models, id_of, what):
    if not models:
        # An empty parameter list would make pytest *skip*; missing data must fail instead.
        return [pytest.param(None, id=f"NO-DATA-{what}")]
    return [pytest.param(m, id=id_of(m)) for m in models]


def _node_id(p):
    return p.parent.name


def _other_id(p):
    return f"{p.parent.name}/{p.stem}" if p.name != "model.onnx" else \
        f"{p.parent.parent.name}/{p.parent.name}"


class _Summary:
    """Counts what the round trips saw; printed once at the end of the pytest run."""

    def __init__(self):
        self.models = 0
        self.orig_fails_checker = {}  # id -> error text

    def pytest_terminal_summary(self, terminalreporter):
        tr = terminalreporter
        tr.write_sep("-", "ulc conformance: ONNX backend test data")
        tr.write_line(f"models round-tripped: {self.models}; originals failing "
                      f"onnx.checker full_check (output must fail identically): "
                      f"{len(self.orig_fails_checker)}")
        for mid, err in sorted(self.orig_fails_checker.items()):
            tr.write_line(f"  {mid}: {err.splitlines()[0][:160]}")


@pytest.fixture(scope="module")
def summary(request):
    s = _Summary()
    request.config.pluginmanager.register(s, "ulc-conformance-summary")
    return s


def _load(path):
    return onnx.load(str(path))


def _full_check(path):
    try:
        onnx.checker.check_model(str(path), full_check=True)
        return None
    except Exception as e:  # the checker raises several exception types
        return f"{type(e).__name__}: {e}".replace(str(path), "MODEL")


def _first_difference(a, b, where="model"):
    """Names the first field where two protobuf messages differ (for a readable failure)."""
    fa = {f.name: v for f, v in a.ListFields()}
    fb = {f.name: v for f, v in b.ListFields()}
    for name in sorted(set(fa) | set(fb)):
        va, vb = fa.get(name), fb.get(name)
        if va == vb:
            continue
        path = f"{where}.{name}"
        if va is None or vb is None:
            return f"{path}: present only in the {'output' if va is None else 'original'}"
        if hasattr(va, "ListFields"):
            return _first_difference(va, vb, path)
        if isinstance(va, (list, tuple)) or hasattr(va, "__len__") and not isinstance(va, (str, bytes)):
            va, vb = list(va), list(vb)
            if len(va) != len(vb):
                return f"{path}: {len(va)} entries in the original, {len(vb)} in the output"
            for i, (x, y) in enumerate(zip(va, vb)):
                if x != y:
                    if hasattr(x, "ListFields"):
                        return _first_difference(x, y, f"{path}[{i}]")
                    return f"{path}[{i}]: {x!r:.80} != {y!r:.80}"
        return f"{path}: {va!r:.80} != {vb!r:.80}"
    unknown_a, unknown_b = a.SerializeToString(deterministic=True), b.SerializeToString(deterministic=True)
    return f"{where}: unknown fields differ ({len(unknown_a)} vs {len(unknown_b)} bytes)"


def _convert(src, dst):
    r = run_ulc("convert", src, "-o", dst)
    assert r.returncode == 0, f"ulc convert {src} exited {r.returncode}: {r.stderr}"
    assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr
    assert dst.is_file(), f"ulc exited 0 but wrote no {dst}"


def _roundtrip(model, tmp_path, summary, mid):
    assert model is not None, f"ONNX backend test data missing or empty under {DATA}"
    summary.models += 1
    orig = _load(model)
    orig_bytes = orig.SerializeToString(deterministic=True)

    # (a) + (b)
    out = tmp_path / "OUT.onnx"
    _convert(model, out)
    first = _load(out)
    first_bytes = first.SerializeToString(deterministic=True)
    assert first_bytes == orig_bytes, f"ulc changed the model: {_first_difference(orig, first)}"

    # (c)
    out2 = tmp_path / "OUT2.onnx"
    _convert(out, out2)
    second = _load(out2)
    assert second.SerializeToString(deterministic=True) == first_bytes, \
        f"second round trip changed the model: {_first_difference(first, second)}"
    assert out2.read_bytes() == out.read_bytes(), "second round trip is not byte-identical"

    # (d)
    orig_err = _full_check(model)
    out_err = _full_check(out)
    if orig_err is None:
        assert out_err is None, f"onnx.checker rejects ulc's output: {out_err}"
    else:
        summary.orig_fails_checker[mid] = orig_err
        assert out_err == orig_err, \
            f"original fails full_check with {orig_err!r}, ulc's output with {out_err!r}"


@pytest.mark.parametrize("model", _params(_node_models(), _node_id, "node"))
def test_node_roundtrip(model, tmp_path, summary):
    _roundtrip(model, tmp_path, summary, f"node/{model.parent.name}" if model else None)


@pytest.mark.parametrize("model", _params(_other_models(), _other_id, "other-suites"))
def test_other_roundtrip(model, tmp_path, summary):
    _roundtrip(model, tmp_path, summary, _other_id(model) if model else None)


def test_node_data_is_complete():
    """The wheel ships >1000 node models; far fewer means the data was stripped or moved."""
    n = len(_node_models())
    assert n > 1000, f"only {n} models under {NODE}"
