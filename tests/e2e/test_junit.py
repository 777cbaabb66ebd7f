"""CI verdicts of the main command (docs/ci.md): `--junit PATH` writes the spec's gates as JUnit
XML — one testsuite "ulc.gates", a testcase per gate in the report's order, a <failure> with the
measured value against the limit for each failed gate, the report's numbers as properties —
that parses, has the structure JUnit consumers require, escapes every attribute, and is the
same bytes on a rerun but for the time attributes; it is written when gates fail (exit 10) and
when the spec has none (zero testcases). `--github-annotations` prints one exact `::error` line
per failed gate on stdout and nothing for passed ones. An unwritable, aliasing or directory
--junit path is refused before any work. Runs are one epoch of rfa on digits (well under a
second each)."""
import json
import math
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest
import yaml

from conftest import ROOT, run_ulc, ulc_bin

DIGITS = ROOT / "models" / "digits"
MODEL = DIGITS / "digits_resnet.onnx"
EXIT_GATE = 10
RELEARN = 3  # eval.relearn_steps: a short probe
# one epoch of rfa does not forget digit 3 (Dft accuracy ~0.35) and Df accuracy is back to 50 %
# after one probe step: forget_acc_max and relearn_steps_min fail, the other two pass
FAILING = {"forget_acc_max": 0.05, "retain_acc_drop_max": 0.02, "mia_max": 0.5,
           "relearn_steps_min": 2}
PASSING = {"retain_acc_drop_max": 1, "mia_max": 1}


def spec(gates=None):
    s = {"method": "rfa",
         "data": {"train": str(DIGITS / "train.safetensors"),
                  "test": str(DIGITS / "test.safetensors")},
         "forget": {"classes": [3]},
         "lora": {"rank": 8, "alpha": 32},
         "train": {"epochs": 1, "batch_size": 128, "lr": 5e-3, "seed": 0},
         "eval": {"relearn_steps": RELEARN}}
    if gates is not None:
        s["gates"] = gates
    return s


def forget(d, sp, *extra, junit="gates.xml"):
    d.mkdir(parents=True, exist_ok=True)
    (d / "spec.json").write_text(json.dumps(sp))
    args = [MODEL, "--forget", d / "spec.json", "-o", d / "out.onnx", "--report", d / "r.json",
            "--threads", "2", "-q"]
    if junit:
        args += ["--junit", d / junit]
    return run_ulc(*args, *extra)


def number(v):
    """A number as JSON (and ulc's properties) print it: 15 digits, or 17 when 15 do not read
    back."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, int) or (isinstance(v, float) and v.is_integer() and abs(v) < 1e15):
        return str(int(v))
    s = "%.15g" % v
    return s if float(s) == v else "%.17g" % v


def scalar(v):
    return v if isinstance(v, str) else number(v)


def flatten(obj, key=""):
    """docs/ci.md's rule: members joined with '.', list items as [i], a list of scalars as one
    value joined with ','; timings, teacher_cache and per-step loss lists left out."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k == "seconds" or k.endswith("_seconds") or k == "teacher_cache":
                continue
            if isinstance(v, list) and k in ("loss_curve", "loss"):
                continue
            out.update(flatten(v, f"{key}.{k}" if key else k))
        return out
    if isinstance(obj, list):
        if all(not isinstance(e, (dict, list)) for e in obj):
            return {key: ",".join(scalar(e) for e in obj)}
        out = {}
        for i, e in enumerate(obj):
            out.update(flatten(e, f"{key}[{i}]"))
        return out
    return {key: scalar(obj)}


def same_props(props, want):
    """props equal to want, numbers within 1e-14: the JSON report's numbers are cJSON's 15 digits
    when those read back within an epsilon, the properties the exact double's 17."""
    assert props.keys() == want.keys()
    for k, v in want.items():
        a, b = props[k].split(","), v.split(",")
        assert len(a) == len(b), k
        for x, y in zip(a, b):
            if x != y:
                assert math.isclose(float(x), float(y), rel_tol=1e-14), (k, x, y)


def check_structure(root):
    """The structure JUnit consumers (Jenkins' junit-10.xsd, GitLab, the GitHub report actions)
    require: <testsuites> holding one <testsuite name tests ...> with <properties> (each
    <property name value>) first, then <testcase name classname time> elements, a failed one
    holding <failure message type>; counts that match; numeric times; no timestamp."""
    assert root.tag == "testsuites"
    (suite,) = list(root)
    assert suite.tag == "testsuite" and suite.get("name") == "ulc.gates"
    kids = list(suite)
    assert kids[0].tag == "properties" and all(k.tag == "testcase" for k in kids[1:])
    props = list(kids[0])
    assert props and all(p.tag == "property" and set(p.attrib) == {"name", "value"}
                         for p in props)
    cases = kids[1:]
    for c in cases:
        assert set(c.attrib) == {"classname", "name", "time"} and c.get("classname") == "ulc.gates"
        assert float(c.get("time")) == 0
        for f in c:
            assert f.tag == "failure" and set(f.attrib) == {"message", "type"}
    failures = sum(1 for c in cases if c.find("failure") is not None)
    for el in (root, suite):
        assert int(el.get("tests")) == len(cases)
        assert int(el.get("failures")) == failures and el.get("errors") == "0"
        assert math.isfinite(float(el.get("time"))) and float(el.get("time")) >= 0
        assert "timestamp" not in el.attrib and "hostname" not in el.attrib
    assert suite.get("skipped") == "0"
    names = [p.get("name") for p in props]
    assert len(names) == len(set(names))
    return suite, {p.get("name"): p.get("value") for p in props}, cases


def without_time(xml_bytes):
    return re.sub(rb' time="[0-9.]+"', b"", xml_bytes)


@pytest.fixture(scope="module")
def failing(tmp_path_factory):
    d = tmp_path_factory.mktemp("failing")
    proc = forget(d, spec(FAILING), "--github-annotations")
    return {"dir": d, "proc": proc, "rep": json.loads((d / "r.json").read_text()),
            "xml": (d / "gates.xml").read_bytes()}


def test_failed_gates_exit_10_with_a_testcase_per_gate(failing):
    proc, rep = failing["proc"], failing["rep"]
    assert proc.returncode == EXIT_GATE, proc.stderr
    assert (failing["dir"] / "out.onnx").exists()
    suite, props, cases = check_structure(ET.fromstring(failing["xml"]))
    assert [c.get("name") for c in cases] == [g["name"] for g in rep["gates"]] == list(FAILING)
    assert (suite.get("tests"), suite.get("failures")) == ("4", "2")
    # the failure message is the stderr line's reason: the measured value against the limit
    errs = [ln.split(" failed: ", 1) for ln in proc.stderr.splitlines()
            if ln.startswith("ulc: error: gate ")]
    failed = {c.get("name"): c.find("failure") for c in cases if c.find("failure") is not None}
    assert list(failed) == ["forget_acc_max", "relearn_steps_min"]
    assert [(n[len("ulc: error: gate "):], m) for n, m in errs] == \
        [(k, f.get("message")) for k, f in failed.items()]
    dft = rep["accuracy"]["after"]["Dft"]
    s50 = rep["relearn"]["steps_to_50"]
    assert failed["forget_acc_max"].get("message") == f"Dft accuracy {dft:.4g} > 0.05"
    assert failed["relearn_steps_min"].get("message") == \
        f"Df accuracy back to 50% after {s50} relearning steps < 2"
    assert failed["forget_acc_max"].get("type") == "ulc.gate"
    m = re.fullmatch(r"value (\S+), threshold 0\.05 \(passes when value <= threshold\); "
                     r"measured on Dft: Dft accuracy", failed["forget_acc_max"].text)
    assert m and float(m[1]) == pytest.approx(dft, rel=1e-14)
    assert float(suite.get("time")) == pytest.approx(rep["wall_seconds"], abs=1e-3)


def test_properties_are_the_flattened_report(failing):
    rep = failing["rep"]
    _, props, _ = check_structure(ET.fromstring(failing["xml"]))
    same_props(props, flatten(rep))
    # the metrics CI dashboards want, by name
    for k, v in (("accuracy.after.Dft", rep["accuracy"]["after"]["Dft"]),
                 ("accuracy.before.Drt", rep["accuracy"]["before"]["Drt"]),
                 ("mia.entropy", rep["mia"]["entropy"])):
        assert float(props[k]) == pytest.approx(v, rel=1e-14)
    assert props["relearn.steps_to_50"] == str(rep["relearn"]["steps_to_50"])
    assert props["relearn.forget_acc"].count(",") == RELEARN
    assert props["forget.classes"] == "3" and props["method"] == "rfa"
    assert props["output.sha256"] == rep["output"]["sha256"]
    assert not [k for k in props if "seconds" in k or "loss_curve" in k]


def test_annotations_one_exact_line_per_failed_gate(failing):
    proc, rep = failing["proc"], failing["rep"]
    dft = rep["accuracy"]["after"]["Dft"]
    s50 = rep["relearn"]["steps_to_50"]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("::")]
    assert lines == [
        f"::error title=ulc gate forget_acc_max::Dft accuracy {dft:.4g} > 0.05",
        # '%' is escaped as GitHub's workflow commands require
        f"::error title=ulc gate relearn_steps_min::Df accuracy back to 50%25 after {s50} "
        "relearning steps < 2"]
    assert proc.stdout.endswith(lines[-1] + "\n")  # after the table: the last thing printed


def test_passing_gates_no_failures_no_annotations_same_bytes(tmp_path):
    runs = [forget(tmp_path / str(k), spec(PASSING), "--github-annotations") for k in range(2)]
    for proc in runs:
        assert proc.returncode == 0, proc.stderr
        assert "::" not in proc.stdout
    xml = [(tmp_path / str(k) / "gates.xml").read_bytes() for k in range(2)]
    suite, props, cases = check_structure(ET.fromstring(xml[0]))
    assert [c.get("name") for c in cases] == list(PASSING)
    assert suite.get("failures") == "0" and all(len(c) == 0 for c in cases)
    # a rerun gives the same bytes but for the wall time (paths differ: compare without them)
    a, b = (without_time(x).replace(str(tmp_path / str(k)).encode(), b"D")
            for k, x in enumerate(xml))
    assert a == b
    assert not list(tmp_path.glob("*/.*ulc-tmp*"))  # written through a temporary, renamed


def test_no_gates_is_a_suite_of_zero_testcases(tmp_path):
    proc = forget(tmp_path, spec())
    assert proc.returncode == 0, proc.stderr
    suite, props, cases = check_structure(ET.fromstring((tmp_path / "gates.xml").read_bytes()))
    assert cases == [] and suite.get("tests") == "0" and suite.get("failures") == "0"
    rep = json.loads((tmp_path / "r.json").read_text())
    same_props(props, flatten(rep))
    assert props["gates"] == ""


def test_attributes_are_escaped(tmp_path):
    d = tmp_path / "a&b<c>d\"e'f\tg"
    proc = forget(d, spec({"forget_acc_max": 0.05}), junit="v&<>\"'.xml")
    assert proc.returncode == EXIT_GATE, proc.stderr
    raw = (d / "v&<>\"'.xml").read_bytes()
    for ent in (b"&amp;", b"&lt;", b"&gt;", b"&quot;", b"&apos;", b"&#9;"):
        assert ent in raw
    _, props, cases = check_structure(ET.fromstring(raw))
    assert props["spec.path"] == str(d / "spec.json")  # the tab survives as &#9;
    assert props["output.path"] == str(d / "out.onnx")
    assert cases[0].find("failure").get("message").endswith(" > 0.05")


def test_unwritable_or_aliasing_junit_path_is_refused(tmp_path):
    sp = spec(FAILING)
    proc = forget(tmp_path / "a", sp, junit="no/such/dir/gates.xml")
    assert proc.returncode == 3
    assert "JUnit file '" in proc.stderr and "no/such/dir' does not exist" in proc.stderr
    assert not (tmp_path / "a" / "out.onnx").exists()  # refused before any work
    (tmp_path / "b" / "sub").mkdir(parents=True)
    proc = forget(tmp_path / "b", sp, junit="sub")
    assert proc.returncode == 1 and "is a directory" in proc.stderr
    # never over the spec, the model or the output
    proc = forget(tmp_path / "c", sp, junit="spec.json")
    assert proc.returncode == 1 and "JUnit file would overwrite an input" in proc.stderr
    assert json.loads((tmp_path / "c" / "spec.json").read_text()) == sp
    proc = forget(tmp_path / "c", sp, junit="out.onnx")
    assert proc.returncode == 1 and "would overwrite the output" in proc.stderr
    proc = forget(tmp_path / "c", sp, "--junit", MODEL, junit=None)
    assert proc.returncode == 1 and "refusing to overwrite the input model" in proc.stderr
    proc = forget(tmp_path / "c", sp, junit="r.json")  # also the --report
    assert proc.returncode == 1 and "is also a report" in proc.stderr
    assert not (tmp_path / "c" / "out.onnx").exists()
    proc = forget(tmp_path / "c", sp, "--junit", junit=None)
    assert proc.returncode == 1 and "--junit needs a value" in proc.stderr


def test_read_only_folder(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        proc = forget(tmp_path, spec(FAILING), junit="ro/gates.xml")
    finally:
        ro.chmod(0o755)
    assert proc.returncode == 3 and "ro" in proc.stderr, proc.stderr
    assert not (tmp_path / "out.onnx").exists()


def recipe_scripts():
    """docs/ci.md's two workflows, parsed as YAML: the GitHub forget step's script and JUnit path
    of the report action, GitLab's script and artifacts:reports:junit path."""
    gh, gl = (yaml.safe_load(b) for b in
              re.findall(r"```yaml\n(.*?)```", (ROOT / "docs" / "ci.md").read_text(), re.S))
    steps = gh["jobs"]["forget"]["steps"]
    run = next(s["run"] for s in steps if "--junit" in s.get("run", ""))
    action = next(s for s in steps if s.get("uses", "").startswith("mikepenz/action-junit-report"))
    job = gl["sanitise-model"]
    return [("github", run, action["with"]["report_paths"]),
            ("gitlab", "\n".join(job["script"]), job["artifacts"]["reports"]["junit"])]


@pytest.mark.parametrize("gates", [FAILING, PASSING], ids=["failing", "passing"])
def test_ci_recipes_forget_step_runs_as_written(tmp_path, gates):
    """The forget step of each recipe, run as written by bash in a model repository laid out as
    docs/ci.md has it (models/classifier.onnx; unlearn/ with the spec and its data)."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "ulc").symlink_to(ulc_bin())
    env = dict(os.environ, PATH=f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    for name, script, junit in recipe_scripts():
        repo = tmp_path / name
        (repo / "models").mkdir(parents=True)
        (repo / "unlearn").mkdir()
        shutil.copy(MODEL, repo / "models" / "classifier.onnx")
        for f in ("train.safetensors", "test.safetensors"):
            (repo / "unlearn" / f).symlink_to(DIGITS / f)
        sp = spec(gates)
        sp["data"] = {"train": "train.safetensors", "test": "test.safetensors"}
        (repo / "unlearn" / "spec.json").write_text(json.dumps(sp))
        proc = subprocess.run(["bash", "-e", "-c", script], cwd=repo, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == (EXIT_GATE if gates is FAILING else 0), (name, proc.stderr)
        _, _, cases = check_structure(ET.fromstring((repo / junit).read_bytes()))
        assert [c.get("name") for c in cases] == list(gates)
        assert (repo / "reports" / "unlearning.html").exists()
        annotations = [ln for ln in proc.stdout.splitlines() if ln.startswith("::error ")]
        assert len(annotations) == (2 if gates is FAILING and name == "github" else 0)
        # GitLab publishes dist/ always: a model that failed a gate is removed first
        published = gates is PASSING or name == "github"
        assert (repo / "dist" / "classifier.onnx").exists() == published


def test_what_xml_cannot_hold_becomes_u_fffd(tmp_path):
    # a control character and a byte that is not UTF-8 (0xff) in the folder's name
    d = tmp_path / "c\x01d\udcffe"
    d.mkdir()
    (d / "spec.json").write_text(json.dumps(spec({"mia_max": 1})))
    proc = subprocess.run([ulc_bin(), MODEL, "--forget", d / "spec.json", "-o", d / "out.onnx",
                           "--junit", d / "gates.xml", "--threads", "2", "-q"],
                          capture_output=True, timeout=300)  # bytes: the paths are not UTF-8
    assert proc.returncode == 0, proc.stderr
    raw = (d / "gates.xml").read_bytes()
    raw.decode("utf-8")  # strict
    _, props, _ = check_structure(ET.fromstring(raw))
    assert props["spec.path"] == str(tmp_path / "c\ufffdd\ufffde" / "spec.json")
