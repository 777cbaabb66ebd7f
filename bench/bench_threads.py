"""Threads under load: ulc's default thread count against `--threads 1`, with 0, 2 and 4 busy
processes on the machine (issue 16, item 7: the default must never be more than 1.2x slower).

Jobs, each run as the user runs it (a fresh process; OMP_WAIT_POLICY and GOMP_SPINCOUNT
removed from the environment, so ulc bounds its threads' spinning itself):

  demo      the README's main job: ulc models/digits/digits_resnet.onnx --forget
            models/digits/forget_digit.json -o OUT -q (RFA, 5 epochs of batch 128)
  batch1    the same with a spec of batch_size 1 and one epoch (1,437 steps of one row)
  eval      ulc eval of the digits model on the test digits (--batch 64)
  resnet18  ulc run of a ResNet-18 (torchvision layout, random weights, made here with ulc's own
            builder from a safetensors state_dict) at 64x64, batch 8, --repeat 5

A busy process is `sh -c 'while :; do :; done'`, started before the measurements of a load level
and killed after. Each repeat runs every job once with the default and once with --threads 1, in
alternating order; the figure is each side's median wall time over the repeats and the ratio of
the medians (default / one thread). Every job also checks that both sides wrote the same bytes:
the runtime's results do not depend on the thread count.

    .venv/bin/python bench/bench_threads.py [--repeats 5] [--loads 0,2,4] [--jobs demo,batch1,...]
        [--write-doc]

--write-doc puts the table into docs/benchmarks.md between this script's markers.
"""
import argparse
import datetime
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_io import cpu_model, replace_marked_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ULC = os.environ.get("ULC_BIN", str(ROOT / "build" / "ulc"))
DIGITS = ROOT / "models" / "digits"
OUT = ROOT / "bench" / "out" / "threads"
SECTION = "## Threads under load"
BEGIN, END = "<!-- bench_threads.py: begin -->", "<!-- bench_threads.py: end -->"
TARGET = 1.2


def busy(n):
    return [subprocess.Popen(["sh", "-c", "while :; do :; done"], start_new_session=True)
            for _ in range(n)]


def stop(procs):
    for p in procs:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def env():
    e = dict(os.environ)
    for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS"):
        e.pop(k, None)
    return e


def prepare(tmp):
    spec = json.loads((DIGITS / "forget_digit.json").read_text())
    spec["data"] = {k: str(DIGITS / v) for k, v in spec["data"].items()}
    (tmp / "demo.json").write_text(json.dumps(spec))
    spec["train"] = dict(spec["train"], batch_size=1, epochs=1)
    (tmp / "batch1.json").write_text(json.dumps(spec))
    import numpy as np
    import torch
    import torchvision
    from safetensors.torch import save_file
    torch.manual_seed(0)
    sd = torchvision.models.resnet18(num_classes=10).state_dict()
    save_file({k: v.contiguous() for k, v in sd.items() if not k.endswith("num_batches_tracked")},
              str(tmp / "r18.safetensors"))
    subprocess.run([ULC, "convert", tmp / "r18.safetensors", "-o", tmp / "r18.onnx"], check=True,
                   env=env())
    from safetensors.numpy import save_file as save_np
    save_np({"input": np.random.default_rng(0).standard_normal((8, 3, 64, 64)).astype(np.float32)},
            str(tmp / "r18_in.safetensors"))


def command(job, tmp, threads, out):
    t = [] if threads == 0 else ["--threads", str(threads)]
    if job in ("demo", "batch1"):
        return [ULC, DIGITS / "digits_resnet.onnx", "--forget", tmp / f"{job}.json", "-o", out,
                "-q", *t]
    if job == "eval":
        return [ULC, "eval", DIGITS / "digits_resnet.onnx", "--data", DIGITS / "test.safetensors",
                "--json", *t]
    return [ULC, "run", tmp / "r18.onnx", "--input", tmp / "r18_in.safetensors", "-o", out,
            "--repeat", "5", *t]


def run_once(job, tmp, threads, i):
    ext = ".onnx" if job in ("demo", "batch1") else ".safetensors"
    out = tmp / (f"{job}-t{threads}-{i}" + ext)
    t0 = time.perf_counter()
    p = subprocess.run(command(job, tmp, threads, out), capture_output=True, env=env())
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"{job} (threads {threads}) failed: {p.stderr.decode()[-2000:]}")
    data = out.read_bytes() if out.exists() else p.stdout
    if job == "eval":  # drop the timing fields; the scores must agree
        d = json.loads(p.stdout)
        for k in list(d):
            if "second" in k or k.endswith("_s") or "time" in k:
                d.pop(k)
        data = json.dumps(d, sort_keys=True).encode()
    if out.exists():
        out.unlink()
    return wall, data


def measure(jobs, loads, repeats, tmp):
    rows = []
    for load in loads:
        procs = busy(load)
        try:
            time.sleep(0.5)
            for job in jobs:
                walls = {0: [], 1: []}
                outs = {0: set(), 1: set()}
                for i in range(repeats):
                    for threads in ((0, 1) if i % 2 == 0 else (1, 0)):
                        w, data = run_once(job, tmp, threads, i)
                        walls[threads].append(w)
                        outs[threads].add(hash(data))
                same = len(outs[0] | outs[1]) == 1
                d, one = statistics.median(walls[0]), statistics.median(walls[1])
                rows.append({"load": load, "job": job, "default_s": d, "one_s": one,
                             "ratio": d / one, "same_bytes": same,
                             "default_all": walls[0], "one_all": walls[1]})
                print(f"load {load}  {job:9s} default {d:7.3f} s  --threads 1 {one:7.3f} s  "
                      f"ratio {d / one:5.2f}  same bytes: {same}", flush=True)
        finally:
            stop(procs)
    return rows


def render(rows, repeats):
    cores = len(os.sched_getaffinity(0))
    lines = [SECTION, BEGIN, "",
             f"`bench/bench_threads.py`, {datetime.date.today()}, {cpu_model()}, {cores} cores; "
             f"median of {repeats} runs per cell, default and `--threads 1` alternating. A busy "
             "process is a shell loop. Target: the default at most "
             f"{TARGET}x the one-thread time at every load.", "",
             "| busy processes | job | default | `--threads 1` | default / one thread | same bytes |",
             "|---:|---|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['load']} | {r['job']} | {r['default_s']:.3f} s | {r['one_s']:.3f} s | "
                     f"{r['ratio']:.2f} | {'yes' if r['same_bytes'] else 'NO'} |")
    worst = max(r["ratio"] for r in rows)
    lines += ["", f"Worst ratio: {worst:.2f} (target <= {TARGET}).", "", END, ""]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--loads", default="0,2,4")
    ap.add_argument("--jobs", default="demo,batch1,eval,resnet18")
    ap.add_argument("--write-doc", action="store_true")
    a = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        prepare(tmp)
        rows = measure(a.jobs.split(","), [int(x) for x in a.loads.split(",")], a.repeats, tmp)
    (OUT / "results.json").write_text(json.dumps(rows, indent=1))
    text = render(rows, a.repeats)
    print(text)
    if a.write_doc:
        replace_marked_section(text, BEGIN, END)
    bad = [r for r in rows if not r["same_bytes"]]
    if bad:
        sys.exit("the default and --threads 1 wrote different bytes: " +
                 ", ".join(f"{r['job']} at load {r['load']}" for r in bad))


if __name__ == "__main__":
    main()
