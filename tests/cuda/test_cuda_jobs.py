"""The CUDA backend through the commands: --device and --precision, the refusals, and the main
job on the embedded default giving the CPU's verdicts (issue 18, item 4) — on the emulator
everywhere, on a GPU where there is one (cuda_common.py)."""
import json
import os
import subprocess

import numpy as np
import pytest

from conftest import ROOT, ulc_bin
from cuda_common import cuda_mode, emulator_absent_reason, env_for, gpu_absent_reason  # noqa: F401

DIGITS = ROOT / "models" / "digits"


def ulc(*args, mode=None, env=None, timeout=600):
    e = env_for(mode) if mode else {k: v for k, v in os.environ.items() if k != "ULC_CUDA_EMULATE"}
    if env:
        e.update(env)
    return subprocess.run([ulc_bin(), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=e)


def test_version_names_the_backends():
    p = ulc("--version")
    assert p.returncode == 0
    assert "backends: cpu" in p.stdout
    if not emulator_absent_reason():
        assert "cuda (emulated on the host)" in ulc("--version", mode="emulator").stdout


def test_no_gpu_fails_at_once_with_why(tmp_path):
    """Without a visible GPU, --device cuda is exit 2 and one line saying so, before any work."""
    if gpu_absent_reason() is None:
        pytest.skip("a GPU is visible here: the refusal cannot be shown")
    for dev in ("cuda", "cuda:0", "cuda:3"):
        p = ulc("--device", dev, "eval", DIGITS / "digits_resnet.onnx", "--data", DIGITS / "test.safetensors")
        assert p.returncode == 2, p.stderr
        assert "--device cuda" in p.stderr and ("no CUDA device" in p.stderr or "built without" in p.stderr), p.stderr
        assert "Traceback" not in p.stderr and p.stdout == ""


@pytest.mark.parametrize("args,needle", [
    (["--device", "gpu"], "expected cpu, cuda or cuda:N"),
    (["--device", "cuda:x"], "expected cpu, cuda or cuda:N"),
    (["--device", "cpu:0"], "expected cpu, cuda or cuda:N"),
    (["--device"], "needs a value"),
    (["--precision", "tf32"], "--device cuda only"),
    (["--device", "cpu", "--precision", "tf32"], "--device cuda only"),
    (["--device", "cpu", "--precision", "fp16"], "expected fp32, tf32 or bf16"),
])
def test_bad_device_options_are_usage_errors(args, needle):
    cmd = ["eval", DIGITS / "digits_resnet.onnx", "--data", DIGITS / "test.safetensors"]
    p = ulc(*cmd, *args) if args == ["--device"] else ulc(*args, *cmd)  # options go anywhere
    assert p.returncode == 1, p.stderr
    assert needle in p.stderr


def test_device_cpu_is_the_default():
    a = ulc("eval", DIGITS / "digits_resnet.onnx", "--data", DIGITS / "test.safetensors", "--json")
    b = ulc("--device", "cpu", "eval", DIGITS / "digits_resnet.onnx", "--data", DIGITS / "test.safetensors", "--json")
    assert a.returncode == 0 and b.returncode == 0
    assert json.loads(a.stdout)["accuracy"] == json.loads(b.stdout)["accuracy"]


def test_eval_on_cuda_matches_cpu(cuda_mode):
    a = ulc("eval", DIGITS / "digits_resnet.onnx", "--data", DIGITS / "test.safetensors", "--json")
    b = ulc("--device", "cuda", "eval", DIGITS / "digits_resnet.onnx", "--data", DIGITS / "test.safetensors",
            "--json", mode=cuda_mode)
    assert b.returncode == 0, b.stderr
    ja, jb = json.loads(a.stdout), json.loads(b.stdout)
    assert ja["correct"] == jb["correct"] and ja["per_class"] == jb["per_class"]


def gated_spec(tmp_path):
    s = json.loads((DIGITS / "forget_digit.json").read_text())
    s["data"] = {k: str(DIGITS / v) for k, v in s["data"].items()}
    s["gates"] = {"forget_acc_max": 0.05, "retain_acc_drop_max": 0.05}
    p = tmp_path / "spec.json"
    p.write_text(json.dumps(s))
    return p


def forget(tmp_path, tag, mode=None, device="cpu", env=None):
    rep = tmp_path / f"report_{tag}.json"
    args = ["--device", device, DIGITS / "digits_resnet.onnx", "--forget", gated_spec(tmp_path),
            "-o", tmp_path / f"out_{tag}.onnx", "--report", rep, "-q"]
    p = ulc(*args, mode=mode, env=env, timeout=900)
    assert p.returncode == 0, p.stderr
    return json.loads(rep.read_text())


def verdicts(r):
    return {g["name"]: g["passed"] for g in r["gates"]}


def test_main_job_on_cuda_gives_the_cpus_verdicts(tmp_path, cuda_mode):
    """The whole unlearning command on the digits default (RFA: LoRA, the teacher, AdamW, the
    report's scoring and relearning probe) on the device: the same gates pass, the same
    accuracies, the loss curve within float summation-order noise, the device named."""
    cpu = forget(tmp_path, "cpu")
    dev = forget(tmp_path, "cuda", mode=cuda_mode, device="cuda")
    assert verdicts(cpu) == verdicts(dev) and len(verdicts(cpu)) == 2
    assert all(verdicts(dev).values())
    assert cpu["accuracy"]["after"] == dev["accuracy"]["after"]
    assert cpu["device"] == "cpu" and dev["device"].startswith("cuda:0 (")
    a, b = np.array(cpu["train"]["loss_curve"]), np.array(dev["train"]["loss_curve"])
    assert a.shape == b.shape
    assert np.abs(a - b).max() <= 1e-3 * np.abs(a).max(), np.abs(a - b).max()


def test_rfa_targets_on_the_device_equal_the_host_path(tmp_path, cuda_mode):
    """RFA's device path (the teacher's graph computes the targets; the student reads them in
    device memory; the data columns live on the device, the batch gathered there, and the teacher
    reads the student's) against its host path on the same backend (ULC_RFA_HOST_TARGETS=1, the
    columns bound from the host)."""
    dev = forget(tmp_path, "dev", mode=cuda_mode, device="cuda", env={"ULC_DEVICE_COLUMN_ROW_BYTES": "1"})
    host = forget(tmp_path, "host", mode=cuda_mode, device="cuda", env={"ULC_RFA_HOST_TARGETS": "1"})
    a, b = np.array(host["train"]["loss_curve"]), np.array(dev["train"]["loss_curve"])
    assert np.abs(a - b).max() <= 1e-4 * np.abs(a).max(), np.abs(a - b).max()
    assert host["accuracy"]["after"] == dev["accuracy"]["after"]


@pytest.mark.parametrize("opt", [["--optimizer", "adamw", "--weight-decay", "0.01"],
                                 ["--optimizer", "sgd", "--momentum", "0.9", "--nesterov", "--weight-decay", "0.001"],
                                 ["--optimizer", "sgd"]])
def test_parameters_on_the_device_update_like_the_host(tmp_path, cuda_mode, opt):
    """Training on the device keeps the parameters and the optimizer's moments there and runs
    optim.c's arithmetic in a kernel: against the same session updating on the host
    (ULC_TRAIN_HOST_PARAMS=1), the same gradients give the same bits — every step's loss and the
    written weights identical."""
    out = {}
    for tag, env in (("dev", {"ULC_DEVICE_COLUMN_ROW_BYTES": "1"}), ("host", {"ULC_TRAIN_HOST_PARAMS": "1"})):
        d = tmp_path / tag
        d.mkdir()
        p = ulc("--device", "cuda", "train", DIGITS / "digits_resnet.onnx", "--data", DIGITS / "train.safetensors",
                "-o", d / "m.onnx", "--params", "*", "--epochs", "1", "--max-steps", "6", "--batch-size", "64", "--lr", "0.01",
                *opt, "--seed", "3", "-q", "--losses", d / "losses.txt", mode=cuda_mode, env=env, timeout=900)
        assert p.returncode == 0, p.stderr
        out[tag] = (json.loads((d / "losses.txt").read_text())["loss"], (d / "m.onnx").read_bytes())
    assert out["dev"][0] == out["host"][0]
    assert out["dev"][1] == out["host"][1]


def test_text_model_trains_on_cuda_like_the_cpu(tmp_path, cuda_mode):
    """The bios example's DistilGPT2-shaped model (ulc's GPT-2 builder: embeddings, fused
    attention, GELU, LayerNorm, the tied head) trained next-token on every weight: each step's
    loss on the device within summation-order noise of the cpu's."""
    losses = {}
    for dev in ("cpu", "cuda"):
        out = tmp_path / dev
        p = ulc("--device", dev, "train", ROOT / "models" / "bios", "--data", ROOT / "models" / "bios" / "train.jsonl",
                "--loss", "next-token", "--params", "*", "--max-steps", "3", "--batch-size", "4", "--lr", "1e-3",
                "-o", str(out) + "/", "-q", "--losses", tmp_path / f"{dev}.json",
                mode=cuda_mode if dev == "cuda" else None, timeout=900)
        assert p.returncode == 0, p.stderr
        losses[dev] = json.loads((tmp_path / f"{dev}.json").read_text())["loss"]
    assert np.allclose(losses["cpu"], losses["cuda"], rtol=1e-5, atol=0), losses


def test_clip_concept_forgetting_on_cuda_gives_the_cpus_results(tmp_path, cuda_mode):
    """CLIP (both towers: a ViT and a text transformer) forgets 'one' with nhl-kl on the device:
    the same accuracies and zero-shot figures as on the cpu."""
    clip = ROOT / "models" / "clip_digits"
    reps = {}
    for dev in ("cpu", "cuda"):
        rep = tmp_path / f"{dev}.json"
        p = ulc("--device", dev, clip, "--forget", clip / "forget_one.json", "-o", str(tmp_path / dev) + "/",
                "--report", rep, "-q", mode=cuda_mode if dev == "cuda" else None, timeout=900)
        assert p.returncode == 0, p.stderr
        reps[dev] = json.loads(rep.read_text())
    assert reps["cpu"]["accuracy"] == reps["cuda"]["accuracy"]
    for when in ("before", "after"):
        a, b = reps["cpu"]["clip"][when], reps["cuda"]["clip"][when]
        assert a.keys() == b.keys()
        for k in a:
            assert abs(a[k] - b[k]) <= 0.01, (when, k, a[k], b[k])


def test_outputs_that_are_inputs_or_constants(tmp_path, cuda_mode):
    """Outputs the run does not compute come back right from a device plan: a bound input echoed,
    an unbound input's default (an initializer), a constant; and one that is computed."""
    from onnx import TensorProto, helper, numpy_helper
    from cuda_common import run_model
    import onnx
    g = helper.make_graph(
        [helper.make_node("Add", ["x", "one"], ["y"]), helper.make_node("Identity", ["c"], ["c_out"])], "m",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
         helper.make_tensor_value_info("d", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y", "x", "d", "c_out")],
        [numpy_helper.from_array(np.float32(1), "one"), numpy_helper.from_array(np.array([7, 8], np.float32), "d"),
         numpy_helper.from_array(np.array([5, 6, 7], np.float32), "c")])
    model = tmp_path / "m.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(model))
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    got = run_model(tmp_path, model, {"x": x}, "cuda", cuda_mode)
    assert np.array_equal(got["y"], x + 1) and np.array_equal(got["x"], x)
    assert np.array_equal(got["d"], [7, 8]) and np.array_equal(got["c_out"], [5, 6, 7])
