"""Whole-model gradients: ulc's autodiff through the torch-exported ResNet-18 and ViT fixtures
against torch autograd on the same modules (tests/fixtures/gen_exporters.py rebuilds them).
L = Σ logits ⊙ S for a random S; compared: dL/dinput and dL/dW for every weight whose ONNX
initializer is the torch parameter itself (same name, same values, read once: convolutions
folded with their BatchNorm are different tensors and are skipped)."""
import sys

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from safetensors.numpy import load_file, save_file

from conftest import ROOT

sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
import gen_exporters  # noqa: E402


@pytest.fixture(scope="module")
def exported(fixture_dir):
    return gen_exporters.generate(fixture_dir)


@pytest.mark.parametrize("name,shape", [("resnet18_op17.onnx", (2, 3, 64, 64)),
                                        ("vit_op17.onnx", (3, 3, 32, 32)),
                                        ("vit_op13.onnx", (2, 3, 32, 32))])
def test_whole_model_gradients_match_torch(tmp_path, ulc, exported, name, shape):
    path = exported / name
    model = onnx.load(path)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    tm = gen_exporters.EXPORTS[name][0]()[0].eval()  # the exported module, rebuilt (seeded)
    params = dict(tm.named_parameters())
    uses = {}
    for n in model.graph.node:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    # torch's exporter shares one initializer between equal tensors (fresh LayerNorm weights,
    # zero biases): the graph's gradient of a shared one is the sum over its uses, so only
    # weights read once are compared one to one
    same = [k for k, p in params.items()
            if k in inits and inits[k].shape == tuple(p.shape) and uses.get(k) == 1
            and np.array_equal(inits[k], p.detach().numpy())]
    assert len(same) >= 2, f"too few shared weights to compare: {same}"

    r = np.random.default_rng(0)
    x = r.standard_normal(shape).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    y = tm(xt)
    s = r.standard_normal(tuple(y.shape)).astype(np.float32)
    (y * torch.tensor(s)).sum().backward()

    save_file({"input": x, "grad:logits": s}, str(tmp_path / "f.safetensors"))
    ulc("grad", path, "--input", tmp_path / "f.safetensors", "-o", tmp_path / "g.safetensors",
        "--wrt", "|".join(["input", *same]), check=True)
    got = load_file(str(tmp_path / "g.safetensors"))
    np.testing.assert_allclose(got["loss"], float((y * torch.tensor(s)).sum()), rtol=1e-4)
    for k, ref in [("input", xt.grad.numpy())] + [(k, params[k].grad.numpy()) for k in same]:
        g = got[f"grad:{k}"]
        scale = np.abs(ref).max()
        np.testing.assert_allclose(g, ref, rtol=2e-3, atol=2e-4 * scale, err_msg=k)
