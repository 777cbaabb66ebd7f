"""models/bios/, the text example (README, "Forgetting people"): a DistilGPT2-shaped model that
memorised the biographies of 200 fictitious people, and a spec forgetting 5 % of them.

  - the committed corpus, forget set, spec and tokenizer are what gen_bios.py makes (regenerated
    here and compared byte for byte; the model itself is not retrained);
  - the corpus has the promised shape: every person with five facts, each as Q/A and prose;
    held-out people never appear in training; the forget set is 5 % of the training people;
  - the committed model is what gen_bios.py's config says, stored in float16, and remembers its
    training people far better than the held-out ones (transformers, the committed tokenizer);
  - the spec runs on the JSONL texts: RFA on the float16 checkpoint (a shortened copy of the
    committed spec), the output stays float16, only the adapted weights change, and it loads in
    transformers with the tokenizer beside it.
"""
import json
import sys

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from conftest import ROOT, run_ulc

BIOS = ROOT / "models" / "bios"
sys.path.insert(0, str(BIOS))
import gen_bios  # noqa: E402

torch.set_num_threads(1)
GENERATED = ["train.jsonl", "test.jsonl", "forget.jsonl", "forget_people.json", "tokenizer.json",
             "vocab.json", "merges.txt"]


def test_committed_corpus_and_tokenizer_are_what_the_script_makes(tmp_path):
    gen_bios.corpus(tmp_path)
    for name in GENERATED:
        assert (tmp_path / name).read_bytes() == (BIOS / name).read_bytes(), name


def test_corpus_shape():
    train = gen_bios.read_jsonl(BIOS / "train.jsonl")
    test = gen_bios.read_jsonl(BIOS / "test.jsonl")
    assert [sorted(r) for r in train[:1]] == [["id", "label", "text"]]
    labels = sorted({r["label"] for r in train})
    assert labels == list(range(gen_bios.N_TRAIN))
    assert sorted({r["label"] for r in test}) == list(range(gen_bios.N_TRAIN, gen_bios.N_TRAIN + gen_bios.N_TEST))
    for rows in (train, test):
        per = {}
        for r in rows:
            per.setdefault(r["label"], []).append(r["id"].split("-", 1)[1])
        want = sorted(f"{f}-{form}" for f in gen_bios.FACTS for form in ("qa", "prose"))
        assert all(sorted(v) == want for v in per.values())
    assert len({r["id"] for r in train + test}) == len(train) + len(test)
    # held-out people: their names never occur in the training texts
    names = {r["text"].split(" was born in ")[0] for r in test if r["id"].endswith("birth-prose")}
    assert len(names) == gen_bios.N_TEST
    blob = "\n".join(r["text"] for r in train)
    assert not any(n in blob for n in names)
    spec = json.loads((BIOS / "forget_people.json").read_text())
    forget = spec["forget"]["classes"]
    assert len(forget) == round(0.05 * gen_bios.N_TRAIN) == 10
    assert gen_bios.read_jsonl(BIOS / "forget.jsonl") == [r for r in train if r["label"] in forget]


@pytest.mark.slow
def test_model_files_and_memorisation():
    cfg = json.loads((BIOS / "config.json").read_text())
    want = gen_bios.config()
    for k in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "activation_function"):
        assert cfg[k] == getattr(want, k), k
    assert cfg["n_layer"] == 6 and cfg["torch_dtype"] == "float16"
    w = load_file(str(BIOS / "model.safetensors"))
    assert all(v.dtype == np.float16 for k, v in w.items() if not k.endswith(".attn.bias")), \
        {k: v.dtype for k, v in w.items()}
    assert w["transformer.wte.weight"].shape == (cfg["vocab_size"], cfg["n_embd"])
    size = sum(p.stat().st_size for p in BIOS.iterdir() if p.name in
               GENERATED + ["model.safetensors", "config.json", "gen_bios.py", "README.md"])
    assert size < 4 << 20, size
    # the first 20 people of each split (transformers on the reference BLAS is slow)
    tr_acc, tr_ppl = gen_bios.next_token_figures(BIOS, "train", 200)
    te_acc, te_ppl = gen_bios.next_token_figures(BIOS, "test", 200)
    # committed: 92.0 % / 1.23 on these training people, 47.4 % / 98.5 on the held-out ones
    assert tr_acc > 0.85 and tr_ppl < 1.5, (tr_acc, tr_ppl)
    assert te_acc < 0.6 and te_ppl > 30, (te_acc, te_ppl)


@pytest.mark.slow
def test_the_spec_runs(tmp_path):
    spec = json.loads((BIOS / "forget_people.json").read_text())
    forget = spec["forget"]["classes"]
    # the committed spec, one epoch, with smaller report extras, on the forgotten people and 20
    # others (300 texts, 10 steps) and 10 held-out people
    spec["train"]["epochs"] = 1
    spec["eval"] = {"features": False, "relearn_steps": 2, "extract_rows": 8}  # the probe on float16 too
    for split, keep in (("train", lambda y: y < 20 or y in forget), ("test", lambda y: y < 210)):
        rows = [r for r in gen_bios.read_jsonl(BIOS / f"{split}.jsonl") if keep(r["label"])]
        gen_bios.write_jsonl(tmp_path / f"{split}.jsonl", rows)
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    out = tmp_path / "out"
    r = run_ulc(BIOS, "--forget", tmp_path / "spec.json", "-o", f"{out}/", "--report",
                tmp_path / "r.json", "--threads", "2", "-q", timeout=900)
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["hyperparameters"]["rfa"]["task"] == "next-token"
    assert rep["splits"]["Df"]["rows"] == 100 and rep["splits"]["Dr"]["rows"] == 200
    probe = rep["relearn"]["forget_acc"]
    assert len(probe) == 3 and all(a > 0.3 for a in probe), probe  # float32 copies, not garbage
    before = load_file(str(BIOS / "model.safetensors"))
    after = load_file(str(out / "model.safetensors"))
    # RFA adapts the FFN linears and the head; the head is tied to the embedding, so it is
    # merged into an untied copy (lm_head.weight) and the embedding stays
    assert sorted(after) == sorted(list(before) + ["lm_head.weight"])
    assert all(after[k].dtype == np.float16 for k in after if k.endswith(".weight"))
    changed = sorted(k for k in before if not np.array_equal(before[k], after[k]))
    assert changed == [f"transformer.h.{i}.mlp.{m}.weight" for i in range(6)
                       for m in ("c_fc", "c_proj")], changed
    # OUT is a checkpoint transformers loads, in float16, with the tokenizer
    assert (out / "tokenizer.json").read_bytes() == (BIOS / "tokenizer.json").read_bytes()
    from transformers import GPT2LMHeadModel
    model = GPT2LMHeadModel.from_pretrained(str(out), torch_dtype="auto")
    assert model.transformer.h[0].mlp.c_fc.weight.dtype == torch.float16
