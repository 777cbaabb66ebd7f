"""Trained LoRA adapters: `ulc train --before lora-inject{...} --after lora-merge --emit-adapter`
on the torchvision ViT export. The loss goes down; PEFT loading the emitted adapter onto the
torch module and merging gives ulc's merged weights; the trained-but-unmerged model merged later
gives the same bytes; the merged model keeps the original structure."""
import json
import sys
from urllib.parse import unquote

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from peft import PeftModel
from safetensors.numpy import save_file

from conftest import ROOT, run_ulc

sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
import gen_exporters  # noqa: E402

torch.set_num_threads(1)


def inits(path):
    return {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}


def test_trained_adapter_matches_peft_merge(fixture_dir, tmp_path):
    src = gen_exporters.generate(fixture_dir) / "vit_op17.onnx"
    r = np.random.default_rng(3)
    data = tmp_path / "d.safetensors"
    save_file({"input": r.standard_normal((16, 3, 32, 32)).astype(np.float32),
               "label": r.integers(0, 10, 16).astype(np.int64)}, str(data))
    inject = "lora-inject{rank=4,alpha=8,targets=Gemm|MatMul,exclude=*self_attention,seed=1}"
    common = ["train", src, "--data", data, "--before", inject, "--lr", "5e-3",
              "--batch-size", "8", "--epochs", "4", "--seed", "2", "--threads", "1", "-q"]
    merged, ad = tmp_path / "merged.onnx", tmp_path / "adapter"
    r1 = run_ulc(*common, "--after", "lora-merge", "-o", merged, "--emit-adapter", ad,
                 "--losses", tmp_path / "l.json")
    assert r1.returncode == 0, r1.stderr
    curve = json.loads((tmp_path / "l.json").read_text())["loss"]
    assert np.mean(curve[-2:]) < np.mean(curve[:2]), curve

    # the same run unmerged, merged by a later convert: the same bytes
    unmerged = tmp_path / "unmerged.onnx"
    assert run_ulc(*common, "-o", unmerged).returncode == 0
    later = tmp_path / "later.onnx"
    r2 = run_ulc("convert", unmerged, "-o", later, "--passes", "lora-merge")
    assert r2.returncode == 0, r2.stderr
    a, b = inits(later), inits(merged)
    assert list(a) == list(b) and all(np.array_equal(a[k], b[k]) for k in a)

    base, ours = onnx.load(str(src)), onnx.load(str(merged))
    assert [(n.name, n.op_type) for n in ours.graph.node] == [(n.name, n.op_type) for n in base.graph.node]

    model = gen_exporters.vit()[0]
    before = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    pm = PeftModel.from_pretrained(model, str(ad)).merge_and_unload()
    ref = {k: v.detach().numpy() for k, v in pm.state_dict().items()}
    cfg = json.loads((ad / "adapter_config.json").read_text())
    got = inits(merged)
    meta = {p.key: p.value for p in onnx.load(str(unmerged)).metadata_props}
    recs = [dict(f.split("=", 1) for f in ln.split(" ")) for ln in meta["ulc.lora"].splitlines()[1:]]
    assert cfg["r"] == 4 and cfg["lora_alpha"] == 8
    assert sorted(cfg["target_modules"]) == sorted(unquote(r["module"]) for r in recs)
    for rec in recs:
        key = unquote(rec["module"]) + ".weight"
        w = got[unquote(rec["weight"])]
        if rec["kind"] == "linear_in_out":  # torch's transposed MatMul copy of the Linear weight
            w = w.T
        assert np.abs(ref[key] - before[key]).max() > 1e-5, f"{key}: training changed nothing"
        np.testing.assert_allclose(w, ref[key], rtol=0, atol=1e-6 * max(1.0, np.abs(ref[key]).max()),
                                   err_msg=key)
