"""Tokenizer encode throughput: ulc's byte-level BPE (text/) against Hugging Face `tokenizers`,
both on one thread (RAYON_RS_NUM_CPUS=1, TOKENIZERS_PARALLELISM=false).

Trains (once per run, no downloads) a 5,000-token byte-level BPE with `tokenizers`' trainer on
the generated corpus, then generates a corpus of >= --mb MB (default 12): mostly English-like
prose (tests/text/corpus.py's prose) plus 15 % of the varied corpus (many scripts, emoji,
whitespace runs, numbers), as JSON Lines. Cases, run --runs times in alternating order, medians:

  ulc encode       `ulc tokenize TOK --file corpus.jsonl --time -o out`: the encode time ulc prints
                   (every text through ulc_tokenizer_encode; no process start, file read or output)
  ulc command      the same command's whole wall time (start, load, read, encode, write JSONL)
  tokenizers batch Tokenizer.encode_batch(texts) in a subprocess (one thread), timed inside it
  tokenizers loop  [Tokenizer.encode(t) for t in texts], timed inside it

The ids are checked equal once (ulc vs tokenizers) before timing. MB/s counts UTF-8 bytes of text.

  .venv/bin/python bench/bench_tokenizer.py [--mb 12] [--runs 5] [--busy 0|2]
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "text"))
import corpus  # noqa: E402

ENV = dict(os.environ, RAYON_RS_NUM_CPUS="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")

HF_SCRIPT = r"""
import json, sys, time
from tokenizers import Tokenizer
tk = Tokenizer.from_file(sys.argv[1])
texts = [json.loads(l)["text"] for l in open(sys.argv[2], encoding="utf-8")]
t0 = time.perf_counter()
if sys.argv[3] == "batch":
    n = sum(len(e.ids) for e in tk.encode_batch(texts))
else:
    n = sum(len(tk.encode(t).ids) for t in texts)
print(json.dumps({"s": time.perf_counter() - t0, "tokens": n}))
"""


def make(tmp, mb):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=5000, special_tokens=["<|endoftext|>"], show_progress=False,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator(corpus.prose(300_000, seed=11) + corpus.varied(3000, seed=12), tr)
    tok = os.path.join(tmp, "tokenizer.json")
    tk.save(tok)
    texts = corpus.prose(int(mb * 0.85 * 1e6), seed=13)
    texts += corpus.varied(int(len(texts) * 0.15 / 0.85) + 1, seed=14)
    import random
    random.Random(15).shuffle(texts)
    texts = [t for t in texts if "\x00" not in t]
    path = os.path.join(tmp, "corpus.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps({"text": t}) + "\n")
    nbytes = sum(len(t.encode()) for t in texts)
    return tk, tok, path, texts, nbytes


def run_ulc(ulc, tok, path, out):
    t0 = time.perf_counter()
    p = subprocess.run([ulc, "tokenize", tok, "--file", path, "--time", "-o", out], env=ENV,
                       capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    enc = float(p.stderr.split("encode:")[1].split()[0])
    return enc, wall


def run_hf(tok, path, mode):
    p = subprocess.run([sys.executable, "-c", HF_SCRIPT, tok, path, mode], env=ENV, capture_output=True,
                       text=True, check=True)
    return json.loads(p.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=12)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--busy", type=int, default=0, help="start N `yes > /dev/null` processes meanwhile")
    ap.add_argument("--ulc", default=os.path.join(ROOT, "build", "ulc"))
    a = ap.parse_args()
    busy = [subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) for _ in range(a.busy)]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tk, tok, path, texts, nbytes = make(tmp, a.mb)
            out = os.path.join(tmp, "ids.jsonl")
            run_ulc(a.ulc, tok, path, out)
            got = [json.loads(l)["ids"] for l in open(out)]
            want = [e.ids for e in tk.encode_batch(texts)]
            assert got == want, "ulc and tokenizers disagree: not timing"
            ntok = sum(len(w) for w in want)
            times = {"ulc encode": [], "ulc command": [], "tokenizers batch": [], "tokenizers loop": []}
            for r in range(a.runs):
                order = ["ulc", "batch", "loop"]
                order = order[r % 3:] + order[:r % 3]
                for case in order:
                    if case == "ulc":
                        enc, wall = run_ulc(a.ulc, tok, path, out)
                        times["ulc encode"].append(enc)
                        times["ulc command"].append(wall)
                    else:
                        times["tokenizers " + case].append(run_hf(tok, path, case)["s"])
    finally:
        for b in busy:
            b.kill()
            b.wait()
    print(f"corpus: {len(texts)} texts, {nbytes / 1e6:.1f} MB, {ntok} tokens; {a.runs} runs, "
          f"{a.busy} busy processes; {platform.processor() or platform.machine()}")
    print("| case | median s | min s | MB/s | M tokens/s |")
    print("|---|---|---|---|---|")
    for k, v in times.items():
        m = statistics.median(v)
        print(f"| {k} | {m:.3f} | {min(v):.3f} | {nbytes / 1e6 / m:.1f} | {ntok / 1e6 / m:.2f} |")


if __name__ == "__main__":
    main()
