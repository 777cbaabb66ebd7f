"""The GPU benchmark (issue 18, item 5): ulc's cuda backend against PyTorch CUDA eager on the same
card, in one run — what scripts/gpu-check.sh runs on a lent GPU machine (whose image has torch,
torchvision, transformers and PEFT; none of this runs without a GPU).

Cases, each skipped when the --budget seconds are spent (the slow ones last):

  sgemm      one MatMul [4096, 4096] · [4096, 4096] (the weight a constant): ulc's kernel time
             from --profile (per step, the stream waited on) at fp32 (TF32 off) and at
             --precision tf32; torch.matmul with allow_tf32 off/on. TFLOP/s and the share of the
             card's fp32 peak (H100 SXM / H200: 67 TFLOP/s; H100 PCIe: 51)
  inference  ResNet-18 (torchvision, ONNX, batch 32, 224²), ViT-B/16 (transformers, a Hugging Face
             directory ulc builds, batch 32), DistilGPT2-shaped GPT-2 (6 layers, 768, batch 8 × 128
             tokens), CLIP ViT-B/32's image and text towers (batch 32): `ulc --device cuda run
             --repeat N` median (the inputs uploaded in every run, the stream waited for; outputs
             come back when read, once at the end) against torch eager with the inputs moved to
             the device inside the timing too, fp32 with TF32 off on both sides
  rfa        one RFA epoch of ResNet-18 at 224² (10 classes, --rows synthetic rows, batch 128,
             LoRA r8 on the residual blocks' convs, AdamW) — `ulc --device cuda MODEL --forget`
             (report train.seconds / epochs) against bench/rfa_torch.py --device cuda; and of a
             ViT-B/16-shaped classifier (LoRA on the FFNs and head, batch 32) — `ulc --device cuda
             train --passes lora-inject,rfa,lora-merge` against bench/rfa_vit_torch.py --device cuda

Prints one `bench: ...` line per figure and writes every figure to --out (JSON).

  python3 bench/bench_gpu.py [--out bench.json] [--budget 400] [--rows 5000]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ULC = os.environ.get("ULC_BIN", str(ROOT / "build" / "ulc"))
FP32_PEAK = {"H100 PCIe": 51.2, "H100": 66.9, "H200": 66.9, "A100": 19.5}
T_START = time.time()
RESULTS = {}


def say(key, **fig):
    RESULTS[key] = fig
    print("bench: " + key + " " + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                           for k, v in fig.items()), flush=True)


def left(budget):
    return budget - (time.time() - T_START)


def ulc(*args, timeout=600):
    p = subprocess.run([ULC, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"ulc {' '.join(map(str, args[:6]))}: exit {p.returncode}: {p.stderr[-600:]}")
    return p.stdout + p.stderr


def card_peak(torch):
    name = torch.cuda.get_device_name(0)
    for k in ("H100 PCIe", "H100", "H200", "A100"):
        if k in name:
            return name, FP32_PEAK[k]
    return name, float("nan")


def torch_ms(torch, fn, reps=20, warm=3):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def ulc_run_ms(model, inputs, tmp, reps, extra=()):
    from safetensors.numpy import save_file
    inp, out = tmp / "in.safetensors", tmp / "out.safetensors"
    save_file(inputs, str(inp))
    text = ulc("--device", "cuda", *extra, "run", model, "--input", inp, "-o", out, "--repeat", reps)
    m = re.search(r"median of \d+ more ([\d.]+) ms", text)
    if not m:
        raise RuntimeError("ulc run printed no median: " + text[-400:])
    return float(m.group(1)), text


def profile_ms(text, op):
    m = re.search(rf"^{op}\s+([\d.]+)\s+[\d.]+%\s+(\d+)\s+([\d.]+)", text, re.M)
    return float(m.group(3)) if m else float("nan")


def case_sgemm(torch, tmp, peak):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    n = 4096
    w = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "mm",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, n])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])],
                          [numpy_helper.from_array(w, "w")])
    model = tmp / "mm.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(model))
    x = np.random.default_rng(1).standard_normal((n, n)).astype(np.float32)
    flop = 2.0 * n ** 3
    for prec in ("fp32", "tf32"):
        _, text = ulc_run_ms(model, {"x": x}, tmp, 10, ("--precision", prec, "--profile") if prec == "tf32"
                             else ("--profile",))
        ms = profile_ms(text, "MatMul")
        torch.backends.cuda.matmul.allow_tf32 = prec == "tf32"
        a, b = torch.tensor(x, device="cuda"), torch.tensor(w, device="cuda")
        tms = torch_ms(torch, lambda: a @ b)
        say(f"sgemm_{prec}", ulc_ms=ms, torch_ms=tms, ulc_tflops=flop / ms / 1e9, torch_tflops=flop / tms / 1e9,
            ulc_share_of_fp32_peak=flop / ms / 1e9 / peak, ratio=ms / tms)
    torch.backends.cuda.matmul.allow_tf32 = False


def hf_dir(tmp, name, build):
    d = tmp / name
    if not (d / "model.safetensors").exists():
        build().eval().save_pretrained(str(d), safe_serialization=True)
    return d


def case_inference(torch, tmp, reps):
    import numpy as np
    import torchvision
    from transformers import (CLIPConfig, CLIPModel, GPT2Config, GPT2LMHeadModel, ViTConfig,
                              ViTForImageClassification)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    rng = np.random.default_rng(0)
    cases = []
    # ResNet-18 (ONNX from torch's exporter)
    torch.manual_seed(0)
    r18 = torchvision.models.resnet18(num_classes=1000).eval()
    x = rng.standard_normal((32, 3, 224, 224)).astype(np.float32)
    onnx_path = tmp / "resnet18.onnx"
    if not onnx_path.exists():
        torch.onnx.export(r18, torch.tensor(x[:1]), str(onnx_path), input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "b"}}, opset_version=17, dynamo=False)
    cases.append(("resnet18_b32", onnx_path, {"input": x}, lambda m=r18: m, lambda t: {"x": t["input"]}))
    # ViT-B/16
    torch.manual_seed(0)
    vit = hf_dir(tmp, "vit_b16", lambda: ViTForImageClassification(ViTConfig(num_labels=10)))
    cases.append(("vit_b16_b32", vit, {"pixel_values": x}, lambda: ViTForImageClassification.from_pretrained(str(vit)),
                  lambda t: {"pixel_values": t["pixel_values"]}))
    # DistilGPT2's shape
    gpt = hf_dir(tmp, "distilgpt2", lambda: GPT2LMHeadModel(GPT2Config(n_layer=6)))
    ids = rng.integers(0, 50257, (8, 128)).astype(np.int64)
    mask = np.ones((8, 128), np.int64)
    cases.append(("distilgpt2_b8x128", gpt, {"input_ids": ids, "attention_mask": mask},
                  lambda: GPT2LMHeadModel.from_pretrained(str(gpt)), lambda t: t))
    # CLIP ViT-B/32 (both towers)
    clip = hf_dir(tmp, "clip_b32", lambda: CLIPModel(CLIPConfig()))
    tids = rng.integers(1, 49000, (32, 77)).astype(np.int64)
    cases.append(("clip_b32_b32", clip, {"pixel_values": x, "input_ids": tids, "attention_mask": np.ones((32, 77), np.int64)},
                  lambda: CLIPModel.from_pretrained(str(clip)),
                  lambda t: t))
    for name, model, feeds, mk, args in cases:
        if left(ARGS.budget) < 60:
            say(name, skipped="budget")
            continue
        try:
            ms, _ = ulc_run_ms(model, feeds, tmp, reps)
        except Exception as e:  # a failure is a figure too: it names what broke
            say(name, ulc_error=str(e).splitlines()[0][:200])
            continue
        m = mk().cuda().eval()

        def fwd():
            with torch.no_grad():
                t = {k: torch.from_numpy(v).cuda() for k, v in args(feeds).items()}
                m(**t)
        tms = torch_ms(torch, fwd, reps=reps)
        say(name, ulc_ms=ms, torch_ms=tms, ratio=ms / tms)
        del m
        torch.cuda.empty_cache()


def case_rfa(torch, tmp):
    import numpy as np
    import torchvision
    from safetensors.numpy import save_file
    rows = ARGS.rows
    rng = np.random.default_rng(0)
    data = tmp / f"synth224_{rows}.safetensors"
    if not data.exists():
        save_file({"input": rng.standard_normal((rows, 3, 224, 224)).astype(np.float32),
                   "label": (np.arange(rows) % 10).astype(np.int64)}, str(data))
    torch.manual_seed(0)
    r18 = torchvision.models.resnet18(num_classes=10).eval()
    model = tmp / "resnet18_c10.onnx"
    torch.onnx.export(r18, torch.zeros(1, 3, 224, 224), str(model), input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "b"}}, opset_version=17, dynamo=False,
                      training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    spec = tmp / "rfa.json"
    spec.write_text(json.dumps({"method": "rfa", "data": {"train": str(data)}, "forget": {"classes": [3]},
                                "model": {"input": "input", "output": "logits"}, "lora": {"rank": 8, "alpha": 32},
                                "train": {"epochs": 1, "batch_size": 128, "lr": 5e-5, "optimizer": "adamw",
                                          "weight_decay": 0.01, "seed": 0},
                                "rfa": {"gamma": 0.5, "norm": "l2sq"}}))
    if left(ARGS.budget) > 120:
        try:
            ulc("--device", "cuda", model, "--forget", spec, "-o", tmp / "r18_out.onnx", "-q",
                "--report", tmp / "r18.json", timeout=max(60, int(left(ARGS.budget))))
            rep = json.loads((tmp / "r18.json").read_text())
            ulc_s = rep.get("train", {}).get("seconds", float("nan"))
            p = subprocess.run([sys.executable, str(ROOT / "bench" / "rfa_torch.py"), "--model", "resnet18",
                                "--data", str(data), "--batch-size", "128", "--epochs", "1", "--lr", "5e-5",
                                "--device", "cuda"], capture_output=True, text=True,
                               timeout=max(60, int(left(ARGS.budget))))
            tr = json.loads([ln for ln in p.stdout.splitlines() if ln.startswith("{")][-1])
            say("rfa_resnet18_224", ulc_epoch_s=float(ulc_s), torch_epoch_s=tr["train_s"],
                ratio=float(ulc_s) / tr["train_s"], rows=rows, device=rep.get("device", "?"))
        except Exception as e:
            say("rfa_resnet18_224", error=str(e).splitlines()[0][:200])
    else:
        say("rfa_resnet18_224", skipped="budget")
    if left(ARGS.budget) > 120:
        from transformers import ViTConfig, ViTForImageClassification
        try:
            torch.manual_seed(1)
            vit = hf_dir(tmp, "vit_b16_c10", lambda: ViTForImageClassification(ViTConfig(num_labels=10)))
            vrows = min(rows, 1024)
            vdata = tmp / f"vit_{vrows}.safetensors"
            save_file({"pixel_values": rng.standard_normal((vrows, 3, 224, 224)).astype(np.float32),
                       "label": (np.arange(vrows) % 10).astype(np.int64)}, str(vdata))
            text = ulc("--device", "cuda", "train", vit, "--data", vdata, "-o", str(tmp / "vit_out") + "/",
                       "--passes", "lora-inject{placement=rfa,rank=8,alpha=32},rfa{gamma=0.5,norm=l2sq},lora-merge",
                       "--forget-classes", "3", "--batch-size", "32", "--epochs", "1", "--lr", "5e-5",
                       "--optimizer", "adamw", "--weight-decay", "0.01", "--seed", "0",
                       timeout=max(60, int(left(ARGS.budget))))
            m = re.search(r"epoch 1/1\s+loss ([-\d.e+]+)\s+([\d.]+)s", text)
            p = subprocess.run([sys.executable, str(ROOT / "bench" / "rfa_vit_torch.py"), "--model", str(vit),
                                "--data", str(vdata), "--batch", "32", "--lr", "5e-5", "--device", "cuda"],
                               capture_output=True, text=True, timeout=max(60, int(left(ARGS.budget))))
            tr = json.loads([ln for ln in p.stdout.splitlines() if ln.startswith("{")][-1])
            u = float(m.group(2)) if m else float("nan")
            say("rfa_vit_b16", ulc_epoch_s=u, torch_epoch_s=tr["epoch_seconds"], ratio=u / tr["epoch_seconds"],
                rows=vrows)
        except Exception as e:
            say("rfa_vit_b16", error=str(e).splitlines()[0][:200])
    else:
        say("rfa_vit_b16", skipped="budget")


def main():
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="bench_gpu.json")
    ap.add_argument("--budget", type=float, default=420.0, help="seconds for the whole benchmark")
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--reps", type=int, default=20)
    ARGS = ap.parse_args()
    import torch
    if not torch.cuda.is_available():
        sys.exit("bench_gpu: torch sees no GPU")
    name, peak = card_peak(torch)
    say("device", name=name, fp32_peak_tflops=peak, torch=torch.__version__, ulc=ulc("--version").strip())
    tmp = Path(tempfile.mkdtemp(prefix="ulc_bench_gpu_"))
    for fn, a in ((case_sgemm, (torch, tmp, peak)), (case_inference, (torch, tmp, ARGS.reps)), (case_rfa, (torch, tmp))):
        if left(ARGS.budget) < 30:
            break
        try:
            fn(*a)
        except Exception as e:
            say(fn.__name__, error=str(e).splitlines()[0][:300])
    Path(ARGS.out).write_text(json.dumps(RESULTS, indent=1))


if __name__ == "__main__":
    main()
