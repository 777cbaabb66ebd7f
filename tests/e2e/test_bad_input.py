"""Bad input never crashes ulc.

Every case gets the exit code docs/cli.md documents, a one-line message
`ulc: error: <file>: <what>` that names the file and the tensor/node/value at fault, no crash
(no signal, no sanitizer report), and leaves nothing behind: no OUT, no OUT.data, no hidden
temporary beside them, and nothing new next to the input either. Each model case is converted
twice, plainly and with --external-data, and must fail the same way both times.
"""
import os
import re
import struct

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import run_ulc

EXIT_USAGE, EXIT_INPUT, EXIT_IO, EXIT_UNSUPPORTED = 1, 2, 3, 4


# ---------------------------------------------------------------------------------------------
# helpers


def small_model(weight=None, weight_name="w", dims=(4, 4)):
    """y = MatMul(x, w) with a float initializer (raw_data) named w, node named mm."""
    w = weight if weight is not None else numpy_helper.from_array(
        np.arange(np.prod(dims), dtype=np.float32).reshape(dims), weight_name)
    g = helper.make_graph([helper.make_node("MatMul", ["x", weight_name], ["y"], name="mm")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", dims[0]])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", dims[-1]])],
                          [w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def f32_weight(dims=(4, 4), name="w"):
    return numpy_helper.from_array(np.zeros(dims, np.float32), name)


def with_dims(dims, name="w"):
    """A 4x4 f32 initializer (64 bytes of raw_data) whose dims are replaced by `dims`."""
    w = f32_weight(name=name)
    del w.dims[:]
    w.dims.extend(dims)
    return w


def listing(d):
    """Every entry of a directory, hidden ones included (temporaries are dot-files)."""
    return sorted(os.listdir(d))


def assert_clean_failure(r, code, named, needles):
    err = r.stderr
    assert r.returncode >= 0, f"ulc was killed by signal {-r.returncode}: {err}"
    assert "Sanitizer" not in err and "runtime error" not in err, err
    assert r.returncode == code, f"exit {r.returncode}, expected {code}: {err}"
    assert r.stdout == "", f"unexpected stdout: {r.stdout!r}"
    assert err.startswith(f"ulc: error: {named}: "), \
        f"the message does not start with 'ulc: error: {named}: ': {err!r}"
    assert err.count("\n") == 1 and err.endswith("\n"), f"not a single line: {err!r}"
    for n in needles:
        assert n in err, f"{n!r} not in {err!r}"
    return err


def convert_fails(tmp_path, model, code, *needles, name="bad.onnx", extra_files=None):
    """Writes `model` (bytes, or a ModelProto) to tmp_path/src/name and converts it into a
    separate directory, plainly and with --external-data. Asserts the failure and that neither
    directory gained or lost anything. Returns the message."""
    srcdir = tmp_path / "src"
    srcdir.mkdir(exist_ok=True)
    for fname, data in (extra_files or {}).items():
        (srcdir / fname).write_bytes(data)
    src = srcdir / name
    src.write_bytes(model if isinstance(model, (bytes, bytearray)) else model.SerializeToString())
    return convert_path_fails(tmp_path, src, code, *needles)


def convert_path_fails(tmp_path, src, code, *needles):
    outdir = tmp_path / "out"
    outdir.mkdir(exist_ok=True)
    (outdir / "keep.txt").write_text("unrelated file")
    out_before = listing(outdir)
    watch_src = src.parent.is_dir() and tmp_path in src.parents
    src_before = listing(src.parent) if watch_src else None
    messages = []
    for flags in ([], ["--external-data"]):
        r = run_ulc("convert", src, "-o", outdir / "OUT.onnx", *flags)
        messages.append(assert_clean_failure(r, code, src, needles))
        assert listing(outdir) == out_before, \
            f"output left behind (flags {flags}): {sorted(set(listing(outdir)) - set(out_before))}"
        if src_before is not None:
            assert listing(src.parent) == src_before, "ulc wrote next to its input"
    assert messages[0] == messages[1], f"--external-data changes the error: {messages}"
    return messages[0]


# ---------------------------------------------------------------------------------------------
# not an ONNX model at all


def test_empty_file(tmp_path):
    convert_fails(tmp_path, b"", EXIT_INPUT, "the file is empty")


def _truncation_points():
    data = small_model(dims=(16, 16)).SerializeToString()
    raw = np.arange(256, dtype=np.float32).tobytes()
    at = data.find(raw)
    assert at > 0
    # inside the ir_version varint, inside the graph header, inside the node, at the start,
    # middle and end of the float raw_data, and in the trailing opset_import
    return data, sorted({1, 3, 8, 24, at - 2, at, at + 1, at + len(raw) // 2, at + len(raw) - 1,
                         len(data) - 10, len(data) - 1})


TRUNC_DATA, TRUNC_POINTS = _truncation_points()


@pytest.mark.parametrize("cut", TRUNC_POINTS)
def test_truncated(tmp_path, cut):
    err = convert_fails(tmp_path, TRUNC_DATA[:cut], EXIT_INPUT)
    assert re.search(rf"malformed or truncated protobuf at byte offset \d+ of {cut}\b", err) or \
        "there is no graph" in err, err


@pytest.mark.parametrize("seed,size", [(s, n) for s in range(3) for n in (1, 9, 257, 4096, 65536)])
def test_random_bytes(tmp_path, seed, size):
    data = np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()
    err = convert_fails(tmp_path, data, EXIT_INPUT)
    assert "not a valid ONNX model" in err or "not an ONNX model" in err, err


def test_protobuf_but_not_a_model(tmp_path):
    t = numpy_helper.from_array(np.arange(3, dtype=np.float32), "t")  # a TensorProto
    convert_fails(tmp_path, t.SerializeToString(), EXIT_INPUT, "not a valid ONNX model",
                  "ModelProto")


def test_graph_proto_instead_of_model(tmp_path):
    convert_fails(tmp_path, small_model().graph.SerializeToString(), EXIT_INPUT,
                  "not a valid ONNX model", "ModelProto")


def test_no_graph(tmp_path):
    m = onnx.ModelProto(ir_version=8, producer_name="p",
                        opset_import=[helper.make_opsetid("", 17)])
    convert_fails(tmp_path, m, EXIT_INPUT, "not an ONNX model", "there is no graph")


def test_no_ir_version(tmp_path):
    m = small_model()
    m.ClearField("ir_version")
    convert_fails(tmp_path, m, EXIT_INPUT, "ir_version is missing")


def _vint(n):
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        if not n:
            return out + bytes([b])
        out += bytes([b | 0x80])


@pytest.mark.parametrize("data", [b"\x08\x08\x3a" + _vint((1 << 63) - 1) + b"abc",  # huge length
                                  b"\x08" + b"\xff" * 10 + b"\x01",  # 11-byte varint
                                  b"\x0e\x00",  # wire type 6
                                  b"\x0b\x0c",  # group wire types
                                  b"\x00\x01"],  # field number 0
                         ids=["huge-length", "long-varint", "wire-type-6", "group", "field-0"])
def test_malformed_wire_format(tmp_path, data):
    convert_fails(tmp_path, data, EXIT_INPUT, "not a valid ONNX model")


def _nested_if(depth):
    """A model whose If nodes nest `depth` then_branch subgraphs, written as raw protobuf (the
    Python protobuf runtime refuses to build it). The If condition 'c' is undefined, so the
    model is invalid whatever nesting limit ulc has: it must be refused, never crash."""
    leaf = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [],
                             [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    # level: GraphProto{node: NodeProto{input c, output y, op If, attribute: AttributeProto{
    #   name then_branch, g: <inner graph>, type GRAPH}}, name g}. Built from the lengths
    # inwards-out, then joined once (repeated concatenation would be quadratic).
    inner = len(leaf.SerializeToString())
    prefixes = []
    for _ in range(depth):
        attr_len = 14 + len(_vint(inner)) + inner + 3
        node_pre = b"\x0a\x01c\x12\x01y\x22\x02If\x2a" + _vint(attr_len)
        node_len = len(node_pre) + attr_len
        prefixes.append(b"\x0a" + _vint(node_len) + node_pre + b"\x0a\x0bthen_branch\x32"
                        + _vint(inner))
        inner = len(prefixes[-1]) + inner + 3 + 3
    suffix = b"\xa0\x01\x05" + b"\x12\x01g"
    graph = b"".join(reversed(prefixes)) + leaf.SerializeToString() + suffix * depth
    assert len(graph) == inner
    return b"\x08\x08" + b"\x3a" + _vint(len(graph)) + graph + b"\x42\x02\x10\x11"


@pytest.mark.parametrize("depth", [100, 1000, 5000, 20000])
def test_deeply_nested_subgraphs(tmp_path, depth):
    """Found by this suite: ulc dies of a stack overflow (SIGSEGV) from depth ~3000 (a 120 KB
    file) because libprotobuf-c unpacks nested messages recursively without a depth limit."""
    src = tmp_path / "src" / "nested.onnx"
    src.parent.mkdir()
    src.write_bytes(_nested_if(depth))
    r = run_ulc("convert", src, "-o", tmp_path / "OUT.onnx")
    assert r.returncode >= 0, f"ulc was killed by signal {-r.returncode} (depth {depth})"
    assert "Sanitizer" not in r.stderr, r.stderr[:2000]
    assert r.returncode in (EXIT_INPUT, EXIT_UNSUPPORTED), r.stderr[:2000]
    assert r.stderr.startswith(f"ulc: error: {src}: "), r.stderr[:2000]
    assert listing(tmp_path) == ["src"]


# ---------------------------------------------------------------------------------------------
# external data


def external_model(location, offset=None, length=None, dims=(4, 4)):
    w = f32_weight(dims)
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    w.external_data.add(key="location", value=location)
    if offset is not None:
        w.external_data.add(key="offset", value=str(offset))
    if length is not None:
        w.external_data.add(key="length", value=str(length))
    return small_model(weight=w)


def test_dangling_external_path(tmp_path):
    convert_fails(tmp_path, external_model("missing.bin"), EXIT_IO,
                  "'w'", "'missing.bin'", "No such file or directory")


def test_external_path_is_a_directory(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "d.bin").mkdir()
    convert_fails(tmp_path, external_model("d.bin"), EXIT_IO, "'w'", "'d.bin'",
                  "not a regular file")


@pytest.mark.parametrize("location", ["../secret.bin", "sub/../../secret.bin", "a/../w.bin", ".."])
def test_dotdot_external_path(tmp_path, location):
    (tmp_path / "secret.bin").write_bytes(b"\0" * 64)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "w.bin").write_bytes(b"\0" * 64)
    convert_fails(tmp_path, external_model(location), EXIT_INPUT, "tensor 'w'",
                  f"external data location '{location}' is not allowed",
                  "'..' components are refused")


@pytest.mark.parametrize("location", ["/etc/passwd", "//etc/passwd"])
def test_absolute_external_path(tmp_path, location):
    convert_fails(tmp_path, external_model(location), EXIT_INPUT, "tensor 'w'",
                  f"'{location}'", "absolute paths are refused")


def test_empty_external_path(tmp_path):
    convert_fails(tmp_path, external_model(""), EXIT_INPUT, "tensor 'w'", "the path is empty")


def test_external_location_with_nul_byte(tmp_path):
    """Found by this suite: ulc reads the location as a C string, so 'w.bin\\0/../../x' opens
    w.bin (and passes the '..' check); other readers refuse the name. It must be refused."""
    err = convert_fails(tmp_path, external_model("w.bin\0/../../etc/passwd"), EXIT_INPUT, "'w'",
                        extra_files={"w.bin": b"\0" * 64})
    assert "location" in err, err


def test_external_missing_location(tmp_path):
    w = f32_weight()
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    convert_fails(tmp_path, small_model(weight=w), EXIT_INPUT, "initializer 'w'",
                  "no 'location'")


def test_external_file_shorter_than_declared(tmp_path):
    convert_fails(tmp_path, external_model("w.bin"), EXIT_INPUT, "initializer 'w'",
                  "'w.bin' has 40 bytes", "offset 0 + length 64 needs 64",
                  extra_files={"w.bin": b"\0" * 40})


def test_external_offset_plus_length_beyond_end(tmp_path):
    convert_fails(tmp_path, external_model("w.bin", offset=32, length=64), EXIT_INPUT,
                  "initializer 'w'", "'w.bin' has 64 bytes", "offset 32 + length 64 needs 96",
                  extra_files={"w.bin": b"\0" * 64})


@pytest.mark.parametrize("offset,length", [((1 << 64) - 8, 64), ((1 << 64) - 64, 64),
                                           ((1 << 64) - 1, None), ((1 << 63) - 8, None)])
def test_external_offset_overflow(tmp_path, offset, length):
    """offset + length past 2^64: refused, and the message must not state a wrapped-around
    sum (found by this suite: 'has 64 bytes, but offset 18446744073709551608 + length 64
    needs 56')."""
    err = convert_fails(tmp_path, external_model("w.bin", offset=offset, length=length),
                        EXIT_INPUT, "initializer 'w'", f"offset {offset}",
                        extra_files={"w.bin": b"\0" * 64})
    m = re.search(r"needs (\d+)", err)
    if m:
        assert int(m.group(1)) == offset + 64, f"wrapped-around sum in the message: {err!r}"


@pytest.mark.parametrize("length", [128, 32])
def test_external_length_not_matching_dims(tmp_path, length):
    convert_fails(tmp_path, external_model("w.bin", length=length), EXIT_INPUT,
                  "initializer 'w'", f"external data length is {length} bytes",
                  "16 elements of f32 need 64", extra_files={"w.bin": b"\0" * 128})


@pytest.mark.parametrize("key,value", [("offset", "-64"), ("length", "-64"), ("offset", "abc"),
                                       ("length", "99999999999999999999999"),
                                       ("offset", str(1 << 64))])
def test_external_offset_or_length_not_a_number(tmp_path, key, value):
    m = external_model("w.bin", **{key: value})
    convert_fails(tmp_path, m, EXIT_INPUT, "initializer 'w'",
                  f"external data {key} '{value}' is not a byte count",
                  extra_files={"w.bin": b"\0" * 128})


# ---------------------------------------------------------------------------------------------
# sizes and dims


def test_negative_dim_in_initializer(tmp_path):
    w = f32_weight()
    w.dims[1] = -4
    convert_fails(tmp_path, small_model(weight=w), EXIT_INPUT,
                  "initializer 'w'", "dimension 1 is -4", "expected a size >= 0")


def test_negative_dim_in_graph_input(tmp_path):
    m = small_model()
    m.graph.input[0].type.tensor_type.shape.dim[1].dim_value = -2
    convert_fails(tmp_path, m, EXIT_INPUT, "input 'x'", "dimension 1 is -2",
                  "expected a size >= 0")


def test_negative_dim_in_graph_output(tmp_path):
    m = small_model()
    m.graph.output[0].type.tensor_type.shape.dim[1].dim_value = -2
    convert_fails(tmp_path, m, EXIT_INPUT, "output 'y'", "dimension 1 is -2",
                  "expected a size >= 0")


@pytest.mark.parametrize("dims", [[1 << 40, 1 << 40], [1 << 62, 4], [1 << 31, 1 << 31, 1 << 31],
                                  [(1 << 63) - 1, 3]])
def test_element_count_overflows_64_bits(tmp_path, dims):
    convert_fails(tmp_path, small_model(weight=with_dims(dims)), EXIT_INPUT,
                  "initializer 'w'", "element count overflows 64 bits")


@pytest.mark.parametrize("dims", [[1 << 20, 1 << 20, 256],  # 1 PiB of f32
                                  [1 << 30, 1 << 30],  # 4 EiB
                                  [1 << 50]])
def test_absurd_size_with_tiny_raw_data(tmp_path, dims):
    n = int(np.prod(dims, dtype=object))
    convert_fails(tmp_path, small_model(weight=with_dims(dims)), EXIT_INPUT,
                  "initializer 'w'", f"{n} elements of f32 is an absurd size")


def test_absurd_size_without_data(tmp_path):
    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1 << 20, 1 << 20, 256])
    convert_fails(tmp_path, small_model(weight=w), EXIT_INPUT, "initializer 'w'",
                  "absurd size")


def test_absurd_size_in_external_data(tmp_path):
    m = external_model("w.bin", dims=(4, 4))
    del m.graph.initializer[0].dims[:]
    m.graph.initializer[0].dims.extend([1 << 20, 1 << 20, 256])
    convert_fails(tmp_path, m, EXIT_INPUT, "initializer 'w'", "absurd size",
                  extra_files={"w.bin": b"\0" * 64})


@pytest.mark.parametrize("nbytes", [0, 12, 63, 65, 128])
def test_raw_data_size_mismatch(tmp_path, nbytes):
    w = f32_weight()
    w.raw_data = b"\0" * nbytes
    convert_fails(tmp_path, small_model(weight=w), EXIT_INPUT, "initializer 'w'",
                  f"raw_data has {nbytes} bytes, but 16 elements of f32 need 64")


def test_typed_data_count_mismatch(tmp_path):
    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4, 4], float_data=[1.0] * 15)
    convert_fails(tmp_path, small_model(weight=w), EXIT_INPUT, "initializer 'w'", "15 values",
                  "16 elements of f32")


def test_data_given_twice(tmp_path):
    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4, 4], float_data=[1.0] * 16,
                    raw_data=b"\0" * 64)
    convert_fails(tmp_path, small_model(weight=w), EXIT_INPUT, "initializer 'w'",
                  "more than one way")


def test_string_tensor_count_mismatch(tmp_path):
    w = TensorProto(name="w", data_type=TensorProto.STRING, dims=[2], string_data=[b"a"])
    convert_fails(tmp_path, small_model(weight=w), EXIT_INPUT, "initializer 'w'",
                  "1 strings given, dims need 2")


@pytest.mark.parametrize("dtype", [0, 99, -1])
def test_bad_data_type(tmp_path, dtype):
    w = f32_weight()
    w.data_type = dtype
    convert_fails(tmp_path, small_model(weight=w), EXIT_INPUT, "initializer 'w'",
                  f"data_type {dtype} is not a valid")


# ---------------------------------------------------------------------------------------------
# graph rules


def test_node_reads_undefined_value(tmp_path):
    m = small_model()
    m.graph.node[0].input[0] = "nowhere"
    convert_fails(tmp_path, m, EXIT_INPUT, "node 'mm' (MatMul)", "'nowhere'", "no node produces")


def test_unnamed_node_reads_undefined_value(tmp_path):
    m = small_model()
    m.graph.node[0].name = ""
    m.graph.node[0].input[0] = "nowhere"
    convert_fails(tmp_path, m, EXIT_INPUT, "node #0 (MatMul)", "'nowhere'")


def test_graph_output_undefined(tmp_path):
    m = small_model()
    m.graph.output[0].name = "nowhere"
    convert_fails(tmp_path, m, EXIT_INPUT, "graph output 'nowhere'", "not produced")


def test_two_nodes_write_the_same_output(tmp_path):
    m = small_model()
    m.graph.node.append(helper.make_node("Relu", ["x"], ["y"], name="second"))
    convert_fails(tmp_path, m, EXIT_INPUT, "value 'y'", "produced by two nodes",
                  "node 'mm' (MatMul)", "node 'second' (Relu)")


def test_one_node_lists_an_output_twice(tmp_path):
    """Found by this suite: the message says "produced by two nodes: node 'mm' (MatMul) and
    node 'mm' (MatMul)", which is not what is wrong (one node names 'y' twice)."""
    m = small_model()
    m.graph.node[0].output.append("y")
    err = convert_fails(tmp_path, m, EXIT_INPUT, "'y'", "node 'mm' (MatMul)")
    assert "two nodes" not in err, f"misleading message: {err!r}"


@pytest.mark.parametrize("what", ["input", "initializer"])
def test_node_overwrites_graph_input_or_initializer(tmp_path, what):
    m = small_model()
    name = "x" if what == "input" else "w"
    m.graph.node.append(helper.make_node("Relu", ["x"], [name], name="second"))
    convert_fails(tmp_path, m, EXIT_INPUT, f"'{name}'", "also produced by node 'second' (Relu)")


def test_duplicate_initializer(tmp_path):
    m = small_model()
    m.graph.initializer.append(f32_weight())
    convert_fails(tmp_path, m, EXIT_INPUT, "initializer 'w' is defined twice")


def test_duplicate_graph_input(tmp_path):
    m = small_model()
    m.graph.input.append(helper.make_tensor_value_info("x", TensorProto.FLOAT, [1]))
    convert_fails(tmp_path, m, EXIT_INPUT, "'x' is listed twice as a graph input")


def test_cycle(tmp_path):
    m = small_model()
    m.graph.node[0].input[0] = "z"
    m.graph.node.append(helper.make_node("Relu", ["y"], ["z"], name="back"))
    convert_fails(tmp_path, m, EXIT_INPUT, "node 'mm' (MatMul)", "'z'", "topological order")


# ---------------------------------------------------------------------------------------------
# paths


def test_missing_input_file(tmp_path):
    missing = tmp_path / "src" / "nope.onnx"
    missing.parent.mkdir()
    err = convert_path_fails(tmp_path, missing, EXIT_IO, "No such file or directory")
    assert "nope.onnx" in err


def test_input_is_not_a_regular_file(tmp_path):
    convert_path_fails(tmp_path, type(tmp_path)("/dev/null"), EXIT_IO, "not a regular file")


@pytest.mark.parametrize("flags", [[], ["--external-data"]])
def test_output_directory_missing(tmp_path, flags):
    src = tmp_path / "ok.onnx"
    src.write_bytes(small_model().SerializeToString())
    out = tmp_path / "no" / "such" / "OUT.onnx"
    r = run_ulc("convert", src, "-o", out, *flags)
    assert_clean_failure(r, EXIT_IO, out, ["cannot create output file",
                                           "No such file or directory"])
    assert not (tmp_path / "no").exists()
    assert listing(tmp_path) == ["ok.onnx"]


@pytest.mark.parametrize("flags", [[], ["--external-data"]])
def test_output_data_file_is_a_directory(tmp_path, flags):
    src = tmp_path / "ok.onnx"
    src.write_bytes(small_model(dims=(32, 32)).SerializeToString())  # 4 KiB: goes external
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "OUT.onnx.data").mkdir()
    r = run_ulc("convert", src, "-o", tmp_path / "out" / "OUT.onnx", *flags)
    if not flags:  # no external data asked for: OUT.onnx.data is not touched
        assert r.returncode == 0, r.stderr
        assert listing(tmp_path / "out") == ["OUT.onnx", "OUT.onnx.data"]
        return
    assert_clean_failure(r, EXIT_IO, tmp_path / "out" / "OUT.onnx.data",
                         ["output path is a directory"])
    assert listing(tmp_path / "out") == ["OUT.onnx.data"]


# ---------------------------------------------------------------------------------------------
# safetensors


@pytest.mark.parametrize("case", ["short", "header_beyond", "not_json", "overlap", "gap",
                                  "size_mismatch", "dup", "bad_dtype", "trailing"])
def test_bad_safetensors(tmp_path, case):
    import json

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
    assert r.returncode >= 0 and "Sanitizer" not in r.stderr and "runtime error" not in r.stderr
    # an unknown dtype may be reported as unsupported (4) rather than invalid (2)
    assert r.returncode == EXIT_INPUT or (case == "bad_dtype" and r.returncode == EXIT_UNSUPPORTED), r.stderr
    assert r.stderr.startswith(f"ulc: error: {src}: ") and needle in r.stderr, r.stderr
    assert listing(outdir) == []
