"""ONNX import + export: `ulc convert` against Python's onnx.load + onnx.save, same run.

Generates (once, into bench/out/, git-ignored; reused when present) a ResNet-50-size model:
torchvision resnet50, random init (torch.manual_seed(0)), torch.onnx.export opset 17 (~100 MB).
Then runs every case --runs times, interleaved (the order rotates each round), after one untimed
warm-up each, and reports medians (and min / max):

  ulc          `ulc convert model.onnx -o out_ulc.onnx` (a subprocess: wall time, peak RSS)
               -- its wall time includes process start-up; Python's in-process figure does not
  python       a subprocess running `m = onnx.load(p); onnx.save(m, out)`: its whole wall time and
               peak RSS, and the load+save time measured inside it (the fair comparison: it leaves
               out interpreter start-up and `import onnx`; the headline speed-up uses it)
  ulc / python --external-data, and onnx.save(save_as_external_data=True, one file, 1 KiB
  (external)   threshold) -- unless --no-external
  cp           `cp model.onnx out_cp.onnx`: the kernel's file-copy floor, for reference

Every timed run starts from the same state (all untimed): the case's previous output is deleted,
dirty pages are synced, and the model is evicted from the page cache and read back with plain
read() calls, so it is warm and its page-cache folios are the same each time (a process that
mmaps the model is charged RSS for the page-cache folios it touches, and their size depends on
how the cache was filled). Peak RSS is GNU time's %M (the child's ru_maxrss).

Both sides' outputs are checked to be the same model (after the warm-up and again after the last
timed run), so a broken conversion is never timed. Targets (issue 2): ulc >= 5x faster than
Python's onnx.load + onnx.save, ulc peak RSS <= 1.2x the model's size.

  .venv/bin/python bench/bench_io.py [--runs 7] [--no-external] [--write-doc]
"""
import argparse
import datetime
import gc
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

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
ULC = os.environ.get("ULC_BIN", str(ROOT / "build" / "ulc"))
PY = sys.executable
TIME = "/usr/bin/time"

# Prints "load_seconds save_seconds" (perf_counter around each call) on its last line.
PY_CHILD = r"""
import sys, time, onnx
src, dst, ext = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
t0 = time.perf_counter()
m = onnx.load(src)
t1 = time.perf_counter()
if ext:
    onnx.save(m, dst, save_as_external_data=True, all_tensors_to_one_file=True,
              location=dst.rsplit("/", 1)[-1] + ".data", size_threshold=1024)
else:
    onnx.save(m, dst)
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def make_model():
    path = OUT / "resnet50_op17.onnx"
    if path.exists():
        return path
    import torch
    import torchvision
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"generating {path.relative_to(ROOT)} (torchvision resnet50, seed 0, opset 17) ...", flush=True)
    torch.manual_seed(0)
    m = torchvision.models.resnet50().eval()
    tmp = path.with_suffix(".tmp")
    with torch.no_grad():
        torch.onnx.export(m, torch.randn(1, 3, 224, 224), str(tmp), opset_version=17,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    os.replace(tmp, path)
    return path


def settle_input(model):
    """Evicts the model from the page cache and reads it back with read(): warm, same folios."""
    os.sync()
    fd = os.open(model, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        buf = bytearray(8 << 20)
        with os.fdopen(os.dup(fd), "rb", buffering=0) as f:
            while f.readinto(buf):
                pass
    finally:
        os.close(fd)


def remove(paths):
    for p in paths:
        if p.exists():
            p.unlink()


class Case:
    def __init__(self, name, cmd, outputs, python=False):
        self.name, self.cmd, self.outputs, self.python = name, cmd, outputs, python
        self.wall, self.rss, self.user, self.sys, self.load, self.save = [], [], [], [], [], []

    def run(self, model, record=True):
        """One run under GNU time. Peak RSS comes from time's own child, not from os.wait4 on a
        child of this (large) Python process: exec charges the pre-exec address space's high
        water mark to ru_maxrss, so a child exec'd straight from here would report ours."""
        remove(self.outputs)
        settle_input(model)
        fd, tfile = tempfile.mkstemp()
        os.close(fd)
        try:
            t0 = time.perf_counter()
            p = subprocess.run([TIME, "-f", "%M %U %S", "-o", tfile, *self.cmd],
                               capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if p.returncode != 0:
                raise SystemExit(f"{self.name}: {' '.join(self.cmd)} failed ({p.returncode}):\n{p.stderr}")
            rss_kb, user, syst = Path(tfile).read_text().split()[-3:]
        finally:
            os.unlink(tfile)
        if record:
            self.wall.append(wall)
            self.rss.append(int(rss_kb) * 1024)
            self.user.append(float(user))
            self.sys.append(float(syst))
            if self.python:
                load, save = map(float, p.stdout.strip().splitlines()[-1].split())
                self.load.append(load)
                self.save.append(save)

    @property
    def inner(self):
        return [a + b for a, b in zip(self.load, self.save)]


def sampled_rss(cmd, outputs, model):
    """Untimed: peak RssAnon / RssFile of the child, polled from /proc/PID/status while it runs
    (a lower bound of the true peaks, normally within a page or two)."""
    remove(outputs)
    settle_input(model)
    peak = {"RssAnon": 0, "RssFile": 0}
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    status = f"/proc/{p.pid}/status"
    while p.poll() is None:
        try:
            with open(status) as f:
                for line in f:
                    k, _, v = line.partition(":")
                    if k in peak:
                        peak[k] = max(peak[k], int(v.split()[0]) * 1024)
        except (OSError, ValueError, IndexError):
            pass
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode})")
    return peak


def strace_summary(cmd, outputs, model):
    """Untimed: the top syscalls by time, from one `strace -c` run (None without strace)."""
    if not shutil.which("strace"):
        return None
    remove(outputs)
    settle_input(model)
    fd, tfile = tempfile.mkstemp()
    os.close(fd)
    try:
        p = subprocess.run(["strace", "-f", "-c", "-o", tfile, *cmd], capture_output=True, text=True)
        text = Path(tfile).read_text()
    finally:
        os.unlink(tfile)
    if p.returncode != 0:
        return None
    rows = []
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 5 and re.fullmatch(r"[0-9.]+", f[0]) and f[-1] != "total":
            rows.append((float(f[0]), int(f[3]), f[-1]))
    return rows


def normalized(model_path):
    """The model as onnx loads it, external data pulled in, serialized deterministically; the
    data_location field that loading sets to DEFAULT on externalized tensors is cleared, so the
    result does not depend on which tensors a writer chose to externalize."""
    import onnx
    m = onnx.load(str(model_path))
    tensors = list(m.graph.initializer)
    for n in m.graph.node:
        for a in n.attribute:
            if a.HasField("t"):
                tensors.append(a.t)
    for t in tensors:
        if t.HasField("data_location") and t.data_location == onnx.TensorProto.DEFAULT:
            t.ClearField("data_location")
    return m.SerializeToString(deterministic=True)


def external_files(model_path):
    """{location: set of offsets} of the model's external tensors (the data itself not read)."""
    import onnx
    m = onnx.load(str(model_path), load_external_data=False)
    files = {}
    for t in m.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            kv = {e.key: e.value for e in t.external_data}
            files.setdefault(kv["location"], []).append(int(kv.get("offset", 0)))
    return files


def verify(model, plain, ext):
    """Both writers' outputs are the model we read; raises SystemExit otherwise."""
    ref = normalized(model)
    for path in plain + ext:
        if normalized(path) != ref:
            raise SystemExit(f"{path.name} is not the same model as {model.name}: "
                             "not benchmarking a broken conversion")
    notes = []
    for path in ext:
        files = external_files(path)
        if list(files) != [path.name + ".data"]:
            raise SystemExit(f"{path.name}: external data in {list(files)}, expected {path.name}.data")
        offs = files[path.name + ".data"]
        aligned = sum(o % 4096 == 0 for o in offs)
        notes.append(f"{path.name}: {len(offs)} tensors in {path.name}.data "
                     f"({(OUT / (path.name + '.data')).stat().st_size} bytes, {aligned} at 4 KiB-aligned offsets)")
    gc.collect()
    return notes


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def fmt_ms(s):
    return f"{s * 1000:.1f} ms"


def fmt_mb(b):
    return f"{b / 1e6:.1f} MB"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7, help="timed runs of each case (default 7)")
    ap.add_argument("--no-external", action="store_true", help="skip the external-data cases")
    ap.add_argument("--write-doc", action="store_true", help="rewrite the section in docs/benchmarks.md")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    if not Path(ULC).exists():
        raise SystemExit(f"{ULC} not found: build it first (cmake --build build)")

    model = make_model()
    size = model.stat().st_size
    o = {k: OUT / f"out_{k}.onnx" for k in ("ulc", "py", "ulc_ext", "py_ext", "cp")}
    data = {k: OUT / f"out_{k}.onnx.data" for k in ("ulc_ext", "py_ext")}
    ulc = Case("ulc convert", [ULC, "convert", str(model), "-o", str(o["ulc"])], [o["ulc"]])
    py = Case("python onnx.load + onnx.save", [PY, "-c", PY_CHILD, str(model), str(o["py"]), "0"],
              [o["py"]], python=True)
    cases = [ulc, py]
    if not args.no_external:
        ulc_ext = Case("ulc convert --external-data",
                       [ULC, "convert", str(model), "-o", str(o["ulc_ext"]), "--external-data"],
                       [o["ulc_ext"], data["ulc_ext"]])
        py_ext = Case("python onnx.save(save_as_external_data)",
                      [PY, "-c", PY_CHILD, str(model), str(o["py_ext"]), "1"],
                      [o["py_ext"], data["py_ext"]], python=True)
        cases += [ulc_ext, py_ext]
    cp = Case("cp (file copy floor)", ["cp", str(model), str(o["cp"])], [o["cp"]])
    cases.append(cp)

    plain_out = [o["ulc"], o["py"]]
    ext_out = [] if args.no_external else [o["ulc_ext"], o["py_ext"]]

    for c in cases:  # warm-up, untimed
        c.run(model, record=False)
    verify(model, plain_out, ext_out)

    for i in range(args.runs):
        k = i % len(cases)
        for c in cases[k:] + cases[:k]:
            c.run(model)
        print(f"round {i + 1}/{args.runs}: " +
              ", ".join(f"{c.name.split(' (')[0]} {fmt_ms(c.wall[-1])}" for c in cases), flush=True)

    ext_notes = verify(model, plain_out, ext_out)  # the timed runs' outputs, too
    mem = {c.name: sampled_rss(c.cmd, c.outputs, model) for c in cases if not c.python}
    strace = strace_summary(ulc.cmd, ulc.outputs, model)
    remove([o["cp"]])

    med = statistics.median
    table = ["| what | median | min | max | peak RSS | peak RSS / model |", "|---|---|---|---|---|---|"]

    def row(name, xs, rss):
        r = f"{fmt_mb(med(rss))} | {med(rss) / size:.2f}×" if rss else "— | —"
        table.append(f"| {name} | {fmt_ms(med(xs))} | {fmt_ms(min(xs))} | {fmt_ms(max(xs))} | {r} |")

    for c in cases:
        if c.python:
            row(f"{c.name} (timed inside the process)", c.inner, None)
            row(f"{c.name.split(' ')[0]} subprocess (start-up + import onnx + {c.name.split(' ', 1)[1]})",
                c.wall, c.rss)
        else:
            row(c.name, c.wall, c.rss)

    speed = med(py.inner) / med(ulc.wall)
    summary = [
        f"- model: torchvision ResNet-50 (random init, seed 0), opset 17, {fmt_mb(size)} ({size} bytes); "
        f"{args.runs} interleaved runs of each case, model warm in the page cache",
        f"- **speed-up vs in-process onnx.load + onnx.save: {speed:.1f}×** (target ≥ 5×: "
        f"{'met' if speed >= 5 else 'NOT met'}); vs the whole Python subprocess: {med(py.wall) / med(ulc.wall):.1f}×",
        f"- **ulc peak RSS / model size: {med(ulc.rss) / size:.3f}×** (target ≤ 1.2×: "
        f"{'met' if med(ulc.rss) / size <= 1.2 else 'NOT met'}); Python's: {med(py.rss) / size:.2f}×",
        f"- Python's in-process time: onnx.load {fmt_ms(med(py.load))}, onnx.save {fmt_ms(med(py.save))} (medians)",
        f"- ulc peak RSS over the runs: {fmt_mb(min(ulc.rss))} to {fmt_mb(max(ulc.rss))}; CPU time (median, "
        f"GNU time's 10 ms resolution): user {med(ulc.user):.2f} s, system {med(ulc.sys):.2f} s",
        f"- ulc / cp wall time: {med(ulc.wall) / med(cp.wall):.2f}× (a plain file copy: the floor for "
        "writing these bytes)",
    ]
    if not args.no_external:
        summary.append(f"- external data: speed-up vs in-process load+save {med(py_ext.inner) / med(ulc_ext.wall):.1f}×; "
                       f"ulc peak RSS / model size {med(ulc_ext.rss) / size:.3f}×")
        summary += [f"  - {n}" for n in ext_notes]
    for name, m in mem.items():
        summary.append(f"- {name}, sampled peaks (one untimed run, /proc/PID/status): "
                       f"RssAnon {fmt_mb(m['RssAnon'])}, RssFile {fmt_mb(m['RssFile'])}")
    if strace:
        top = sorted(strace, reverse=True)[:3]
        summary.append("- ulc convert syscalls (one untimed `strace -f -c` run): " + ", ".join(
            f"{n} {calls} calls {pct:.0f}% of syscall time" for pct, calls, n in top))
    text = "\n".join(table + [""] + summary)
    print()
    print(text)

    if args.write_doc:
        write_doc(text, args)
    return 0


SECTION = "## ONNX import + export"
INTRO = ("# Benchmarks\n\n"
         "Measured with the project's own `bench/` scripts, as ratios against the named peer in the same\n"
         "run, medians of several interleaved runs (the machine is shared and noisy). Timing is never part\n"
         "of the pass/fail tests.\n")


def write_doc(text, args):
    cmd = " ".join([".venv/bin/python", "bench/bench_io.py", *sys.argv[1:]])
    import onnx
    ulc_version = subprocess.run([ULC, "--version"], capture_output=True, text=True).stdout.strip()
    section = (
        f"{SECTION}\n\n"
        f"`{cmd}` — {datetime.date.today().isoformat()}; {os.cpu_count()} cores ({cpu_model()}), "
        f"Linux {platform.release()}; {ulc_version}, Python {platform.python_version()}, onnx {onnx.__version__}.\n\n"
        "Each timed run starts with the case's previous output deleted, dirty pages synced, and the\n"
        "model evicted from the page cache and read back with read() (untimed), so every run sees the\n"
        "same warm cache and neither side pays for the other's writeback. ulc's time includes its\n"
        "process start-up; the headline ratio is against Python's load+save timed inside its process.\n"
        "Peak RSS is the child's ru_maxrss. ulc maps the model read-only, so its RSS is mostly clean\n"
        "page-cache pages of that mapping (RssFile below), not memory it allocated (RssAnon); how many\n"
        "pages a fault maps depends on how the cache was filled (its folio sizes), which is why the\n"
        "model is re-read the same way before every run.\n\n"
        f"{text}\n")
    replace_doc_section(SECTION, section)


def replace_doc_section(title, section):
    """Puts section (starting with its '## title' line) into docs/benchmarks.md in place of the
    one with that title, or at the end."""
    doc = ROOT / "docs" / "benchmarks.md"
    body = doc.read_text() if doc.exists() else INTRO
    pattern = re.compile("^" + re.escape(title) + r"\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(body):
        body = pattern.sub(lambda _: section.rstrip("\n") + "\n\n", body, count=1)
    else:
        body = body.rstrip("\n") + "\n\n" + section
    doc.write_text(body.rstrip("\n") + "\n")
    print(f"wrote {doc.relative_to(ROOT)}")


def replace_marked_section(section, begin, end):
    """Puts section ('## heading', then the begin marker ... the end marker) into
    docs/benchmarks.md in place of the one between the same markers (with the heading just above
    them), or at the end. The heading comes before the begin marker, so another script's rewrite
    of the section above (which runs to the next '## ') never takes the marker with it."""
    doc = ROOT / "docs" / "benchmarks.md"
    body = doc.read_text() if doc.exists() else INTRO
    pattern = re.compile(r"^## [^\n]*\n+" + re.escape(begin) + r".*?" + re.escape(end) + r"\n?",
                         re.S | re.M)
    if pattern.search(body):
        body = pattern.sub(lambda _: section, body, count=1)
    else:
        body = body.rstrip("\n") + "\n\n" + section
    doc.write_text(body.rstrip("\n") + "\n")
    print(f"wrote {doc.relative_to(ROOT)}")


if __name__ == "__main__":
    sys.exit(main())
