"""The robust pass (methods/robust.c: UNDO, Lee et al., NeurIPS 2025) after a method, through the
main command and `ulc train --passes`: the unlearned model is noised toward a fresh seeded
initialisation, (1 - alpha) * theta_T + alpha * theta_init, and its own outputs are distilled back
into it on the retain rows.

- on the digits default (class 3, rfa with the embedded spec's settings, seed 0) the relearning
  probe (plain SGD on Df, lr 1e-3, batch 32; the report's `relearn.forget_acc`) needs more steps
  to bring Df back to 50 % after rfa + robust than after rfa alone (measured: 2 steps after rfa,
  16 after rfa + robust with its defaults, 19 after retrain: docs/results.md), Df stays at 0 %,
  and Drt stays within 1.5 points of the original's (measured 98.76 % against 99.69 %);
- the report carries hyperparameters.robust (the resolved options) and a "robust" object with
  the pass's steps and seconds, while "train" keeps the method's own statistics;
- the same pass in a pipeline (`ulc train --passes "...,lora-merge,robust{...}"`) gives the same
  weights as the spec key;
- spec errors in the "robust" key exit 2 before any work and write nothing;
- without training data (`ulc convert --passes robust`) the pass is refused with a message that
  says what it needs.
"""
import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from conftest import ROOT, run_ulc

DIGITS = ROOT / "models" / "digits"
MODEL = DIGITS / "digits_resnet.onnx"
EXIT_INPUT = 2
RFA = ("lora-inject{rank=8,alpha=32,placement=rfa},rfa{epochs=5,batch_size=128,lr=0.005,"
       "optimizer=adamw,weight_decay=0.01,gamma=0.5,norm=l2sq},lora-merge")


def spec(robust=None, **extra):
    s = json.loads((DIGITS / "forget_digit.json").read_text())
    s["data"] = {"train": str(DIGITS / "train.safetensors"), "test": str(DIGITS / "test.safetensors")}
    s["eval"] = {"features": False, "relearn_steps": 30}
    if robust is not None:
        s["robust"] = robust
    s.update(extra)
    return s


def forget(tmp_path, s, name="r", code=0):
    sp, out, rep = tmp_path / f"{name}.json", tmp_path / f"{name}.onnx", tmp_path / f"{name}.rep.json"
    sp.write_text(json.dumps(s))
    proc = run_ulc(MODEL, "--forget", sp, "-o", out, "--report", rep, "--threads", "2", "-q")
    assert proc.returncode == code, proc.stderr
    return (json.loads(rep.read_text()) if code == 0 else None), out, proc


def inits(path):
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


def steps_to(curve, level):
    return next((k for k, a in enumerate(curve) if a >= level), len(curve))


@pytest.mark.slow
def test_relearns_slower_than_the_method_alone(tmp_path):
    plain, _, _ = forget(tmp_path, spec(), name="rfa")
    rob, _, _ = forget(tmp_path, spec({}), name="robust")
    p50 = steps_to(plain["relearn"]["forget_acc"], 0.5)
    r50 = steps_to(rob["relearn"]["forget_acc"], 0.5)
    assert r50 > p50 + 5, (p50, r50)
    assert rob["relearn"]["forget_acc"][10] <= 0.1, rob["relearn"]["forget_acc"]
    b, a = rob["accuracy"]["before"], rob["accuracy"]["after"]
    assert a["Df"] <= 0.01 and a["Dft"] <= 0.01, a
    assert b["Drt"] - a["Drt"] <= 0.015, (b["Drt"], a["Drt"])
    # what ran: the resolved options, the pass's statistics; the method's own stay in "train"
    assert rob["hyperparameters"]["robust"] == {
        "alpha": 0.2, "temperature": 4, "teacher": "original", "epochs": 10, "batch_size": 64,
        "lr": 0.003, "optimizer": "adamw", "weight_decay": 0.0001, "schedule": "linear"}
    r = rob["robust"]
    assert r["retain_rows"] == 1291 and r["steps"] == 10 * 21 and r["seconds"] > 0
    assert len(r["loss_curve"]) == r["steps"]
    assert rob["train"]["steps"] == plain["train"]["steps"] == 60
    assert "robust" not in plain and "robust" not in plain["hyperparameters"]


@pytest.mark.slow
def test_teachers(tmp_path):
    """teacher "unlearned" distils the method's outputs (UNDO), "original" the input model's with
    the forgotten class at -inf; auto picks "original" for class forgetting and "unlearned" for
    rows. Both keep class 3 gone through the probe on digits."""
    reps = {t: forget(tmp_path, spec({"teacher": t}), name=t)[0] for t in ("unlearned", "original")}
    for t, rep in reps.items():
        assert rep["hyperparameters"]["robust"]["teacher"] == t
        assert rep["relearn"]["forget_acc"][10] <= 0.5 and rep["accuracy"]["after"]["Dft"] <= 0.01, t
    w = {t: inits(tmp_path / f"{t}.onnx") for t in reps}
    assert any(not np.array_equal(w["unlearned"][k], w["original"][k]) for k in w["original"])
    rows = spec({})
    rows["forget"] = {"indices": list(range(0, 1437, 10))}
    rep, _, _ = forget(tmp_path, rows, name="rows")
    assert rep["hyperparameters"]["robust"]["teacher"] == "unlearned"


@pytest.mark.slow
def test_pipeline_pass_is_the_spec_key(tmp_path):
    _, out, _ = forget(tmp_path, spec({"alpha": 0.5, "epochs": 2}), name="key")
    piped = tmp_path / "piped.onnx"
    proc = run_ulc("train", MODEL, "--data", DIGITS / "train.safetensors", "--forget-classes", "3",
                   "-o", piped, "--threads", "2", "-q",
                   "--passes", RFA + ",robust{alpha=0.5,epochs=2}")
    assert proc.returncode == 0, proc.stderr
    a, b = inits(piped), inits(out)  # the weights; the request histories differ
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("robust,needle", [
    ({"alhpa": 0.5}, "key 'robust.alhpa'"),
    ({"alpha": 1.5}, "key 'robust.alpha'"),
    ({"alpha": "0.5"}, "key 'robust.alpha'"),
    ({"epochs": 0}, "key 'robust.epochs'"),
    ({"epochs": 2.5}, "key 'robust.epochs'"),
    ({"temperature": 0}, "key 'robust.temperature'"),
    ({"optimizer": "adam"}, "key 'robust.optimizer'"),
    ([], "key 'robust': expected an object"),
])
def test_spec_errors(tmp_path, robust, needle):
    _, out, proc = forget(tmp_path, spec(robust), name="bad", code=EXIT_INPUT)
    assert needle in proc.stderr, proc.stderr
    assert "rfa: epoch" not in proc.stderr and not out.exists()


def test_refused_without_training_data(tmp_path):
    out = tmp_path / "o.onnx"
    proc = run_ulc("convert", MODEL, "-o", out, "--passes", "robust")
    assert proc.returncode != 0
    assert "pass robust: distillation needs the training data and the forget set" in proc.stderr
    assert not out.exists()


def test_refused_before_lora_merge(tmp_path):
    proc = run_ulc("train", MODEL, "--data", DIGITS / "train.safetensors", "--forget-classes", "3",
                   "-o", tmp_path / "o.onnx", "-q", "--passes",
                   "lora-inject{rank=8,alpha=32,placement=rfa},rfa{epochs=1},robust,lora-merge")
    assert proc.returncode != 0
    assert "put robust after lora-merge" in proc.stderr, proc.stderr


@pytest.mark.slow
def test_sam_steps(tmp_path):
    """sam_rho on a method pass: sam_rho 0 is the plain step bit for bit; a radius > 0 takes the
    gradient at the perturbed weights, so the adapters (and the merged weights) differ."""
    outs = {}
    for name, rho in (("plain", None), ("zero", 0), ("sam", 0.05)):
        passes = RFA if rho is None else RFA.replace("rfa{", f"rfa{{sam_rho={rho},", 1)
        outs[name] = tmp_path / f"{name}.onnx"
        proc = run_ulc("train", MODEL, "--data", DIGITS / "train.safetensors", "--forget-classes",
                       "3", "-o", outs[name], "--threads", "2", "-q", "--passes", passes)
        assert proc.returncode == 0, proc.stderr
    w = {k: inits(v) for k, v in outs.items()}
    assert all(np.array_equal(w["plain"][k], w["zero"][k]) for k in w["plain"])
    assert any(not np.array_equal(w["plain"][k], w["sam"][k]) for k in w["plain"])


def test_original_teacher_with_a_small_temperature(tmp_path):
    """The forgotten class's teacher logits are -inf (softmax 0) at any temperature: a small one
    trains to finite losses and still forgets."""
    rep, _, _ = forget(tmp_path, spec({"teacher": "original", "temperature": 1e-9, "epochs": 2}),
                       name="cold")
    assert rep["accuracy"]["after"]["Dft"] <= 0.05
    assert all(np.isfinite(rep["robust"]["loss_curve"]))
