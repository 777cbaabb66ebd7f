"""Bad input never crashes ulc: each case gets a clear message naming what is wrong, the exit
code docs/cli.md documents, and leaves no output file (not even a temporary) behind."""
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import run_ulc

EXIT_USAGE, EXIT_INPUT, EXIT_IO = 1, 2, 3


def small_model(weight=None, weight_name="w", dims=(4, 4)):
    """y = MatMul(x, w) with a float initializer."""
    w = weight if weight is not None else numpy_helper.from_array(
        np.arange(np.prod(dims), dtype=np.float32).reshape(dims), weight_name)
    g = helper.make_graph([helper.make_node("MatMul", ["x", weight_name], ["y"], name="mm")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", dims[0]])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", dims[-1]])],
                          [w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def convert_fails(tmp_path, model_bytes_or_path, code, *needles, name="bad.onnx"):
    """Converts into a fresh directory; asserts the failure and that nothing was written."""
    if isinstance(model_bytes_or_path, (bytes, bytearray)):
        src = tmp_path / name
        src.write_bytes(model_bytes_or_path)
    else:
        src = model_bytes_or_path
    outdir = tmp_path / "out"
    outdir.mkdir(exist_ok=True)
    r = run_ulc("convert", src, "-o", outdir / "model.onnx")
    assert r.returncode == code, f"exit {r.returncode}, expected {code}: {r.stderr}"
    assert r.returncode >= 0, "killed by a signal"
    assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr
    assert r.stderr.startswith("ulc: error: "), r.stderr
    assert str(src) in r.stderr, f"the message does not name the file: {r.stderr}"
    for n in needles:
        assert n in r.stderr, f"{n!r} not in {r.stderr!r}"
    assert os.listdir(outdir) == [], f"output left behind: {os.listdir(outdir)}"
    return r.stderr


def test_empty_file(tmp_path):
    convert_fails(tmp_path, b"", EXIT_INPUT, "the file is empty")


@pytest.mark.parametrize("frac", [0.05, 0.3, 0.5, 0.77, 0.99])
def test_truncated(tmp_path, frac):
    data = small_model(dims=(16, 16)).SerializeToString()
    cut = data[: int(len(data) * frac)]
    err = convert_fails(tmp_path, cut, EXIT_INPUT)
    assert "truncated" in err or "malformed" in err or "does not decode" in err or "no graph" in err


@pytest.mark.parametrize("seed", range(8))
def test_random_bytes(tmp_path, seed):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, int(rng.integers(1, 5000)), dtype=np.uint8).tobytes()
    convert_fails(tmp_path, data, EXIT_INPUT, "not")


def test_protobuf_but_not_a_model(tmp_path):
    t = numpy_helper.from_array(np.zeros(3, np.float32), "t")  # a TensorProto
    convert_fails(tmp_path, t.SerializeToString(), EXIT_INPUT)


def test_no_graph(tmp_path):
    m = onnx.ModelProto(ir_version=8)
    convert_fails(tmp_path, m.SerializeToString(), EXIT_INPUT, "there is no graph")


def external_model(tmp_path, location, data=b"\0" * 64, offset=None, length=None, write=True):
    w = numpy_helper.from_array(np.zeros((4, 4), np.float32), "w")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    entries = [("location", location)]
    if offset is not None:
        entries.append(("offset", str(offset)))
    if length is not None:
        entries.append(("length", str(length)))
    for k, v in entries:
        w.external_data.add(key=k, value=v)
    if write and data is not None and not os.path.isabs(location) and ".." not in location:
        (tmp_path / location).write_bytes(data)
    src = tmp_path / "ext.onnx"
    src.write_bytes(small_model(weight=w).SerializeToString())
    return src


def test_dangling_external_path(tmp_path):
    src = external_model(tmp_path, "missing.bin", write=False)
    convert_fails(tmp_path, src, EXIT_IO, "'w'", "missing.bin", "No such file")


def test_dotdot_external_path(tmp_path):
    src = external_model(tmp_path, "../secret.bin")
    convert_fails(tmp_path, src, EXIT_INPUT, "'w'", "'../secret.bin'", "'..' components are refused")


def test_absolute_external_path(tmp_path):
    src = external_model(tmp_path, "/etc/passwd")
    convert_fails(tmp_path, src, EXIT_INPUT, "'w'", "absolute paths are refused")


def test_external_file_too_short(tmp_path):
    src = external_model(tmp_path, "w.bin", data=b"\0" * 40)
    convert_fails(tmp_path, src, EXIT_INPUT, "'w'", "has 40 bytes", "needs 64")


def test_external_offset_beyond_end(tmp_path):
    src = external_model(tmp_path, "w.bin", data=b"\0" * 64, offset=32, length=64)
    convert_fails(tmp_path, src, EXIT_INPUT, "'w'", "offset 32")


def test_external_length_mismatch(tmp_path):
    src = external_model(tmp_path, "w.bin", data=b"\0" * 128, length=128)
    convert_fails(tmp_path, src, EXIT_INPUT, "'w'", "length is 128 bytes", "need 64")


def test_negative_dims_initializer(tmp_path):
    w = numpy_helper.from_array(np.zeros((4, 4), np.float32), "w")
    w.dims[1] = -4
    convert_fails(tmp_path, small_model(weight=w).SerializeToString(), EXIT_INPUT,
                  "initializer 'w'", "dimension 1 is -4", "expected a size >= 0")


def test_negative_dim_in_input_shape(tmp_path):
    m = small_model()
    m.graph.input[0].type.tensor_type.shape.dim[1].dim_value = -2
    convert_fails(tmp_path, m.SerializeToString(), EXIT_INPUT, "input 'x'", "dimension 1 is -2")


def test_element_count_overflow(tmp_path):
    w = numpy_helper.from_array(np.zeros((4, 4), np.float32), "w")
    del w.dims[:]
    w.dims.extend([1 << 40, 1 << 40])
    convert_fails(tmp_path, small_model(weight=w).SerializeToString(), EXIT_INPUT, "'w'",
                  "overflows")


def test_absurd_size(tmp_path):
    w = numpy_helper.from_array(np.zeros((4, 4), np.float32), "w")
    del w.dims[:]
    w.dims.extend([1 << 30, 1 << 30])  # 4 EiB of f32 behind 64 bytes of raw_data
    convert_fails(tmp_path, small_model(weight=w).SerializeToString(), EXIT_INPUT, "'w'",
                  "absurd size")


def test_raw_data_size_mismatch(tmp_path):
    w = numpy_helper.from_array(np.zeros((4, 4), np.float32), "w")
    w.raw_data = b"\0" * 12
    convert_fails(tmp_path, small_model(weight=w).SerializeToString(), EXIT_INPUT,
                  "initializer 'w'", "raw_data has 12 bytes", "16 elements of f32 need 64")


def test_typed_data_count_mismatch(tmp_path):
    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4, 4], float_data=[1.0] * 15)
    convert_fails(tmp_path, small_model(weight=w).SerializeToString(), EXIT_INPUT,
                  "initializer 'w'", "15 values")


def test_undefined_value(tmp_path):
    m = small_model()
    m.graph.node[0].input[0] = "nowhere"
    convert_fails(tmp_path, m.SerializeToString(), EXIT_INPUT, "node 'mm' (MatMul)", "'nowhere'",
                  "no node produces")


def test_two_producers(tmp_path):
    m = small_model()
    m.graph.node.append(helper.make_node("Relu", ["x"], ["y"], name="second"))
    convert_fails(tmp_path, m.SerializeToString(), EXIT_INPUT, "'y'", "produced by two nodes",
                  "'mm'", "'second'")


def test_cycle(tmp_path):
    m = small_model()
    m.graph.node[0].input[0] = "z"
    m.graph.node.append(helper.make_node("Relu", ["y"], ["z"], name="back"))
    convert_fails(tmp_path, m.SerializeToString(), EXIT_INPUT, "'z'", "topological order")


def test_bad_data_type(tmp_path):
    w = numpy_helper.from_array(np.zeros((4, 4), np.float32), "w")
    w.data_type = 99
    convert_fails(tmp_path, small_model(weight=w).SerializeToString(), EXIT_INPUT,
                  "initializer 'w'", "data_type 99")


def test_missing_input_file(tmp_path):
    r = run_ulc("convert", tmp_path / "nope.onnx", "-o", tmp_path / "out.onnx")
    assert r.returncode == EXIT_IO
    assert "nope.onnx" in r.stderr and "No such file" in r.stderr
    assert not (tmp_path / "out.onnx").exists()


def test_output_directory_missing(tmp_path):
    src = tmp_path / "ok.onnx"
    src.write_bytes(small_model().SerializeToString())
    r = run_ulc("convert", src, "-o", tmp_path / "no" / "such" / "out.onnx")
    assert r.returncode == EXIT_IO, r.stderr
    assert "cannot create output file" in r.stderr
    assert not (tmp_path / "no").exists()
    assert sorted(os.listdir(tmp_path)) == ["ok.onnx"]


@pytest.mark.parametrize("case", ["short", "header_beyond", "not_json", "overlap", "gap",
                                  "size_mismatch", "dup", "bad_dtype", "trailing"])
def test_bad_safetensors(tmp_path, case):
    import json
    import struct

    def st(header, data):
        h = json.dumps(header).encode() if not isinstance(header, bytes) else header
        return struct.pack("<Q", len(h)) + h + data

    ok = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
          "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}
    files = {
        "short": (b"\x05\x00", "too short"),
        "header_beyond": (struct.pack("<Q", 1000) + b"{}", "beyond the end of the file"),
        "not_json": (st(b"{nope", b""), "not valid JSON"),
        "overlap": (st({**ok, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 16), "overlap"),
        "gap": (st({**ok, "b": {"dtype": "F32", "shape": [2], "data_offsets": [12, 20]}}, b"\0" * 20), "gap"),
        "size_mismatch": (st({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8), "need 12"),
        "dup": (st(b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', b"\0" * 8), "appears twice"),
        "bad_dtype": (st({"a": {"dtype": "F33", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4), "unknown dtype 'F33'"),
        "trailing": (st(ok, b"\0" * 20), "file length does not match"),
    }
    data, needle = files[case]
    src = tmp_path / "bad.safetensors"
    src.write_bytes(data)
    outdir = tmp_path / "out"
    outdir.mkdir()
    r = run_ulc("convert", src, "-o", outdir / "x.safetensors")
    assert r.returncode in (EXIT_INPUT, 4), r.stderr
    assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr
    assert str(src) in r.stderr and needle in r.stderr, r.stderr
    assert os.listdir(outdir) == []
