"""Shape rules refuse model values that int64 cannot hold, with a message, never with UB.

The models are fuzz_onnx's regression seeds for the checked arithmetic of runtime/kutil.h
(fuzz/make_regress_shapes.py builds both). Each one once made a shape rule (or a kernel run by
constant folding) overflow int64, negate INT64_MIN or cast a double out of range. Now:

  - the analysis (`ulc convert --passes cleanup`) and a plan (`ulc run`) refuse the node with
    exit code 2 and one line naming the node and what did not fit (a sum or product past
    int64, a size past the runtime's 2^48 elements, a spatial attribute past 2^48), or
  - where nothing is out of range after all (a declared shape too large to know is left
    unknown; a step of INT64_MIN takes one element), they succeed.

In the ASan+UBSan build (ctest in build-asan) the same cases also prove the absence of UB: a
sanitizer report fails them.
"""
import sys

import numpy as np
import pytest

from conftest import ROOT, run_ulc

sys.path.insert(0, str(ROOT / "fuzz"))
from make_regress_shapes import attr_list_type, seeds  # noqa: E402

EXIT_INPUT = 2

# seed -> (op, what the refusal says), or None: analysed without error
CASES = {
    "tile-repeats": ("Tile", "repeats[0] = 4611686018427387904 takes axis 0 of size 4 past int64"),
    "slice-step-min": None,
    "slice-step-fold": None,
    "pad-crop": ("Pad", "pads -9223372036854775808/9223372036854775807 crop more than axis 0's 4"),
    "concat-sum": None,
    "split-sum": ("Split", "split sizes add up past int64 (entry 1 is 9223372036854775807)"),
    "pool-stride": ("MaxPool", "attribute strides[0] = 9223372036854775807; values must be "
                               "<= 2^48"),
    "pool-dilation": ("MaxPool", "attribute dilations[0] = 4611686018427387904; values must be "
                                 "<= 2^48"),
    "pool-ext": ("MaxPool", "spatial dim 0: kernel, strides, dilations and pads take the window "
                            "past int64"),
    "pool-kernel-taps": ("MaxPool", "the kernel [16777216,16777216,16777216] has more than 2^48 "
                                    "taps"),
    "pool-output-product": ("MaxPool", "the output would have more than 2^48 elements"),
    "convtranspose-stride": ("ConvTranspose", "attribute strides[0] = 4611686018427387904; "
                                              "values must be <= 2^48"),
    "conv-group": ("Conv", "does not fit X f32[1,2147483648,4] with group 2147483648"),
    "legacy-axis": ("Add", "B f32[3] does not fit in A f32[2,3] at axis 9223372036854775807"),
    "range-uint64": None,
}


def clean(err):
    assert "Sanitizer" not in err and "runtime error" not in err, err


def test_every_seed_has_a_case():
    assert sorted(CASES) == sorted(seeds())


@pytest.mark.parametrize("name", sorted(CASES))
def test_analysis(tmp_path, name):
    src = tmp_path / f"{name}.onnx"
    src.write_bytes(seeds()[name])
    r = run_ulc("convert", src, "-o", tmp_path / "o.onnx", "--passes", "cleanup")
    clean(r.stderr)
    want = CASES[name]
    if want is None:
        assert r.returncode == 0, r.stderr
        return
    op, what = want
    assert r.returncode == EXIT_INPUT, f"exit {r.returncode}: {r.stderr}"
    assert r.stderr.startswith(f"ulc: error: pass cleanup: node #0 ({op}): "), r.stderr
    assert r.stderr.count("\n") == 1, f"not one line: {r.stderr!r}"
    assert what in r.stderr, r.stderr
    assert not (tmp_path / "o.onnx").exists()


# a plan (ulc run) refuses what the analysis refuses, for the shapes the inputs are bound to
@pytest.mark.parametrize("name,feed", [("tile-repeats", [4]), ("pool-dilation", [1, 1, 4]),
                                       ("split-sum", [2]), ("slice-step-min", [4])])
def test_plan(tmp_path, name, feed):
    from safetensors.numpy import save_file
    src = tmp_path / f"{name}.onnx"
    src.write_bytes(seeds()[name])
    feeds = tmp_path / "in.safetensors"
    save_file({"x": np.arange(np.prod(feed), dtype=np.float32).reshape(feed)}, str(feeds))
    out = tmp_path / "out.safetensors"
    r = run_ulc("run", src, "--input", feeds, "-o", out)
    clean(r.stderr)
    want = CASES[name]
    if want is None:
        assert r.returncode == 0, r.stderr
        from safetensors.numpy import load_file
        assert load_file(str(out))["y"].tolist() == [3.0]  # INT64_MIN steps once, from the end
        return
    op, what = want
    assert r.returncode == EXIT_INPUT, f"exit {r.returncode}: {r.stderr}"
    assert r.stderr.startswith(f"ulc: error: node #0 ({op}): "), r.stderr
    assert r.stderr.count("\n") == 1, f"not one line: {r.stderr!r}"
    assert what in r.stderr, r.stderr
    assert not out.exists()


# the importer's finding of the campaign after the audit: a list type that names another list
def test_attribute_list_type(tmp_path):
    src = tmp_path / "bad.onnx"
    src.write_bytes(attr_list_type())
    r = run_ulc("convert", src, "-o", tmp_path / "o.onnx")
    clean(r.stderr)
    assert r.returncode == EXIT_INPUT, f"exit {r.returncode}: {r.stderr}"
    assert r.stderr == (f"ulc: error: {src}: node #0 (ConstantOfShape): attribute 'value' has "
                        "type TENSORS but holds strings\n"), r.stderr
    assert not (tmp_path / "o.onnx").exists()
