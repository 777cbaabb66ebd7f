"""Verbatim extraction (eval/lm_eval.c's greedy decoding) on a DistilGPT2-shaped model: the same
`ulc eval --forget` with the KV cache and with the fixed window (ULC_NO_KV_CACHE=1), same binary.

  model   GPT2LMHeadModel, DistilGPT2's shape (6 layers, width 768, 12 heads, vocabulary 50,257),
          random init, as a Hugging Face directory (bench_lm_rfa.py's, made once)
  data    12 rows x 48 tokens, 3 of them forgotten; prefix 32, 16 tokens generated per row

    python bench/bench_lm_extract.py [--ulc build/ulc] [--threads 2] [--repeats 3]
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import bench_lm_rfa  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ulc", default=str(ROOT / "build" / "ulc"))
    ap.add_argument("--model", default=None, help="a DistilGPT2-shaped HF directory")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    model = Path(a.model) if a.model else bench_lm_rfa.make_inputs(32)[0]
    out = bench_lm_rfa.OUT
    out.mkdir(parents=True, exist_ok=True)
    import numpy as np
    from safetensors.numpy import save_file
    ids = np.random.default_rng(1).integers(0, 50257, (12, 48)).astype(np.int64)
    save_file({"input_ids": ids, "attention_mask": np.ones_like(ids)}, str(out / "extract12.safetensors"))
    spec = {"method": "rfa", "data": {"train": "extract12.safetensors"}, "forget": {"indices": [0, 5, 9]},
            "eval": {"extract_prefix": 32, "extract_tokens": 16, }}
    (out / "extract12.json").write_text(json.dumps(spec))
    spec["eval"]["extract_rows"] = 0  # the same command without extraction: what the rest costs
    (out / "extract0.json").write_text(json.dumps(spec))
    res = {}
    for _ in range(a.repeats):  # interleaved: the machine's load drifts
        for mode, sp, env in (("kv-cache", "extract12", {}), ("window", "extract12", {"ULC_NO_KV_CACHE": "1"}),
                              ("none", "extract0", {})):
            t0 = time.perf_counter()
            p = subprocess.run([a.ulc, "eval", str(model), "--forget", str(out / f"{sp}.json"),
                                "--json", "--threads", str(a.threads)], capture_output=True, text=True,
                               env={**os.environ, **env})
            dt = time.perf_counter() - t0
            if p.returncode:
                sys.exit(p.stderr)
            ex = json.loads(p.stdout).get("extraction", {}).get("model", {"decoding": "none"})
            assert ex["decoding"] == mode, ex
            res.setdefault(mode, []).append((dt, ex.get("Df"), ex.get("Dr")))
    med = {m: sorted(r[0] for r in runs)[len(runs) // 2] for m, runs in res.items()}
    for mode, runs in res.items():
        ts = sorted(r[0] for r in runs)
        extra = "" if mode == "none" else f"; extraction {med[mode] - med['none']:.2f} s"
        print(f"{mode:9s} median {med[mode]:.2f} s (min {ts[0]:.2f}) over {len(ts)}{extra} (min: {ts[0] - min(r[0] for r in res['none']):.2f} s): Df {runs[0][1]}, Dr {runs[0][2]}")
    same = all(r[1:] == res["window"][0][1:] for r in res["kv-cache"])
    print("same scores:", same)


if __name__ == "__main__":
    main()
