"""`ulc inspect` and the unlearning history a model keeps in its metadata (key "ulc_history",
jobs/history.h; docs/cli.md): after a forget run on the digits default, the text report has one
line per request (method, what it forgot, ulc's version, the spec's hash) and --json a "history"
list of the parsed entries; a model without one has an empty list and no history lines; a
malformed history is refused naming the file and the key (exit 2, nothing on stdout)."""
import hashlib
import json
import re

import onnx
import pytest

from conftest import ROOT, run_ulc

DIGITS = ROOT / "models" / "digits"
MODEL = DIGITS / "digits_resnet.onnx"
SPEC = DIGITS / "forget_digit.json"


@pytest.fixture(scope="module")
def unlearned(tmp_path_factory):
    out = tmp_path_factory.mktemp("history") / "out.onnx"
    r = run_ulc(MODEL, "--forget", SPEC, "-o", out, "-q", "--threads", "2")
    assert r.returncode == 0, r.stderr
    return out


def with_history(tmp_path, value, name="model.onnx"):
    """The digits model with metadata ulc_history = value."""
    m = onnx.load(str(MODEL))
    p = m.metadata_props.add()
    p.key, p.value = "ulc_history", value
    path = tmp_path / name
    onnx.save(m, str(path))
    return path


def test_inspect_prints_the_request(unlearned):
    r = run_ulc("inspect", unlearned)
    assert r.returncode == 0, r.stderr
    spec_sha = hashlib.sha256(SPEC.read_bytes()).hexdigest()
    assert "\nhistory:   1 unlearning request\n" in r.stdout, r.stdout
    assert re.search(rf"^  1\. rfa: forgot class 3 \(ulc \d+\.\d+\.\d+, spec sha256 "
                     rf"{spec_sha[:12]}\)$", r.stdout, re.M), r.stdout


def test_inspect_json_lists_the_parsed_entries(unlearned):
    r = run_ulc("inspect", unlearned, "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["history"] == json.loads(info["metadata"]["ulc_history"])
    (entry,) = info["history"]
    assert entry["method"] == "rfa" and entry["forget"] == {"classes": [3]}
    assert entry["spec_sha256"] == hashlib.sha256(SPEC.read_bytes()).hexdigest()
    assert "rfa{" in entry["passes"] and "lora-merge" in entry["passes"]


def test_no_history(tmp_path):
    r = run_ulc("inspect", MODEL)
    assert r.returncode == 0 and "history" not in r.stdout, r.stdout
    assert json.loads(run_ulc("inspect", MODEL, "--json").stdout)["history"] == []


def test_rows_and_several_requests(tmp_path):
    sha = "ab" * 32
    hist = [{"ulc": "0.1.0", "method": "scrub", "passes": "scrub",
             "forget": {"rows": [4, 17, 20], "data_sha256": sha, "data_rows": 1437}},
            {"ulc": "0.1.0", "method": "rfa", "forget": {"classes": [1, 7]}}]
    path = with_history(tmp_path, json.dumps(hist))
    r = run_ulc("inspect", path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith("history:   2 unlearning requests\n"
                             "  1. scrub: forgot 3 of 1437 rows of data sha256 abababababab "
                             "(ulc 0.1.0)\n"
                             "  2. rfa: forgot classes 1, 7 (ulc 0.1.0)\n"), r.stdout
    assert json.loads(run_ulc("inspect", path, "--json").stdout)["history"] == hist


@pytest.mark.parametrize("value, needle", [
    ("not json", "expected a JSON list of unlearning requests"),
    ('{"method": "rfa"}', "expected a JSON list of unlearning requests"),
    ('[{"method": "rfa", "forget": {"classes": [3]}}, {"method": 1}]', "request 2 is not"),
    ('[{"method": "rfa", "forget": {"rows": [1]}}]', "request 1 is not"),
])
@pytest.mark.parametrize("json_flag", [(), ("--json",)])
def test_malformed_history_is_refused(tmp_path, value, needle, json_flag):
    path = with_history(tmp_path, value)
    r = run_ulc("inspect", path, *json_flag)
    assert r.returncode == 2, r.stderr
    assert r.stdout == ""
    assert f"ulc: error: {path}: metadata 'ulc_history': " in r.stderr, r.stderr
    assert needle in r.stderr, r.stderr
