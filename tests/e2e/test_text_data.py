"""Text data (docs/spec.md, "Text data"): JSONL and plain text files tokenized with the model's
tokenizer into input_ids/attention_mask rows, for `ulc IN --forget SPEC -o OUT`, `ulc eval
--forget` and `ulc train --data`. The tiny GPT2 fixture (tests/fixtures/gen_hf.py hf_gpt2, with
its locally trained byte-level BPE) stands in for DistilGPT2. The rows ulc makes are checked
against `tokenizers` and transformers (the rows' count and width, the next-token predictions and
their accuracy per split), the OUT directory against `from_pretrained`, and every bad input is
refused before any work, naming the file and line, with nothing written."""
import json
import sys

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from conftest import ROOT, run_ulc

sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
import gen_hf  # noqa: E402

WORDS = ["the cat", "a dog", "the rain", "one two", "hello world", "the fox", "a secret",
         "the model"]
CONTEXT = 32  # hf_gpt2's n_positions


def texts(n, salt=""):
    return [f"{WORDS[i % 8]} {i}{salt} {WORDS[(3 * i + 1) % 8]}" for i in range(n)]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def hf_fixtures(fixture_dir):
    return gen_hf.generate(fixture_dir)


@pytest.fixture
def gpt2(hf_fixtures, tmp_path):
    return gen_hf.hf_dir(hf_fixtures, "hf_gpt2", tmp_path / "gpt2")


def tokenizer(model_dir):
    from tokenizers import Tokenizer
    return Tokenizer.from_file(str(model_dir / "tokenizer.json"))


def encode(model_dir, items):
    return [tokenizer(model_dir).encode(t).ids for t in items]


def next_token_counts(model_dir, ids_list, rows=None):
    """(predictions, right ones) of the HF model over the given token lists: each position whose
    next token exists predicts it (argmax), as ulc scores next-token models."""
    from transformers import GPT2LMHeadModel
    m = GPT2LMHeadModel.from_pretrained(str(model_dir)).eval()
    pred = ok = 0
    for k, ids in enumerate(ids_list):
        if rows is not None and k not in rows:
            continue
        with torch.no_grad():
            z = m(torch.tensor([ids])).logits[0].numpy()
        pred += len(ids) - 1
        ok += int((z[:-1].argmax(-1) == np.array(ids[1:])).sum())
    return pred, ok


def run_forget(tmp_path, model, spec, out=None, extra=()):
    sp = tmp_path / "spec.json"
    sp.write_text(json.dumps(spec))
    out = out or tmp_path / "out"  # a directory: written with a trailing '/'
    return run_ulc(model, "--forget", sp, "-o", f"{out}/", "--report", tmp_path / "report.json",
                   "--threads", "2", "-q", *extra), out


def eval_forget(tmp_path, model, spec):
    sp = tmp_path / "eval_spec.json"
    sp.write_text(json.dumps(spec))
    r = run_ulc("eval", model, "--forget", sp, "--json", "--threads", "2")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def split_counts(doc, split, pred):
    """The right predictions of split from `ulc eval --forget --json`'s accuracy."""
    return round(doc["accuracy"]["model"][split] * pred)


# ---- the fixed interface ---------------------------------------------------------------------


def test_interface_example_end_to_end(tmp_path, gpt2):
    train, test = texts(40), texts(12, salt="t")
    write_jsonl(tmp_path / "train.jsonl", [{"text": t} for t in train])
    write_jsonl(tmp_path / "test.jsonl", [{"text": t} for t in test])
    spec = {"method": "rfa", "data": {"train": "train.jsonl", "test": "test.jsonl"},
            "forget": {"indices": [4, 17, 30]}, "model": {"max_length": CONTEXT},
            "train": {"batch_size": 8}}
    proc, out = run_forget(tmp_path, gpt2, spec)
    assert proc.returncode == 0, proc.stderr
    rep = json.loads((tmp_path / "report.json").read_text())
    ids = encode(gpt2, train)
    assert rep["text_data"]["rows"] == rep["text_data"]["texts"] == 40
    assert rep["text_data"]["width"] == max(map(len, ids))
    assert rep["text_data"]["max_length"] == CONTEXT
    forget = {4, 17, 30}
    assert rep["splits"]["Df"]["rows"] == 3 and rep["splits"]["Dr"]["rows"] == 37
    # the predictions ulc counted are the tokens `tokenizers` gives, less one per text
    assert rep["splits"]["Df"]["predictions"] == sum(len(ids[i]) - 1 for i in forget)
    assert rep["splits"]["Dt"]["predictions"] == sum(len(x) - 1 for x in encode(gpt2, test))
    # OUT is a complete checkpoint directory: the tokenizer came along, from_pretrained loads it
    for name in ["config.json", "model.safetensors", "tokenizer.json", "vocab.json", "merges.txt",
                 "tokenizer_config.json", "special_tokens_map.json"]:
        assert (out / name).is_file(), name
    assert (out / "tokenizer.json").read_bytes() == (gpt2 / "tokenizer.json").read_bytes()
    from transformers import AutoTokenizer, GPT2LMHeadModel
    m = GPT2LMHeadModel.from_pretrained(str(out)).eval()
    assert AutoTokenizer.from_pretrained(str(out))("the cat").input_ids == encode(gpt2, ["the cat"])[0]
    # its outputs are ulc's on the same rows
    batch, mask = np.zeros((2, 8), np.int64), np.zeros((2, 8), np.int64)
    for r, (k, n) in enumerate([(0, 8), (1, 5)]):
        n = min(n, len(ids[k]))
        batch[r, :n], mask[r, :n] = ids[k][:n], 1
    save_file({"input_ids": batch, "attention_mask": mask}, str(tmp_path / "in.safetensors"))
    r = run_ulc("run", out, "--input", tmp_path / "in.safetensors", "-o", tmp_path / "o.safetensors")
    assert r.returncode == 0, r.stderr
    got = load_file(str(tmp_path / "o.safetensors"))["logits"]
    with torch.no_grad():
        want = m(torch.tensor(batch), attention_mask=torch.tensor(mask)).logits.numpy()
    keep = mask.astype(bool)
    np.testing.assert_allclose(got[keep], want[keep], rtol=1e-4, atol=1e-4)
    # ulc eval --forget on OUT scores the splits as transformers does on `tokenizers`' ids
    doc = eval_forget(tmp_path, out, {**spec, "train": {}})
    for split, rows in [("Df", forget), ("Dr", set(range(40)) - forget)]:
        pred, ok = next_token_counts(out, ids, rows)
        assert doc["rows"][split] == len(rows)
        assert abs(split_counts(doc, split, pred) - ok) <= 1, (split, doc["accuracy"], ok, pred)
    # the model's context is the limit: the interface's 128 is refused for this 32-position model
    spec["model"]["max_length"] = 128
    proc, out2 = run_forget(tmp_path, gpt2, spec, out=tmp_path / "out2")
    assert proc.returncode == 2, proc.stderr
    assert "model.max_length" in proc.stderr and "context (32 positions)" in proc.stderr
    assert not out2.exists()


def test_default_max_length_is_the_context_and_eval_matches_transformers(tmp_path, gpt2):
    train = texts(20)
    write_jsonl(tmp_path / "train.jsonl", [{"text": t, "id": f"doc-{i}"} for i, t in enumerate(train)])
    spec = {"method": "rfa", "data": {"train": "train.jsonl"}, "forget": {"indices": [0, 7]}}
    doc = eval_forget(tmp_path, gpt2, spec)
    ids = encode(gpt2, train)
    for split, rows in [("Df", {0, 7}), ("Dr", set(range(20)) - {0, 7})]:
        pred, ok = next_token_counts(gpt2, ids, rows)
        assert abs(split_counts(doc, split, pred) - ok) <= 1
    # plain `ulc eval --data` scores classifiers: text is pointed to --forget
    r = run_ulc("eval", gpt2, "--data", tmp_path / "train.jsonl")
    assert r.returncode == 4 and "--forget SPEC" in r.stderr


# ---- data files and forget sets ----------------------------------------------------------------


def test_txt_data_skips_blank_lines(tmp_path, gpt2):
    lines = texts(10)
    body = "\n".join(lines[:3]) + "\n\n  \n" + "\r\n".join(lines[3:]) + "\n"
    (tmp_path / "train.txt").write_bytes(b"\xef\xbb\xbf" + body.encode())  # with a BOM
    spec = {"method": "rfa", "data": {"train": "train.txt"}, "forget": {"file": "f.txt"},
            "model": {"max_length": 24}}
    (tmp_path / "f.txt").write_text(lines[0] + "\n")  # equal to the first text once the BOM is gone
    doc = eval_forget(tmp_path, gpt2, spec)
    assert doc["rows"]["Df"] == 1 and doc["rows"]["Dr"] == 9
    spec["forget"] = {"indices": [3, 9]}
    doc = eval_forget(tmp_path, gpt2, spec)
    assert doc["rows"]["Df"] == 2 and doc["rows"]["Dr"] == 8
    ids = encode(gpt2, lines)  # index 3 is the line after the blank ones
    pred, ok = next_token_counts(gpt2, ids, {3, 9})
    assert abs(split_counts(doc, "Df", pred) - ok) <= 1
    spec["forget"]["indices"] = [10]
    sp = tmp_path / "s.json"
    sp.write_text(json.dumps(spec))
    r = run_ulc("eval", gpt2, "--forget", sp)
    assert r.returncode == 2 and "index 10 is outside data.train's 10 texts" in r.stderr


def test_forget_classes_by_label(tmp_path, gpt2):
    rows = [{"text": t, "label": i % 3, "id": i, "source": "ignored"} for i, t in enumerate(texts(18))]
    write_jsonl(tmp_path / "train.jsonl", rows)
    spec = {"method": "rfa", "data": {"train": "train.jsonl"}, "forget": {"classes": [1]}}
    doc = eval_forget(tmp_path, gpt2, spec)
    assert doc["rows"]["Df"] == 6 and doc["rows"]["Dr"] == 12
    # class 7 has no texts; unlabelled texts cannot forget classes
    spec["forget"]["classes"] = [7]
    (tmp_path / "s.json").write_text(json.dumps(spec))
    r = run_ulc("eval", gpt2, "--forget", tmp_path / "s.json")
    assert r.returncode == 2 and "class 7 has no rows" in r.stderr
    write_jsonl(tmp_path / "train.jsonl", [{"text": t} for t in texts(6)])
    spec["forget"]["classes"] = [1]
    (tmp_path / "s.json").write_text(json.dumps(spec))
    r = run_ulc("eval", gpt2, "--forget", tmp_path / "s.json")
    assert r.returncode == 2 and "have no 'label'" in r.stderr


def test_forget_file_matches_and_appends(tmp_path, gpt2):
    train = texts(16)
    write_jsonl(tmp_path / "train.jsonl", [{"text": t} for t in train + [train[9]]])  # 9 twice
    extra = "the secret code is four two"
    write_jsonl(tmp_path / "forget.jsonl", [{"text": train[2]}, {"text": extra}, {"text": train[9]}])
    spec = {"method": "rfa", "data": {"train": "train.jsonl"},
            "forget": {"file": "forget.jsonl"}, "train": {"batch_size": 8}}
    proc, out = run_forget(tmp_path, gpt2, spec)
    assert proc.returncode == 0, proc.stderr
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["text_data"]["forget_file"]["matched"] == 2
    assert rep["text_data"]["forget_file"]["appended"] == 1
    assert rep["splits"]["Df"]["rows"] == 4 and rep["splits"]["Dr"]["rows"] == 14
    assert rep["forget"]["indices"] == 4  # texts 2, 9, 16 (9's copy) and the appended one
    ids = encode(gpt2, [train[2], extra, train[9], train[9]])
    assert rep["splits"]["Df"]["predictions"] == sum(len(x) - 1 for x in ids)
    # a .txt forget file does the same; one without texts is refused
    (tmp_path / "forget.txt").write_text(train[5] + "\n")
    spec["forget"] = {"file": "forget.txt"}
    doc = eval_forget(tmp_path, gpt2, spec)
    assert doc["rows"]["Df"] == 1
    (tmp_path / "none.txt").write_text("\n \n")
    spec["forget"] = {"file": "none.txt"}
    proc, out = run_forget(tmp_path, gpt2, spec, out=tmp_path / "o3")
    assert proc.returncode == 2 and "none.txt: only blank lines" in proc.stderr
    assert not out.exists()


def test_overflow_truncate_and_windows(tmp_path, gpt2):
    train = texts(8)
    long_text = " ".join(WORDS * 4)  # well over 24 tokens
    train[5] = long_text
    write_jsonl(tmp_path / "train.jsonl", [{"text": t} for t in train])
    n_long = len(encode(gpt2, [long_text])[0])
    assert n_long > 24
    spec = {"method": "rfa", "data": {"train": "train.jsonl"}, "forget": {"indices": [5]},
            "model": {"max_length": 24}}
    proc, out = run_forget(tmp_path, gpt2, spec)
    assert proc.returncode == 2
    assert f"train.jsonl:6: the text is {n_long} tokens, more than model.max_length (24)" in proc.stderr
    assert not out.exists() and not (tmp_path / "report.json").exists()
    spec["model"]["overflow"] = "truncate"
    doc = eval_forget(tmp_path, gpt2, spec)
    assert doc["rows"]["Df"] == 1 and doc["rows"]["Dr"] == 7
    from tokenizers import Tokenizer
    tk = Tokenizer.from_file(str(gpt2 / "tokenizer.json"))
    tk.enable_truncation(max_length=24, stride=6)
    windows = 1 + len(tk.encode(long_text).overflowing)
    assert windows >= 2
    spec["model"].update(overflow="windows", stride=6)
    doc = eval_forget(tmp_path, gpt2, spec)
    # every window of text 5 is a forget row
    assert doc["rows"]["Df"] == windows and doc["rows"]["Dr"] == 7
    spec["model"]["stride"] = 24
    sp = tmp_path / "s.json"
    sp.write_text(json.dumps(spec))
    r = run_ulc("eval", gpt2, "--forget", sp)
    assert r.returncode == 2 and "the stride must be smaller" in r.stderr


def test_train_on_text_lowers_the_loss(tmp_path, gpt2):
    write_jsonl(tmp_path / "lm.jsonl", [{"text": t} for t in texts(16)])
    out = tmp_path / "lm_out"
    r = run_ulc("train", gpt2, "--data", tmp_path / "lm.jsonl", "-o", f"{out}/", "--epochs", "4",
                "--batch-size", "8", "--lr", "1e-2", "--params", "*", "--losses", tmp_path / "l.json", "-q",
                "--threads", "2", "--seed", "1")
    assert r.returncode == 0, r.stderr
    loss = json.loads((tmp_path / "l.json").read_text())["loss"]
    assert len(loss) == 8 and np.mean(loss[-2:]) < np.mean(loss[:2]), loss
    assert (out / "tokenizer.json").is_file()
    from transformers import GPT2LMHeadModel
    GPT2LMHeadModel.from_pretrained(str(out))
    # unlearning with passes takes text too: the indices are text indices
    (tmp_path / "rows.json").write_text("[1, 5]")
    r = run_ulc("train", gpt2, "--data", tmp_path / "lm.jsonl", "-o", f"{tmp_path}/un/",
                "--passes", "lora-inject{rank=4,placement=rfa},rfa,lora-merge",
                "--forget-indices", tmp_path / "rows.json", "--batch-size", "8", "-q",
                "--max-length", "24")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "un" / "tokenizer.json").is_file()
    # text trains next-token only; text options go with text data
    r = run_ulc("train", gpt2, "--data", tmp_path / "lm.jsonl", "-o", f"{tmp_path}/x/", "--loss", "mse")
    assert r.returncode == 1 and "--loss next-token" in r.stderr
    save_file({"input_ids": np.zeros((2, 4), np.int64)}, str(tmp_path / "d.safetensors"))
    r = run_ulc("train", gpt2, "--data", tmp_path / "d.safetensors", "-o", f"{tmp_path}/x/",
                "--max-length", "8")
    assert r.returncode == 1 and "for text data" in r.stderr
    assert not (tmp_path / "x").exists()


# ---- bad input: a clear error naming the file and line, nothing written ------------------------

GOOD = '{"text": "the cat sat"}\n'
BAD = [
    ("empty", b"", "train.jsonl: the file is empty"),
    ("blank", b"\n   \n", "train.jsonl: only blank lines"),
    ("not_json", (GOOD + '{"text": "a dog"\n').encode(), "train.jsonl:2: not a JSON object"),
    ("not_object", (GOOD * 2 + '["the cat"]\n').encode(), "train.jsonl:3: expected a JSON object"),
    ("no_text", (GOOD + '{"txt": "a dog"}\n').encode(), "train.jsonl:2: no key 'text'"),
    ("text_number", (GOOD + '{"text": 5}\n').encode(), "train.jsonl:2: 'text': expected a string"),
    ("empty_text", (GOOD + '{"text": ""}\n').encode(), "train.jsonl:2: 'text' is empty"),
    ("label_float", (GOOD + '{"text": "a", "label": 1.5}\n').encode(),
     "train.jsonl:2: 'label': expected an integer >= 0"),
    ("label_negative", ('{"text": "a", "label": -1}\n').encode(),
     "train.jsonl:1: 'label': expected an integer >= 0"),
    ("duplicate_id", ('{"text": "a", "id": 3}\n{"text": "b", "id": "x"}\n{"text": "c", "id": 3}\n').encode(),
     "train.jsonl:3: 'id' \"3\" is given twice (first on line 1)"),
    ("invalid_utf8", (GOOD + '{"text": "caf').encode() + b"\xc3\x28" + b'"}\n',
     "train.jsonl:2: invalid UTF-8 at byte 13 of the line (byte 37 of the file)"),
    ("lone_surrogate", (GOOD + '{"text": "x\\ud800y"}\n').encode(), "train.jsonl:2:"),
    ("too_long", (GOOD * 3 + json.dumps({"text": " ".join(WORDS * 5)}) + "\n").encode(),
     "train.jsonl:4: the text is"),
    ("label_partial", ('{"text": "a", "label": 1}\n{"text": "b"}\n').encode(),
     "train.jsonl:2: no 'label', but"),
]


@pytest.mark.parametrize("name,body,needle", BAD, ids=[b[0] for b in BAD])
def test_bad_text_is_refused_naming_file_and_line(tmp_path, gpt2, name, body, needle):
    (tmp_path / "train.jsonl").write_bytes(body)
    spec = {"method": "rfa", "data": {"train": "train.jsonl"}, "forget": {"indices": [0]}}
    proc, out = run_forget(tmp_path, gpt2, spec)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr, proc.stderr
    assert str(tmp_path / "train.jsonl") in proc.stderr
    assert not out.exists() and not (tmp_path / "report.json").exists()
    # ulc train refuses the same file the same way
    r = run_ulc("train", gpt2, "--data", tmp_path / "train.jsonl", "-o", f"{tmp_path}/t/")
    assert r.returncode == 2 and needle in r.stderr, r.stderr
    assert not (tmp_path / "t").exists()


def test_bad_txt_utf8_and_spec_keys(tmp_path, gpt2):
    (tmp_path / "train.txt").write_bytes(b"the cat\n\xff the dog\n")
    spec = {"method": "rfa", "data": {"train": "train.txt"}, "forget": {"indices": [0]}}
    proc, out = run_forget(tmp_path, gpt2, spec)
    assert proc.returncode == 2
    assert "train.txt:2: invalid UTF-8 at byte 0 of the line (byte 8 of the file)" in proc.stderr
    assert not out.exists()
    (tmp_path / "train.txt").write_text("the cat\nthe dog\n")
    for model, needle in [({"stride": 4}, "'model.stride': a stride is for"),
                          ({"overflow": "wrap"}, "'model.overflow': 'wrap'"),
                          ({"max_length": 0}, "'model.max_length'"),
                          ({"tokenizer": "missing.json"}, "'model.tokenizer'")]:
        proc, out = run_forget(tmp_path, gpt2, {**spec, "model": model})
        assert proc.returncode in (2, 3) and needle in proc.stderr, proc.stderr
        assert not out.exists()
    # text keys need text data; forget.file needs text training data
    save_file({"input_ids": np.zeros((2, 4), np.int64)}, str(tmp_path / "d.safetensors"))
    proc, out = run_forget(tmp_path, gpt2, {**spec, "data": {"train": "d.safetensors"},
                                            "model": {"max_length": 8}})
    assert proc.returncode == 2 and "is for text data" in proc.stderr
    proc, out = run_forget(tmp_path, gpt2, {**spec, "data": {"train": "d.safetensors"},
                                            "forget": {"file": "train.txt"}})
    assert proc.returncode == 2 and "forget texts need text training data" in proc.stderr
    proc, out = run_forget(tmp_path, gpt2, {**spec, "forget": {"file": "train.txt", "indices": [0]}})
    assert proc.returncode == 2 and "exactly one of" in proc.stderr


def test_text_data_without_a_tokenizer_is_refused(tmp_path, gpt2):
    (gpt2 / "tokenizer.json").unlink()
    (gpt2 / "vocab.json").unlink()
    (tmp_path / "train.txt").write_text("the cat\nthe dog\n")
    spec = {"method": "rfa", "data": {"train": "train.txt"}, "forget": {"indices": [0]}}
    proc, out = run_forget(tmp_path, gpt2, spec)
    assert proc.returncode == 2 and "it needs the model's tokenizer" in proc.stderr
    assert not out.exists()
    # model.tokenizer names one (a file here), relative to the spec
    (tmp_path / "tok").mkdir()
    gen_hf.gpt2_tokenizer(tmp_path / "tok")
    spec["model"] = {"tokenizer": "tok/tokenizer.json"}
    doc = eval_forget(tmp_path, gpt2, spec)
    assert doc["rows"]["Df"] == 1
