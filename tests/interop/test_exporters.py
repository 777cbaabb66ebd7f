"""Models made by real exporters (torch.onnx.export of torchvision ResNet-18 and ViT at opsets 13
and 17, transformers GPT-2 and CLIP, and ResNet-18 re-saved by onnx with external data; see
tests/fixtures/gen_exporters.py) pass through `ulc convert` unchanged:

  - the output is the same model: parsed by onnx and re-serialized deterministically, it is
    byte-identical to the input (for external data: identical once every tensor's bytes are read
    back from its file), and converting the output again gives the same bytes;
  - onnx.checker's full check passes on it;
  - onnxruntime (CPU, one thread) gives bit-identical outputs on the input and on ulc's output,
    at batch sizes and sequence lengths other than the exported ones;
  - with --external-data, every initializer of 1 KiB or more goes to OUT.data at a 4 KiB-aligned
    offset, smaller ones stay inline, and outputs stay bit-identical; an input with external data
    keeps it without the flag;
  - `ulc inspect --json` reports the graph's inputs and outputs (names, dtypes, shapes), node and
    op counts, opset, parameter count and bytes, and the external data file.

The fixtures are generated once per session into ULC_FIXTURE_DIR (default build/fixtures).
"""
import json
import os
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
import gen_exporters  # noqa: E402

NAMES = gen_exporters.NAMES
EXTERNAL = gen_exporters.EXTERNAL

ONNX_DTYPES = {onnx.TensorProto.FLOAT: "f32", onnx.TensorProto.INT64: "i64"}

# the outputs' shapes for gen_exporters.feeds(name): batch 3 (4 texts for CLIP), sequence 5
OUTPUT_SHAPES = {
    "resnet18": {"logits": (3, 1000)},
    "vit": {"logits": (3, 10)},
    "gpt2": {"logits": (3, 5, 1000)},
    "clip": {"logits_per_image": (3, 4), "logits_per_text": (4, 3), "text_embeds": (4, 16),
             "image_embeds": (3, 16)},
}


@pytest.fixture(scope="session")
def fixtures(fixture_dir):
    return gen_exporters.generate(fixture_dir)


# ---------------------------------------------------------------- helpers

def external_entries(model):
    """name -> (location, offset, length) for every initializer stored externally."""
    entries = {}
    for t in model.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            kv = {e.key: e.value for e in t.external_data}
            entries[t.name] = (kv["location"], int(kv.get("offset", 0)), int(kv["length"]))
    return entries


def materialized(path):
    """The model at `path`, parsed without onnx's external-data loader; every external tensor's
    bytes are read here from (location, offset, length) into raw_data and its external-data fields
    cleared, so the result compares equal to the same model saved inline."""
    m = onnx.load(str(path), load_external_data=False)
    for t in m.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            kv = {e.key: e.value for e in t.external_data}
            data = Path(path).parent / kv["location"]
            off, length = int(kv.get("offset", 0)), int(kv["length"])
            assert off + length <= data.stat().st_size, f"{t.name}: past the end of {data}"
            with open(data, "rb") as f:
                f.seek(off)
                t.raw_data = f.read(length)
            t.ClearField("data_location")
            del t.external_data[:]
    return m


def serialized(model):
    return model.SerializeToString(deterministic=True)


def assert_same_bytes(a, b, what):
    """a == b, reported by length and first differing offset (not pytest's diff of megabytes)."""
    if a == b:
        return
    n = min(len(a), len(b))
    diff = np.flatnonzero(np.frombuffer(a[:n], np.uint8) != np.frombuffer(b[:n], np.uint8))
    first = int(diff[0]) if diff.size else n
    raise AssertionError(f"{what}: {len(a)} vs {len(b)} bytes, first difference at byte {first}")


def run_ort(model_path, inputs):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    return [o.name for o in sess.get_outputs()], sess.run(None, inputs)


def assert_same_outputs(name, a, b):
    """onnxruntime on `a` and on `b` gives bit-identical outputs (same dtype, shape and bytes)."""
    inputs = gen_exporters.feeds(name)
    na, ra = run_ort(a, inputs)
    nb, rb = run_ort(b, inputs)
    assert na == nb
    shapes = OUTPUT_SHAPES[name.split("_")[0]]
    assert na == list(shapes)
    for o, x, y in zip(na, ra, rb):
        assert x.dtype == y.dtype == np.float32 and x.shape == y.shape, o
        assert x.shape == shapes[o], f"{o}: shape {x.shape}, expected {shapes[o]}"
        assert np.isfinite(x).all(), f"{o}: the original gives non-finite values"
        if x.tobytes() != y.tobytes():
            raise AssertionError(f"{o}: onnxruntime outputs differ (max abs diff "
                                 f"{np.abs(x.astype(np.float64) - y).max()})")


def assert_roundtrip_stable(ulc, out, tmp_path):
    """Converting ulc's output again gives the same files, byte for byte."""
    again = tmp_path / "again" / out.name
    again.parent.mkdir()
    r = ulc("convert", out, "-o", again)
    assert r.returncode == 0, r.stderr
    assert_same_bytes(again.read_bytes(), out.read_bytes(), "a second conversion")
    data, data2 = Path(str(out) + ".data"), Path(str(again) + ".data")
    assert data.exists() == data2.exists()
    if data.exists():
        assert_same_bytes(data2.read_bytes(), data.read_bytes(), "a second conversion's data")


def assert_external_layout(out, m_out):
    """Every external tensor of `out` lives in OUT.data at a 4 KiB-aligned offset, in bounds,
    without overlapping another."""
    data = Path(str(out) + ".data")
    assert data.exists(), f"{data} was not written"
    entries = external_entries(m_out)
    assert entries, "no tensor was written externally"
    size = data.stat().st_size
    spans = []
    for tname, (loc, off, length) in entries.items():
        assert loc == data.name, f"{tname}: location {loc!r}, expected {data.name!r}"
        assert off % 4096 == 0, f"{tname} at unaligned offset {off}"
        assert off + length <= size, f"{tname} runs past the end of {data.name}"
        spans.append((off, off + length, tname))
    spans.sort()
    for (_, end, a), (start, _, b) in zip(spans, spans[1:]):
        assert end <= start, f"{a} and {b} overlap in {data.name}"
    return entries


# ---------------------------------------------------------------- tests

def test_generator_is_idempotent(fixtures):
    """A second generate() finds every stamp current and rewrites nothing."""
    files = sorted(p for p in fixtures.iterdir() if p.is_file())
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in files}
    for name in NAMES:
        assert name in before, f"{name} was not generated"
        assert (fixtures / f".{name}.stamp").exists(), f"{name} has no stamp"
    gen_exporters.generate(fixtures)
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns)
             for p in fixtures.iterdir() if p.is_file()}
    assert after == before
    assert not [p for p in fixtures.iterdir() if p.name.startswith(".tmp")], "temporaries left"


@pytest.mark.parametrize("name", NAMES)
def test_convert_same_model(ulc, fixtures, tmp_path, name):
    src = fixtures / name
    out = tmp_path / f"conv_{name}"
    r = ulc("convert", src, "-o", out)
    assert r.returncode == 0, r.stderr
    m_src = onnx.load(str(src), load_external_data=False)
    m_out = onnx.load(str(out), load_external_data=False)
    if name == EXTERNAL:
        # the input had external data: so does the output, in its own file, aligned, and the
        # same tensors are external
        assert external_entries(m_src)
        entries = assert_external_layout(out, m_out)
        assert entries.keys() == external_entries(m_src).keys()
    else:
        assert not Path(str(out) + ".data").exists()
        assert_same_bytes(serialized(m_out), serialized(m_src), "ulc changed the model")
    # with every tensor's bytes in place, the models are identical
    assert_same_bytes(serialized(materialized(out)), serialized(materialized(src)),
                      "ulc changed the model")
    onnx.checker.check_model(str(out), full_check=True)
    assert_same_outputs(name, src, out)
    assert_roundtrip_stable(ulc, out, tmp_path)


@pytest.mark.parametrize("name", NAMES)
def test_convert_external_data(ulc, fixtures, tmp_path, name):
    src = fixtures / name
    out = tmp_path / f"conv_{name}"
    r = ulc("convert", src, "-o", out, "--external-data")
    assert r.returncode == 0, r.stderr
    m_out = onnx.load(str(out), load_external_data=False)
    entries = assert_external_layout(out, m_out)
    # every initializer of 1 KiB or more went out, the smaller ones stayed inline
    m_src = materialized(src)
    for t in m_src.graph.initializer:
        big = numpy_helper.to_array(t).nbytes >= 1024
        assert (t.name in entries) == big, f"{t.name}: {numpy_helper.to_array(t).nbytes} bytes"
    # the tensors' values, and everything else, are unchanged
    a = {t.name: numpy_helper.to_array(t) for t in m_src.graph.initializer}
    b = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(out)).graph.initializer}
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert_same_bytes(a[k].tobytes(), b[k].tobytes(), f"initializer {k}")
    assert_same_bytes(serialized(materialized(out)), serialized(m_src), "ulc changed the model")
    onnx.checker.check_model(str(out), full_check=True)
    assert_same_outputs(name, src, out)


def _shape(value_info):
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    return [d.dim_param if d.HasField("dim_param") else d.dim_value for d in t.shape.dim]


@pytest.mark.parametrize("name", NAMES)
def test_inspect_json(ulc, fixtures, name):
    src = fixtures / name
    r = ulc("inspect", "--json", src)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    m = materialized(src)
    inits = {t.name for t in m.graph.initializer}
    inputs = [i for i in m.graph.input if i.name not in inits]
    assert [i["name"] for i in info["inputs"]] == [i.name for i in inputs]
    assert [o["name"] for o in info["outputs"]] == [o.name for o in m.graph.output]
    for got, vi in zip(info["inputs"] + info["outputs"], inputs + list(m.graph.output)):
        assert got["dtype"] == ONNX_DTYPES[vi.type.tensor_type.elem_type], vi.name
        assert got["shape"] == _shape(vi), vi.name
    arrays = [numpy_helper.to_array(t) for t in m.graph.initializer]
    p = info["parameters"]
    assert p["initializers"] == len(arrays)
    assert p["count"] == sum(int(np.prod(t.dims, dtype=np.int64)) for t in m.graph.initializer)
    assert p["count"] == sum(a.size for a in arrays)
    assert p["bytes"] == sum(a.nbytes for a in arrays)
    assert info["nodes"] == len(m.graph.node)
    hist = {}
    for n in m.graph.node:
        key = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}"
        hist[key] = hist.get(key, 0) + 1
    assert info["op_histogram"] == hist
    assert info["opsets"]["ai.onnx"] == next(o.version for o in m.opset_import
                                             if o.domain in ("", "ai.onnx"))
    if name == EXTERNAL:
        data = src.parent / (name + ".data")
        assert [(os.path.realpath(f["path"]), f["bytes"]) for f in info["external_files"]] == \
            [(os.path.realpath(data), data.stat().st_size)]
    else:
        assert info["external_files"] == []
