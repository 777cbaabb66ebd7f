"""`ulc merge` against PEFT's own merge_and_unload, on adapters made by PEFT itself:

  - Linear, Conv1D (GPT2, fan_in_fan_out), Conv2d 3x3, Embedding, rsLoRA, rank_pattern and
    alpha_pattern: merged weights equal PEFT's (f32: <= 1e-6 relative to the weight's scale);
  - f16 / bf16 bases: within one rounding step of PEFT's result, dtype kept;
  - a GPT2 checkpoint merged by ulc loads with from_pretrained and gives the outputs of the
    PEFT-merged model; the same adapter merged into torch's ONNX export of GPT2 (weights found
    by name, and the transposed MatMul copy of lm_head by node scope) runs in onnxruntime
    with those outputs;
  - tied embeddings are never changed silently; --unmerge undoes a merge; bad adapters are
    refused with a clear message and no output.
"""
import copy
import json
import os

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.numpy import load_file
from safetensors.torch import save_file

from conftest import run_ulc

torch.set_num_threads(1)


class Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(50, 12)
        self.proj = torch.nn.Linear(12, 20)
        self.head = torch.nn.Linear(20, 7)
        self.conv = torch.nn.Conv2d(3, 6, 3, padding=1)
        self.pw = torch.nn.Conv2d(6, 4, 1)


def randomize_lora(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def make_case(tmp_path, cfg, dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    base = Toy().to(dtype)
    base_path = tmp_path / "base.safetensors"
    save_file({k: v.contiguous() for k, v in base.state_dict().items()}, str(base_path))
    pm = get_peft_model(copy.deepcopy(base), cfg)
    randomize_lora(pm, seed + 1)
    ad = tmp_path / "adapter"
    pm.save_pretrained(str(ad))
    merged = {k: v.detach().clone() for k, v in pm.merge_and_unload().state_dict().items()}
    return base_path, ad, merged


def assert_close_f32(ours, ref):
    for k, v in ref.items():
        r = v.float().numpy()
        o = ours[k].astype(np.float32)
        scale = max(1.0, float(np.abs(r).max()))
        assert np.abs(o - r).max() <= 1e-6 * scale, f"{k}: max diff {np.abs(o - r).max()}"


@pytest.mark.parametrize("cfg_kw", [
    dict(r=4, lora_alpha=8, target_modules=["proj", "head"]),
    dict(r=4, lora_alpha=8, target_modules=["conv", "pw"]),
    dict(r=3, lora_alpha=6, target_modules=["emb"]),
    dict(r=4, lora_alpha=16, target_modules=["proj", "head", "conv"], use_rslora=True),
    dict(r=4, lora_alpha=8, target_modules=["proj", "head", "conv"], rank_pattern={"head": 2},
         alpha_pattern={"conv": 3.0}),
], ids=["linear", "conv", "embedding", "rslora", "patterns"])
def test_matches_peft_f32(ulc, tmp_path, cfg_kw):
    base, ad, ref = make_case(tmp_path, LoraConfig(**cfg_kw))
    out = tmp_path / "merged.safetensors"
    r = ulc("merge", base, "--lora", ad, "-o", out)
    assert r.returncode == 0, r.stderr
    ours = load_file(str(out))
    assert ours.keys() == ref.keys()
    assert_close_f32(ours, ref)
    # the report names every adapted tensor
    for m in cfg_kw["target_modules"]:
        assert f"{m}.weight" in r.stdout


def spacing(x, dtype):
    """The gap between adjacent values of dtype at magnitude |x| (its rounding step)."""
    fi = torch.finfo(dtype)
    e = torch.floor(torch.log2(torch.clamp(torch.abs(x), min=fi.tiny)))
    return torch.pow(2.0, e) * fi.eps


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_half_precision_within_one_rounding_step(ulc, tmp_path, dtype):
    """ulc computes in f32 and rounds once to the base dtype; PEFT rounds the delta to the
    dtype first (bf16 also rounds B@A and the scaling), then rounds the sum. So: ours is the
    once-rounded f32 result, and it is within one rounding step of the result plus one of the
    delta from PEFT's."""
    base, ad, ref = make_case(tmp_path, LoraConfig(r=4, lora_alpha=8, target_modules=["proj", "head"]),
                              dtype=dtype)
    out = tmp_path / "merged.safetensors"
    r = ulc("merge", base, "--lora", ad, "-o", out)
    assert r.returncode == 0, r.stderr
    from safetensors.torch import load_file as load_t
    ours, orig, adt = load_t(str(out)), load_t(str(base)), load_t(str(ad / "adapter_model.safetensors"))
    for m in ["proj", "head"]:
        k = f"{m}.weight"
        assert ours[k].dtype == dtype
        A = adt[f"base_model.model.{m}.lora_A.weight"].float()
        B = adt[f"base_model.model.{m}.lora_B.weight"].float()
        delta = (B @ A) * 2.0  # alpha 8 / r 4
        exact = (orig[k].float() + delta).to(dtype).float()
        o, p = ours[k].float(), ref[k].float()
        assert bool((torch.abs(o - exact) <= spacing(exact, dtype)).all()), k
        # PEFT's delta: f16 is computed in f32 and rounded; bf16 is computed in bf16
        if dtype == torch.float16:
            peft_delta = delta.to(dtype).float()
        else:
            peft_delta = ((B.to(dtype) @ A.to(dtype)) * 2.0).float()
        tol = spacing(p, dtype) + torch.abs(peft_delta - delta)
        assert bool((torch.abs(o - p) <= tol).all()), f"{k}: {float(torch.abs(o - p).max())}"
    for k in ["emb.weight", "proj.bias", "conv.weight"]:  # untouched tensors stay bit-identical
        assert torch.equal(ours[k], orig[k])


def test_weights_unmerge_and_two_adapters(ulc, tmp_path):
    base, ad, _ = make_case(tmp_path, LoraConfig(r=4, lora_alpha=8, target_modules=["proj"]))
    half = tmp_path / "half.safetensors"
    assert ulc("merge", base, "--lora", f"{ad}:0.5", "-o", half).returncode == 0
    twice = tmp_path / "twice.safetensors"
    assert ulc("merge", base, "--lora", f"{ad}:0.25", "--lora", f"{ad}:0.25", "-o", twice).returncode == 0
    a, b, o = load_file(str(half)), load_file(str(twice)), load_file(str(base))
    assert np.abs(a["proj.weight"] - b["proj.weight"]).max() < 1e-6
    assert not np.array_equal(a["proj.weight"], o["proj.weight"])
    back = tmp_path / "back.safetensors"
    r = ulc("merge", half, "--lora", f"{ad}:0.5", "--unmerge", "-o", back)
    assert r.returncode == 0, r.stderr
    assert np.abs(load_file(str(back))["proj.weight"] - o["proj.weight"]).max() < 1e-6


def gpt2_case(tmp_path, target_modules, fan_in_fan_out=True, tied=True):
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=300, n_positions=32, n_embd=32, n_layer=2, n_head=2,
                     tie_word_embeddings=tied)
    base = GPT2LMHeadModel(cfg).eval()
    hf = tmp_path / "gpt2"
    base.save_pretrained(str(hf), safe_serialization=True)
    pm = get_peft_model(GPT2LMHeadModel.from_pretrained(str(hf)).eval(),
                        LoraConfig(r=4, lora_alpha=8, target_modules=target_modules,
                                   fan_in_fan_out=fan_in_fan_out))
    randomize_lora(pm, 5)
    ad = tmp_path / "gpt2_adapter"
    pm.save_pretrained(str(ad))
    merged = pm.merge_and_unload().eval()
    return hf, ad, merged


def test_gpt2_checkpoint_matches_peft(ulc, tmp_path):
    from transformers import GPT2LMHeadModel
    hf, ad, merged = gpt2_case(tmp_path, ["c_attn", "c_proj", "c_fc"])
    out = tmp_path / "merged_dir"
    r = ulc("merge", hf, "--lora", ad, "-o", out)
    assert r.returncode == 0, r.stderr
    assert "(stored [in,out])" in r.stdout  # Conv1D weights
    assert (out / "config.json").exists()
    ours = GPT2LMHeadModel.from_pretrained(str(out)).eval()
    ids = torch.randint(0, 300, (2, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = ours(ids).logits, merged(ids).logits
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-5), float((a - b).abs().max())
    sd = merged.state_dict()
    w = load_file(str(out / "model.safetensors"))
    assert_close_f32({k: w[k] for k in w}, {k: sd[k] for k in w})


def test_tied_embeddings_never_change_silently(ulc, tmp_path):
    from transformers import GPT2LMHeadModel
    hf, ad, _ = gpt2_case(tmp_path, ["lm_head"], fan_in_fan_out=False)
    out = tmp_path / "out"
    r = ulc("merge", hf, "--lora", ad, "-o", out)
    assert r.returncode == 2, r.stderr
    assert "tied" in r.stderr and "--untie-embeddings" in r.stderr and "lm_head" in r.stderr
    assert not out.exists()
    r = ulc("merge", hf, "--lora", ad, "-o", out, "--untie-embeddings")
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "config.json").read_text())["tie_word_embeddings"] is False
    w, base = load_file(str(out / "model.safetensors")), load_file(str(hf / "model.safetensors"))
    assert np.array_equal(w["transformer.wte.weight"], base["transformer.wte.weight"])
    assert not np.array_equal(w["lm_head.weight"], base["transformer.wte.weight"])
    m = GPT2LMHeadModel.from_pretrained(str(out))
    assert torch.equal(m.lm_head.weight.detach(), torch.from_numpy(w["lm_head.weight"]))


def test_gpt2_onnx_matches_peft(ulc, tmp_path):
    import onnxruntime as ort
    # untied, so that PEFT's reference changes lm_head alone (tied, PEFT changes both sides)
    hf, ad, merged = gpt2_case(tmp_path, ["c_attn", "c_proj", "lm_head"], tied=False)
    from transformers import GPT2LMHeadModel

    class Logits(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, ids):
            return self.m(input_ids=ids, use_cache=False, return_dict=False)[0]

    onnx_path = tmp_path / "gpt2.onnx"
    base = GPT2LMHeadModel.from_pretrained(str(hf)).eval()
    ids = torch.randint(0, 300, (1, 6))
    torch.onnx.export(Logits(base), (ids,), str(onnx_path), opset_version=14, input_names=["ids"],
                      output_names=["logits"], dynamic_axes={"ids": {0: "N", 1: "T"}})
    out = tmp_path / "merged.onnx"
    r = ulc("merge", onnx_path, "--lora", ad, "-o", out)
    assert r.returncode == 0, r.stderr
    assert "onnx::MatMul" in r.stdout and "(stored [in,out])" in r.stdout  # lm_head's transposed copy
    test_ids = torch.randint(0, 300, (2, 7), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = merged(test_ids).logits.numpy()
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"ids": test_ids.numpy()})[0]
    assert np.allclose(got, ref, rtol=1e-4, atol=1e-4), float(np.abs(got - ref).max())


def test_bad_adapters(ulc, tmp_path):
    base, ad, _ = make_case(tmp_path, LoraConfig(r=4, lora_alpha=8, target_modules=["proj"]))
    tensors = load_file(str(ad / "adapter_model.safetensors"))
    cfg = json.loads((ad / "adapter_config.json").read_text())

    def variant(name, t, c=cfg):
        d = tmp_path / name
        d.mkdir()
        from safetensors.numpy import save_file as save_np
        save_np(t, str(d / "adapter_model.safetensors"))
        (d / "adapter_config.json").write_text(json.dumps(c))
        return d

    key_a = next(k for k in tensors if k.endswith("lora_A.weight"))
    key_b = next(k for k in tensors if k.endswith("lora_B.weight"))
    missing = variant("missing", {k.replace("proj", "nothere"): v for k, v in tensors.items()})
    rank = variant("rank", {key_a: tensors[key_a], key_b: tensors[key_b][:, :3].copy()})
    onlya = variant("onlya", {key_a: tensors[key_a]})
    badr = variant("badr", tensors, {**cfg, "r": 8})
    dora = variant("dora", tensors, {**cfg, "use_dora": True})
    cases = [(missing, "names no tensor of the base model", "nothere"),
             (rank, "A/B rank mismatch", "proj"),
             (onlya, "has lora_A but no lora_B", "proj"),
             (badr, "the config gives rank 8", "proj"),
             (dora, "no lora_magnitude_vector", "proj")]
    for d, needle, name in cases:
        out = tmp_path / f"out_{d.name}.safetensors"
        r = ulc("merge", base, "--lora", d, "-o", out)
        assert r.returncode in (2, 4), (d.name, r.stderr)
        assert needle in r.stderr and name in r.stderr, (d.name, r.stderr)
        assert not out.exists()
    # non-finite results are refused (PEFT's safe_merge)
    inf = variant("inf", {key_a: tensors[key_a] * np.float32(1e30), key_b: tensors[key_b] * np.float32(1e30)})
    r = ulc("merge", base, "--lora", inf, "-o", tmp_path / "inf.safetensors")
    assert r.returncode == 2 and "non-finite" in r.stderr
    assert not (tmp_path / "inf.safetensors").exists()
    assert sorted(p for p in os.listdir(tmp_path) if p.startswith("out_") or p.endswith(".safetensors")) == ["base.safetensors"]


class Wide(torch.nn.Module):
    """Rows long enough for the vector paths, with tails (517, 300 are not multiples of 8)."""
    def __init__(self):
        super().__init__()
        from transformers.pytorch_utils import Conv1D
        self.lin = torch.nn.Linear(300, 517)
        self.c1d = Conv1D(517, 300)  # weight stored [in=300, out=517]
        self.conv = torch.nn.Conv2d(24, 40, 3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=["f32", "f16", "bf16"])
def test_simd_threads_and_scalar_agree(ulc, tmp_path, dtype):
    """The vector and scalar loops, and any thread count, give the same bytes; half-precision
    results are the f32 sum rounded once (within one step of torch's own rounding of it)."""
    import os
    import subprocess
    from conftest import ulc_bin
    torch.manual_seed(3)
    base = Wide().to(dtype)
    base_path = tmp_path / "base.safetensors"
    save_file({k: v.contiguous() for k, v in base.state_dict().items()}, str(base_path))
    pm = get_peft_model(copy.deepcopy(base), LoraConfig(r=8, lora_alpha=16, target_modules=["lin", "c1d", "conv"]))
    randomize_lora(pm, 4)
    ad = tmp_path / "adapter"
    pm.save_pretrained(str(ad))
    outs = []
    for i, (threads, env) in enumerate([("2", {}), ("1", {}), ("2", {"ULC_NO_SIMD": "1"}), ("3", {"ULC_NO_SIMD": "1"})]):
        out = tmp_path / f"m{i}.safetensors"
        r = subprocess.run([ulc_bin(), "merge", str(base_path), "--lora", str(ad), "-o", str(out),
                            "--threads", threads], capture_output=True, text=True,
                           env={**os.environ, **env})
        assert r.returncode == 0, r.stderr
        outs.append(out.read_bytes())
    assert all(o == outs[0] for o in outs[1:])
    from safetensors.torch import load_file as load_t
    ours = load_t(str(tmp_path / "m0.safetensors"))
    adt = load_t(str(ad / "adapter_model.safetensors"))
    for m, transposed in [("lin", False), ("c1d", True)]:
        A = adt[f"base_model.model.{m}.lora_A.weight"].float()
        B = adt[f"base_model.model.{m}.lora_B.weight"].float()
        delta = (B @ A) * 2.0
        exact = base.state_dict()[f"{m}.weight"].float() + (delta.T if transposed else delta)
        o = ours[f"{m}.weight"]
        assert o.dtype == dtype
        if dtype == torch.float32:
            assert float((o - exact).abs().max()) <= 1e-6 * float(exact.abs().max())
        else:
            r = exact.to(dtype).float()
            assert bool(((o.float() - r).abs() <= spacing(r, dtype)).all()), m


def test_threads_option_is_checked(ulc, tmp_path):
    base, ad, _ = make_case(tmp_path, LoraConfig(r=4, lora_alpha=8, target_modules=["proj"]))
    for bad in ["0", "x", "65"]:
        r = ulc("merge", base, "--lora", ad, "-o", tmp_path / "o.safetensors", "--threads", bad)
        assert r.returncode == 1 and "--threads" in r.stderr
        assert not (tmp_path / "o.safetensors").exists()


def test_f16_overflow_names_the_element(ulc, tmp_path):
    """A merged f16 value that is finite in float32 but overflows f16 (60000 + 10000) is refused,
    and the message names that element (the check runs on the rounded value)."""
    base, ad, _ = make_case(tmp_path, LoraConfig(r=4, lora_alpha=4, target_modules=["proj"]),
                            dtype=torch.float16)
    tensors = load_file(str(ad / "adapter_model.safetensors"))
    key_a = next(k for k in tensors if k.endswith("lora_A.weight"))
    key_b = next(k for k in tensors if k.endswith("lora_B.weight"))
    w = load_file(str(base))["proj.weight"].copy()
    rows, cols = w.shape
    i, j = rows - 1, cols - 2  # late in the tensor: an index the old search could not give
    w[:] = 0
    w[i, j] = 60000
    from safetensors.numpy import save_file as save_np
    b2 = {k: v for k, v in load_file(str(base)).items()}
    b2["proj.weight"] = w
    save_np(b2, str(base))
    a = np.zeros_like(tensors[key_a])
    b = np.zeros_like(tensors[key_b])
    a[0, j] = 100
    b[i, 0] = 100  # delta[i, j] = 10000 (scale alpha / r = 1)
    d = tmp_path / "over"
    d.mkdir()
    save_np({key_a: a, key_b: b}, str(d / "adapter_model.safetensors"))
    (d / "adapter_config.json").write_text((ad / "adapter_config.json").read_text())
    r = ulc("merge", base, "--lora", d, "-o", tmp_path / "over.safetensors")
    assert r.returncode == 2 and "non-finite" in r.stderr, r.stderr
    assert f"(element {i * cols + j})" in r.stderr, r.stderr
    assert not (tmp_path / "over.safetensors").exists()
