"""Runs the ONNX backend node tests (onnx/backend/test/data/node in the onnx wheel) through
`ulc run`, for every test whose model uses only ops the CPU backend claims (`ulc ops`).

A node test is a directory holding model.onnx (usually one node) and test_data_set_*/ with
input_<i>.pb and output_<i>.pb (onnx.TensorProto). For each data set this module

  1. converts the inputs into one safetensors file keyed by the graph's input names, in order
     (inputs that are also initializers are not fed), cached under
     ULC_FIXTURE_DIR/node_inputs-onnx<version>-v<N>/ (default build/fixtures);
  2. runs `ulc run model.onnx --input IN.safetensors -o OUT.safetensors --threads 1`;
  3. compares every graph output with output_<i>.pb the way onnx's backend runner does
     (onnx/backend/test/runner: numpy.testing.assert_allclose with the loader's defaults
     rtol=1e-3, atol=1e-7 — the node data has no per-test tolerances — NaNs equal), except
     stricter where the runner is loose: dtype and shape must match exactly, and integers and
     booleans must be equal.

A case's outcome is "pass" or one failure category (the first that applies, outputs in order):

  unsupported-dtype  an input or output safetensors cannot carry (string, complex, the FNUZ
                     float8 types, 4-bit types, sequences, optionals); the case is not run
  unsupported        ulc exited 4 (an op, attribute or dtype ulc does not handle)
  invalid            ulc exited 2 (ulc refused the model or the inputs as invalid)
  error              any other non-zero exit that is not a crash (1 usage, 3 I/O, 5 memory)
  crash              a signal, exit 70 (internal error), or a sanitizer report on stderr
  timeout            ulc ran past the time limit
  missing-output     ulc exited 0 but an output is absent from OUT (or OUT is unreadable)
  dtype              an output has another dtype than the reference
  shape              an output has another shape than the reference
  values             values outside the tolerance (or unequal integers/booleans)

tests/conformance/node_expected_failures.txt lists the cases known to fail, one per line:
`test_name<TAB>category: explanation`. The pytest suite (test_node_run.py) requires every other
eligible case to pass and every listed case to fail with its listed category.

As a script it runs everything and writes docs/ops.md (per claimed op: node-test directories
whose graph uses it, how many ran, passed, and each failing case with its reason):

  .venv/bin/python tests/conformance/run_node_tests.py [--ulc build/ulc] [--jobs N]
      [--out docs/ops.md] [--only REGEX]

It also prints the failing cases that are not (or differently) listed, in the list's format.
"""
import argparse
import concurrent.futures
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = Path(onnx.__file__).resolve().parent / "backend" / "test" / "data" / "node"
EXPECTED_FILE = Path(__file__).resolve().parent / "node_expected_failures.txt"
OPS_MD = ROOT / "docs" / "ops.md"

# onnx/backend/test/loader: the tolerances every node test is checked with
RTOL = 1e-3
ATOL = 1e-7

CACHE_VERSION = "2"  # bump when the input conversion changes
TIMEOUT_S = 120       # per ulc run (the ASan build is slow)

CATEGORIES = ("unsupported-dtype", "unsupported", "invalid", "error", "crash", "timeout",
              "missing-output", "dtype", "shape", "values")

# Ops `ulc ops` may claim although no node-test directory of this onnx wheel exercises them,
# each with the reason. test_node_run.py checks that every entry is claimed and really has none.
OPS_WITHOUT_NODE_TESTS = {
}

DEFAULT_DOMAINS = ("", "ai.onnx")

# ONNX element type -> safetensors dtype name (the ones ulc's reader maps: ir/dtype.c). Types
# missing here cannot be carried by safetensors.
ST_NAMES = {
    TensorProto.FLOAT: "F32", TensorProto.DOUBLE: "F64", TensorProto.FLOAT16: "F16",
    TensorProto.BFLOAT16: "BF16", TensorProto.INT8: "I8", TensorProto.INT16: "I16",
    TensorProto.INT32: "I32", TensorProto.INT64: "I64", TensorProto.UINT8: "U8",
    TensorProto.UINT16: "U16", TensorProto.UINT32: "U32", TensorProto.UINT64: "U64",
    TensorProto.BOOL: "BOOL", TensorProto.FLOAT8E4M3FN: "F8_E4M3",
    TensorProto.FLOAT8E5M2: "F8_E5M2",
}
# safetensors dtype -> numpy dtype of its storage (BF16 and F8 are stored as raw bits)
ST_STORAGE = {
    "F32": np.float32, "F64": np.float64, "F16": np.float16, "BF16": np.uint16,
    "I8": np.int8, "I16": np.int16, "I32": np.int32, "I64": np.int64, "U8": np.uint8,
    "U16": np.uint16, "U32": np.uint32, "U64": np.uint64, "BOOL": np.bool_,
    "F8_E4M3": np.uint8, "F8_E5M2": np.uint8,
}
ST_ALIGN_ORDER = ["F64", "I64", "U64", "F32", "I32", "U32", "F16", "BF16", "I16", "U16",
                  "I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2"]


# ---------------------------------------------------------------- safetensors (all dtypes)

def st_write(path, tensors):
    """Writes {name: (st_dtype, shape, bytes)} as safetensors, in the reference writer's layout
    (tensors by decreasing alignment then name, header padded with spaces to 8 bytes). Written
    to a temporary beside path and renamed into place, so concurrent writers are safe."""
    order = sorted(tensors, key=lambda n: (ST_ALIGN_ORDER.index(tensors[n][0]), n))
    header, off = {}, 0
    for name in order:
        dt, shape, data = tensors[name]
        header[name] = {"dtype": dt, "shape": [int(d) for d in shape],
                        "data_offsets": [off, off + len(data)]}
        off += len(data)
    text = json.dumps(header, separators=(",", ":")).encode() if header else b"{}"
    text += b" " * (-len(text) % 8)
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(text)))
            f.write(text)
            for name in order:
                f.write(tensors[name][2])
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def st_read(path):
    """Reads a safetensors file into {name: (st_dtype, shape tuple, bytes)}; ValueError when it
    is malformed."""
    blob = Path(path).read_bytes()
    if len(blob) < 8:
        raise ValueError(f"{path}: {len(blob)} bytes, too short for a safetensors file")
    (n,) = struct.unpack("<Q", blob[:8])
    if 8 + n > len(blob):
        raise ValueError(f"{path}: header of {n} bytes runs past the end")
    header = json.loads(blob[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        if not (0 <= a <= b <= len(blob) - base):
            raise ValueError(f"{path}: tensor {name!r} offsets {a}..{b} out of bounds")
        out[name] = (info["dtype"], tuple(info["shape"]), blob[base + a:base + b])
    return out


def st_to_numpy(dt, shape, data):
    """The values of a safetensors tensor as numpy: its own dtype for the numpy types, float32
    for BF16 and float8 (as onnx.numpy_helper.to_array gives them)."""
    if dt not in ST_STORAGE:
        raise ValueError(f"dtype {dt} is not known")
    raw = np.frombuffer(data, dtype=ST_STORAGE[dt])
    n = int(np.prod(shape, dtype=np.int64))
    if raw.size != n:
        raise ValueError(f"{dt}{list(shape)} needs {n} elements, the data holds {raw.size}")
    if dt == "BF16":
        vals = (raw.astype(np.uint32) << 16).view(np.float32)
    elif dt == "F8_E4M3":
        from onnx.numpy_helper import float8e4m3_to_float32
        vals = float8e4m3_to_float32(raw).astype(np.float32)
    elif dt == "F8_E5M2":
        from onnx.numpy_helper import float8e5m2_to_float32
        vals = float8e5m2_to_float32(raw).astype(np.float32)
    else:
        vals = raw
    return vals.reshape(shape)


# ---------------------------------------------------------------- node tests

@dataclass
class Case:
    name: str
    dir: Path
    ops: set           # default-domain op types used anywhere in the model (subgraphs too)
    other_ops: set     # "domain.op" of nodes in other domains
    inputs: list       # graph input names, in order, initializers left out
    outputs: list      # graph output names, in order
    in_types: list     # their declared ONNX element types (0 for a non-tensor)
    out_types: list
    io_problem: str = ""  # why safetensors cannot carry this case's inputs/outputs ("" if it can)

    @property
    def model(self):
        return self.dir / "model.onnx"

    def datasets(self):
        return sorted(self.dir.glob("test_data_set_*"))


@dataclass
class Result:
    name: str
    category: str = "pass"  # "pass" or one of CATEGORIES
    detail: str = ""

    @property
    def passed(self):
        return self.category == "pass"

    def __str__(self):
        return "pass" if self.passed else f"{self.category}: {self.detail}"


def _graph_ops(graph, ops, other):
    for node in graph.node:
        if node.domain in DEFAULT_DOMAINS:
            ops.add(node.op_type)
        else:
            other.add(f"{node.domain}.{node.op_type}")
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                _graph_ops(attr.g, ops, other)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    _graph_ops(g, ops, other)


def _io_problem(kind, vi):
    t = vi.type
    which = t.WhichOneof("value")
    if which != "tensor_type":
        return f"{kind} {vi.name!r} is a {which or 'value of unknown type'}, not a tensor"
    et = t.tensor_type.elem_type
    if et not in ST_NAMES:
        return f"{kind} {vi.name!r} is {TensorProto.DataType.Name(et)}, which safetensors cannot hold"
    return ""


def load_case(d):
    m = onnx.load(str(d / "model.onnx"), load_external_data=False)
    ops, other = set(), set()
    _graph_ops(m.graph, ops, other)
    inits = {t.name for t in m.graph.initializer}
    ins = [i for i in m.graph.input if i.name not in inits]
    problems = [_io_problem("input", v) for v in ins] + \
        [_io_problem("output", v) for v in m.graph.output]
    return Case(name=d.name, dir=d, ops=ops, other_ops=other, inputs=[i.name for i in ins],
                outputs=[o.name for o in m.graph.output],
                in_types=[i.type.tensor_type.elem_type for i in ins],
                out_types=[o.type.tensor_type.elem_type for o in m.graph.output],
                io_problem=next((p for p in problems if p), ""))


_ALL_CASES = None


def all_cases():
    """Every node-test directory of the onnx wheel, as Cases (sorted by name)."""
    global _ALL_CASES
    if _ALL_CASES is None:
        dirs = sorted(p.parent for p in NODE_DIR.glob("*/model.onnx")) if NODE_DIR.is_dir() else []
        _ALL_CASES = [load_case(d) for d in dirs]
    return _ALL_CASES


def eligible(case, claimed):
    """A case runs when every node of its model (subgraphs included) is a default-domain op
    the backend claims."""
    return not case.other_ops and case.ops <= set(claimed)


def claimed_ops(ulc):
    """The ops `ulc ops` lists (one per line)."""
    r = subprocess.run([ulc, "ops"], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"`{ulc} ops` exited {r.returncode}: {r.stderr.strip()}")
    ops = [line.strip() for line in r.stdout.splitlines() if line.strip()]
    if not ops:
        raise RuntimeError(f"`{ulc} ops` listed no ops")
    return ops


# ---------------------------------------------------------------- inputs and references

def _legacy_bf16(tp, declared):
    """onnx's data for bfloat16 values (the Cast/CastLike tests) is stored as UINT16 tensors of
    the bits; the model's declared type says what they are."""
    return declared == TensorProto.BFLOAT16 and tp.data_type == TensorProto.UINT16


def _tensor_bytes(tp, declared):
    """(st_dtype, shape, bytes) of a TensorProto fed as a graph input of element type
    `declared`. BF16 and float8 are taken as stored bits (raw_data or int32_data), never
    through float32."""
    if _legacy_bf16(tp, declared):
        return "BF16", tuple(tp.dims), numpy_helper.to_array(tp).astype("<u2").tobytes()
    if tp.data_type != declared:
        raise ValueError(f"a {TensorProto.DataType.Name(tp.data_type)} tensor for an input "
                         f"declared {TensorProto.DataType.Name(declared)}")
    dt = ST_NAMES.get(tp.data_type)
    if dt is None:
        raise ValueError(f"{TensorProto.DataType.Name(tp.data_type)} cannot be stored in safetensors")
    shape = tuple(tp.dims)
    if tp.data_location == TensorProto.EXTERNAL:
        raise ValueError("external data in a test tensor")
    if dt in ("BF16", "F8_E4M3", "F8_E5M2"):
        store = ST_STORAGE[dt]
        data = tp.raw_data if tp.HasField("raw_data") else np.asarray(tp.int32_data).astype(store).tobytes()
    else:
        arr = numpy_helper.to_array(tp)
        want = np.dtype(ST_STORAGE[dt])
        if arr.dtype != want:
            raise ValueError(f"onnx gave {arr.dtype} for {dt}")
        data = np.ascontiguousarray(arr).astype(want.newbyteorder("<"), copy=False).tobytes()
    n = int(np.prod(shape, dtype=np.int64))
    if len(data) != n * np.dtype(ST_STORAGE[dt]).itemsize:
        raise ValueError(f"{len(data)} bytes for {dt}{list(shape)}")
    return dt, shape, data


def _load_tensor(path):
    tp = TensorProto()
    tp.ParseFromString(Path(path).read_bytes())
    return tp


def cache_dir(fixture_dir=None):
    base = Path(fixture_dir or os.environ.get("ULC_FIXTURE_DIR", ROOT / "build" / "fixtures"))
    d = base / f"node_inputs-onnx{onnx.__version__}-v{CACHE_VERSION}"
    d.mkdir(parents=True, exist_ok=True)
    return d


def input_file(case, dataset, cache):
    """The safetensors file of a data set's inputs (made once, then reused from the cache)."""
    path = cache / f"{case.name}.{dataset.name}.safetensors"
    if path.exists():
        return path
    files = sorted(dataset.glob("input_*.pb"), key=lambda p: int(p.stem.split("_")[1]))
    if len(files) != len(case.inputs):
        raise ValueError(f"{dataset.name} has {len(files)} inputs, the graph {len(case.inputs)}")
    tensors = {}
    for name, et, f in zip(case.inputs, case.in_types, files):
        tensors[name] = _tensor_bytes(_load_tensor(f), et)
    st_write(path, tensors)
    return path


def reference_outputs(case, dataset):
    files = sorted(dataset.glob("output_*.pb"), key=lambda p: int(p.stem.split("_")[1]))
    return [_load_tensor(f) for f in files]


# ---------------------------------------------------------------- comparison

def compare(name, got, ref, declared=None, rtol=RTOL, atol=ATOL):
    """Compares ulc's output `got` = (st_dtype, shape, bytes) with the reference TensorProto of
    a graph output declared with element type `declared` (default: the reference's own type);
    returns None when they agree, else (category, message)."""
    declared = ref.data_type if declared is None else declared
    legacy = _legacy_bf16(ref, declared)
    if ref.data_type != declared and not legacy:
        return "dtype", (f"harness: reference for {name!r} is "
                         f"{TensorProto.DataType.Name(ref.data_type)}, the model declares "
                         f"{TensorProto.DataType.Name(declared)}")
    want_dt = ST_NAMES.get(declared)
    dt, shape, data = got
    if dt != want_dt:
        return "dtype", f"output {name!r} is {dt}, expected {want_dt}"
    want_shape = tuple(ref.dims)
    if tuple(shape) != want_shape:
        return "shape", f"output {name!r} has shape {list(shape)}, expected {list(want_shape)}"
    try:
        a = st_to_numpy(dt, shape, data)
    except ValueError as e:
        return "missing-output", f"output {name!r}: {e}"
    b = numpy_helper.to_array(ref)
    if legacy:
        b = (b.astype(np.uint32) << 16).view(np.float32)
    if a.size == 0:
        return None
    if dt == "BOOL" or np.issubdtype(a.dtype, np.integer):
        bad = a.astype(b.dtype) != b if dt != "BOOL" else a != b
        if bad.any():
            i = np.unravel_index(np.flatnonzero(bad)[0], a.shape)
            return "values", (f"output {name!r}: {int(bad.sum())} of {a.size} elements differ "
                              f"(first at {list(map(int, i))}: {a[i]!r}, expected {b[i]!r})")
        return None
    x = a.astype(np.float64)
    y = b.astype(np.float64)
    nan_x, nan_y = np.isnan(x), np.isnan(y)
    inf_y = np.isinf(y) | np.isinf(x)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(x - y)
        ok = (err <= atol + rtol * np.abs(y)) | (x == y)
    ok = np.where(nan_x | nan_y, nan_x & nan_y, ok)
    ok = np.where(inf_y & ~(nan_x | nan_y), x == y, ok)
    if ok.all():
        return None
    bad = ~ok
    i = np.unravel_index(np.flatnonzero(bad)[0], a.shape)
    finite = ~(nan_x | nan_y | inf_y)
    maxerr = float(err[finite].max()) if finite.any() else float("nan")
    return "values", (f"output {name!r}: {int(bad.sum())} of {a.size} elements outside "
                      f"rtol={rtol:g} atol={atol:g} (max abs err {maxerr:.3g}; first at "
                      f"{list(map(int, i))}: {x[i]!r}, expected {y[i]!r})")


# ---------------------------------------------------------------- running

def _sanitizer_report(stderr):
    return "ERROR: AddressSanitizer" in stderr or "ERROR: LeakSanitizer" in stderr or \
        "runtime error:" in stderr or "Sanitizer" in stderr and "SUMMARY" in stderr


def _last_line(text):
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    err = [ln for ln in lines if ln.startswith("ulc: error:")]
    return (err[-1] if err else lines[-1] if lines else "")[:300]


EXIT_CATEGORY = {2: "invalid", 4: "unsupported"}


def run_dataset(ulc, case, dataset, cache, workdir, threads=1, timeout=TIMEOUT_S, feed=None):
    """Runs one data set through ulc; returns a Result. `feed` (for tests) replaces the input
    file."""
    try:
        inp = feed or input_file(case, dataset, cache)
    except ValueError as e:
        return Result(case.name, "unsupported-dtype", f"{dataset.name}: {e}")
    out = Path(workdir) / f"{case.name}.{dataset.name}.out.safetensors"
    cmd = [ulc, "run", str(case.model), "--input", str(inp), "-o", str(out),
           "--threads", str(threads)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Result(case.name, "timeout", f"ulc run took more than {timeout} s")
    try:
        if r.returncode < 0 or r.returncode in (70, 99) or _sanitizer_report(r.stderr):
            what = (f"killed by signal {-r.returncode}" if r.returncode < 0
                    else f"exit {r.returncode}")
            san = [ln for ln in r.stderr.splitlines()
                   if "Sanitizer" in ln or "runtime error:" in ln]
            return Result(case.name, "crash", f"{what}: {(san[0] if san else _last_line(r.stderr))[:300]}")
        if r.returncode != 0:
            return Result(case.name, EXIT_CATEGORY.get(r.returncode, "error"),
                          f"exit {r.returncode}: {_last_line(r.stderr)}")
        try:
            got = st_read(out)
        except (OSError, ValueError) as e:
            return Result(case.name, "missing-output", f"ulc exited 0 but {out.name}: {e}")
        refs = reference_outputs(case, dataset)
        for name, et, ref in zip(case.outputs, case.out_types, refs):
            if name not in got:
                return Result(case.name, "missing-output",
                              f"output {name!r} is not in OUT (it has {sorted(got)})")
            bad = compare(name, got[name], ref, et)
            if bad:
                return Result(case.name, bad[0], bad[1])
        return Result(case.name)
    finally:
        if out.exists():
            out.unlink()


def run_case(ulc, case, cache, workdir, threads=1, timeout=TIMEOUT_S):
    """Runs every data set of a case; the first failing one decides the result."""
    if case.io_problem:
        return Result(case.name, "unsupported-dtype", case.io_problem)
    sets = case.datasets()
    if not sets:
        return Result(case.name, "missing-output", "the test directory has no test_data_set_*")
    for ds in sets:
        res = run_dataset(ulc, case, ds, cache, workdir, threads, timeout)
        if not res.passed:
            return res
    return Result(case.name)


def run_all(ulc, cases, cache, jobs=None, threads=1, timeout=TIMEOUT_S):
    """Runs cases in a pool of `jobs` concurrent ulc processes; returns {name: Result}."""
    jobs = jobs or os.cpu_count() or 1
    results = {}
    with tempfile.TemporaryDirectory(prefix="ulc-node-") as work:
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            futs = {pool.submit(run_case, ulc, c, cache, work, threads, timeout): c for c in cases}
            for f in concurrent.futures.as_completed(futs):
                c = futs[f]
                try:
                    results[c.name] = f.result()
                except Exception as e:  # a bug in this harness, reported against the case
                    results[c.name] = Result(c.name, "error", f"harness: {type(e).__name__}: {e}")
    return results


# ---------------------------------------------------------------- expected failures

def parse_expected(text, source="node_expected_failures.txt"):
    """{test_name: (category, reason)} from the list's text: `test_name<TAB>category: why`,
    '#' comments and blank lines ignored. Malformed lines raise ValueError."""
    out = {}
    for no, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if "\t" not in line:
            raise ValueError(f"{source}:{no}: expected `test_name<TAB>category: reason`")
        name, reason = line.split("\t", 1)
        name, reason = name.strip(), reason.strip()
        cat = reason.split(":", 1)[0].strip()
        if cat not in CATEGORIES:
            raise ValueError(f"{source}:{no}: {name}: unknown category {cat!r} "
                             f"(one of {', '.join(CATEGORIES)})")
        if name in out:
            raise ValueError(f"{source}:{no}: {name} listed twice")
        out[name] = (cat, reason)
    return out


def load_expected(path=EXPECTED_FILE):
    p = Path(path)
    return parse_expected(p.read_text(), p.name) if p.exists() else {}


def check_outcome(result, expected):
    """None when `result` is what the list says (a pass for an unlisted case, a failure of the
    listed category for a listed one); else the message explaining the discrepancy."""
    want = expected.get(result.name)
    if want is None:
        return None if result.passed else f"failed: {result}"
    cat, reason = want
    if result.passed:
        return (f"passes, but node_expected_failures.txt lists it as failing ({reason}): "
                f"remove it from the list")
    if result.category != cat:
        return (f"listed as failing with {cat!r} ({reason}), but fails with "
                f"{result.category!r}: {result.detail}")
    return None


# ---------------------------------------------------------------- docs/ops.md

def _md_escape(s):
    return s.replace("|", "\\|").replace("\n", " ")


def ops_markdown(claimed, cases, results, expected):
    """docs/ops.md's text."""
    claimed = sorted(claimed)
    run = [c for c in cases if c.name in results]
    n_pass = sum(results[c.name].passed for c in run)
    lines = [
        "# ONNX backend node tests on the CPU backend",
        "",
        "Generated by `tests/conformance/run_node_tests.py` (do not edit): every node-test",
        "directory of the onnx wheel whose model uses only ops that `ulc ops` claims is run",
        "through `ulc run` and compared with its reference outputs (rtol 1e-3, atol 1e-7 as",
        "onnx's backend runner; dtype and shape exact; integers and booleans exact). A test",
        "counts under every op its model uses (the `*_expanded` tests exercise the ops of the",
        "function body). Failing cases are explained in",
        "`tests/conformance/node_expected_failures.txt`, which `test_node_run.py` holds to the",
        "truth: a listed case must fail that way, every other case must pass.",
        "",
        f"**{n_pass} / {len(run)} node tests pass** (onnx {onnx.__version__} wheel: "
        f"{len(cases)} node-test directories, {len(run)} use only claimed ops; "
        f"{len(claimed)} ops claimed).",
        "",
        "| op | node tests | run | pass | failing (reason) |",
        "|---|---:|---:|---:|---|",
    ]
    for op in claimed:
        using = [c for c in cases if op in c.ops]
        ran = [c for c in using if c.name in results]
        passed = [c for c in ran if results[c.name].passed]
        fails = []
        for c in ran:
            r = results[c.name]
            if r.passed:
                continue
            why = expected.get(c.name, (None, f"UNEXPECTED {r}"))[1]
            fails.append(f"`{c.name}`: {_md_escape(why)}")
        note = "<br>".join(fails)
        if not using:
            note = _md_escape(OPS_WITHOUT_NODE_TESTS.get(op, "no node test uses this op"))
        lines.append(f"| {op} | {len(using)} | {len(ran)} | {len(passed)} | {note} |")
    # what keeps the other directories of the claimed ops from running
    lines += ["", "## Node tests of claimed ops that do not run", "",
              "These directories use a claimed op but also an op the backend does not claim",
              "(the number of such directories, by the missing op):", ""]
    missing = {}
    for c in cases:
        if c.name in results or not (c.ops & set(claimed)):
            continue
        for op in sorted((c.ops - set(claimed)) | c.other_ops):
            missing.setdefault(op, []).append(c.name)
    if missing:
        lines.append("| missing op | directories |")
        lines.append("|---|---:|")
        for op, names in sorted(missing.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            lines.append(f"| {op} | {len(names)} |")
    else:
        lines.append("(none)")
    lines.append("")
    return "\n".join(lines)


def discrepancies(results, expected):
    """[(name, message)] for every result that does not match the list."""
    out = []
    for name in sorted(results):
        msg = check_outcome(results[name], expected)
        if msg:
            out.append((name, msg))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ulc", default=os.environ.get("ULC_BIN", str(ROOT / "build" / "ulc")))
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", default=str(OPS_MD), help="markdown table (default docs/ops.md)")
    ap.add_argument("--only", help="run the cases whose name matches this regex (no docs written)")
    ap.add_argument("--fixture-dir", default=None)
    args = ap.parse_args(argv)
    ulc = os.path.abspath(args.ulc)
    claimed = claimed_ops(ulc)
    cases = all_cases()
    run = [c for c in cases if eligible(c, claimed)]
    if args.only:
        run = [c for c in run if re.search(args.only, c.name)]
    cache = cache_dir(args.fixture_dir)
    results = run_all(ulc, run, cache, args.jobs)
    expected = load_expected()
    n_pass = sum(r.passed for r in results.values())
    print(f"{n_pass} / {len(results)} node tests pass ({len(claimed)} ops claimed, "
          f"onnx {onnx.__version__})")
    for name, r in sorted(results.items()):
        if not r.passed:
            print(f"  FAIL {name}: {r}")
    bad = discrepancies(results, expected)
    stale = sorted(n for n in expected if n not in {c.name for c in cases if eligible(c, claimed)})
    if bad or stale:
        print("\nnot as node_expected_failures.txt says (lines to fix, in its format):")
        for name, msg in bad:
            r = results[name]
            print(f"{name}\t{r}" if not r.passed else f"# remove: {name} ({msg})")
        for name in stale:
            print(f"# remove: {name} (not an eligible node test)")
    if not args.only:
        Path(args.out).write_text(ops_markdown(claimed, cases, results, expected))
        print(f"wrote {args.out}")
    return 1 if bad or stale else 0


if __name__ == "__main__":
    sys.exit(main())
