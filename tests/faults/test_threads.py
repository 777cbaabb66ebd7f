"""Threads that yield (issue 16, item 7), without timing anything:

- the bytes never depend on the thread count: every method's output with the default, with
  --threads 1 and with --threads 3 (more threads than this machine's cores) is the same, and the
  default keeps writing those bytes when its sessions change their thread count in the middle of
  a run, as they do when the load changes (runtime/threads.c; ULC_TEST_THREAD_PICKS plays the
  load);
- the default stays inside what the process may use: one core of affinity mask (taskset) or
  OMP_NUM_THREADS=1 gives one thread (the --profile header says how many a session ran on);
- waiting threads sleep soon: a command that computes starts over with GOMP_SPINCOUNT=10000 when
  the environment chose no wait policy (libgomp's display then shows it), and a choice the user
  made is kept.
"""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, ulc_bin

DIGITS = ROOT / "models" / "digits"
METHODS = ["rfa", "delete", "scrub", "finetune", "neggrad", "random-label", "retrain", "graddiff",
           "npo", "ssd"]


def env_without(*names, **extra):
    e = {k: v for k, v in os.environ.items() if k not in names}
    e.update(extra)
    return e


def spec_for(tmp_path, method, epochs=1):
    s = json.loads((DIGITS / "forget_digit.json").read_text())
    s["method"] = method
    s["data"] = {k: str(DIGITS / v) for k, v in s["data"].items()}
    s["train"]["epochs"] = epochs
    if method != "rfa":
        s.pop("rfa", None)
        s.pop("lora", None)
    if method == "ssd":  # trains nothing: of "train" only the batch size and the seed apply
        s["train"] = {k: s["train"][k] for k in ("batch_size", "seed")}
    p = tmp_path / f"{method}.json"
    p.write_text(json.dumps(s))
    return p


def forget(spec, out, *extra, env=None):
    p = subprocess.run([ulc_bin(), DIGITS / "digits_resnet.onnx", "--forget", spec, "-o", out,
                        "-q", *extra], capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr
    return Path(out).read_bytes()


@pytest.mark.parametrize("method", METHODS)
def test_bytes_do_not_depend_on_threads(tmp_path, method):
    spec = spec_for(tmp_path, method)
    default = forget(spec, tmp_path / "d.onnx")
    assert forget(spec, tmp_path / "t1.onnx", "--threads", "1") == default
    assert forget(spec, tmp_path / "t3.onnx", "--threads", "3") == default


@pytest.mark.parametrize("method", ["rfa", "scrub"])
def test_bytes_hold_while_the_thread_count_changes(tmp_path, method):
    """ULC_TEST_THREAD_PICKS stands for a load that changes at every look: sessions switch
    between 2, 1 and 3 threads during the run (new plans each time) and still write the
    one-thread bytes."""
    spec = spec_for(tmp_path, method, epochs=2)
    want = forget(spec, tmp_path / "t1.onnx", "--threads", "1")
    got = forget(spec, tmp_path / "d.onnx", env=env_without(ULC_TEST_THREAD_PICKS="2,2,1,1,3,3"))
    assert got == want


def feeds(tmp):
    """The test digits' images alone (ulc run takes exactly the model's inputs)."""
    from safetensors.numpy import load_file, save_file
    p = tmp / "feeds.safetensors"
    save_file({"input": load_file(str(DIGITS / "test.safetensors"))["input"]}, str(p))
    return p


def profile_threads(tmp, *prefix, env=None):
    p = subprocess.run([*prefix, ulc_bin(), "run", DIGITS / "digits_resnet.onnx", "--input",
                        feeds(tmp), "-o", tmp / "out.safetensors", "--repeat", "2",
                        "--profile"], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    head = [l for l in (p.stdout + p.stderr).splitlines() if l.startswith("profile (")]
    assert head, p.stdout + p.stderr
    return int(head[0].split(", ")[-1].split()[0])


def test_requested_threads_are_taken_as_given(tmp_path):
    p = subprocess.run([ulc_bin(), "run", DIGITS / "digits_resnet.onnx", "--input",
                        feeds(tmp_path), "-o", tmp_path / "out.safetensors", "--repeat", "2",
                        "--profile", "--threads", "3"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "3 threads)" in p.stdout + p.stderr


@pytest.mark.skipif(not shutil.which("taskset") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs taskset and two cores")
def test_default_respects_the_affinity_mask(tmp_path):
    cpu = min(os.sched_getaffinity(0))
    assert profile_threads(tmp_path, "taskset", "-c", str(cpu)) == 1


def test_default_respects_omp_num_threads(tmp_path):
    assert profile_threads(tmp_path, env=env_without(OMP_NUM_THREADS="1")) == 1


def test_default_within_the_cores_it_may_use(tmp_path):
    assert 1 <= profile_threads(tmp_path) <= len(os.sched_getaffinity(0))


def omp_display(*args, env):
    p = subprocess.run([ulc_bin(), *args], capture_output=True, text=True, timeout=300,
                       env=env)
    assert p.returncode == 0, p.stderr
    spins = [l.split("=")[1].strip().strip("'") for l in p.stderr.splitlines()
             if l.strip().startswith("GOMP_SPINCOUNT")]
    policies = [l.split("=")[1].strip().strip("'") for l in p.stderr.splitlines()
                if l.strip().startswith("OMP_WAIT_POLICY")]
    assert spins and policies, p.stderr
    return spins[-1], policies[-1]  # the last display is the process that ran the command


def test_waiting_threads_sleep(tmp_path):
    """With no policy in the environment the command that runs is one that spins 10,000 times
    at most before it sleeps (libgomp's default is 300,000); a choice in the environment is kept."""
    args = ["eval", DIGITS / "digits_resnet.onnx", "--data", DIGITS / "test.safetensors"]
    plain = env_without("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", OMP_DISPLAY_ENV="VERBOSE")
    spin, _ = omp_display(*args, env=plain)
    assert spin == "10000"
    spin, policy = omp_display(*args, env=dict(plain, OMP_WAIT_POLICY="ACTIVE"))
    assert policy == "ACTIVE" and spin != "10000"
    spin, _ = omp_display(*args, env=dict(plain, GOMP_SPINCOUNT="500"))
    assert spin == "500"
