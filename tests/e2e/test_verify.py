"""`ulc verify OUT [--report R]` (jobs/verify.h, docs/audit.md): the record an unlearned model
carries (its "ulc_history" metadata, jobs/history.h) and the run's report are checked against the
files. A forget run records the sha256 of the input model (its file, and its weights), the spec,
the data and the weights it wrote, in the history and in the report; the weights hash is the one
ir/digest.h defines, recomputed here in Python. verify says ok for each on an untouched run (ONNX,
ONNX with external data, a Hugging Face directory), names what changed after one weight byte, the
spec, a hash in the report or the model's history is edited (exit 11), says which files it could
not check (absent, no path), and refuses a bad report, a model without a history and a bad command
line with a clear message (exit 2, 3, 1), never a crash."""
import hashlib
import json
import shutil
import struct
import sys

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from safetensors.numpy import load_file, save_file

from conftest import ROOT, run_ulc

sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
import gen_hf  # noqa: E402

DIGITS = ROOT / "models" / "digits"
MISMATCH = 11


def weights_sha256(tensors):
    """ir/digest.h's hash: {name: (ONNX dtype code, dims, little-endian bytes)}."""
    h = hashlib.sha256(b"ulc-weights-v1\0" + struct.pack("<Q", len(tensors)))
    for name in sorted(tensors, key=str.encode):
        code, dims, raw = tensors[name]
        n = name.encode()
        h.update(struct.pack("<Q", len(n)) + n + struct.pack("<II", code, len(dims)))
        h.update(b"".join(struct.pack("<q", d) for d in dims))
        h.update(struct.pack("<Q", len(raw)) + raw)
    return h.hexdigest()


def onnx_weights_sha256(path):
    m = onnx.load(str(path))  # external data too
    return weights_sha256({t.name: (t.data_type, list(t.dims),
                                    numpy_helper.to_array(t).astype(
                                        numpy_helper.to_array(t).dtype.newbyteorder("<")).tobytes())
                           for t in m.graph.initializer})


def safetensors_weights_sha256(path):
    codes = {np.dtype("float32"): 1, np.dtype("int64"): 7}
    return weights_sha256({k: (codes[v.dtype], list(v.shape), v.tobytes())
                           for k, v in load_file(str(path)).items()})


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def history(path):
    return json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}["ulc_history"])


def items(stdout):
    """{item: (result, detail)} from verify's table."""
    out = {}
    for line in stdout.splitlines()[1:-1]:
        res = "not checked" if line[2:].startswith("not checked") else line[2:].split()[0]
        rest = line[2 + 11 + 2:]
        what, detail = rest[:31].rstrip(), rest[33:]
        out[what] = (res, detail)
    return out


def forget(d, model="in.onnx", out="out.onnx", report="r.json", spec="spec.json"):
    r = run_ulc(model, "--forget", spec, "-o", out, "--report", report, "-q", "--threads", "2",
                cwd=d)
    assert r.returncode == 0, r.stderr
    return d / out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A forget run on the digits model in one folder, every path relative: in.onnx, the spec,
    the data, out.onnx and r.json."""
    d = tmp_path_factory.mktemp("run") / "run"
    d.mkdir()
    shutil.copyfile(DIGITS / "digits_resnet.onnx", d / "in.onnx")
    for n in ("train", "test"):
        shutil.copyfile(DIGITS / f"{n}.safetensors", d / f"{n}.safetensors")
    (d / "spec.json").write_text(json.dumps({
        "method": "rfa", "data": {"train": "train.safetensors", "test": "test.safetensors"},
        "forget": {"classes": [3]}, "train": {"epochs": 1, "seed": 0}}))
    forget(d)
    return d


@pytest.fixture
def run(run_dir, tmp_path):
    """A copy of the run to tamper with."""
    return shutil.copytree(run_dir, tmp_path / "run")


def verify(*args, cwd=None):
    return run_ulc("verify", *args, cwd=cwd)


# ---- the record -----------------------------------------------------------------------------------

def test_the_record_holds_every_hash(run_dir):
    (e,) = history(run_dir / "out.onnx")
    rep = json.loads((run_dir / "r.json").read_text())
    w = onnx_weights_sha256(run_dir / "out.onnx")
    assert e["weights_sha256"] == rep["output"]["weights_sha256"] == w
    assert e["input"] == {"sha256": sha256(run_dir / "in.onnx"),
                          "weights_sha256": onnx_weights_sha256(run_dir / "in.onnx")}
    assert rep["input"]["weights_sha256"] == e["input"]["weights_sha256"]
    assert e["spec_sha256"] == sha256(run_dir / "spec.json")
    assert e["data"] == {k: {"sha256": sha256(run_dir / f"{k}.safetensors"), "rows": n}
                         for k, n in (("train", 1437), ("test", 360))}
    assert rep["output"]["sha256"] == sha256(run_dir / "out.onnx")


# ---- ok ------------------------------------------------------------------------------------------

def test_ok_with_the_report(run_dir):
    r = verify("out.onnx", "--report", "r.json", cwd=run_dir)
    assert r.returncode == 0, r.stdout + r.stderr
    it = items(r.stdout)
    for k in ("weights (history)", "weights (report)", "output file (report)", "input file",
              "input weights", "spec", "train data", "test data", "report = history: method",
              "report = history: spec", "report = history: weights"):
        assert it[k][0] == "ok", (k, r.stdout)
    assert all(res == "ok" for res, _ in it.values()), r.stdout
    assert r.stdout.endswith(f"{len(it)} ok, 0 MISMATCH, 0 not checked\n")


def test_report_paths_found_next_to_the_report(run_dir):
    r = verify(run_dir / "out.onnx", "--report", run_dir / "r.json", cwd=run_dir.parent)
    assert r.returncode == 0, r.stdout + r.stderr
    assert items(r.stdout)["spec"] == ("ok", f"{run_dir}/spec.json: sha256 "
                                       f"{sha256(run_dir / 'spec.json')[:16]}")


def test_ambiguous_relative_path_is_not_checked(run, tmp_path):
    (tmp_path / "spec.json").write_text("{}")  # another spec.json where verify runs
    r = verify("run/out.onnx", "--report", "run/r.json", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    res, detail = items(r.stdout)["spec"]
    assert res == "not checked" and "another next to the report" in detail, r.stdout


def test_without_report_and_with_files(run_dir):
    r = verify("out.onnx", cwd=run_dir)
    assert r.returncode == 0, r.stderr
    it = items(r.stdout)
    assert it["weights (history)"][0] == "ok"
    assert it["spec"] == ("not checked", "no path (give --spec)")
    assert it["input weights"] == ("not checked", "no path (give --input)")
    assert r.stdout.endswith("1 ok, 0 MISMATCH, 5 not checked\n")
    r = verify("out.onnx", "--input", "in.onnx", "--spec", "spec.json", "--train",
               "train.safetensors", "--test", "test.safetensors", cwd=run_dir)
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith("6 ok, 0 MISMATCH, 0 not checked\n"), r.stdout


def test_second_request_chains_to_the_first(run):
    out2 = forget(run, model="out.onnx", out="out2.onnx", report="r2.json")
    r = verify("out2.onnx", "--report", "r2.json", cwd=run)
    assert r.returncode == 0, r.stdout + r.stderr
    assert items(r.stdout)["history chain 1 -> 2"][0] == "ok"
    assert "request 2 of 2" in r.stdout.splitlines()[0]
    # a first request whose recorded output is not the second's input breaks the chain
    m = onnx.load(str(out2))
    for p in m.metadata_props:
        if p.key == "ulc_history":
            h = json.loads(p.value)
            h[0]["weights_sha256"] = "0" * 64
            p.value = json.dumps(h)
    onnx.save(m, str(run / "forged.onnx"))
    r = verify("forged.onnx", cwd=run)
    assert r.returncode == MISMATCH
    assert items(r.stdout)["history chain 1 -> 2"][0] == "MISMATCH"


def test_external_data(run):
    assert run_ulc("convert", "in.onnx", "-o", "ext.onnx", "--external-data", cwd=run).returncode == 0
    forget(run, model="ext.onnx", out="eout.onnx", report="er.json")
    assert (run / "eout.onnx.data").exists()
    r = verify("eout.onnx", "--report", "er.json", cwd=run)
    assert r.returncode == 0, r.stdout + r.stderr
    it = items(r.stdout)
    assert it["output external data"][0] == "ok" and it["input weights"][0] == "ok"
    # the weights hash is the inline model's: format and layout do not count
    assert json.loads((run / "er.json").read_text())["input"]["weights_sha256"] == \
        onnx_weights_sha256(run / "in.onnx")
    data = bytearray((run / "eout.onnx.data").read_bytes())
    data[0] ^= 1
    (run / "eout.onnx.data").write_bytes(bytes(data))
    r = verify("eout.onnx", "--report", "er.json", cwd=run)
    assert r.returncode == MISMATCH
    bad = {k for k, (res, _) in items(r.stdout).items() if res == "MISMATCH"}
    assert bad == {"weights (history)", "weights (report)", "output external data"}, r.stdout


def test_hugging_face_directory(tmp_path, fixture_dir):
    src = gen_hf.hf_dir(gen_hf.generate(fixture_dir), "hf_vit", tmp_path / "vit")
    rng = np.random.default_rng(0)
    save_file({"input": rng.standard_normal((16, 3, 16, 16)).astype(np.float32),
               "label": (np.arange(16) % 5).astype(np.int64)}, str(tmp_path / "d.safetensors"))
    (tmp_path / "spec.json").write_text(json.dumps({
        "method": "rfa", "data": {"train": "d.safetensors"}, "forget": {"classes": [1]},
        "train": {"batch_size": 16, "epochs": 1}}))
    forget(tmp_path, model="vit", out="vit_out/")
    r = verify("vit_out", "--report", "r.json", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert items(r.stdout)["output file (report)"][1].startswith("vit_out/model.safetensors")
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["output"]["weights_sha256"] == \
        safetensors_weights_sha256(tmp_path / "vit_out" / "model.safetensors")
    assert rep["input"]["weights_sha256"] == safetensors_weights_sha256(src / "model.safetensors")
    st = tmp_path / "vit_out" / "model.safetensors"
    b = bytearray(st.read_bytes())
    b[-1] ^= 1  # the last tensor's last byte
    st.write_bytes(bytes(b))
    r = verify("vit_out", "--report", "r.json", cwd=tmp_path)
    assert r.returncode == MISMATCH, r.stdout + r.stderr
    bad = {k for k, (res, _) in items(r.stdout).items() if res == "MISMATCH"}
    assert bad == {"weights (history)", "weights (report)", "output file (report)"}, r.stdout


def test_clip_model(tmp_path):
    """A CLIP request writes the whole CLIP model, not the zero-shot view it trained: the record
    goes with it and names its weights."""
    src = ROOT / "models" / "clip_digits"
    spec = json.loads((src / "forget_one.json").read_text())
    spec["data"] = {k: str(src / v) for k, v in spec["data"].items()}
    spec["clip"]["captions"] = str(src / spec["clip"]["captions"])
    spec["clip"]["heldout"]["data"] = str(src / spec["clip"]["heldout"]["data"])
    spec["train"] = {"epochs": 1}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    forget(tmp_path, model=src, out="clip_out/")
    r = verify("clip_out", "--report", "r.json", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.endswith(" ok, 0 MISMATCH, 0 not checked\n"), r.stdout
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["output"]["weights_sha256"] == \
        safetensors_weights_sha256(tmp_path / "clip_out" / "model.safetensors")


# ---- tampering -----------------------------------------------------------------------------------

def mismatched(r):
    assert r.returncode == MISMATCH, r.stdout + r.stderr
    bad = {k for k, (res, _) in items(r.stdout).items() if res == "MISMATCH"}
    assert f"did not match: {', '.join(k for k in items(r.stdout) if k in bad)}" in r.stderr
    return bad


def test_one_weight_byte(run):
    out = run / "out.onnx"
    m = onnx.load(str(out))
    raw = next(t.raw_data for t in m.graph.initializer if len(t.raw_data) >= 64)
    b = bytearray(out.read_bytes())
    at = bytes(b).find(raw)
    assert at > 0
    b[at + 5] ^= 0x10
    out.write_bytes(bytes(b))
    assert mismatched(verify("out.onnx", "--report", "r.json", cwd=run)) == \
        {"weights (history)", "weights (report)", "output file (report)"}
    # without the report the record in the model alone catches it
    assert mismatched(verify("out.onnx", cwd=run)) == {"weights (history)"}


def test_edited_spec(run):
    with open(run / "spec.json", "a") as f:
        f.write(" ")
    assert mismatched(verify("out.onnx", "--report", "r.json", cwd=run)) == {"spec"}
    assert mismatched(verify("out.onnx", "--spec", "spec.json", cwd=run)) == {"spec"}


def test_edited_data(run):
    d = load_file(str(run / "train.safetensors"))
    d["label"][0] = (d["label"][0] + 1) % 10
    save_file(d, str(run / "train.safetensors"))
    assert mismatched(verify("out.onnx", "--report", "r.json", cwd=run)) == {"train data"}


@pytest.mark.parametrize("key, caught", [
    (("output", "weights_sha256"), {"weights (report)", "report = history: weights"}),
    (("spec", "sha256"), {"spec", "report = history: spec"}),
    (("input", "weights_sha256"), {"input weights", "report = history: input weights"}),
])
def test_edited_report_hash(run, key, caught):
    rep = json.loads((run / "r.json").read_text())
    rep[key[0]][key[1]] = hashlib.sha256(b"forged").hexdigest()
    (run / "r.json").write_text(json.dumps(rep))
    assert mismatched(verify("out.onnx", "--report", "r.json", cwd=run)) == caught


def test_edited_history(run):
    m = onnx.load(str(run / "out.onnx"))
    for p in m.metadata_props:
        if p.key == "ulc_history":
            h = json.loads(p.value)
            h[-1]["weights_sha256"] = hashlib.sha256(b"forged").hexdigest()
            p.value = json.dumps(h)
    onnx.save(m, str(run / "out.onnx"))
    assert mismatched(verify("out.onnx", "--report", "r.json", cwd=run)) == \
        {"weights (history)", "output file (report)", "report = history: weights"}


# ---- files it cannot check, and errors ------------------------------------------------------------

def test_absent_files_are_not_checked(run):
    (run / "train.safetensors").unlink()
    (run / "in.onnx").unlink()
    r = verify("out.onnx", "--report", "r.json", cwd=run)
    assert r.returncode == 0, r.stdout + r.stderr
    it = items(r.stdout)
    assert it["train data"] == ("not checked", "train.safetensors is absent (give --train)")
    assert it["input file"][0] == it["input weights"][0] == "not checked"
    assert it["test data"][0] == "ok" and it["spec"][0] == "ok"
    assert r.stdout.endswith(" MISMATCH, 3 not checked\n"), r.stdout


@pytest.mark.parametrize("args, code, needle", [
    ((), 1, "verify: no model given"),
    (("out.onnx", "--report"), 1, "verify: --report needs a path"),
    (("out.onnx", "--bogus"), 1, "verify: unknown option '--bogus'"),
    (("out.onnx", "in.onnx"), 1, "more than one model"),
    (("gone.onnx",), 3, "gone.onnx: no such file or directory"),
    (("out.onnx", "--spec", "gone.json"), 3, "gone.json: no such file or directory"),
    (("out.onnx", "--report", "gone.json"), 3, "gone.json"),
    (("in.onnx",), 2, "in.onnx: no unlearning history (metadata 'ulc_history')"),
])
def test_errors(run_dir, args, code, needle):
    r = verify(*args, cwd=run_dir)
    assert r.returncode == code, r.stdout + r.stderr
    assert needle in r.stderr and r.stderr.startswith("ulc: error: "), r.stderr


@pytest.mark.parametrize("text, needle", [
    ("{", "r.json: not valid JSON"),
    ("[]", "r.json: expected the JSON report of `ulc IN --forget`"),
    ('{"output": 5}', "expected the JSON report"),
    ('{"output": {}, "output": {}}', "r.json: "),
    ('{"output": {"weights_sha256": 12}}', "key 'output.weights_sha256': expected a sha256"),
    ('{"output": {"sha256": "abc"}}', "key 'output.sha256': expected a sha256"),
    ('{"output": {}, "spec": {"path": 3}}', "key 'spec.path': expected a string, got a number"),
    ('{"output": {}, "data": []}', "key 'data': expected an object, got a list"),
    ('{"output": {}, "data": {"train": "x"}}', "key 'data.train': expected an object"),
    ('{"output": {}, "method": 1}', "key 'method': expected a string"),
])
def test_bad_report(run, text, needle):
    (run / "r.json").write_text(text)
    r = verify("out.onnx", "--report", "r.json", cwd=run)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stdout == "" and needle in r.stderr, r.stderr


def test_history_without_weights_hash(tmp_path):
    m = onnx.load(str(DIGITS / "digits_resnet.onnx"))
    p = m.metadata_props.add()
    p.key, p.value = "ulc_history", json.dumps([{"ulc": "0.1.0", "method": "rfa",
                                                 "forget": {"classes": [3]}}])
    onnx.save(m, str(tmp_path / "old.onnx"))
    r = verify("old.onnx", cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == ""
    assert "request 1 records no weights_sha256" in r.stderr, r.stderr
    p.value = json.dumps([{"method": "rfa", "forget": {"classes": [3]}, "weights_sha256": "xyz"}])
    onnx.save(m, str(tmp_path / "bad.onnx"))
    r = verify("bad.onnx", cwd=tmp_path)
    assert r.returncode == 2 and "request 1 is not" in r.stderr, r.stderr
