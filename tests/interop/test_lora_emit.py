"""`ulc convert --passes "lora-inject{init=random},lora-merge" --emit-adapter DIR` against PEFT:
the emitted adapter loads with PeftModel.from_pretrained on the torch / transformers model the
ONNX file or checkpoint came from, and PEFT's merge_and_unload gives ulc's merged weights
(<= 1e-6 relative to the weight's scale). Covered: torch exports (torchvision ViT: Conv2d, Linear
as Gemm and as torch's transposed MatMul copy; GPT-2's Conv1D as Gemm, fan_in_fan_out) and HF
checkpoints ulc builds graphs for (GPT-2's Conv1D as MatMul; ViT's Linear as
MatMul(x, Transpose(W)), its patch Conv2d). On the HF GPT-2, PEFT's unmerged forward also gives
onnxruntime's outputs on the injected (unmerged) model, and `ulc merge` of the adapter into the
checkpoint gives lora-merge's bytes.
"""
import json
import sys
from urllib.parse import unquote

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper
from peft import PeftModel
from safetensors.numpy import load_file

from conftest import ROOT, run_ulc

sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
import gen_exporters  # noqa: E402
import gen_hf  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def exported(fixture_dir):
    return gen_exporters.generate(fixture_dir)


@pytest.fixture(scope="module")
def hf_fixtures(fixture_dir):
    return gen_hf.generate(fixture_dir)


def records(path):
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    lines = meta["ulc.lora"].splitlines()
    return [{k: unquote(v) for k, v in (f.split("=", 1) for f in ln.split(" "))} for ln in lines[1:]]


def initializers(path):
    return {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}


def inject_merge_emit(tmp_path, src, options):
    """(injected model, merged model, adapter dir) for lora-inject{options}."""
    inj, merged, ad = tmp_path / "inj.onnx", tmp_path / "merged.onnx", tmp_path / "adapter"
    p = f"lora-inject{{{options}}}"
    r = run_ulc("convert", src, "-o", inj, "--passes", p)
    assert r.returncode == 0, r.stderr
    r = run_ulc("convert", src, "-o", merged, "--passes", p + ",lora-merge", "--emit-adapter", ad)
    assert r.returncode == 0, r.stderr
    return inj, merged, ad


def peft_merged(model, ad):
    pm = PeftModel.from_pretrained(model, str(ad))
    return {k: v.detach().float().numpy() for k, v in pm.merge_and_unload().state_dict().items()}


def assert_matches(recs, ours, ref, base):
    """ours: ulc's merged initializers; ref: PEFT's merged state dict; base: the state dict
    before merging (checks the torch model is the one the ONNX file came from)."""
    assert recs
    for rec in recs:
        key = rec["module"] + ".weight"
        w = ours[rec["weight"]]
        if rec["weight"] != key:  # torch's transposed MatMul copy of an nn.Linear weight
            assert rec["kind"] == "linear_in_out"
            w = w.T
        r = ref[key]
        assert w.shape == r.shape, key
        scale = max(1.0, float(np.abs(r).max()))
        err = float(np.abs(w - r).max())
        assert err <= 1e-6 * scale, f"{key}: max diff {err}"
        assert float(np.abs(r - base[key]).max()) > 1e-3, f"{key}: the adapter changed nothing"


def test_torch_vit_export(exported, tmp_path):
    src = exported / "vit_op17.onnx"
    inj, merged, ad = inject_merge_emit(tmp_path, src, "rank=4,alpha=8,init=random,seed=5,"
                                                       "exclude=*self_attention")
    recs = records(inj)
    assert {r["kind"] for r in recs} == {"conv", "linear_out_in", "linear_in_out"}
    cfg = json.loads((ad / "adapter_config.json").read_text())
    assert cfg["fan_in_fan_out"] is False and cfg["r"] == 4 and cfg["lora_alpha"] == 8
    model = gen_exporters.vit()[0]
    base = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    onnx_base = initializers(src)
    for rec in recs:  # the fixture holds this model's weights
        w = onnx_base[rec["weight"]]
        assert np.array_equal(w if rec["weight"].endswith(".weight") else w.T, base[rec["module"] + ".weight"])
    assert_matches(recs, initializers(merged), peft_merged(model, ad), base)


def test_torch_gpt2_export_conv1d(exported, tmp_path):
    src = exported / "gpt2_tiny.onnx"
    inj, merged, ad = inject_merge_emit(tmp_path, src, "targets=Gemm,rank=2,alpha=5,rslora=1,"
                                                       "init=random,seed=9")
    recs = records(inj)
    assert len(recs) == 8 and {r["kind"] for r in recs} == {"linear_in_out"}
    cfg = json.loads((ad / "adapter_config.json").read_text())
    assert cfg["fan_in_fan_out"] is True and cfg["use_rslora"] is True
    model = gen_exporters.gpt2()[0]
    base = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    assert np.array_equal(initializers(src)[recs[0]["weight"]], base[recs[0]["weight"]])
    assert_matches(recs, initializers(merged), peft_merged(model, ad), base)


def hf_dir(hf_fixtures, name, tmp_path):
    return gen_hf.hf_dir(hf_fixtures, name, tmp_path / name)


def test_hf_gpt2_checkpoint(hf_fixtures, tmp_path):
    from transformers import GPT2LMHeadModel
    hf = hf_dir(hf_fixtures, "hf_gpt2", tmp_path)
    inj, merged, ad = inject_merge_emit(tmp_path, hf, "rank=4,init=random,seed=3")
    recs = records(inj)
    assert sorted({r["module"].split(".")[-1] for r in recs}) == ["c_attn", "c_fc", "c_proj"]
    assert json.loads((ad / "adapter_config.json").read_text())["fan_in_fan_out"] is True
    model = GPT2LMHeadModel.from_pretrained(str(hf)).eval()
    base = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    # PEFT's unmerged forward = onnxruntime on the injected graph
    pm = PeftModel.from_pretrained(GPT2LMHeadModel.from_pretrained(str(hf)).eval(), str(ad)).eval()
    ids = torch.randint(0, 300, (2, 7), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        want = pm(input_ids=ids, attention_mask=mask).logits.numpy()
    sess = ort.InferenceSession(str(inj), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    ours = initializers(merged)
    assert_matches(recs, ours, peft_merged(model, ad), base)
    # `ulc merge` of the adapter into the checkpoint directory: lora-merge's bits
    out = tmp_path / "merged_dir"
    r = run_ulc("merge", hf, "--lora", ad, "-o", out)
    assert r.returncode == 0, r.stderr
    w = load_file(str(out / "model.safetensors"))
    for rec in recs:
        assert np.array_equal(w[rec["weight"]], ours[rec["weight"]]), rec["weight"]


def test_hf_vit_checkpoint_transposed_linears(hf_fixtures, tmp_path):
    from transformers import ViTForImageClassification
    hf = hf_dir(hf_fixtures, "hf_vit", tmp_path)
    inj, merged, ad = inject_merge_emit(tmp_path, hf, "rank=3,alpha=4,init=random,seed=4")
    recs = records(inj)
    mods = {r["module"] for r in recs}
    assert "vit.encoder.layer.0.attention.attention.query" in mods and "classifier" in mods
    assert "vit.embeddings.patch_embeddings.projection" in mods
    assert {r["kind"] for r in recs} == {"conv", "linear_out_in"}
    model = ViTForImageClassification.from_pretrained(str(hf)).eval()
    base = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    assert_matches(recs, initializers(merged), peft_merged(model, ad), base)
