"""The language-model metrics of `ulc eval --forget` and of the main command's report
(docs/metrics.md, "Language models") on the tiny GPT-2 fixture, against a numpy reference computed
from onnxruntime's logits of the same models: perplexity per split and next-token accuracy, the
loss and Min-K% attacks (AUC, threshold, fraction called member), verbatim extraction (greedy
continuation, ROUGE-L recall, exact match), and the relearning probe on text.

The input model first memorises its train rows (`ulc train --loss next-token`, a few epochs: most
rows are partly memorised, so extraction and the attacks have real values), then RFA unlearns
six of them; the rows include padded ones (attention_mask 0 at the end), one short enough that
its prefix is half its length."""
import json
import re
import sys

import numpy as np
import onnxruntime as ort
import pytest
from safetensors.numpy import save_file

from conftest import ROOT, run_ulc

sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
import gen_exporters  # noqa: E402

T, VOCAB = 16, 1000
FORGET = [0, 3, 5, 9, 12, 17]
PREFIX, TOKENS = 4, 8
RELEARN, RELEARN_LR = 3, 0.05


def write_data(d):
    r = np.random.default_rng(7)
    ids = r.integers(0, VOCAB, (24, T)).astype(np.int64)
    mask = np.ones_like(ids)
    for row, n in ((3, 12), (7, 10), (9, 5)):  # right-padded rows; row 9: 5 real tokens
        mask[row, n:] = 0
        ids[row, n:] = 0
    save_file({"input_ids": ids, "attention_mask": mask}, str(d / "train.safetensors"))
    t = r.integers(0, VOCAB, (20, T)).astype(np.int64)
    # three held-out rows repeat train rows (Dr) exactly: they look like members (and tie with
    # them), so the attacks' AUC and threshold are not trivially perfect
    t[:3] = ids[18:21]
    tmask = np.ones_like(t)
    tmask[4, 11:] = 0
    save_file({"input_ids": t, "attention_mask": tmask}, str(d / "test.safetensors"))
    return (ids, mask), (t, tmask)


def spec(test=True, **ev):
    s = {"method": "rfa", "data": {"train": "train.safetensors"}, "forget": {"indices": FORGET},
         "train": {"batch_size": 8, "lr": 1e-3, "epochs": 3}, "report": "report.json",
         "eval": {"extract_prefix": PREFIX, "extract_tokens": TOKENS, "relearn_steps": RELEARN,
                  "relearn_lr": RELEARN_LR, **ev}}
    if test:
        s["data"]["test"] = "test.safetensors"
    return s


# ---- the numpy reference ---------------------------------------------------------------------

def log_softmax(z):
    z = z.astype(np.float64)
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def row_stats(sess, ids, mask, mink=0.2):
    """Per row: token log-probs of the predicted positions, right ones; as ulc scores them."""
    z = sess.run(None, {"input_ids": ids, "attention_mask": mask})[0]
    out = []
    for i in range(len(ids)):
        lp = log_softmax(z[i])
        keep = [t for t in range(T - 1) if mask[i, t + 1] != 0]
        tok = np.array([lp[t, ids[i, t + 1]] for t in keep])
        ok = sum(int(np.argmax(z[i, t]) == ids[i, t + 1]) for t in keep)
        k = max(1, int(np.floor(mink * len(tok))))
        out.append({"lp": tok, "ok": ok, "n": len(tok),
                    "loss": -(-tok.sum() / len(tok)), "mink": np.sort(tok)[:k].mean()})
    return out


def ppl(rows):
    return float(np.exp(-sum(r["lp"].sum() for r in rows) / sum(r["n"] for r in rows)))


def acc(rows):
    return sum(r["ok"] for r in rows) / sum(r["n"] for r in rows)


def auc(pos, neg):
    pos, neg = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float((pos > neg).mean() + 0.5 * (pos == neg).mean())


def threshold(mem, non):
    best_t, best = np.inf, 0.5
    for t in np.unique(np.concatenate([mem, non])):
        ba = 0.5 * ((np.asarray(mem) >= t).mean() + (np.asarray(non) < t).mean())
        if ba > best:
            best_t, best = t, ba
    return best_t, best


def attack(df, dr, dt):
    t, ba = threshold(dr, dt)
    return {"auc": auc(df, dt), "threshold": t, "bacc": ba, "mia": float((np.asarray(df) >= t).mean())}


def lcs(a, b):
    d = np.zeros((len(a) + 1, len(b) + 1), int)
    for i in range(len(a)):
        for j in range(len(b)):
            d[i + 1, j + 1] = d[i, j] + 1 if a[i] == b[j] else max(d[i, j + 1], d[i + 1, j])
    return d[-1, -1]


def extraction(sess, ids, mask, rows):
    rouge, exact, used = 0.0, 0, 0
    for i in rows:
        L = int(np.argmin(mask[i])) if (mask[i] == 0).any() else T
        if L < 2:
            continue
        k = min(PREFIX, L // 2)
        m = min(TOKENS, L - k)
        seq = list(ids[i, :k])
        for _ in range(m):
            x = np.array([seq], np.int64)
            z = sess.run(None, {"input_ids": x, "attention_mask": np.ones_like(x)})[0]
            seq.append(int(np.argmax(z[0, -1])))
        cont, truth = seq[k:], list(ids[i, k:k + m])
        rouge += lcs(cont, truth) / m
        exact += cont == truth
        used += 1
    return {"rows": used, "rouge_l": rouge / used, "exact": exact / used}


def reference(model, train, test):
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    tr, te = row_stats(sess, *train), row_stats(sess, *test)
    df = [tr[i] for i in FORGET]
    dr = [r for i, r in enumerate(tr) if i not in FORGET]
    out = {"ppl": {"Df": ppl(df), "Dr": ppl(dr), "Dt": ppl(te)},
           "acc": {"Df": acc(df), "Dr": acc(dr), "Dt": acc(te)}}
    for key in ("loss", "mink"):
        out[key] = attack([r[key] for r in df], [r[key] for r in dr], [r[key] for r in te])
    dr_rows = [i for i in range(len(tr)) if i not in FORGET]
    out["extract"] = {"Df": extraction(sess, *train, FORGET), "Dr": extraction(sess, *train, dr_rows)}
    return out


# ---- the runs ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lm(tmp_path_factory, fixture_dir):
    d = tmp_path_factory.mktemp("lm")
    base = gen_exporters.generate(fixture_dir) / "gpt2_tiny.onnx"
    train, test = write_data(d)
    mem = d / "mem.onnx"
    run_ulc("train", base, "--data", d / "train.safetensors", "-o", mem, "--loss", "next-token",
            "--params", "*", "--lr", "3e-3", "--epochs", "10", "--batch-size", "8", "-q",
            "--threads", "2", check=True)
    (d / "spec.json").write_text(json.dumps(spec()))
    out = d / "out.onnx"
    proc = run_ulc(mem, "--forget", d / "spec.json", "-o", out, "--threads", "2", "-q")
    assert proc.returncode == 0, proc.stderr
    ev = run_ulc("eval", out, "--forget", d / "spec.json", "--original", mem, "--relearn",
                 RELEARN, "--relearn-lr", RELEARN_LR, "--json", "--threads", "2", check=True)
    return {"dir": d, "train": train, "test": test, "mem": mem, "out": out, "stdout": proc.stdout,
            "report": json.loads((d / "report.json").read_text()), "eval": json.loads(ev.stdout),
            "ref": {"model": reference(out, train, test), "original": reference(mem, train, test)}}


def test_perplexity_and_next_token_accuracy(lm):
    ev, rep = lm["eval"], lm["report"]
    for role in ("model", "original"):
        ref = lm["ref"][role]
        for split in ("Df", "Dr", "Dt"):
            assert ev["perplexity"][role][split] == pytest.approx(ref["ppl"][split], rel=1e-4)
            assert ev["accuracy"][role][split] == pytest.approx(ref["acc"][split], abs=1e-12)
    # the model memorised its train rows: the held-out perplexity is far higher
    assert ev["perplexity"]["original"]["Dr"] * 5 < ev["perplexity"]["original"]["Dt"]
    assert 0 < ev["accuracy"]["original"]["Dt"] < ev["accuracy"]["original"]["Dr"] < 1
    # the main report: before = IN (mem.onnx), after = OUT, the same numbers
    for when, role in (("before", "original"), ("after", "model")):
        for split in ("Df", "Dr", "Dt"):
            assert rep["perplexity"][when][split] == pytest.approx(ev["perplexity"][role][split], rel=1e-9)
    assert "perplexity" in lm["stdout"]


@pytest.mark.parametrize("key,name", [("loss", "loss"), ("mink", "min_k")])
def test_membership_attacks(lm, key, name):
    ev, rep = lm["eval"], lm["report"]
    assert ev["mia"]["nonmembers"] == "Dt" and ev["mia"]["min_k_percent"] == 20
    for role in ("model", "original"):
        got, ref = ev["mia"][role][name], lm["ref"][role][key]
        assert got["auc"] == pytest.approx(ref["auc"], abs=1e-12)
        assert got["threshold"] == pytest.approx(ref["threshold"], rel=1e-4)
        assert got["attacker_bacc"] == pytest.approx(ref["bacc"], abs=1e-12)
        assert got["mia"] == pytest.approx(ref["mia"], abs=1e-12)
        assert (got["members"], got["nonmembers"], got["targets"]) == (18, 20, 6)
    # members are told from most held-out rows, not from the near-copies of train rows
    assert 0.6 < ev["mia"]["original"][name]["auc"] < 1
    assert ev["mia"]["original"][name]["attacker_bacc"] < 1
    assert rep["mia"][name] == ev["mia"]["model"][name]["mia"]
    assert rep["mia"]["before"][name] == ev["mia"]["original"][name]["mia"]
    assert rep["mia"]["auc"]["after"][name] == pytest.approx(ev["mia"]["model"][name]["auc"], abs=1e-12)


def test_extraction(lm):
    ev, rep = lm["eval"], lm["report"]
    ex = ev["extraction"]
    assert (ex["prefix"], ex["max_tokens"], ex["max_rows"]) == (PREFIX, TOKENS, 64)
    values = []
    for role in ("model", "original"):
        for split, n in (("Df", 6), ("Dr", 18)):
            got, ref = ex[role][split], lm["ref"][role]["extract"][split]
            assert got["rows"] == ref["rows"] == n
            assert got["rouge_l"] == pytest.approx(ref["rouge_l"], abs=1e-12)
            assert got["exact"] == pytest.approx(ref["exact"], abs=1e-12)
            values += [got["rouge_l"], got["exact"]]
        # an ONNX export without past_key_values (gen_exporters' gpt2_tiny) has no KV cache
        assert ex[role]["decoding"] == "window"
    # real values: the memorising model gives much of its rows back, not all of them verbatim
    assert ex["original"]["Df"]["rouge_l"] > 0.3
    assert any(0 < v < 1 for v in values), values
    assert rep["extraction"]["before"] == ex["original"]
    assert rep["extraction"]["after"] == ex["model"]


def test_relearning_probe_on_text(lm):
    ev, rep = lm["eval"], lm["report"]
    rl = ev["relearn"]
    assert (rl["steps"], rl["batch_size"], rl["lr"], rl["forget_rows"]) == (RELEARN, 6, RELEARN_LR, 6)
    assert len(rl["forget_acc"]) == len(rl["forget_ppl"]) == RELEARN + 1
    assert len(rl["loss"]) == RELEARN
    assert rl["forget_acc"][0] == pytest.approx(ev["accuracy"]["model"]["Df"], abs=1e-12)
    assert rl["forget_ppl"][0] == pytest.approx(ev["perplexity"]["model"]["Df"], rel=1e-9)
    assert rl["forget_ppl"][-1] < rl["forget_ppl"][0]  # fine-tuning on Df brings it back
    assert all(np.isfinite(rl["loss"]))
    # the report runs the same probe on OUT in memory: the same numbers
    assert rep["relearn"]["forget_ppl"] == pytest.approx(rl["forget_ppl"], rel=1e-9)
    assert rep["relearn"]["forget_acc"] == pytest.approx(rl["forget_acc"], abs=1e-12)
    # steps to recover: the first points of the next-token accuracy curve at 50 % and 90 %
    for r in (rl, rep["relearn"]):
        for key, frac in (("steps_to_50", 0.5), ("steps_to_90", 0.9)):
            assert r[key] == next((s for s, a in enumerate(r["forget_acc"]) if a >= frac), None)


def test_relearning_probe_on_text_with_reference(lm):
    """--reference: the same probe on the reference (here the memorising input model)."""
    d = lm["dir"]
    ev = json.loads(run_ulc("eval", lm["out"], "--forget", d / "spec.json", "--reference",
                            lm["mem"], "--relearn", RELEARN, "--relearn-lr", RELEARN_LR, "--json",
                            "--threads", "2", check=True).stdout)
    rl, ref = ev["relearn"], ev["relearn"]["reference"]
    assert rl["forget_acc"] == pytest.approx(lm["eval"]["relearn"]["forget_acc"], abs=1e-12)
    assert len(ref["forget_acc"]) == len(ref["forget_ppl"]) == RELEARN + 1
    assert ref["forget_acc"][0] == pytest.approx(lm["eval"]["accuracy"]["original"]["Df"],
                                                 abs=1e-12)
    assert ref["forget_ppl"][0] == pytest.approx(lm["eval"]["perplexity"]["original"]["Df"],
                                                 rel=1e-9)
    for key, frac in (("steps_to_50", 0.5), ("steps_to_90", 0.9)):
        assert ref[key] == next((s for s, a in enumerate(ref["forget_acc"]) if a >= frac), None)


def test_text_table_and_rendered_reports(lm, tmp_path):
    d = lm["dir"]
    proc = run_ulc("eval", lm["out"], "--forget", d / "spec.json", "--original", lm["mem"],
                   "--threads", "2", check=True)
    for needle in ("perplexity", "MIA model     loss: AUC", "Min-K%", "extraction"):
        assert needle in proc.stdout, proc.stdout
    md = tmp_path / "r.md"
    sp = json.loads((d / "spec.json").read_text())
    sp["data"] = {"train": str(d / "train.safetensors"), "test": str(d / "test.safetensors")}
    sp["report"] = str(md)
    (tmp_path / "spec.json").write_text(json.dumps(sp))
    proc = run_ulc(lm["mem"], "--forget", tmp_path / "spec.json", "-o", tmp_path / "o.onnx",
                   "--threads", "2", "-q")
    assert proc.returncode == 0, proc.stderr
    text = md.read_text()
    assert "## Perplexity" in text and "## Extraction" in text, text


def test_other_settings_and_no_test_data(lm, tmp_path):
    d = lm["dir"]
    for name in ("train.safetensors", "test.safetensors"):
        (tmp_path / name).write_bytes((d / name).read_bytes())
    (tmp_path / "spec.json").write_text(json.dumps(spec(mink_percent=50, extract_prefix=2,
                                                        extract_tokens=3, extract_rows=2)))
    ev = json.loads(run_ulc("eval", lm["mem"], "--forget", tmp_path / "spec.json", "--json",
                            "--threads", "2", check=True).stdout)
    sess = ort.InferenceSession(str(lm["mem"]), providers=["CPUExecutionProvider"])
    tr, te = row_stats(sess, *lm["train"], mink=0.5), row_stats(sess, *lm["test"], mink=0.5)
    dr = [r["mink"] for i, r in enumerate(tr) if i not in FORGET]
    ref = attack([tr[i]["mink"] for i in FORGET], dr, [r["mink"] for r in te])
    assert ev["mia"]["min_k_percent"] == 50
    assert ev["mia"]["model"]["min_k"]["auc"] == pytest.approx(ref["auc"], abs=1e-12)
    assert ev["mia"]["model"]["min_k"]["mia"] == pytest.approx(ref["mia"], abs=1e-12)
    ex = ev["extraction"]["model"]
    assert ex["Df"]["rows"] == 2 and ex["Dr"]["rows"] == 2  # the first two of each
    # without data.test: no attack (its non-members), the rest as before
    (tmp_path / "spec.json").write_text(json.dumps(spec(test=False)))
    ev = json.loads(run_ulc("eval", lm["mem"], "--forget", tmp_path / "spec.json", "--json",
                            "--threads", "2", check=True).stdout)
    assert "mia" not in ev and set(ev["perplexity"]["model"]) == {"Df", "Dr"}
    (tmp_path / "spec.json").write_text(json.dumps(spec(extract_rows=0)))
    ev = json.loads(run_ulc("eval", lm["mem"], "--forget", tmp_path / "spec.json", "--json",
                            "--threads", "2", check=True).stdout)
    assert "extraction" not in ev


@pytest.mark.parametrize("key,value", [("mink_percent", 0), ("mink_percent", 101),
                                       ("extract_prefix", 0), ("extract_rows", -1),
                                       ("extract_tokens", 1.5)])
def test_bad_eval_keys(tmp_path, key, value):
    (tmp_path / "train.safetensors").write_bytes(b"")
    (tmp_path / "spec.json").write_text(json.dumps(spec(test=False, **{key: value})))
    proc = run_ulc("eval", tmp_path / "x.onnx", "--forget", tmp_path / "spec.json")
    assert proc.returncode == 2, proc.stderr
    assert f"'eval.{key}'" in proc.stderr, proc.stderr


def test_extraction_of_a_model_that_looks_ahead(lm, tmp_path):
    """Greedy decoding runs a group's rows in a fixed window (eval/lm_eval.c: one plan for the
    whole continuation), which is exact only when a position's logits ignore later tokens. A
    model whose every position adds the mean embedding of the whole row looks ahead: the probe
    (two fillers must give the same logits) sees it, and decoding falls back to the prefixes,
    matching the reference that decodes on prefixes."""
    from onnx import TensorProto as TP, helper as h, numpy_helper as nh
    import onnx
    r = np.random.default_rng(3)
    emb = (r.standard_normal((VOCAB, 16)) * 0.5).astype(np.float32)
    head = (r.standard_normal((16, VOCAB)) * 0.5).astype(np.float32)
    nodes = [h.make_node("Gather", ["E", "input_ids"], ["x"]),
             h.make_node("ReduceMean", ["x"], ["mean"], axes=[1], keepdims=1),
             h.make_node("Add", ["x", "mean"], ["xm"]),
             h.make_node("Cast", ["attention_mask"], ["mf"], to=TP.FLOAT),
             h.make_node("Unsqueeze", ["mf", "ax2"], ["m3"]),
             h.make_node("Mul", ["xm", "m3"], ["xmm"]),
             h.make_node("MatMul", ["xmm", "H"], ["logits"])]
    g = h.make_graph(nodes, "lookahead",
                     [h.make_tensor_value_info("input_ids", TP.INT64, ["N", "T"]),
                      h.make_tensor_value_info("attention_mask", TP.INT64, ["N", "T"])],
                     [h.make_tensor_value_info("logits", TP.FLOAT, ["N", "T", VOCAB])],
                     [nh.from_array(emb, "E"), nh.from_array(head, "H"), nh.from_array(np.array([2], np.int64), "ax2")])
    model = tmp_path / "lookahead.onnx"
    onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), str(model))
    for name in ("train.safetensors", "test.safetensors"):
        (tmp_path / name).write_bytes((lm["dir"] / name).read_bytes())
    (tmp_path / "spec.json").write_text(json.dumps(spec()))
    ev = json.loads(run_ulc("eval", model, "--forget", tmp_path / "spec.json", "--json", "--threads", "2",
                            check=True).stdout)
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    ids, mask = lm["train"]
    dr_rows = [i for i in range(len(ids)) if i not in FORGET]
    assert ev["extraction"]["model"]["decoding"] == "prefixes"
    for split, rows in (("Df", FORGET), ("Dr", dr_rows)):
        got, ref = ev["extraction"]["model"][split], extraction(sess, ids, mask, rows)
        assert got["rows"] == ref["rows"]
        assert got["rouge_l"] == pytest.approx(ref["rouge_l"], abs=1e-12), split
        assert got["exact"] == pytest.approx(ref["exact"], abs=1e-12), split


def test_extraction_is_skipped_for_a_fixed_sequence_length(lm, tmp_path):
    import onnx
    m = onnx.load(str(lm["mem"]))
    for i in m.graph.input:
        i.type.tensor_type.shape.dim[1].dim_value = T
    fixed = tmp_path / "fixed.onnx"
    onnx.save(m, str(fixed))
    ev = json.loads(run_ulc("eval", fixed, "--forget", lm["dir"] / "spec.json", "--json",
                            "--threads", "2", check=True).stdout)
    assert "fixed sequence length (16)" in ev["extraction"]["model"]["skipped"]
    # the rest is scored as for the dynamic model
    assert ev["perplexity"]["model"]["Df"] == pytest.approx(lm["ref"]["original"]["ppl"]["Df"], rel=1e-4)


def test_class_forgetting_on_text(lm, tmp_path):
    # rows labelled by topic (here: row % 3); forgetting class 1 splits the test rows into
    # Dft / Drt, and the attacks' non-members are the Drt rows
    (ids, mask), (t, tmask) = lm["train"], lm["test"]
    save_file({"input_ids": ids, "attention_mask": mask,
               "label": (np.arange(len(ids)) % 3).astype(np.int64)}, str(tmp_path / "train.safetensors"))
    save_file({"input_ids": t, "attention_mask": tmask,
               "label": (np.arange(len(t)) % 3).astype(np.int64)}, str(tmp_path / "test.safetensors"))
    sp = spec(extract_rows=0)
    sp["forget"] = {"classes": [1]}
    (tmp_path / "spec.json").write_text(json.dumps(sp))
    ev = json.loads(run_ulc("eval", lm["mem"], "--forget", tmp_path / "spec.json", "--json",
                            "--threads", "2", check=True).stdout)
    sess = ort.InferenceSession(str(lm["mem"]), providers=["CPUExecutionProvider"])
    tr, te = row_stats(sess, ids, mask), row_stats(sess, t, tmask)
    df = [r for i, r in enumerate(tr) if i % 3 == 1]
    dr = [r for i, r in enumerate(tr) if i % 3 != 1]
    dft = [r for i, r in enumerate(te) if i % 3 == 1]
    drt = [r for i, r in enumerate(te) if i % 3 != 1]
    got = ev["perplexity"]["model"]
    assert set(got) == {"Df", "Dr", "Dft", "Drt"}
    for split, rows in (("Df", df), ("Dr", dr), ("Dft", dft), ("Drt", drt)):
        assert got[split] == pytest.approx(ppl(rows), rel=1e-4)
    assert ev["mia"]["nonmembers"] == "Drt"
    ref = attack([r["loss"] for r in df], [r["loss"] for r in dr], [r["loss"] for r in drt])
    assert ev["mia"]["model"]["loss"]["auc"] == pytest.approx(ref["auc"], abs=1e-12)
    assert ev["mia"]["model"]["loss"]["mia"] == pytest.approx(ref["mia"], abs=1e-12)
    assert ev["mia"]["model"]["loss"]["nonmembers"] == len(drt)


def test_text_gates(lm, tmp_path):
    d = lm["dir"]
    sp = json.loads((d / "spec.json").read_text())
    sp["data"] = {"train": str(d / "train.safetensors"), "test": str(d / "test.safetensors")}
    sp["report"] = str(tmp_path / "r.json")
    sp["gates"] = {"forget_ppl_min": 1e9, "extract_max": 1.0, "relearn_steps_min": 1}
    (tmp_path / "spec.json").write_text(json.dumps(sp))
    out = tmp_path / "o.onnx"
    proc = run_ulc(lm["mem"], "--forget", tmp_path / "spec.json", "-o", out, "--threads", "2", "-q")
    assert proc.returncode == 10, proc.stderr
    assert "gate forget_ppl_min failed: Df perplexity" in proc.stderr
    assert "extract_max failed" not in proc.stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    g = {x["name"]: x for x in rep["gates"]}
    # a minimum prints >=, a maximum <=
    assert re.search(r"gate forget_ppl_min: FAILED \(\S+ >= 1e\+09\)", proc.stdout), proc.stdout
    assert re.search(r"gate extract_max: passed \(\S+ <= 1\)", proc.stdout), proc.stdout
    # the relearning gate on the text probe: steps_to_50 of next-token accuracy (steps + 1: never)
    s50 = rep["relearn"]["steps_to_50"]
    want = RELEARN + 1 if s50 is None else s50
    assert (g["relearn_steps_min"]["value"], g["relearn_steps_min"]["passed"]) == (want, want >= 1)
    assert g["forget_ppl_min"]["value"] == rep["perplexity"]["after"]["Df"]
    assert not g["forget_ppl_min"]["passed"] and g["extract_max"]["passed"]
    assert g["extract_max"]["value"] == rep["extraction"]["after"]["Df"]["rouge_l"]
    assert out.exists()
    # refused before any work: extraction off, or a model it cannot feed
    sp["eval"]["extract_rows"] = 0
    (tmp_path / "spec.json").write_text(json.dumps(sp))
    proc = run_ulc(lm["mem"], "--forget", tmp_path / "spec.json", "-o", tmp_path / "o2.onnx", "-q")
    assert proc.returncode == 2 and "'gates.extract_max': extraction is off" in proc.stderr
    import onnx
    m = onnx.load(str(lm["mem"]))
    for i in m.graph.input:
        i.type.tensor_type.shape.dim[1].dim_value = T
    onnx.save(m, str(tmp_path / "fixed.onnx"))
    sp["eval"]["extract_rows"] = 4
    (tmp_path / "spec.json").write_text(json.dumps(sp))
    proc = run_ulc(tmp_path / "fixed.onnx", "--forget", tmp_path / "spec.json", "-o",
                   tmp_path / "o3.onnx", "-q")
    assert proc.returncode == 4 and "fixed sequence length" in proc.stderr, proc.stderr
    assert not (tmp_path / "o3.onnx").exists()


@pytest.mark.parametrize("gate", ["forget_ppl_min", "extract_max"])
def test_text_gates_refused_for_a_classifier(tmp_path, gate):
    digits = ROOT / "models" / "digits"
    sp = json.loads((digits / "forget_digit.json").read_text())
    sp["data"] = {"train": str(digits / "train.safetensors")}
    sp["gates"] = {gate: 0.5}
    (tmp_path / "spec.json").write_text(json.dumps(sp))
    out = tmp_path / "o.onnx"
    proc = run_ulc(digits / "digits_resnet.onnx", "--forget", tmp_path / "spec.json", "-o", out,
                   "-q", "--report", tmp_path / "r.json")
    assert proc.returncode == 4, proc.stderr
    assert f"'gates.{gate}'" in proc.stderr and "classifier" in proc.stderr
    assert not out.exists() and not (tmp_path / "r.json").exists()
