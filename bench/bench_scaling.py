"""How cost grows: ulc's forward pass against PyTorch 2.x eager's as the model, the batch and the
sequence grow (issue 21, item 5): latency and peak RSS, a table and an SVG plot.

Three series, each point one forward pass with the same thread count on both sides:

  model size   ResNet-18, ResNet-50 (torchvision), ViT-S/16, ViT-B/16 (transformers ViT shapes),
               DistilGPT2, GPT2-medium (GPT2LMHeadModel shapes: 6 x 768 and 24 x 1024, vocabulary
               50,257, 128 tokens); batch 1
  batch        ResNet-18 at batch 1, 4, 16, 32
  sequence     DistilGPT2 at 32, 128, 512 tokens, batch 1

ulc: `ulc run MODEL --repeat R+1` on the model exported to ONNX (bench_runtime.py's exporters and
its cache in bench/out/runtime/, opset 17, dynamic batch and sequence axes), the median of the R
timed runs it prints; peak RSS is GNU time's. PyTorch: bench/scaling_torch.py in the benchmark
venv (`make bench-env`): the same architecture built with the same library and config, seeded
random init, eval, torch.inference_mode, R timed forwards after 2 untimed; its own process, peak
RSS its ru_maxrss. Each point runs both sides --rounds times, alternating who goes first; figures
are medians over the rounds. GFLOP: 2 x MACs of Conv/MatMul/Gemm from onnxruntime's shapes
(bench_runtime.count_flops).

--write-doc puts the table into docs/benchmarks.md (section "How cost grows: model, batch,
sequence") and the plot into docs/scaling.svg.

  .venv/bin/python bench/bench_scaling.py [--threads 2] [--rounds 3] [--seconds 1.0]
      [--series models,batch,seq] [--write-doc]
"""
import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_runtime as br  # noqa: E402
from bench_io import cpu_model, replace_doc_section  # noqa: E402

ROOT = br.ROOT
SECTION = "## How cost grows: model, batch, sequence"
SVG = ROOT / "docs" / "scaling.svg"
TORCH_SIDE = Path(__file__).resolve().parent / "scaling_torch.py"
BENCH_VENV = Path(os.environ.get("ULC_BENCH_VENV", ROOT / ".bench-venv"))


def _export_resnet50():
    import torch
    import torchvision
    torch.manual_seed(0)
    m = torchvision.models.resnet50().eval()
    return m, (torch.randn(1, 3, 224, 224),), ["input"], ["logits"], \
        {"input": {0: "N"}, "logits": {0: "N"}}


def _export_vit_b():
    import torch
    from transformers import ViTConfig, ViTForImageClassification
    torch.manual_seed(1)
    cfg = ViTConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                    intermediate_size=3072, image_size=224, patch_size=16, num_labels=1000)
    m = br._logits(ViTForImageClassification(cfg).eval(), gpt2=False)
    return m, (torch.randn(1, 3, 224, 224),), ["pixel_values"], ["logits"], \
        {"pixel_values": {0: "N"}, "logits": {0: "N"}}


def _export_gpt2_medium():
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(2)
    cfg = GPT2Config(n_layer=24, n_embd=1024, n_head=16, vocab_size=50257, n_positions=1024,
                     activation_function="gelu_new", use_cache=False)
    m = br._logits(GPT2LMHeadModel(cfg).eval(), gpt2=True)
    ids = torch.randint(0, 50257, (2, 16))
    return m, (ids, torch.ones_like(ids)), ["input_ids", "attention_mask"], ["logits"], \
        {"input_ids": {0: "N", 1: "T"}, "attention_mask": {0: "N", 1: "T"}, "logits": {0: "N", 1: "T"}}


br.MODELS.update(resnet50=_export_resnet50, vit_b16=_export_vit_b, gpt2_medium=_export_gpt2_medium)

LABEL = {"resnet18": "ResNet-18", "resnet50": "ResNet-50", "vit_s16": "ViT-S/16", "vit_b16": "ViT-B/16",
         "distilgpt2": "DistilGPT2", "gpt2_medium": "GPT2-medium"}
GPT = ("distilgpt2", "gpt2_medium")
SERIES = {
    "models": [(m, 1, 128) for m in ("resnet18", "resnet50", "vit_s16", "vit_b16", "distilgpt2", "gpt2_medium")],
    "batch": [("resnet18", b, 0) for b in (1, 4, 16, 32)],
    "seq": [("distilgpt2", 1, t) for t in (32, 128, 512)],
}


def inputs_for(model, batch, tokens):
    """Seeded inputs in bench/out/scaling/; (path, feeds)."""
    from safetensors.numpy import save_file
    out = ROOT / "bench" / "out" / "scaling"
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(42)
    if model in GPT:
        feeds = {"input_ids": rng.integers(0, 50257, (batch, tokens)).astype(np.int64),
                 "attention_mask": np.ones((batch, tokens), np.int64)}
    else:
        name = "input" if model.startswith("resnet") else "pixel_values"
        feeds = {name: rng.standard_normal((batch, 3, 224, 224)).astype(np.float32)}
    path = out / f"{model}_b{batch}_t{tokens}.in.safetensors"
    save_file(feeds, str(path))
    return path, feeds


def run_torch(py, model, batch, tokens, threads, runs):
    p, rss = br._under_time([py, TORCH_SIDE, "--model", model, "--batch", batch, "--tokens", tokens,
                             "--threads", threads, "--runs", runs])
    if p.returncode != 0:
        raise SystemExit(f"scaling_torch.py {model} failed:\n{p.stderr[-2000:]}")
    r = json.loads(p.stdout.strip().splitlines()[-1])
    r["rss"] = rss
    return r


# ---------------------------------------------------------------- the plot

def svg_plot(points, threads, torch_v):
    """Two rows (latency, peak RSS) by three columns (the series), ulc and PyTorch as lines on
    log scales. Plain SVG, no dependencies."""
    W, H, pw, ph, ml, mt = 1020, 600, 260, 190, 70, 50
    colors = {"ulc": "#1f77b4", "torch": "#d62728"}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" '
           f'font-size="11">', f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="14">ulc vs PyTorch {torch_v} eager: '
           f'forward pass, {threads} thread{"s" if threads > 1 else ""}</text>']
    titles = {"models": "model (batch 1; GPT: 128 tokens)", "batch": "ResNet-18: batch",
              "seq": "DistilGPT2: tokens"}
    for col, series in enumerate(("models", "batch", "seq")):
        pts = [p for p in points if p["series"] == series]
        if not pts:
            continue
        for row, (key, unit) in enumerate((("ms", "ms"), ("rss", "peak RSS MiB"))):
            x0, y0 = ml + col * (pw + 75), mt + row * (ph + 85)
            vals = [p[f"ulc_{key}"] for p in pts] + [p[f"torch_{key}"] for p in pts]
            lo, hi = math.log10(min(vals) * 0.8), math.log10(max(vals) * 1.25)

            def ypos(v):
                return y0 + ph - (math.log10(v) - lo) / (hi - lo) * ph

            def xpos(i):
                return x0 + (i + 0.5) * pw / len(pts)
            out.append(f'<rect x="{x0}" y="{y0}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>')
            for e in range(math.floor(lo), math.ceil(hi) + 1):
                for f in (1, 2, 5):
                    v = f * 10 ** e
                    if lo <= math.log10(v) <= hi:
                        y = ypos(v)
                        out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + pw}" y2="{y:.1f}" stroke="#ddd"/>')
                        out.append(f'<text x="{x0 - 4}" y="{y + 4:.1f}" text-anchor="end">{v:g}</text>')
            for i, p in enumerate(pts):
                lab = p["label"]
                out.append(f'<text x="{xpos(i):.1f}" y="{y0 + ph + 14}" text-anchor="end" '
                           f'transform="rotate(-30 {xpos(i):.1f} {y0 + ph + 14})">{lab}</text>')
            for side in ("torch", "ulc"):
                xy = " ".join(f"{xpos(i):.1f},{ypos(p[f'{side}_{key}']):.1f}" for i, p in enumerate(pts))
                out.append(f'<polyline points="{xy}" fill="none" stroke="{colors[side]}" stroke-width="2"/>')
                for i, p in enumerate(pts):
                    out.append(f'<circle cx="{xpos(i):.1f}" cy="{ypos(p[f"{side}_{key}"]):.1f}" r="3" '
                               f'fill="{colors[side]}"/>')
            out.append(f'<text x="{x0 + pw / 2}" y="{y0 - 8}" text-anchor="middle">{titles[series]} — {unit}</text>')
    ly = H - 14
    for i, (side, name) in enumerate((("ulc", "ulc"), ("torch", f"PyTorch {torch_v} eager"))):
        lx = ml + i * 200
        out.append(f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 24}" y2="{ly - 4}" stroke="{colors[side]}" stroke-width="2"/>')
        out.append(f'<text x="{lx + 30}" y="{ly}">{name}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=br.ALL_CORES)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=1.0, help="about how long one side's timed runs take")
    ap.add_argument("--series", default="models,batch,seq")
    ap.add_argument("--write-doc", action="store_true")
    args = ap.parse_args()
    py = str(BENCH_VENV / "bin" / "python")
    if not Path(py).exists():
        raise SystemExit(f"no benchmark venv at {BENCH_VENV}: run `make bench-env` first")
    todo = []
    for s in args.series.split(","):
        if s not in SERIES:
            ap.error(f"unknown series {s}")
        todo += [(s, *pt) for pt in SERIES[s]]
    points, load = [], [os.getloadavg()[0]]
    for series, model, batch, tokens in todo:
        path = br.make_model(model)
        inp, feeds = inputs_for(model, batch, tokens)
        vals = br.capture(br.load_graph(path), feeds, args.threads)
        flops, _ = br.count_flops(br.load_graph(path), vals)
        del vals
        first = br.run_ulc(path, inp, ROOT / "bench" / "out" / "scaling" / "out.safetensors", args.threads, 1)
        if "error" in first:
            raise SystemExit(f"{model}: {first['error']}")
        reps = int(min(30, max(3, round(args.seconds * 1e3 / first["median"]))))
        u, t = [], []
        for k in range(args.rounds):
            for side in (("ulc", "torch") if k % 2 == 0 else ("torch", "ulc")):
                if side == "ulc":
                    r = br.run_ulc(path, inp, ROOT / "bench" / "out" / "scaling" / "out.safetensors", args.threads, reps)
                    if "error" in r:
                        raise SystemExit(f"{model}: {r['error']}")
                    u.append(r)
                else:
                    t.append(run_torch(py, model, batch, tokens or 128, args.threads, reps))
        med = statistics.median
        label = {"models": LABEL[model], "batch": f"b{batch}", "seq": f"{tokens}"}[series]
        pt = {"series": series, "model": model, "batch": batch, "tokens": tokens, "label": label,
              "gflop": flops / 1e9, "reps": reps,
              "ulc_ms": med(r["median"] for r in u), "torch_ms": med(r["median_ms"] for r in t),
              "ulc_rss": med(r["rss"] for r in u) / 2**20, "torch_rss": med(r["rss"] for r in t) / 2**20,
              "torch_v": t[0]["torch"], "model_mib": path.stat().st_size / 2**20}
        points.append(pt)
        print(f"{series} {label}: {pt['gflop']:.1f} GFLOP, ulc {pt['ulc_ms']:.1f} ms {pt['ulc_rss']:.0f} MiB, "
              f"torch {pt['torch_ms']:.1f} ms {pt['torch_rss']:.0f} MiB", flush=True)
    load.append(os.getloadavg()[0])
    torch_v = points[0]["torch_v"]
    lines = ["| series | point | GFLOP | model file MiB | ulc ms | PyTorch ms | ulc / PyTorch | ulc GFLOP/s | "
             "ulc peak RSS MiB | PyTorch peak RSS MiB | RSS ulc / PyTorch |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in points:
        where = {"models": "batch 1" + (", 128 tokens" if p["model"] in GPT else ""),
                 "batch": "ResNet-18", "seq": "DistilGPT2, tokens"}[p["series"]]
        lines.append(f"| {p['series']} ({where}) | {p['label']} | {p['gflop']:.2f} | {p['model_mib']:.0f} | "
                     f"{p['ulc_ms']:.1f} | {p['torch_ms']:.1f} | {p['ulc_ms'] / p['torch_ms']:.2f}× | "
                     f"{p['gflop'] / p['ulc_ms'] * 1e3:.0f} | {p['ulc_rss']:.0f} | {p['torch_rss']:.0f} | "
                     f"{p['ulc_rss'] / p['torch_rss']:.2f}× |")
    text = "\n".join(lines)
    print(text)
    if args.write_doc:
        SVG.write_text(svg_plot(points, args.threads, torch_v))
        cmd = " ".join([".venv/bin/python", "bench/bench_scaling.py", *sys.argv[1:]])
        section = (
            f"{SECTION}\n\n`{cmd}` — {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}; "
            f"{os.cpu_count()} cores ({cpu_model()}), Linux {platform.release()}; PyTorch {torch_v} eager "
            f"(the benchmark venv); {args.threads} thread{'s' if args.threads > 1 else ''}; load average "
            f"{load[0]:.1f} at the start, {load[1]:.1f} at the end.\n\n"
            "One forward pass, ulc (`ulc run` on the ONNX export) against PyTorch eager on the same\n"
            "architecture (bench/scaling_torch.py, torch.inference_mode), medians of "
            f"{args.rounds} alternating rounds; peak RSS is each process's (PyTorch's includes its\n"
            "interpreter and libraries, ulc's the mapped model pages it touched). See the script's\n"
            "header for the models and inputs.\n\n"
            f"{text}\n\n![latency and peak RSS against model size, batch and sequence length](scaling.svg)\n")
        replace_doc_section(SECTION, section)
        print(f"wrote {SVG.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
