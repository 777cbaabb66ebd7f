"""RFA unlearning epoch: `ulc IN --forget SPEC.json` against the same loop in PyTorch eager, same
threads, same run (issue 6, item 6).

Two cases, each forgetting class 3 with RFA (residual feature alignment, methods/rfa.c): LoRA rank 8,
alpha 32 on RFA's default placement (every conv inside a residual block), AdamW (weight decay 0.01),
gamma 0.5, norm l2sq, seed 0:

  digits    the embedded default, models/digits/digits_resnet.onnx on models/digits/train.safetensors
            (1,437 rows, 4 adapted convs), batch 128, lr 5e-3, --digits-epochs (default 5, the
            embedded default's: one epoch of 12 steps takes ~0.1 s and does not forget — Df stays
            at ~34 % — and 5 epochs give a figure that noise does not swamp); the figure is the
            training time per epoch (all epochs / epochs)
  resnet18  torchvision resnet18(num_classes=10) (torch.manual_seed(0), eval: BatchNorm on
            running statistics) at 64x64, 2,048 synthetic labelled rows (seeded normal inputs,
            uniform labels over 10 classes), batch 64, lr 5e-5, 1 epoch (32 steps, 19 adapted convs)

Generates (once, into bench/out/rfa/, git-ignored; reused while the stamp matches):
resnet18_64_c10.onnx exported at opset 17 with a dynamic batch axis, training=PRESERVE,
do_constant_folding=False (BatchNormalization nodes stay, weights keep torch's names, so the
adapted convs' outputs are the pre-BN features on both sides); synth_2048.safetensors ('input'
float32 [2048,3,64,64], 'label' int64); digits_weights.safetensors, the digits ONNX file's
initializers under the module names of rfa_torch.py's folded network (the exporter folded
BatchNorm into the convs, so the PyTorch side runs that network).

Each repeat runs, per case, both sides once in alternating order (ulc first in even repeats,
PyTorch first in odd ones), with the same thread count, each as its own process under GNU time
(peak RSS):

  ulc    ulc MODEL --forget SPEC.json -o OUT.onnx -q --threads T --report R.json
         train.seconds of the report: the epoch loop (batch gather, the teacher's forward and the
         targets in rfa.c's hook, the student's forward/backward, AdamW; the first step plans the
         sessions); wall_seconds: the whole command (load twice, inject, score before, train,
         merge, score after, export, hashes)
  torch  bench/rfa_torch.py (the same loss as rfa.c, written out: forward hooks for the
         features, torch.no_grad teacher, torch.optim.AdamW, torch.set_num_threads(T); ulc's
         batch order, re-implemented from train/train.c); every epoch timed with
         time.perf_counter; it also scores Df/Dr before and after, merges the adapters and saves
         the merged state_dict, so that its process does the work ulc's does

Both sides visit the same batches in the same order, and at step 1 the student equals the teacher
(B = 0), so the first step's loss depends only on the model, the data, the batch and the loss:
the two sides must agree on it (checked: relative difference <= 1e-4). After that the curves
differ in detail (the LoRA A factors are drawn by different generators).

Figures: each side's epoch seconds, the median over the repeats; the ratio is ulc / torch of the two
medians (the median of per-repeat ratios too). Peak RSS: each child's ru_maxrss (GNU time %M),
median over the repeats; PyTorch's includes its interpreter, torch and the loaded data, ulc's the
mapped model and data pages it touched. Process wall: perf_counter around each child.

ResNet-18's work: GFLOP per step from bench_train.py's step_flops (the same step: teacher
forward, student forward and backward with rank-8 LoRA on the same 19 convs), against the oneDNN
sgemm peak of bench/sgemm_peak.c (next to the ulc binary) measured before each repeat, the best
kept: what an epoch at the peak would take, and what share of the peak 0.5x PyTorch's epoch needs.

Checks: both sides adapt the same modules (the report's lora.modules against rfa_torch.py's) and
agree on the first loss; on digits, forget-train accuracy (Df) after is reported for both sides
and should be <= 0.1 (a warning otherwise).

Target (issue): ulc's epoch <= 0.5x PyTorch's wall time, peak RSS <= PyTorch's.

On a shared machine other work slows both sides, and a contended OpenMP team most (a thread
spins at a barrier while its peer is descheduled): every run's 1-minute load average is
reported, and so is each side's fastest epoch. --env VAR=VALUE sets a variable for both sides'
processes (e.g. OMP_WAIT_POLICY=passive) for experiments.

Every run's results are saved to bench/out/rfa/results-threads<T>[-VAR=VALUE].json; --rerender
FILE reports them again (with --write-doc, into the doc) without running anything.

--write-doc puts the report into docs/benchmarks.md between this script's markers: the section
"RFA epoch vs PyTorch eager" for the default thread count (every core), a section of its own for
another --threads or any --env.

  .venv/bin/python bench/bench_rfa.py [--repeats 3] [--threads N] [--cases digits,resnet18]
      [--digits-epochs 5] [--env VAR=VALUE] [--write-doc] [--rerender RESULTS.json]
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_io import cpu_model, replace_marked_section  # noqa: E402
from bench_runtime import SGEMM, sgemm_peak  # noqa: E402  (bench/sgemm_peak.c's binary, next to ulc's)
from bench_train import step_flops  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "rfa"
ULC = os.environ.get("ULC_BIN", str(ROOT / "build" / "ulc"))
PY = sys.executable
TORCH_SIDE = Path(__file__).resolve().parent / "rfa_torch.py"
TIME = "/usr/bin/time"
SECTION = "## RFA epoch vs PyTorch eager"
GEN_VERSION = "1"  # bump to regenerate the files under bench/out/rfa
OPSET = 17
ALL_CORES = len(os.sched_getaffinity(0))

DIGITS = ROOT / "models" / "digits"
RES, ROWS, CLASSES = 64, 2048, 10   # resnet18 case: input size, synthetic rows, classes
FORGET = [3]
RANK, ALPHA, GAMMA, WD, SEED = 8, 32, 0.5, 0.01, 0
CASES = {
    "digits": {"batch": 128, "lr": 5e-3, "adapters": 4},
    "resnet18": {"batch": 64, "lr": 5e-5, "epochs": 1, "adapters": 19},
}
TARGET_TIME, FIRST_LOSS_RTOL, DF_MAX = 0.5, 1e-4, 0.1
ENV = {}          # --env VAR=VALUE: extra environment for both sides' processes (experiments)


# ---------------------------------------------------------------- models and data

def _stamp_ok(path, stamp, env):
    try:
        return path.exists() and json.loads(stamp.read_text()) == {**env, "bytes": path.stat().st_size}
    except (OSError, ValueError):
        return False


def _environment():
    import torch
    import torchvision
    import onnx
    return {"generator": GEN_VERSION, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "onnx": onnx.__version__}


def make_resnet():
    """bench/out/rfa/resnet18_64_c10.onnx, exported once (the module rfa_torch.py --model resnet18 builds)."""
    import warnings
    import torch
    import torchvision
    path, stamp = OUT / "resnet18_64_c10.onnx", OUT / ".resnet18_64_c10.stamp"
    env = _environment()
    if _stamp_ok(path, stamp, env):
        return path
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"generating {path.relative_to(ROOT)} (opset {OPSET}) ...", flush=True)
    torch.manual_seed(0)  # rfa_torch.py --model resnet18 --model-seed 0 --classes 10
    model = torchvision.models.resnet18(num_classes=CLASSES).eval()
    tmp = path.with_suffix(".tmp")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic bytes
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (torch.randn(1, 3, RES, RES),), str(tmp), opset_version=OPSET,
                              input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                              do_constant_folding=False, training=torch.onnx.TrainingMode.PRESERVE)
    finally:
        torch.set_num_threads(threads)
    os.replace(tmp, path)
    stamp.write_text(json.dumps({**env, "bytes": path.stat().st_size}) + "\n")
    return path


def make_synthetic():
    """bench/out/rfa/synth_2048.safetensors: seeded normal 'input' [2048,3,64,64], 'label' in 0..9."""
    from safetensors.numpy import save_file
    path, stamp = OUT / "synth_2048.safetensors", OUT / ".synth_2048.stamp"
    env = {"generator": GEN_VERSION, "numpy": np.__version__}
    if _stamp_ok(path, stamp, env):
        return path
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1234)
    tmp = path.with_suffix(".tmp")
    save_file({"input": rng.standard_normal((ROWS, 3, RES, RES), dtype=np.float32),
               "label": rng.integers(0, CLASSES, ROWS).astype(np.int64)}, str(tmp))
    os.replace(tmp, path)
    stamp.write_text(json.dumps({**env, "bytes": path.stat().st_size}) + "\n")
    return path


# the digits ONNX file's Conv/Gemm nodes -> rfa_torch.py's FoldedDigits modules
DIGITS_MODULES = {"/stem/stem.0/Conv": "stem", "/layer1/conv1/Conv": "layer1.conv1",
                  "/layer1/conv2/Conv": "layer1.conv2", "/layer2/conv1/Conv": "layer2.conv1",
                  "/layer2/conv2/Conv": "layer2.conv2", "/fc/Gemm": "fc"}


def make_digits_weights():
    """bench/out/rfa/digits_weights.safetensors: the digits model's weights by module name."""
    import onnx
    from onnx import numpy_helper
    from safetensors.numpy import save_file
    model = DIGITS / "digits_resnet.onnx"
    path = OUT / "digits_weights.safetensors"
    OUT.mkdir(parents=True, exist_ok=True)
    m = onnx.load(str(model))
    init = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    out = {}
    for n in m.graph.node:
        if n.op_type in ("Conv", "Gemm"):
            if n.name not in DIGITS_MODULES or len(n.input) != 3:
                raise SystemExit(f"{model}: node '{n.name}' ({n.op_type}) is not one of the network's "
                                 f"{sorted(DIGITS_MODULES)} with weight and bias; update DIGITS_MODULES")
            name = DIGITS_MODULES[n.name]
            out[f"{name}.weight"], out[f"{name}.bias"] = init[n.input[1]], init[n.input[2]]
    if len(out) != 2 * len(DIGITS_MODULES):
        raise SystemExit(f"{model}: found {sorted(out)}, expected the weights of {sorted(DIGITS_MODULES.values())}")
    tmp = path.with_suffix(".tmp")
    save_file(out, str(tmp))
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------- the two sides

def _under_time(cmd):
    """Runs cmd under GNU time; returns (CompletedProcess, peak RSS in bytes or None, wall s)."""
    fd, tfile = tempfile.mkstemp()
    os.close(fd)
    try:
        t0 = time.perf_counter()
        p = subprocess.run([TIME, "-f", "%M", "-o", tfile, *map(str, cmd)], capture_output=True, text=True,
                           env={**os.environ, **ENV})
        wall = time.perf_counter() - t0
        try:
            rss = int(Path(tfile).read_text().split()[-1]) * 1024
        except (ValueError, IndexError):
            rss = None
    finally:
        os.unlink(tfile)
    return p, rss, wall


def _fail(side, p):
    tail = "\n".join((p.stderr or p.stdout).strip().splitlines()[-8:]) or f"exit {p.returncode}"
    raise SystemExit(f"{side} exited {p.returncode}:\n{tail}")


def write_spec(case, c, model_data, tmp):
    """The forget spec of a case (absolute data path), into tmp."""
    spec = {"method": "rfa", "data": {"train": str(model_data[1])}, "forget": {"classes": FORGET},
            "lora": {"rank": RANK, "alpha": ALPHA},
            "train": {"epochs": c["epochs"], "batch_size": c["batch"], "lr": c["lr"], "optimizer": "adamw",
                      "weight_decay": WD, "seed": SEED},
            "rfa": {"gamma": GAMMA, "norm": "l2sq"},
            # the PyTorch side computes no feature distances or relearning probe
            "eval": {"features": False, "relearn_steps": 0}}
    path = tmp / f"{case}.spec.json"
    path.write_text(json.dumps(spec, indent=1) + "\n")
    return path


def run_ulc(case, c, model, spec, tmp, threads):
    out, rep = tmp / f"{case}.ulc.onnx", tmp / f"{case}.report.json"
    p, rss, wall = _under_time([ULC, model, "--forget", spec, "-o", out, "-q", "--threads", threads,
                                "--report", rep])
    if p.returncode != 0:
        _fail(f"ulc --forget ({case})", p)
    r = json.loads(rep.read_text())
    rep.unlink()
    out.unlink(missing_ok=True)
    tr = r["train"]
    return {"train_s": tr["seconds"], "epoch_s": tr["seconds"] / c["epochs"], "steps": tr["steps"],
            "first_loss": tr["first_loss"], "last_loss": tr["last_loss"], "wall_inside": r["wall_seconds"],
            "accuracy": r["accuracy"], "modules": r["hyperparameters"]["lora"]["modules"],
            "threads": r["threads"], "rss": rss, "wall": wall}


def run_torch(case, c, data, weights, tmp, threads):
    out = tmp / f"{case}.torch.safetensors"
    model = ["--model", "digits", "--weights", weights] if case == "digits" else \
        ["--model", "resnet18", "--classes", CLASSES, "--model-seed", 0]
    p, rss, wall = _under_time([PY, TORCH_SIDE, *model, "--data", data, "--forget-classes", *FORGET,
                                "--epochs", c["epochs"], "--batch-size", c["batch"], "--lr", c["lr"],
                                "--weight-decay", WD, "--rank", RANK, "--alpha", ALPHA, "--gamma", GAMMA,
                                "--seed", SEED, "--threads", threads, "--out", out])
    if p.returncode != 0:
        _fail(f"rfa_torch.py ({case})", p)
    out.unlink(missing_ok=True)
    r = json.loads(p.stdout.strip().splitlines()[-1])
    r.update(epoch_s=r["train_s"] / c["epochs"], rss=rss, wall=wall)
    return r


# ---------------------------------------------------------------- report

def fmt_mib(b):
    return f"{b / 2**20:.0f}" if b else "?"


def _s(xs):
    return ", ".join(f"{x:.2f}" for x in xs)


def _pct(x):
    return f"{100 * x:.1f}%"


CASE_TITLE = {
    "digits": "digits (embedded default: 1,437 rows, 8×8, 4 adapted convs, batch 128, lr 5e-3)",
    "resnet18": "ResNet-18 at 64×64 (2,048 synthetic rows, 10 classes, 19 adapted convs, batch 64, lr 5e-5)",
}


def report(res, threads, repeats, load):
    med = statistics.median
    lines, ok_all = [], True
    runs = []  # every run, in the order they ran (for the load figures)
    plural = "s" if threads > 1 else ""
    for case in res["cases"]:
        c, u, t = CASES[case], res[case]["ulc"], res[case]["torch"]
        runs += u + t
        ue, te = med(r["epoch_s"] for r in u), med(r["epoch_s"] for r in t)
        ratio = ue / te
        pair = med(a["epoch_s"] / b["epoch_s"] for a, b in zip(u, t))
        urss, trss = med(r["rss"] for r in u), med(r["rss"] for r in t)
        uw, tw = med(r["wall"] for r in u), med(r["wall"] for r in t)
        ok_t, ok_m = ratio <= TARGET_TIME, urss <= trss
        ok_all = ok_all and ok_t and ok_m
        steps = u[0]["steps"]
        ep = c["epochs"]
        per = "epoch s (median)" if ep == 1 else f"s per epoch (median; {ep} epochs / {ep})"
        lines += [
            f"**{CASE_TITLE[case]}** — {steps} steps ({ep} epoch{'s' if ep > 1 else ''})",
            "",
            f"| side | {per} | fastest | per-run | process wall s | peak RSS MiB | first loss | last loss | "
            "Df / Dr after |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for name, rs, m, rss, w in (("ulc", u, ue, urss, uw), ("PyTorch eager", t, te, trss, tw)):
            acc = rs[0]["accuracy"]["after"]
            lines.append(f"| {name} | {m:.3f} | {min(r['epoch_s'] for r in rs):.3f} | {_s(r['epoch_s'] for r in rs)} | "
                         f"{w:.2f} | {fmt_mib(rss)} | {rs[0]['first_loss']:.6g} | {rs[0]['last_loss']:.6g} | "
                         f"{_pct(acc['Df'])} / {_pct(acc['Dr'])} |")
        best = min(r["epoch_s"] for r in u) / min(r["epoch_s"] for r in t)
        lines.append(f"| **ulc / PyTorch** | **{ratio:.2f}×** | {best:.2f}× | median of per-repeat ratios {pair:.2f}× | "
                     f"{uw / tw:.2f}× | **{urss / trss:.2f}×** | | | |")
        lines.append("")
        if case == "resnet18" and res.get("peaks"):
            gf, peak = res["flops"] / 1e9, max(res["peaks"])
            at_peak, half = gf * steps / peak, TARGET_TIME * te
            lines += [
                f"- work: **{gf:.1f} GFLOP per step** (bench_train.py's step_flops: 2 × the MACs of the teacher's "
                "forward, the student's forward with the LoRA convs, the input gradients down to layer1.0 and "
                "the LoRA weight gradients; the loss's elementwise work is not counted; counted as direct "
                "convolution, while ulc runs the 3x3 stride-1 ones as Winograd products with 2.25-4x fewer "
                f"multiplies, so its GFLOP/s can pass the peak), {gf * steps:.0f} GFLOP "
                f"an epoch; ulc {gf * steps / ue:.1f} GFLOP/s, PyTorch {gf * steps / te:.1f} GFLOP/s; oneDNN "
                f"sgemm peak ({threads} thread{plural}, bench/sgemm_peak.c, the best of one measurement per "
                f"repeat: {', '.join(f'{x:.1f}' for x in res['peaks'])}) **{peak:.1f} GFLOP/s**: an epoch at that "
                f"peak takes {at_peak:.1f} s; {TARGET_TIME}× PyTorch's epoch ({half:.1f} s) needs "
                f"{gf * steps / half:.1f} GFLOP/s, **{gf * steps / half / peak:.0%} of the peak**",
            ]
        tph = {k: med(r["phase_s"][k] for r in t) for k in t[0]["phase_s"]}
        t_steps = [x for r in t for x in r["step_ms"][1:]]
        lines += [
            f"- **target: ulc ≤ {TARGET_TIME}× PyTorch's epoch, peak RSS ≤ PyTorch's**: epoch "
            f"{ratio:.2f}× — {'met' if ok_t else 'NOT met'}; peak RSS {fmt_mib(urss)} / {fmt_mib(trss)} MiB "
            f"({urss / trss:.2f}×) — {'met' if ok_m else 'NOT met'}; fastest epoch against fastest "
            f"{best:.2f}× (the least disturbed runs)",
            f"- whole process: ulc {uw:.2f} s (its report's wall_seconds {med(r['wall_inside'] for r in u):.2f} s: "
            "load, inject, score before, train, merge, score after, export, hashes); PyTorch "
            f"{tw:.2f} s (import {tph['import']:.2f} s, setup {tph['setup']:.2f} s, score before "
            f"{tph['eval_before']:.2f} s, train {med(r['train_s'] for r in t):.2f} s, merge + save "
            f"{tph['merge_save']:.2f} s, score after {tph['eval_after']:.2f} s)",
            f"- PyTorch's step: median {med(t_steps):.1f} ms over the steps after the first (first steps "
            f"{', '.join('%.0f' % r['step_ms'][0] for r in t)} ms); ulc's whole training "
            f"{_s(r['train_s'] for r in u)} s per run",
            f"- accuracy before → after (first run; train rows): ulc Df {_pct(u[0]['accuracy']['before']['Df'])} → "
            f"{_pct(u[0]['accuracy']['after']['Df'])}, Dr {_pct(u[0]['accuracy']['before']['Dr'])} → "
            f"{_pct(u[0]['accuracy']['after']['Dr'])}; PyTorch Df {_pct(t[0]['accuracy']['before']['Df'])} → "
            f"{_pct(t[0]['accuracy']['after']['Df'])}, Dr {_pct(t[0]['accuracy']['before']['Dr'])} → "
            f"{_pct(t[0]['accuracy']['after']['Dr'])}"
            + (" (random init on random data: accuracy says nothing here)" if case == "resnet18" else ""),
            f"- adapted modules, both sides: {len(u[0]['modules'])} ({u[0]['modules'][0]} … "
            f"{u[0]['modules'][-1]}); PyTorch trains {t[0]['trainable']} LoRA parameters; forget rows "
            f"{t[0]['forget_rows']} of {t[0]['rows']}",
            f"- first-step loss (student == teacher; the same batch on both sides): ulc "
            f"{u[0]['first_loss']:.7g}, PyTorch {t[0]['first_loss']:.7g} "
            f"(relative difference {abs(u[0]['first_loss'] - t[0]['first_loss']) / abs(t[0]['first_loss']):.1e})",
            "",
        ]
    lines += [
        f"- {threads} thread{plural} on both sides; {repeats} repeat{'s' if repeats > 1 else ''}, "
        "ulc and PyTorch alternating (who goes first alternates too)",
        f"- load average (1 min; this benchmark's own runs count in it, {threads} at most) at the start and "
        f"the end: {load[0]:.1f}, {load[1]:.1f} on {ALL_CORES} cores, before each run " + ", ".join(f"{r['load']:.1f}" for r in sorted(runs, key=lambda r: r["order"]))
        + " (other work on the "
        "machine slows both sides, ulc's many short OpenMP regions most when threads spin waiting for "
        "a descheduled peer; alternating shares it out)",
    ]
    return "\n".join(lines), ok_all


def write_doc(text, threads, argv, when=None):
    """Replaces this script's section for this thread count and --env (between its markers), or
    appends it. The heading comes before the begin marker, so another script's rewrite of the
    section above (which runs to the next '## ') never takes the marker with it."""
    env_note = " ".join(f"{k}={v}" for k, v in ENV.items())
    key = f"threads={threads}" + (f" {env_note}" if env_note else "")
    begin, end = f"<!-- bench_rfa.py {key}: begin -->", f"<!-- bench_rfa.py {key}: end -->"
    plural = "s" if threads > 1 else ""
    title = SECTION if threads == ALL_CORES and not env_note else \
        f"{SECTION} ({threads} thread{plural}" + (f", both sides with {env_note})" if env_note else ")")
    cmd = " ".join([".venv/bin/python", "bench/bench_rfa.py", *argv])
    import torch
    import torchvision
    ulc_version = subprocess.run([ULC, "--version"], capture_output=True, text=True).stdout.strip()
    section = (
        f"{title}\n\n{begin}\n\n"
        f"`{cmd}` — {when or datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}; {os.cpu_count()} cores "
        f"({cpu_model()}), Linux {platform.release()}; {ulc_version}, torch {torch.__version__}, "
        f"torchvision {torchvision.__version__}; {threads} thread{plural}"
        + (f"; both sides with {env_note}" if env_note else "") + ".\n\n"
        "A whole RFA unlearning run forgetting class 3 (residual feature alignment with LoRA rank 8,\n"
        "alpha 32 on every conv inside a residual block; AdamW, weight decay 0.01; γ 0.5, squared L2;\n"
        "seed 0). ulc: `ulc MODEL --forget SPEC.json -o OUT.onnx -q --threads T`, the epoch from its\n"
        "report's train.seconds. PyTorch: bench/rfa_torch.py, eager, the loss of methods/rfa.c written\n"
        "out (forward hooks on PEFT-style LoRA Conv2d wrappers for the student's features and on the\n"
        "original convs for the teacher's, teacher under no_grad, per-batch detached retain means,\n"
        "row weights α/|b_r|, β/|b_f|, λ/|b_r|, μ/|b_f|, CE on retain rows, soft CE to the mean retain\n"
        "softmax on forget rows), torch.optim.AdamW, eval-mode BatchNorm; each epoch timed with\n"
        "perf_counter. Both visit the same batches in ulc's order (its permutation re-implemented),\n"
        "so the first step's loss must agree. Each as a separate process; peak RSS is each process's\n"
        "ru_maxrss (GNU time); process wall covers ulc's whole command (load, score before and after,\n"
        "export) and PyTorch's import, scoring before and after, merge and save.\n\n"
        f"{text}\n\n{end}\n")
    replace_marked_section(section, begin, end)


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="runs of each side per case (default 3)")
    ap.add_argument("--threads", type=int, default=ALL_CORES,
                    help="threads on both sides (default: every core available)")
    ap.add_argument("--cases", default="digits,resnet18", help="comma-separated: digits, resnet18")
    ap.add_argument("--digits-epochs", type=int, default=5, help="epochs of the digits case (default 5)")
    ap.add_argument("--env", action="append", default=[], metavar="VAR=VALUE",
                    help="extra environment for both sides' processes, e.g. OMP_WAIT_POLICY=passive "
                         "(experiments; repeatable)")
    ap.add_argument("--write-doc", action="store_true", help="rewrite this script's section of docs/benchmarks.md")
    ap.add_argument("--rerender", metavar="RESULTS.json",
                    help="no runs: report (and with --write-doc, write) the results a run saved "
                         "(bench/out/rfa/results-threads*.json)")
    args = ap.parse_args()
    if args.rerender:
        return rerender(Path(args.rerender), args.write_doc)
    for kv in args.env:
        k, sep, v = kv.partition("=")
        if not sep or not k:
            ap.error(f"--env needs VAR=VALUE, not '{kv}'")
        ENV[k] = v
    cases = [c for c in args.cases.split(",") if c]
    if args.repeats < 1 or args.threads < 1 or args.digits_epochs < 1 or not cases or \
            any(c not in CASES for c in cases):
        ap.error(f"--repeats >= 1, --threads >= 1, --digits-epochs >= 1, --cases from {sorted(CASES)}")
    if not Path(ULC).exists():
        raise SystemExit(f"{ULC} not found: build it first (cmake --build build), or set ULC_BIN")
    CASES["digits"]["epochs"] = args.digits_epochs

    inputs = {}
    if "digits" in cases:
        inputs["digits"] = (DIGITS / "digits_resnet.onnx", DIGITS / "train.safetensors", make_digits_weights())
    if "resnet18" in cases:
        inputs["resnet18"] = (make_resnet(), make_synthetic(), None)
    threads = args.threads
    res = {"cases": cases, "peaks": []}
    if "resnet18" in cases:
        res["flops"] = step_flops(inputs["resnet18"][0])["step"]
        if not Path(SGEMM).exists():
            print(f"{SGEMM} not found (build the sgemm_peak target): no sgemm peak in the report", flush=True)
    with tempfile.TemporaryDirectory(prefix="ulc-bench-rfa-") as td:
        tmp = Path(td)
        specs = {case: write_spec(case, CASES[case], inputs[case], tmp) for case in cases}
        load = [os.getloadavg()[0]]
        order = []
        for case in cases:
            res[case] = {"ulc": [], "torch": []}
        for k in range(args.repeats):
            if "resnet18" in cases and Path(SGEMM).exists():
                res["peaks"].append(sgemm_peak(threads)[0])
            for case in cases:
                c, (model, data, weights) = CASES[case], inputs[case]
                for side in (["ulc", "torch"] if k % 2 == 0 else ["torch", "ulc"]):
                    before = os.getloadavg()[0]
                    r = run_ulc(case, c, model, specs[case], tmp, threads) if side == "ulc" \
                        else run_torch(case, c, data, weights, tmp, threads)
                    r["load"], r["order"] = before, len(order)
                    order.append(r)
                    res[case][side].append(r)
                    print(f"repeat {k + 1}/{args.repeats} {case} {side}: epoch {r['epoch_s']:.3f} s "
                          f"(training {r['train_s']:.2f} s, {r['steps'] if 'steps' in r else '?'} steps), "
                          f"process {r['wall']:.2f} s, peak RSS {fmt_mib(r['rss'])} MiB, "
                          f"Df after {_pct(r['accuracy']['after']['Df'])}", flush=True)
        load.append(os.getloadavg()[0])
    saved = {"res": res, "threads": threads, "repeats": args.repeats, "load": load, "env": ENV,
             "digits_epochs": args.digits_epochs, "argv": sys.argv[1:],
             "when": datetime.datetime.now().strftime("%Y-%m-%d %H:%M")}
    env_key = "".join(f"-{k}={v}" for k, v in ENV.items())
    (OUT / f"results-threads{threads}{env_key}.json").write_text(json.dumps(saved) + "\n")
    return finish(saved, args.write_doc)


def rerender(path, write):
    saved = json.loads(path.read_text())
    ENV.update(saved["env"])
    CASES["digits"]["epochs"] = saved["digits_epochs"]
    return finish(saved, write)


def finish(saved, write):
    """Checks both sides' agreement, prints the report, writes the doc section."""
    res, threads, cases = saved["res"], saved["threads"], saved["res"]["cases"]
    for case in cases:
        u, t = res[case]["ulc"], res[case]["torch"]
        if sorted(u[0]["modules"]) != sorted(t[0]["modules"]) or len(t[0]["modules"]) != CASES[case]["adapters"]:
            raise SystemExit(f"{case}: ulc adapted {u[0]['modules']}, PyTorch {t[0]['modules']} "
                             f"(expected {CASES[case]['adapters']} on both sides)")
        for a, b in zip(u, t):
            if u[0]["steps"] != b["steps"] or a["steps"] != b["steps"]:
                raise SystemExit(f"{case}: ulc ran {a['steps']} steps, PyTorch {b['steps']}")
            rel = abs(a["first_loss"] - b["first_loss"]) / abs(b["first_loss"])
            if not rel <= FIRST_LOSS_RTOL:
                raise SystemExit(f"{case}: first-step loss ulc {a['first_loss']:.7g}, PyTorch {b['first_loss']:.7g} "
                                 f"(relative difference {rel:.1e} > {FIRST_LOSS_RTOL}): the two sides do not "
                                 "compute the same loss on the same batch")
        if case == "digits":
            for side in ("ulc", "torch"):
                worst = max(r["accuracy"]["after"]["Df"] for r in res[case][side])
                if worst > DF_MAX:
                    print(f"warning: digits {side}: Df after {_pct(worst)} > {_pct(DF_MAX)} "
                          f"(--digits-epochs {saved['digits_epochs']} does not forget)", file=sys.stderr)

    text, _ = report(res, threads, saved["repeats"], saved["load"])
    print()
    print(text)
    if write:
        write_doc(text, threads, saved["argv"], saved.get("when"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
