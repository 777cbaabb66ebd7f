"""The wheel as a user gets it (`make test-wheel`; docs/python.md): the ulc-*.whl in
ULC_WHEEL_DIST (default dist/) installed with pip, offline, into a fresh venv made from
/usr/bin/python3 without system packages, then

  - the wheel's name, tags and files: py3-none-manylinux_*_x86_64, the executable, libulc.so.0,
    the grafted libraries, the console entry point;
  - nothing installed reaches into a build tree: every library the executable and libulc.so.0
    load resolves inside the wheel (ulc.libs/) or to the system libraries manylinux allows, and
    their RPATHs are relative;
  - the `ulc` console command on the digits default (forget digit 3 with
    models/digits/forget_digit.json): exit 0, the report, the forget set at 0 %, exit codes of
    failures passed through;
  - the module: ulc.forget(...) giving the report dict with the same scores and a model with the
    same bytes as the command's, a request built from arguments, errors as ulc.Error subclasses,
    ulc.merge and ulc.convert writing what `ulc merge` and `ulc convert` write, and
    allow_external_outside reaching the load.

Every program runs with a clean environment (no ULC_BIN, ULC_LIBRARY, PYTHONPATH or
LD_LIBRARY_PATH) from a scratch directory, so only the installed copy can be found.
"""
import glob
import json
import os
import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "models" / "digits"
MODEL, SPEC = str(DIGITS / "digits_resnet.onnx"), str(DIGITS / "forget_digit.json")
TRAIN, TEST = str(DIGITS / "train.safetensors"), str(DIGITS / "test.safetensors")
PEFT = ROOT / "tests" / "fixtures" / "peft_0_21"
# What a manylinux wheel may load from the system (PEP 600's libraries, and the loader's own).
SYSTEM_LIBS = {"libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2", "librt.so.1",
               "libstdc++.so.6", "libgcc_s.so.1", "ld-linux-x86-64.so.2", "linux-vdso.so.1",
               "libutil.so.1", "libresolv.so.2"}


def clean_env():
    env = {k: v for k, v in os.environ.items()
           if k not in ("ULC_BIN", "ULC_LIBRARY", "PYTHONPATH", "LD_LIBRARY_PATH", "PYTHONHOME",
                        "VIRTUAL_ENV", "GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


@pytest.fixture(scope="module")
def wheel():
    dist = Path(os.environ.get("ULC_WHEEL_DIST", ROOT / "dist"))
    found = sorted(glob.glob(str(dist / "ulc-*.whl")))
    if len(found) != 1:
        pytest.fail(f"expected one ulc-*.whl in {dist}, found {found} (run `make wheel`)")
    return Path(found[0])


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory):
    """A fresh venv with the wheel installed; returns its directory."""
    d = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(d)], check=True, env=clean_env())
    subprocess.run([str(d / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index",
                    "--disable-pip-version-check", str(wheel)], check=True, env=clean_env())
    return d


@pytest.fixture(scope="module")
def site(venv):
    out = subprocess.run([str(venv / "bin" / "python"), "-c",
                          "import ulc, os; print(os.path.dirname(os.path.dirname(ulc.__file__)))"],
                         capture_output=True, text=True, check=True, env=clean_env(), cwd="/")
    return Path(out.stdout.strip())


@pytest.fixture(scope="module")
def cli_run(venv, tmp_path_factory):
    """The console command on the digits default: (process, output model, report)."""
    out = tmp_path_factory.mktemp("cli")
    proc = subprocess.run([str(venv / "bin" / "ulc"), str(DIGITS / "digits_resnet.onnx"),
                           "--forget", str(DIGITS / "forget_digit.json"), "-o",
                           str(out / "forget3.onnx"), "--report", str(out / "report.json"), "-q"],
                          capture_output=True, text=True, env=clean_env(), cwd=out, timeout=600)
    report = json.loads((out / "report.json").read_text()) if proc.returncode == 0 else None
    return proc, out / "forget3.onnx", report


def python(venv, code, cwd):
    """Runs code with the venv's Python; returns the CompletedProcess (fails on a non-zero exit)."""
    proc = subprocess.run([str(venv / "bin" / "python"), "-c", textwrap.dedent(code)],
                          capture_output=True, text=True, env=clean_env(), cwd=cwd, timeout=600)
    assert proc.returncode == 0, f"exit {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_wheel_name_and_files(wheel):
    m = re.fullmatch(r"ulc-(\d+\.\d+\.\d+)-py3-none-manylinux_(\d+)_(\d+)_x86_64\.whl", wheel.name)
    assert m, wheel.name
    version = m.group(1)
    cmake = (ROOT / "CMakeLists.txt").read_text()
    assert re.search(rf"project\(ulc VERSION {re.escape(version)}\b", cmake)
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        info = {i.filename: i for i in z.infolist()}
        meta = z.read(f"ulc-{version}.dist-info/WHEEL").decode()
        entry = z.read(f"ulc-{version}.dist-info/entry_points.txt").decode()
    for f in ("ulc/__init__.py", "ulc/_cli.py", "ulc/__main__.py", "ulc/_version.py",
              "ulc/_bin/ulc", "ulc/_lib/libulc.so.0"):
        assert f in names, f
    assert (info["ulc/_bin/ulc"].external_attr >> 16) & 0o111, "the executable lost its x bit"
    grafted = [n for n in names if n.startswith("ulc.libs/")]
    for lib in ("libdnnl", "libprotobuf-c", "libcjson", "libzstd", "libgomp"):
        assert any(n.startswith(f"ulc.libs/{lib}-") for n in grafted), (lib, grafted)
    assert "Root-Is-Purelib: false" in meta
    assert re.search(r"Tag: py3-none-manylinux_\d+_\d+_x86_64", meta), meta
    assert "ulc = ulc._cli:main" in entry


def test_installed_files_need_no_build_tree(site):
    for rel in ("ulc/_bin/ulc", "ulc/_lib/libulc.so.0"):
        path = site / rel
        dyn = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True,
                             check=True).stdout
        for rpath in re.findall(r"\((?:RPATH|RUNPATH)\)\s+Library r(?:un)?path: \[(.*)\]", dyn):
            assert all(p.startswith("$ORIGIN") for p in rpath.split(":")), (rel, rpath)
        ldd = subprocess.run(["ldd", str(path)], capture_output=True, text=True, check=True,
                             env=clean_env()).stdout
        assert "not found" not in ldd, ldd
        for line in ldd.strip().splitlines():
            name = line.split()[0]
            target = line.split("=>")[1].split("(")[0].strip() if "=>" in line else ""
            if os.path.basename(name) in SYSTEM_LIBS:
                continue
            assert target and Path(target).resolve().parent == (site / "ulc.libs").resolve(), \
                f"{rel}: {line.strip()}"


def test_console_command(venv, cli_run):
    version = subprocess.run([str(venv / "bin" / "ulc"), "--version"], capture_output=True,
                             text=True, env=clean_env(), cwd="/")
    assert version.returncode == 0 and "0." in version.stdout
    proc, model, report = cli_run
    assert proc.returncode == 0, proc.stderr
    assert model.stat().st_size > 0
    acc = report["accuracy"]
    assert acc["before"]["Df"] == 1 and acc["after"]["Df"] <= 0.01, acc
    assert acc["after"]["Drt"] >= 0.95, acc
    # failures keep the command's exit codes (1 usage, 3 I/O: docs/cli.md)
    bad = subprocess.run([str(venv / "bin" / "ulc"), "--no-such-option"], capture_output=True,
                         env=clean_env(), cwd="/")
    assert bad.returncode == 1
    missing = subprocess.run([str(venv / "bin" / "ulc"), "inspect", "/no/such/model.onnx"],
                             capture_output=True, text=True, env=clean_env(), cwd="/")
    assert missing.returncode == 3 and "/no/such/model.onnx" in missing.stderr
    # python -m ulc is the same command
    mod = subprocess.run([str(venv / "bin" / "python"), "-m", "ulc", "--version"],
                         capture_output=True, text=True, env=clean_env(), cwd="/")
    assert mod.returncode == 0 and mod.stdout == version.stdout


def test_module_forget(venv, cli_run, tmp_path):
    proc_cli, cli_model, cli_report = cli_run
    assert proc_cli.returncode == 0, proc_cli.stderr
    out = python(venv, f"""
        import json, ulc
        assert ulc.__file__.startswith({str(venv)!r}), ulc.__file__
        r = ulc.forget({MODEL!r}, {SPEC!r},
                       "forget3.onnx")
        print(json.dumps({{"report": r, "version": ulc.version(), "v": ulc.__version__}}))
    """, tmp_path)
    got = json.loads(out.stdout)
    r = got["report"]
    assert got["version"] == got["v"]
    assert isinstance(r, dict) and r["method"] == "rfa"
    assert r["accuracy"]["after"]["Df"] <= 0.01 and r["accuracy"]["before"]["Df"] == 1
    assert r["accuracy"] == cli_report["accuracy"]
    assert r["output"] is None  # the library reports the model in memory
    # the same request, seed and threads: the same bytes as the command's
    assert (tmp_path / "forget3.onnx").read_bytes() == cli_model.read_bytes()


def test_module_request_from_arguments(venv, tmp_path):
    out = python(venv, f"""
        import json, ulc
        r = ulc.forget({MODEL!r}, data={TRAIN!r},
                       classes=[3], test_data={TEST!r},
                       passes="finetune{{epochs=1,lr=0.001}}", seed=7, threads=1)
        print(json.dumps(r))
    """, tmp_path)
    r = json.loads(out.stdout)
    assert r["method"] == "finetune" and r["seed"] == 7
    assert set(r["accuracy"]["after"]) == {"Df", "Dr", "Dft", "Drt"}


def test_module_errors(venv, tmp_path):
    python(venv, f"""
        import ulc
        try:
            ulc.forget("/no/such/model.onnx", {SPEC!r})
        except ulc.InputOutputError as e:
            assert e.status == ulc.Status.IO and "/no/such/model.onnx" in e.message, e
            assert str(e).startswith(e.message), str(e)
        else:
            raise AssertionError("no error")
        try:
            ulc.convert({MODEL!r}, "out.onnx", passes="no-such-pass")
        except ulc.InvalidArgumentError as e:
            assert isinstance(e, ulc.Error) and "no-such-pass" in e.message, e
        else:
            raise AssertionError("no error")
        try:
            ulc.forget({MODEL!r}, data={TRAIN!r},
                       classes=[42])
        except ulc.InvalidInputError as e:
            assert "42" in e.message, e
        else:
            raise AssertionError("no error")
        for bad in (lambda: ulc.forget("m.onnx"), lambda: ulc.merge("b", [], "o")):
            try:
                bad()
            except ulc.InvalidArgumentError:
                pass
            else:
                raise AssertionError("no error")
    """, tmp_path)


def test_module_merge_and_convert(venv, tmp_path):
    ulc = str(venv / "bin" / "ulc")
    base, adapter = str(PEFT / "base.safetensors"), str(PEFT / "lora_plain")
    subprocess.run([ulc, "merge", base, "--lora", f"{adapter}:0.5", "-o", "cli_merged.safetensors",
                    "-q"], check=True, env=clean_env(), cwd=tmp_path)
    onnx = str(DIGITS / "digits_resnet.onnx")
    subprocess.run([ulc, "convert", onnx, "-o", "cli.safetensors", "--passes", "cleanup"],
                   check=True, env=clean_env(), cwd=tmp_path, capture_output=True)
    python(venv, f"""
        import ulc
        ulc.merge({base!r}, [{adapter!r}], "merged.safetensors", weights=[0.5])
        ulc.merge("merged.safetensors", {adapter!r}, "back.safetensors", weights=0.5, unmerge=True)
        ulc.convert({onnx!r}, "model.safetensors", passes="cleanup")
    """, tmp_path)
    assert (tmp_path / "merged.safetensors").read_bytes() == \
        (tmp_path / "cli_merged.safetensors").read_bytes()
    assert (tmp_path / "merged.safetensors").read_bytes() != Path(base).read_bytes()
    assert (tmp_path / "back.safetensors").stat().st_size == Path(base).stat().st_size
    assert (tmp_path / "model.safetensors").read_bytes() == \
        (tmp_path / "cli.safetensors").read_bytes()


def test_module_allow_external_outside(venv, tmp_path):
    """The context's setting reaches the load (ulc_ctx_set_allow_external_outside): ONNX external
    data symlinked out of the model's folder is refused by default, read when allowed."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    (tmp_path / "model").mkdir()
    (tmp_path / "secret").mkdir()
    w = numpy_helper.from_array(np.arange(4, dtype=np.float32), "W")
    g = helper.make_graph([helper.make_node("Add", ["X", "W"], ["Y"])], "g",
                          [helper.make_tensor_value_info("X", TensorProto.FLOAT, [4])],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [4])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save_model(m, str(tmp_path / "model" / "m.onnx"), save_as_external_data=True,
                    location="w.bin", size_threshold=0)
    (tmp_path / "model" / "w.bin").rename(tmp_path / "secret" / "w.bin")
    (tmp_path / "model" / "w.bin").symlink_to(tmp_path / "secret" / "w.bin")
    python(venv, """
        import ulc
        try:
            ulc.convert("model/m.onnx", "refused.onnx")
        except ulc.InvalidInputError as e:
            assert "outside the model's folder" in e.message, e
        else:
            raise AssertionError("no error")
        ulc.convert("model/m.onnx", "allowed.onnx", allow_external_outside=True)
    """, tmp_path)
    back = onnx.load(str(tmp_path / "allowed.onnx"))
    assert numpy_helper.to_array(back.graph.initializer[0]).tolist() == [0, 1, 2, 3]
    assert not (tmp_path / "refused.onnx").exists()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
