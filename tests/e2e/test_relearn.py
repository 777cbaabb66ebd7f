"""Relearning as a metric (docs/metrics.md, "Relearning probe"; docs/spec.md, "Gates"): the
probe's steps_to_50 / steps_to_90 are the first points of its own forget_acc curve at >= 50 % and
>= 90 % (null when not within the probe's steps), in the report, its table and Markdown, and in
`ulc eval --forget`; with a reference model the same probe runs on it; the gate
relearn_steps_min passes when steps_to_50 is null or at least the threshold (its value is
steps_to_50, or steps + 1), fails with exit 10 and the reports written, and is refused before any
work when the probe is off or could never measure it.

The digits default (models/digits/forget_digit.json, RFA) comes back to 50 % within a few steps;
a short `retrain` run never does within the probe, and the input model is at 100 % before it."""
import json

import pytest

from conftest import ROOT, run_ulc

DIGITS = ROOT / "models" / "digits"
MODEL = DIGITS / "digits_resnet.onnx"
STEPS = 6
EXIT_GATE = 10


def spec(method="rfa", **over):
    with open(DIGITS / "forget_digit.json") as f:
        s = json.load(f)
    s["data"] = {"train": str(DIGITS / "train.safetensors"),
                 "test": str(DIGITS / "test.safetensors")}
    if method != "rfa":
        del s["rfa"], s["lora"]
        s["method"] = method
        s["train"] = {"epochs": 3, "batch_size": 64, "lr": 5e-3}  # a quick, weak retrain
    s["eval"] = {"features": False, "relearn_steps": STEPS}
    for k, v in over.items():
        s[k] = {**s.get(k, {}), **v}
    return s


def forget(d, s, reports=("r.json",)):
    d.mkdir(parents=True, exist_ok=True)
    (d / "spec.json").write_text(json.dumps(s))
    args = [MODEL, "--forget", d / "spec.json", "-o", d / "out.onnx", "--threads", "2", "-q"]
    for r in reports:
        args += ["--report", d / r]
    return run_ulc(*args)


def first_at(curve, frac):
    return next((s for s, a in enumerate(curve) if a >= frac), None)


def check_recovery(rl):
    """steps_to_50/90 of a probe (or its reference) are what its forget_acc curve says."""
    assert len(rl["forget_acc"]) == STEPS + 1
    assert rl["steps_to_50"] == first_at(rl["forget_acc"], 0.5)
    assert rl["steps_to_90"] == first_at(rl["forget_acc"], 0.9)


def said(v):
    return f"not within {STEPS}" if v is None else str(v)


@pytest.fixture(scope="module")
def rfa(tmp_path_factory):
    """RFA with the input model as the reference (Df at 100 % before the probe)."""
    d = tmp_path_factory.mktemp("relearn_rfa")
    proc = forget(d, spec(eval={"reference": str(MODEL)}), reports=("r.json", "r.md", "r.html"))
    assert proc.returncode == 0, proc.stderr
    return {"dir": d, "proc": proc, "rep": json.loads((d / "r.json").read_text()),
            "md": (d / "r.md").read_text(), "html": (d / "r.html").read_text()}


@pytest.fixture(scope="module")
def retrained(tmp_path_factory):
    """A short retrain with a gate at the probe's length: Df never comes back within it."""
    d = tmp_path_factory.mktemp("relearn_retrain")
    proc = forget(d, spec("retrain", gates={"relearn_steps_min": STEPS}))
    assert proc.returncode == 0, proc.stderr
    return {"dir": d, "proc": proc, "rep": json.loads((d / "r.json").read_text())}


def test_steps_to_recover_match_the_curve(rfa):
    rl = rfa["rep"]["relearn"]
    check_recovery(rl)
    assert rl["steps"] == STEPS
    # RFA's forgetting is shallow: Df comes back within the probe
    assert rl["steps_to_50"] is not None and 0 < rl["steps_to_50"] < STEPS
    ref = rl["reference"]
    check_recovery(ref)
    assert set(ref) == {"forget_acc", "loss", "steps_to_50", "steps_to_90"}
    assert len(ref["loss"]) == STEPS
    assert ref["forget_acc"][0] == rfa["rep"]["accuracy"]["before"]["Df"] == 1.0
    assert ref["steps_to_50"] == 0 and ref["steps_to_90"] == 0
    line = (f"relearning probe: steps until Df accuracy >= 50%: {said(rl['steps_to_50'])}, "
            f">= 90%: {said(rl['steps_to_90'])} (reference: 0, 0)")
    assert line in rfa["proc"].stdout, rfa["proc"].stdout


def test_markdown_and_html_say_it(rfa):
    rl, md, html = rfa["rep"]["relearn"], rfa["md"], rfa["html"]
    s50 = rl["steps_to_50"]
    want = f"Df accuracy back to 50%: {s50} step{'' if s50 == 1 else 's'};"
    assert want in md and want in html
    assert "The reference model, probed alike" in md
    assert "| step | Df accuracy | loss | reference Df accuracy |" in md
    for k, a in enumerate(rl["forget_acc"]):
        assert f"| {k} | {100 * a:.2f}% |" in md
    assert f"| 0 | {100 * rl['forget_acc'][0]:.2f}% | — | 100.00% |" in md


def test_not_within_the_probe_is_null_and_passes_the_gate(retrained):
    rep, out = retrained["rep"], retrained["proc"].stdout
    rl = rep["relearn"]
    check_recovery(rl)
    assert rl["steps_to_50"] is None and rl["steps_to_90"] is None
    assert "reference" not in rl  # no eval.reference
    assert (f"relearning probe: steps until Df accuracy >= 50%: not within {STEPS}, >= 90%: "
            f"not within {STEPS}\n") in out
    (g,) = rep["gates"]
    assert g == {"name": "relearn_steps_min", "threshold": STEPS, "value": STEPS + 1,
                 "passed": True, "split": "Df",
                 "what": f"relearning steps until Df accuracy >= 50% ({STEPS + 1}: not within "
                         f"the probe's {STEPS})"}
    assert f"gate relearn_steps_min: passed ({STEPS + 1} >= {STEPS})" in out


@pytest.mark.slow
def test_gate_fails_below_and_passes_at_steps_to_50(rfa, tmp_path):
    s50 = rfa["rep"]["relearn"]["steps_to_50"]
    fail = forget(tmp_path / "fail", spec(gates={"relearn_steps_min": s50 + 1}),
                  reports=("r.json", "r.md"))
    assert fail.returncode == EXIT_GATE, fail.stderr
    assert (f"ulc: error: gate relearn_steps_min failed: Df accuracy back to 50% after {s50} "
            f"relearning steps < {s50 + 1}") in fail.stderr
    assert f"gate relearn_steps_min: FAILED ({s50} >= {s50 + 1})" in fail.stdout
    assert (tmp_path / "fail" / "out.onnx").exists()
    rep = json.loads((tmp_path / "fail" / "r.json").read_text())
    (g,) = rep["gates"]
    assert (g["value"], g["threshold"], g["passed"]) == (s50, s50 + 1, False)
    assert rep["relearn"]["steps_to_50"] == s50  # the same probe, the same seed
    md = (tmp_path / "fail" / "r.md").read_text()
    assert f"| {s50} | >= {s50 + 1} | **FAILED** |" in md
    ok = forget(tmp_path / "ok", spec(gates={"relearn_steps_min": s50, "forget_acc_max": 0.05}))
    assert ok.returncode == 0, ok.stderr
    gates = json.loads((tmp_path / "ok" / "r.json").read_text())["gates"]
    assert [(g["name"], g["value"], g["passed"]) for g in gates] == [
        ("forget_acc_max", 0, True), ("relearn_steps_min", s50, True)]
    # a maximum prints <=, a minimum >=
    assert "gate forget_acc_max: passed (0 <= 0.05)" in ok.stdout
    assert f"gate relearn_steps_min: passed ({s50} >= {s50})" in ok.stdout


@pytest.mark.parametrize("name,gates,ev,needle", [
    ("probe off", {"relearn_steps_min": 1}, {"relearn_steps": 0},
     "key 'gates.relearn_steps_min': the relearning probe is off (eval.relearn_steps is 0)"),
    ("more than the probe", {"relearn_steps_min": STEPS + 1}, {},
     f"key 'gates.relearn_steps_min': {STEPS + 1} is more than the probe's eval.relearn_steps "
     f"({STEPS})"),
    ("more than the default probe", {"relearn_steps_min": 11}, {"relearn_steps": 10},
     "eval.relearn_steps (10)"),
    ("zero", {"relearn_steps_min": 0}, {}, "key 'gates.relearn_steps_min': expected an integer"),
    ("not an integer", {"relearn_steps_min": 2.5}, {},
     "key 'gates.relearn_steps_min': expected an integer"),
])
def test_gate_refused_before_any_work(tmp_path, name, gates, ev, needle):
    proc = forget(tmp_path, spec(gates=gates, eval=ev), reports=("r.json", "r.md"))
    assert proc.returncode == 2, (name, proc.stderr)
    assert needle in proc.stderr, (name, proc.stderr)
    assert proc.stdout == ""
    assert not (tmp_path / "out.onnx").exists() and not list(tmp_path.glob("r.*"))


def test_ulc_eval_reference_probe(rfa, retrained):
    """`ulc eval --forget --relearn N --reference R`: the model's probe as in the report, and the
    reference's alongside (a retrained model: not within N)."""
    d, ref = rfa["dir"], retrained["dir"] / "out.onnx"
    args = ["eval", d / "out.onnx", "--forget", d / "spec.json", "--reference", ref, "--relearn",
            STEPS, "--threads", "2"]
    ev = json.loads(run_ulc(*args, "--json", check=True).stdout)
    rl = ev["relearn"]
    check_recovery(rl)
    check_recovery(rl["reference"])
    assert rl["forget_acc"] == pytest.approx(rfa["rep"]["relearn"]["forget_acc"], abs=1e-9)
    assert rl["steps_to_50"] == rfa["rep"]["relearn"]["steps_to_50"]
    assert rl["reference"]["forget_acc"] == pytest.approx(
        retrained["rep"]["relearn"]["forget_acc"], abs=1e-9)
    assert rl["reference"]["forget_acc"][0] == ev["accuracy"]["reference"]["Df"]
    assert rl["reference"]["steps_to_50"] is None and rl["reference"]["steps_to_90"] is None
    text = run_ulc(*args, check=True).stdout
    assert (f"relearning probe: steps until Df accuracy >= 50%: {said(rl['steps_to_50'])}, "
            f">= 90%: {said(rl['steps_to_90'])} (reference: not within {STEPS}, not within "
            f"{STEPS})") in text
    assert f"  step  0  {100 * rl['forget_acc'][0]:7.2f}%  reference    0.00%" in text


def test_gate_refused_where_the_probe_does_not_run(tmp_path):
    """A classifier fed two inputs gets no probe: the gate is refused (exit 4) before any work."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from safetensors.numpy import load_file, save_file
    w = numpy_helper.from_array(np.zeros((64, 10), np.float32), "w")
    w2 = numpy_helper.from_array(np.zeros((4, 10), np.float32), "w2")
    g = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"]),
         helper.make_node("MatMul", ["flat", "w"], ["a"]),
         helper.make_node("MatMul", ["extra", "w2"], ["b"]),
         helper.make_node("Add", ["a", "b"], ["logits"])], "two",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 8, 8]),
         helper.make_tensor_value_info("extra", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], [w, w2])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]),
              str(tmp_path / "two.onnx"))
    tr = load_file(str(DIGITS / "train.safetensors"))
    tr["extra"] = np.zeros((len(tr["label"]), 4), np.float32)
    save_file(tr, str(tmp_path / "train.safetensors"))
    (tmp_path / "spec.json").write_text(json.dumps(
        {"method": "finetune", "data": {"train": "train.safetensors"}, "forget": {"classes": [3]},
         "model": {"input": "input", "output": "logits"}, "gates": {"relearn_steps_min": 2}}))
    proc = run_ulc(tmp_path / "two.onnx", "--forget", tmp_path / "spec.json", "-o",
                   tmp_path / "out.onnx", "--report", tmp_path / "r.json", "-q")
    assert proc.returncode == 4, proc.stderr
    assert ("key 'gates.relearn_steps_min': the relearning probe feeds a classifier one input; "
            in proc.stderr), proc.stderr
    assert not (tmp_path / "out.onnx").exists() and not (tmp_path / "r.json").exists()
