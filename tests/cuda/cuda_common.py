"""What the CUDA backend's suites share: run a model with ulc on the cpu and on "cuda", compare.

"cuda" is, per test, either

  - the emulator: the CUDA backend's own sources built for the host (runtime/cuda/emu.h), made
    the "cuda" backend by ULC_CUDA_EMULATE=1 — runs everywhere, CI included, and checks the
    kernels' index arithmetic, reductions and the device plans; or
  - the GPU: the nvcc build on a real device. Without one visible, these cases skip, and the
    first of them says why in one line.

`cuda_mode` is a fixture parametrized over both; a suite uses it with run_nodes / run_model.
"""
import functools
import os
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file, save_file

from conftest import ulc_bin

OPSETS = [helper.make_opsetid("", 17), helper.make_opsetid("ulc", 1)]
DT = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE,
      np.dtype(np.int64): TensorProto.INT64, np.dtype(np.int32): TensorProto.INT32,
      np.dtype(np.bool_): TensorProto.BOOL, np.dtype(np.float16): TensorProto.FLOAT16,
      np.dtype(np.int16): TensorProto.INT16, np.dtype(np.int8): TensorProto.INT8,
      np.dtype(np.uint8): TensorProto.UINT8}


@functools.lru_cache(maxsize=None)
def gpu_absent_reason():
    """None when `ulc` sees a CUDA device, else why not (the message `--device cuda` gives)."""
    env = {k: v for k, v in os.environ.items() if k != "ULC_CUDA_EMULATE"}
    p = subprocess.run([ulc_bin(), "--device", "cuda", "ops", "--backend", "cuda"],
                       capture_output=True, text=True, timeout=60, env=env)
    if p.returncode == 0:
        return None
    return (p.stderr.strip().splitlines() or ["ulc --device cuda failed"])[-1]


@functools.lru_cache(maxsize=None)
def emulator_absent_reason():
    """None when this build has the CUDA emulator (not in sanitized builds), else why not."""
    p = subprocess.run([ulc_bin(), "--version"], capture_output=True, text=True, timeout=60,
                       env=env_for("emulator"))
    if p.returncode == 0 and "cuda" in p.stdout:
        return None
    return "this build has no CUDA emulator (sanitized and fuzz builds leave it out)"


_skip_said = []


def env_for(mode):
    env = dict(os.environ)
    if mode == "emulator":
        env["ULC_CUDA_EMULATE"] = "1"
    else:
        env.pop("ULC_CUDA_EMULATE", None)
    return env


@pytest.fixture(params=["emulator", "gpu"])
def cuda_mode(request):
    if request.param == "emulator" and emulator_absent_reason():
        pytest.skip(emulator_absent_reason())
    if request.param == "gpu":
        why = gpu_absent_reason()
        if why:
            if not _skip_said:
                _skip_said.append(1)
                pytest.skip(f"no GPU: the GPU cases of the CUDA suites skip ({why}); "
                            "the emulator cases ran")
            pytest.skip("no GPU")
    return request.param


def save_model(path, nodes, feeds, outputs, inits=None, out_types=None, opsets=OPSETS):
    inits = inits or {}
    ins = [helper.make_tensor_value_info(k, DT[np.asarray(v).dtype], list(np.shape(v)))
           for k, v in feeds.items()]
    outs = [helper.make_tensor_value_info(o, (out_types or {}).get(o, TensorProto.FLOAT), None)
            for o in outputs]
    g = helper.make_graph(nodes, "m", ins, outs,
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    onnx.save(helper.make_model(g, opset_imports=opsets), str(path))
    return path


def run_model(tmp_path, model, feeds, device, mode=None, tag="r", extra=(), check=True):
    """`ulc run` on device "cpu" or "cuda" (mode: "emulator" or "gpu"); {output: array}."""
    inp, out = tmp_path / f"{tag}_{device}_in.safetensors", tmp_path / f"{tag}_{device}_out.safetensors"
    # ascontiguousarray makes a 0-d array 1-d: reshape back, so scalar inputs keep their rank
    save_file({k: np.ascontiguousarray(v).reshape(np.shape(v)) for k, v in feeds.items()}, str(inp))
    cmd = [ulc_bin(), "--device", device, "run", str(model), "--input", str(inp), "-o", str(out), *extra]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                       env=env_for(mode or "emulator"))
    if not check:
        return p
    assert p.returncode == 0, f"{' '.join(cmd)}:\n{p.stderr}"
    return load_file(str(out))


def run_both(tmp_path, nodes, feeds, outputs, mode, inits=None, out_types=None, tag="m",
             opsets=OPSETS):
    """A model of `nodes` run on the cpu and on cuda: (cpu outputs, cuda outputs)."""
    model = save_model(tmp_path / f"{tag}.onnx", nodes, feeds, outputs, inits, out_types, opsets)
    return (run_model(tmp_path, model, feeds, "cpu", tag=tag),
            run_model(tmp_path, model, feeds, "cuda", mode, tag=tag))


def assert_close(cpu, cuda, rtol=1e-5, atol=1e-6, what=""):
    """Every output of cuda matches cpu's: same shapes and dtypes, values within
    atol + rtol·max|cpu| (exact for integer and bool outputs)."""
    assert set(cpu) == set(cuda), (sorted(cpu), sorted(cuda))
    for k in cpu:
        a, b = cpu[k], cuda[k]
        assert a.shape == b.shape and a.dtype == b.dtype, (what, k, a.shape, b.shape, a.dtype, b.dtype)
        if a.dtype.kind in "biu":
            assert np.array_equal(a, b), (what, k)
            continue
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        assert np.array_equal(np.isnan(a64), np.isnan(b64)), (what, k, "NaN positions differ")
        m = ~np.isnan(a64)
        scale = np.abs(a64[m]).max() if m.any() else 0.0
        err = np.abs(a64[m] - b64[m]).max() if m.any() else 0.0
        assert err <= atol + rtol * scale, f"{what} {k}: max |cuda - cpu| {err:.3g} (scale {scale:.3g})"
