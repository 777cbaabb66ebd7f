"""The main command's reports and gates (docs/spec.md, "The report" and "Gates"): one run
writes JSON, Markdown and HTML reports that agree; the HTML page is self-contained and
headless Chromium renders its SVG charts (a PNG with the bar colours, not blank); a failed gate
exits 10 naming the gate, its value and threshold, with the model and reports still written;
passing gates exit 0 and are listed; bad gates and method keys are refused before any work."""
import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import ROOT, run_ulc

DIGITS = ROOT / "models" / "digits"
MODEL = DIGITS / "digits_resnet.onnx"
BEFORE_RGB = (0x4e, 0x79, 0xa7)  # eval/report.c: COLOR_BEFORE
AFTER_RGB = (0xe1, 0x57, 0x59)   # COLOR_AFTER
EXIT_GATE = 10


def base_spec(**over):
    with open(DIGITS / "forget_digit.json") as f:
        spec = json.load(f)
    spec["data"] = {"train": str(DIGITS / "train.safetensors"),
                    "test": str(DIGITS / "test.safetensors")}
    if over.get("method", "rfa") != "rfa":  # the default's rfa and lora keys are rfa's
        del spec["rfa"], spec["lora"]
    spec.update(over)
    return spec


def forget(tmp_path, spec, reports=("report.json",), extra=()):
    sp = tmp_path / "spec.json"
    sp.write_text(json.dumps(spec))
    args = [MODEL, "--forget", sp, "-o", tmp_path / "out.onnx", "--threads", "2", "-q"]
    for r in reports:
        args += ["--report", tmp_path / r]
    return run_ulc(*args, *extra)


@pytest.fixture(scope="module")
def digits_reports(tmp_path_factory):
    d = tmp_path_factory.mktemp("reports")
    gates = {"forget_acc_max": 0.05, "retain_acc_drop_max": 0.02, "mia_max": 0.5}
    # the input as the reference: its activation distance to itself is 0 ("before")
    spec = base_spec(gates=gates, eval={"reference": str(MODEL), "relearn_steps": 6})
    proc = forget(d, spec, reports=("r.json", "r.md", "r.html"))
    assert proc.returncode == 0, proc.stderr
    return {"dir": d, "proc": proc, "rep": json.loads((d / "r.json").read_text()),
            "md": (d / "r.md").read_text(), "html": (d / "r.html").read_text()}


def test_json_has_per_class_loss_curve_mia_and_gates(digits_reports):
    rep = digits_reports["rep"]
    lc = rep["train"]["loss_curve"]
    assert len(lc) == rep["train"]["steps"] == 60
    assert lc[0] == pytest.approx(rep["train"]["first_loss"], rel=1e-6)
    assert lc[-1] == pytest.approx(rep["train"]["last_loss"], rel=1e-6)
    for which, rows in (("train", 1437), ("test", 360)):
        pc = rep["per_class"][which]
        assert [e["class"] for e in pc] == list(range(10))
        assert sum(e["rows"] for e in pc) == rows
        for e in pc:
            assert e["forget"] == (e["class"] == 3)
            assert 0 <= e["before"] <= 1 and 0 <= e["after"] <= 1
    # per-class tallies add up to the splits' accuracy
    pc = {e["class"]: e for e in rep["per_class"]["test"]}
    ok = sum(e["after"] * e["rows"] for c, e in pc.items() if c != 3)
    assert ok / sum(e["rows"] for c, e in pc.items() if c != 3) == \
        pytest.approx(rep["accuracy"]["after"]["Drt"])
    assert pc[3]["after"] == pytest.approx(rep["accuracy"]["after"]["Dft"])
    mia = rep["mia"]
    assert 0 <= mia["entropy"] <= 1 and 0 <= mia["before"]["entropy"] <= 1
    assert mia["rows"] == {"members": 1291, "nonmembers": 323, "target": 146}
    gates = {g["name"]: g for g in rep["gates"]}
    assert list(gates) == ["forget_acc_max", "retain_acc_drop_max", "mia_max"]
    assert gates["forget_acc_max"]["value"] == rep["accuracy"]["after"]["Dft"]
    assert gates["retain_acc_drop_max"]["value"] == pytest.approx(
        rep["accuracy"]["before"]["Drt"] - rep["accuracy"]["after"]["Drt"])
    assert gates["mia_max"]["value"] == mia["entropy"]
    assert all(g["passed"] for g in gates.values())
    assert gates["forget_acc_max"]["threshold"] == 0.05
    out = digits_reports["proc"].stdout
    assert "gate forget_acc_max: passed" in out and "report: " in out
    assert digits_reports["proc"].stderr == ""  # -q: no progress, no pass summaries


def test_markdown_matches_json(digits_reports):
    rep, md = digits_reports["rep"], digits_reports["md"]
    for split, rows in rep["splits"].items():
        b, a = rep["accuracy"]["before"][split], rep["accuracy"]["after"][split]
        assert re.search(rf"\| {split} \| [^|]+ \| {rows['rows']} \| {100 * b:.2f}% \| "
                         rf"{100 * a:.2f}% \|", md), split
    for e in rep["per_class"]["train"]:
        label = f"{e['class']} (forget)" if e["forget"] else str(e["class"])
        assert f"| {label} | {e['rows']} | {100 * e['before']:.2f}% | {100 * e['after']:.2f}% |" \
            in md
    for g in rep["gates"]:
        assert f"| {g['name']} |" in md and "passed" in md
    assert rep["output"]["sha256"] in md and rep["input"]["sha256"] in md
    assert "## Training" in md and "| steps | 60 |" in md


def test_html_is_self_contained_with_charts(digits_reports):
    html, rep = digits_reports["html"], digits_reports["rep"]
    assert html.startswith("<!DOCTYPE html>")
    # nothing from elsewhere: no scripts, links, images or remote URLs (SVG's namespace aside)
    assert not re.search(r"<script|<link|<img|<iframe|src=|href=|url\(|@import", html, re.I)
    assert set(re.findall(r"https?://[^\"' ]+", html)) <= {"http://www.w3.org/2000/svg"}
    # splits (+MIA), per class train and test, per-layer CKA, relearning probe, loss curve
    assert html.count("<svg") == 6
    assert "MIA entropy" in html
    curves = re.findall(r'aria-label="([^"]+)">(?:(?!</svg>).)*?<polyline[^>]*points="([^"]+)"',
                        html, re.S)
    curves = {label: pts.split() for label, pts in curves}
    assert len(curves["Training loss per step"]) == rep["train"]["steps"]
    assert len(curves["Df accuracy while fine-tuning on Df"]) == 7  # steps 0..6
    assert "Linear CKA per layer" in html and "Activation distance to the reference" in html
    assert html.count('fill="#4e79a7"') >= 10 and html.count('fill="#e15759"') >= 10
    assert rep["output"]["sha256"] in html


def test_extra_metrics_are_ulc_evals(digits_reports):
    """The report's features, relearning probe and activation distance are `ulc eval --forget`'s
    numbers for the output (the same code, docs/metrics.md), and the text forms show them."""
    d, rep = digits_reports["dir"], digits_reports["rep"]
    ev = run_ulc("eval", d / "out.onnx", "--forget", d / "spec.json", "--original", MODEL,
                 "--reference", MODEL, "--relearn", "6", "--json", "--threads", "2")
    assert ev.returncode == 0, ev.stderr
    ev = json.loads(ev.stdout)
    assert rep["reference"]["path"] == str(MODEL)
    assert rep["activation_distance"]["original"] == pytest.approx(0, abs=1e-9)
    assert rep["activation_distance"]["model"] == pytest.approx(
        ev["activation_distance"]["model"], rel=1e-6)
    assert rep["activation_distance"]["model"] > 0.1  # the output moved away on Df
    fe, fe_ev = rep["features"], ev["features"]
    assert (fe["rows_forget"], fe["rows_retain"]) == (146, 256)
    assert [e["name"] for e in fe["layers"]] == [e["name"] for e in fe_ev["layers"]]
    assert len(fe["layers"]) == 6
    for a, b in zip(fe["layers"], fe_ev["layers"]):
        for k in ("l1_forget", "l1_retain", "cka_forget", "cka_retain"):
            assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6), (a["name"], k)
    # RFA leaves the stem alone and moves the logits most on the forget rows
    assert fe["layers"][0]["cka_forget"] == pytest.approx(1.0)
    assert fe["layers"][-1]["cka_forget"] < fe["layers"][-1]["cka_retain"]
    rl, rl_ev = rep["relearn"], ev["relearn"]
    assert rl["steps"] == 6 and rl["lr"] == 1e-3 and rl["forget_rows"] == 146
    assert rl["forget_acc"] == pytest.approx(rl_ev["forget_acc"], abs=1e-9)
    assert rl["loss"] == pytest.approx(rl_ev["loss"], rel=1e-5)
    assert rl["forget_acc"][0] == rep["accuracy"]["after"]["Df"]
    assert rl["forget_acc"][-1] > rl["forget_acc"][0]  # the probe trains: Df comes back
    # eval.reference / --reference: the same probe on the reference (here the input: 100 %)
    assert rl["reference"]["forget_acc"] == pytest.approx(rl_ev["reference"]["forget_acc"],
                                                          abs=1e-9)
    assert rl["reference"]["forget_acc"][0] == 1.0 and rl["reference"]["steps_to_50"] == 0
    assert (rl["steps_to_50"], rl["steps_to_90"]) == (rl_ev["steps_to_50"], rl_ev["steps_to_90"])
    assert rep["hyperparameters"]["eval"] == {"features": True, "relearn_steps": 6,
                                              "relearn_lr": 1e-3}
    md, out = digits_reports["md"], digits_reports["proc"].stdout
    assert "## Relearning probe" in md and "## Features against the input model" in md
    for k, a in enumerate(rl["forget_acc"]):
        assert f"| {k} | {100 * a:.2f}% |" in md
    assert f"| 6 | {fe['layers'][-1]['name']} | 10 |" in md
    assert "eval.reference" in md and "relearning probe" in out and "mean linear CKA" in out


def test_extra_metrics_can_be_turned_off(tmp_path):
    spec = base_spec(train={"epochs": 1, "lr": 1e-7, "batch_size": 512},
                     eval={"features": False, "relearn_steps": 0})
    proc = forget(tmp_path, spec, reports=("r.json", "r.html"))
    assert proc.returncode == 0, proc.stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    assert not {"features", "relearn", "activation_distance", "reference"} & set(rep)
    assert (tmp_path / "r.html").read_text().count("<svg") == 4


def chromium():
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_html_renders_in_chromium(digits_reports, tmp_path):
    exe = chromium()
    if exe is None:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail("CI: chromium is not installed (scripts/setup.sh installs Debian's "
                        "chromium); the HTML report must be rendered")
        pytest.skip("chromium is not installed (scripts/setup.sh installs it)")
    from PIL import Image
    png = tmp_path / "report.png"
    page = (digits_reports["dir"] / "r.html").resolve()
    proc = subprocess.run([exe, "--headless", "--disable-gpu", "--no-sandbox",
                           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={png}",
                           "--window-size=1200,1600", page.as_uri()],
                          capture_output=True, text=True, timeout=180)
    assert png.exists(), proc.stderr
    img = Image.open(png).convert("RGB")
    assert img.size == (1200, 1600)
    colors = img.getcolors(maxcolors=1 << 20)
    assert colors and len(colors) > 50, "the page rendered (nearly) blank"
    counts = {c: n for n, c in colors}

    def near(rgb, tol=6):
        return sum(n for c, n in counts.items() if all(abs(c[i] - rgb[i]) <= tol for i in range(3)))
    # the split chart and the per-class chart are above the fold: big areas of both bar colours
    assert near(BEFORE_RGB) > 20000, "no 'before' bars in the screenshot"
    assert near(AFTER_RGB) > 10000, "no 'after' bars in the screenshot"
    white = counts.get((255, 255, 255), 0)
    assert white < 0.9 * 1200 * 1600


def test_failed_gate_exits_10_and_still_writes(tmp_path):
    spec = base_spec(train={"epochs": 1, "lr": 1e-7, "batch_size": 128},
                     gates={"forget_acc_max": 0.05, "retain_acc_drop_max": 0.5})
    proc = forget(tmp_path, spec, reports=("r.json", "r.html", "r.md"))
    assert proc.returncode == EXIT_GATE, proc.stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    dft = rep["accuracy"]["after"]["Dft"]
    assert dft > 0.05
    assert f"ulc: error: gate forget_acc_max failed: Dft accuracy {dft:.4g} > 0.05" in proc.stderr
    assert "retain_acc_drop_max" not in proc.stderr  # it passed
    assert (tmp_path / "out.onnx").exists() and (tmp_path / "r.html").exists()
    assert "FAILED" in (tmp_path / "r.md").read_text()
    gates = {g["name"]: g for g in rep["gates"]}
    assert gates["forget_acc_max"] == {"name": "forget_acc_max", "threshold": 0.05, "value": dft,
                                       "passed": False, "split": "Dft",
                                       "what": "Dft accuracy"}
    assert gates["retain_acc_drop_max"]["passed"] is True


def test_no_gates_is_an_empty_list(tmp_path):
    spec = base_spec(train={"epochs": 1, "lr": 1e-7, "batch_size": 512})
    proc = forget(tmp_path, spec)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "report.json").read_text())["gates"] == []


def other_interface_model(path):
    """A classifier of 3-channel 8x8 inputs: digits' output, another input shape."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    w = numpy_helper.from_array(np.zeros((192, 10), np.float32), "w")
    g = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"]),
         helper.make_node("MatMul", ["flat", "w"], ["logits"])], "other",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], [w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize("name,over,code,needle", [
    ("gate out of range", {"gates": {"forget_acc_max": 1.5}}, 2, "'gates.forget_acc_max'"),
    ("unknown gate", {"gates": {"forget_acc_min": 0.1}}, 2, "unknown key 'gates.forget_acc_min'"),
    ("mia gate without test data", {"gates": {"mia_max": 0.5},
                                    "data": {"train": str(DIGITS / "train.safetensors")}},
     2, "'gates.mia_max'"),
    ("unknown method", {"method": "forgetful"}, 2, "unknown method 'forgetful'"),
    ("another method's key", {"method": "delete", "scrub": {"alpha": 1}}, 2,
     "key 'scrub' configures method scrub"),
    ("bad delete mask", {"method": "delete", "delete": {"mask": "some"}}, 2, "'delete.mask'"),
    ("bad delete retain", {"method": "delete", "delete": {"retain": "some"}}, 2, "'delete.retain'"),
    ("all_forget needs classes", {"method": "delete", "delete": {"mask": "all_forget"},
                                  "forget": {"indices": [1, 2]}}, 2, "'delete.mask'"),
    ("bad train what", {"method": "finetune", "finetune": {"train": "some"}}, 2,
     "'finetune.train'"),
    ("retrain trains all", {"method": "retrain", "retrain": {"train": "lora"}}, 2,
     "'retrain.train'"),
    ("lora without lora training", {"method": "neggrad", "lora": {"rank": 4}}, 2, "key 'lora'"),
    ("momentum with adamw", {"train": {"momentum": 0.9}}, 2, "'train.momentum'"),
    ("unknown eval key", {"eval": {"relearn": 5}}, 2, "unknown key 'eval.relearn'"),
    ("eval features not a bool", {"eval": {"features": "yes"}}, 2, "'eval.features'"),
    ("negative relearn steps", {"eval": {"relearn_steps": -1}}, 2, "'eval.relearn_steps'"),
    ("zero relearn lr", {"eval": {"relearn_lr": 0}}, 2, "'eval.relearn_lr'"),
    ("missing reference", {"eval": {"reference": "nowhere.onnx"}}, 3, "'eval.reference'"),
    ("reference of another model", {"eval": {"reference": "OTHER"}}, 2, "other inputs"),
])
def test_bad_gates_and_methods_refused_before_work(tmp_path, name, over, code, needle):
    if over.get("eval", {}).get("reference") == "OTHER":
        over = {"eval": {"reference": str(other_interface_model(tmp_path / "other.onnx"))}}
    proc = forget(tmp_path, base_spec(**over), reports=("r.json", "r.html"))
    assert proc.returncode == code, (name, proc.stderr)
    assert needle in proc.stderr, (name, proc.stderr)
    assert not (tmp_path / "out.onnx").exists()
    assert not list(tmp_path.glob("r.*"))


def test_same_report_twice_is_refused(tmp_path):
    proc = forget(tmp_path, base_spec(), reports=("r.md", "r.md"))
    assert proc.returncode == 1 and "given twice" in proc.stderr
    assert not (tmp_path / "out.onnx").exists()
