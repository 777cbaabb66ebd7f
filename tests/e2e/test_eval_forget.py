"""`ulc eval MODEL --forget SPEC.json` (docs/metrics.md): the attackers of eval/metrics.c against
sklearn on random 1-D data (logistic regression: same predictions, coefficients within 1e-3
relative; SVC: >= 99 % same predictions), and the metrics on the digits model and on its RFA
output against a numpy/sklearn recomputation from onnxruntime's logits: accuracy per split and
per class, H-mean, both MIAs, activation distance, and CKA / L1 of the logits layer."""
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from safetensors.numpy import load_file
from sklearn.linear_model import LogisticRegression
from sklearn.svm import SVC

from conftest import ROOT, run_ulc, ulc_bin

DIGITS = ROOT / "models" / "digits"
MODEL = DIGITS / "digits_resnet.onnx"
SPEC = DIGITS / "forget_digit.json"
FORGET = 3


def metrics_binary():
    exe = Path(ulc_bin()).parent / "tests" / "test_metrics"
    if not exe.exists():
        pytest.skip(f"{exe} not built")
    return exe


def attack_data(rng, n):
    # two overlapping clusters of a 1-D feature, unbalanced like Dr vs Drt
    x = np.concatenate([rng.normal(0.3, 0.4, n), rng.normal(1.0, 0.5, n // 3)])
    y = np.concatenate([np.ones(n, int), np.zeros(n // 3, int)])
    return x, y


def run_driver(exe, mode, x, y, q, tmp_path):
    f = tmp_path / f"{mode}.txt"
    lines = [f"{len(x)} {len(q)}"] + [f"{a!r} {b}" for a, b in zip(x, y)] + [repr(v) for v in q]
    f.write_text("\n".join(lines) + "\n")
    import subprocess
    out = subprocess.run([str(exe), f"--{mode}", str(f)], capture_output=True, text=True, check=True)
    return out.stdout.split("\n")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_logreg_matches_sklearn(seed, tmp_path):
    exe = metrics_binary()
    rng = np.random.default_rng(seed)
    x, y = attack_data(rng, 300)
    q = rng.uniform(-1.5, 2.5, 400)
    out = run_driver(exe, "logreg", x, y, q, tmp_path)
    w, b = map(float, out[0].split())
    sk = LogisticRegression(class_weight="balanced").fit(x[:, None], y)
    assert abs(w - sk.coef_[0, 0]) <= 1e-3 * abs(sk.coef_[0, 0])
    assert abs(b - sk.intercept_[0]) <= 1e-3 * abs(sk.intercept_[0]) + 1e-6
    ours = np.array([int(v) for v in out[1:1 + len(q)]])
    assert (ours == sk.predict(q[:, None])).mean() >= 0.995  # a query on the boundary may differ


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_svm_matches_sklearn(seed, tmp_path):
    exe = metrics_binary()
    rng = np.random.default_rng(seed)
    x, y = attack_data(rng, 300)
    q = rng.uniform(-1.5, 2.5, 400)
    out = run_driver(exe, "svm", x, y, q, tmp_path)
    ours = np.array([int(line.split()[0]) for line in out[:len(q)]])
    sk = SVC(C=3, gamma="auto").fit(x[:, None], y)
    assert (ours == sk.predict(q[:, None])).mean() >= 0.99


# ---- the digits model --------------------------------------------------------------------------

def logits(model, x):
    s = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return s.run(["logits"], {"input": x})[0].astype(np.float64)


def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def entropy(p):
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.sum(np.where(p > 0, p * np.log(p), 0.0), axis=1)


def expected_mia(z_tr, y_tr, z_te, y_te):
    df, dr, drt = y_tr == FORGET, y_tr != FORGET, y_te != FORGET
    p_tr, p_te = softmax(z_tr), softmax(z_te)
    h_tr, h_te = entropy(p_tr), entropy(p_te)
    x = np.concatenate([h_tr[dr], h_te[drt]])[:, None]
    y = np.concatenate([np.ones(dr.sum(), int), np.zeros(drt.sum(), int)])
    lr = LogisticRegression(class_weight="balanced").fit(x, y)
    mia_lr = lr.predict(h_tr[df][:, None]).mean()
    c_tr = p_tr[np.arange(len(y_tr)), y_tr]
    c_te = p_te[np.arange(len(y_te)), y_te]
    k = min(dr.sum(), drt.sum(), 2000)
    xs = np.concatenate([c_tr[dr][:k], c_te[drt][:k]])[:, None]
    ys = np.concatenate([np.ones(k, int), np.zeros(k, int)])
    svm = SVC(C=3, gamma="auto").fit(xs, ys)
    mia_svm = svm.predict(c_tr[df][:, None]).mean()
    return mia_lr, mia_svm


def linear_cka(x, y):
    x = x - x.mean(0)
    y = y - y.mean(0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


@pytest.fixture(scope="module")
def rfa_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("evalforget") / "rfa.onnx"
    run_ulc(MODEL, "--forget", SPEC, "-o", out, "-q", check=True)
    return out


@pytest.fixture(scope="module")
def digits():
    tr, te = load_file(str(DIGITS / "train.safetensors")), load_file(str(DIGITS / "test.safetensors"))
    return tr["input"], tr["label"], te["input"], te["label"]


def check_model(model, digits, original=None, reference=None, relearn=0):
    xtr, ytr, xte, yte = digits
    args = [model, "--forget", SPEC, "--json", "--threads", "1"]
    if original:
        args += ["--original", original]
    if reference:
        args += ["--reference", reference]
    if relearn:
        args += ["--relearn", relearn]
    r = run_ulc("eval", *args, check=True)
    rep = json.loads(r.stdout)
    z_tr, z_te = logits(model, xtr), logits(model, xte)
    df, dft = ytr == FORGET, yte == FORGET
    assert rep["rows"] == {"Df": int(df.sum()), "Dr": int((~df).sum()), "Dft": int(dft.sum()),
                           "Drt": int((~dft).sum())}
    acc = rep["accuracy"]["model"]
    ok_tr, ok_te = z_tr.argmax(1) == ytr, z_te.argmax(1) == yte
    for name, want in [("Df", ok_tr[df].mean()), ("Dr", ok_tr[~df].mean()),
                       ("Dft", ok_te[dft].mean()), ("Drt", ok_te[~dft].mean())]:
        assert acc[name] == pytest.approx(want, abs=1e-12), name
    pc = rep["per_class"]["model"]
    assert pc == pytest.approx([ok_te[yte == c].mean() for c in range(10)], abs=1e-12)
    mia_lr, mia_svm = expected_mia(z_tr, ytr, z_te, yte)
    mia = rep["mia"]["model"]
    # float32 logits in ulc vs onnxruntime: a row on the attacker's boundary may flip
    assert mia["entropy_logreg"]["mia"] == pytest.approx(mia_lr, abs=2.0 / df.sum())
    assert mia["confidence_svm"]["mia"] == pytest.approx(mia_svm, abs=2.0 / df.sum())
    return rep, z_tr, z_te


def test_eval_forget_original(digits):
    rep, _, _ = check_model(MODEL, digits)
    assert rep["accuracy"]["model"]["Dft"] > 0.95
    assert rep["mia"]["model"]["confidence_svm"]["mia"] > 0.5
    assert "h_mean" not in rep and "features" not in rep  # they need --original


def test_eval_forget_rfa(digits, rfa_model):
    rep, z_tr, z_te = check_model(rfa_model, digits, original=MODEL, reference=MODEL, relearn=3)
    xtr, ytr, xte, yte = digits
    zo_tr, zo_te = logits(MODEL, xtr), logits(MODEL, xte)
    dft = yte == FORGET
    rt = 100 * (z_te.argmax(1) == yte)[~dft].mean()
    drop = 100 * ((zo_te.argmax(1) == yte)[dft].mean() - (z_te.argmax(1) == yte)[dft].mean())
    h = rep["h_mean"]
    assert h["acc_rt"] == pytest.approx(rt) and h["drop_ft"] == pytest.approx(drop)
    assert h["h_mean"] == pytest.approx(2 * rt * drop / (rt + drop) if rt > 0 and drop > 0 else 0)
    assert rep["accuracy"]["model"]["Dft"] <= 0.05  # RFA forgot
    # activation distance to the reference (here the original) on Df
    df = ytr == FORGET
    want = np.linalg.norm(softmax(z_tr[df]) - softmax(zo_tr[df]), axis=1).mean()
    assert rep["activation_distance"]["model"] == pytest.approx(want, rel=1e-4)
    assert rep["activation_distance"]["original"] == pytest.approx(0.0, abs=1e-6)
    # the logits layer (the Gemm) against numpy on the same rows: first 256 Df, first 256 Dr
    f = rep["features"]
    sel_f = np.flatnonzero(df)[:256]
    sel_r = np.flatnonzero(~df)[:256]
    assert f["rows_forget"] == len(sel_f) and f["rows_retain"] == len(sel_r)
    layer = [e for e in f["layers"] if e["name"] == "logits"][0]
    for sel, side in [(sel_f, "forget"), (sel_r, "retain")]:
        a, b = zo_tr[sel], z_tr[sel]
        assert layer["l1_" + side] == pytest.approx(np.abs(a - b).sum(1).mean(), rel=1e-4)
        assert layer["cka_" + side] == pytest.approx(linear_cka(a, b), rel=1e-4)
    assert len(f["layers"]) == 6  # 5 Conv + the Gemm
    first = f["layers"][0]  # the stem is frozen by RFA's default placement
    assert first["l1_forget"] == pytest.approx(0.0, abs=1e-3) and first["cka_forget"] == pytest.approx(1.0)
    # relearning: step 0 is the model's Df accuracy, then one entry per step
    rl = rep["relearn"]
    assert rl["steps"] == 3 and len(rl["forget_acc"]) == 4 and len(rl["loss"]) == 3
    assert rl["forget_acc"][0] == rep["accuracy"]["model"]["Df"]
    assert all(0.0 <= v <= 1.0 for v in rl["forget_acc"])


def test_eval_forget_text_and_errors(tmp_path, rfa_model):
    r = run_ulc("eval", rfa_model, "--forget", SPEC, "--original", MODEL, "--threads", "1")
    assert r.returncode == 0, r.stderr
    for want in ["accuracy", "H-mean", "MIA model", "features vs the original", "per-class"]:
        assert want in r.stdout
    r = run_ulc("eval", MODEL, "--relearn", "3", "--data", DIGITS / "test.safetensors")
    assert r.returncode == 1 and "need --forget" in r.stderr
    r = run_ulc("eval", MODEL, "--forget", tmp_path / "missing.json")
    assert r.returncode in (2, 3) and "missing.json" in r.stderr
    r = run_ulc("eval", MODEL, "--forget", SPEC, "--relearn", "x")
    assert r.returncode == 1
