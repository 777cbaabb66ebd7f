"""The ulc command line as a user meets it: help, version, inspect (text and JSON), convert's
safety rules (never over its own input without --in-place, atomic replacement), external data,
and the safetensors paths."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import ROOT, run_ulc

DIGITS = ROOT / "models" / "digits" / "digits_resnet.onnx"


@pytest.fixture
def model(tmp_path):
    p = tmp_path / "m" / "digits.onnx"
    p.parent.mkdir()
    shutil.copy(DIGITS, p)
    return p


def outputs(path, n=5):
    x = np.random.default_rng(0).random((n, 1, 8, 8), dtype=np.float32)
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def canonical(path):
    return onnx.load(str(path), load_external_data=False).SerializeToString(deterministic=True)


def test_help_and_version():
    r = run_ulc("--help")
    assert r.returncode == 0 and "inspect" in r.stdout and "convert" in r.stdout
    r = run_ulc("--version")
    assert r.returncode == 0 and r.stdout.startswith("ulc ")


@pytest.mark.parametrize("args", [[], ["frobnicate"], ["convert", "--bogus"], ["inspect"],
                                  ["convert", "x.onnx"], ["convert", "a.onnx", "-o", "out.txt"],
                                  ["inspect", "a.onnx", "b.onnx"]])
def test_usage_errors(args):
    r = run_ulc(*args)
    assert r.returncode == 1, r.stderr
    assert "ulc: error:" in r.stderr or "usage:" in r.stderr


def test_inspect_text(model):
    r = run_ulc("inspect", model)
    assert r.returncode == 0, r.stderr
    for needle in ["ONNX, ir_version 8", "pytorch", "ai.onnx 17", "input ", "f32[N,1,8,8]",
                   "logits", "f32[N,10]", "Conv ", "9610", "external data: none"]:
        assert needle in r.stdout, needle


def test_inspect_json(model):
    r = run_ulc("inspect", model, "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    for key in ["path", "format", "ir_version", "producer_name", "producer_version", "opsets",
                "graph_name", "inputs", "outputs", "nodes", "op_histogram", "parameters",
                "external_files", "metadata"]:
        assert key in info, key
    assert info["format"] == "onnx" and info["opsets"] == {"ai.onnx": 17}
    assert info["inputs"] == [{"name": "input", "dtype": "f32", "shape": ["N", 1, 8, 8]}]
    assert info["outputs"] == [{"name": "logits", "dtype": "f32", "shape": ["N", 10]}]
    m = onnx.load(str(model))
    assert info["nodes"] == len(m.graph.node)
    assert info["op_histogram"]["Conv"] == sum(n.op_type == "Conv" for n in m.graph.node)
    assert info["parameters"]["count"] == 9610
    assert info["parameters"]["by_dtype"]["f32"]["bytes"] == 9610 * 4


def test_refuses_to_overwrite_input(model):
    before = model.read_bytes()
    for spelling in [model, model.parent / ".." / "m" / model.name]:
        r = run_ulc("convert", model, "-o", spelling)
        assert r.returncode == 1, r.stderr
        assert "refusing to overwrite the input model" in r.stderr and "--in-place" in r.stderr
    link = model.parent / "link.onnx"
    link.symlink_to(model.name)
    r = run_ulc("convert", model, "-o", link)
    assert r.returncode == 1, r.stderr
    assert model.read_bytes() == before
    assert sorted(os.listdir(model.parent)) == ["digits.onnx", "link.onnx"]


def test_in_place(model):
    before = canonical(model)
    r = run_ulc("convert", model, "-o", model, "--in-place")
    assert r.returncode == 0, r.stderr
    assert canonical(model) == before
    assert os.listdir(model.parent) == ["digits.onnx"]


def test_external_data_flag(model, tmp_path):
    out = tmp_path / "ext.onnx"
    r = run_ulc("convert", model, "-o", out, "--external-data")
    assert r.returncode == 0, r.stderr
    m = onnx.load(str(out), load_external_data=False)
    ext = [t for t in m.graph.initializer if t.data_location == TensorProto.EXTERNAL]
    assert ext, "nothing went to external data"
    for t in ext:
        kv = {e.key: e.value for e in t.external_data}
        assert kv["location"] == "ext.onnx.data" and int(kv["offset"]) % 4096 == 0
    assert np.array_equal(outputs(model), outputs(out))
    # ulc reads it back and inspect lists the data file
    info = json.loads(run_ulc("inspect", "--json", out).stdout)
    assert [Path(f["path"]).name for f in info["external_files"]] == ["ext.onnx.data"]


def test_external_data_to_other_directory(model, tmp_path):
    a = tmp_path / "a" / "x.onnx"
    a.parent.mkdir()
    assert run_ulc("convert", model, "-o", a, "--external-data").returncode == 0
    data_before = (a.parent / "x.onnx.data").read_bytes()
    b = tmp_path / "b" / "y.onnx"
    b.parent.mkdir()
    r = run_ulc("convert", a, "-o", b)
    assert r.returncode == 0, r.stderr
    assert (b.parent / "y.onnx.data").exists()  # the input had external data: so does the output
    assert (a.parent / "x.onnx.data").read_bytes() == data_before
    assert np.array_equal(outputs(a), outputs(b))


def test_refuses_to_overwrite_input_external_data(model, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    a = d / "x.onnx"
    assert run_ulc("convert", model, "-o", a, "--external-data").returncode == 0
    # a model whose data file is named like the data file OUT would get
    os.rename(d / "x.onnx.data", d / "y.onnx.data")
    m = onnx.load(str(a), load_external_data=False)
    for t in m.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = "y.onnx.data"
    onnx.save(m, str(d / "src.onnx"))
    before = (d / "y.onnx.data").read_bytes()
    r = run_ulc("convert", d / "src.onnx", "-o", d / "y.onnx")
    assert r.returncode == 1, r.stderr
    assert "which the input model reads its weights from" in r.stderr
    assert (d / "y.onnx.data").read_bytes() == before
    assert not (d / "y.onnx").exists()


def test_existing_output_replaced_or_kept(model, tmp_path):
    out = tmp_path / "out.onnx"
    out.write_bytes(b"old content")
    assert run_ulc("convert", model, "-o", out).returncode == 0
    assert canonical(out) == canonical(model)
    # a failing conversion leaves the existing output untouched
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x08\x3a\x40")
    before = out.read_bytes()
    assert run_ulc("convert", bad, "-o", out).returncode == 2
    assert out.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["bad.onnx", "m", "out.onnx"]


def test_onnx_to_safetensors_and_back(model, tmp_path):
    from safetensors.numpy import load_file
    st = tmp_path / "w.safetensors"
    r = run_ulc("convert", model, "-o", st)
    assert r.returncode == 0, r.stderr
    weights = load_file(str(st))
    m = onnx.load(str(model))
    assert weights.keys() == {t.name for t in m.graph.initializer}
    for t in m.graph.initializer:
        assert np.array_equal(weights[t.name], numpy_helper.to_array(t))
    # directory output gets model.safetensors
    r = run_ulc("convert", model, "-o", str(tmp_path / "hf") + "/")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "hf" / "model.safetensors").read_bytes() == st.read_bytes()
    # safetensors -> safetensors is byte-stable, and inspect describes it
    st2 = tmp_path / "w2.safetensors"
    assert run_ulc("convert", st, "-o", st2).returncode == 0
    assert st2.read_bytes() == st.read_bytes()
    info = json.loads(run_ulc("inspect", "--json", tmp_path / "hf").stdout)
    assert info["format"] == "safetensors" and info["parameters"]["count"] == 9610


def test_safetensors_matches_reference_writer(tmp_path):
    from safetensors.numpy import load_file, save_file
    rng = np.random.default_rng(1)
    t = {"b": rng.standard_normal((3, 4)).astype(np.float32),
         "a.weight": rng.integers(0, 5, (7,)).astype(np.int64),
         "h": rng.standard_normal((5,)).astype(np.float16), "z": np.zeros((0, 3), np.float32),
         "bo": np.array([True, False]), "u": np.arange(3, dtype=np.uint8)}
    src = tmp_path / "ref.safetensors"
    save_file(t, str(src), metadata={"format": "pt"})
    out = tmp_path / "out.safetensors"
    assert run_ulc("convert", src, "-o", out).returncode == 0
    assert out.read_bytes() == src.read_bytes()  # same layout as safetensors' own writer
    back = load_file(str(out))
    assert all(np.array_equal(back[k], t[k]) and back[k].dtype == t[k].dtype for k in t)


def test_sharded_safetensors(tmp_path):
    from safetensors.numpy import load_file, save_file
    rng = np.random.default_rng(2)
    a = {"x.weight": rng.standard_normal((4, 4)).astype(np.float32)}
    b = {"y.weight": rng.standard_normal((2,)).astype(np.float32)}
    save_file(a, str(tmp_path / "model-00001-of-00002.safetensors"), metadata={"format": "pt"})
    save_file(b, str(tmp_path / "model-00002-of-00002.safetensors"), metadata={"format": "pt"})
    index = {"metadata": {"total_size": 72},
             "weight_map": {"x.weight": "model-00001-of-00002.safetensors",
                            "y.weight": "model-00002-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    out = tmp_path / "merged.safetensors"
    r = run_ulc("convert", tmp_path, "-o", out)
    assert r.returncode == 0, r.stderr
    merged = load_file(str(out))
    assert np.array_equal(merged["x.weight"], a["x.weight"]) and np.array_equal(merged["y.weight"], b["y.weight"])
    # an index that maps a tensor to the wrong shard is refused
    index["weight_map"]["x.weight"] = "model-00002-of-00002.safetensors"
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    r = run_ulc("convert", tmp_path, "-o", tmp_path / "bad.safetensors")
    assert r.returncode == 2 and "'x.weight'" in r.stderr
    assert not (tmp_path / "bad.safetensors").exists()
