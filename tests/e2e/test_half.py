"""Half-precision checkpoints through LoRA (docs/cli.md, "LoRA on f16 / bf16 weights"): the tiny
GPT-2 fixture (tests/fixtures/gen_hf.py hf_gpt2) stored in float16 and in bfloat16.

  - `ulc train --before lora-inject --after lora-merge --emit-adapter`: A and B train in float32
    against the frozen half base, and each adapted weight becomes round(f32(W) + s * (B @ A)^T),
    computed in float32 and rounded once, to nearest even, into W's dtype — checked against
    numpy/torch with the emitted adapter, through each output format (HF directory, safetensors,
    ONNX); every other tensor keeps its bytes; the dtype is kept; the directory loads in
    transformers;
  - `ulc merge` of the emitted adapter onto the half base gives the same bytes;
  - RFA (lora-inject{placement=rfa}, rfa, lora-merge) on a half checkpoint gives, bit for bit,
    its run on the same weights widened to float32, rounded once into the half dtype: the
    runtime computes halves as float32, so the adapters train the same; the tied head's untied
    copy (lm_head.weight) is half too, and transformers loads it;
  - training half weights themselves (--params) is refused, naming the weight.
"""
import json
import shutil

import numpy as np
import onnx
import pytest
import torch
from safetensors.numpy import load_file as load_np
from safetensors.torch import load_file, save_file

from conftest import ROOT, run_ulc

import sys
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
import gen_hf  # noqa: E402

torch.set_num_threads(1)
DTYPES = {"f16": torch.float16, "bf16": torch.bfloat16}
# lm_head left out: its weight is the tied embedding, which a PEFT adapter cannot name
LORA = "lora-inject{rank=4,alpha=8,init=random,seed=3,exclude=lm_head}"


@pytest.fixture(scope="module")
def bases(fixture_dir, tmp_path_factory):
    """{name: HF dir} for f16, bf16, and both widened back to float32 (f16_up, bf16_up), plus a
    small next-token dataset with labels (4 classes)."""
    src = gen_hf.generate(fixture_dir)
    root = tmp_path_factory.mktemp("half")
    w = load_file(str(src / "hf_gpt2.model.safetensors"))
    cfg = json.loads((src / "hf_gpt2.config.json").read_text())
    out = {}
    for name, dt in DTYPES.items():
        for suffix, cast in (("", lambda v, dt=dt: v.to(dt)), ("_up", lambda v, dt=dt: v.to(dt).float())):
            d = root / (name + suffix)
            d.mkdir()
            save_file({k: cast(v) if v.is_floating_point() else v for k, v in w.items()},
                      str(d / "model.safetensors"), metadata={"format": "pt"})
            c = dict(cfg, torch_dtype=str(dt).split(".")[1] if not suffix else "float32")
            (d / "config.json").write_text(json.dumps(c))
            out[name + suffix] = d
    r = np.random.default_rng(0)
    ids = r.integers(0, 300, (16, 10)).astype(np.int64)
    from safetensors.numpy import save_file as save_np
    save_np({"input_ids": ids, "attention_mask": np.ones_like(ids),
             "label": (np.arange(16) % 4).astype(np.int64)}, str(root / "t.safetensors"))
    out["data"] = root / "t.safetensors"
    return out


def half_bits(t):
    """The raw 16-bit patterns of a half tensor (torch), as int64 for comparisons."""
    return t.contiguous().view(torch.int16).to(torch.int64).numpy()


def rounded(x64, dt):
    """float64 numpy -> float32 -> dt, each step to nearest even (torch's casts)."""
    return torch.from_numpy(x64.astype(np.float32)).to(dt)


def expected_merge(base, a, b, scale, dt):
    """round(f32(W) + s * (B @ A)^T) for a Conv1D weight W [in, out] (PEFT: fan_in_fan_out),
    with the elements where float32 evaluation order could move the result across a rounding
    midpoint of dt marked (the rank-r sum can cancel: its error scales with sum |B||A|):
    (expected, ambiguous mask, the lowest and highest result allowed there)."""
    w = base.float().numpy().astype(np.float64)
    v = w + scale * (b.astype(np.float64) @ a.astype(np.float64)).T
    size = np.abs(w) + scale * (np.abs(b).astype(np.float64) @ np.abs(a).astype(np.float64)).T
    eps = 8 * np.spacing(size.astype(np.float32)).astype(np.float64)
    lo, hi = rounded(v - eps, dt), rounded(v + eps, dt)
    exp = rounded(v, dt)
    return exp, half_bits(lo) != half_bits(hi), lo, hi


def check_merged(base, merged, adapter_dir, dt):
    """merged (name -> torch tensor) against base and the PEFT adapter in adapter_dir."""
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert cfg["fan_in_fan_out"] is True
    scale = cfg["lora_alpha"] / cfg["r"]
    ad = load_np(str(adapter_dir / "adapter_model.safetensors"))
    modules = {k[len("base_model.model."):-len(".lora_A.weight")]
               for k in ad if k.endswith(".lora_A.weight")}
    assert len(modules) == 8, sorted(modules)
    assert sorted(merged) == sorted(base)
    ambiguous = twice_differs = total = 0
    for k, w in base.items():
        m = merged[k]
        assert m.dtype == w.dtype, k
        mod = k[:-len(".weight")] if k.endswith(".weight") else None
        if mod not in modules:
            assert torch.equal(half_bits_or(m), half_bits_or(w)), f"{k} changed"
            continue
        a = ad[f"base_model.model.{mod}.lora_A.weight"]
        b = ad[f"base_model.model.{mod}.lora_B.weight"]
        assert a.dtype == b.dtype == np.float32
        exp, amb, lo, hi = expected_merge(w, a, b, scale, dt)
        got = half_bits(m)
        clear = ~amb
        assert np.array_equal(got[clear], half_bits(exp)[clear]), \
            f"{k}: {int((got[clear] != half_bits(exp)[clear]).sum())} elements are not round(W + s*B@A)"
        mf, lof, hif = m.float().numpy(), lo.float().numpy(), hi.float().numpy()
        assert np.all((lof[amb] <= mf[amb]) & (mf[amb] <= hif[amb])), k
        ambiguous += int(amb.sum())
        total += amb.size
        # rounding twice (the delta into dt first, then the sum) is a different answer somewhere
        twice = (w.float() + torch.from_numpy((scale * (b @ a).T).astype(np.float32)).to(dt).float()).to(dt)
        twice_differs += int((half_bits(twice) != got).sum())
        assert not torch.equal(m, w), f"{k}: the adapter did not change the weight"
    assert ambiguous < 0.05 * total, (ambiguous, total)
    assert twice_differs > 0


def half_bits_or(t):
    return torch.from_numpy(half_bits(t)) if t.dtype in (torch.float16, torch.bfloat16) else t


def onnx_weights(path, dt):
    """The initializers of an ONNX file as torch tensors; halves from their raw bytes."""
    out = {}
    for i in onnx.load(str(path)).graph.initializer:
        if i.data_type in (onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16):
            assert i.data_type == (onnx.TensorProto.FLOAT16 if dt == torch.float16 else onnx.TensorProto.BFLOAT16)
            raw = np.frombuffer(i.raw_data, dtype=np.int16).copy().reshape(tuple(i.dims))
            out[i.name] = torch.from_numpy(raw).view(dt)
        else:
            from onnx import numpy_helper
            out[i.name] = torch.from_numpy(numpy_helper.to_array(i).copy())
    return out


@pytest.mark.parametrize("name", list(DTYPES))
@pytest.mark.parametrize("fmt", ["dir", "safetensors", "onnx"])
def test_lora_training_merges_into_the_half_dtype_once(bases, tmp_path, name, fmt):
    dt = DTYPES[name]
    src = bases[name]
    if fmt == "onnx":
        r = run_ulc("convert", src, "-o", tmp_path / "base.onnx")
        assert r.returncode == 0, r.stderr
        src = tmp_path / "base.onnx"
    out = {"dir": f"{tmp_path / 'out'}/", "safetensors": tmp_path / "out.safetensors",
           "onnx": tmp_path / "out.onnx"}[fmt]
    ad = tmp_path / "adapter"
    r = run_ulc("train", src, "--data", bases["data"], "--loss", "next-token", "--before", LORA,
                "--after", "lora-merge", "--emit-adapter", ad, "-o", out, "--lr", "1e-2",
                "--batch-size", "4", "--epochs", "2", "--threads", "1", "-q")
    assert r.returncode == 0, r.stderr
    base = load_file(str(bases[name] / "model.safetensors"))
    if fmt == "onnx":
        merged = onnx_weights(out, dt)
        base = {k: v for k, v in onnx_weights(src, dt).items() if k in merged}
        assert sorted(base) == sorted(merged)
    else:
        merged = load_file(str(tmp_path / "out" / "model.safetensors" if fmt == "dir" else out))
    check_merged(base, merged, ad, dt)
    if fmt == "dir":
        from transformers import GPT2LMHeadModel
        model = GPT2LMHeadModel.from_pretrained(str(tmp_path / "out"), torch_dtype=dt).eval()
        assert model.transformer.h[0].mlp.c_fc.weight.dtype == dt
        assert torch.equal(model.transformer.h[0].mlp.c_fc.weight, merged["transformer.h.0.mlp.c_fc.weight"])
        with torch.no_grad():
            logits = model.float()(torch.tensor([[1, 2, 3, 4]])).logits
        assert torch.isfinite(logits).all()
        # `ulc merge` of the emitted adapter onto the half base: the same bytes
        r = run_ulc("merge", bases[name], "--lora", ad, "-o", f"{tmp_path / 'merged'}/")
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "merged" / "model.safetensors").read_bytes() == \
            (tmp_path / "out" / "model.safetensors").read_bytes()


@pytest.mark.parametrize("name", list(DTYPES))
def test_rfa_on_a_half_checkpoint_is_its_float32_run_rounded_once(bases, tmp_path, name):
    dt = DTYPES[name]
    outs = {}
    for which in (name, name + "_up"):
        out = tmp_path / which
        r = run_ulc("train", bases[which], "--data", bases["data"], "--forget-classes", "1",
                    "--passes", "lora-inject{placement=rfa,rank=4,alpha=8,init=random,seed=3},"
                    "rfa{gamma=0.5},lora-merge", "-o", f"{out}/", "--lr", "1e-2",
                    "--batch-size", "8", "--epochs", "2", "--threads", "1", "-q")
        assert r.returncode == 0, r.stderr
        outs[which] = load_file(str(out / "model.safetensors"))
    base = load_file(str(bases[name] / "model.safetensors"))
    h, up = outs[name], outs[name + "_up"]
    assert sorted(h) == sorted(up)
    for k in h:
        assert h[k].dtype == (base[k].dtype if k in base else dt), k
        if h[k].is_floating_point():
            assert np.array_equal(half_bits(h[k]), half_bits(up[k].to(dt))), k
        else:
            assert torch.equal(h[k], up[k])
    changed = sorted(k for k in base if not torch.equal(h[k], base[k]))
    # RFA's placement: the FFN linears of both blocks and the head, which is tied to the
    # embedding: merged into an untied copy lm_head.weight (half too), the embedding unchanged
    assert changed == [f"transformer.h.{i}.mlp.{m}.weight" for i in (0, 1) for m in ("c_fc", "c_proj")], changed
    assert h["lm_head.weight"].dtype == dt
    assert not torch.equal(h["lm_head.weight"], base["transformer.wte.weight"])
    from transformers import GPT2LMHeadModel
    model = GPT2LMHeadModel.from_pretrained(str(tmp_path / name), torch_dtype=dt)
    assert torch.equal(model.lm_head.weight, h["lm_head.weight"])
    assert torch.equal(model.transformer.wte.weight, base["transformer.wte.weight"])


@pytest.mark.parametrize("name", ["f16", "bf16"])
def test_half_weights_train_as_float32_masters_rounded_once(bases, tmp_path, name):
    """Training half weights themselves (--params, and a method's train "all"): float32 master
    copies, widened exactly, trained, and rounded once into the weight's dtype at the end — so
    the result is the float32-widened checkpoint's run, rounded (bit for bit)."""
    dt = DTYPES[name]
    outs = {}
    for tag in (name, name + "_up"):
        out = tmp_path / tag
        r = run_ulc("train", bases[tag], "--data", bases["data"], "--loss", "next-token",
                    "--params", "transformer.h.0.mlp.*|transformer.ln_f.*", "--epochs", "2",
                    "--lr", "1e-2", "--batch-size", "8", "--threads", "1", "-o", f"{out}/", "-q")
        assert r.returncode == 0, r.stderr
        outs[tag] = load_file(str(out / "model.safetensors"))
    base = load_file(str(bases[name] / "model.safetensors"))
    h, up = outs[name], outs[name + "_up"]
    trained = [k for k in base if k.startswith("transformer.h.0.mlp.") or k.startswith("transformer.ln_f.")]
    assert len(trained) == 6, trained
    for k in h:
        assert h[k].dtype == base[k].dtype, k
        if k in trained:
            assert np.array_equal(half_bits(h[k]), half_bits(up[k].to(dt))), k
            assert not torch.equal(h[k], base[k]), k
        else:
            assert torch.equal(h[k], base[k]), k
    # a method that trains every weight: finetune on a half checkpoint, every weight stays half
    r = run_ulc("train", bases[name], "--data", bases["data"], "--forget-classes", "1",
                "--passes", "finetune", "--threads", "1", "-o", f"{tmp_path / 'f'}/", "-q")
    assert r.returncode == 0, r.stderr
    f = load_file(str(tmp_path / "f" / "model.safetensors"))
    assert all(f[k].dtype == base[k].dtype for k in base)
    assert not torch.equal(f["transformer.wte.weight"], base["transformer.wte.weight"])
