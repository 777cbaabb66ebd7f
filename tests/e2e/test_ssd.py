"""SSD, Selective Synaptic Dampening (methods/ssd.c; Foster et al., AAAI 2024), through the main
command: no training, the diagonal Fisher of every weight on all the training rows (F_D) and on
the forget rows (F_f), each the mean over row batches (file order) of the squared gradient of
the batch's mean cross-entropy; where F_f > alpha * F_D the weight is scaled by
min(lambda * F_D / F_f, 1).

- the dampened weights match a torch computation of that definition on a small MLP (with a
  BatchNorm, whose running statistics are not weights and stay as they were), and on the tiny
  GPT-2 fixture (the next-token cross-entropy over the scored positions); alpha and lambda are
  picked from torch's own Fisher ratios so that some weights are dampened, some selected but
  clamped at 1 and the rest left alone;
- `params` narrows the weights it may touch; a glob that selects nothing is refused before any
  work, naming the glob;
- a float16/bfloat16 checkpoint keeps its dtype, and its result is the float32-widened
  checkpoint's, rounded once (bit for bit);
- on the digits default, class 3: the paper's alpha 10 forgets it and takes most of the retained
  classes with it (this overfit 9,610-weight model's F_D is tiny next to F_f: measured, Df and
  Dft 0 %, Dr 17.8 %, Drt 17.7 %); alpha 150 forgets it and keeps the rest (measured Df and Dft
  0 %, Dr 100 %, Drt 99.69 %, as before);
- the same spec gives the same bytes, at 1 and at 2 threads;
- spec errors (unknown key, alpha <= 0, lambda < 0, training settings, lora) exit 2 and write
  nothing.
"""
import json
import sys

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file, save_file

from conftest import ROOT, run_ulc

sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
import gen_hf  # noqa: E402

DIGITS = ROOT / "models" / "digits"
MODEL = DIGITS / "digits_resnet.onnx"
EXIT_INPUT = 2


# ---- the reference ----------------------------------------------------------------------------

def fisher(loss_of_batch, params, n_rows, batch):
    """Mean over the row batches [0, batch), [batch, 2 batch), ... of the squared gradient of
    loss_of_batch(rows) with respect to params (a dict of float64 leaf tensors)."""
    acc = {k: torch.zeros_like(p) for k, p in params.items()}
    nb = 0
    for at in range(0, n_rows, batch):
        for p in params.values():
            p.grad = None
        loss_of_batch(slice(at, min(at + batch, n_rows))).backward()
        for k, p in params.items():
            acc[k] += p.grad ** 2
        nb += 1
    return {k: a / nb for k, a in acc.items()}


def dampen(w, ff, fd, alpha, lam):
    sel = ff > alpha * fd
    scale = np.where(sel, np.minimum(lam * fd / np.where(sel, ff, 1.0), 1.0), 1.0)
    return w * scale, sel, scale


def pick(ff, fd):
    """alpha and lambda between well-separated neighbours of the F_f / F_D ratios (so that float32
    against float64 cannot move an element across): alpha near the 40 % quantile, lambda near
    the 70 %. Then elements below alpha are left alone, those between are selected but their
    factor clamps at 1, and those above lambda shrink."""
    r = np.sort(np.concatenate([(ff[k] / fd[k]).ravel() for k in ff if np.all(fd[k] > 0)]))
    r = r[np.isfinite(r)]

    def between(q0, q1):
        i0, i1 = int(q0 * len(r)), int(q1 * len(r))
        k = i0 + int(np.argmax(r[i0 + 1:i1 + 1] / r[i0:i1]))
        return float(np.sqrt(r[k] * r[k + 1])), r[k + 1] / r[k]
    (alpha, ga), (lam, gl) = between(0.3, 0.5), between(0.6, 0.8)
    assert ga > 1.001 and gl > 1.001, (ga, gl)  # a gap float32 rounding cannot cross
    return alpha, lam


def forget(tmp_path, model, spec, name="out", threads=2, code=0, out=None):
    sp = tmp_path / f"{name}.json"
    sp.write_text(json.dumps(spec))
    out = out or tmp_path / f"{name}.onnx"
    rep = tmp_path / f"{name}.report.json"
    proc = run_ulc(model, "--forget", sp, "-o", out, "--report", rep, "--threads", threads, "-q")
    assert proc.returncode == code, proc.stderr
    return (json.loads(rep.read_text()) if code == 0 else proc), out


def inits(path):
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


# ---- a small MLP with a BatchNorm ---------------------------------------------------------------

N, IN, HID, C = 50, 5, 7, 3
FORGET_ROWS = [0, 3, 4, 9, 11, 17, 20, 26, 33, 34, 41, 47, 49]
BATCH = 8  # D: 7 batches, the last of 2 rows; Df: 8 + 5


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    d = tmp_path_factory.mktemp("mlp")
    r = np.random.default_rng(1)
    w = {"fc1.weight": r.normal(0, 0.6, (HID, IN)), "fc1.bias": r.normal(0, 0.1, HID),
         "bn.weight": r.uniform(0.5, 1.5, HID), "bn.bias": r.normal(0, 0.1, HID),
         "bn.running_mean": r.normal(0, 0.2, HID), "bn.running_var": r.uniform(0.5, 2, HID),
         "fc2.weight": r.normal(0, 0.6, (C, HID)), "fc2.bias": r.normal(0, 0.1, C)}
    w = {k: v.astype(np.float32) for k, v in w.items()}
    nodes = [helper.make_node("Gemm", ["input", "fc1.weight", "fc1.bias"], ["h"], transB=1),
             helper.make_node("BatchNormalization", ["h", "bn.weight", "bn.bias", "bn.running_mean",
                                                     "bn.running_var"], ["hn"], epsilon=1e-5),
             helper.make_node("Relu", ["hn"], ["a"]),
             helper.make_node("Gemm", ["a", "fc2.weight", "fc2.bias"], ["logits"], transB=1)]
    g = helper.make_graph(nodes, "mlp",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", IN])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", C])],
                          [numpy_helper.from_array(v, k) for k, v in w.items()])
    path = d / "mlp.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    x = r.normal(0, 1, (N, IN)).astype(np.float32)
    y = r.integers(0, C, N).astype(np.int64)
    save_file({"input": x, "label": y}, str(d / "train.safetensors"))
    return path, d / "train.safetensors", w, x, y


def mlp_fishers(w, x, y):
    p = {k: torch.tensor(v, dtype=torch.float64, requires_grad=not k.startswith("bn.running"))
         for k, v in w.items()}
    xt, yt = torch.tensor(x, dtype=torch.float64), torch.tensor(y)

    def loss(xb, yb):
        h = xb @ p["fc1.weight"].T + p["fc1.bias"]
        h = (h - p["bn.running_mean"]) / torch.sqrt(p["bn.running_var"] + 1e-5) * p["bn.weight"] + p["bn.bias"]
        return torch.nn.functional.cross_entropy(torch.relu(h) @ p["fc2.weight"].T + p["fc2.bias"], yb)
    trained = {k: v for k, v in p.items() if v.requires_grad}
    f = np.array(FORGET_ROWS)
    fd = fisher(lambda s: loss(xt[s], yt[s]), trained, N, BATCH)
    ff = fisher(lambda s: loss(xt[f][s], yt[f][s]), trained, len(f), BATCH)
    return ({k: v.numpy() for k, v in ff.items()}, {k: v.numpy() for k, v in fd.items()})


def test_matches_a_torch_reference(tmp_path, mlp):
    path, train, w, x, y = mlp
    ff, fd = mlp_fishers(w, x, y)
    alpha, lam = pick(ff, fd)
    rep, out = forget(tmp_path, path, {"method": "ssd", "data": {"train": str(train)},
                                       "forget": {"indices": FORGET_ROWS},
                                       "train": {"batch_size": BATCH},
                                       "ssd": {"alpha": alpha, "lambda": lam}})
    got = inits(out)
    counts = {"shrunk": 0, "clamped": 0, "kept": 0}
    tensors = 0
    for k in w:
        if k.startswith("bn.running"):  # statistics, not weights: never touched
            assert np.array_equal(got[k], w[k]), k
            continue
        want, sel, scale = dampen(w[k].astype(np.float64), ff[k], fd[k], alpha, lam)
        np.testing.assert_allclose(got[k], want, rtol=2e-6, atol=1e-9, err_msg=k)
        assert np.array_equal(got[k][~sel], w[k][~sel]), k  # bit for bit where not selected
        counts["shrunk"] += int(np.sum(sel & (scale < 1)))
        tensors += bool(np.any(sel & (scale < 1)))
        counts["clamped"] += int(np.sum(sel & (scale == 1)))
        counts["kept"] += int(np.sum(~sel))
    assert all(v > 0 for v in counts.values()), counts
    # two gradient passes: 2 batches of forget rows, then 7 of every row
    assert rep["method"] == "ssd" and rep["train"]["steps"] == 2 + 7
    assert rep["dampened"] == {"weights": counts["shrunk"], "of_weights": sum(counts.values()),
                               "tensors": tensors, "of_tensors": 6}
    assert rep["hyperparameters"]["ssd"] == {"alpha": alpha, "lambda": lam, "params": "*"}
    assert rep["hyperparameters"]["train"] == {"batch_size": BATCH, "seed": 0}


def test_params_narrows_what_it_dampens(tmp_path, mlp):
    path, train, w, x, y = mlp
    ff, fd = mlp_fishers(w, x, y)
    alpha, lam = pick(ff, fd)
    spec = {"method": "ssd", "data": {"train": str(train)}, "forget": {"indices": FORGET_ROWS},
            "train": {"batch_size": BATCH}, "ssd": {"alpha": alpha, "lambda": lam, "params": "fc2.*|bn.w*"}}
    _, out = forget(tmp_path, path, spec)
    got = inits(out)
    for k in w:
        if k in ("fc2.weight", "fc2.bias", "bn.weight"):
            np.testing.assert_allclose(got[k], dampen(w[k].astype(np.float64), ff[k], fd[k], alpha, lam)[0],
                                       rtol=2e-6, atol=1e-9, err_msg=k)
        else:
            assert np.array_equal(got[k], w[k]), k
    # a glob that selects no weight (only running statistics, or nothing) is refused up front
    for globs in ("bn.running_*", "layer9.*"):
        spec["ssd"]["params"] = globs
        proc, out = forget(tmp_path, path, spec, name="none", code=EXIT_INPUT)
        assert f"params '{globs}' matches no" in proc.stderr and not out.exists()
        assert "split" not in proc.stdout  # before any work: nothing was scored


# ---- a text model: next-token cross-entropy --------------------------------------------------------

def test_text_model_matches_transformers(tmp_path, fixture_dir):
    from transformers import GPT2LMHeadModel
    g2 = gen_hf.hf_dir(gen_hf.generate(fixture_dir), "hf_gpt2", tmp_path / "gpt2")
    r = np.random.default_rng(0)
    rows, t, batch, forget_rows = 20, 10, 6, [1, 2, 5, 8, 13, 19]
    ids = r.integers(0, 300, (rows, t)).astype(np.int64)
    mask = np.ones_like(ids)
    for row, n in ((2, 7), (8, 4), (15, 6)):
        mask[row, n:], ids[row, n:] = 0, 0
    save_file({"input_ids": ids, "attention_mask": mask}, str(tmp_path / "t.safetensors"))

    m = GPT2LMHeadModel.from_pretrained(str(g2)).double().eval()
    params = dict(m.named_parameters())  # the tied head is transformer.wte.weight
    labels = np.where(mask == 1, ids, -100)

    def loss_on(sel):
        def f(s):
            i, am, lb = (torch.from_numpy(a[sel][s]) for a in (ids, mask, labels))
            return m(i, attention_mask=am, labels=lb).loss  # mean over the scored positions
        return f
    fr = np.array(forget_rows)
    fd = {k: v.detach().numpy() for k, v in fisher(loss_on(np.arange(rows)), params, rows, batch).items()}
    ff = {k: v.detach().numpy() for k, v in fisher(loss_on(fr), params, len(fr), batch).items()}
    alpha, lam = 10.0, 1.0
    spec = {"method": "ssd", "data": {"train": "t.safetensors"}, "forget": {"indices": forget_rows},
            "train": {"batch_size": batch}, "ssd": {"alpha": alpha, "lambda": lam}}
    forget(tmp_path, g2, spec, out=f"{tmp_path / 'out'}/")
    got = load_file(str(tmp_path / "out" / "model.safetensors"))
    base = load_file(str(g2 / "model.safetensors"))
    shrunk = checked = 0
    for k, p in params.items():
        w = base[k].astype(np.float64)
        want, sel, scale = dampen(w, ff[k], fd[k], alpha, lam)
        # float32 gradients against float64 ones: an element whose ratio sits within 1e-4 of
        # alpha may fall either side; so may one whose gradient is zero but for rounding (the
        # keys' bias: softmax ignores what it adds to a row's scores, and both Fishers are noise,
        # ~1e-40 in float64). Every other element must match
        ratio = ff[k] / np.maximum(fd[k], 1e-300)
        top = max(ff[k].max(), fd[k].max())
        big = np.maximum(ff[k], fd[k])
        sure = (np.abs(ratio / alpha - 1) > 1e-4) & ((big > 1e-12 * top) | (big == 0))
        np.testing.assert_allclose(got[k][sure], want[sure], rtol=1e-4, atol=1e-9, err_msg=k)
        shrunk += int(np.sum(sel & (scale < 1)))
        checked += int(np.sum(sure))
    total = sum(p.numel() for p in params.values())
    assert 0 < shrunk < total and checked > 0.99 * total, (shrunk, checked, total)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_checkpoint_is_its_float32_run_rounded_once(tmp_path, fixture_dir, dtype):
    """A float16/bfloat16 checkpoint keeps its dtype: its weights are computed on as exact
    float32 copies and rounded once, so the result is the float32-widened checkpoint's, rounded
    (bit for bit); the weights `params` leaves out keep their bytes."""
    from safetensors.torch import load_file as load_pt, save_file as save_pt
    src = gen_hf.generate(fixture_dir)
    w = load_pt(str(src / "hf_gpt2.model.safetensors"))
    cfg = json.loads((src / "hf_gpt2.config.json").read_text())
    dt = getattr(torch, dtype)
    r = np.random.default_rng(0)
    ids = r.integers(0, 300, (16, 10)).astype(np.int64)
    save_file({"input_ids": ids, "attention_mask": np.ones_like(ids),
               "label": (np.arange(16) % 4).astype(np.int64)}, str(tmp_path / "t.safetensors"))
    outs = {}
    for tag, cast in (("half", lambda v: v.to(dt)), ("up", lambda v: v.to(dt).float())):
        d = tmp_path / tag
        d.mkdir()
        save_pt({k: cast(v) if v.is_floating_point() else v for k, v in w.items()},
                str(d / "model.safetensors"), metadata={"format": "pt"})
        (d / "config.json").write_text(json.dumps(dict(cfg, torch_dtype=dtype if tag == "half" else "float32")))
        proc = run_ulc("train", d, "--data", tmp_path / "t.safetensors", "--forget-classes", "1",
                       "--passes", "ssd{batch_size=8,params=transformer.h.0.*}", "--threads", "1", "-o", f"{tmp_path / (tag + '_out')}/", "-q")
        assert proc.returncode == 0, proc.stderr
        outs[tag] = load_pt(str(tmp_path / (tag + "_out") / "model.safetensors"))
    base = load_pt(str(tmp_path / "half" / "model.safetensors"))
    changed = 0
    for k, v in outs["half"].items():
        assert v.dtype == base[k].dtype, k
        if v.is_floating_point():
            assert torch.equal(v, outs["up"][k].to(dt)), k
            changed += not torch.equal(v, base[k])
            assert k.startswith("transformer.h.0.") or torch.equal(v, base[k]), k
    assert changed > 0


# ---- digits: class 3 --------------------------------------------------------------------------

def digits_spec(**ssd):
    s = {"method": "ssd",
         "data": {"train": str(DIGITS / "train.safetensors"), "test": str(DIGITS / "test.safetensors")},
         "forget": {"classes": [3]}}
    if ssd:
        s["ssd"] = ssd
    return s


def test_digits_forgets_class_3(tmp_path):
    rep, _ = forget(tmp_path, MODEL, digits_spec(alpha=150), name="a150")
    b, a = rep["accuracy"]["before"], rep["accuracy"]["after"]
    assert a["Df"] <= 0.05 and a["Dft"] <= 0.05, a
    assert b["Drt"] - a["Drt"] <= 0.02 and b["Dr"] - a["Dr"] <= 0.02, (b, a)
    # the paper's alpha 10: forgets too, at the cost of most retained classes on this model
    rep, _ = forget(tmp_path, MODEL, digits_spec(), name="defaults")
    assert rep["hyperparameters"]["ssd"] == {"alpha": 10, "lambda": 1, "params": "*"}
    assert rep["accuracy"]["after"]["Dft"] <= 0.05


def test_same_bytes_at_any_thread_count(tmp_path):
    spec = digits_spec(alpha=150)
    _, one = forget(tmp_path, MODEL, spec, name="t1", threads=1)
    _, two = forget(tmp_path, MODEL, spec, name="t2", threads=2)
    _, again = forget(tmp_path, MODEL, spec, name="t2b", threads=2)
    assert one.read_bytes() == two.read_bytes() == again.read_bytes()


# ---- refusals ---------------------------------------------------------------------------------

@pytest.mark.parametrize("change,needle", [
    ({"ssd": {"alhpa": 10}}, "unknown key 'ssd.alhpa'"),
    ({"ssd": {"alpha": 0}}, "key 'ssd.alpha': expected a number in (0"),
    ({"ssd": {"alpha": "10"}}, "key 'ssd.alpha': expected a number"),
    ({"ssd": {"lambda": -1}}, "key 'ssd.lambda': expected a number in [0"),
    ({"ssd": {"params": "a,b"}}, "key 'ssd.params'"),
    ({"ssd": {"train": "all"}}, "unknown key 'ssd.train'"),
    ({"train": {"lr": 0.1}}, "key 'train.lr': method ssd trains nothing"),
    ({"train": {"epochs": 2}}, "key 'train.epochs': method ssd trains nothing"),
    ({"lora": {"rank": 4}}, "key 'lora': method ssd dampens the model's own weights"),
])
def test_spec_errors(tmp_path, change, needle):
    proc, out = forget(tmp_path, MODEL, {**digits_spec(), **change}, code=EXIT_INPUT)
    assert needle in proc.stderr, proc.stderr
    assert not out.exists()


def test_pass_refuses_training_settings(tmp_path):
    base = ["train", MODEL, "--data", DIGITS / "train.safetensors", "--forget-classes", "3",
            "-o", tmp_path / "o.onnx", "-q"]
    proc = run_ulc(*base, "--passes", "ssd{lr=0.1}")
    assert proc.returncode == 1 and "unknown option 'lr'" in proc.stderr
    proc = run_ulc(*base, "--passes", "ssd", "--epochs", "2")
    assert proc.returncode == 1 and "method ssd trains nothing" in proc.stderr
    assert not (tmp_path / "o.onnx").exists()
    proc = run_ulc(*base, "--passes", "ssd{alpha=150,params=fc.*}")
    assert proc.returncode == 0, proc.stderr
    w, w0 = inits(tmp_path / "o.onnx"), inits(MODEL)
    assert all(np.array_equal(w[k], w0[k]) for k in w0 if not k.startswith("fc."))


def test_markdown_and_html_say_what_was_dampened(tmp_path):
    sp = tmp_path / "s.json"
    sp.write_text(json.dumps(digits_spec(alpha=150)))
    md, html, js = tmp_path / "r.md", tmp_path / "r.html", tmp_path / "r.json"
    proc = run_ulc(MODEL, "--forget", sp, "-o", tmp_path / "o.onnx", "--report", md, "--report",
                   html, "--report", js, "-q")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(js.read_text())["dampened"]
    line = (f"scaled {d['weights']} of the {d['of_weights']} weights it could "
            f"({100 * d['weights'] / d['of_weights']:.2f}%), in {d['tensors']} of {d['of_tensors']} tensors")
    assert "## Dampened weights" in md.read_text() and line in md.read_text()
    assert "<h2>Dampened weights</h2>" in html.read_text() and line in html.read_text()
