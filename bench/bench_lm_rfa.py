"""RFA on a DistilGPT2-sized language model: one unlearning epoch in ulc against the same loop in
PyTorch 2.x eager with transformers + PEFT, same threads, same run (issue 17, item 7).

  model     GPT2LMHeadModel, DistilGPT2's shape (6 layers, width 768, 12 heads, vocabulary 50,257,
            1,024 positions), random init (torch.manual_seed(0)), saved as a Hugging Face
            directory (model.safetensors + config.json; lm_head tied to wte)
  data      --rows sequences (default 512) of 128 seeded uniform token ids, attention_mask 1;
            5 % of the rows (seeded) are the forget rows
  method    RFA (methods/rfa.c): LoRA rank 8, alpha 32 on RFA's DistilGPT2 placement (every
            mlp.c_fc and mlp.c_proj, and the head tied to wte: 13 modules, the head's feature
            being the logits), AdamW lr 5e-5 (weight decay 0.01), gamma 0.5, norm l2sq, batch 32
            (the paper's for text), 1 epoch, seed 0

  ulc    ulc train MODEL --data D --passes "lora-inject{placement=rfa},rfa,lora-merge"
         --forget-indices F -o OUT/ --threads T: the epoch seconds ulc prints (the loop: batch
         gather, the teacher's forward and RFA's targets, the student's forward and backward,
         AdamW; the first step plans the sessions), and the whole command's wall
  torch  bench/rfa_lm_torch.py in the benchmark venv (bench/setup_torch.sh: PyPI's torch 2.x,
         transformers, peft): the same loss written out, ulc's batch order, its epoch timed with
         perf_counter; torch.set_num_threads(T)

Each repeat runs both sides once, alternating who goes first, each as its own process under GNU
time (peak RSS, CPU seconds). Figures: medians over repeats; the ratio is ulc / torch of the two
median epoch times. Both sides see the same batches, and at step 1 the student equals the teacher
(B = 0), so the mean epoch loss must agree closely (reported).

Target (issue): ulc's epoch <= 0.5x PyTorch's, peak RSS <= PyTorch's. --precisions fp32,bf16
runs ulc once per precision in each repeat (bf16: `ulc --precision bf16`, the frozen weights'
products in bfloat16 with float32 sums; PyTorch stays float32), a row each.

  .venv/bin/python bench/bench_lm_rfa.py [--rows 512] [--repeats 3] [--threads 2] [--busy 0|2]
                                         [--precisions fp32[,bf16]] [--write-doc]
"""
import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "lm"
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## RFA on a DistilGPT2-sized model vs PyTorch 2.x"
MODULES = r".*\.mlp\.(c_fc|c_proj)$|lm_head"


def bench_python():
    venv = Path(os.environ.get("ULC_BENCH_VENV", ROOT / ".bench-venv"))
    py = venv / "bin" / "python"
    if not py.exists():
        sys.exit(f"no benchmark venv at {venv}: run bench/setup_torch.sh first")
    return str(py)


def make_inputs(rows):
    """The model directory, the data and the forget rows (once; reused)."""
    OUT.mkdir(parents=True, exist_ok=True)
    model = OUT / "distilgpt2_rand"
    if not (model / "model.safetensors").exists():
        import torch
        from transformers import GPT2Config, GPT2LMHeadModel
        torch.manual_seed(0)
        cfg = GPT2Config(n_layer=6, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024)
        GPT2LMHeadModel(cfg).eval().save_pretrained(str(model), safe_serialization=True)
    data, forget = OUT / f"data{rows}.safetensors", OUT / f"forget{rows}.json"
    if not data.exists() or not forget.exists():
        import numpy as np
        from safetensors.numpy import save_file
        rng = np.random.default_rng(0)
        ids = rng.integers(0, 50257, size=(rows, 128), dtype=np.int64)
        save_file({"input_ids": ids, "attention_mask": np.ones_like(ids)}, str(data))
        n_forget = max(1, round(rows * 0.05))
        forget.write_text(json.dumps(sorted(rng.choice(rows, n_forget, replace=False).tolist())))
    return model, data, forget


def timed(cmd, env=None):
    """Runs cmd under GNU time: (stdout+stderr, peak RSS MiB, CPU s, wall s)."""
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "ULCTIME %M %U %S", *cmd], capture_output=True,
                       text=True, env=env)
    wall = time.perf_counter() - t0
    m = re.search(r"ULCTIME (\d+) ([\d.]+) ([\d.]+)", p.stderr)
    if p.returncode != 0 or not m:
        sys.exit(f"{cmd[0]} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p.stdout + p.stderr, int(m.group(1)) / 1024, float(m.group(2)) + float(m.group(3)), wall


def run_ulc(model, data, forget, threads, tag, precision="fp32"):
    out = OUT / f"ulc_out_{tag}/"
    cmd = [str(ROOT / "build" / "ulc"), "--precision", precision, "train", str(model), "--data", str(data), "-o", str(out) + "/",
           "--passes", "lora-inject{placement=rfa,rank=8,alpha=32},rfa{gamma=0.5,norm=l2sq},lora-merge",
           "--forget-indices", str(forget), "--batch-size", "32", "--epochs", "1", "--lr", "5e-5",
           "--optimizer", "adamw", "--weight-decay", "0.01", "--seed", "0",
           "--threads", str(threads)]
    text, rss, cpu, wall = timed(cmd)
    m = re.search(r"epoch 1/1\s+loss ([-\d.e+]+)\s+([\d.]+)s", text)
    if not m:
        sys.exit(f"ulc printed no epoch line:\n{text[-2000:]}")
    return {"epoch_s": float(m.group(2)), "loss": float(m.group(1)), "rss_mib": rss, "cpu_s": cpu,
            "wall_s": wall}


def run_torch(model, data, forget, threads):
    cmd = [bench_python(), str(ROOT / "bench" / "rfa_lm_torch.py"), "--model", str(model),
           "--data", str(data), "--forget", str(forget), "--modules", MODULES, "--batch", "32",
           "--lr", "5e-5", "--threads", str(threads)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
    text, rss, cpu, wall = timed(cmd, env)
    line = [ln for ln in text.splitlines() if ln.startswith("{")][-1]
    r = json.loads(line)
    return {"epoch_s": r["epoch_seconds"], "loss": statistics.fmean(r["losses"]), "rss_mib": rss,
            "cpu_s": cpu, "wall_s": wall, "torch": r["torch"], "steps": r["steps"],
            "modules": len(r["modules"])}


def versions():
    out = subprocess.run([bench_python(), "-c", "import torch, transformers, peft; print(torch.__version__,"
                          " transformers.__version__, peft.__version__)"], capture_output=True, text=True)
    return out.stdout.strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--busy", type=int, default=0,
                    help="start N `yes > /dev/null` processes for the timed runs (a shared machine)")
    ap.add_argument("--precisions", default="fp32", help="ulc's --precision values, comma-separated (fp32, bf16)")
    ap.add_argument("--write-doc", action="store_true")
    a = ap.parse_args()
    a.precs = [x for x in a.precisions.split(",") if x]
    if not a.precs or any(x not in ("fp32", "bf16") for x in a.precs) or len(set(a.precs)) != len(a.precs):
        ap.error("--precisions: fp32 and/or bf16")
    a.ulcs = ["ulc" if x == "fp32" else f"ulc {x}" for x in a.precs]
    model, data, forget = make_inputs(a.rows)
    res = {**{u: [] for u in a.ulcs}, "torch": []}
    busy = [subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) for _ in range(a.busy)]
    try:
        run_repeats(a, model, data, forget, res)
    finally:
        for b in busy:
            b.kill()
            b.wait()
    report(a, res)


def run_repeats(a, model, data, forget, res):
    for rep in range(a.repeats):
        order = [*a.ulcs, "torch"]
        order = order[rep % len(order):] + order[:rep % len(order)]  # who goes first rotates
        for side in order:
            r = (run_torch(model, data, forget, a.threads) if side == "torch"
                 else run_ulc(model, data, forget, a.threads, rep, a.precs[a.ulcs.index(side)]))
            res[side].append(r)
            print(f"repeat {rep + 1} {side:8s} epoch {r['epoch_s']:8.1f} s  cpu {r['cpu_s']:8.1f} s  "
                  f"peak RSS {r['rss_mib']:7.0f} MiB  mean loss {r['loss']:.6g}", flush=True)


def report(a, res):
    med = {s: {k: statistics.median(x[k] for x in res[s]) for k in ("epoch_s", "rss_mib", "cpu_s", "wall_s")}
           for s in res}
    ulcs = a.ulcs
    ratio = {u: med[u]["epoch_s"] / med["torch"]["epoch_s"] for u in ulcs}
    rss_ratio = {u: med[u]["rss_mib"] / med["torch"]["rss_mib"] for u in ulcs}
    t0 = res["torch"][0]
    def epochs(side):
        return ", ".join(f"{r['epoch_s']:.1f}" for r in res[side])

    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    load = os.getloadavg()[0]
    lines = [
        SECTION, "",
        f"`.venv/bin/python bench/bench_lm_rfa.py --rows {a.rows} --repeats {a.repeats} --threads {a.threads}"
        f"{f' --busy {a.busy}' if a.busy else ''}{f' --precisions {a.precisions}' if a.precs != ['fp32'] else ''}` "
        f"— {when}; {os.cpu_count()} cores, Linux {platform.release()}; torch/transformers/peft "
        f"{versions()} (bench venv); {a.threads} threads both sides; "
        f"{f'{a.busy} busy processes (`yes`) beside both sides; ' if a.busy else ''}"
        f"load average at the end {load:.1f}.",
        "",
        f"DistilGPT2's shape (6 × 768, vocabulary 50,257), random init; {a.rows} rows × 128 tokens, "
        f"5 % forget rows; RFA rank 8 / alpha 32 on every mlp.c_fc and mlp.c_proj and the tied head "
        f"({res['torch'][0]['modules']} modules both sides), batch 32, one epoch "
        f"({res['torch'][0]['steps']} steps), AdamW lr 5e-5.",
        "",
        "| | epoch s (median) | CPU s | peak RSS MiB | process wall s |",
        "|---|---|---|---|---|",
        *(f"| {u} | {med[u]['epoch_s']:.1f} | {med[u]['cpu_s']:.1f} | {med[u]['rss_mib']:.0f} | {med[u]['wall_s']:.1f} |"
          for u in ulcs),
        f"| PyTorch eager + PEFT | {med['torch']['epoch_s']:.1f} | {med['torch']['cpu_s']:.1f} | {med['torch']['rss_mib']:.0f} | {med['torch']['wall_s']:.1f} |",
        *(f"| **{u} / PyTorch** | **{ratio[u]:.2f}×** | {med[u]['cpu_s'] / med['torch']['cpu_s']:.2f}× | "
          f"**{rss_ratio[u]:.2f}×** | |" for u in ulcs),
        "",
        "- epochs per repeat: " + "; ".join(f"{u} {epochs(u)} s" for u in ulcs) + f"; PyTorch {epochs('torch')} s",
        "- mean epoch loss, first repeat: " + ", ".join(f"{u} {res[u][0]['loss']:.6g}" for u in ulcs) +
        f", PyTorch {t0['loss']:.6g} (relative difference " +
        ", ".join(f"{abs(res[u][0]['loss'] - t0['loss']) / abs(t0['loss']):.1e}" for u in ulcs) + ")",
        *(f"- target: {u} ≤ 0.5× PyTorch's epoch, peak RSS ≤ PyTorch's: epoch "
          f"{'met' if ratio[u] <= 0.5 else 'not met'} ({ratio[u]:.2f}×), RSS "
          f"{'met' if rss_ratio[u] <= 1 else 'not met'} ({rss_ratio[u]:.2f}×)" for u in ulcs),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if a.write_doc:
        doc = DOC.read_text()
        if SECTION in doc:
            start = doc.index(SECTION)
            nxt = doc.find("\n## ", start + len(SECTION))
            doc = doc[:start] + text + (doc[nxt + 1:] if nxt >= 0 else "")
        else:
            doc = doc.rstrip("\n") + "\n\n" + text
        DOC.write_text(doc)


if __name__ == "__main__":
    main()
