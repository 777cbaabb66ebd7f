"""CPU runtime: `ulc run` against onnxruntime's CPU execution provider, same threads, same run.

Generates (once, into bench/out/runtime/, git-ignored; reused while the stamp matches) three
random-init models, exported by torch.onnx.export at opset 17 with dynamic batch axes
(and a dynamic sequence axis for GPT-2):

  resnet18     torchvision resnet18 (seed 0), `input` [N,3,224,224] -> `logits`
  vit_s16      transformers ViTForImageClassification, ViT-S/16's shape: hidden 384, 12 layers,
               6 heads, intermediate 1536, patch 16, 224x224, 1000 labels; `pixel_values` -> `logits`
  distilgpt2   transformers GPT2LMHeadModel, DistilGPT2's shape: 6 layers, n_embd 768, 12 heads,
               vocabulary 50257, 1024 positions, gelu_new; (`input_ids`, `attention_mask`) -> `logits`

and times four cases: ResNet-18 at batch 1 and 8, ViT-S/16 at batch 1, DistilGPT2 at batch 1 x
128 tokens (seeded random inputs; an all-ones attention mask). Each round runs, per case, both
sides in alternating order (ulc first in even rounds, onnxruntime first in odd ones), with the
same thread count:

  ulc   `ulc run MODEL --input IN.safetensors -o OUT.safetensors --threads N --repeat R+1` under
        GNU time (peak RSS): the first run plans (and warms up); ulc prints the median of the R
        more, timed around each session run inside its process
  ort   one Python child per case, alive for the whole bench under GNU time (peak RSS), holding
        an InferenceSession(intra_op_num_threads=N, inter_op_num_threads=1, graph optimizations
        at their default, ORT_ENABLE_ALL) that ran once after creation (warm-up); each round it
        times R session.run calls and reports their median

Each case's figure is the median over the rounds of the per-round medians. An untimed round 0
checks correctness (ulc's outputs against onnxruntime's: max |ulc - ort| / max |ort| per output,
as tests/interop/test_runtime_models.py measures it; every round's outputs are checked) and
picks R (3 to 50) so that one side's timed runs take about --seconds. Before each round,
build/sgemm_peak (bench/sgemm_peak.c: oneDNN's dnnl_sgemm on 1024 and 2048 square matrices with
the same thread count) measures the machine's practical f32 peak; its best round (other load
only lowers it) is the denominator of "% of sgemm peak".

FLOPs: 2 x the multiply-accumulates of every Conv, MatMul and Gemm in the ONNX graph, with the
shapes of one onnxruntime run of the case's inputs (every intermediate value captured).

Per-op breakdowns (unless --no-ops), two kinds.
  Whole model, after the rounds: ms per run by op type from each runtime's own profiler (ulc run
  --profile; onnxruntime's enable_profiling), each with its own op types (after its fusions).
  One-node models: every node of each model that is not folded at plan time (Shape chains and
  constant subgraphs) is rebuilt as a one-node ONNX model with the inputs it receives in the
  real run (captured values; weights as initializers, activations as graph inputs), identical
  nodes once, and timed in both runtimes with --op-threads threads (default 1: kernel speed
  apart from threading; ulc --repeat in a subprocess, onnxruntime in-process); the fastest of
  each node's runs (the least disturbed on a shared machine) is summed by op type. This shows
  which kernels lag, not what whole-graph fusions are worth (onnxruntime fuses e.g. MatMul+Add,
  Gelu and LayerNorm patterns).

Target (issue 4): ulc's latency <= 1.0x onnxruntime's on each case. Peak RSS is reported, not
targeted (onnxruntime's includes its Python interpreter, numpy and safetensors).

--write-doc puts the report into docs/benchmarks.md: the section "CPU runtime vs onnxruntime"
for the default (every core), a section of its own for another --threads, any --ulc-env
(extra environment for the ulc processes, for experiments such as OMP_DYNAMIC=true) or
--precision bf16 (ulc's linear layers in bfloat16 with float32 sums, against float32 onnxruntime;
outputs then held to 3e-2).

  .venv/bin/python bench/bench_runtime.py [--rounds 5] [--threads N] [--seconds 0.5]
      [--cases resnet18_b1,...] [--no-ops] [--op-threads 1] [--ulc-env VAR=VALUE]
      [--precision fp32|bf16] [--write-doc]
"""
import argparse
import datetime
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_io import cpu_model, replace_doc_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "runtime"
ULC = os.environ.get("ULC_BIN", str(ROOT / "build" / "ulc"))
SGEMM = os.environ.get("SGEMM_PEAK_BIN", str(Path(ULC).parent / "sgemm_peak"))
PY = sys.executable
TIME = "/usr/bin/time"
SECTION = "## CPU runtime vs onnxruntime"
GEN_VERSION = "1"  # bump to regenerate the models
OPSET = 17
REL_TOL = 1e-4     # the bar for matching onnxruntime (float32)
REL_TOL_BF16 = 3e-2  # --precision bf16: bfloat16's rounding of both operands (tests/e2e/test_precision.py)
PRECISION = []     # --precision bf16: ["--precision", "bf16"] on every ulc command
TARGET_21 = {"resnet": 0.55, "transformer": 0.7}  # issue 21: ulc / the newest onnxruntime
ALL_CORES = len(os.sched_getaffinity(0))
ULC_ENV = {}       # --ulc-env VAR=VALUE: extra environment for the ulc processes (experiments)

# name -> (model, batch, label)
CASES = {
    "resnet18_b1": ("resnet18", 1, "ResNet-18 224²"),
    "resnet18_b8": ("resnet18", 8, "ResNet-18 224²"),
    "vit_s16_b1": ("vit_s16", 1, "ViT-S/16 224²"),
    "distilgpt2_b1": ("distilgpt2", 1, "DistilGPT2 128 tokens"),
}
GPT2_TOKENS = 128

# A persistent onnxruntime process per case: creates the session, runs once (warm-up), prints
# "ready create_ms first_ms"; then for each line "R OUT" on stdin runs R timed session.run calls,
# writes the last outputs to OUT and prints "median_ms min_ms".
ORT_WORKER = r"""
import statistics, sys, time
import onnxruntime as ort
from safetensors.numpy import load_file, save_file
model, inp, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
o = ort.SessionOptions()
o.intra_op_num_threads = threads
o.inter_op_num_threads = 1
t0 = time.perf_counter()
s = ort.InferenceSession(model, o, providers=["CPUExecutionProvider"])
t1 = time.perf_counter()
feeds = load_file(inp)
s.run(None, feeds)
t2 = time.perf_counter()
names = [x.name for x in s.get_outputs()]
print("ready", (t1 - t0) * 1e3, (t2 - t1) * 1e3, flush=True)
for line in sys.stdin:
    reps, out = line.split(maxsplit=1)
    ts = []
    for _ in range(int(reps)):
        a = time.perf_counter()
        res = s.run(None, feeds)
        ts.append(time.perf_counter() - a)
    save_file(dict(zip(names, res)), out.strip())
    print(statistics.median(ts) * 1e3, min(ts) * 1e3, flush=True)
"""

# The onnxruntime peers: "ort", the newest release, from the benchmark venv (bench/setup_torch.sh,
# `make bench-env`) when it is there, and "pin", the version the test requirements pin (this
# interpreter's). Without the benchmark venv, "ort" is the pinned one and there is no second peer.
PEERS = {}  # set by main (ort_peers)
BENCH_VENV = Path(os.environ.get("ULC_BENCH_VENV", ROOT / ".bench-venv"))


def ort_version(py):
    p = subprocess.run([py, "-c", "import onnxruntime; print(onnxruntime.__version__)"],
                       capture_output=True, text=True)
    return p.stdout.strip() if p.returncode == 0 else None


def ort_peers(newest_py):
    """{key: (python, onnxruntime version)}: "ort" always, "pin" when a newer one is found."""
    pinned = (PY, ort_version(PY))
    py = newest_py or str(BENCH_VENV / "bin" / "python")
    v = ort_version(py) if Path(py).exists() else None
    if not v or v == pinned[1]:
        return {"ort": pinned}
    return {"ort": (py, v), "pin": pinned}


ULC_LINE = re.compile(r"first run \(with planning\) ([0-9.]+) ms; median of (\d+) more ([0-9.]+) ms, "
                      r"min ([0-9.]+) ms; activations ([0-9.]+) MiB")


# ---------------------------------------------------------------- models

def _logits(model, gpt2):
    """model wrapped so that the export returns the logits as one plain tensor (GPT-2 without
    its key/value cache); the wrapper in eval mode too (see tests/fixtures/gen_exporters.py)."""
    import torch

    class Logits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, *args):
            if gpt2:
                return self.m(input_ids=args[0], attention_mask=args[1], use_cache=False,
                              return_dict=False)[0]
            return self.m(pixel_values=args[0], return_dict=False)[0]
    return Logits().eval()


def _export_resnet18():
    import torch
    import torchvision
    torch.manual_seed(0)
    m = torchvision.models.resnet18().eval()
    return m, (torch.randn(1, 3, 224, 224),), ["input"], ["logits"], \
        {"input": {0: "N"}, "logits": {0: "N"}}


def _export_vit():
    import torch
    from transformers import ViTConfig, ViTForImageClassification
    torch.manual_seed(1)
    cfg = ViTConfig(hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
                    intermediate_size=1536, image_size=224, patch_size=16, num_labels=1000)
    m = _logits(ViTForImageClassification(cfg).eval(), gpt2=False)
    return m, (torch.randn(1, 3, 224, 224),), ["pixel_values"], ["logits"], \
        {"pixel_values": {0: "N"}, "logits": {0: "N"}}


def _export_gpt2():
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(2)
    cfg = GPT2Config(n_layer=6, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024,
                     activation_function="gelu_new", use_cache=False)
    m = _logits(GPT2LMHeadModel(cfg).eval(), gpt2=True)
    ids = torch.randint(0, 50257, (2, 16))  # traced at 2 x 16: the bench's 1 x 128 checks the axes
    return m, (ids, torch.ones_like(ids)), ["input_ids", "attention_mask"], ["logits"], \
        {"input_ids": {0: "N", 1: "T"}, "attention_mask": {0: "N", 1: "T"}, "logits": {0: "N", 1: "T"}}


MODELS = {"resnet18": _export_resnet18, "vit_s16": _export_vit, "distilgpt2": _export_gpt2}


def _environment():
    import torch
    import torchvision
    import transformers
    import onnx
    return {"generator": GEN_VERSION, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "transformers": transformers.__version__, "onnx": onnx.__version__}


def make_model(name):
    """bench/out/runtime/NAME.onnx, exported once; a stamp records the generator and versions."""
    import warnings
    import torch
    path, stamp = OUT / f"{name}.onnx", OUT / f".{name}.stamp"
    env = _environment()
    try:
        if path.exists() and json.loads(stamp.read_text()) == {**env, "bytes": path.stat().st_size}:
            return path
    except (OSError, ValueError):
        pass
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"generating {path.relative_to(ROOT)} (opset {OPSET}) ...", flush=True)
    model, args, inames, onames, axes = MODELS[name]()
    tmp = path.with_suffix(".tmp")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic bytes
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, args, str(tmp), opset_version=OPSET, input_names=inames,
                              output_names=onames, dynamic_axes=axes, do_constant_folding=True)
    finally:
        torch.set_num_threads(threads)
    os.replace(tmp, path)
    stamp.write_text(json.dumps({**env, "bytes": path.stat().st_size}) + "\n")
    return path


def make_inputs(case):
    """Seeded inputs for a case, written to bench/out/runtime/CASE.in.safetensors."""
    from safetensors.numpy import save_file
    model, batch, _ = CASES[case]
    rng = np.random.default_rng(42)
    if model == "distilgpt2":
        feeds = {"input_ids": rng.integers(0, 50257, (batch, GPT2_TOKENS)).astype(np.int64),
                 "attention_mask": np.ones((batch, GPT2_TOKENS), np.int64)}
    else:
        name = "input" if model == "resnet18" else "pixel_values"
        feeds = {name: rng.standard_normal((batch, 3, 224, 224)).astype(np.float32)}
    path = OUT / f"{case}.in.safetensors"
    save_file(feeds, str(path))
    return path, feeds


# ---------------------------------------------------------------- timing

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


def run_ulc(model, inp, out, threads, reps):
    """One ulc subprocess: dict(median, min, first, act, rss) in ms / MiB / bytes, or
    dict(error=...)."""
    p, rss = _under_time([ULC, *PRECISION, "run", model, "--input", inp, "-o", out, "--threads", threads,
                          "--repeat", reps + 1], env={**os.environ, **ULC_ENV})
    m = ULC_LINE.search(p.stderr)
    if p.returncode != 0 or not m:
        msg = (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]
        return {"error": f"ulc exited {p.returncode}: {msg}"}
    return {"first": float(m[1]), "median": float(m[3]), "min": float(m[4]), "act": float(m[5]),
            "rss": rss}


class OrtWorker:
    """onnxruntime on one case in a child process that lives for the whole bench (session created
    once), under GNU time for its peak RSS."""

    def __init__(self, model, inp, threads, py=PY):
        fd, self.tfile = tempfile.mkstemp()
        os.close(fd)
        self.p = subprocess.Popen([TIME, "-f", "%M", "-o", self.tfile, py, "-c", ORT_WORKER, str(model),
                                   str(inp), str(threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True)
        self.create, self.first = map(float, self._line().split()[1:])

    def _line(self):
        line = self.p.stdout.readline()
        if not line:
            self.p.wait()
            raise SystemExit(f"onnxruntime worker exited {self.p.returncode}")
        return line

    def run(self, reps, out):
        """R timed runs: (median ms, min ms); the last run's outputs are written to out."""
        self.p.stdin.write(f"{reps} {out}\n")
        self.p.stdin.flush()
        med, mn = map(float, self._line().split())
        return med, mn

    def close(self):
        """Ends the worker; returns its peak RSS in bytes."""
        self.p.stdin.close()
        self.p.wait()
        try:
            return int(Path(self.tfile).read_text().split()[-1]) * 1024
        finally:
            os.unlink(self.tfile)


def rel_error(got, ref):
    """max |got - ref| / max(max |ref|, 1e-6), in float64 (as tests/interop measures it)."""
    g, r = got.astype(np.float64), ref.astype(np.float64)
    return float(np.abs(g - r).max() / max(np.abs(r).max(), 1e-6)) if r.size else 0.0


def compare(ulc_out, ort_out):
    """Worst relative error over the outputs; inf when ulc's outputs are missing or misshapen."""
    from safetensors.numpy import load_file
    u, o = load_file(str(ulc_out)), load_file(str(ort_out))
    worst = 0.0
    for k, r in o.items():
        g = u.get(k)
        if g is None or g.shape != r.shape or not np.isfinite(g).all():
            return float("inf")
        worst = max(worst, rel_error(g, r))
    return worst


def sgemm_peak(threads):
    p = subprocess.run([SGEMM, "--threads", str(threads), "--sizes", "1024,2048", "--seconds", "0.5"],
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{SGEMM} failed ({p.returncode}):\n{p.stderr}")
    lib = re.search(r"(oneDNN [0-9.]+ \([^)]*\))", p.stdout)
    return float(re.search(r"peak ([0-9.]+) GFLOP/s", p.stdout)[1]), lib[1] if lib else "oneDNN"


# ---------------------------------------------------------------- capture, FLOPs

def load_graph(path):
    import onnx
    return onnx.load(str(path))


def _elem_types(m):
    """value name -> ONNX elem type, from onnx's type inference and the graph's own records."""
    import onnx
    try:
        inferred = onnx.shape_inference.infer_shapes(m, strict_mode=False)
    except Exception:  # noqa: BLE001 - types are a best effort; unknown ones are not captured
        inferred = m
    g = inferred.graph
    types = {}
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            types[vi.name] = vi.type.tensor_type.elem_type
    for t in g.initializer:
        types[t.name] = t.data_type
    return types


def capture(m, feeds, threads):
    """Every node output's value in one onnxruntime run (optimizations off, so each exists):
    name -> numpy array. Values whose type onnx cannot infer are left out."""
    import onnx
    import onnxruntime as ort
    types = _elem_types(m)
    cm = onnx.ModelProto()
    cm.CopyFrom(m)
    have = {o.name for o in cm.graph.output}
    for n in cm.graph.node:
        for o in n.output:
            if o and o not in have and o in types:
                cm.graph.output.append(onnx.helper.make_tensor_value_info(o, types[o], None))
                have.add(o)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(cm.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    vals = dict(zip(names, sess.run(None, feeds)))
    del sess, cm
    for t in m.graph.initializer:
        vals.setdefault(t.name, None)  # weights: shapes come from the initializer itself
    vals.update(feeds)
    return vals


def _shape(m_inits, vals, name):
    if name in m_inits:
        return tuple(m_inits[name].dims)
    v = vals.get(name)
    return None if v is None else tuple(v.shape)


def count_flops(m, vals):
    """2 x multiply-accumulates of Conv, MatMul and Gemm nodes; (flops, nodes without shapes)."""
    inits = {t.name: t for t in m.graph.initializer}
    macs, unknown = 0, 0
    for n in m.graph.node:
        if n.op_type not in ("Conv", "MatMul", "Gemm"):
            continue
        shapes = [_shape(inits, vals, i) for i in n.input]
        if n.op_type == "Conv":
            w, y = shapes[1], _shape(inits, vals, n.output[0])
            if w is None or y is None:
                unknown += 1
                continue
            macs += int(np.prod(y, dtype=np.int64)) * int(np.prod(w[1:], dtype=np.int64))
        elif n.op_type == "Gemm":
            a, b = shapes[0], shapes[1]
            if a is None or b is None:
                unknown += 1
                continue
            at = {x.name: x.i for x in n.attribute}
            mm, k = (a[1], a[0]) if at.get("transA", 0) else (a[0], a[1])
            nn = b[0] if at.get("transB", 0) else b[1]
            macs += mm * k * nn
        else:
            a, b = shapes[0], shapes[1]
            if a is None or b is None:
                unknown += 1
                continue
            a2 = a if len(a) >= 2 else (1,) + a
            b2 = b if len(b) >= 2 else b + (1,)
            batch = np.broadcast_shapes(a2[:-2], b2[:-2])
            macs += int(np.prod(batch, dtype=np.int64)) * a2[-2] * a2[-1] * b2[-1]
    return 2 * macs, unknown


# ---------------------------------------------------------------- per-op breakdown

# Inputs that carry shapes, axes or indices: initializers in the one-node models (in the real
# models they come from Shape chains or constants, which ulc folds at plan time).
SHAPE_INPUTS = {"Reshape": {1}, "Expand": {1}, "Slice": {1, 2, 3, 4}, "Tile": {1}, "Unsqueeze": {1},
                "Squeeze": {1}, "ConstantOfShape": {0}, "Range": {0, 1, 2}, "Pad": {1, 2, 3},
                "ReduceMean": {1}, "ReduceSum": {1}, "ReduceMax": {1}, "ReduceMin": {1},
                "Split": {1}, "Resize": {1, 2, 3}, "TopK": {1}, "OneHot": {1}, "Trilu": {1}}
CONST_PRODUCERS = {"Constant", "Shape", "Size"}


def _const_values(m):
    """Values known before the run (shapes are pinned by the inputs): initializers, Constant /
    Shape / Size outputs, and outputs of nodes whose inputs are all known."""
    const = {t.name for t in m.graph.initializer}
    for n in m.graph.node:
        ins = [i for i in n.input if i]
        if n.op_type in CONST_PRODUCERS or all(i in const for i in ins):
            const.update(o for o in n.output if o)
    return const


def one_node_models(m, vals, case):
    """[(signature, count, ModelProto, feeds, op_type, label)] for the nodes ulc runs (not folded),
    identical nodes once; and the number of folded nodes."""
    import onnx
    from onnx import helper, numpy_helper
    inits = {t.name: t for t in m.graph.initializer}
    const = _const_values(m)
    groups, folded = {}, 0
    for n in m.graph.node:
        outs = [o for o in n.output if o]
        if all(o in const for o in outs):
            folded += 1
            continue
        if any(o not in vals for o in outs) or n.op_type in ("If", "Loop", "Scan"):
            continue  # untyped outputs (not captured) or subgraphs: not rebuilt
        sig = [n.op_type, n.domain, [a.SerializeToString() for a in n.attribute]]
        inputs, ok = [], True
        for k, name in enumerate(n.input):
            if not name:
                inputs.append(None)
                sig.append("-")
                continue
            v = numpy_helper.to_array(inits[name]) if name in inits else vals.get(name)
            if v is None:
                ok = False
                break
            v = np.asarray(v)
            is_init = name in const or k in SHAPE_INPUTS.get(n.op_type, ())
            small = v.size <= 64
            sig.append((is_init, v.shape, str(v.dtype), v.tobytes() if (is_init and small) else b""))
            inputs.append((is_init, v))
        if not ok:
            continue
        key = hashlib.sha1(repr(sig).encode()).hexdigest()[:16]
        if key in groups:
            groups[key][1] += 1
            continue
        nn = onnx.NodeProto()
        nn.CopyFrom(n)
        nn.name = n.op_type
        del nn.input[:]
        del nn.output[:]
        g_in, g_init, feeds = [], [], {}
        for k, inp in enumerate(inputs):
            if inp is None:
                nn.input.append("")
                continue
            is_init, v = inp
            nm = f"x{k}"
            nn.input.append(nm)
            if is_init:
                g_init.append(numpy_helper.from_array(v, nm))
            else:
                g_in.append(helper.make_tensor_value_info(nm, helper.np_dtype_to_tensor_dtype(v.dtype),
                                                          list(v.shape)))
                feeds[nm] = v
        g_out = []
        for k, o in enumerate(n.output):
            if not o:
                nn.output.append("")
                continue
            v = np.asarray(vals[o])
            nn.output.append(f"y{k}")
            g_out.append(helper.make_tensor_value_info(f"y{k}", helper.np_dtype_to_tensor_dtype(v.dtype),
                                                       list(v.shape)))
        g = helper.make_graph([nn], f"{case}_{n.op_type}", g_in, g_out, g_init)
        om = helper.make_model(g, opset_imports=list(m.opset_import))
        om.ir_version = m.ir_version
        groups[key] = [key, 1, om, feeds, n.op_type, _describe(n.op_type, inputs, n, vals)]
    return [tuple(x) for x in groups.values()], folded


def _describe(op, inputs, n, vals):
    """A short label: "Conv 3x3/s1 64->64 on 1x64x56x56 -> 56x56", "MatMul 1x197x384, 384x384"."""
    dims = ["x".join(map(str, inp[1].shape)) or "scalar" for inp in inputs if inp is not None]
    if op == "Conv":
        at = {a.name: a for a in n.attribute}
        w = inputs[1][1].shape
        stride = list(at["strides"].ints)[0] if "strides" in at else 1
        y = np.asarray(vals[n.output[0]]).shape
        return f"Conv {w[2]}x{w[3]}/s{stride} {w[1]}->{w[0]} on {dims[0]} -> {y[2]}x{y[3]}"
    return f"{op} " + ", ".join(dims)


def time_ort_single(model_bytes, feeds, threads, seconds):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    s = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
    out = s.run(None, feeds)
    ts, t_end = [], time.perf_counter() + seconds
    while len(ts) < 5 or (time.perf_counter() < t_end and len(ts) < 2000):
        a = time.perf_counter()
        s.run(None, feeds)
        ts.append(time.perf_counter() - a)
    return min(ts) * 1e3, len(ts), {o.name: r for o, r in zip(s.get_outputs(), out)}


def _output_error(got, ref):
    """rel_error over the finite entries of float outputs (the others must match exactly);
    0 or inf (equal or not) for integer and bool outputs."""
    if got is None or got.shape != ref.shape or got.dtype != ref.dtype:
        return float("inf")
    if ref.dtype.kind != "f":
        return 0.0 if np.array_equal(got, ref) else float("inf")
    fin = np.isfinite(ref)
    if not np.array_equal(fin, np.isfinite(got)) or not np.array_equal(got[~fin], ref[~fin], equal_nan=True):
        return float("inf")
    return rel_error(got[fin], ref[fin])


def op_breakdown(case, m, vals, threads, seconds):
    """Times each distinct non-folded node alone in both runtimes. Returns a dict with per-node
    rows and the folded count."""
    import onnx
    from safetensors.numpy import load_file, save_file
    rows, folded = one_node_models(m, vals, case)
    d = OUT / "ops" / case
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    res = []
    for key, count, om, feeds, op, label in rows:
        mp, ip, op_out = d / f"{key}.onnx", d / f"{key}.in.safetensors", d / f"{key}.out.safetensors"
        onnx.save(om, str(mp))
        save_file(feeds, str(ip))
        ort_ms, _, ort_out = time_ort_single(om.SerializeToString(), feeds, threads, seconds)
        # ulc: a short run for an estimate, then one sized to the budget when that is longer
        u = run_ulc(mp, ip, op_out, threads, 3)
        if "error" not in u and 3 * u["median"] < seconds * 1e3:
            u = run_ulc(mp, ip, op_out, threads, int(min(300, seconds * 1e3 / max(u["median"], 1e-3))))
        err = None
        if "error" not in u:
            got = load_file(str(op_out))
            err = max((_output_error(got.get(k), v) for k, v in ort_out.items()), default=0.0)
        res.append(dict(op=op, label=label, count=count, ort=ort_ms, ulc=u.get("min"),
                        error=u.get("error"), rel=err))
    shutil.rmtree(d)
    return {"rows": res, "folded": folded}


# ---------------------------------------------------------------- whole-model profiles

PROFILE_ROW = re.compile(r"^(\S+)\s+([0-9.]+)\s+[0-9.]+%\s+(\d+)\s+[0-9.]+$")


def _ulc_profile_totals(model, inp, out, threads, runs):
    """ulc run --profile --repeat runs: {op type: total ms over the runs}, or an error string."""
    p = subprocess.run([ULC, *PRECISION, "run", model, "--input", inp, "-o", out, "--threads", str(threads),
                        "--repeat", str(runs), "--profile"], capture_output=True, text=True,
                       env={**os.environ, **ULC_ENV})
    if p.returncode != 0 or "profile (" not in p.stderr:
        return (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]
    totals = {}
    for line in p.stderr.split("profile (", 1)[1].split("slowest nodes", 1)[0].splitlines():
        m = PROFILE_ROW.match(line.strip())
        if m:
            totals[m[1]] = float(m[2])
    return totals


def whole_profiles(case, model, inp, threads, reps, pairs=3):
    """Per op type ms per run in the whole model, from each runtime's own profiler, the warm-up
    left out. ulc's --profile counts every run, the planning one too, so a run of 1 is
    subtracted from a run of 1 + reps, per op type, and the median over `pairs` such pairs is
    kept (a single first run is noisy). onnxruntime's enable_profiling: node events after the
    first model_run. The op types are each runtime's own: onnxruntime's after its fusions
    (FusedConv, BiasGelu, ...), ulc's fused steps under their first node's op type."""
    import onnxruntime as ort
    from safetensors.numpy import load_file
    out = OUT / f"{case}.profile.safetensors"
    diffs, ulc = [], None
    for _ in range(pairs):
        one = _ulc_profile_totals(model, inp, out, threads, 1)
        many = _ulc_profile_totals(model, inp, out, threads, 1 + reps)
        if isinstance(one, str) or isinstance(many, str):
            ulc = one if isinstance(one, str) else many
            break
        diffs.append({k: (v - one.get(k, 0.0)) / reps for k, v in many.items()})
    out.unlink(missing_ok=True)
    if ulc is None:
        ulc = {k: max(0.0, statistics.median(d.get(k, 0.0) for d in diffs)) for k in diffs[0]}
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.enable_profiling = True
    so.profile_file_prefix = str(OUT / f"{case}.ort_profile")
    s = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    feeds = load_file(str(inp))
    for _ in range(1 + reps):
        s.run(None, feeds)
    path = Path(s.end_profiling())
    events = json.loads(path.read_text())
    path.unlink()
    del s
    first = min((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
    start = first["ts"] + first["dur"]
    ort_ms = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= start:
            op = e["args"]["op_name"]
            ort_ms[op] = ort_ms.get(op, 0.0) + e["dur"] / 1e3 / reps
    return {"ulc": ulc, "ort": ort_ms, "reps": reps}


# ---------------------------------------------------------------- report

def fmt_ms(x):
    return "—" if x is None else (f"{x:.2f}" if x < 10 else f"{x:.1f}")


def fmt_err(e):
    if e is None:
        return "—"
    if e == float("inf"):
        return "**wrong shape / non-finite**"
    return f"{e:.1e}" + ("" if e <= REL_TOL else f" **(> {REL_TOL:g})**")


def report(results, peak, peak_all, threads, rounds, load):
    """The main table, the targets' verdicts and each case's details, as markdown."""
    pin = "pin" in PEERS
    ov = PEERS["ort"][1]
    pv = PEERS["pin"][1] if pin else ""
    lines = [f"| model | batch | GFLOP | ulc ms | ort {ov} ms | ulc / ort {ov} | "
             + (f"ort {pv} ms | ulc / ort {pv} | " if pin else "")
             + f"ulc GFLOP/s | ort {ov} GFLOP/s | ulc % of sgemm peak | max rel err | peak RSS ulc / ort {ov}"
             + (f" / ort {pv} |" if pin else " |"),
             "|---|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if pin else "")]
    verdicts, verdicts21, details = [], [], []
    for case, r in results.items():
        _, batch, label = CASES[case]
        gf = r["flops"] / 1e9
        if r.get("error"):
            lines.append(f"| {label} | {batch} | {gf:.2f} | failed | {fmt_ms(r.get('ort'))} | — | — | "
                         f"{gf / (r['ort'] / 1e3):.1f} | — | — | — |")
            verdicts.append(f"  - {label}, batch {batch}: NOT met (ulc failed: {r['error']})")
            continue
        u, o = r["ulc"], r["ort"]
        ratio = u / o
        pin_cols = f"{fmt_ms(r['pin'])} | {u / r['pin']:.2f}× | " if pin else ""
        pin_rss = f" / {r['rss_pin'] / 2**20:.0f}" if pin else ""
        lines.append(
            f"| {label} | {batch} | {gf:.2f} | {fmt_ms(u)} | {fmt_ms(o)} | {ratio:.2f}× | {pin_cols}"
            f"{gf / (u / 1e3):.1f} | {gf / (o / 1e3):.1f} | {gf / (u / 1e3) / peak * 100:.0f}% | "
            f"{fmt_err(r['rel'])} | {r['rss_ulc'] / 2**20:.0f} / {r['rss_ort'] / 2**20:.0f}{pin_rss} MiB |")
        ok = ratio <= 1.0 and r["rel"] <= REL_TOL
        goal = TARGET_21["resnet" if case.startswith("resnet") else "transformer"]
        ok21 = ratio <= goal and r["rel"] <= REL_TOL
        rss_ok = r["rss_ulc"] <= r["rss_ort"]
        verdicts21.append(f"  - {label}, batch {batch}: {ratio:.2f}× (target {goal}×) — "
                          f"{'met' if ok21 else 'NOT met'}; peak RSS {r['rss_ulc'] / 2**20:.0f} / "
                          f"{r['rss_ort'] / 2**20:.0f} MiB — {'met' if rss_ok else 'NOT met'}")
        why = "" if r["rel"] <= REL_TOL else f"; outputs off onnxruntime by {r['rel']:.2g}"
        verdicts.append(f"  - {label}, batch {batch}: {ratio:.2f}× — {'met' if ok else 'NOT met'}{why}")
        round_ratio = statistics.median([a / b for a, b in zip(r["ulc_all"], r["ort_all"])])
        details.append(
            f"- {label}, batch {batch}: R = {r['reps']}; per-round medians ulc "
            f"{', '.join(fmt_ms(x) for x in r['ulc_all'])} ms, ort {', '.join(fmt_ms(x) for x in r['ort_all'])} ms"
            + (f", ort {pv} {', '.join(fmt_ms(x) for x in r['pin_all'])} ms" if pin else "") +
            f" (median of the per-round ratios {round_ratio:.2f}×); fastest single run ulc "
            f"{fmt_ms(r['ulc_min'])} ms, ort {fmt_ms(r['ort_min'])} ms ({r['ulc_min'] / r['ort_min']:.2f}×); "
            f"ulc's first run (plans) {fmt_ms(r['ulc_first'])} ms, "
            f"activations {r['act']:.1f} MiB; ort's session creation {fmt_ms(r['ort_create'])} ms + first run "
            f"{fmt_ms(r['ort_first'])} ms")
    lines += [
        "",
        f"- {threads} thread{'s' if threads > 1 else ''} on both sides; {rounds} interleaved rounds after an "
        "untimed one; each figure is the median over the rounds of each round's median of R runs",
        f"- load average (1 min) at the start and the end of the timed rounds: {load[0]:.1f}, {load[1]:.1f} on "
        f"{os.cpu_count()} cores (other work on the machine slows both sides; interleaving shares it out)",
        f"- oneDNN sgemm peak ({threads} thread{'s' if threads > 1 else ''}, the best round's best of 1024² and "
        f"2048²): **{peak:.1f} GFLOP/s** (rounds: {', '.join(f'{p:.1f}' for p in peak_all)})",
        f"- **target: ulc ≤ 1.0× onnxruntime {ov}'s latency** (with outputs within {REL_TOL:g} of onnxruntime's"
        + (", ulc in bfloat16 products" if PRECISION else "") + "):",
        *verdicts,
        f"- **issue 21's targets: ResNet-18 ≤ {TARGET_21['resnet']}×, ViT-S/16 and DistilGPT2 ≤ "
        f"{TARGET_21['transformer']}× onnxruntime {ov}'s latency; peak RSS ≤ its**:",
        *verdicts21, *details]
    return "\n".join(lines)


def profiles_report(results, profiles, threads):
    """Per case: ms per run by op type in the whole model, from each runtime's profiler."""
    t = f"{threads} thread{'s' if threads > 1 else ''}"
    lines = [f"### Whole model by op type ({t}; each runtime's own profiler)", "",
             "ulc's `run --profile` and onnxruntime's enable_profiling after the timed rounds, per run with\n"
             "the warm-up left out (ulc: a run of 1 subtracted from a run of 1 + R, median of 3 such pairs).\n"
             "The op types are each runtime's own: onnxruntime's after its graph fusions (FusedConv = Conv\n"
             "with its activation, FusedMatMul, BiasGelu, ...), ulc's fused steps under the op type of their\n"
             "first node (Conv with its Add and Relu, ...). Profiling adds a little time of its own.", ""]
    for case, pr in profiles.items():
        _, batch, label = CASES[case]
        u, o = pr["ulc"], pr["ort"]
        lines.append(f"**{label}, batch {batch}** (whole-model medians: ulc {fmt_ms(results[case].get('ulc'))} ms, "
                     f"ort {fmt_ms(results[case].get('ort'))} ms)")
        lines.append("")
        if isinstance(u, str):
            lines += [f"- ulc's profile is not available: {u}", ""]
            u = {}
        tu, to = sum(u.values()), sum(o.values())
        lines += ["| op type | ulc ms/run | ort ms/run |", "|---|---|---|"]
        small = []
        for op in sorted(set(u) | set(o), key=lambda k: -max(u.get(k, 0.0), o.get(k, 0.0))):
            a, b = u.get(op), o.get(op)
            if (a or 0) < 0.005 * tu and (b or 0) < 0.005 * to:
                small.append(op)
                continue
            lines.append(f"| {op} | {fmt_ms(a)} | {fmt_ms(b)} |")
        if small:
            lines.append(f"| (under 0.5% each: {', '.join(sorted(small))}) | | |")
        lines += [f"| **total in kernels** | **{fmt_ms(tu)}** | **{fmt_ms(to)}** |", ""]
    return "\n".join(lines).rstrip("\n")


def ops_report(results, ops, threads):
    """Per case: one-node times summed by op type, the largest gaps, any node that failed or
    disagreed with onnxruntime."""
    t = f"{threads} thread{'s' if threads > 1 else ''}"
    lines = [f"### Per op type ({t}; each distinct node timed alone in both runtimes)", "",
             "Every node ulc runs (plan-time folded ones left out) rebuilt as a one-node model with the\n"
             f"inputs it gets in the real run and timed alone in both runtimes, {t}: the fastest of its\n"
             "repeated runs (the least disturbed figure on a shared machine), identical nodes once, times\n"
             "multiplied by the node count. It shows which kernels lag; onnxruntime's whole-graph fusions\n"
             "(MatMul+Add, Gelu, LayerNorm patterns...) are not in it.", ""]
    for case, b in ops.items():
        _, batch, label = CASES[case]
        rows = b["rows"]
        tot_u = sum((x["ulc"] or 0) * x["count"] for x in rows)
        tot_o = sum(x["ort"] * x["count"] for x in rows)
        by = {}
        for x in rows:
            e = by.setdefault(x["op"], [0, 0.0, 0.0, 0])
            e[0] += x["count"]
            e[1] += (x["ulc"] or 0) * x["count"]
            e[2] += x["ort"] * x["count"]
            e[3] += 1 if x["error"] else 0
        whole = results[case]
        lines += [f"**{label}, batch {batch}**: sum of one-node times ulc {fmt_ms(tot_u)} ms, ort {fmt_ms(tot_o)} ms "
                  f"(whole model: ulc {fmt_ms(whole.get('ulc'))} ms, ort {fmt_ms(whole.get('ort'))} ms); "
                  f"{len(rows)} distinct nodes, {b['folded']} nodes folded at plan time", "",
                  "| op type | nodes | ulc ms | ort ms | ulc / ort | share of ulc |", "|---|---|---|---|---|---|"]
        small = []
        for op, (cnt, u, o, bad) in sorted(by.items(), key=lambda kv: -kv[1][1]):
            if u < 0.005 * tot_u and o < 0.005 * tot_o and not bad:
                small.append(op)
                continue
            ratio = f"{u / o:.2f}×" if o > 0 and not bad else "—"
            fail = f" ({bad} failed)" if bad else ""
            lines.append(f"| {op}{fail} | {cnt} | {fmt_ms(u)} | {fmt_ms(o)} | {ratio} | "
                         f"{u / tot_u * 100 if tot_u else 0:.0f}% |")
        if small:
            lines.append(f"| (under 0.5% each: {', '.join(sorted(small))}) | | | | | |")
        worst = sorted((x for x in rows if x["ulc"] is not None and x["ulc"] > x["ort"]),
                       key=lambda x: -(x["ulc"] - x["ort"]) * x["count"])[:5]
        if worst:
            lines += ["", "Largest gaps (ulc − ort per node, times the node count):", ""]
        for x in worst:
            lines.append(f"- {x['label']} ×{x['count']}: ulc {x['ulc']:.3f} ms, ort {x['ort']:.3f} ms "
                         f"({x['ulc'] / x['ort']:.2f}×)")
        for x in rows:
            if x["error"] or (x["rel"] is not None and x["rel"] > REL_TOL):
                lines.append(f"- ⚠ {x['label']}: " + (x["error"] or f"off onnxruntime by {x['rel']:.2g}"))
        lines.append("")
    return "\n".join(lines).rstrip("\n")


def versions():
    import onnx
    import torch
    import transformers
    ulc_version = subprocess.run([ULC, "--version"], capture_output=True, text=True).stdout.strip()
    ort = " and ".join(f"{v[1]}" for v in PEERS.values())
    return (f"{ulc_version}, onnxruntime {ort}, onnx {onnx.__version__}, "
            f"torch {torch.__version__}, transformers {transformers.__version__}")


def write_doc(text, threads, dnnl, ulc_env):
    """Writes the section for this thread count: SECTION for every core (the headline), a
    separate "SECTION (N threads)" for other counts, so both can stand in the file."""
    cmd = " ".join([".venv/bin/python", "bench/bench_runtime.py", *sys.argv[1:]])
    env_note = f" (ulc run with {' '.join(f'{k}={v}' for k, v in ulc_env.items())})" if ulc_env else ""
    if PRECISION:
        env_note += ", ulc --precision bf16"
    title = SECTION if threads == ALL_CORES and not ulc_env and not PRECISION else \
        f"{SECTION} ({threads} thread{'s' if threads > 1 else ''}{env_note})"
    section = (
        f"{title}\n\n"
        f"`{cmd}` — {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}; {os.cpu_count()} cores "
        f"({cpu_model()}), Linux {platform.release()}; {versions()}; {dnnl}; {threads} "
        f"thread{'s' if threads > 1 else ''}{env_note}.\n\n"
        "Random-init models exported by torch.onnx.export at opset 17 with dynamic batch axes: torchvision\n"
        "ResNet-18; transformers ViTForImageClassification shaped like ViT-S/16 (hidden 384, 12 layers,\n"
        "6 heads, MLP 1536, 1000 labels); transformers GPT2LMHeadModel shaped like DistilGPT2 (6 layers,\n"
        "n_embd 768, 12 heads, vocabulary 50257; input_ids + an all-ones attention_mask, 128 tokens).\n"
        "Per case and round, in alternating order with the same thread count: ulc as a subprocess\n"
        "(`ulc run --repeat R+1`: the first run plans, the median of the other R is timed inside the\n"
        "process) and one onnxruntime child per case that lives for the whole bench (session created\n"
        "and run once before the rounds; R session.run calls from Python per round;\n"
        "intra_op_num_threads = threads, inter_op 1, the default ORT_ENABLE_ALL optimizations). Each\n"
        "figure is the median of the per-round medians. GFLOP counts 2 x MACs of Conv/MatMul/Gemm with\n"
        "the run's shapes; the sgemm peak is bench/sgemm_peak.c (oneDNN dnnl_sgemm) in the same run.\n"
        "GFLOP counts direct convolution's work; ulc runs 3x3 stride-1 convolutions as Winograd\n"
        "products with 2.25-4x fewer multiplies, so its GFLOP/s can pass the sgemm peak.\n"
        "Max rel err is max |ulc - ort| / max |ort| over each output, worst over the rounds. Peak RSS\n"
        "is each child's ru_maxrss (onnxruntime's includes Python, numpy and safetensors). With the\n"
        "benchmark venv (`make bench-env`) two onnxruntime peers run in the same rounds: the newest\n"
        "release, from that venv (the targets' peer and the outputs' reference), and the version the\n"
        "test requirements pin; who goes first rotates each round.\n\n"
        + ("With --precision bf16, ulc's linear layers (products with a constant weight, packed once per\n"
           "plan) take their input and weight rounded to bfloat16 and sum in float32; everything else,\n"
           "onnxruntime included, is float32. Outputs are held to bfloat16's bar (3e-2) instead of 1e-4.\n\n"
           if PRECISION else "") +
        f"{text}\n")
    replace_doc_section(title, section)


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds (default 5)")
    ap.add_argument("--threads", type=int, default=ALL_CORES,
                    help="threads for both runtimes (default: every core available)")
    ap.add_argument("--seconds", type=float, default=0.5,
                    help="about how long one side's timed runs of a case take per round, at least 3 "
                         "runs (default 0.5)")
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {','.join(CASES)}")
    ap.add_argument("--no-ops", action="store_true",
                    help="skip the per-op breakdowns (whole-model profiles and one-node models)")
    ap.add_argument("--op-threads", type=int, default=1,
                    help="threads for the per-op breakdown (default 1: kernel speed without threading "
                         "effects)")
    ap.add_argument("--ulc-env", action="append", default=[], metavar="VAR=VALUE",
                    help="extra environment for ulc (e.g. OMP_DYNAMIC=true); repeatable; the doc "
                         "section then gets its own title")
    ap.add_argument("--op-seconds", type=float, default=0.1,
                    help="timing budget per one-node model and runtime (default 0.1)")
    ap.add_argument("--newest-ort", metavar="PYTHON",
                    help="interpreter whose onnxruntime is the newest peer (default: the benchmark venv's, "
                         "$ULC_BENCH_VENV or .bench-venv, when it has one; the pinned one is then timed too)")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                    help="ulc's --precision (bf16: linear layers in bfloat16 with float32 sums; the doc "
                         "section then gets its own title)")
    ap.add_argument("--write-doc", action="store_true", help="rewrite the section in docs/benchmarks.md")
    args = ap.parse_args()
    global REL_TOL
    if args.precision == "bf16":
        PRECISION[:] = ["--precision", "bf16"]
        REL_TOL = REL_TOL_BF16
    cases = [c for c in args.cases.split(",") if c]
    bad = [c for c in cases if c not in CASES]
    if bad or not cases:
        ap.error(f"unknown case(s) {bad}; choose from {', '.join(CASES)}")
    if args.rounds < 1 or args.threads < 1:
        ap.error("--rounds and --threads must be at least 1")
    for exe, what in ((ULC, "ulc"), (SGEMM, "sgemm_peak")):
        if not Path(exe).exists():
            raise SystemExit(f"{exe}: no {what} binary (run `make build`)")
    threads = args.threads
    for kv in args.ulc_env:
        k, eq, v = kv.partition("=")
        if not eq or not k:
            ap.error(f"--ulc-env needs VAR=VALUE, not '{kv}'")
        ULC_ENV[k] = v

    global PEERS
    PEERS = ort_peers(args.newest_ort)
    print("onnxruntime peers: " + ", ".join(f"{k} {v[1]} ({v[0]})" for k, v in PEERS.items()), flush=True)
    paths = {c: make_model(CASES[c][0]) for c in cases}
    inputs = {c: make_inputs(c) for c in cases}
    out_u = {c: OUT / f"{c}.ulc.safetensors" for c in cases}
    out_o = {c: OUT / f"{c}.ort.safetensors" for c in cases}
    load = [os.getloadavg()[0]]

    # FLOPs from one onnxruntime run with every intermediate value captured; the same values
    # feed the per-op breakdown
    flops, ops = {}, {}
    for c in cases:
        m = load_graph(paths[c])
        vals = capture(m, inputs[c][1], threads)
        flops[c], unknown = count_flops(m, vals)
        if unknown:
            print(f"{c}: {unknown} Conv/MatMul/Gemm nodes without shapes (not counted)")
        if not args.no_ops:
            t0 = time.perf_counter()
            ops[c] = op_breakdown(c, m, vals, args.op_threads, args.op_seconds)
            print(f"{c}: {len(ops[c]['rows'])} one-node models timed in {time.perf_counter() - t0:.0f} s",
                  flush=True)
        del m, vals

    # round 0, untimed: checks the outputs and picks R per case
    res = {c: {"flops": flops[c], "ulc_all": [], "ort_all": [], "pin_all": [], "rel": 0.0, "rss_u": []}
           for c in cases}
    workers = {(c, k): OrtWorker(paths[c], inputs[c][0], threads, py) for c in cases
               for k, (py, _) in PEERS.items()}
    for c in cases:
        r, w = res[c], workers[c, "ort"]
        r.update(ort_create=w.create, ort_first=w.first)
        u = run_ulc(paths[c], inputs[c][0], out_u[c], threads, 2)
        o_med, _ = w.run(2, out_o[c])
        if "error" in u:
            r["error"] = u["error"]
            print(f"{c}: {u['error']}", flush=True)
            continue
        r["rel"] = compare(out_u[c], out_o[c])
        r["reps"] = int(min(50, max(3, round(args.seconds * 1e3 / max(u["median"], o_med)))))
        print(f"{c}: R = {r['reps']}, max rel err {r['rel']:.2g}", flush=True)

    peaks, dnnl = [], ""
    for k in range(args.rounds):
        p, dnnl = sgemm_peak(threads)
        peaks.append(p)
        msg = [f"sgemm {p:.1f} GFLOP/s"]
        for c in cases:
            r = res[c]
            reps = r.get("reps", 5)
            sides = ["ulc", *PEERS]
            sides = sides[k % len(sides):] + sides[:k % len(sides)]  # who goes first rotates
            for side in sides:
                if side in PEERS:
                    o_med, o_min = workers[c, side].run(reps, out_o[c])
                    r[f"{side}_all"].append(o_med)
                    r[f"{side}_min"] = min(r.get(f"{side}_min", o_min), o_min)
                elif not r.get("error"):
                    u = run_ulc(paths[c], inputs[c][0], out_u[c], threads, reps)
                    if "error" in u:
                        r["error"] = u["error"]
                        continue
                    r["ulc_all"].append(u["median"])
                    r["ulc_min"] = min(r.get("ulc_min", u["min"]), u["min"])
                    r["rss_u"].append(u["rss"])
                    r.update(ulc_first=u["first"], act=u["act"])
            if not r.get("error"):
                workers[c, "ort"].run(1, out_o[c])  # the newest peer's outputs are the reference
                r["rel"] = max(r["rel"], compare(out_u[c], out_o[c]))
                msg.append(f"{c} ulc {r['ulc_all'][-1]:.1f} / ort {r['ort_all'][-1]:.1f} ms")
            else:
                msg.append(f"{c} ort {r['ort_all'][-1]:.1f} ms (ulc failed)")
        print(f"round {k + 1}/{args.rounds}: " + ", ".join(msg), flush=True)
    for (c, k), w in workers.items():
        res[c][f"rss_{k}"] = w.close()
    load.append(os.getloadavg()[0])

    med = statistics.median
    for c in cases:
        r = res[c]
        r["ort"] = med(r["ort_all"])
        if r["pin_all"]:
            r["pin"] = med(r["pin_all"])
        if not r.get("error"):
            r["ulc"] = med(r["ulc_all"])
            r["rss_ulc"] = med(r["rss_u"])
    peak = max(peaks)  # other load only ever lowers it: the best round is the machine's peak

    profiles = {}
    if not args.no_ops:  # after the timed rounds: profiling costs time of its own
        for c in cases:
            profiles[c] = whole_profiles(c, paths[c], inputs[c][0], threads, max(5, res[c].get("reps", 5)))

    text = report(res, peak, peaks, threads, args.rounds, load)
    if ops:
        text += "\n\n" + profiles_report(res, profiles, threads)
        text += "\n\n" + ops_report(res, ops, args.op_threads)
    print()
    print(text)
    if args.write_doc:
        write_doc(text, threads, dnnl, ULC_ENV)
    return 0


if __name__ == "__main__":
    sys.exit(main())
