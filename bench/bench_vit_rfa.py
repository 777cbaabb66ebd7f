"""RFA on ViT-S/16: one unlearning epoch in ulc against the same loop in PyTorch 2.x eager with
transformers + PEFT, same threads, same run (issue 21, item 4: an RFA step on ViT-S/16).

  model     ViTForImageClassification, ViT-S/16's shape (hidden 384, 12 layers, 6 heads, MLP
            1536, 224², 10 labels), random init (torch.manual_seed(1)), saved by the benchmark
            venv's transformers as a Hugging Face directory, which both sides load
  data      --rows seeded normal images [3, 224, 224], labels row % 10; class 3 is forgotten
  method    RFA (methods/rfa.c): LoRA rank 8, alpha 32 on RFA's transformer placement (each
            layer's two FFN linears and the head: 25 modules), AdamW lr 5e-5 (weight decay
            0.01), gamma 0.5, norm l2sq, batch 32, one epoch, seed 0

  ulc    ulc train MODEL --data D --passes "lora-inject{placement=rfa,...},rfa{...},lora-merge"
         --forget-classes 3 -o OUT/ --threads T: the epoch seconds ulc prints (the loop: batch
         gather, the teacher's forward and RFA's targets, the student's forward and backward,
         AdamW; the first step plans the sessions), and the whole command's wall
  torch  bench/rfa_vit_torch.py in the benchmark venv (`make bench-env`): the same loss written
         out, ulc's batch order, its epoch timed with perf_counter; torch.set_num_threads(T)

Each repeat runs both sides once, alternating who goes first, each as its own process under GNU
time (peak RSS, CPU seconds). Figures: medians over repeats; the ratio is ulc / torch of the two
median epoch times. Both sides see the same batches and the same weights, and at step 1 the
student equals the teacher, so the mean epoch losses agree closely (reported).

Target (issue 21): ulc's epoch <= 0.5x PyTorch's. --precisions fp32,bf16 runs ulc once per
precision in each repeat (bf16: `ulc --precision bf16`, the frozen weights' products in bfloat16
with float32 sums; PyTorch stays float32), a row each.

  .venv/bin/python bench/bench_vit_rfa.py [--rows 256] [--repeats 3] [--threads 2]
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_lm_rfa import bench_python, timed, versions  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "vitrfa"
SECTION = "## RFA on ViT-S/16 vs PyTorch 2.x"


def make_inputs(rows):
    OUT.mkdir(parents=True, exist_ok=True)
    model, data = OUT / "vit_s16_rand", OUT / f"data{rows}.safetensors"
    if not (model / "model.safetensors").exists() or not data.exists():
        code = (
            "import sys, torch, numpy as np\n"
            "from transformers import ViTConfig, ViTForImageClassification\n"
            "from safetensors.numpy import save_file\n"
            "torch.manual_seed(1)\n"
            "cfg = ViTConfig(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536,"
            " image_size=224, patch_size=16, num_labels=10)\n"
            "ViTForImageClassification(cfg).eval().save_pretrained(sys.argv[1], safe_serialization=True)\n"
            "r = np.random.default_rng(0); n = int(sys.argv[3])\n"
            "save_file({'pixel_values': r.standard_normal((n, 3, 224, 224)).astype(np.float32),"
            " 'label': (np.arange(n) % 10).astype(np.int64)}, sys.argv[2])\n")
        subprocess.run([bench_python(), "-c", code, str(model), str(data), str(rows)], check=True,
                       capture_output=True)
    return model, data


def run_ulc(model, data, threads, tag, precision="fp32"):
    out = OUT / f"ulc_out_{tag}/"
    cmd = [str(ROOT / "build" / "ulc"), "--precision", precision, "train", str(model), "--data", str(data), "-o", str(out) + "/",
           "--passes", "lora-inject{placement=rfa,rank=8,alpha=32},rfa{gamma=0.5,norm=l2sq},lora-merge",
           "--forget-classes", "3", "--batch-size", "32", "--epochs", "1", "--lr", "5e-5",
           "--optimizer", "adamw", "--weight-decay", "0.01", "--seed", "0", "--threads", str(threads)]
    text, rss, cpu, wall = timed(cmd)
    m = re.search(r"epoch 1/1\s+loss ([-\d.e+]+)\s+([\d.]+)s", text)
    if not m:
        sys.exit(f"ulc printed no epoch line:\n{text[-2000:]}")
    return {"epoch_s": float(m.group(2)), "loss": float(m.group(1)), "rss_mib": rss, "cpu_s": cpu, "wall_s": wall}


def run_torch(model, data, threads):
    cmd = [bench_python(), str(ROOT / "bench" / "rfa_vit_torch.py"), "--model", str(model), "--data", str(data),
           "--batch", "32", "--lr", "5e-5", "--threads", str(threads)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
    text, rss, cpu, wall = timed(cmd, env)
    r = json.loads([ln for ln in text.splitlines() if ln.startswith("{")][-1])
    return {"epoch_s": r["epoch_seconds"], "loss": statistics.fmean(r["losses"]), "rss_mib": rss, "cpu_s": cpu,
            "wall_s": wall, "steps": r["steps"], "modules": len(r["modules"]), "step_s": r["step_seconds"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precisions", default="fp32", help="ulc's --precision values, comma-separated (fp32, bf16)")
    ap.add_argument("--write-doc", action="store_true")
    a = ap.parse_args()
    precs = [x for x in a.precisions.split(",") if x]
    if not precs or any(x not in ("fp32", "bf16") for x in precs) or len(set(precs)) != len(precs):
        ap.error("--precisions: fp32 and/or bf16")
    model, data = make_inputs(a.rows)
    ulcs = ["ulc" if x == "fp32" else f"ulc {x}" for x in precs]
    res = {**{u: [] for u in ulcs}, "torch": []}
    for rep in range(a.repeats):
        sides = [*ulcs, "torch"]
        sides = sides[rep % len(sides):] + sides[:rep % len(sides)]  # who goes first rotates
        for side in sides:
            r = (run_torch(model, data, a.threads) if side == "torch" else
                 run_ulc(model, data, a.threads, rep, precs[ulcs.index(side)]))
            res[side].append(r)
            print(f"repeat {rep + 1} {side:8s} epoch {r['epoch_s']:7.1f} s  cpu {r['cpu_s']:7.1f} s  "
                  f"peak RSS {r['rss_mib']:6.0f} MiB  mean loss {r['loss']:.6g}", flush=True)
    med = {s: {k: statistics.median(x[k] for x in res[s]) for k in ("epoch_s", "rss_mib", "cpu_s", "wall_s")}
           for s in res}
    ratio = {u: med[u]["epoch_s"] / med["torch"]["epoch_s"] for u in ulcs}
    t0 = res["torch"][0]
    ep_t = ", ".join("%.1f" % r["epoch_s"] for r in res["torch"])
    st_t = ", ".join("%.1f" % x for x in t0["step_s"])
    flag = f" --precisions {a.precisions}" if precs != ["fp32"] else ""
    lines = [
        SECTION, "",
        f"`.venv/bin/python bench/bench_vit_rfa.py --rows {a.rows} --repeats {a.repeats} --threads {a.threads}{flag}` — "
        f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}; {os.cpu_count()} cores, Linux {platform.release()}; "
        f"torch/transformers/peft {versions()} (bench venv); {a.threads} threads both sides; load average at the "
        f"end {os.getloadavg()[0]:.1f}.", "",
        f"ViT-S/16's shape (384 × 12 layers, 6 heads, MLP 1536, 224², 10 labels), random init; {a.rows} rows, "
        f"class 3 forgotten; RFA rank 8 / alpha 32 on each layer's two FFN linears and the head "
        f"({t0['modules']} modules both sides), batch 32 (197 tokens a row), one epoch ({t0['steps']} steps, "
        "ulc's first one planning its sessions), AdamW lr 5e-5.", "",
        "| | epoch s (median) | CPU s | peak RSS MiB | process wall s |",
        "|---|---|---|---|---|",
        *(f"| {u} | {med[u]['epoch_s']:.1f} | {med[u]['cpu_s']:.1f} | {med[u]['rss_mib']:.0f} | {med[u]['wall_s']:.1f} |"
          for u in ulcs),
        f"| PyTorch eager + PEFT | {med['torch']['epoch_s']:.1f} | {med['torch']['cpu_s']:.1f} | {med['torch']['rss_mib']:.0f} | {med['torch']['wall_s']:.1f} |",
        *(f"| **{u} / PyTorch** | **{ratio[u]:.2f}×** | {med[u]['cpu_s'] / med['torch']['cpu_s']:.2f}× | "
          f"**{med[u]['rss_mib'] / med['torch']['rss_mib']:.2f}×** | |" for u in ulcs),
        "",
        "- epochs per repeat: " + "; ".join(f"{u} " + ", ".join("%.1f" % r["epoch_s"] for r in res[u]) + " s"
                                             for u in ulcs) + f"; PyTorch {ep_t} s; PyTorch's steps in the first repeat {st_t} s",
        "- mean epoch loss, first repeat: " + ", ".join(f"{u} {res[u][0]['loss']:.6g}" for u in ulcs) +
        f", PyTorch {t0['loss']:.6g} (relative difference " +
        ", ".join(f"{abs(res[u][0]['loss'] - t0['loss']) / abs(t0['loss']):.1e}" for u in ulcs) + ")",
        *(f"- target: {u} ≤ 0.5× PyTorch's epoch: {'met' if ratio[u] <= 0.5 else 'NOT met'} ({ratio[u]:.2f}×)"
          for u in ulcs), ""]
    text = "\n".join(lines)
    print(text)
    if a.write_doc:
        sys.path.insert(0, str(ROOT / "bench"))
        from bench_io import replace_doc_section
        replace_doc_section(SECTION, text)


if __name__ == "__main__":
    main()
