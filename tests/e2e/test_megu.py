"""MeGU, Machine-Guided Unlearning (methods/megu.c), through the main command.

- on a small MLP, the similarity (the original's mean softmax per class), the perturbing labels
  (R = T.p, the floor(K*tau)-th largest among the classes that are neither the row's own nor a
  forget class) and every noise's loss curve (from megu.c's seeded start, Adam on
  sign*CE(f(N), c) + lambda*mean(N^2), the model frozen) match a numpy/torch reference; a
  similarity file is used as given;
- retain_rows caps the retain rows finetuned on;
- on the digits default, class 3: forgotten, the retained classes kept;
- spec errors (bad similarity files, tau/alpha out of range, unknown keys) exit 2 before any work.
"""
import json
import math

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import save_file

from conftest import ROOT, run_ulc

DIGITS = ROOT / "models" / "digits"
MODEL = DIGITS / "digits_resnet.onnx"
EXIT_INPUT = 2


def forget(tmp_path, model, spec, name="out", code=0):
    sp = tmp_path / f"{name}.json"
    sp.write_text(json.dumps(spec))
    out = tmp_path / f"{name}.onnx"
    rep = tmp_path / f"{name}.report.json"
    proc = run_ulc(model, "--forget", sp, "-o", out, "--report", rep, "--threads", 2, "-q")
    assert proc.returncode == code, proc.stderr
    return (json.loads(rep.read_text()) if code == 0 else proc), out


# ---- the reference --------------------------------------------------------------------------------

M64 = (1 << 64) - 1


def splitmix(s):
    s = (s + 0x9E3779B97F4A7C15) & M64
    z = s
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return s, z ^ (z >> 31)


def noise_start(n, seed, j, kind):
    """megu.c's seeded N(0, 1) start of noise j (kind 0 positive, 1 negative)."""
    s = seed ^ 0x4D656755 ^ (j << 32) ^ (kind << 48)
    out = np.empty(n, np.float32)
    for i in range(n):
        s, a = splitmix(s)
        s, b = splitmix(s)
        u1 = ((a >> 11) + 1) / 9007199254740992.0
        u2 = (b >> 11) / 9007199254740992.0
        out[i] = math.sqrt(-2.0 * math.log(u1)) * math.cos(6.283185307179586 * u2)
    return out


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def perturbing(S, P, y, forget_rows, forget_classes, tau):
    K = S.shape[0]
    T = (S / S.sum(axis=1, keepdims=True)).T
    rank = max(1, math.floor(K * tau + 1e-9))
    out = []
    for i in forget_rows:
        p = P[i].copy()
        p[y[i]] = 0
        R = T @ p
        ok = [k for k in range(K) if k != y[i] and k not in forget_classes]
        ok.sort(key=lambda k: (-R[k], k))
        out.append(ok[min(rank, len(ok)) - 1])
    return out


# ---- a small MLP ----------------------------------------------------------------------------------

N, IN, HID, C = 80, 4, 8, 6
FORGET = [2]


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    d = tmp_path_factory.mktemp("mlp")
    r = np.random.default_rng(3)
    w = {"fc1.weight": r.normal(0, 0.8, (HID, IN)), "fc1.bias": r.normal(0, 0.1, HID),
         "fc2.weight": r.normal(0, 0.8, (C, HID)), "fc2.bias": r.normal(0, 0.1, C)}
    w = {k: v.astype(np.float32) for k, v in w.items()}
    nodes = [helper.make_node("Gemm", ["input", "fc1.weight", "fc1.bias"], ["h"], transB=1),
             helper.make_node("Relu", ["h"], ["a"]),
             helper.make_node("Gemm", ["a", "fc2.weight", "fc2.bias"], ["logits"], transB=1)]
    g = helper.make_graph(nodes, "mlp",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", IN])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", C])],
                          [numpy_helper.from_array(v, k) for k, v in w.items()])
    path = d / "mlp.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    x = r.normal(0, 1, (N, IN)).astype(np.float32)
    y = (np.arange(N) % C).astype(np.int64)
    save_file({"input": x, "label": y}, str(d / "train.safetensors"))
    return path, d / "train.safetensors", w, x, y


def logits_of(w, x):
    h = np.maximum(x.astype(np.float64) @ w["fc1.weight"].T + w["fc1.bias"], 0)
    return h @ w["fc2.weight"].T + w["fc2.bias"]


def torch_noise(w, start, cls, sign, steps=25, lr=0.1, lam=0.1):
    p = {k: torch.tensor(v) for k, v in w.items()}
    n = torch.tensor(start[None, :], requires_grad=True)
    opt = torch.optim.Adam([n], lr=lr)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        z = torch.relu(n @ p["fc1.weight"].T + p["fc1.bias"]) @ p["fc2.weight"].T + p["fc2.bias"]
        loss = sign * torch.nn.functional.cross_entropy(z, torch.tensor([cls])) + lam * (n ** 2).mean()
        loss.backward()
        losses.append(loss.item())
        opt.step()
    return losses, float((n.detach() ** 2).mean())


def spec_for(train, **megu):
    s = {"method": "megu", "data": {"train": str(train)}, "forget": {"classes": FORGET},
         "train": {"epochs": 1, "batch_size": 16}}
    if megu:
        s["megu"] = megu
    return s


def check_noises(rep, w, pos, neg, seed=0):
    got = rep["megu"]["noise"]
    want = [(c, 0) for c in sorted(pos)] + [(c, 1) for c in sorted(neg)]
    assert [(n["class"], n["kind"] == "negative") for n in got] == [(c, bool(k)) for c, k in want]
    for j, (c, kind) in enumerate(want):
        losses, ms = torch_noise(w, noise_start(IN, seed, j, kind), c, -1.0 if kind else 1.0)
        np.testing.assert_allclose(got[j]["loss"], losses, rtol=2e-4, atol=2e-5, err_msg=str((c, kind)))
        assert got[j]["mean_square"] == pytest.approx(ms, rel=1e-4)


def test_labels_and_noises_match_a_reference(tmp_path, mlp):
    path, train, w, x, y = mlp
    tau = 0.5  # floor(6 * 0.5) = 3: the 3rd largest
    rep, out = forget(tmp_path, path, spec_for(train, tau=tau))
    P = softmax(logits_of(w, x))
    S = np.stack([P[y == k].mean(axis=0) for k in range(C)])
    m = rep["megu"]
    assert m["similarity_source"] == "model" and m["rank"] == 3
    np.testing.assert_allclose(m["similarity"], S, rtol=1e-5, atol=1e-7)
    rows = [i for i in range(N) if y[i] in FORGET]
    yp = perturbing(S, P, y, rows, FORGET, tau)
    counts = {str(k): yp.count(k) for k in sorted(set(yp))}
    assert m["perturbing_labels"] == counts
    assert m["rows"] == {"forget": len(rows), "retain": N - len(rows)}
    check_noises(rep, w, set(yp), {y[i] for i in rows})
    hp = rep["hyperparameters"]
    assert hp["megu"] == {"train": "all", "tau": tau, "alpha": 0.7, "noise_steps": 25,
                          "noise_lr": 0.1, "noise_lambda": 0.1, "retain_rows": 10000,
                          "similarity": "model"}
    assert hp["train"]["lr"] == 3e-4 and hp["train"]["weight_decay"] == 0
    assert hp["train"]["optimizer"] == "adamw"
    # the model changed
    got = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(out)).graph.initializer}
    assert any(not np.array_equal(got[k], w[k]) for k in w)


def test_similarity_file_is_used_as_given(tmp_path, mlp):
    path, train, w, x, y = mlp
    r = np.random.default_rng(5)
    S = r.uniform(0, 1, (C, C))
    S[0, 3] = 0
    (tmp_path / "sim.json").write_text(json.dumps(S.tolist()))
    rep, _ = forget(tmp_path, path, spec_for(train, similarity="sim.json", retain_rows=20))
    m = rep["megu"]
    assert m["similarity_source"].endswith("sim.json") and m["rank"] == 1  # floor(6 * 0.3)
    np.testing.assert_allclose(m["similarity"], S, rtol=1e-15)
    P = softmax(logits_of(w, x))
    rows = [i for i in range(N) if y[i] in FORGET]
    yp = perturbing(S, P, y, rows, FORGET, 0.3)
    assert m["perturbing_labels"] == {str(k): yp.count(k) for k in sorted(set(yp))}
    assert m["rows"] == {"forget": len(rows), "retain": 20}


# ---- digits: class 3 --------------------------------------------------------------------------------

def digits_spec(**extra):
    return {"method": "megu",
            "data": {"train": str(DIGITS / "train.safetensors"), "test": str(DIGITS / "test.safetensors")},
            "forget": {"classes": [3]}, **extra}


@pytest.mark.slow
def test_digits_forgets_class_3(tmp_path):
    # the paper's lr 3e-4 (3 epochs) only dents this small model's class 3 (measured Df 87 %,
    # Dft 78 %); 3e-3 forgets it: measured Df 0 %, Dft 0 %, Dr 100 %, Drt 99.69 % (as before)
    rep, _ = forget(tmp_path, MODEL, digits_spec(train={"lr": 3e-3}))
    b, a = rep["accuracy"]["before"], rep["accuracy"]["after"]
    assert a["Df"] <= 0.05 and a["Dft"] <= 0.05, a
    assert b["Drt"] - a["Drt"] <= 0.03 and b["Dr"] - a["Dr"] <= 0.03, (b, a)
    assert "3" not in rep["megu"]["perturbing_labels"]
    rep, _ = forget(tmp_path, MODEL, digits_spec(), name="defaults")
    assert rep["accuracy"]["after"]["Df"] < rep["accuracy"]["before"]["Df"]


# ---- refusals -------------------------------------------------------------------------------------

@pytest.mark.parametrize("sim,needle", [
    ([[1, 0], [0, 1], [1, 1]], "row 0: expected a list of 3 numbers (the matrix must be square)"),
    ([[1] * 10] * 9 + [[1] * 9 + [-0.5]], "row 9, column 9: expected a finite number >= 0, got a negative"),
    ([[1] * 10] * 9 + [[1] * 9 + ["x"]], "row 9, column 9: expected a finite number >= 0, got a string"),
    ([[1, 0.5], [0.5, 1]], "the similarity is 2 x 2 but the model has 10 classes"),
    ({"a": 1}, "must be a list of K lists of K numbers, K >= 2 (got an object)"),
])
def test_bad_similarity_files(tmp_path, sim, needle):
    (tmp_path / "sim.json").write_text(json.dumps(sim))
    proc, out = forget(tmp_path, MODEL, digits_spec(megu={"similarity": "sim.json"}), code=EXIT_INPUT)
    assert needle in proc.stderr and "sim.json" in proc.stderr, proc.stderr
    assert "split" not in proc.stdout and not out.exists()


@pytest.mark.parametrize("megu,needle", [
    ({"tau": 0}, "key 'megu.tau': expected a number in (0"),
    ({"tau": 1.5}, "key 'megu.tau': expected a number in (0, 1]"),
    ({"alpha": -0.1}, "key 'megu.alpha': expected a number in [0, 1]"),
    ({"alpha": 2}, "key 'megu.alpha': expected a number in [0, 1]"),
    ({"noise_steps": 0}, "key 'megu.noise_steps'"),
    ({"retain_rows": -1}, "key 'megu.retain_rows'"),
    ({"lamda": 1}, "unknown key 'megu.lamda'"),
])
def test_spec_errors(tmp_path, megu, needle):
    proc, out = forget(tmp_path, MODEL, digits_spec(megu=megu), code=EXIT_INPUT)
    assert needle in proc.stderr, proc.stderr
    assert not out.exists()


def test_missing_similarity_file(tmp_path):
    # as every file a spec names: a missing one exits 3, naming the key
    proc, out = forget(tmp_path, MODEL, digits_spec(megu={"similarity": "nope.json"}), code=3)
    assert "key 'megu.similarity'" in proc.stderr and "nope.json" in proc.stderr
    assert not out.exists()


def test_pass_options(tmp_path):
    base = ["train", MODEL, "--data", DIGITS / "train.safetensors", "--forget-classes", "3",
            "-o", tmp_path / "o.onnx", "-q"]
    proc = run_ulc(*base, "--passes", "megu{tau=2}")
    assert proc.returncode == 1 and "tau" in proc.stderr
    proc = run_ulc(*base, "--passes", "megu{noise_steps=3,retain_rows=100,epochs=1}")
    assert proc.returncode == 0, proc.stderr
