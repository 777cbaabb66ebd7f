"""Hugging Face checkpoints as graphs: `ulc convert HF_DIR -o model.onnx` builds transformers'
forward from config.json over the checkpoint's weights; onnxruntime then gives transformers'
outputs (<= 1e-4 relative), at several batch sizes and sequence lengths, with padding."""
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from conftest import run_ulc

torch.set_num_threads(1)

GPT2_CASES = {
    "tied_gelu_new": dict(tie_word_embeddings=True, activation_function="gelu_new"),
    "untied_gelu": dict(tie_word_embeddings=False, activation_function="gelu"),
    "distilgpt2_shape": dict(n_layer=6, n_head=4, n_embd=48, n_inner=96),
    "relu_inverse_layer_scale": dict(activation_function="relu", scale_attn_by_inverse_layer_idx=True),
}


def perturbed(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    return model.eval()


@pytest.mark.parametrize("case", list(GPT2_CASES))
@pytest.mark.parametrize("lm", [True, False], ids=["lm_head", "base"])
def test_gpt2(tmp_path, case, lm):
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Model
    torch.manual_seed(0)
    kw = dict(vocab_size=300, n_positions=32, n_embd=32, n_layer=2, n_head=4)
    kw.update(GPT2_CASES[case])
    cfg = GPT2Config(**kw)
    model = perturbed((GPT2LMHeadModel if lm else GPT2Model)(cfg), 1)
    hf = tmp_path / "hf"
    model.save_pretrained(str(hf), safe_serialization=True)
    out = tmp_path / "model.onnx"
    r = run_ulc("convert", hf, "-o", out)
    assert r.returncode == 0, r.stderr
    onnx.checker.check_model(str(out), full_check=True)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(2)
    for batch, seq in [(1, 5), (3, 11), (2, 32)]:
        ids = torch.randint(0, 300, (batch, seq), generator=g)
        mask = torch.ones_like(ids)
        if batch > 1:
            mask[1, seq // 2:] = 0  # right padding
            mask[0, :2] = 0         # left padding
        with torch.no_grad():
            o = model(input_ids=ids, attention_mask=mask)
            ref = (o.logits if lm else o.last_hidden_state).numpy()
        got = sess.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
        assert got.shape == ref.shape
        rel = np.abs(got - ref).max() / np.abs(ref).max()
        assert rel <= 1e-4, f"batch {batch}, seq {seq}: relative error {rel}"
    # the graph reads the checkpoint's tensors under their own names
    names = {t.name for t in onnx.load(str(out)).graph.initializer}
    assert ("transformer.wte.weight" if lm else "wte.weight") in names


def test_inspect_hf_dir(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel
    model = GPT2LMHeadModel(GPT2Config(vocab_size=100, n_positions=16, n_embd=16, n_layer=1, n_head=2))
    model.save_pretrained(str(tmp_path), safe_serialization=True)
    r = run_ulc("inspect", "--json", tmp_path)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["format"] == "huggingface"
    assert [i["name"] for i in info["inputs"]] == ["input_ids", "attention_mask"]
    assert info["outputs"] == [{"name": "logits", "dtype": "f32", "shape": ["batch", "sequence", 100]}]
    assert info["parameters"]["count"] >= sum(p.numel() for p in model.parameters()) - 100 * 16


def test_bad_config(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel
    model = GPT2LMHeadModel(GPT2Config(vocab_size=100, n_positions=16, n_embd=16, n_layer=1, n_head=2))
    model.save_pretrained(str(tmp_path), safe_serialization=True)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["n_embd"] = 24  # does not match the weights
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    r = run_ulc("convert", tmp_path, "-o", tmp_path / "x.onnx")
    assert r.returncode == 2, r.stderr
    assert "transformer.wte.weight" in r.stderr and "config.json implies" in r.stderr
    assert not (tmp_path / "x.onnx").exists()
    cfg["n_embd"] = 16
    cfg["activation_function"] = "swish_beyond"
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    r = run_ulc("convert", tmp_path, "-o", tmp_path / "x.onnx")
    assert r.returncode == 4 and "swish_beyond" in r.stderr
