"""File safety (issue 16): no command writes over a file it reads (whatever the path, link or
hard link), inputs that change while ulc reads them fail the run cleanly (no SIGBUS death, no
output), FIFOs are refused without blocking, the report describes the bytes that were read,
temporaries are made late, locked, and cleaned after a SIGKILL, and ONNX external data stays
inside the model's folder unless --allow-external-outside. Every case is a reproducer from the
issue; none asserts a timing."""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import save_file

from conftest import ROOT, run_ulc, ulc_bin

DIGITS = ROOT / "models" / "digits"
MODEL = DIGITS / "digits_resnet.onnx"
TIMEOUT = 120  # generous: the ASan build on a loaded machine


def sha256(p):
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def listing(d):
    return sorted(p.name for p in Path(d).iterdir())


def no_signal(r):
    assert r.returncode >= 0 and r.returncode < 128, f"killed: {r.returncode}\n{r.stderr}"


# ---- small fixtures made here ------------------------------------------------------------------

def tiny_onnx(path):
    """y = x @ W, x [N, 4], W [4, 3]: enough for convert, run, grad, train and eval."""
    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3) / 10, "W")
    g = helper.make_graph([helper.make_node("MatMul", ["input", "W"], ["logits"])], "g",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
                          [w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def tiny_data(path, n=8):
    r = np.random.default_rng(0)
    save_file({"input": r.standard_normal((n, 4)).astype(np.float32),
               "label": (np.arange(n) % 3).astype(np.int64)}, str(path))
    return path


def tiny_adapter(d, base_weight_name="W"):
    """A PEFT adapter for the safetensors base {"lin.weight": [3, 4]}."""
    d.mkdir()
    (d / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": 2, "lora_alpha": 2, "target_modules": ["lin"]}))
    save_file({"base_model.model.lin.lora_A.weight": np.ones((2, 4), np.float32),
               "base_model.model.lin.lora_B.weight": np.ones((3, 2), np.float32)},
              str(d / "adapter_model.safetensors"))
    return d


def tiny_base(path):
    save_file({"lin.weight": np.ones((3, 4), np.float32)}, str(path))
    return path


@pytest.fixture
def files(tmp_path):
    d = tmp_path / "w"
    d.mkdir()
    return {"dir": d, "model": tiny_onnx(d / "m.onnx"), "data": tiny_data(d / "train.safetensors"),
            "feeds": tiny_data(d / "in.safetensors")}


def assert_untouched(r, path, before, code=1, *needles):
    no_signal(r)
    assert r.returncode == code, r.stderr
    for n in needles:
        assert n in r.stderr, r.stderr
    assert Path(path).read_bytes() == before


# ---- 1. no output over an input, through any alias, in every command ---------------------------

def aliases(d, target):
    """The target itself, a symlink to it, a hard link to it, and a path through a symlinked
    folder."""
    sym, hard = d / ("sym" + target.suffix), d / ("hard" + target.suffix)
    sym.symlink_to(target.name)
    os.link(target, hard)
    (d.parent / "dlink").symlink_to(d.name)
    return [target, sym, hard, d.parent / "dlink" / target.name]


def test_train_refuses_to_overwrite_its_data(files):
    d, data = files["dir"], files["data"]
    before = data.read_bytes()
    for out in aliases(d, data):
        r = run_ulc("train", files["model"], "--data", data, "-o", out, "--epochs", "1", "-q",
                    "--params", "W",
                    timeout=TIMEOUT)
        assert_untouched(r, data, before, 1, "would overwrite an input", "training data")


def test_grad_refuses_to_overwrite_its_feeds(files):
    d, feeds = files["dir"], files["feeds"]
    before = feeds.read_bytes()
    for out in aliases(d, feeds):
        r = run_ulc("grad", files["model"], "--input", feeds, "-o", out, timeout=TIMEOUT)
        assert_untouched(r, feeds, before, 1, "would overwrite an input", "feeds")


def test_run_refuses_to_overwrite_inputs(files):
    for target in (files["feeds"], files["model"]):
        before = target.read_bytes()
        r = run_ulc("run", files["model"], "--input", files["feeds"], "-o", target,
                    timeout=TIMEOUT)
        assert_untouched(r, target, before, 1, "refusing to overwrite" if target == files["model"]
                         else "would overwrite an input")


def test_convert_refuses_model_and_its_links(files):
    d, m = files["dir"], files["model"]
    before = m.read_bytes()
    for out in aliases(d, m):
        r = run_ulc("convert", m, "-o", out, timeout=TIMEOUT)
        assert_untouched(r, m, before, 1, "refusing to overwrite the input model", "--in-place")


@pytest.mark.parametrize("victim", ["adapter_model.safetensors", "adapter_config.json"])
def test_merge_refuses_to_overwrite_the_adapter(tmp_path, victim):
    base = tiny_base(tmp_path / "base.safetensors")
    ad = tiny_adapter(tmp_path / "adapter")
    before = (ad / victim).read_bytes()
    out = ad / victim
    r = run_ulc("merge", base, "--lora", ad, "-o", out, timeout=TIMEOUT)
    assert_untouched(r, out, before, 1, "would overwrite an input", "adapter")
    # a directory output counts by the files it would write: the base's side files too
    hf = tmp_path / "hf"
    hf.mkdir()
    tiny_base(hf / "model.safetensors")
    (hf / "notes.txt").write_text("side file")
    os.symlink(ad / "adapter_config.json", tmp_path / "cfg_link")
    outdir = tmp_path / "o"
    outdir.mkdir()
    (outdir / "notes.txt").symlink_to(ad / "adapter_config.json")
    before = (ad / "adapter_config.json").read_bytes()
    r = run_ulc("merge", hf, "--lora", ad, "-o", str(outdir) + "/", timeout=TIMEOUT)
    assert_untouched(r, ad / "adapter_config.json", before, 1, "would overwrite an input")
    assert listing(outdir) == ["notes.txt"]
    # and the same merge into a fresh folder works
    r = run_ulc("merge", base, "--lora", ad, "-o", tmp_path / "ok.safetensors", "-q",
                timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr


def digits_spec(tmp_path, epochs=1, **over):
    spec = {"method": "finetune",
            "data": {"train": str(tmp_path / "train.safetensors")},
            "forget": {"classes": [3]},
            "train": {"epochs": epochs, "batch_size": 64, "seed": 0}}
    spec.update(over)
    p = tmp_path / "spec.json"
    p.write_text(json.dumps(spec))
    return p


def digits_copy(tmp_path):
    shutil.copyfile(MODEL, tmp_path / "in.onnx")
    shutil.copyfile(DIGITS / "train.safetensors", tmp_path / "train.safetensors")
    return tmp_path / "in.onnx"


@pytest.mark.parametrize("victim", ["train.safetensors", "spec.json", "idx.json"])
def test_forget_refuses_outputs_over_inputs(tmp_path, victim):
    m = digits_copy(tmp_path)
    (tmp_path / "idx.json").write_text("[0, 1, 2]")
    sp = digits_spec(tmp_path, forget={"indices_file": str(tmp_path / "idx.json")})
    (tmp_path / "alias").symlink_to(victim)
    before = (tmp_path / victim).read_bytes()
    # the report, then the model output, over (a link to) the input
    r = run_ulc(m, "--forget", sp, "-o", tmp_path / "out.onnx", "--report", tmp_path / "alias",
                "-q", timeout=TIMEOUT)
    assert_untouched(r, tmp_path / victim, before, 1, "would overwrite an input")
    if victim == "train.safetensors":
        r = run_ulc(m, "--forget", sp, "-o", tmp_path / "x.onnx", "--report",
                    tmp_path / "train.safetensors", "-q", timeout=TIMEOUT)
        assert_untouched(r, tmp_path / victim, before, 1, "training data")
    assert not (tmp_path / "out.onnx").exists()


def test_train_passes_refuses_indices_file(tmp_path):
    m = digits_copy(tmp_path)
    idx = tmp_path / "rows.json"
    idx.write_text("[0, 1, 2]")
    before = idx.read_bytes()
    r = run_ulc("train", m, "--data", tmp_path / "train.safetensors", "--forget-indices", idx,
                "-o", idx, "--passes", "finetune{epochs=1}", "-q", timeout=TIMEOUT)
    no_signal(r)
    assert r.returncode == 1, r.stderr
    assert idx.read_bytes() == before


# ---- 2. inputs that change, FIFOs --------------------------------------------------------------

@pytest.mark.parametrize("role", ["model", "data", "adapter", "data.train"])
def test_fifo_is_refused_without_blocking(tmp_path, role):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    m = tiny_onnx(tmp_path / "m.onnx")
    d = tiny_data(tmp_path / "d.safetensors")
    if role == "model":
        args = ["convert", fifo, "-o", tmp_path / "o.onnx"]
    elif role == "data":
        args = ["eval", m, "--data", fifo]
    elif role == "adapter":
        ad = tiny_adapter(tmp_path / "ad")
        os.remove(ad / "adapter_model.safetensors")
        os.mkfifo(ad / "adapter_model.safetensors")
        args = ["merge", tiny_base(tmp_path / "b.safetensors"), "--lora", ad, "-o",
                tmp_path / "o.safetensors"]
    else:
        mc = digits_copy(tmp_path)
        sp = digits_spec(tmp_path)
        spec = json.loads(sp.read_text())
        spec["data"]["train"] = str(fifo)
        sp.write_text(json.dumps(spec))
        args = [mc, "--forget", sp, "-o", tmp_path / "o.onnx", "-q"]
    r = run_ulc(*args, timeout=TIMEOUT)  # a hang is a TimeoutExpired
    no_signal(r)
    assert r.returncode in (2, 3), r.stderr
    assert "FIFO" in r.stderr, r.stderr
    assert not any(p.name.startswith("o.") for p in tmp_path.iterdir())


def start_forget(tmp_path, epochs=400):
    """A forget run on copies that will go on for a while; returns once it trains."""
    m = digits_copy(tmp_path)
    sp = digits_spec(tmp_path, epochs=epochs)
    out = tmp_path / "out.onnx"
    p = subprocess.Popen([ulc_bin(), str(m), "--forget", str(sp), "-o", str(out), "--report",
                          str(tmp_path / "report.json"), "--threads", "2"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # the first epoch line: the model and the data are loaded and mapped
    line = p.stderr.readline()
    while line and "epoch 1/" not in line:
        line = p.stderr.readline()
    assert line, "the run ended before its first epoch"
    return p, m, out


def finish(p):
    try:
        _, rest = p.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise
    return rest


@pytest.mark.parametrize("victim", ["in.onnx", "train.safetensors"])
def test_truncated_input_fails_cleanly(tmp_path, victim):
    p, m, out = start_forget(tmp_path)
    os.truncate(tmp_path / victim, 0)
    err = finish(p)
    assert p.returncode >= 0, f"killed by signal {-p.returncode}: {err}"
    assert p.returncode == 3, err
    assert victim in err and "changed while ulc was reading it" in err, err
    assert not out.exists() and not (tmp_path / "report.json").exists()
    assert not [x for x in listing(tmp_path) if "ulc-tmp" in x]


def test_modified_input_fails_cleanly(tmp_path):
    p, m, out = start_forget(tmp_path)
    with open(tmp_path / "train.safetensors", "r+b") as f:  # same size, new bytes
        f.seek(-64, os.SEEK_END)
        f.write(b"\0" * 64)
    err = finish(p)
    assert p.returncode == 3, err
    assert "train.safetensors" in err and "changed while ulc was reading it" in err, err
    assert not out.exists()


@pytest.mark.parametrize("how", ["replace", "delete"])
def test_replaced_or_deleted_model_is_described_as_read(tmp_path, how):
    original = sha256(MODEL)
    p, m, out = start_forget(tmp_path, epochs=3)
    if how == "replace":
        tmp = tmp_path / "new.onnx"
        tiny_onnx(tmp)
        os.rename(tmp, m)
    else:
        os.remove(m)
    err = finish(p)
    assert p.returncode == 0, err
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["input"]["sha256"] == original, rep["input"]


# ---- 3. temporaries ----------------------------------------------------------------------------

def test_no_temporary_at_start_and_kill_leftovers_are_cleaned(tmp_path):
    p, m, out = start_forget(tmp_path)
    # loaded and training: nothing of ours in the folder yet (reports are made when written)
    assert not [x for x in listing(tmp_path) if "ulc-tmp" in x], listing(tmp_path)
    p.kill()
    p.communicate()
    # a SIGKILL during a write leaves a temporary: make one as ulc names them
    stale = tmp_path / ".out.onnx.ulc-tmp-AbC123"
    stale.write_bytes(b"partial")
    # one a live process holds stays
    held = tmp_path / ".keep.onnx.ulc-tmp-XyZ789"
    held.write_bytes(b"live")
    holder = subprocess.Popen([sys.executable, "-c",
                               "import fcntl,sys,time\n"
                               f"f=open({str(held)!r},'rb')\n"
                               "fcntl.flock(f,fcntl.LOCK_EX)\n"
                               "print('locked',flush=True)\n"
                               "time.sleep(600)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        r = run_ulc("convert", m, "-o", tmp_path / "c.onnx", timeout=TIMEOUT)
        assert r.returncode == 0, r.stderr
        assert not stale.exists()
        assert held.exists()
        assert ".out.onnx.ulc-tmp-AbC123" in r.stderr and "removed" in r.stderr, r.stderr
    finally:
        holder.kill()
        holder.wait()


# ---- 4. external data stays in the model's folder ----------------------------------------------

def model_with_external(d, location):
    """d/m.onnx whose weight W lives in external data at `location`."""
    m = onnx.load(str(tiny_onnx(d / "tmp.onnx")))
    os.remove(d / "tmp.onnx")
    w = m.graph.initializer[0]
    raw = numpy_helper.to_array(w).tobytes()
    w.ClearField("float_data")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", str(len(raw)))):
        e = w.external_data.add()
        e.key, e.value = k, v
    (d / "m.onnx").write_bytes(m.SerializeToString())  # (onnx.save would write the data)
    return d / "m.onnx", raw


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_external_data_symlink_out_of_the_folder(tmp_path, kind):
    secret = tmp_path / "secret"
    secret.mkdir()
    d = tmp_path / "model"
    d.mkdir()
    m, raw = model_with_external(d, "w.bin" if kind == "file" else "sub/w.bin")
    (secret / "w.bin").write_bytes(b"S" * len(raw))
    if kind == "file":
        (d / "w.bin").symlink_to(secret / "w.bin")
    else:
        (d / "sub").symlink_to(secret)
    for cmd in (["convert", m, "-o", tmp_path / "o.onnx"], ["inspect", m],
                ["run", m, "--input", tiny_data(tmp_path / "f.safetensors"), "-o",
                 tmp_path / "r.safetensors"]):
        r = run_ulc(*cmd, timeout=TIMEOUT)
        no_signal(r)
        assert r.returncode == 2, (cmd, r.stderr)
        for needle in ("m.onnx", "'W'", str((secret / "w.bin").resolve()),
                       "outside the model's folder", "--allow-external-outside"):
            assert needle in r.stderr, (cmd, r.stderr)
    assert not (tmp_path / "o.onnx").exists() and not (tmp_path / "r.safetensors").exists()
    # allowed when asked
    r = run_ulc("convert", m, "-o", tmp_path / "o.onnx", "--allow-external-outside",
                timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    w = onnx.load(str(tmp_path / "o.onnx")).graph.initializer[0]
    assert w.raw_data == b"S" * len(raw)


def test_external_data_symlink_inside_the_folder_is_fine(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    m, raw = model_with_external(d, "w.bin")
    (d / "real.bin").write_bytes(raw)
    (d / "w.bin").symlink_to("real.bin")
    r = run_ulc("convert", m, "-o", tmp_path / "o.onnx", timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr


def test_etc_passwd_is_not_copied(tmp_path):
    if not os.path.exists("/etc/passwd"):
        pytest.skip("no /etc/passwd")
    d = tmp_path / "model"
    d.mkdir()
    m, raw = model_with_external(d, "w.bin")
    (d / "w.bin").symlink_to("/etc/passwd")
    r = run_ulc("convert", m, "-o", tmp_path / "o.onnx", timeout=TIMEOUT)
    no_signal(r)
    assert r.returncode == 2 and "outside the model's folder" in r.stderr, r.stderr
    assert not (tmp_path / "o.onnx").exists()
