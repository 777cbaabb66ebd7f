"""ulc's tokenizers (text/) against Hugging Face `tokenizers` 0.15: ids on thousands of varied
strings for byte-level BPEs trained here (no downloads) at several vocabulary sizes, with and
without add_prefix_space, read as tokenizer.json and as vocab.json + merges.txt; decoding;
rows (truncation, windows with stride, padding); added tokens with lstrip/rstrip/single_word;
a CLIP-style tokenizer; refusals (invalid UTF-8 with file/line/offset, unknown features by
name). Each tokenizer runs through one `ulc tokenize --file` call per check."""
import copy
import json
import os
import sys

import pytest
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

sys.path.insert(0, os.path.dirname(__file__))
import corpus  # noqa: E402

N_STRINGS = 6000
TEXTS = corpus.varied(N_STRINGS, seed=1)


def train(vocab_size, prefix, extra=None):
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=prefix)
    tk.decoder = decoders.ByteLevel()
    tk.post_processor = processors.ByteLevel(trim_offsets=False)
    tr = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"], show_progress=False,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator(corpus.prose(150_000, seed=2) + corpus.varied(2000, seed=3), tr)
    if extra:
        extra(tk)
    return tk


def with_added(tk):
    tk.add_tokens([AddedToken("<mask>", lstrip=True, normalized=False),
                   AddedToken("[CLS]", rstrip=True, normalized=False),
                   AddedToken("the", single_word=True, normalized=False)])


CONFIGS = {
    "v300": (300, False, None),
    "v1000_prefix": (1000, True, None),
    "v5000": (5000, False, None),
    "v5000_prefix_added": (5000, True, with_added),
}


@pytest.fixture(scope="module")
def tokenizers_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tok")
    made = {}
    for name, (size, prefix, extra) in CONFIGS.items():
        tk = train(size, prefix, extra)
        d = root / name
        d.mkdir()
        tk.save(str(d / "tokenizer.json"))
        vm = root / (name + "_vm")
        vm.mkdir()
        tk.model.save(str(vm))
        (vm / "tokenizer_config.json").write_text(json.dumps({"add_prefix_space": prefix}))
        made[name] = (tk, d, vm)
    texts = root / "texts.jsonl"
    texts.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS), encoding="utf-8")
    return root, made, texts


def ulc_ids(ulc, tok, texts, *extra):
    p = ulc("tokenize", tok, "--file", texts, *extra, check=True)
    return [json.loads(line) for line in p.stdout.split("\n")[:-1]]  # not splitlines: U+2028


def first_mismatches(got, want, texts, k=3):
    bad = [i for i in range(len(want)) if got[i] != want[i]]
    return len(bad), [(repr(texts[i][:80]), got[i][:20], want[i][:20]) for i in bad[:k]]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_ids_match_tokenizers(ulc, tokenizers_dir, name):
    root, made, texts = tokenizers_dir
    tk, d, _ = made[name]
    want = [e.ids for e in tk.encode_batch(TEXTS)]
    got = [r["ids"] for r in ulc_ids(ulc, d / "tokenizer.json", texts)]
    assert len(got) == len(want) == N_STRINGS
    n, ex = first_mismatches(got, want, TEXTS)
    assert n == 0, f"{n} of {N_STRINGS} strings differ, e.g. {ex}"
    assert sum(len(w) for w in want) > 100_000


@pytest.mark.parametrize("name", ["v300", "v1000_prefix", "v5000"])
def test_vocab_merges_directory(ulc, tokenizers_dir, name):
    root, made, texts = tokenizers_dir
    tk, _, vm = made[name]
    want = [e.ids for e in tk.encode_batch(TEXTS)]
    got = [r["ids"] for r in ulc_ids(ulc, vm, texts)]
    n, ex = first_mismatches(got, want, TEXTS)
    assert n == 0, f"{n} of {N_STRINGS} strings differ, e.g. {ex}"


def test_vocab_merges_vs_transformers_slow(ulc, tokenizers_dir, tmp_path):
    from transformers import GPT2Tokenizer
    _, made, _ = tokenizers_dir
    # without a prefix space: with one, the slow tokenizer puts a space before every text, even
    # one that starts with a space, where tokenizers (and ulc) add it only when there is none
    vm = made["v5000"][2]
    slow = GPT2Tokenizer(str(vm / "vocab.json"), str(vm / "merges.txt"))
    texts = [t for t in TEXTS[:400]]
    f = tmp_path / "t.jsonl"
    f.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    want = [slow.encode(t) for t in texts]
    got = [r["ids"] for r in ulc_ids(ulc, vm, f)]
    n, ex = first_mismatches(got, want, texts)
    assert n == 0, f"{n} of {len(texts)} strings differ from transformers' GPT2Tokenizer, e.g. {ex}"


@pytest.mark.parametrize("skip", [False, True])
def test_decode_matches(ulc, tokenizers_dir, tmp_path, skip):
    import random
    _, made, _ = tokenizers_dir
    tk, d, _ = made["v5000_prefix_added"]
    r = random.Random(5)
    seqs = [e.ids for e in tk.encode_batch(TEXTS[:1500])]
    n = tk.get_vocab_size()
    seqs += [[r.randrange(n) for _ in range(r.randint(0, 30))] for _ in range(1500)]  # invalid UTF-8 inside
    f = tmp_path / "ids.jsonl"
    f.write_text("".join(json.dumps({"ids": s}) + "\n" for s in seqs))
    extra = ["--skip-special"] if skip else []
    got = [x["text"] for x in ulc_ids(ulc, d / "tokenizer.json", f, "--decode", *extra)]
    want = tk.decode_batch(seqs, skip_special_tokens=skip)
    bad = [i for i in range(len(seqs)) if got[i] != want[i]]
    assert not bad, f"{len(bad)} differ, e.g. {[(seqs[i], got[i], want[i]) for i in bad[:2]]}"
    assert any("\ufffd" in w for w in want)
    if not skip:  # decode(encode(s)) == s without a prefix space
        plain = made["v5000"][0]
        for t in TEXTS[:300]:
            assert plain.decode(plain.encode(t).ids, skip_special_tokens=False) == t


ROW_CASES = [(16, "truncate", 0, True), (16, "windows", 0, True), (16, "windows", 5, False),
             (7, "windows", 6, True), (64, "windows", 16, False), (3, "windows", 1, True)]


@pytest.mark.parametrize("max_len,overflow,stride,pad", ROW_CASES)
def test_rows_match_truncation_and_padding(ulc, tokenizers_dir, tmp_path, max_len, overflow, stride, pad):
    _, made, _ = tokenizers_dir
    tk, d, _ = made["v1000_prefix"]
    texts = [t for t in TEXTS[:800] if t.strip()]
    f = tmp_path / "t.jsonl"
    f.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    ref = Tokenizer.from_str(tk.to_str())
    ref.enable_truncation(max_len, stride=stride if overflow == "windows" else 0)
    ref.enable_padding(pad_id=7, length=max_len if pad else None)
    want = []
    for i, e in enumerate(ref.encode_batch(texts)):
        rows = [e] + (list(e.overflowing) if overflow == "windows" else [])
        want += [(i, x.ids, x.attention_mask) for x in rows]
    args = ["--max-length", max_len, "--overflow", overflow, "--stride", stride, "--pad-id", 7]
    got = [(r["text"], r["ids"], r["mask"]) for r in ulc_ids(ulc, d / "tokenizer.json", f, *args, *(["--pad"] if pad else []))]
    if not pad:  # tokenizers pads the overflowing rows of a batch to the longest row of the batch too
        width = max(len(w[1]) for w in want)
        assert all(len(g[1]) == width for g in got)
    assert len(got) == len(want)
    assert got == want


def test_rows_with_post_processor(ulc, tokenizers_dir, tmp_path):
    _, made, _ = tokenizers_dir
    tk = Tokenizer.from_str(made["v5000"][0].to_str())
    eot = tk.token_to_id("<|endoftext|>")
    tk.post_processor = processors.TemplateProcessing(single="<|endoftext|> $A <|endoftext|>",
                                                      special_tokens=[("<|endoftext|>", eot)])
    p = tmp_path / "tokenizer.json"
    tk.save(str(p))
    texts = [t for t in TEXTS[:500] if t.strip()]
    f = tmp_path / "t.jsonl"
    f.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    got = [r["ids"] for r in ulc_ids(ulc, p, f, "--add-special")]
    assert got == [e.ids for e in tk.encode_batch(texts)]
    tk.enable_truncation(12, stride=3)
    tk.enable_padding(pad_id=eot, length=12)
    want = []
    for i, e in enumerate(tk.encode_batch(texts)):
        want += [(i, x.ids, x.attention_mask) for x in [e] + list(e.overflowing)]
    got = [(r["text"], r["ids"], r["mask"]) for r in ulc_ids(ulc, p, f, "--add-special", "--max-length", 12,
                                                              "--overflow", "windows", "--stride", 3, "--pad")]
    assert got == want


NFC_TEXTS = ["e\u0301", "E\u0301\u0323", "a\u0317\u0300b", "\u1100\u1161\u11a8 \u1100\u1161", "\uac00\u11a8",
             "\u0958\u093c", "\u212b \u2126 \u00c5", "o\u0308\u0304 \u1e4d", "\u0041\u030a\u0301",
             "q\u0307\u0323", "\u0f73 \u0f75 \u0f81", "\u1e9b\u0323", "\u00e9\u0301", "\u0344 \u0340",
             "\u05d0\u05b7\u05bc", "\u0627\u0653 \u0648\u0654", "\u304b\u3099 \u30cf\u309a"]


def clip_tokenizer(nfc=True):
    clip_re = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
    tk = Tokenizer(models.BPE(end_of_word_suffix="</w>", unk_token="<|endoftext|>"))
    steps = [normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    tk.normalizer = normalizers.Sequence(([normalizers.NFC()] if nfc else []) + steps)
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(clip_re), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tk.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=2000, special_tokens=["<|startoftext|>", "<|endoftext|>"],
                             end_of_word_suffix="</w>", show_progress=False,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator(corpus.prose(100_000, seed=4) + corpus.varied(1000, seed=6), tr)
    tk.post_processor = processors.RobertaProcessing(("<|endoftext|>", tk.token_to_id("<|endoftext|>")),
                                                     ("<|startoftext|>", tk.token_to_id("<|startoftext|>")))
    return tk


def test_clip_style(ulc, tmp_path):
    """CLIP's variant, as its tokenizer.json has it: NFC, whitespace runs to a space, lower case,
    CLIP's Split, `</w>` word ends, unk, <|startoftext|> ... <|endoftext|> (RobertaProcessing)."""
    tk = clip_tokenizer()
    p = tmp_path / "tokenizer.json"
    tk.save(str(p))
    f = tmp_path / "t.jsonl"
    texts = TEXTS[:3000] + NFC_TEXTS + ["<|startoftext|>a photo of a cat<|endoftext|>", "A  PHOTO\tOf İstanbul ΣΑΣ"]
    f.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    got = [r["ids"] for r in ulc_ids(ulc, p, f, "--add-special")]
    want = [e.ids for e in tk.encode_batch(texts)]
    n, ex = first_mismatches(got, want, texts)
    assert n == 0, f"{n} differ, e.g. {ex}"
    got = [r["ids"] for r in ulc_ids(ulc, p, f)]
    assert got == [e.ids for e in tk.encode_batch(texts, add_special_tokens=False)]


def test_nfc_against_unicodedata(ulc, tokenizers_dir, tmp_path):
    """NFC alone in front of a byte-level BPE: decoding gives the normalized text, which must be
    Python's unicodedata NFC (Unicode 14) of the input; ids equal tokenizers' wherever tokenizers'
    own NFC (the unicode-normalization-alignments crate, older than Unicode 11: it gives the 98
    combining marks assigned since then class 0) agrees with Unicode 14's."""
    import unicodedata
    _, made, _ = tokenizers_dir
    tk = Tokenizer.from_str(made["v5000"][0].to_str())
    tk.normalizer = normalizers.NFC()
    p = tmp_path / "tokenizer.json"
    tk.save(str(p))
    texts = NFC_TEXTS + [t for t in TEXTS[:2000]]
    texts += ["".join(chr(c) for c in range(b, b + 64)) for b in range(0x300, 0x3000, 64)]
    texts += ["".join(chr(c) for c in range(b, b + 8)) for b in range(0xAC00, 0xD7A4, 97)]
    texts += ["a" + chr(c) + chr(0x301) + chr(0x323) for c in range(0x300, 0x370)]
    f = tmp_path / "t.jsonl"
    f.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    got = [r["ids"] for r in ulc_ids(ulc, p, f)]
    want = [e.ids for e in tk.encode_batch(texts)]
    same = [tk.normalizer.normalize_str(t) == unicodedata.normalize("NFC", t) for t in texts]
    assert sum(same) >= len(texts) - 8
    n, ex = first_mismatches([g for g, k in zip(got, same) if k], [w for w, k in zip(want, same) if k], texts)
    assert n == 0, f"{n} differ from tokenizers, e.g. {ex}"
    g = tmp_path / "ids.jsonl"
    g.write_text("".join(json.dumps({"ids": i}) + "\n" for i in got))
    back = [r["text"] for r in ulc_ids(ulc, p, g, "--decode")]
    bad = [(t, b) for t, b in zip(texts, back) if b != unicodedata.normalize("NFC", t)]
    assert not bad, f"{len(bad)} differ from unicodedata's NFC, e.g. {bad[:2]}"


def test_invalid_utf8_refused(ulc, tokenizers_dir, tmp_path):
    _, made, _ = tokenizers_dir
    tok = made["v300"][1] / "tokenizer.json"
    f = tmp_path / "t.txt"
    f.write_bytes(b"fine\nalso fine\nbad \xe2\x82 here\n")
    out = tmp_path / "out.jsonl"
    r = ulc("tokenize", tok, "--file", f, "-o", out)
    assert r.returncode == 2, r.stderr
    assert str(f) in r.stderr and "line 3" in r.stderr and "byte 19 of the file" in r.stderr and "column 5" in r.stderr
    assert not out.exists() and r.stdout == ""
    for bad in [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"ok\xe2\x82"]:
        f.write_bytes(bad + b"\n")
        r = ulc("tokenize", tok, "--file", f)
        assert r.returncode == 2 and "not valid UTF-8" in r.stderr and "line 1" in r.stderr
    r = ulc("tokenize", tok, "--text", b"ab\xffc".decode("latin-1").encode("latin-1").decode("utf-8", "surrogateescape"))
    assert r.returncode == 2 and "byte 2" in r.stderr


def test_plain_text_lines(ulc, tokenizers_dir, tmp_path):
    _, made, _ = tokenizers_dir
    tk, d, _ = made["v1000_prefix"]
    f = tmp_path / "t.txt"
    lines = ["first line", "", "  spaced  ", "crlf line", "last"]
    f.write_bytes("\n".join(lines[:3]).encode() + b"\ncrlf line\r\nlast")
    got = [r["ids"] for r in ulc_ids(ulc, d / "tokenizer.json", f)]
    assert got == [tk.encode(t).ids for t in lines]


def mutate(j, path, value):
    o = j
    for k in path[:-1]:
        o = o[k]
    o[path[-1]] = value


@pytest.mark.parametrize("path,value,named", [
    (["model", "type"], "WordPiece", "model.type"),
    (["model", "dropout"], 0.1, "model.dropout"),
    (["model", "byte_fallback"], True, "model.byte_fallback"),
    (["model", "frobnicate"], 1, "model.frobnicate"),
    (["normalizer"], {"type": "NFKC"}, "normalizer.type"),
    (["pre_tokenizer"], {"type": "Whitespace"}, "pre_tokenizer.type"),
    (["pre_tokenizer", "extra"], True, "pre_tokenizer.extra"),
    (["decoder"], {"type": "WordPiece", "prefix": "##", "cleanup": True}, "decoder.type"),
    (["post_processor"], {"type": "Sequence", "processors": []}, "post_processor.type"),
    (["truncation"], {"max_length": 5, "stride": 0, "strategy": "LongestFirst", "direction": "Right"}, "truncation"),
    (["added_tokens", 0, "weird"], 1, "added_tokens[0].weird"),
    (["shiny"], 1, "shiny"),
])
def test_unknown_features_refused(ulc, tokenizers_dir, tmp_path, path, value, named):
    _, made, _ = tokenizers_dir
    j = json.loads((made["v300"][1] / "tokenizer.json").read_text())
    mutate(j, path, value)
    p = tmp_path / "tokenizer.json"
    p.write_text(json.dumps(j))
    r = ulc("tokenize", p, "--text", "hello")
    assert r.returncode == 4, r.stderr
    assert str(p) in r.stderr and f"'{named}" in r.stderr, r.stderr


def test_bad_files_refused(ulc, tokenizers_dir, tmp_path):
    _, made, _ = tokenizers_dir
    j = json.loads((made["v300"][1] / "tokenizer.json").read_text())
    j["model"]["merges"].append("zzq qqz")
    p = tmp_path / "tokenizer.json"
    p.write_text(json.dumps(j))
    r = ulc("tokenize", p, "--text", "hello")
    assert r.returncode == 2 and "merge" in r.stderr and "'zzq' is not in the vocabulary" in r.stderr
    vm = tmp_path / "vm"
    vm.mkdir()
    (vm / "vocab.json").write_text(json.dumps({"a": 0, "b": 1, "ab": 2}))
    (vm / "merges.txt").write_text("#version: 0.2\na b\na  b\n")
    r = ulc("tokenize", vm, "--text", "ab")
    assert r.returncode == 2 and "merges.txt: line 3" in r.stderr
    r = ulc("tokenize", tmp_path / "missing", "--text", "ab")
    assert r.returncode in (2, 3)


def test_pair_form_merges_and_errors(ulc, tokenizers_dir, tmp_path):
    _, made, texts = tokenizers_dir
    tk, d, _ = made["v1000_prefix"]
    j = json.loads((d / "tokenizer.json").read_text())
    j["model"]["merges"] = [m.split(" ") for m in j["model"]["merges"]]
    p = tmp_path / "tokenizer.json"
    p.write_text(json.dumps(j))
    got = [r["ids"] for r in ulc_ids(ulc, p, texts)][:2000]
    assert got == [e.ids for e in tk.encode_batch(TEXTS[:2000])]
    r = ulc("tokenize", p, "--text", "a b c", "--max-length", 2)
    assert r.returncode == 2 and "--text: line 1" in r.stderr and "longer than max_length 2" in r.stderr
    r = ulc("tokenize", p, "--text", "", "--max-length", 4)
    assert r.returncode == 2 and "no tokens" in r.stderr
    r = ulc("tokenize", p, "--text", "abc", "--max-length", 4, "--overflow", "windows", "--stride", 4)
    assert r.returncode == 1 and "stride" in r.stderr


def test_every_code_point(ulc, tokenizers_dir, tmp_path):
    """Each code point of planes 0-3 and 14 (assigned or not, Unicode 14 as both unicodedata and the
    wheel's Oniguruma have it) between letters, digits, spaces and punctuation: the class tables
    and the scanner against the regex."""
    _, made, _ = tokenizers_dir
    tk, d, _ = made["v300"]
    cps = [c for c in list(range(0x40000)) + list(range(0xE0000, 0xE0200)) + [0x10FFFD, 0xFFFFD]
           if not 0xD800 <= c <= 0xDFFF and c != 0]  # JSON Lines cannot hold U+0000 (common/json.c)
    texts = []
    for i in range(0, len(cps), 4):
        a, b, c, e = (chr(x) for x in (cps[i:i + 4] + [0x41] * 4)[:4])
        texts.append(f"x{a}y {a}1{b} {b}'s{c}!{c} {e}\t{e}")
    f = tmp_path / "cp.jsonl"
    f.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    got = [r["ids"] for r in ulc_ids(ulc, d / "tokenizer.json", f)]
    want = [e.ids for e in tk.encode_batch(texts)]
    n, ex = first_mismatches(got, want, texts)
    assert n == 0, f"{n} of {len(texts)} differ, e.g. {ex}"
