"""Hugging Face checkpoints as graphs: `ulc convert HF_DIR -o model.onnx` builds transformers'
forward from config.json over the checkpoint's weights; onnxruntime then gives transformers'
outputs (<= 1e-4 relative), at several batch sizes and sequence lengths, with padding."""
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from conftest import run_ulc

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from gen_hf import perturbed, randomize_bn  # noqa: E402

torch.set_num_threads(1)

GPT2_CASES = {
    "tied_gelu_new": dict(tie_word_embeddings=True, activation_function="gelu_new"),
    "untied_gelu": dict(tie_word_embeddings=False, activation_function="gelu"),
    "distilgpt2_shape": dict(n_layer=6, n_head=4, n_embd=48, n_inner=96),
    "relu_inverse_layer_scale": dict(activation_function="relu", scale_attn_by_inverse_layer_idx=True),
}



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


def _rel(got, ref):
    return float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-30))


def _convert(src, dst):
    r = run_ulc("convert", src, "-o", dst)
    assert r.returncode == 0, r.stderr
    if str(dst).endswith(".onnx"):
        onnx.checker.check_model(str(dst), full_check=True)
        return ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
    return None



VIT_CASES = {
    "classifier": ("cls", dict()),
    "no_qkv_bias_gelu_new": ("cls", dict(qkv_bias=False, hidden_act="gelu_new")),
    "rectangular_image": ("cls", dict(image_size=[16, 24], num_channels=1)),
    "base_with_pooler": ("pool", dict()),
    "base_without_pooler": ("base", dict()),
}


@pytest.mark.parametrize("case", list(VIT_CASES))
def test_vit(tmp_path, case):
    from transformers import ViTConfig, ViTForImageClassification, ViTModel
    kind, extra = VIT_CASES[case]
    torch.manual_seed(0)
    kw = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
              image_size=16, patch_size=4, num_labels=5)
    kw.update(extra)
    cfg = ViTConfig(**kw)
    model = (ViTForImageClassification(cfg) if kind == "cls"
             else ViTModel(cfg, add_pooling_layer=kind == "pool"))
    model = perturbed(model, 1)
    model.save_pretrained(str(tmp_path / "hf"), safe_serialization=True)
    sess = _convert(tmp_path / "hf", tmp_path / "m.onnx")
    outs = [o.name for o in sess.get_outputs()]
    assert outs == {"cls": ["logits"], "pool": ["last_hidden_state", "pooler_output"],
                    "base": ["last_hidden_state"]}[kind]
    h, w = (cfg.image_size if isinstance(cfg.image_size, list) else [cfg.image_size] * 2)
    g = torch.Generator().manual_seed(3)
    for batch in (1, 4):
        x = torch.randn(batch, cfg.num_channels, h, w, generator=g)
        with torch.no_grad():
            o = model(pixel_values=x)
        got = sess.run(None, {"pixel_values": x.numpy()})
        for name, val in zip(outs, got):
            ref = getattr(o, name).numpy()
            assert val.shape == ref.shape
            assert _rel(val, ref) <= 1e-4, f"{name}, batch {batch}"


CLIP_CASES = {
    "eos_token": dict(),
    "eos_2_argmax": dict(eos_token_id=2),
    "gelu_text": dict(hidden_act="gelu"),
}


@pytest.mark.parametrize("case", list(CLIP_CASES))
def test_clip(tmp_path, case):
    from transformers import CLIPConfig, CLIPModel
    torch.manual_seed(0)
    text = dict(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=16, eos_token_id=97)
    text.update(CLIP_CASES[case])
    vision = dict(hidden_size=24, intermediate_size=40, num_hidden_layers=2, num_attention_heads=2,
                  image_size=16, patch_size=4)
    model = perturbed(CLIPModel(CLIPConfig(text_config=text, vision_config=vision,
                                           projection_dim=12, logit_scale_init_value=2.0)), 1)
    model.save_pretrained(str(tmp_path / "hf"), safe_serialization=True)
    sess = _convert(tmp_path / "hf", tmp_path / "m.onnx")
    names = ["logits_per_image", "logits_per_text", "text_embeds", "image_embeds"]
    assert [o.name for o in sess.get_outputs()] == names
    eos = model.config.text_config.eos_token_id
    g = torch.Generator().manual_seed(4)
    for tb, ib, seq in [(1, 1, 5), (3, 2, 9), (2, 4, 16)]:
        ids = torch.randint(0, 97, (tb, seq), generator=g)
        mask = torch.ones_like(ids)
        for r in range(tb):  # an end-of-text token per row, some rows padded after it
            end = seq - 1 - (r % 3)
            ids[r, end] = eos if eos != 2 else 98  # old configs pool at the largest id
            mask[r, end + 1:] = 0
        px = torch.randn(ib, 3, 16, 16, generator=g)
        with torch.no_grad():
            o = model(input_ids=ids, pixel_values=px, attention_mask=mask)
        got = sess.run(None, {"input_ids": ids.numpy(), "pixel_values": px.numpy(),
                              "attention_mask": mask.numpy()})
        for name, val in zip(names, got):
            ref = getattr(o, name).numpy()
            assert val.shape == ref.shape
            assert _rel(val, ref) <= 1e-4, f"{name}, text batch {tb}, image batch {ib}"


RESNET_CASES = {
    "basic": ("cls", dict(layer_type="basic")),
    "bottleneck": ("cls", dict(layer_type="bottleneck")),
    "bottleneck_downsample_in_bottleneck": ("cls", dict(layer_type="bottleneck", downsample_in_bottleneck=True)),
    "basic_downsample_first_stage": ("cls", dict(layer_type="basic", downsample_in_first_stage=True)),
    "resnet_model": ("base", dict(layer_type="bottleneck")),
}


@pytest.mark.parametrize("case", list(RESNET_CASES))
def test_resnet(tmp_path, case):
    from transformers import ResNetConfig, ResNetForImageClassification, ResNetModel
    kind, extra = RESNET_CASES[case]
    torch.manual_seed(0)
    cfg = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 32], depths=[1, 2, 1], num_labels=4, **extra)
    model = (ResNetForImageClassification if kind == "cls" else ResNetModel)(cfg)
    model = randomize_bn(perturbed(model, 1), 2)
    model.save_pretrained(str(tmp_path / "hf"), safe_serialization=True)
    sess = _convert(tmp_path / "hf", tmp_path / "m.onnx")
    outs = [o.name for o in sess.get_outputs()]
    assert outs == (["logits"] if kind == "cls" else ["last_hidden_state", "pooler_output"])
    g = torch.Generator().manual_seed(5)
    for batch, h, w in [(1, 32, 32), (3, 40, 56)]:
        x = torch.randn(batch, 3, h, w, generator=g)
        with torch.no_grad():
            o = model(pixel_values=x)
        for name, val in zip(outs, sess.run(None, {"pixel_values": x.numpy()})):
            ref = getattr(o, name).numpy()
            assert val.shape == ref.shape
            assert _rel(val, ref) <= 1e-4, f"{name}, input {batch}x{h}x{w}"


def _tv_models():
    import torchvision
    from torchvision.models.resnet import Bottleneck, ResNet
    return {
        "resnet18": lambda: torchvision.models.resnet18(num_classes=7),
        "resnext_groups": lambda: ResNet(Bottleneck, [1, 2, 1, 1], num_classes=5, groups=4, width_per_group=8),
    }


@pytest.mark.parametrize("arch", ["resnet18", "resnext_groups"])
def test_torchvision_resnet_state_dict(tmp_path, arch):
    """A torchvision ResNet state_dict saved as safetensors (no config) is recognised by its
    tensor names; the graph gives torchvision's outputs, and going back to safetensors gives
    the same file byte for byte."""
    from safetensors.torch import save_file
    torch.manual_seed(0)
    model = randomize_bn(_tv_models()[arch]().eval(), 3)
    src = tmp_path / "weights.safetensors"
    save_file(model.state_dict(), str(src))
    sess = _convert(src, tmp_path / "m.onnx")
    assert [i.name for i in sess.get_inputs()] == ["input"]
    g = torch.Generator().manual_seed(6)
    for batch, h, w in [(1, 64, 64), (2, 48, 40)]:
        x = torch.randn(batch, 3, h, w, generator=g)
        with torch.no_grad():
            ref = model(x).numpy()
        got = sess.run(None, {"input": x.numpy()})[0]
        assert _rel(got, ref) <= 1e-4, f"input {batch}x{h}x{w}"
    _convert(tmp_path / "m.onnx", tmp_path / "back.safetensors")
    assert (tmp_path / "back.safetensors").read_bytes() == src.read_bytes()


def test_torchvision_lookalike_stays_weights(tmp_path):
    """Names that merely resemble torchvision's (an extra tensor) stay a weights-only model."""
    from safetensors.torch import save_file
    sd = _tv_models()["resnet18"]().state_dict()
    sd["extra.weight"] = torch.zeros(3)
    save_file(sd, str(tmp_path / "w.safetensors"))
    r = run_ulc("inspect", "--json", tmp_path / "w.safetensors")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["nodes"] == 0


ROUND_TRIP = {
    "gpt2": lambda: __import__("transformers").GPT2LMHeadModel(__import__("transformers").GPT2Config(
        vocab_size=100, n_positions=16, n_embd=16, n_layer=1, n_head=2)),
    "vit": lambda: __import__("transformers").ViTForImageClassification(__import__("transformers").ViTConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        image_size=8, patch_size=4, num_labels=3)),
    "clip": lambda: __import__("transformers").CLIPModel(__import__("transformers").CLIPConfig(
        text_config=dict(vocab_size=50, hidden_size=16, intermediate_size=20, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=8),
        vision_config=dict(hidden_size=16, intermediate_size=20, num_hidden_layers=1,
                           num_attention_heads=2, image_size=8, patch_size=4), projection_dim=8)),
    "resnet": lambda: __import__("transformers").ResNetForImageClassification(__import__("transformers").ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", num_labels=3)),
}


@pytest.mark.parametrize("arch", list(ROUND_TRIP))
def test_onnx_back_to_hf_dir(tmp_path, arch):
    """HF dir -> ONNX -> HF dir: config.json comes back, from_pretrained loads it with no
    missing or unexpected weights, and the model gives the original's outputs."""
    from transformers import AutoConfig
    torch.manual_seed(0)
    model = perturbed(ROUND_TRIP[arch](), 1)
    model.save_pretrained(str(tmp_path / "hf"), safe_serialization=True)
    _convert(tmp_path / "hf", tmp_path / "m.onnx")
    _convert(tmp_path / "m.onnx", str(tmp_path / "back") + "/")
    assert sorted(p.name for p in (tmp_path / "back").iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((tmp_path / "back" / "config.json").read_text()) == \
        json.loads((tmp_path / "hf" / "config.json").read_text())
    AutoConfig.from_pretrained(str(tmp_path / "back"))
    back, info = type(model).from_pretrained(str(tmp_path / "back"), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    sd, sd2 = model.state_dict(), back.state_dict()
    assert sd.keys() == sd2.keys() and all(torch.equal(sd[k], sd2[k]) for k in sd)


def test_generic_onnx_to_dir_writes_initializers(tmp_path):
    """Any ONNX model -> a directory gives its initializers under their own names, and no
    config.json (the graph came from no known architecture)."""
    from onnx import TensorProto, helper, numpy_helper
    w = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "my.weight")
    node = helper.make_node("MatMul", ["x", "my.weight"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [w])
    onnx.save(helper.make_model(graph), str(tmp_path / "m.onnx"))
    _convert(tmp_path / "m.onnx", str(tmp_path / "out") + "/")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model.safetensors"]
    from safetensors.numpy import load_file
    got = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert list(got) == ["my.weight"] and np.array_equal(got["my.weight"], numpy_helper.to_array(w))


@pytest.mark.parametrize("arch,key,value,code,needle", [
    ("vit", "patch_size", 5, 2, "patch_size"),
    ("vit", "hidden_act", "mish_x", 4, "mish_x"),
    ("resnet", "layer_type", "preactivation", 4, "preactivation"),
    ("resnet", "hidden_sizes", [8, 999], 2, "resnet.encoder.stages.1"),
    ("clip", "projection_dim", 8, None, None),
])
def test_bad_builder_configs(tmp_path, arch, key, value, code, needle):
    model = ROUND_TRIP[arch]()
    model.save_pretrained(str(tmp_path / "hf"), safe_serialization=True)
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    cfg[key] = value
    (tmp_path / "hf" / "config.json").write_text(json.dumps(cfg))
    r = run_ulc("convert", tmp_path / "hf", "-o", tmp_path / "x.onnx")
    if code is None:  # a key the graph does not depend on: still fine
        assert r.returncode == 0, r.stderr
        return
    assert r.returncode == code, r.stderr
    assert needle in r.stderr
    assert not (tmp_path / "x.onnx").exists()


def test_clip_mismatched_projection(tmp_path):
    model = ROUND_TRIP["clip"]()
    model.save_pretrained(str(tmp_path / "hf"), safe_serialization=True)
    from safetensors.torch import load_file, save_file
    sd = load_file(str(tmp_path / "hf" / "model.safetensors"))
    sd["visual_projection.weight"] = torch.zeros(5, 16)
    save_file(sd, str(tmp_path / "hf" / "model.safetensors"), metadata={"format": "pt"})
    r = run_ulc("convert", tmp_path / "hf", "-o", tmp_path / "x.onnx")
    assert r.returncode == 2 and "visual_projection.weight" in r.stderr, r.stderr
