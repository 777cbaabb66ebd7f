"""ulc is as strict as the reference implementations (issue 16, item 5).

Each case is input the reference refuses (onnx.checker, onnxruntime, safetensors, Python's json
where it is strict) or that docs/spec.md forbids. ulc must refuse it too, with the exit code
docs/cli.md documents, one line `ulc: error: <file>: <what>` naming the file and the field, no
crash, and nothing left behind. Where a reference is in the venv, the test asserts that it
refuses the same input.
"""
import json
import os
import struct

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import ROOT, run_ulc

EXIT_INPUT, EXIT_UNSUPPORTED = 2, 4
DIGITS = ROOT / "models" / "digits"


def assert_refused(r, code, named, *needles):
    err = r.stderr
    assert r.returncode >= 0, f"killed by signal {-r.returncode}: {err}"
    assert "Sanitizer" not in err and "runtime error" not in err, err
    assert r.returncode == code, f"exit {r.returncode}, expected {code}: {err}"
    assert err.startswith(f"ulc: error: {named}: "), err
    assert err.count("\n") == 1, f"not one line: {err!r}"
    for n in needles:
        assert n in err, f"{n!r} not in {err!r}"
    return err


def refused_cleanly(tmp_path, args, code, named, *needles):
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    r = run_ulc(*args(out))
    err = assert_refused(r, code, named, *needles)
    assert os.listdir(out) == [], f"left behind: {os.listdir(out)}"
    return err


def reference_refuses(fn):
    with pytest.raises(Exception):
        fn()


# ---------------------------------------------------------------------------------------------
# safetensors files


def st_bytes(header, data=b"\0" * 8):
    h = header.encode() if isinstance(header, str) else header
    return struct.pack("<Q", len(h)) + h + data


def st_load_reference(blob):
    from safetensors.numpy import load
    return load(blob)


ENTRY = '{"dtype":"F32","shape":[2],"data_offsets":[0,8]}'
ST_CASES = {
    # NUL in strings (1)
    "nul_name": ('{"a\\u0000b":' + ENTRY + "}", "key 'a\\u0000b'", "\\u0000", False),
    "raw_nul_name": (b'{"a\x00b":' + ENTRY.encode() + b"}", "raw control character (0x00)", "", True),
    "raw_tab_name": (b'{"a\tb":' + ENTRY.encode() + b"}", "raw control character (0x09)", "", True),
    "nul_dtype": ('{"a":{"dtype":"F32\\u0000","shape":[2],"data_offsets":[0,8]}}',
                  "key 'a.dtype'", "\\u0000", True),
    "nul_meta_key": ('{"__metadata__":{"k\\u0000":"v"},"a":' + ENTRY + "}",
                     "key '__metadata__.k\\u0000'", "\\u0000", False),
    "nul_meta_value": ('{"__metadata__":{"k":"v\\u0000w"},"a":' + ENTRY + "}",
                       "key '__metadata__.k'", "\\u0000", False),
    # repeated fields, names and keys (2)
    "dup_dtype": ('{"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}}',
                  "tensor 'a': field 'dtype' appears twice", "", True),
    "dup_shape": ('{"a":{"dtype":"F32","shape":[2],"shape":[2],"data_offsets":[0,8]}}',
                  "tensor 'a': field 'shape' appears twice", "", True),
    "dup_offsets": ('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"data_offsets":[0,8]}}',
                    "tensor 'a': field 'data_offsets' appears twice", "", True),
    "dup_name": ('{"a":' + ENTRY + ',"a":' + ENTRY + "}", "tensor 'a' appears twice", "", False),
    "dup_meta": ('{"__metadata__":{"k":"1","k":"2"},"a":' + ENTRY + "}",
                 "__metadata__ key 'k' appears twice", "", False),
}


@pytest.mark.parametrize("case", sorted(ST_CASES))
def test_safetensors_header(tmp_path, case):
    header, n1, n2, ref_refuses = ST_CASES[case]
    blob = st_bytes(header)
    if ref_refuses:  # safetensors 0.4 accepts the others (last wins / NUL kept): ulc is stricter
        reference_refuses(lambda: st_load_reference(blob))
    src = tmp_path / "bad.safetensors"
    src.write_bytes(blob)
    needles = [n for n in (n1, n2) if n]
    refused_cleanly(tmp_path, lambda out: ("convert", src, "-o", out / "o.safetensors"),
                    EXIT_INPUT, src, *needles)


# ---------------------------------------------------------------------------------------------
# forget specs


def digits_dir(tmp_path):
    d = tmp_path / "digits"
    d.mkdir()
    for f in ("train.safetensors", "test.safetensors", "digits_resnet.onnx"):
        os.symlink(DIGITS / f, d / f)
    return d


def spec_text(**over):
    s = {"method": "rfa", "data": {"train": "train.safetensors"}, "forget": {"classes": [3]}}
    s.update(over)
    return json.dumps(s)


SPEC_CASES = {
    "nul_method": ('{"method": "rfa\\u0000x", "data": {"train": "train.safetensors"}, '
                   '"forget": {"classes": [3]}}', ["key 'method'", "\\u0000"]),
    "nul_path": ('{"method": "rfa", "data": {"train": "train.safetensors\\u0000.old"}, '
                 '"forget": {"classes": [3]}}', ["key 'data.train'", "\\u0000"]),
    "nul_key": ('{"method": "rfa", "data": {"train": "train.safetensors"}, '
                '"forget": {"classes": [3]}, "lora": {"rank\\u0000": 4}}',
                ["key 'lora.rank\\u0000'", "\\u0000"]),
    "nul_in_list": ('{"method": "rfa", "data": {"train": "train.safetensors"}, '
                    '"forget": {"classes": [3]}, "lora": {"targets": ["Conv", "Gemm\\u0000"]}}',
                    ["key 'lora.targets[1]'", "\\u0000"]),
    "raw_newline": ('{"method": "rfa\n", "data": {"train": "train.safetensors"}, '
                    '"forget": {"classes": [3]}}', ["key 'method'", "raw control character (0x0a)"]),
}


@pytest.mark.parametrize("case", sorted(SPEC_CASES))
def test_spec_strings(tmp_path, case):
    text, needles = SPEC_CASES[case]
    d = digits_dir(tmp_path)
    spec = d / "spec.json"
    spec.write_text(text)
    if "raw" in case:  # Python's json (strict) refuses raw control characters too
        reference_refuses(lambda: json.loads(text))
    refused_cleanly(tmp_path, lambda out: (d / "digits_resnet.onnx", "--forget", spec, "-o",
                                           out / "o.onnx", "-q"), EXIT_INPUT, spec, *needles)


@pytest.mark.parametrize("how", ["same_path", "other_path", "symlink", "hardlink"])
def test_spec_test_is_train(tmp_path, how):
    d = digits_dir(tmp_path)
    real = d / "real.safetensors"
    real.write_bytes((DIGITS / "train.safetensors").read_bytes())
    test = {"same_path": "real.safetensors", "other_path": "./real.safetensors",
            "symlink": "link.safetensors", "hardlink": "hard.safetensors"}[how]
    os.symlink(real, d / "link.safetensors")
    os.link(real, d / "hard.safetensors")
    spec = d / "spec.json"
    spec.write_text(spec_text(data={"train": "real.safetensors", "test": test}))
    refused_cleanly(tmp_path, lambda out: (d / "digits_resnet.onnx", "--forget", spec, "-o",
                                           out / "o.onnx", "-q"), EXIT_INPUT, spec,
                    "key 'data.test'", "is the same file as data.train")


# ---------------------------------------------------------------------------------------------
# PEFT adapters and Hugging Face configs


def adapter(tmp_path, cfg):
    from safetensors.numpy import save_file
    base = tmp_path / "base.safetensors"
    save_file({"lin.weight": np.zeros((4, 4), np.float32)}, str(base))
    ad = tmp_path / "adapter"
    ad.mkdir()
    save_file({"base_model.model.lin.lora_A.weight": np.zeros((2, 4), np.float32),
               "base_model.model.lin.lora_B.weight": np.zeros((4, 2), np.float32)},
              str(ad / "adapter_model.safetensors"))
    (ad / "adapter_config.json").write_text(cfg)
    return base, ad


def peft_cfg(**over):
    c = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["lin"], "bias": "none"}
    c.update(over)
    return json.dumps(c)


PEFT_CASES = {
    "r_2p40": (peft_cfg(r=2 ** 40), ["'r' is 1099511627776, expected an integer in [1, 65536]"]),
    "r_zero": (peft_cfg(r=0), ["'r' is 0, expected"]),
    "r_negative": (peft_cfg(r=-3), ["'r' is -3, expected"]),
    "r_fraction": (peft_cfg(r=2.5), ["'r' is 2.5, expected"]),
    "r_string": (peft_cfg(r="2"), ["'r' must be an integer"]),
    "alpha_zero": (peft_cfg(lora_alpha=0), ["'lora_alpha' is 0, expected a finite number > 0"]),
    "alpha_string": (peft_cfg(lora_alpha="4"), ["'lora_alpha' must be a number"]),
    "rank_pattern_huge": (peft_cfg(rank_pattern={"lin": 2 ** 40}),
                          ["'rank_pattern.lin' is 1099511627776"]),
    "targets_number": (peft_cfg(target_modules=5), ["'target_modules' must be a string"]),
    "targets_list_number": (peft_cfg(target_modules=["lin", 5]), ["'target_modules[1]'"]),
    "rslora_string": (peft_cfg(use_rslora="yes"), ["'use_rslora' must be true or false"]),
    "bias_unknown": (peft_cfg(bias="some"), ["'bias' is 'some'"]),
    "nul_target": ('{"peft_type": "LORA", "r": 2, "target_modules": ["li\\u0000n"]}',
                   ["key 'target_modules[0]'", "\\u0000"]),
    "dup_key": ('{"peft_type": "LORA", "r": 2, "r": 64, "target_modules": ["lin"]}',
                ["key 'r' appears twice"]),
}


@pytest.mark.parametrize("case", sorted(PEFT_CASES))
def test_adapter_config(tmp_path, case):
    cfg, needles = PEFT_CASES[case]
    base, ad = adapter(tmp_path, cfg)
    refused_cleanly(tmp_path, lambda out: ("merge", base, "--lora", ad, "-o",
                                           out / "m.safetensors"),
                    EXIT_INPUT, ad / "adapter_config.json", *needles)


def test_adapter_config_sane_merges(tmp_path):
    base, ad = adapter(tmp_path, peft_cfg())
    r = run_ulc("merge", base, "--lora", ad, "-o", tmp_path / "m.safetensors")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("text,needles", [
    ('{"model_type": "vit\\u0000", "hidden_size": 8}', ["key 'model_type'", "\\u0000"]),
    ('{"model_type": "vit", "model_type": "gpt2"}', ["key 'model_type' appears twice"]),
])
def test_hf_config(tmp_path, text, needles):
    from safetensors.numpy import save_file
    d = tmp_path / "hf"
    d.mkdir()
    save_file({"w": np.zeros(2, np.float32)}, str(d / "model.safetensors"))
    (d / "config.json").write_text(text)
    refused_cleanly(tmp_path, lambda out: ("convert", d, "-o", out / "o.safetensors"),
                    EXIT_INPUT, d / "config.json", *needles)


# ---------------------------------------------------------------------------------------------
# ONNX models


def conv_model(attr=None, opset=17, node_attrs=None):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])
    w = numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "w")
    n = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", **(node_attrs or {}))
    if attr is not None:
        n.attribute.append(attr)
    g = helper.make_graph([n], "g", [x], [y], [w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def one_node(op, inputs, attrs=None, opset=17, elem=TensorProto.FLOAT, extra=None):
    x = helper.make_tensor_value_info("x", elem, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    n = helper.make_node(op, inputs, ["y"], name="n", **(attrs or {}))
    for a in extra or []:
        n.attribute.append(a)
    g = helper.make_graph([n], "g", [x], [y])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def with_ir(m, ir):
    m.ir_version = ir
    return m


def no_opsets(ir):
    m = one_node("Relu", ["x"])
    del m.opset_import[:]
    m.ir_version = ir
    return m


def value_info_elem(elem):
    m = one_node("Relu", ["x"])
    m.graph.value_info.append(helper.make_tensor_value_info("y", elem, [2, 3]))
    return m


ONNX_CASES = {
    # attributes against the op's schema (3)
    "conv_strides_floats": (lambda: conv_model(helper.make_attribute("strides", [1.0, 1.0])),
                            EXIT_INPUT, ["node 'conv' (Conv)", "'strides' is FLOATS",
                                         "takes INTS"]),
    "conv_group_tensor": (lambda: conv_model(helper.make_attribute(
        "group", numpy_helper.from_array(np.array(1, np.int64)))),
        EXIT_INPUT, ["node 'conv' (Conv)", "'group' is TENSOR", "takes INT"]),
    "conv_unknown": (lambda: conv_model(helper.make_attribute("stride", [1, 1])), EXIT_INPUT,
                     ["node 'conv' (Conv)", "unknown attribute 'stride'"]),
    "relu_unknown": (lambda: one_node("Relu", ["x"], {"alpha": 0.1}), EXIT_INPUT,
                     ["node 'n' (Relu)", "unknown attribute 'alpha'"]),
    "reducesum_axes_at_13": (lambda: one_node("ReduceSum", ["x"], {"axes": [0]}, opset=13),
                             EXIT_INPUT, ["attribute 'axes' is not part of ReduceSum at opset 13"]),
    "cast_to_unknown": (lambda: one_node("Cast", ["x"], {"to": 99}), EXIT_INPUT,
                        ["node 'n' (Cast)", "'to' is 99, not a known TensorProto.DataType"]),
    "gelu_before_20": (lambda: one_node("Gelu", ["x"], opset=17), EXIT_INPUT,
                       ["Gelu does not exist at opset 17"]),
    # model fields
    "ir_version_0": (lambda: with_ir(one_node("Relu", ["x"]), 0), EXIT_INPUT, ["ir_version 0"]),
    "ir_version_2p62": (lambda: with_ir(one_node("Relu", ["x"]), 2 ** 62), EXIT_UNSUPPORTED,
                        ["ir_version 4611686018427387904 is newer"]),
    "opset_999": (lambda: one_node("Relu", ["x"], opset=999), EXIT_UNSUPPORTED,
                  ["ai.onnx opset 999 is newer than the newest ulc implements (21)"]),
    "opset_0": (lambda: one_node("Relu", ["x"], opset=0), EXIT_INPUT,
                ["opset_import of domain 'ai.onnx': version 0"]),
    "opset_negative": (lambda: one_node("Relu", ["x"], opset=-1), EXIT_INPUT, ["version -1"]),
    "elem_type_input": (lambda: one_node("Relu", ["x"], elem=99), EXIT_INPUT,
                        ["input 'x': elem_type 99"]),
    "elem_type_value_info": (lambda: value_info_elem(99), EXIT_INPUT, ["'y': elem_type 99"]),
    "elem_type_undefined": (lambda: one_node("Relu", ["x"], elem=0), EXIT_INPUT,
                            ["input 'x': elem_type 0"]),
    # no opset_import (4)
    "no_opset_ir8": (lambda: no_opsets(8), EXIT_INPUT, ["opset_import is missing"]),
    "no_opset_ir2": (lambda: no_opsets(2), EXIT_INPUT, ["opset_import is missing"]),
}

# what onnx.checker accepts, onnxruntime refuses: each case is refused by at least one
CHECKER_ACCEPTS = {"opset_999", "elem_type_input", "elem_type_undefined", "cast_to_unknown",
                   "no_opset_ir2"}
# both let an unknown elem_type in value_info through (onnxruntime ignores it): ulc is stricter
STRICTER = {"elem_type_value_info"}


def ort_refuses(m):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("case", sorted(ONNX_CASES))
def test_onnx_model(tmp_path, case):
    make, code, needles = ONNX_CASES[case]
    m = make()
    if case in CHECKER_ACCEPTS:
        reference_refuses(lambda: ort_refuses(m))
    elif case not in STRICTER:
        reference_refuses(lambda: onnx.checker.check_model(m, full_check=True))
    src = tmp_path / "bad.onnx"
    src.write_bytes(m.SerializeToString())
    refused_cleanly(tmp_path, lambda out: ("convert", src, "-o", out / "o.onnx"), code, src,
                    *needles)


@pytest.mark.parametrize("attr", [{"strides": [1, 1]}, {"group": 1}, {"auto_pad": "NOTSET"}])
def test_onnx_valid_attributes_pass(tmp_path, attr):
    m = conv_model(node_attrs=attr)
    onnx.checker.check_model(m, full_check=True)
    src = tmp_path / "ok.onnx"
    src.write_bytes(m.SerializeToString())
    r = run_ulc("convert", src, "-o", tmp_path / "o.onnx")
    assert r.returncode == 0, r.stderr


# The gradient graph ulc builds for --forget holds nodes of its own (ReduceSum with axes as an
# attribute before opset 13 and as an input from 13, Gemm with C before 11, ...): every one must
# be valid at the model's opset, which the planner checks like a file's nodes.
@pytest.mark.parametrize("opset", [9, 11, 12, 13, 17])
def test_forget_at_opset(tmp_path, opset):
    d = digits_dir(tmp_path)
    m = onnx.load(str(DIGITS / "digits_resnet.onnx"))
    m.opset_import[0].version = opset  # Conv/Gemm/Add/Relu/Flatten/GAP: the same attributes
    onnx.checker.check_model(m)
    src = d / f"resnet{opset}.onnx"
    src.write_bytes(m.SerializeToString())
    spec = d / "spec.json"
    spec.write_text(spec_text(train={"epochs": 1}, eval={"features": False, "relearn_steps": 0}))
    out = tmp_path / "o.onnx"
    r = run_ulc(src, "--forget", spec, "-o", out, "-q")
    assert r.returncode == 0, r.stderr
    assert onnx.load(str(out)).opset_import[0].version == opset
