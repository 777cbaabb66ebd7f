"""Training through the CLI (`ulc train`): a few steps lower the loss on the digits model and on
the ResNet, ViT and GPT-2 fixtures (whole weights and LoRA adapters); same seed and threads give
the same bytes; Ctrl-C and a failing step leave no output; bad data is refused up front."""
import json
import signal
import subprocess
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from safetensors.numpy import save_file

from conftest import ROOT, run_ulc, ulc_bin

sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
import gen_exporters  # noqa: E402

DIGITS = ROOT / "models" / "digits"


@pytest.fixture(scope="module")
def exported(fixture_dir):
    return gen_exporters.generate(fixture_dir)


def losses(path):
    return json.loads(path.read_text())["loss"]


def decreased(curve, k=3):
    return np.mean(curve[-k:]) < 0.9 * np.mean(curve[:k])


def image_data(path, n, shape, classes, seed=0):
    r = np.random.default_rng(seed)
    save_file({"input": r.standard_normal((n, *shape)).astype(np.float32),
               "label": r.integers(0, classes, n).astype(np.int64)}, str(path))


def test_digits_whole_weights_loss_goes_down_and_model_improves(tmp_path, ulc):
    out = tmp_path / "out.onnx"
    ulc("train", DIGITS / "digits_resnet.onnx", "--data", DIGITS / "train.safetensors",
        "-o", out, "--params", "*", "--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9",
        "--batch-size", "64", "--max-steps", "12", "--seed", "1", "-q",
        "--losses", tmp_path / "l.json", check=True)
    curve = losses(tmp_path / "l.json")
    assert len(curve) == 12 and all(np.isfinite(curve))
    m = onnx.load(out)
    base = onnx.load(DIGITS / "digits_resnet.onnx")
    assert [n.op_type for n in m.graph.node] == [n.op_type for n in base.graph.node]
    assert [i.name for i in m.graph.initializer] == [i.name for i in base.graph.initializer]
    changed = sum(not np.array_equal(onnx.numpy_helper.to_array(a), onnx.numpy_helper.to_array(b))
                  for a, b in zip(m.graph.initializer, base.graph.initializer))
    assert changed == len(base.graph.initializer)


@pytest.mark.parametrize("fixture,shape,classes,params", [
    ("resnet18_op17.onnx", (3, 64, 64), 1000, "fc.*|onnx::Conv_2*"),
    ("vit_op17.onnx", (3, 32, 32), 10, "*"),
])
def test_fixture_training_lowers_the_loss(tmp_path, ulc, exported, fixture, shape, classes, params):
    data = tmp_path / "d.safetensors"
    image_data(data, 8, shape, classes)
    ulc("train", exported / fixture, "--data", data, "-o", tmp_path / "o.onnx", "--params", params,
        "--lr", "3e-3", "--batch-size", "4", "--epochs", "6", "--seed", "0", "-q",
        "--losses", tmp_path / "l.json", check=True)
    curve = losses(tmp_path / "l.json")
    assert len(curve) == 12
    assert decreased(curve), curve


def test_gpt2_next_token_training_lowers_the_loss(tmp_path, ulc, exported):
    r = np.random.default_rng(0)
    ids = r.integers(0, 1000, (8, 12)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[1, 9:] = 0
    save_file({"input_ids": ids, "attention_mask": mask}, str(tmp_path / "t.safetensors"))
    ulc("train", exported / "gpt2_tiny.onnx", "--data", tmp_path / "t.safetensors", "--loss",
        "next-token", "--params", "*attn*|*mlp*", "-o", tmp_path / "o.onnx", "--lr", "3e-3",
        "--batch-size", "4", "--epochs", "5", "-q", "--losses", tmp_path / "l.json", check=True)
    curve = losses(tmp_path / "l.json")
    assert decreased(curve), curve


def test_same_seed_same_bytes_partial_last_batch(tmp_path, ulc):
    outs = []
    for i in range(2):
        out = tmp_path / f"o{i}.onnx"
        # 1437 training digits at batch 500: the last batch has 437 rows (a second plan)
        ulc("train", DIGITS / "digits_resnet.onnx", "--data", DIGITS / "train.safetensors",
            "-o", out, "--params", "fc.*", "--batch-size", "500", "--epochs", "1", "--seed", "7",
            "--threads", "2", "-q", "--losses", tmp_path / f"l{i}.json", check=True)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    assert len(losses(tmp_path / "l0.json")) == 3


def test_ctrl_c_leaves_no_output(tmp_path):
    out = tmp_path / "o.onnx"
    p = subprocess.Popen([ulc_bin(), "train", str(DIGITS / "digits_resnet.onnx"), "--data",
                          str(DIGITS / "train.safetensors"), "-o", str(out), "--params", "*",
                          "--epochs", "1000", "--batch-size", "32", "-q"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.0)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "interrupted" in err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_failing_step_leaves_no_output(tmp_path, ulc):
    bad = tmp_path / "bad.safetensors"
    x = np.ones((16, 1, 8, 8), np.float32)
    x[5, 0, 0, 0] = np.inf
    save_file({"input": x, "label": np.zeros(16, np.int64)}, str(bad))
    out = tmp_path / "o.onnx"
    r = ulc("train", DIGITS / "digits_resnet.onnx", "--data", bad, "-o", out, "--params", "*",
            "--batch-size", "4", "--no-shuffle", "-q")
    assert r.returncode != 0
    assert "step 2" in r.stderr and "nan" in r.stderr.lower(), r.stderr
    assert not out.exists()


@pytest.mark.parametrize("data,msg", [
    ({"input": np.zeros((4, 1, 8, 8), np.float32)}, "no 'label' column"),
    ({"input": np.zeros((4, 1, 8, 8), np.float32), "label": np.zeros(3, np.int64)}, "rows"),
    ({"input": np.zeros((4, 1, 9, 8), np.float32), "label": np.zeros(4, np.int64)}, "dim 2"),
    ({"x": np.zeros((4, 1, 8, 8), np.float32), "label": np.zeros(4, np.int64)}, "no column feeds"),
])
def test_bad_data_is_refused(tmp_path, ulc, data, msg):
    p = tmp_path / "d.safetensors"
    save_file(data, str(p))
    r = ulc("train", DIGITS / "digits_resnet.onnx", "--data", p, "-o", tmp_path / "o.onnx",
            "--params", "*", "-q")
    assert r.returncode == 2 or r.returncode == 1, r.stderr
    assert msg in r.stderr, r.stderr
    assert not (tmp_path / "o.onnx").exists()


def test_nothing_to_train_is_an_error(tmp_path, ulc):
    r = ulc("train", DIGITS / "digits_resnet.onnx", "--data", DIGITS / "train.safetensors",
            "-o", tmp_path / "o.onnx", "-q")
    assert r.returncode != 0 and "nothing to train" in r.stderr
    r = ulc("train", DIGITS / "digits_resnet.onnx", "--data", DIGITS / "train.safetensors",
            "-o", tmp_path / "o.onnx", "--params", "nope*", "-q")
    assert r.returncode != 0 and "matches no" in r.stderr


def run_losses(tmp_path, tag, *args, env=None):
    import os
    lj = tmp_path / f"{tag}.json"
    r = subprocess.run([ulc_bin(), *map(str, args), "-o", str(tmp_path / f"{tag}.onnx"), "-q",
                        "--losses", str(lj)], capture_output=True, text=True,
                       env={**os.environ, **(env or {})}, timeout=600)
    assert r.returncode == 0, r.stderr
    return losses(lj)


def test_lora_training_conv_fused_form_matches_branch_form(tmp_path, exported):
    """Conv adapters can train through W + s·B·A (ULC_LORA_FUSION=1) or lora-inject's
    three-conv branch (=0). Same function, so the same losses up to rounding; and the loss goes
    down."""
    data = tmp_path / "d.safetensors"
    image_data(data, 8, (3, 64, 64), 1000)
    args = ["train", exported / "resnet18_op17.onnx", "--data", data, "--before",
            "lora-inject{rank=4,alpha=8,targets=Conv|Gemm,init=random,seed=3}", "--lr", "1e-4",
            "--batch-size", "4", "--epochs", "4", "--seed", "1", "--threads", "1"]
    fused = run_losses(tmp_path, "fused", *args, env={"ULC_LORA_FUSION": "1"})
    branch = run_losses(tmp_path, "branch", *args, env={"ULC_LORA_FUSION": "0"})
    np.testing.assert_allclose(fused, branch, rtol=2e-3)
    assert decreased(fused), fused


def test_gpt2_lora_training_lowers_the_loss(tmp_path, exported):
    r = np.random.default_rng(1)
    ids = r.integers(0, 1000, (8, 10)).astype(np.int64)
    save_file({"input_ids": ids, "attention_mask": np.ones_like(ids)}, str(tmp_path / "t.safetensors"))
    curve = run_losses(tmp_path, "g", "train", exported / "gpt2_tiny.onnx", "--data",
                       tmp_path / "t.safetensors", "--loss", "next-token", "--before",
                       "lora-inject{rank=8,alpha=16,targets=Gemm|MatMul}", "--lr", "1e-2",
                       "--batch-size", "4", "--epochs", "6")
    assert decreased(curve), curve


def test_torch_spelled_gelu_trains_as_one_op(tmp_path, monkeypatch):
    """torch exports nn.GELU as Mul(Mul(x, 1 + erf(x / √2)), 0.5); the training graph makes it one
    FastGelu (approximate "none", train/train_graph.c's erf_gelu) — the same weights as the
    spelled form (ULC_NO_FAST_GELU=1) within float32 rounding, and the forms did differ."""
    from onnx import TensorProto as TP, helper as h, numpy_helper as nh
    from safetensors.numpy import load_file
    rng = np.random.default_rng(2)
    nodes = [h.make_node("MatMul", ["input", "W"], ["a"]), h.make_node("Div", ["a", "r2"], ["d"]),
             h.make_node("Erf", ["d"], ["e"]), h.make_node("Add", ["e", "one"], ["t"]),
             h.make_node("Mul", ["a", "t"], ["m"]), h.make_node("Mul", ["m", "half"], ["g"]),
             h.make_node("MatMul", ["g", "W2"], ["logits"])]
    inits = [nh.from_array((rng.standard_normal((8, 16)) * 0.5).astype(np.float32), "W"),
             nh.from_array((rng.standard_normal((16, 4)) * 0.5).astype(np.float32), "W2"),
             nh.from_array(np.array(np.sqrt(2.0), np.float32), "r2"), nh.from_array(np.array(1.0, np.float32), "one"),
             nh.from_array(np.array(0.5, np.float32), "half")]
    g = h.make_graph(nodes, "mlp", [h.make_tensor_value_info("input", TP.FLOAT, ["N", 8])],
                     [h.make_tensor_value_info("logits", TP.FLOAT, ["N", 4])], inits)
    onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), str(tmp_path / "m.onnx"))
    save_file({"input": rng.standard_normal((48, 8)).astype(np.float32),
               "label": (np.arange(48) % 4).astype(np.int64)}, str(tmp_path / "d.safetensors"))
    outs = {}
    for tag in ("fused", "spelled"):
        if tag == "spelled":
            monkeypatch.setenv("ULC_NO_FAST_GELU", "1")
        proc = run_ulc("train", tmp_path / "m.onnx", "--data", tmp_path / "d.safetensors", "-o",
                       tmp_path / f"{tag}.onnx", "--params", "W|W2", "--epochs", "2")
        assert proc.returncode == 0, proc.stderr
        outs[tag] = {i.name: nh.to_array(i) for i in onnx.load(str(tmp_path / f"{tag}.onnx")).graph.initializer}
    for k in ("W", "W2"):
        np.testing.assert_allclose(outs["fused"][k], outs["spelled"][k], rtol=1e-4, atol=1e-6, err_msg=k)
    assert any(outs["fused"][k].tobytes() != outs["spelled"][k].tobytes() for k in ("W", "W2"))
