"""Training step: `ulc train` against the same step in PyTorch eager, same threads, same run.

The step: teacher forward + student forward/backward + AdamW on
LoRA parameters, rank 8 / alpha 16 on every residual-block conv of torchvision ResNet-18 (conv1,
conv2 and downsample.0 of each BasicBlock in layer1..layer4: 19 convs; the stem conv1 is not in
a residual block), 64x64 inputs, batch 64, self-distillation (the teacher is the unmodified
model; loss KL(softmax(teacher) || softmax(student)), batchmean).

Generates (once, into bench/out/train/, git-ignored; reused while the stamp matches)
resnet18_64.onnx: torchvision resnet18 (torch.manual_seed(0), eval) exported at opset 17 with a
dynamic batch axis and training=PRESERVE, do_constant_folding=False, so BatchNormalization nodes
stay and conv weights keep their torch names ("layer1.0.conv1.weight"; ulc's teacher session
folds BN into the convs at plan time, the student's BN follows the LoRA Add and runs). Per run, in a temporary directory: seeded synthetic data, 64 x (S + 2) rows of float32
[3,64,64] 'input' and int64 'label'.

Each repeat runs both sides once, in alternating order (ulc first in even repeats, PyTorch first
in odd ones), with the same thread count, each as its own process under GNU time (peak RSS):

  ulc    ulc train MODEL --data D -o OUT.onnx --before "lora-inject{rank=8,alpha=16,targets=Conv,
         include=layer*}" --loss distill --optimizer adamw --lr 1e-4 --batch-size 64
         --max-steps S --threads T --no-shuffle -q --losses L.json
         (L.json's step_ms: wall time per step inside the process: batch binding, the teacher's
         forward and softmax, the student's forward/backward, AdamW)
  torch  bench/train_step_torch.py (the same model, PEFT-style LoRA Conv2d wrappers on the same
         19 convs, torch.no_grad teacher, F.kl_div batchmean, torch.optim.AdamW,
         torch.set_num_threads(T)); each step timed with time.perf_counter

Per run: the median of step_ms without the first 2 steps (ulc plans its sessions in step 1).
Each side's figure is the median over the repeats of those per-run medians; the ratio is
ulc / torch of the two figures (the median of the per-repeat ratios is reported too). Peak RSS
is each child's ru_maxrss (GNU time %M), the median over the repeats; PyTorch's includes its
interpreter, torch and the loaded data, ulc's the mapped model and data pages it touched.

GFLOP per step: 2 x the MACs of the step's Conv and Gemm work from the graph's shapes (see
step_flops); GFLOP/s against the oneDNN sgemm peak of bench/sgemm_peak.c (next to the ulc
binary, as bench_runtime.py uses it), measured before each repeat, the best kept.

Checks: ulc adapts exactly 19 modules (`ulc convert --passes lora-inject{...} --emit-adapter`:
adapter_config.json's target_modules, and the trainable parameter count equals PyTorch's);
both sides' first-step loss is ~0 (B = 0 makes student == teacher). The loss curves of the first
run are reported side by side: same batches, the same size of values, different in detail (the
A factors are drawn by different generators).

Insight for optimising: the PyTorch side reports its step by phase (teacher forward, student
forward + loss, backward, optimizer); unless --no-profile, one more ulc run with `ulc train
--profile` after the timed repeats gives the student session's time per op type (the teacher's
session is not in it), and `ulc run` of the model on one batch times the teacher's forward.

Target (issue 21): ulc's step time <= 0.33x PyTorch 2.x eager's, peak RSS <= 0.7x its. With the
benchmark venv (`make bench-env`) the PyTorch side runs three ways in the same repeats: PyTorch
2.x eager (the peer), the same under torch.compile (--no-compile leaves it out) and the PyTorch
the test requirements pin (1.13); --newest-torch PYTHON names another interpreter.

--write-doc puts the report into docs/benchmarks.md, between this script's markers: the section
"Training step vs PyTorch eager" for the default thread count (every core), a section of its own
for another --threads or any --ulc-env (extra environment for the ulc processes, for experiments
such as ULC_LORA_FUSION=1).

  .venv/bin/python bench/bench_train.py [--repeats 3] [--steps 10] [--threads N] [--no-profile]
      [--ulc-env VAR=VALUE] [--write-doc]
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
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_io import cpu_model, replace_marked_section  # noqa: E402
from bench_runtime import sgemm_peak  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "train"
ULC = os.environ.get("ULC_BIN", str(ROOT / "build" / "ulc"))
PY = sys.executable
TORCH_SIDE = Path(__file__).resolve().parent / "train_step_torch.py"
TIME = "/usr/bin/time"
SECTION = "## Training step vs PyTorch eager"
PRECISION = []  # --precision bf16: ["--precision", "bf16"] on every ulc command
GEN_VERSION = "1"  # bump to regenerate the model
OPSET = 17
ALL_CORES = len(os.sched_getaffinity(0))

RES = 64          # input height and width
BATCH = 64
RANK, ALPHA, LR = 8, 16, 1e-4
WARMUP = 2        # steps left out of each run's median
ADAPTERS = 19     # convs inside layer1..layer4 of ResNet-18
PIPELINE = f"lora-inject{{rank={RANK},alpha={ALPHA},targets=Conv,include=layer*}}"
TARGET_TIME, TARGET_RSS, FIRST_LOSS_MAX = 0.33, 0.7, 1e-5
# The PyTorch peers: "torch", PyTorch 2.x eager from the benchmark venv (bench/setup_torch.sh,
# `make bench-env`; the targets' peer), "compile", the same under torch.compile, and "pin", the
# PyTorch of the test requirements (Debian's 1.13). Without the benchmark venv, "torch" is the
# pinned one and there are no others.
BENCH_VENV = Path(os.environ.get("ULC_BENCH_VENV", ROOT / ".bench-venv"))
LABELS = {"ulc": "ulc", "torch": "PyTorch {v} eager", "compile": "PyTorch {v} torch.compile",
          "pin": "PyTorch {v} eager"}
PEERS = {}  # side -> (python, compile, torch version); set by main
ULC_ENV = {}      # --ulc-env VAR=VALUE: extra environment for the ulc processes (experiments)


# ---------------------------------------------------------------- model and data

def _environment():
    import torch
    import torchvision
    import onnx
    return {"generator": GEN_VERSION, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "onnx": onnx.__version__}


def make_model():
    """bench/out/train/resnet18_64.onnx, exported once; a stamp records the generator and versions."""
    import warnings
    import torch
    import torchvision
    path, stamp = OUT / "resnet18_64.onnx", OUT / ".resnet18_64.stamp"
    env = _environment()
    try:
        if path.exists() and json.loads(stamp.read_text()) == {**env, "bytes": path.stat().st_size}:
            return path
    except (OSError, ValueError):
        pass
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"generating {path.relative_to(ROOT)} (opset {OPSET}) ...", flush=True)
    torch.manual_seed(0)  # the same seed and constructor as train_step_torch.py --model-seed 0
    model = torchvision.models.resnet18().eval()
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


def make_data(path, steps):
    """Seeded synthetic rows: 'input' float32 [64 (steps+2), 3, 64, 64], 'label' int64."""
    from safetensors.numpy import save_file
    rng = np.random.default_rng(1234)
    n = BATCH * (steps + 2)
    save_file({"input": rng.standard_normal((n, 3, RES, RES), dtype=np.float32),
               "label": rng.integers(0, 1000, n).astype(np.int64)}, str(path))


def count_adapters(model, tmp):
    """ulc's lora-inject on the model: (adapted module names, trainable parameter count)."""
    from safetensors.numpy import load_file
    adir = tmp / "adapter"
    p = subprocess.run([ULC, "convert", str(model), "-o", str(tmp / "injected.onnx"), "--passes", PIPELINE,
                        "--emit-adapter", str(adir)], capture_output=True, text=True, env=_ulc_env())
    if p.returncode != 0:
        raise SystemExit(f"ulc convert --passes {PIPELINE} failed ({p.returncode}):\n{p.stderr}")
    modules = json.loads((adir / "adapter_config.json").read_text())["target_modules"]
    numel = sum(int(v.size) for v in load_file(str(adir / "adapter_model.safetensors")).values())
    (tmp / "injected.onnx").unlink()
    return sorted(modules), numel


def step_flops(model):
    """2 x the multiply-accumulates of one step's Conv and Gemm work, from the ONNX graph's shapes
    at batch 64. "step" is the work the step needs: the teacher's forward, the student's forward
    (base + LoRA A: k x k conv in -> r, B: 1 x 1 conv r -> out), the input gradients of every
    conv downstream of a LoRA factor (all but the stem conv1 and layer1.0.conv1's base and A,
    whose inputs need none) and of the fc Gemm, and the weight gradients of A and B. Elementwise
    work, pooling and BN are not counted. "teacher" is its forward.

    "ops" maps each form ulc's student session may take (told apart by its Conv calls per step)
    to the work per op type of that form: "branch", lora-inject's three convs per adapted layer
    (base, A, B: 58 Conv, 55 ConvGradData, 38 ConvGradWeight calls); "fused", the training
    graph's effective weight W + s·B·A (train/train_graph.c, fuse_conv_lora: 20 Conv, 18
    ConvGradData, and a full weight gradient for each of the 19 adapted convs, from which A's
    and B's come by small MatMuls)."""
    import onnx
    m = onnx.load(str(model))
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = BATCH
    g = onnx.shape_inference.infer_shapes(m).graph
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in g.value_info}
    shapes.update({v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in g.output})
    inits = {t.name: list(t.dims) for t in g.initializer}
    fwd = lora = grad_in = gemm = base_grad_in = base_grad_w = 0
    for n in g.node:
        if n.op_type == "Gemm":
            o, k = inits[n.input[1]]
            gemm += BATCH * o * k
        elif n.op_type == "Conv":
            w, y = inits[n.input[1]], shapes[n.output[0]]
            pixels = y[0] * y[2] * y[3]
            base, a, b = pixels * w[0] * w[1] * w[2] * w[3], pixels * RANK * w[1] * w[2] * w[3], pixels * w[0] * RANK
            fwd += base
            if n.input[1].startswith("layer"):
                lora += a + b
                first = n.input[1] == "layer1.0.conv1.weight"
                grad_in += b + (0 if first else base + a)
                base_grad_in += 0 if first else base
                base_grad_w += base
    return {"step": 2 * (2 * (fwd + gemm) + lora + (grad_in + gemm) + lora), "teacher": 2 * (fwd + gemm),
            "ops": {58: {"Conv": 2 * (fwd + lora), "ConvGradData": 2 * grad_in, "ConvGradWeight": 2 * lora},
                    20: {"Conv": 2 * fwd, "ConvGradData": 2 * base_grad_in, "ConvGradWeight": 2 * base_grad_w}}}


# ---------------------------------------------------------------- the two sides

def _ulc_env():
    return {**os.environ, **ULC_ENV}


def _under_time(cmd, env=None):
    """Runs cmd under GNU time; returns (CompletedProcess, peak RSS in bytes or None)."""
    fd, tfile = tempfile.mkstemp()
    os.close(fd)
    try:
        p = subprocess.run([TIME, "-f", "%M", "-o", tfile, *map(str, cmd)], capture_output=True, text=True,
                           env=env)
        try:
            rss = int(Path(tfile).read_text().split()[-1]) * 1024
        except (ValueError, IndexError):
            rss = None
    finally:
        os.unlink(tfile)
    return p, rss


def _fail(side, p):
    tail = "\n".join(p.stderr.strip().splitlines()[-5:]) or f"exit {p.returncode}"
    raise SystemExit(f"{side} exited {p.returncode}:\n{tail}")


def ulc_cmd(model, data, out, losses, steps, threads, profile=False):
    return [ULC, *PRECISION, "train", model, "--data", data, "-o", out, "--before", PIPELINE, "--loss", "distill",
            "--optimizer", "adamw", "--lr", LR, "--batch-size", BATCH, "--max-steps", steps,
            "--threads", threads, "--no-shuffle", "-q", "--losses", losses,
            *(["--profile"] if profile else [])]


def run_ulc(model, data, tmp, steps, threads):
    """One `ulc train` process: dict(step_ms, loss, median, rss, wall)."""
    losses, out = tmp / "losses.json", tmp / "trained.onnx"
    t0 = time.perf_counter()
    p, rss = _under_time(ulc_cmd(model, data, out, losses, steps, threads), env=_ulc_env())
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        _fail("ulc train", p)
    r = json.loads(losses.read_text())
    losses.unlink()
    out.unlink(missing_ok=True)
    if r["steps"] != steps:
        raise SystemExit(f"ulc train ran {r['steps']} steps, expected {steps}")
    return {"step_ms": r["step_ms"], "loss": r["loss"], "median": statistics.median(r["step_ms"][WARMUP:]),
            "rss": rss, "wall": wall}


def torch_version(py):
    p = subprocess.run([py, "-c", "import torch, torchvision; print(torch.__version__.split('+')[0])"],
                       capture_output=True, text=True)
    return p.stdout.strip() if p.returncode == 0 else None


def torch_peers(newest_py, compile_):
    pinned = (PY, False, torch_version(PY))
    py = newest_py or str(BENCH_VENV / "bin" / "python")
    v = torch_version(py) if Path(py).exists() else None
    if not v or v == pinned[2]:
        return {"torch": pinned}
    peers = {"torch": (py, False, v)}
    if compile_:
        peers["compile"] = (py, True, v)
    peers["pin"] = pinned
    return peers


def run_torch(data, steps, threads, side="torch"):
    """One train_step_torch.py process: its JSON plus rss (GNU time) and wall."""
    py, compile_, _ = PEERS[side]
    t0 = time.perf_counter()
    p, rss = _under_time([py, TORCH_SIDE, "--data", data, "--steps", steps, "--batch-size", BATCH,
                          "--threads", threads, "--rank", RANK, "--alpha", ALPHA, "--lr", LR,
                          "--warmup", WARMUP, *(["--compile"] if compile_ else [])])
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        _fail("train_step_torch.py", p)
    r = json.loads(p.stdout.strip().splitlines()[-1])
    r.update(median=r["median_ms"], rss=rss, wall=wall)
    return r


ULC_RUN_LINE = re.compile(r"median of (\d+) more ([0-9.]+) ms")


def ulc_forward(model, data, tmp, threads, reps=5):
    """`ulc run` of the model on one batch (what the teacher's session does each step): median ms."""
    from safetensors.numpy import load_file, save_file
    inp, out = tmp / "batch.safetensors", tmp / "logits.safetensors"
    save_file({"input": load_file(str(data))["input"][:BATCH]}, str(inp))
    p = subprocess.run([ULC, *PRECISION, "run", str(model), "--input", str(inp), "-o", str(out), "--threads", str(threads),
                        "--repeat", str(reps + 1)], capture_output=True, text=True, env=_ulc_env())
    m = ULC_RUN_LINE.search(p.stderr)
    if p.returncode != 0 or not m:
        _fail("ulc run", p)
    return float(m[2])


def ulc_profile(model, data, tmp, steps, threads):
    """`ulc train --profile`: the op-type table it prints (the student session's runs after the
    first, which plans and is not profiled), and the teacher's forward alone (ulc run)."""
    losses, out = tmp / "losses.json", tmp / "trained.onnx"
    p = subprocess.run(list(map(str, ulc_cmd(model, data, out, losses, steps, threads, profile=True))),
                       capture_output=True, text=True, env=_ulc_env())
    if p.returncode != 0:
        _fail("ulc train --profile", p)
    r = json.loads(losses.read_text())
    losses.unlink()
    out.unlink(missing_ok=True)
    rows, head = [], None
    for line in p.stderr.splitlines():
        m = re.match(r"profile \(.*?([0-9.]+) ms in kernels", line)
        if m:
            head = float(m[1])
            continue
        m = re.match(r"(\S+)\s+([0-9.]+)\s+([0-9.]+)%\s+(\d+)\s+([0-9.]+)$", line.strip())
        if head is not None and m:
            rows.append((m[1], float(m[2]), float(m[3]), int(m[4])))
    return {"kernel_ms": head, "rows": rows, "steps": r["steps"], "step_ms": r["step_ms"],
            "teacher_ms": ulc_forward(model, data, tmp, threads)}


# ---------------------------------------------------------------- report

def fmt_mib(b):
    return f"{b / 2**20:.0f}" if b else "?"


def _curve(xs):
    return ", ".join(f"{x:.2g}" for x in xs)


def _ms(xs):
    return ", ".join(f"{x:.0f}" for x in xs)


def report(res, threads, args, load, modules, numel):
    med = statistics.median
    u, t = res["ulc"], res["torch"]
    um, tm = med(r["median"] for r in u), med(r["median"] for r in t)
    ratio = um / tm
    pair = med(a["median"] / b["median"] for a, b in zip(u, t))
    urss, trss = med(r["rss"] for r in u), med(r["rss"] for r in t)
    ufast = min(min(r["step_ms"][WARMUP:]) for r in u)
    tfast = min(min(r["step_ms"][WARMUP:]) for r in t)
    plural = "s" if threads > 1 else ""
    gf, peak = res["flops"]["step"] / 1e9, max(res["peaks"])
    lines = [
        "| side | step ms (median) | samples/s | GFLOP/s | % of sgemm peak | fastest step ms | "
        "per-run medians ms | peak RSS MiB | process wall s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    sides = [k for k in ("ulc", *PEERS) if res.get(k)]
    for side in sides:
        rs = res[side]
        m, rss = med(r["median"] for r in rs), med(r["rss"] for r in rs)
        fast = min(min(r["step_ms"][WARMUP:]) for r in rs)
        runs = ", ".join(f"{r['median']:.0f}" for r in rs)
        name = LABELS[side].format(v=PEERS[side][2]) if side in PEERS else "ulc"
        lines.append(f"| {name} | {m:.0f} | {BATCH / m * 1e3:.0f} | {gf / m * 1e3:.1f} | "
                     f"{gf / m * 1e3 / peak:.0%} | {fast:.0f} | {runs} | {fmt_mib(rss)} | "
                     f"{med(r['wall'] for r in rs):.1f} |")
    for side in sides[1:]:
        rs = res[side]
        m, rss = med(r["median"] for r in rs), med(r["rss"] for r in rs)
        fast = min(min(r["step_ms"][WARMUP:]) for r in rs)
        pr = med(a["median"] / b["median"] for a, b in zip(u, rs))
        name = LABELS[side].format(v=PEERS[side][2])
        lines.append(f"| **ulc / {name}** | **{um / m:.2f}×** | | | | {ufast / fast:.2f}× | "
                     f"median of per-repeat ratios {pr:.2f}× | **{urss / rss:.2f}×** | |")
    lines.append("")
    ok_t, ok_m = ratio <= TARGET_TIME, urss <= TARGET_RSS * trss
    lines += [
        f"- {threads} thread{plural} on both sides; {args.repeats} repeat{'s' if args.repeats > 1 else ''}, ulc and PyTorch alternating "
        f"(who goes first alternates too); {args.steps} steps of batch {BATCH} per run, the first "
        f"{WARMUP} left out of each run's median",
        f"- load average (1 min) at the start and the end: {load[0]:.1f}, {load[1]:.1f} on "
        f"{ALL_CORES} cores (other work on the machine slows both sides; alternating shares it out)",
        f"- GFLOP per step: **{gf:.1f}** (2 x MACs of Conv and Gemm: teacher forward, student forward with "
        "the LoRA convs, input gradients down to layer1.0, LoRA weight gradients; counted as direct "
        "convolution, while ulc runs the 3x3 stride-1 ones as Winograd products with 2.25-4x fewer "
        "multiplies, so its GFLOP/s can pass the peak); oneDNN sgemm peak "
        f"({threads} thread{plural}, bench/sgemm_peak.c, the best of one measurement per repeat): "
        f"**{peak:.1f} GFLOP/s** ({', '.join(f'{x:.1f}' for x in res['peaks'])}); a step at that "
        f"peak would take {gf / peak * 1e3:.0f} ms",
        f"- **target: ulc ≤ {TARGET_TIME}× {LABELS['torch'].format(v=PEERS['torch'][2])}'s step time, peak RSS ≤ "
        f"{TARGET_RSS}× its**: step time "
        f"{ratio:.2f}× — {'met' if ok_t else 'NOT met'}; peak RSS {fmt_mib(urss)} / {fmt_mib(trss)} MiB "
        f"({urss / trss:.2f}×) — {'met' if ok_m else 'NOT met'}; {TARGET_TIME}× PyTorch's step is "
        f"{TARGET_TIME * tm:.0f} ms, {gf / (TARGET_TIME * tm) * 1e3:.1f} GFLOP/s: "
        f"{gf / (TARGET_TIME * tm) * 1e3 / peak:.0%} of the sgemm peak over the whole step",
        f"- adapters: ulc's lora-inject adapted {len(modules)} modules ({modules[0]} … {modules[-1]}), "
        f"{numel} trainable parameters; PyTorch {t[0]['adapters']} modules, {t[0]['trainable']}",
        f"- losses (first run; student == teacher at step 1): ulc {_curve(u[0]['loss'])}; "
        f"PyTorch {_curve(t[0]['loss'])}",
        "- the first two steps of each run (left out; ulc's step 1 plans the student's and the teacher's "
        "sessions), ulc: "
        + "; ".join(f"{r['step_ms'][0]:.0f}, {r['step_ms'][1]:.0f} ms" for r in u)
        + "".join(f"; {LABELS[k].format(v=PEERS[k][2])}: "
                  + "; ".join(f"{r['step_ms'][0]:.0f}, {r['step_ms'][1]:.0f} ms" for r in res[k])
                  for k in PEERS if res.get(k)),
    ]
    ph = {k: med(r["phase_ms"][k] for r in t) for k in t[0]["phase_ms"]}
    lines.append("- PyTorch's step by phase (medians over the timed steps and repeats): teacher forward "
                 f"{ph['teacher']:.0f} ms, student forward + loss {ph['forward']:.0f} ms, backward "
                 f"{ph['backward']:.0f} ms, AdamW step + zero_grad {ph['optimizer']:.0f} ms")
    prof = res.get("profile")
    if prof:
        runs = prof["steps"] - 1  # the planning run is not profiled
        conv_calls = round(next((c for op, _, _, c in prof["rows"] if op == "Conv"), 0) / runs)
        work = res["flops"]["ops"].get(conv_calls, {})
        lines += [
            "",
            f"**ulc's student session by op type** (`ulc train --profile`: one more run of {prof['steps']} "
            f"steps after the repeats; steps 2..{prof['steps']} profiled, the first plans; its steps took "
            f"{_ms(prof['step_ms'])} ms; {prof['kernel_ms'] / runs:.0f} ms per step in the student's "
            f"kernels. The teacher's session is not in it: its forward alone, `ulc run` on one batch, "
            f"takes {prof['teacher_ms']:.0f} ms, {res['flops']['teacher'] / 1e6 / prof['teacher_ms']:.1f} "
            "GFLOP/s)",
            "",
            ({58: "LoRA branches as lora-inject writes them (base, A and B convs). ",
              20: "LoRA branches fused into an effective weight W + s·B·A (one conv each way and a "
                  "full weight gradient per adapted conv). "}.get(conv_calls, "")
             + ("GFLOP per step: the work ulc's kernels of that op type do in this form."
                if work else "(Conv calls per step match no known form: no GFLOP per op type.)")),
            "",
            "| op type | ms per step | share | calls per step | GFLOP per step | GFLOP/s |",
            "|---|---|---|---|---|---|",
        ]
        small = []
        for op, ms, share, calls in prof["rows"]:
            fl = work.get(op)
            rate = f"{fl / 1e9:.1f} | {fl / 1e6 / (ms / runs):.1f}" if fl and ms else " | "
            if share < 0.5:
                small.append(op)
            else:
                lines.append(f"| {op} | {ms / runs:.0f} | {share:.1f}% | {calls / runs:.0f} | {rate} |")
        if small:
            lines.append(f"| (under 0.5% each: {', '.join(sorted(small))}) | | | | | |")
    return "\n".join(lines), ok_t and ok_m


def write_doc(text, threads):
    """Replaces this script's section for this thread count (between its markers), or appends it.
    The heading comes before the begin marker, so another script's rewrite of the section above
    (which runs to the next '## ') never takes the marker with it."""
    env_note = " ".join([*(f"{k}={v}" for k, v in ULC_ENV.items()), *(["--precision bf16"] if PRECISION else [])])
    key = f"threads={threads}" + (f" {env_note}" if env_note else "")
    begin, end = f"<!-- bench_train.py {key}: begin -->", f"<!-- bench_train.py {key}: end -->"
    plural = "s" if threads > 1 else ""
    title = SECTION if threads == ALL_CORES and not env_note else \
        f"{SECTION} ({threads} thread{plural}" + (f", ulc with {env_note})" if env_note else ")")
    cmd = " ".join([".venv/bin/python", "bench/bench_train.py", *sys.argv[1:]])
    import torch
    import torchvision
    ulc_version = subprocess.run([ULC, "--version"], capture_output=True, text=True).stdout.strip()
    section = (
        f"{title}\n\n{begin}\n\n"
        f"`{cmd}` — {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}; {os.cpu_count()} cores "
        f"({cpu_model()}), Linux {platform.release()}; {ulc_version}, torch "
        f"{' and '.join(sorted({v[2] for v in PEERS.values()}))}, "
        f"torchvision {torchvision.__version__} (export); {threads} thread{plural}"
        + (f"; ulc train with {env_note}" if env_note else "") + ".\n\n"
        "One LoRA self-distillation step on torchvision ResNet-18 (random init, seed 0, eval: BatchNorm\n"
        "on running statistics) at 64×64, batch 64: teacher forward (the unmodified model) + student\n"
        "forward/backward + AdamW (lr 1e-4) on rank-8 / alpha-16 LoRA factors of the 19 convs inside\n"
        "layer1..layer4; loss KL(softmax(teacher) ‖ softmax(student)), batchmean. ulc: `ulc train\n"
        f"--before \"{PIPELINE}\" --loss distill --optimizer adamw`\n"
        "on the model exported to ONNX with its BatchNormalization nodes (the teacher's session folds them\n"
        "into the convs at plan time; the student's follow the LoRA Add and run), step_ms from its\n"
        "--losses file. PyTorch: bench/train_step_torch.py, eager (and under torch.compile, inductor\n"
        "defaults, compiled in the warm-up steps), PEFT's LoRA Conv2d wrappers,\n"
        "teacher under no_grad, F.kl_div, torch.optim.AdamW, torch.set_num_threads; each step timed\n"
        "with perf_counter. Both as separate processes on the same seeded synthetic batches; peak RSS\n"
        "is each process's ru_maxrss (GNU time).\n\n"
        f"{text}\n\n{end}\n")
    replace_marked_section(section, begin, end)


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="runs of each side (default 3)")
    ap.add_argument("--steps", type=int, default=10, help="training steps per run (default 10)")
    ap.add_argument("--threads", type=int, default=ALL_CORES,
                    help="threads on both sides (default: every core available)")
    ap.add_argument("--no-profile", dest="profile", action="store_false",
                    help="skip the `ulc train --profile` run after the repeats")
    ap.add_argument("--ulc-env", action="append", default=[], metavar="VAR=VALUE",
                    help="extra environment for the ulc processes (experiments; repeatable)")
    ap.add_argument("--newest-torch", metavar="PYTHON",
                    help="interpreter whose PyTorch 2.x is the peer (default: the benchmark venv's, "
                         "$ULC_BENCH_VENV or .bench-venv; the pinned PyTorch is then timed too)")
    ap.add_argument("--no-compile", dest="compile", action="store_false",
                    help="leave out the torch.compile side")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                    help="ulc's --precision (bf16: the frozen weights' products in bfloat16 with float32 sums; "
                         "the doc section then gets its own title)")
    ap.add_argument("--write-doc", action="store_true", help="rewrite this script's section of docs/benchmarks.md")
    args = ap.parse_args()
    if args.precision == "bf16":
        PRECISION[:] = ["--precision", "bf16"]
    for kv in args.ulc_env:
        k, sep, v = kv.partition("=")
        if not sep or not k:
            ap.error(f"--ulc-env needs VAR=VALUE, not '{kv}'")
        ULC_ENV[k] = v
    if args.repeats < 1 or args.steps <= WARMUP or args.threads < 1:
        ap.error(f"--repeats >= 1, --steps > {WARMUP}, --threads >= 1")
    if not Path(ULC).exists():
        raise SystemExit(f"{ULC} not found: build it first (cmake --build build), or set ULC_BIN")

    PEERS.update(torch_peers(args.newest_torch, args.compile))
    print("PyTorch peers: " + ", ".join(f"{k} {v[2]}{' compile' if v[1] else ''} ({v[0]})"
                                        for k, v in PEERS.items()), flush=True)
    model = make_model()
    threads = args.threads
    res = {"ulc": [], "flops": step_flops(model), "peaks": [], **{k: [] for k in PEERS}}
    with tempfile.TemporaryDirectory(prefix="ulc-bench-train-") as td:
        tmp = Path(td)
        data = tmp / "data.safetensors"
        make_data(data, args.steps)
        modules, numel = count_adapters(model, tmp)
        print(f"lora-inject adapted {len(modules)} modules, {numel} parameters", flush=True)
        if len(modules) != ADAPTERS or not all(m.startswith("layer") for m in modules):
            raise SystemExit(f"expected {ADAPTERS} adapted convs inside layer1..layer4, got {modules}")

        load = [os.getloadavg()[0]]
        for k in range(args.repeats):
            res["peaks"].append(sgemm_peak(threads)[0])
            order = ["ulc", *PEERS]
            for side in order[k % len(order):] + order[:k % len(order)]:  # who goes first rotates
                r = run_ulc(model, data, tmp, args.steps, threads) if side == "ulc" \
                    else run_torch(data, args.steps, threads, side)
                res[side].append(r)
                print(f"repeat {k + 1}/{args.repeats} {side}: median step {r['median']:.0f} ms "
                      f"(steps {_ms(r['step_ms'])}), peak RSS {fmt_mib(r['rss'])} MiB, "
                      f"{r['wall']:.1f} s", flush=True)
        load.append(os.getloadavg()[0])
        if args.profile:
            res["profile"] = ulc_profile(model, data, tmp, args.steps, threads)

    t = res["torch"][0]
    if t["adapters"] != ADAPTERS or t["trainable"] != numel:
        raise SystemExit(f"PyTorch side: {t['adapters']} adapters, {t['trainable']} parameters; "
                         f"ulc: {len(modules)}, {numel}")
    for side in ("ulc", *PEERS):
        worst = max(abs(r["loss"][0]) for r in res[side])
        if not worst < FIRST_LOSS_MAX:
            raise SystemExit(f"{side}: first-step loss {worst:.3g}, expected ~0 (student == teacher)")

    text, _ = report(res, threads, args, load, modules, numel)
    print()
    print(text)
    if args.write_doc:
        write_doc(text, threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
