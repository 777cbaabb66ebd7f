"""Models made by real exporters (torch.onnx.export of torchvision and transformers models; see
tests/fixtures/gen_exporters.py) pass through `ulc convert` unchanged:

  - the output is the same model (deterministic re-serialization is byte-identical);
  - onnx.checker's full check passes on it;
  - onnxruntime gives bit-identical outputs on the original and on ulc's export, at batch
    sizes (and sequence lengths) other than the exported ones;
  - with --external-data, weights go to OUT.data at 4 KiB-aligned offsets and outputs stay
    bit-identical; an input with external data keeps it;
  - `ulc inspect --json` reports the graph's inputs, outputs and parameter count.
"""
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
import gen_exporters  # noqa: E402

NAMES = ["resnet18_op13.onnx", "resnet18_op17.onnx", "vit_op13.onnx", "vit_op17.onnx",
         "gpt2_tiny.onnx", "clip_tiny.onnx", "resnet18_ext.onnx"]


@pytest.fixture(scope="session")
def fixtures(fixture_dir):
    return gen_exporters.generate(fixture_dir)


def feeds(model_path):
    """Seeded inputs at sizes other than the exported ones (batch 3, sequence 5)."""
    rng = np.random.default_rng(42)
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    out = {}
    for i in sess.get_inputs():
        sizes = {"N": 3, "B": 2, "T": 5}
        shape = [d if isinstance(d, int) else sizes.get(d, 3) for d in i.shape]
        if i.name in ("input_ids",):
            out[i.name] = rng.integers(0, 400, shape).astype(np.int64)
        elif i.name == "attention_mask":
            out[i.name] = np.ones(shape, np.int64)
        else:
            out[i.name] = rng.standard_normal(shape).astype(np.float32)
    return out


def run_ort(model_path, inputs):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, inputs)


def canonical(path):
    return onnx.load(str(path), load_external_data=False).SerializeToString(deterministic=True)


def initializer_values(path):
    m = onnx.load(str(path))  # loads external data too
    return {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}


def external_offsets(path):
    m = onnx.load(str(path), load_external_data=False)
    offs = {}
    for t in m.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            kv = {e.key: e.value for e in t.external_data}
            offs[t.name] = (kv["location"], int(kv.get("offset", 0)), int(kv["length"]))
    return offs


def assert_same_outputs(a, b):
    inputs = feeds(a)
    ra, rb = run_ort(a, inputs), run_ort(b, inputs)
    assert len(ra) == len(rb)
    for x, y in zip(ra, rb):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert np.array_equal(x, y), "onnxruntime outputs differ"


@pytest.mark.parametrize("name", NAMES)
def test_convert_same_model(ulc, fixtures, tmp_path, name):
    src = fixtures / name
    out = tmp_path / name
    r = ulc("convert", src, "-o", out)
    assert r.returncode == 0, r.stderr
    if name == "resnet18_ext.onnx":
        # the input had external data: so does the output, in its own file, aligned
        offs = external_offsets(out)
        assert offs and all(loc == name + ".data" for loc, _, _ in offs.values())
        assert all(off % 4096 == 0 for _, off, _ in offs.values())
        assert (tmp_path / (name + ".data")).exists()
        a, b = initializer_values(src), initializer_values(out)
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
        # apart from the (re-planned) external-data entries, the models are identical
        ma, mb = onnx.load(str(src), load_external_data=False), onnx.load(str(out), load_external_data=False)
        for m in (ma, mb):
            for t in m.graph.initializer:
                del t.external_data[:]
        assert ma.SerializeToString(deterministic=True) == mb.SerializeToString(deterministic=True)
    else:
        assert canonical(out) == canonical(src), "ulc changed the model"
    onnx.checker.check_model(str(out), full_check=True)
    assert_same_outputs(src, out)


@pytest.mark.parametrize("name", ["resnet18_op17.onnx", "vit_op13.onnx", "gpt2_tiny.onnx",
                                  "clip_tiny.onnx"])
def test_convert_external_data(ulc, fixtures, tmp_path, name):
    src = fixtures / name
    out = tmp_path / name
    r = ulc("convert", src, "-o", out, "--external-data")
    assert r.returncode == 0, r.stderr
    data = tmp_path / (name + ".data")
    assert data.exists()
    offs = external_offsets(out)
    assert offs, "no tensor was written externally"
    size = data.stat().st_size
    for tname, (loc, off, length) in offs.items():
        assert loc == name + ".data"
        assert off % 4096 == 0, f"{tname} at unaligned offset {off}"
        assert off + length <= size
    # every initializer of 1 KiB or more went out, the smaller ones stayed inline
    m = onnx.load(str(src))
    for t in m.graph.initializer:
        big = numpy_helper.to_array(t).nbytes >= 1024
        assert (t.name in offs) == big, t.name
    a, b = initializer_values(src), initializer_values(out)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    onnx.checker.check_model(str(out), full_check=True)
    assert_same_outputs(src, out)


@pytest.mark.parametrize("name", NAMES)
def test_inspect_json(ulc, fixtures, name):
    src = fixtures / name
    r = ulc("inspect", "--json", src)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    m = onnx.load(str(src))
    inits = {t.name for t in m.graph.initializer}
    assert [i["name"] for i in info["inputs"]] == [i.name for i in m.graph.input if i.name not in inits]
    assert [o["name"] for o in info["outputs"]] == [o.name for o in m.graph.output]
    count = sum(int(np.prod(t.dims)) for t in m.graph.initializer)
    assert info["parameters"]["count"] == count
    assert info["nodes"] == len(m.graph.node)
    assert sum(info["op_histogram"].values()) == len(m.graph.node)
    assert info["opsets"]["ai.onnx"] == next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
    assert bool(info["external_files"]) == (name == "resnet18_ext.onnx")
