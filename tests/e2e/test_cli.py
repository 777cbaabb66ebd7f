"""The ulc command line as a user meets it (docs/cli.md): help, version, usage errors, inspect
(text and JSON), convert's safety rules (never over its own input or the input's external data
without --in-place, whatever the path says; atomic replacement of OUT), external data, and the
safetensors paths."""
import collections
import json
import os
import re
import resource
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import ROOT, run_ulc, ulc_bin

DIGITS = ROOT / "models" / "digits" / "digits_resnet.onnx"
EXIT_USAGE, EXIT_INPUT, EXIT_IO = 1, 2, 3
DTYPE_NAMES = {TensorProto.FLOAT: "f32", TensorProto.FLOAT16: "f16", TensorProto.INT64: "i64",
               TensorProto.INT32: "i32", TensorProto.DOUBLE: "f64", TensorProto.UINT8: "u8",
               TensorProto.INT8: "i8", TensorProto.BOOL: "bool", TensorProto.BFLOAT16: "bf16"}


@pytest.fixture
def model(tmp_path):
    """A copy of the digits ResNet (f32 weights, 15 nodes, symbolic batch dim N)."""
    p = tmp_path / "m" / "digits.onnx"
    p.parent.mkdir()
    shutil.copy(DIGITS, p)
    return p


def tiny_model():
    """Small hand-built model exercising inspect: symbolic, unknown and missing shapes, an
    initializer listed as a graph input (old exporters do that), a custom domain op, several
    dtypes, metadata."""
    w = numpy_helper.from_array(np.linspace(0, 1, 600, dtype=np.float32).reshape(300, 2), "w")
    b = numpy_helper.from_array(np.ones((2,), np.float16), "b")
    c = numpy_helper.from_array(np.arange(3, dtype=np.int64), "c")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Relu", ["r"], ["r2"]),
             helper.make_node("Add", ["r2", "x2"], ["y"]),
             helper.make_node("Relu", ["y"], ["z"], domain="com.example")]
    g = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 300]),
         helper.make_tensor_value_info("x2", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("w", TensorProto.FLOAT, [300, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", None]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT16, [])],
        [w, b, c])
    m = helper.make_model(g, producer_name="probe", producer_version="9.9",
                          opset_imports=[helper.make_opsetid("", 17),
                                         helper.make_opsetid("com.example", 1)])
    helper.set_model_props(m, {"author": "me", "k": "v"})
    return m


@pytest.fixture
def tiny(tmp_path):
    p = tmp_path / "tiny.onnx"
    onnx.save(tiny_model(), str(p))
    return p


def outputs(path, n=5):
    x = np.random.default_rng(0).random((n, 1, 8, 8), dtype=np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


def canonical(path):
    """The model as onnx sees it, weights included (onnx.load inlines external data and marks
    such tensors data_location=DEFAULT explicitly; that mark is dropped on both sides), so a
    model and its external-data conversion compare equal."""
    m = onnx.load(str(path))
    for t in m.graph.initializer:
        if t.HasField("data_location") and t.data_location == TensorProto.DEFAULT:
            t.ClearField("data_location")
    return m.SerializeToString(deterministic=True)


def listing(d):
    return sorted(os.listdir(d))


def snapshot(d):
    """name -> (inode, bytes) of every file of a directory, hidden ones included."""
    return {n: (os.lstat(d / n).st_ino, (d / n).read_bytes() if (d / n).is_file() else None)
            for n in os.listdir(d)}


def run_in(cwd, *args):
    """ulc run from another working directory (ULC_BIN may be a relative path)."""
    return subprocess.run([os.path.abspath(ulc_bin()), *map(str, args)], capture_output=True,
                          text=True, timeout=600, cwd=cwd)


def no_crash(r):
    assert r.returncode >= 0, f"killed by signal {-r.returncode}: {r.stderr}"
    assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr


def external_entries(path):
    m = onnx.load(str(path), load_external_data=False)
    out = {}
    for t in m.graph.initializer:
        if t.data_location == TensorProto.EXTERNAL:
            out[t.name] = {e.key: e.value for e in t.external_data}
    return m, out


# ---------------------------------------------------------------------------------------------
# help, version, usage errors


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help(flag):
    r = run_ulc(flag)
    no_crash(r)
    assert r.returncode == 0, r.stderr
    for word in ["inspect", "convert", "--external-data", "--in-place", "--json"]:
        assert word in r.stdout, word


def test_version():
    r = run_ulc("--version")
    no_crash(r)
    assert r.returncode == 0, r.stderr
    # the version, then the backends built in (cpu always; cuda with the toolkit, emulated or not)
    assert re.fullmatch(r"ulc \d+\.\d+\.\d+\S* \(backends: cpu(, cuda( \(emulated on the host\))?)?\)\n", r.stdout), r.stdout


def test_no_arguments():
    r = run_ulc()
    no_crash(r)
    assert r.returncode == EXIT_USAGE
    assert "usage:" in r.stdout + r.stderr


@pytest.mark.parametrize("args,needle", [
    (["frobnicate"], "unknown command 'frobnicate'"),
    (["--frobnicate"], "unknown command '--frobnicate'"),
    (["convert", "M", "-o", "out.onnx", "--bogus"], "unknown option '--bogus'"),
    (["inspect", "M", "--bogus"], "unknown option '--bogus'"),
    (["inspect", "M", "-o", "x.onnx"], "unknown option '-o'"),
    (["inspect"], "no model given"),
    (["inspect", "M", "M"], "inspect"),
    (["convert", "M"], "convert"),
    (["convert", "M", "-o"], "-o needs a path"),
    (["convert", "-o", "out.onnx"], "no input model given"),
    (["convert", "M", "out.onnx"], "more than one input"),
    (["convert", "M", "-o", "out.txt"], "cannot tell the output format of 'out.txt'"),
    (["convert", "M", "-o", "out.safetensors", "--external-data"], "ONNX output only"),
])
def test_usage_errors(tmp_path, args, needle):
    args = [str(DIGITS) if a == "M" else a for a in args]
    r = run_in(tmp_path, *args)
    no_crash(r)
    assert r.returncode == EXIT_USAGE, r.stderr
    assert r.stderr.startswith("ulc: error: "), r.stderr
    assert needle in r.stderr, r.stderr
    assert listing(tmp_path) == [], "a usage error wrote something"


# ---------------------------------------------------------------------------------------------
# inspect


def test_inspect_text(model):
    r = run_ulc("inspect", model)
    no_crash(r)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for needle in [str(model), "ONNX, ir_version 8", "pytorch 1.13.0", "ai.onnx 17", "torch_jit",
                   "15 nodes", "12 initializers", "f32[N,1,8,8]", "f32[N,10]",
                   "9610", "external data: none"]:
        assert needle in out, needle
    assert re.search(r"^\s+input\s+f32\[N,1,8,8\]$", out, re.M), out
    assert re.search(r"^\s+logits\s+f32\[N,10\]$", out, re.M), out
    m = onnx.load(str(model))
    for op, n in collections.Counter(n.op_type for n in m.graph.node).items():
        assert re.search(rf"^\s+{op}\s+{n}$", out, re.M), f"op {op} x{n} not listed:\n{out}"


def test_inspect_text_shapes_and_domains(tiny):
    r = run_ulc("inspect", tiny)
    no_crash(r)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert re.search(r"^\s+x\s+f32\[batch,300\]$", out, re.M), out
    assert re.search(r"^\s+y\s+f32\[batch,\?\]$", out, re.M), out
    assert re.search(r"^\s+z\s+f16\[\]$", out, re.M), out
    assert "probe 9.9" in out and "com.example 1" in out
    # the initializer listed as a graph input is left out of the inputs
    assert not re.search(r"^\s+w\s+f32\[300,2\]$", out, re.M), out
    # ops of different domains are different ops: ai.onnx Relu x2, com.example Relu x1
    # (found by this suite: the text histogram prints "Relu 2" and "Relu 1", dropping the
    # domain that the JSON output keeps as "com.example.Relu")
    ops = out.split("ops:\n", 1)[1].split("parameters:", 1)[0]
    names = [line.split()[0] for line in ops.splitlines() if line.strip()]
    assert len(names) == len(set(names)), f"an op is listed twice:\n{ops}"
    assert "com.example.Relu" in names, ops


def _expected_inspect(path):
    """What docs/cli.md says `inspect --json` reports, computed with onnx from the model."""
    m = onnx.load(str(path))
    inits = {t.name: t for t in m.graph.initializer}

    def vi(v):
        tt = v.type.tensor_type
        shape = None
        if tt.HasField("shape"):
            shape = [d.dim_value if d.HasField("dim_value") else
                     d.dim_param if d.HasField("dim_param") else "?" for d in tt.shape.dim]
        return {"name": v.name, "dtype": DTYPE_NAMES[tt.elem_type], "shape": shape}

    hist = collections.Counter(
        (f"{n.domain}.{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type)
        for n in m.graph.node)
    by_dtype = {}
    for t in inits.values():
        a = numpy_helper.to_array(t)
        d = by_dtype.setdefault(DTYPE_NAMES[t.data_type], {"tensors": 0, "count": 0, "bytes": 0})
        d["tensors"] += 1
        d["count"] += a.size
        d["bytes"] += a.nbytes
    return {
        "format": "onnx", "ir_version": m.ir_version, "producer_name": m.producer_name,
        "producer_version": m.producer_version,
        "opsets": {(o.domain or "ai.onnx"): o.version for o in m.opset_import},
        "graph_name": m.graph.name,
        "inputs": [vi(v) for v in m.graph.input if v.name not in inits],
        "outputs": [vi(v) for v in m.graph.output],
        "nodes": len(m.graph.node), "op_histogram": dict(hist),
        "parameters": {"initializers": len(inits),
                       "count": sum(d["count"] for d in by_dtype.values()),
                       "bytes": sum(d["bytes"] for d in by_dtype.values()),
                       "by_dtype": by_dtype},
        "metadata": {p.key: p.value for p in m.metadata_props},
    }


@pytest.mark.parametrize("which", ["digits", "tiny"])
def test_inspect_json(which, model, tiny):
    path = model if which == "digits" else tiny
    r = run_ulc("inspect", path, "--json")
    no_crash(r)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    keys = ["path", "format", "ir_version", "producer_name", "producer_version", "opsets",
            "graph_name", "inputs", "outputs", "nodes", "op_histogram", "parameters",
            "external_files", "metadata"]
    assert set(keys) <= set(info), sorted(set(keys) - set(info))
    assert info["path"] == str(path)
    assert info["external_files"] == []
    expected = _expected_inspect(path)
    for k, v in expected.items():
        assert info[k] == v, f"{k}: {info[k]!r} != {v!r}"
    # most frequent op first
    counts = list(info["op_histogram"].values())
    assert counts == sorted(counts, reverse=True), info["op_histogram"]
    # --json may come before the model too
    assert json.loads(run_ulc("inspect", "--json", path).stdout) == info


def test_inspect_json_digits_numbers(model):
    info = json.loads(run_ulc("inspect", model, "--json").stdout)
    assert info["opsets"] == {"ai.onnx": 17}
    assert info["inputs"] == [{"name": "input", "dtype": "f32", "shape": ["N", 1, 8, 8]}]
    assert info["outputs"] == [{"name": "logits", "dtype": "f32", "shape": ["N", 10]}]
    assert info["nodes"] == 15 and info["parameters"]["initializers"] == 12
    assert info["parameters"]["count"] == 9610
    assert info["parameters"]["by_dtype"] == {"f32": {"tensors": 12, "count": 9610,
                                                      "bytes": 9610 * 4}}


# ---------------------------------------------------------------------------------------------
# never over the input without --in-place


def test_refuses_to_overwrite_input(model):
    d = model.parent
    before = snapshot(d)
    # (strings: pathlib would normalize "." and "//" away)
    spellings = [str(model), f"{d}/../m/{model.name}", f"{d}/./{model.name}",
                 f"{d}//{model.name}", f"{d}/../m/./../m/{model.name}"]
    for out in spellings:
        r = run_ulc("convert", model, "-o", out)
        no_crash(r)
        assert r.returncode == EXIT_USAGE, f"-o {out}: {r.stderr}"
        assert "refusing to overwrite the input model" in r.stderr and "--in-place" in r.stderr
        assert snapshot(d) == before, f"-o {out} changed the directory"
    # the input spelled differently, the output plainly; and relative to the working directory
    r = run_ulc("convert", f"{d}/../m/{model.name}", "-o", model)
    assert r.returncode == EXIT_USAGE, r.stderr
    r = run_in(d, "convert", model.name, "-o", f"./{model.name}")
    assert r.returncode == EXIT_USAGE, r.stderr
    assert snapshot(d) == before


@pytest.mark.parametrize("kind", ["symlink", "hardlink", "symlinked-dir"])
def test_refuses_to_overwrite_input_through_links(model, kind):
    d = model.parent
    if kind == "symlink":
        (d / "link.onnx").symlink_to(model.name)
        out = d / "link.onnx"
    elif kind == "hardlink":
        os.link(model, d / "link.onnx")
        out = d / "link.onnx"
    else:
        (d.parent / "alias").symlink_to(d.name)
        out = d.parent / "alias" / model.name
    before = snapshot(d)
    r = run_ulc("convert", model, "-o", out)
    no_crash(r)
    assert r.returncode == EXIT_USAGE, r.stderr
    assert "refusing to overwrite the input model" in r.stderr
    assert snapshot(d) == before


def test_in_place(model):
    before = canonical(model)
    r = run_ulc("convert", model, "-o", model, "--in-place")
    no_crash(r)
    assert r.returncode == 0, r.stderr
    assert canonical(model) == before
    assert listing(model.parent) == ["digits.onnx"]


def test_in_place_with_external_data(model, tmp_path):
    a = tmp_path / "a" / "x.onnx"
    a.parent.mkdir()
    assert run_ulc("convert", model, "-o", a, "--external-data").returncode == 0
    ref = outputs(model)
    r = run_ulc("convert", a, "-o", a)
    assert r.returncode == EXIT_USAGE, r.stderr
    r = run_ulc("convert", a, "-o", a, "--in-place")
    no_crash(r)
    assert r.returncode == 0, r.stderr
    assert listing(a.parent) == ["x.onnx", "x.onnx.data"]
    assert canonical(a) == canonical(model)
    assert np.array_equal(outputs(a), ref)


# ---------------------------------------------------------------------------------------------
# external data


def test_external_data_flag(model, tmp_path):
    out = tmp_path / "ext.onnx"
    r = run_ulc("convert", model, "-o", out, "--external-data")
    no_crash(r)
    assert r.returncode == 0, r.stderr
    assert listing(tmp_path) == ["ext.onnx", "ext.onnx.data", "m"]
    m, ext = external_entries(out)
    orig = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(model)).graph.initializer}
    data = (tmp_path / "ext.onnx.data").read_bytes()
    for t in m.graph.initializer:
        nbytes = orig[t.name].nbytes
        if nbytes < 1024:
            assert t.name not in ext, f"{t.name} ({nbytes} B) should stay inline"
            continue
        assert t.name in ext, f"{t.name} ({nbytes} B) should go to external data"
        kv = ext[t.name]
        assert kv["location"] == "ext.onnx.data"
        off, length = int(kv["offset"]), int(kv["length"])
        assert off % 4096 == 0, f"{t.name}: offset {off} is not 4 KiB-aligned"
        assert length == nbytes and off + length <= len(data)
        assert data[off:off + length] == orig[t.name].tobytes(), t.name
    assert ext, "nothing went to external data"
    # onnx loads it, the checker accepts it, onnxruntime computes the same thing
    assert canonical(out) == canonical(model)
    onnx.checker.check_model(str(out), full_check=True)
    assert np.array_equal(outputs(model), outputs(out))
    # ulc reads it back, and inspect lists the data file
    info = json.loads(run_ulc("inspect", "--json", out).stdout)
    assert [(Path(f["path"]).name, f["bytes"]) for f in info["external_files"]] == \
        [("ext.onnx.data", len(data))]


def test_external_data_round_trip_is_stable(model, tmp_path):
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    assert run_ulc("convert", model, "-o", a, "--external-data").returncode == 0
    r = run_ulc("convert", a, "-o", b)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "b.onnx.data").read_bytes() == (tmp_path / "a.onnx.data").read_bytes()
    ma, ea = external_entries(a)
    mb, eb = external_entries(b)
    assert {k: {**v, "location": None} for k, v in ea.items()} == \
        {k: {**v, "location": None} for k, v in eb.items()}


def test_external_data_to_other_directory(model, tmp_path):
    a = tmp_path / "a" / "x.onnx"
    a.parent.mkdir()
    assert run_ulc("convert", model, "-o", a, "--external-data").returncode == 0
    before = snapshot(a.parent)
    b = tmp_path / "b" / "y.onnx"
    b.parent.mkdir()
    r = run_ulc("convert", a, "-o", b)
    no_crash(r)
    assert r.returncode == 0, r.stderr
    # the input had external data, so the output does, in a new file beside it
    assert listing(b.parent) == ["y.onnx", "y.onnx.data"]
    _, ext = external_entries(b)
    assert ext and all(kv["location"] == "y.onnx.data" for kv in ext.values())
    assert snapshot(a.parent) == before, "the input or its data file was touched"
    assert canonical(b) == canonical(model)
    assert np.array_equal(outputs(a), outputs(b))


def _model_reading(d, data_name, location, model):
    """d/x.onnx + d/x.onnx.data from ulc, data renamed to data_name, and d/src.onnx whose
    initializers point at `location`."""
    a = d / "x.onnx"
    assert run_ulc("convert", model, "-o", a, "--external-data").returncode == 0
    os.rename(d / "x.onnx.data", d / data_name)
    m = onnx.load(str(a), load_external_data=False)
    for t in m.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = location
    os.remove(a)
    onnx.save(m, str(d / "src.onnx"))
    return d / "src.onnx"


@pytest.mark.parametrize("location", ["y.onnx.data", "./y.onnx.data", "sym.data", "hard.data"])
def test_refuses_to_overwrite_input_external_data(model, tmp_path, location):
    d = tmp_path / "d"
    d.mkdir()
    src = _model_reading(d, "y.onnx.data", location, model)
    if location == "sym.data":
        (d / "sym.data").symlink_to("y.onnx.data")
    elif location == "hard.data":
        os.link(d / "y.onnx.data", d / "hard.data")
    before = snapshot(d)
    r = run_ulc("convert", src, "-o", d / "y.onnx")
    no_crash(r)
    assert r.returncode == EXIT_USAGE, r.stderr
    assert "which the input model reads its weights from" in r.stderr and "--in-place" in r.stderr
    assert snapshot(d) == before
    # with --in-place it is allowed, and the result is the same model
    r = run_ulc("convert", src, "-o", d / "y.onnx", "--in-place")
    assert r.returncode == 0, r.stderr
    assert canonical(d / "y.onnx") == canonical(model)
    assert np.array_equal(outputs(d / "y.onnx"), outputs(model))


# ---------------------------------------------------------------------------------------------
# atomic replacement of an existing OUT


def test_existing_output_replaced_atomically(model, tmp_path):
    out = tmp_path / "out.onnx"
    out.write_bytes(b"old content")
    # a second name for the old file: a rename into place leaves it alone, an in-place rewrite
    # (truncate + write) would change it
    os.link(out, tmp_path / "old.onnx")
    old_ino = out.stat().st_ino
    r = run_ulc("convert", model, "-o", out)
    no_crash(r)
    assert r.returncode == 0, r.stderr
    assert canonical(out) == canonical(model)
    assert out.stat().st_ino != old_ino, "OUT was rewritten in place, not replaced"
    assert (tmp_path / "old.onnx").read_bytes() == b"old content"
    assert listing(tmp_path) == ["m", "old.onnx", "out.onnx"]


def test_existing_output_pair_replaced(model, tmp_path):
    out = tmp_path / "out.onnx"
    out.write_bytes(b"old model")
    (tmp_path / "out.onnx.data").write_bytes(b"old data")
    r = run_ulc("convert", model, "-o", out, "--external-data")
    assert r.returncode == 0, r.stderr
    assert listing(tmp_path) == ["m", "out.onnx", "out.onnx.data"]
    assert canonical(out) == canonical(model)


def test_failed_conversion_leaves_output_untouched(model, tmp_path):
    out = tmp_path / "out.onnx"
    assert run_ulc("convert", model, "-o", out).returncode == 0
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x08\x3a\x40")  # ir_version 8, then a graph field cut short
    before = snapshot(tmp_path)
    r = run_ulc("convert", bad, "-o", out)
    no_crash(r)
    assert r.returncode == EXIT_INPUT, r.stderr
    assert snapshot(tmp_path) == before


def _run_with_file_size_limit(limit, *args):
    """Runs ulc with RLIMIT_FSIZE = limit and SIGXFSZ ignored, so writes past `limit` bytes fail
    with EFBIG: a write error in the middle of the output."""
    def preexec():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return subprocess.run([ulc_bin(), *map(str, args)], capture_output=True, text=True,
                          timeout=600, preexec_fn=preexec)


@pytest.mark.parametrize("flags,existing", [([], False), ([], True),
                                            (["--external-data"], False),
                                            (["--external-data"], True)])
def test_write_error_leaves_nothing_behind(model, tmp_path, flags, existing):
    out = tmp_path / "out.onnx"
    if existing:
        out.write_bytes(b"old model")
        (tmp_path / "out.onnx.data").write_bytes(b"old data")
    before = snapshot(tmp_path)
    r = _run_with_file_size_limit(8192, "convert", model, "-o", out, *flags)
    no_crash(r)
    assert r.returncode == EXIT_IO, r.stderr
    assert r.stderr.startswith("ulc: error: ") and "write failed" in r.stderr, r.stderr
    assert "File too large" in r.stderr, r.stderr
    assert snapshot(tmp_path) == before, \
        f"left behind: {sorted(set(listing(tmp_path)) - set(before))}"


def test_write_error_safetensors(model, tmp_path):
    out = tmp_path / "w.safetensors"
    r = _run_with_file_size_limit(8192, "convert", model, "-o", out)
    no_crash(r)
    assert r.returncode == EXIT_IO, r.stderr
    assert listing(tmp_path) == ["m"]


# ---------------------------------------------------------------------------------------------
# safetensors


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
    # directory output gets model.safetensors, marked {"format": "pt"} as transformers wants
    r = run_ulc("convert", model, "-o", str(tmp_path / "hf") + "/")
    assert r.returncode == 0, r.stderr
    from safetensors import safe_open
    with safe_open(str(tmp_path / "hf" / "model.safetensors"), "np") as f:
        assert f.metadata() == {"format": "pt"}
    in_dir = load_file(str(tmp_path / "hf" / "model.safetensors"))
    assert in_dir.keys() == weights.keys()
    assert all(np.array_equal(in_dir[k], weights[k]) for k in weights)
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
    no_crash(r)
    assert r.returncode == EXIT_INPUT and "'x.weight'" in r.stderr
    assert not (tmp_path / "bad.safetensors").exists()
