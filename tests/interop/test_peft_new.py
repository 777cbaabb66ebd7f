"""`ulc merge` against adapters made by today's PEFT (0.21, transformers 5, torch 2.x) and the
weights PEFT's own merge_and_unload gave: tests/fixtures/peft_0_21/ (made by
tests/fixtures/gen_peft_new.py in the benchmark venv; this suite keeps the pinned PEFT 0.8,
which has no DoRA).

  - DoRA on Linear, Conv2d (3x3 and 1x1), Embedding and GPT2's Conv1D (fan_in_fan_out), with
    rsLoRA and rank/alpha patterns; lora_bias; plain LoRA with every new config field: merged
    weights equal PEFT's (f32: <= 1e-6 relative to the weight's scale);
  - the same DoRA and lora_bias adapters merged into torch's ONNX export, whose weights are
    transposed MatMul copies (DoRA's norms then run down the columns) and whose biases sit on
    Add nodes, run in onnxruntime with the outputs of PEFT's merged weights;
  - what cannot be merged is refused with the reason and no output: a weighted or undone DoRA
    merge, magnitudes that do not fit, lora_bias without a base bias, and LoRA variants whose
    merge is not LoRA's.
"""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "peft_0_21"
BASE = FIX / "base.safetensors"
CASES = ["dora_linear", "dora_conv", "dora_embedding", "dora_conv1d", "dora_patterns",
         "lora_bias", "lora_plain"]


def assert_close_f32(ours, ref, keys=None):
    for k in keys or ref:
        r, o = ref[k].astype(np.float32), ours[k].astype(np.float32)
        scale = max(1.0, float(np.abs(r).max()))
        assert np.abs(o - r).max() <= 1e-6 * scale, f"{k}: max diff {np.abs(o - r).max()}"


def test_fixtures_are_from_peft_0_21():
    v = json.loads((FIX / "VERSIONS").read_text())
    assert v["peft"].startswith("0.21"), v
    for c in CASES:
        cfg = json.loads((FIX / c / "adapter_config.json").read_text())
        assert cfg["peft_version"].startswith("0.21"), (c, cfg["peft_version"])


@pytest.mark.parametrize("case", CASES)
def test_matches_peft_0_21(ulc, tmp_path, case):
    out = tmp_path / "merged.safetensors"
    r = ulc("merge", BASE, "--lora", FIX / case, "-o", out)
    assert r.returncode == 0, r.stderr
    ours, ref, base = load_file(str(out)), load_file(str(FIX / case / "merged.safetensors")), load_file(str(BASE))
    assert sorted(ours) == sorted(ref)
    changed = [k for k in ref if not np.array_equal(ref[k], base[k])]
    assert changed, "the fixture's adapter changes nothing"
    assert_close_f32(ours, ref)
    # what PEFT left alone is bit for bit the base
    for k in ref:
        if k not in changed:
            assert np.array_equal(ours[k], base[k]), k


def test_dora_merge_with_threads_and_scalar_paths_agree(ulc, tmp_path, monkeypatch):
    outs = []
    for i, simd in enumerate(["0", "1"]):
        monkeypatch.setenv("ULC_NO_SIMD", simd)
        for t in ("1", "2"):
            out = tmp_path / f"m{i}{t}.safetensors"
            r = ulc("merge", BASE, "--lora", FIX / "dora_patterns", "-o", out, "--threads", t)
            assert r.returncode == 0, r.stderr
            outs.append(out.read_bytes())
    assert all(o == outs[0] for o in outs)


def onnx_toy(tmp_path):
    """torch's ONNX export of proj -> relu -> head on [N, T, 12] inputs: MatMul with transposed
    weight copies and Add biases, as torch writes nn.Linear on 3-D inputs."""
    import torch
    base = load_file(str(BASE))

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj, self.head = torch.nn.Linear(12, 20), torch.nn.Linear(20, 7)

        def forward(self, x):
            return self.head(torch.relu(self.proj(x)))

    m = M().eval()
    with torch.no_grad():
        for n in ("proj", "head"):
            getattr(m, n).weight.copy_(torch.from_numpy(base[f"{n}.weight"]))
            getattr(m, n).bias.copy_(torch.from_numpy(base[f"{n}.bias"]))
    path = tmp_path / "toy.onnx"
    torch.onnx.export(m, (torch.zeros(2, 3, 12),), str(path), opset_version=14, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "N", 1: "T"}})
    return path


@pytest.mark.parametrize("case", ["dora_linear", "lora_bias"])
def test_onnx_export_matches_peft(ulc, tmp_path, case):
    import onnx
    import onnxruntime as ort
    path = onnx_toy(tmp_path)
    names = [i.name for i in onnx.load(str(path)).graph.initializer]
    assert any(n.startswith("onnx::MatMul") for n in names), names  # transposed copies
    out = tmp_path / "merged.onnx"
    r = ulc("merge", path, "--lora", FIX / case, "-o", out)
    assert r.returncode == 0, r.stderr
    ref = load_file(str(FIX / case / "merged.safetensors"))
    x = np.random.default_rng(0).standard_normal((2, 5, 12)).astype(np.float32)
    h = np.maximum(x @ ref["proj.weight"].T + ref["proj.bias"], 0)
    want = h @ ref["head.weight"].T + ref["head.bias"]
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.abs(got - want).max() <= 1e-5 * max(1.0, float(np.abs(want).max()))


def variant(tmp_path, name, case="dora_linear", tensors=None, cfg=None):
    d = tmp_path / name
    shutil.copytree(FIX / case, d)
    (d / "merged.safetensors").unlink()
    if tensors is not None:
        save_file(tensors, str(d / "adapter_model.safetensors"))
    if cfg is not None:
        c = json.loads((d / "adapter_config.json").read_text())
        c.update(cfg)
        (d / "adapter_config.json").write_text(json.dumps(c))
    return d


def refused(ulc, tmp_path, adapter, needles, *extra, base=BASE):
    out = tmp_path / "out.safetensors"
    r = ulc("merge", base, "--lora", adapter, "-o", out, *extra)
    assert r.returncode in (2, 4), r.stderr
    for n in needles:
        assert n in r.stderr, (n, r.stderr)
    assert not out.exists()


def test_dora_refusals(ulc, tmp_path):
    t = load_file(str(FIX / "dora_linear" / "adapter_model.safetensors"))
    mag = "base_model.model.proj.lora_magnitude_vector"
    refused(ulc, tmp_path, FIX / "dora_linear", ["proj", "DoRA", "unmerged"], "--unmerge")
    d = FIX / "dora_linear"
    refused(ulc, tmp_path, f"{d}:0.5", ["DoRA", "weight 1"])
    no_mag = variant(tmp_path, "no_mag", tensors={k: v for k, v in t.items() if k != mag})
    refused(ulc, tmp_path, no_mag, ["use_dora", "'proj'", "no lora_magnitude_vector"])
    not_dora = variant(tmp_path, "not_dora", cfg={"use_dora": False})
    refused(ulc, tmp_path, not_dora, ["lora_magnitude_vector", "does not set use_dora"])
    short = variant(tmp_path, "short", tensors={**t, mag: t[mag][:5].copy()})
    refused(ulc, tmp_path, short, ["'proj'", "lora_magnitude_vector has 5", "expected 20"])


def test_lora_bias_refusals(ulc, tmp_path):
    t = load_file(str(FIX / "lora_bias" / "adapter_model.safetensors"))
    not_set = variant(tmp_path, "not_set", "lora_bias", cfg={"lora_bias": False})
    refused(ulc, tmp_path, not_set, ["lora_B.bias", "does not set lora_bias"])
    b = load_file(str(BASE))
    nobias = tmp_path / "nobias.safetensors"
    save_file({k: v for k, v in b.items() if k != "proj.bias"}, str(nobias))
    refused(ulc, tmp_path, FIX / "lora_bias", ["'proj'", "no bias"], base=nobias)
    key = "base_model.model.head.lora_B.bias"
    short = variant(tmp_path, "short", "lora_bias", tensors={**t, key: t[key][:3].copy()})
    refused(ulc, tmp_path, short, ["'head'", "lora_B.bias has 3 values, expected 7"])


@pytest.mark.parametrize("field,value", [
    ("use_qalora", True), ("alora_invocation_tokens", [5, 6]), ("velora_config", {"x": 1}),
    ("monteclora_config", {"x": 1}), ("use_bdlora", {"x": 1}), ("arrow_config", {"x": 1}),
    ("kasa_config", {"x": 1}), ("layer_replication", [[0, 1]]), ("target_parameters", ["w"]),
    ("trainable_token_indices", [1, 2]), ("init_lora_weights", "mica"),
])
def test_variants_that_do_not_merge_as_lora_are_refused(ulc, tmp_path, field, value):
    d = variant(tmp_path, "v", "lora_plain", cfg={field: value})
    refused(ulc, tmp_path, d, [field, "does not merge"] if field != "init_lora_weights"
            else ["MiCA", "mica"])


def test_defaults_of_the_new_fields_merge(ulc, tmp_path):
    """The fields PEFT 0.21 writes with their defaults (null, false, {}) are read past."""
    cfg = json.loads((FIX / "lora_plain" / "adapter_config.json").read_text())
    for k in ("use_qalora", "alora_invocation_tokens", "layer_replication", "target_parameters",
              "trainable_token_indices", "use_bdlora", "arrow_config", "kasa_config"):
        assert k in cfg and not cfg[k], k
    r = ulc("merge", BASE, "--lora", FIX / "lora_plain", "-o", tmp_path / "o.safetensors")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("leaf", ["weight", "bias"])
def test_ambiguous_base_names_are_refused(ulc, tmp_path, leaf):
    """Two wrappers' copies of a module ("a.proj.*" and "b.proj.*") and no plain "proj.*": which
    one lora_bias's weight or bias means is not guessed."""
    b = load_file(str(BASE))
    base = tmp_path / "two.safetensors"
    t = {k: v for k, v in b.items() if k != f"proj.{leaf}"}
    t[f"a.proj.{leaf}"] = b[f"proj.{leaf}"]
    t[f"b.proj.{leaf}"] = b[f"proj.{leaf}"]
    save_file(t, str(base))
    refused(ulc, tmp_path, FIX / "lora_bias", ["'proj'", f"2 initializers end in '.proj.{leaf}'",
                                              "ambiguous"], base=base)
