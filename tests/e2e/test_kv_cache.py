"""Greedy decoding with a KV cache (io/decoder.h, eval/lm_eval.c; docs/metrics.md "Verbatim
extraction"), on the tiny GPT-2 fixture (tests/fixtures/gen_hf.py hf_gpt2) as a Hugging Face
directory:

- the decoder ulc builds (`ulc convert --with-past`: optimum's past/present interface) gives
  transformers' logits and past_key_values, under onnxruntime and ulc's runtime: a prefill,
  steps of one and of several tokens with the presents fed back, and a cache with empty slots
  masked out (how extraction uses it);
- extraction decodes with it ("decoding": "kv-cache") and its continuations are transformers'
  greedy `generate` token for token (rows made of generate's own output score exact 1), the same
  as the window decoding (ULC_NO_KV_CACHE=1);
- a torch.onnx export of transformers' model with past decodes the same through ulc's runtime;
- a built decoder that does not compute what the model computes is turned down (the window
  decodes); a model whose cache inputs do not fit together is refused, naming the tensor."""
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from safetensors.numpy import load_file, save_file

from conftest import ROOT, run_ulc, ulc_bin

sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
import gen_hf  # noqa: E402

V, T, PREFIX, TOKENS = 300, 24, 6, 10
LENS = [24, 24, 9, 24, 16, 15, 24, 4, 24, 12]  # real tokens per row (right-padded)
FORGET = [0, 2, 5]


@pytest.fixture(scope="module")
def hf(fixture_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("kv")
    path = gen_hf.hf_dir(gen_hf.generate(fixture_dir), "hf_gpt2", d / "gpt2")
    from transformers import GPT2LMHeadModel
    return {"dir": d, "path": path, "model": GPT2LMHeadModel.from_pretrained(str(path)).eval()}


def torch_past(model, ids, past=None, mask=None):
    """transformers' logits and past_key_values (as numpy) for ids after past."""
    with torch.no_grad():
        o = model(input_ids=torch.tensor(ids), past_key_values=past, use_cache=True,
                  attention_mask=None if mask is None else torch.tensor(mask))
    return o.logits.numpy(), o.past_key_values


def flat(past):
    return {f"past_key_values.{i}.{kv}": t.numpy() for i, layer in enumerate(past)
            for kv, t in zip(("key", "value"), layer)}


def run_model(path, feeds, tmp, runtime):
    if runtime == "onnxruntime":
        s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return dict(zip([o.name for o in s.get_outputs()], s.run(None, feeds)))
    save_file(feeds, str(tmp / "feeds.safetensors"))
    run_ulc("run", path, "--input", tmp / "feeds.safetensors", "-o", tmp / "outs.safetensors",
            "--threads", "2", check=True)
    return load_file(str(tmp / "outs.safetensors"))


@pytest.mark.parametrize("runtime", ["onnxruntime", "ulc"])
def test_decoder_matches_transformers(hf, tmp_path, runtime):
    dec = tmp_path / "dec.onnx"
    run_ulc("convert", hf["path"], "-o", dec, "--with-past", check=True)
    m = onnx.load(str(dec))
    assert [i.name for i in m.graph.input][:3] == ["input_ids", "attention_mask", "past_key_values.0.key"]
    assert [o.name for o in m.graph.output][:2] == ["logits", "present.0.key"]
    r = np.random.default_rng(0)
    ids = r.integers(0, V, (2, 9)).astype(np.int64)
    empty = {f"past_key_values.{i}.{kv}": np.zeros((2, 4, 0, 8), np.float32)
             for i in range(2) for kv in ("key", "value")}
    # prefill (P = 0, T = 5), then one token (T = 1), then three at once (T = 3, causal inside)
    past, pos = empty, 0
    tpast = None
    for t in (5, 1, 3):
        x = ids[:, pos:pos + t]
        got = run_model(dec, {"input_ids": x, "attention_mask": np.ones((2, pos + t), np.int64),
                              **past}, tmp_path, runtime)
        want, tpast = torch_past(hf["model"], x, tpast)
        np.testing.assert_allclose(got["logits"], want, atol=1e-5, rtol=0)
        for k, v in flat(tpast).items():
            np.testing.assert_allclose(got[k.replace("past_key_values", "present")], v, atol=1e-5, rtol=0)
        past = {k: got[k.replace("past_key_values", "present")] for k in empty}
        pos += t
    # as extraction uses it: a cache of 6 slots, the first 2 empty (masked, zeros), then 1 token
    full, _ = torch_past(hf["model"], ids[:, :5])
    _, tp = torch_past(hf["model"], ids[:, :4])
    slots = {k: np.concatenate([np.zeros((2, 4, 2, 8), np.float32), v], 2) for k, v in flat(tp).items()}
    mask = np.array([[0, 0, 1, 1, 1, 1, 1]] * 2, np.int64)
    got = run_model(dec, {"input_ids": ids[:, 4:5], "attention_mask": mask, **slots}, tmp_path, runtime)
    np.testing.assert_allclose(got["logits"][:, 0], full[:, 4], atol=1e-5, rtol=0)


def generated_rows(model, path):
    """Rows whose tokens after the prefix are transformers' greedy continuation of it."""
    r = np.random.default_rng(5)
    ids, mask = np.zeros((len(LENS), T), np.int64), np.zeros((len(LENS), T), np.int64)
    for i, n in enumerate(LENS):
        k = min(PREFIX, n // 2)
        pre = torch.tensor(r.integers(0, V, (1, k)))
        with torch.no_grad():
            g = model.generate(pre, attention_mask=torch.ones_like(pre), max_new_tokens=n - k,
                               do_sample=False, pad_token_id=0)
        ids[i, :n], mask[i, :n] = g[0].numpy(), 1
    save_file({"input_ids": ids, "attention_mask": mask}, str(path))
    return ids, mask


def extraction(model, spec, env=None):
    import subprocess
    p = subprocess.run([ulc_bin(), "eval", str(model), "--forget", str(spec), "--json", "--threads", "2"],
                       capture_output=True, text=True, env={**os.environ, **(env or {})})
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)["extraction"]["model"]


def write_spec(d):
    spec = {"method": "rfa", "data": {"train": "train.safetensors"}, "forget": {"indices": FORGET},
            "eval": {"extract_prefix": PREFIX, "extract_tokens": TOKENS}}
    (d / "spec.json").write_text(json.dumps(spec))
    return d / "spec.json"


def test_extraction_with_the_cache_is_transformers_generate(hf):
    d = hf["dir"]
    ids, mask = generated_rows(hf["model"], d / "train.safetensors")
    spec = write_spec(d)
    cached = extraction(hf["path"], spec)
    assert cached["decoding"] == "kv-cache"
    for split, n in (("Df", 3), ("Dr", 7)):
        assert cached[split] == {"rows": n, "rouge_l": 1, "exact": 1}, cached
    window = extraction(hf["path"], spec, {"ULC_NO_KV_CACHE": "1"})
    assert window["decoding"] == "window"
    assert {k: window[k] for k in ("Df", "Dr")} == {k: cached[k] for k in ("Df", "Dr")}
    # one wrong token in a row's continuation lowers its scores: the comparison is real
    ids[1, PREFIX + 3] = (ids[1, PREFIX + 3] + 1) % V
    save_file({"input_ids": ids, "attention_mask": mask}, str(d / "train.safetensors"))
    cached = extraction(hf["path"], spec)
    assert cached["Dr"]["exact"] == pytest.approx(6 / 7) and cached["Dr"]["rouge_l"] < 1
    generated_rows(hf["model"], d / "train.safetensors")


def test_a_decoder_that_differs_from_the_model_is_turned_down(hf, tmp_path):
    """An ONNX file ulc wrote from the checkpoint keeps config.json in its metadata, so its
    decoder is built from that; here the graph's head is scaled (as an edit or an unmerged
    adapter would change it) and the decoder, built from the config over the same weights, no
    longer agrees: extraction checks that on the model's own logits and decodes in the window."""
    generated_rows(hf["model"], hf["dir"] / "train.safetensors")
    onnx_path = tmp_path / "m.onnx"
    run_ulc("convert", hf["path"], "-o", onnx_path, check=True)
    for name in ("train.safetensors",):
        (tmp_path / name).write_bytes((hf["dir"] / name).read_bytes())
    spec = write_spec(tmp_path)
    same = extraction(onnx_path, spec)
    assert same["decoding"] == "kv-cache" and same["Dr"]["exact"] == 1
    m = onnx.load(str(onnx_path))
    out = m.graph.output[0].name
    for n in m.graph.node:
        for i, o in enumerate(n.output):
            if o == out:
                n.output[i] = out + "_raw"
    m.graph.initializer.append(onnx.numpy_helper.from_array(np.array(1.5, np.float32), "head_scale"))
    m.graph.node.append(onnx.helper.make_node("Mul", [out + "_raw", "head_scale"], [out]))
    onnx.save(m, str(onnx_path))
    edited = extraction(onnx_path, spec)
    assert edited["decoding"] == "window"
    # scaled logits keep their argmax: the window's tokens are still generate's
    assert edited["Dr"]["exact"] == 1


def export_with_past(hf_path, path, heads_declared=None, position_ids=False):
    """transformers' model with past as torch.onnx writes it (optimum's names), with a
    position_ids input when asked. From a model of its own: torch 1.13's export leaves the model
    it traced changed (its tied head)."""
    from transformers import GPT2LMHeadModel
    model = GPT2LMHeadModel.from_pretrained(str(hf_path)).eval()
    L = model.config.n_layer

    class W(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, *rest):
            pos, past = (rest[0], rest[1:]) if position_ids else (None, rest)
            pkv = tuple((past[2 * i], past[2 * i + 1]) for i in range(L))
            o = self.m(input_ids=input_ids, attention_mask=attention_mask, past_key_values=pkv,
                       position_ids=pos, use_cache=True, return_dict=True)
            return (o.logits, *[t for kv in o.past_key_values for t in kv])

    pin = [f"past_key_values.{i}.{kv}" for i in range(L) for kv in ("key", "value")]
    pout = [n.replace("past_key_values", "present") for n in pin]
    dyn = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "keys"},
           "logits": {0: "batch", 1: "sequence"}}
    if position_ids:
        dyn["position_ids"] = {0: "batch", 1: "sequence"}
    dyn.update({n: {0: "batch", 2: "past"} for n in pin})
    dyn.update({n: {0: "batch", 2: "keys"} for n in pout})
    past = [torch.zeros(2, 4, 3, 8) for _ in pin]
    pos = [torch.tensor([[3, 4], [3, 4]])] if position_ids else []
    torch.onnx.export(W(model), (torch.zeros(2, 2, dtype=torch.int64), torch.ones(2, 5, dtype=torch.int64), *pos, *past),
                      str(path), input_names=["input_ids", "attention_mask"] + ["position_ids"] * position_ids + pin,
                      output_names=["logits"] + pout, dynamic_axes=dyn, opset_version=14)
    if heads_declared:
        m = onnx.load(str(path))
        m.graph.input[3].type.tensor_type.shape.dim[1].dim_value = heads_declared
        onnx.save(m, str(path))


def test_a_torch_export_with_past_runs_in_ulc(hf, tmp_path):
    """The interface ulc decodes with, as torch.onnx exports it from transformers: ulc's runtime
    gives its logits and presents, with an empty past (P = 0) and after one."""
    path = tmp_path / "past.onnx"
    export_with_past(hf["path"], path)
    ids = np.random.default_rng(1).integers(0, V, (2, 7)).astype(np.int64)
    empty = {f"past_key_values.{i}.{kv}": np.zeros((2, 4, 0, 8), np.float32)
             for i in range(2) for kv in ("key", "value")}
    got = run_model(path, {"input_ids": ids[:, :4], "attention_mask": np.ones((2, 4), np.int64), **empty},
                    tmp_path, "ulc")
    want, tp = torch_past(hf["model"], ids[:, :4])
    np.testing.assert_allclose(got["logits"], want, atol=1e-5, rtol=0)
    past = {k: got[k.replace("past_key_values", "present")] for k in empty}
    got = run_model(path, {"input_ids": ids[:, 4:], "attention_mask": np.ones((2, 7), np.int64), **past},
                    tmp_path, "ulc")
    want, _ = torch_past(hf["model"], ids[:, 4:], tp)
    np.testing.assert_allclose(got["logits"], want, atol=1e-5, rtol=0)


def test_cache_inputs_that_do_not_fit_are_refused(hf, tmp_path):
    path = tmp_path / "bad.onnx"
    export_with_past(hf["path"], path, heads_declared=3)
    proc = run_ulc("convert", path, "-o", tmp_path / "out.onnx", "--with-past")
    assert proc.returncode != 0
    assert "bad.onnx: cache input 'past_key_values.0.value' is f32[batch,3,past,8]" in proc.stderr, proc.stderr
    assert "past_key_values.0.key has 4 heads of 8" in proc.stderr
    proc = run_ulc("convert", hf["path"], "-o", tmp_path / "d.safetensors", "--with-past")
    assert proc.returncode == 1 and "ONNX only" in proc.stderr


# ---- a model with past scored, unlearned and reported on whole rows (io/data.h: empty pasts) --

@pytest.fixture(scope="module")
def with_past(hf, tmp_path_factory):
    """The model without past (ulc's ONNX of the checkpoint) and with past three ways: convert
    --with-past, torch.onnx, torch.onnx with position_ids; right-padded train and test rows."""
    d = tmp_path_factory.mktemp("with_past")
    generated_rows(hf["model"], d / "train.safetensors")
    r = np.random.default_rng(3)
    ids, mask = r.integers(0, V, (6, T)), np.ones((6, T), np.int64)
    mask[2, 10:] = mask[4, 17:] = 0
    save_file({"input_ids": ids, "attention_mask": mask}, str(d / "test.safetensors"))
    spec = {"method": "rfa", "data": {"train": "train.safetensors", "test": "test.safetensors"},
            "forget": {"indices": FORGET}, "eval": {"extract_prefix": PREFIX, "extract_tokens": TOKENS}}
    (d / "spec.json").write_text(json.dumps(spec))
    run_ulc("convert", hf["path"], "-o", d / "plain.onnx", check=True)
    run_ulc("convert", hf["path"], "-o", d / "convert.onnx", "--with-past", check=True)
    export_with_past(hf["path"], d / "torch.onnx")
    export_with_past(hf["path"], d / "torch_pos.onnx", position_ids=True)
    return d


def eval_json(model, d, *extra, env=None):
    import subprocess
    p = subprocess.run([ulc_bin(), "eval", str(model), "--forget", str(d / "spec.json"), "--json",
                        "--threads", "2", *map(str, extra)],
                       capture_output=True, text=True, env={**os.environ, **(env or {})})
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


@pytest.mark.parametrize("which", ["convert", "torch", "torch_pos"])
def test_eval_forget_on_a_model_with_past(with_past, which):
    """Perplexity, both LM attacks and extraction: a model with past, its pasts fed empty on
    whole rows and its own cache decoding, scores as the model without past."""
    d = with_past
    want = eval_json(d / "plain.onnx", d, "--original", d / "plain.onnx")
    got = eval_json(d / f"{which}.onnx", d, "--original", d / f"{which}.onnx")
    for role in ("model", "original"):
        for split, p in want["perplexity"][role].items():
            assert got["perplexity"][role][split] == pytest.approx(p, rel=1e-5), (role, split)
        for attack in ("loss", "min_k"):
            w, g = want["mia"][role][attack], got["mia"][role][attack]
            assert g["auc"] == w["auc"] and g["mia"] == w["mia"], (role, attack)
            assert g["threshold"] == pytest.approx(w["threshold"], rel=1e-5)
        assert got["extraction"][role]["decoding"] == "kv-cache"
        assert {s: got["extraction"][role][s] for s in ("Df", "Dr")} == \
            {s: want["extraction"][role][s] for s in ("Df", "Dr")}
        assert got["extraction"][role]["Dr"] == {"rows": 7, "rouge_l": 1, "exact": 1}
    if which == "convert":  # the same graph math on the same rows: the same bits
        assert got["perplexity"] == want["perplexity"]
    # without the cache, the window decodes the model with past (pasts empty) to the same tokens
    window = eval_json(d / f"{which}.onnx", d, env={"ULC_NO_KV_CACHE": "1"})["extraction"]["model"]
    assert window["decoding"] == "window"
    assert {s: window[s] for s in ("Df", "Dr")} == {s: want["extraction"]["model"][s] for s in ("Df", "Dr")}


@pytest.mark.parametrize("which", ["convert", "torch"])
def test_forget_on_a_model_with_past(with_past, tmp_path, which):
    """The main command trains through the pasts fed empty and reports as on the model without
    past; the output keeps the past/present interface and decodes with its cache."""
    d = with_past
    reps = {}
    for name in ("plain", which):
        out, rep = tmp_path / f"{name}_out.onnx", tmp_path / f"{name}.json"
        run_ulc(d / f"{name}.onnx", "--forget", d / "spec.json", "-o", out, "--report", rep,
                "--threads", "2", check=True)
        reps[name] = json.loads(rep.read_text())
    want, got = reps["plain"], reps[which]
    assert got["train"]["first_loss"] == pytest.approx(want["train"]["first_loss"], rel=1e-5)
    for when in ("before", "after"):
        assert got["extraction"][when]["decoding"] == "kv-cache"
        assert {s: got["extraction"][when][s] for s in ("Df", "Dr")} == \
            {s: want["extraction"][when][s] for s in ("Df", "Dr")}
        for split, p in want["perplexity"][when].items():
            # torch.onnx's module names ("m.transformer...") seed other LoRA initialisations
            rel = 1e-5 if when == "before" or which == "convert" else 1e-2
            assert got["perplexity"][when][split] == pytest.approx(p, rel=rel), (when, split)
    if which == "convert":  # the same modules, the same training: the same unlearned model
        assert got["perplexity"] == want["perplexity"]
    m = onnx.load(str(tmp_path / f"{which}_out.onnx"))
    assert "past_key_values.1.value" in [i.name for i in m.graph.input]
    assert "present.1.value" in [o.name for o in m.graph.output]
    ev = eval_json(tmp_path / f"{which}_out.onnx", d)
    assert ev["perplexity"]["model"] == pytest.approx(got["perplexity"]["after"], rel=1e-6)
    assert ev["extraction"]["model"]["decoding"] == "kv-cache"


def test_bad_models_with_past_are_refused_by_name(with_past, hf, tmp_path):
    d = with_past
    m = onnx.load(str(d / "torch.onnx"))
    keep = [o for o in m.graph.output if o.name != "present.1.value"]
    del m.graph.output[:]
    m.graph.output.extend(keep)
    onnx.save(m, str(tmp_path / "nopresent.onnx"))
    export_with_past(hf["path"], tmp_path / "heads.onnx", heads_declared=3)
    for model, msg in (("nopresent.onnx", "nopresent.onnx: input 'past_key_values.1.value' has no "
                        "output 'present.1.value'"),
                       ("heads.onnx", "heads.onnx: cache input 'past_key_values.0.value' is "
                        "f32[batch,3,past,8]")):
        for cmd in (("eval", tmp_path / model, "--forget", d / "spec.json"),
                    (tmp_path / model, "--forget", d / "spec.json", "-o", tmp_path / "out.onnx")):
            proc = run_ulc(*cmd)
            assert proc.returncode == 2 and msg in proc.stderr, proc.stderr
    assert not (tmp_path / "out.onnx").exists()
    # scored together, a model with past and one without are fed different inputs
    proc = run_ulc("eval", d / "torch.onnx", "--forget", d / "spec.json", "--original", d / "plain.onnx")
    assert proc.returncode == 2
    assert "plain.onnx (original): input 'past_key_values.0.key' is an input of" in proc.stderr


def test_with_past_after_passes_that_change_the_graph_is_refused(hf, tmp_path):
    """`ulc convert --with-past` rebuilds GPT-2 from its config and weights, so a graph that
    passes changed (an unmerged LoRA adapter) would silently lose them: the built decoder is
    checked against the model on a probe and refused; merged, the decoder matches and is written."""
    lora = "lora-inject{include=*mlp*,rank=4,alpha=8,init=random}"
    proc = run_ulc("convert", hf["path"], "--passes", lora, "-o", tmp_path / "d.onnx", "--with-past")
    assert proc.returncode != 0 and "does not compute the model's logits" in proc.stderr, proc.stderr
    assert not (tmp_path / "d.onnx").exists()
    proc = run_ulc("convert", hf["path"], "--passes", lora + ",lora-merge", "-o", tmp_path / "m.onnx", "--with-past")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "m.onnx").exists()
