"""Whole models through ulc's CPU runtime (`ulc run`), against onnxruntime's CPU provider on the
same file and the same inputs:

  - the exporter fixtures (tests/fixtures/gen_exporters.py): torchvision ResNet-18 (opsets 13 and
    17, and re-saved with external data), torchvision ViT (opsets 13 and 17), transformers GPT-2
    and CLIP; models/digits/digits_resnet.onnx; and ulc's own graphs of the Hugging Face
    checkpoints in tests/fixtures/gen_hf.py (GPT-2, ViT, CLIP, ResNet), as `ulc convert HF_DIR -o
    model.onnx` writes them, and read straight from the HF directory;
  - at batch sizes (and sequence lengths, image sizes) other than the exported ones, on every
    input dim the model declares symbolic — each case checks the dims it changes are symbolic
    and that fixed dims keep their size. Text inputs get right-padded attention masks.
    (Every fixture has a symbolic batch; GPT-2 and CLIP symbolic sequence lengths; HF ResNet
    symbolic height and width; the ViTs fix their image size, so that is kept.)

Agreement: for every output, the same dtype and shape, finite where onnxruntime is finite, and

    rel = max |ulc - ort| / max(max |ort|, 1e-6)   <= 1e-4

(errors measured against the output's own scale: logits and embeddings have no meaningful
per-element relative error near zero; the 1e-6 floor keeps an all-zero output from dividing by
zero). The measured errors are printed in the terminal summary.

Also: `ulc eval` on models/digits gives onnxruntime's accuracy, per-class accuracy and confusion
matrix on both splits; and `ulc run` refuses bad inputs — a missing input tensor, a wrong dtype,
a wrong rank or fixed dim, an unknown tensor, an op the backend does not run — with exit code 2
or 4, a message naming the input or node, and no output file (an existing one untouched).
"""
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from safetensors.numpy import load_file, save_file

from conftest import ROOT, run_ulc

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
import gen_exporters  # noqa: E402
import gen_hf  # noqa: E402

DIGITS = ROOT / "models" / "digits"
REL_TOL = 1e-4
EXIT_INPUT, EXIT_UNSUPPORTED = 2, 4

_errors = {}  # "model / case / output" -> rel, for the summary


class _Summary:
    """Prints the measured errors once at the end of the pytest run."""

    def pytest_terminal_summary(self, terminalreporter):
        if _errors:
            terminalreporter.write_sep("-", "ulc run vs onnxruntime: relative error per output")
            for k, v in sorted(_errors.items()):
                terminalreporter.write_line(f"  {k}: {v:.2e}")


@pytest.fixture(scope="session", autouse=True)
def _report(request):
    if not request.config.pluginmanager.has_plugin("ulc-runtime-summary"):
        request.config.pluginmanager.register(_Summary(), "ulc-runtime-summary")


@pytest.fixture(scope="session")
def exported(fixture_dir):
    return gen_exporters.generate(fixture_dir)


@pytest.fixture(scope="session")
def hf_fixtures(fixture_dir):
    return gen_hf.generate(fixture_dir)


# ---------------------------------------------------------------- inputs

def _mask(lengths, t):
    return (np.arange(t)[None, :] < np.asarray(lengths)[:, None]).astype(np.int64)


def _images(rng, n, c, h, w):
    return {"input": rng.standard_normal((n, c, h, w)).astype(np.float32)}


def _text(rng, n, t, vocab, ids="input_ids"):
    return {ids: rng.integers(0, vocab, (n, t)).astype(np.int64),
            "attention_mask": _mask([t - (i % 3) for i in range(n)], t)}


def _clip_feeds(rng, tb, ib, t, vocab, eos, size):
    """CLIP text rows each carry an end-of-text token (where the text pools), padded after it."""
    ids = rng.integers(0, eos, (tb, t)).astype(np.int64)
    mask = np.ones((tb, t), np.int64)
    for r in range(tb):
        end = t - 1 - (r % 3)
        ids[r, end] = eos
        mask[r, end + 1:] = 0
    return {"input_ids": ids, "pixel_values": rng.standard_normal((ib, 3, size, size)).astype(np.float32),
            "attention_mask": mask}


# name -> [(case id, feeds(rng))]; the exported sizes are in gen_exporters (images batch 1; GPT-2
# 1 x 8; CLIP 2 texts x 7 tokens, 1 image) and gen_hf (whatever the builder declares)
CASES = {
    "resnet18_op13.onnx": [("b2", lambda r: _images(r, 2, 3, 64, 64)),
                           ("b3", lambda r: _images(r, 3, 3, 64, 64))],
    "resnet18_op17.onnx": [("b3", lambda r: _images(r, 3, 3, 64, 64))],
    "resnet18_ext.onnx": [("b2", lambda r: _images(r, 2, 3, 64, 64))],
    "vit_op13.onnx": [("b2", lambda r: _images(r, 2, 3, 32, 32)),
                      ("b3", lambda r: _images(r, 3, 3, 32, 32))],
    "vit_op17.onnx": [("b3", lambda r: _images(r, 3, 3, 32, 32))],
    "gpt2_tiny.onnx": [("b1_t5", lambda r: _text(r, 1, 5, 1000)),
                       ("b3_t11", lambda r: _text(r, 3, 11, 1000))],
    "clip_tiny.onnx": [("t4x5_i3", lambda r: gen_exporters.feeds("clip_tiny")),
                       ("t1x9_i2", lambda r: {
                           "input_ids": r.integers(0, 500, (1, 9)).astype(np.int64),
                           "pixel_values": r.standard_normal((2, 3, 32, 32)).astype(np.float32),
                           "attention_mask": np.ones((1, 9), np.int64)})],
    "digits_resnet.onnx": [("b0", lambda r: {"input": np.zeros((0, 1, 8, 8), np.float32)}),
                           ("b1", lambda r: {"input": r.random((1, 1, 8, 8), dtype=np.float32)}),
                           ("b7", lambda r: {"input": r.random((7, 1, 8, 8), dtype=np.float32)})],
    "hf_gpt2": [("b1_t5", lambda r: _text(r, 1, 5, 300)),
                ("b3_t11", lambda r: _text(r, 3, 11, 300))],
    "hf_vit": [("b1", lambda r: {"pixel_values": r.standard_normal((1, 3, 16, 16)).astype(np.float32)}),
               ("b3", lambda r: {"pixel_values": r.standard_normal((3, 3, 16, 16)).astype(np.float32)})],
    "hf_clip": [("t1x5_i1", lambda r: _clip_feeds(r, 1, 1, 5, 99, 97, 16)),
                ("t3x9_i2", lambda r: _clip_feeds(r, 3, 2, 9, 99, 97, 16))],
    "hf_resnet": [("b1_32x32", lambda r: {"pixel_values": r.standard_normal((1, 3, 32, 32)).astype(np.float32)}),
                  ("b3_40x56", lambda r: {"pixel_values": r.standard_normal((3, 3, 40, 56)).astype(np.float32)})],
}
EXPORTED = [n for n in CASES if n.endswith(".onnx") and n != "digits_resnet.onnx"]
assert sorted(EXPORTED) == sorted(gen_exporters.NAMES), "a fixture of gen_exporters is not tested here"
assert sorted(n for n in CASES if n.startswith("hf_")) == sorted(gen_hf.NAMES)


def _params():
    out = []
    for name, cases in CASES.items():
        forms = ["onnx", "dir"] if name.startswith("hf_") else ["onnx"]
        for form in forms:
            for cid, _ in cases:
                out.append(pytest.param(name, form, cid, id=f"{name}-{form}-{cid}"
                                        if form == "dir" else f"{name}-{cid}"))
    return out


def _model_path(name, form, exported, hf_fixtures, tmp_path):
    """The model file (or HF directory) to run."""
    if name == "digits_resnet.onnx":
        return DIGITS / name
    if not name.startswith("hf_"):
        return exported / name
    d = gen_hf.hf_dir(hf_fixtures, name, tmp_path / "hf")
    if form == "dir":
        return d
    out = tmp_path / "model.onnx"
    r = run_ulc("convert", d, "-o", out)
    assert r.returncode == 0, r.stderr
    return out


def _check_dims(model, feeds):
    """The fed shapes differ from the declared ones only where the declared dim is symbolic."""
    inits = {t.name for t in model.graph.initializer}
    declared = {i.name: i for i in model.graph.input if i.name not in inits}
    assert set(feeds) == set(declared), f"feeds {sorted(feeds)}, model inputs {sorted(declared)}"
    for name, arr in feeds.items():
        tt = declared[name].type.tensor_type
        assert tt.HasField("shape"), f"input {name} has no declared shape"
        dims = tt.shape.dim
        assert len(dims) == arr.ndim, f"input {name}: rank {arr.ndim}, declared {len(dims)}"
        for k, (d, n) in enumerate(zip(dims, arr.shape)):
            if d.HasField("dim_value"):
                assert d.dim_value == n, (f"input {name} dim {k} is fixed at {d.dim_value}; the "
                                          f"case feeds {n}")
            else:
                assert d.HasField("dim_param"), f"input {name} dim {k} is unknown, not symbolic"


def run_ort(path, feeds):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return [o.name for o in sess.get_outputs()], sess.run(None, feeds)


def run_ulc_model(path, feeds, tmp_path, *extra):
    inp, out = tmp_path / "in.safetensors", tmp_path / "out.safetensors"
    save_file(feeds, str(inp))
    r = run_ulc("run", path, "--input", inp, "-o", out, *extra)
    assert r.returncode == 0, f"ulc run exited {r.returncode}: {r.stderr}"
    assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr
    return load_file(str(out))


def rel_error(got, ref):
    """max |got - ref| / max(max |ref|, 1e-6), in float64."""
    g, r = got.astype(np.float64), ref.astype(np.float64)
    return float(np.abs(g - r).max() / max(np.abs(r).max(), 1e-6)) if r.size else 0.0


def assert_matches(label, names, ref, got):
    assert sorted(got) == sorted(names), f"{label}: ulc wrote {sorted(got)}, expected {names}"
    for name, r in zip(names, ref):
        g = got[name]
        assert g.dtype == r.dtype, f"{label}: {name} is {g.dtype}, onnxruntime {r.dtype}"
        assert g.shape == r.shape, f"{label}: {name} has shape {g.shape}, onnxruntime {r.shape}"
        assert np.isfinite(r).all(), f"{label}: onnxruntime's {name} is not finite"
        if r.size > 1:  # a model whose output is constant would test nothing
            assert np.ptp(r) > 0, f"{label}: onnxruntime's {name} is constant ({r.flat[0]})"
        assert np.isfinite(g).all(), f"{label}: ulc's {name} has non-finite values"
        err = rel_error(g, r)
        _errors[f"{label} / {name}"] = err
        assert err <= REL_TOL, f"{label}: {name} off onnxruntime by {err:.3g} relative"


@pytest.mark.parametrize("name,form,cid", _params())
def test_matches_onnxruntime(name, form, cid, exported, hf_fixtures, tmp_path):
    feeds = dict(CASES[name])[cid](np.random.default_rng(7))
    path = _model_path(name, form, exported, hf_fixtures, tmp_path)
    # onnxruntime runs the ONNX form (for an HF directory: ulc's conversion of it)
    onnx_path = path if form == "onnx" else _model_path(name, "onnx", exported, hf_fixtures,
                                                         tmp_path / "conv")
    model = onnx.load(str(onnx_path), load_external_data=False)
    _check_dims(model, feeds)
    names, ref = run_ort(onnx_path, feeds)
    got = run_ulc_model(path, feeds, tmp_path)
    assert_matches(f"{name}{'/dir' if form == 'dir' else ''} {cid}", names, ref, got)


def test_threads_agree(exported, tmp_path):
    """--threads 1 and --threads 2 give onnxruntime's outputs too (different work splits)."""
    feeds = _text(np.random.default_rng(3), 2, 7, 1000)
    names, ref = run_ort(exported / "gpt2_tiny.onnx", feeds)
    for t in ("1", "2"):
        got = run_ulc_model(exported / "gpt2_tiny.onnx", feeds, tmp_path, "--threads", t)
        assert_matches(f"gpt2_tiny threads={t}", names, ref, got)


# ---------------------------------------------------------------- ulc eval on the digits

def _ort_eval(split):
    data = load_file(str(DIGITS / f"{split}.safetensors"))
    x, y = data["input"], data["label"]
    _, (logits,) = run_ort(DIGITS / "digits_resnet.onnx", {"input": x})
    pred = logits.argmax(1)
    k = logits.shape[1]
    conf = np.zeros((k, k), np.int64)
    np.add.at(conf, (y, pred), 1)
    return y, pred, conf


@pytest.mark.parametrize("split", ["test", "train"])
def test_eval_digits(split):
    y, pred, conf = _ort_eval(split)
    r = run_ulc("eval", DIGITS / "digits_resnet.onnx", "--data", DIGITS / f"{split}.safetensors",
                "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    n, correct = len(y), int((pred == y).sum())
    assert info["n"] == n and info["correct"] == correct, (info["n"], info["correct"], correct)
    assert abs(info["accuracy"] - correct / n) < 1e-6
    assert np.array_equal(np.asarray(info["confusion"], np.int64), conf)
    assert len(info["per_class"]) == conf.shape[0]
    for c, pc in enumerate(info["per_class"]):
        cn = int(conf[c].sum())
        assert pc["class"] == c and pc["n"] == cn and pc["correct"] == int(conf[c, c])
        assert (pc["accuracy"] is None) if cn == 0 else abs(pc["accuracy"] - conf[c, c] / cn) < 1e-6
    if split == "test":  # models/digits/README.md: 359 of 360
        assert (n, correct) == (360, 359)


def test_eval_digits_text():
    y, pred, conf = _ort_eval("test")
    r = run_ulc("eval", DIGITS / "digits_resnet.onnx", "--data", DIGITS / "test.safetensors")
    assert r.returncode == 0, r.stderr
    correct = int((pred == y).sum())
    assert f"({correct}/{len(y)})" in r.stdout, r.stdout
    assert "confusion" in r.stdout
    # every row of the confusion matrix is printed: "label count count ..."
    rows = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) == conf.shape[1] + 1 and all(p.isdigit() for p in parts):
            rows[int(parts[0])] = [int(p) for p in parts[1:]]
    assert [rows.get(c) for c in range(conf.shape[0])] == conf.tolist(), r.stdout


@pytest.mark.parametrize("batch", ["1", "7", "1000"])
def test_eval_batch_sizes(batch):
    """The accuracy does not depend on how eval batches the data (a last partial batch too)."""
    _, pred, conf = _ort_eval("test")
    r = run_ulc("eval", DIGITS / "digits_resnet.onnx", "--data", DIGITS / "test.safetensors",
                "--json", "--batch", batch)
    assert r.returncode == 0, r.stderr
    assert np.array_equal(np.asarray(json.loads(r.stdout)["confusion"]), conf)


# ---------------------------------------------------------------- bad input

@pytest.fixture
def digits(tmp_path):
    p = tmp_path / "digits.onnx"
    shutil.copy(DIGITS / "digits_resnet.onnx", p)
    return p


def _refused(model, feeds, tmp_path, code, needles, preexisting=False):
    """ulc run refuses: exit `code`, each needle in the one-line message, no output file (and an
    existing one untouched)."""
    inp, out = tmp_path / "bad_in.safetensors", tmp_path / "bad_out.safetensors"
    save_file(feeds, str(inp))
    if preexisting:
        out.write_bytes(b"previous contents")
    r = run_ulc("run", model, "--input", inp, "-o", out)
    assert r.returncode == code, f"exit {r.returncode}, expected {code}: {r.stderr}"
    assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr
    assert r.stderr.startswith("ulc: error: "), r.stderr
    for n in needles:
        assert n in r.stderr, f"{n!r} not in: {r.stderr}"
    if preexisting:
        assert out.read_bytes() == b"previous contents", "a failed run changed the existing output"
    else:
        assert not out.exists(), "a failed run left an output file"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".") or "tmp" in p.name.lower()], \
        f"temporaries left: {list(tmp_path.iterdir())}"
    return r.stderr


X_OK = np.zeros((2, 1, 8, 8), np.float32)


@pytest.mark.parametrize("feeds,needles", [
    pytest.param({"other": X_OK}, ["'input'"], id="missing"),
    pytest.param({}, ["'input'"], id="no_tensors"),
    pytest.param({"input": X_OK.astype(np.float64)}, ["'input'", "f64"], id="wrong_dtype_f64"),
    pytest.param({"input": X_OK.astype(np.int64)}, ["'input'"], id="wrong_dtype_i64"),
    pytest.param({"input": np.zeros((2, 8, 8), np.float32)}, ["'input'"], id="wrong_rank"),
    pytest.param({"input": np.zeros((2, 3, 8, 8), np.float32)}, ["'input'"], id="wrong_fixed_dim"),
    pytest.param({"input": X_OK, "bogus": X_OK}, ["'bogus'"], id="unknown_tensor"),
])
@pytest.mark.parametrize("preexisting", [False, True], ids=["new", "existing"])
def test_bad_inputs(digits, tmp_path, feeds, needles, preexisting):
    _refused(digits, feeds, tmp_path, EXIT_INPUT, needles, preexisting)


def _one_node_model(path, node, opsets):
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets]),
              str(path))
    return path


def test_custom_domain_op_is_unsupported(tmp_path):
    m = _one_node_model(tmp_path / "custom.onnx",
                        helper.make_node("Frobnicate", ["x"], ["y"], name="frob0", domain="com.example"),
                        [("", 17), ("com.example", 1)])
    msg = _refused(m, {"x": np.ones((2, 3), np.float32)}, tmp_path, EXIT_UNSUPPORTED,
                   ["frob0", "Frobnicate"])
    assert "com.example" in msg


def test_unclaimed_default_op_is_unsupported(tmp_path):
    """A default-domain op `ulc ops` does not list is refused naming the node (never a crash)."""
    claimed = set(run_ulc("ops", check=True).stdout.split())
    op = next((o for o in ["Det", "Hardmax", "Round", "Sign", "Softsign", "Selu", "Floor"]
               if o not in claimed), None)
    assert op, "every candidate op is claimed: pick another unclaimed unary op here"
    m = _one_node_model(tmp_path / "unclaimed.onnx",
                        helper.make_node(op, ["x"], ["y"], name="the_node"), [("", 17)])
    _refused(m, {"x": np.ones((2, 3), np.float32)}, tmp_path, EXIT_UNSUPPORTED, ["the_node", op])
