"""Unlearning methods as passes (docs/cli.md, docs/spec.md): `ulc train --passes PIPELINE
--forget-classes/--forget-indices` does what the equivalent spec does (same weights); method
passes take typed options checked before any work; the model's metadata records each request
and a later request keeps what earlier ones forgot out of the retain set; a data column named
after the model's input (pixel_values) is bound to it for every method."""
import json
import sys

import numpy as np
import onnx
import pytest
from safetensors.numpy import load_file, save_file

from conftest import ROOT, run_ulc

sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
import gen_hf  # noqa: E402

DIGITS = ROOT / "models" / "digits"
MODEL = DIGITS / "digits_resnet.onnx"
TRAIN = DIGITS / "train.safetensors"
TEST = DIGITS / "test.safetensors"
EXIT_USAGE, EXIT_INPUT = 1, 2


def weights(path):
    m = onnx.load(str(path))
    return {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}


def history(path):
    m = onnx.load(str(path))
    meta = {p.key: p.value for p in m.metadata_props}
    return json.loads(meta["ulc_history"]) if "ulc_history" in meta else None


def same_weights(a, b):
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)


def spec_run(tmp_path, spec, model=MODEL, name="spec_out.onnx"):
    sp = tmp_path / f"{name}.json"
    sp.write_text(json.dumps(spec))
    out = tmp_path / name
    proc = run_ulc(model, "--forget", sp, "-o", out, "--report", tmp_path / f"{name}.report.json",
                   "--threads", "2", "-q")
    assert proc.returncode == 0, proc.stderr
    return out, json.loads((tmp_path / f"{name}.report.json").read_text()), proc


def train_run(tmp_path, *args, model=MODEL, name="train_out.onnx"):
    out = tmp_path / name
    proc = run_ulc("train", model, "--data", TRAIN, "-o", out, "--threads", "2", "-q", *args)
    return proc, out


SPEC_RFA = {"method": "rfa", "data": {"train": str(TRAIN), "test": str(TEST)},
            "forget": {"classes": [3]}, "lora": {"rank": 8, "alpha": 32},
            "train": {"epochs": 2, "batch_size": 128, "lr": 5e-3}, "rfa": {"gamma": 0.5}}


@pytest.mark.slow
def test_train_passes_equals_the_spec_rfa(tmp_path):
    ref, rep, _ = spec_run(tmp_path, SPEC_RFA)
    proc, out = train_run(tmp_path, "--forget-classes", "3", "--epochs", "2", "--batch-size", "128",
                          "--lr", "5e-3", "--passes",
                          "lora-inject{rank=8,alpha=32,placement=rfa},rfa{gamma=0.5},lora-merge")
    assert proc.returncode == 0, proc.stderr
    assert same_weights(ref, out)
    # the passes the spec ran, as the history records them, give the same weights again
    passes = history(ref)[0]["passes"]
    assert passes.startswith("lora-inject{") and ",rfa{" in passes and passes.endswith("lora-merge")
    proc, out2 = train_run(tmp_path, "--forget-classes", "3", "--passes", passes, name="again.onnx")
    assert proc.returncode == 0, proc.stderr
    assert same_weights(ref, out2)
    # options given to the pass itself override the run's flags
    proc, out3 = train_run(tmp_path, "--forget-classes", "3", "--epochs", "7", "--passes",
                           passes.replace("epochs=2", "epochs=2"), name="flags.onnx")
    assert proc.returncode == 0 and same_weights(ref, out3)
    assert rep["hyperparameters"]["train"]["epochs"] == 2


def test_train_passes_equals_the_spec_delete_on_rows(tmp_path):
    idx = [int(i) for i in np.flatnonzero(load_file(str(TRAIN))["label"] == 5)[:40]]
    (tmp_path / "rows.json").write_text(json.dumps(idx))
    spec = {"method": "delete", "data": {"train": str(TRAIN)},
            "forget": {"indices_file": str(tmp_path / "rows.json")}, "train": {"epochs": 2}}
    ref, _, _ = spec_run(tmp_path, spec)
    proc, out = train_run(tmp_path, "--forget-indices", tmp_path / "rows.json", "--passes",
                          "delete{epochs=2}")
    assert proc.returncode == 0, proc.stderr
    assert same_weights(ref, out)
    h = history(out)
    assert h[0]["method"] == "delete" and h[0]["forget"]["rows"] == idx
    assert h[0]["forget"]["data_rows"] == 1437 and len(h[0]["forget"]["data_sha256"]) == 64


@pytest.mark.parametrize("args,code,needle", [
    (["--forget-classes", "3", "--passes", "rfa"], EXIT_USAGE,
     "pass rfa trains LoRA adapters: end the passes with lora-merge"),
    (["--forget-classes", "3", "--passes", "rfa,lora-merge"], EXIT_USAGE,
     "pass rfa: the model has no LoRA adapters to train"),
    (["--forget-classes", "3", "--passes", "delete,scrub"], EXIT_USAGE, "expected one unlearning method"),
    (["--forget-classes", "3", "--passes", "cleanup"], EXIT_USAGE, "found 0"),
    (["--passes", "delete"], EXIT_USAGE, "needs one of --forget-classes and --forget-indices"),
    (["--forget-classes", "3"], EXIT_USAGE, "go with --passes"),
    (["--forget-classes", "3,x", "--passes", "delete"], EXIT_USAGE, "expected class numbers"),
    (["--forget-classes", "3,3", "--passes", "delete"], EXIT_USAGE, "class 3 is listed twice"),
    (["--forget-classes", "42", "--passes", "delete"], EXIT_INPUT, "42"),
    (["--forget-classes", "3", "--passes", "delete{lr=0}"], EXIT_USAGE, "lr=0: expected a number in (0, 1000]"),
    (["--forget-classes", "3", "--passes", "delete{mask=some}"], EXIT_USAGE, "expected own or all_forget"),
    (["--forget-classes", "3", "--passes", "delete{epochs=two}"], EXIT_USAGE, "epochs=two: expected an integer"),
    (["--forget-classes", "3", "--passes", "delete{gamma=1}"], EXIT_USAGE, "unknown option 'gamma'"),
    (["--forget-classes", "3", "--passes", "finetune{optimizer=adamw,momentum=0.9}"], EXIT_USAGE,
     "only SGD has momentum"),
    (["--forget-classes", "3", "--passes", "delete", "--before", "lora-inject"], EXIT_USAGE,
     "does not go with --before"),
    (["--forget-classes", "3", "--passes", "delete", "--max-steps", "3"], EXIT_USAGE,
     "--max-steps, --schedule, --gamma"),
    (["--forget-classes", "3", "--passes", "finetune", "--no-shuffle"], EXIT_USAGE, "do not apply"),
    (["--forget-classes", "3", "--passes", "lora-inject{placement=rfa},rfa"], EXIT_USAGE,
     "end the passes with lora-merge"),
    (["--forget-classes", "3", "--passes", "lora-inject{placement=rfa},rfa{momentum=0.5},lora-merge"],
     EXIT_USAGE, "only SGD has momentum"),
    (["--forget-classes", "3", "--passes", "delete{train=lora},lora-merge"], EXIT_USAGE,
     "the model has no LoRA adapters to train"),
])
def test_train_passes_refuses_bad_requests(tmp_path, args, code, needle):
    proc, out = train_run(tmp_path, *args)
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert needle in proc.stderr, proc.stderr
    assert not out.exists()


def test_method_passes_outside_a_request_say_what_they_need(tmp_path):
    for args in (["train", MODEL, "--data", TRAIN, "-o", tmp_path / "o.onnx", "--before", "rfa"],
                 ["convert", MODEL, "-o", tmp_path / "o.onnx", "--passes", "delete"]):
        proc = run_ulc(*args)
        assert proc.returncode == EXIT_USAGE, proc.stderr
        assert "pass " in proc.stderr and "needs the training data and a forget set" in proc.stderr
        assert not (tmp_path / "o.onnx").exists()


def test_mask_all_forget_needs_classes_in_passes_too(tmp_path):
    (tmp_path / "rows.json").write_text("[1, 2, 3]")
    proc, out = train_run(tmp_path, "--forget-indices", tmp_path / "rows.json", "--passes",
                          "delete{mask=all_forget}")
    assert proc.returncode == EXIT_USAGE and "mask=all_forget" in proc.stderr, proc.stderr
    assert not out.exists()


def test_graph_passes_around_a_method(tmp_path):
    proc, out = train_run(tmp_path, "--forget-classes", "3", "--passes",
                          "cleanup,finetune{epochs=1},cleanup")
    assert proc.returncode == 0, proc.stderr
    assert history(out)[0]["passes"] == "cleanup,finetune{epochs=1},cleanup"


def test_text_values_the_pipeline_text_cannot_hold_are_refused(tmp_path):
    spec = dict(SPEC_RFA, lora={"rank": 8, "include": ["layer1.*,layer2.*"]})
    sp = tmp_path / "s.json"
    sp.write_text(json.dumps(spec))
    proc = run_ulc(MODEL, "--forget", sp, "-o", tmp_path / "o.onnx", "-q")
    assert proc.returncode in (EXIT_USAGE, EXIT_INPUT)
    assert "option include='layer1.*,layer2.*'" in proc.stderr and "separators" in proc.stderr


@pytest.mark.slow
def test_second_request_keeps_the_first_forgotten(tmp_path):
    first, rep1, _ = spec_run(tmp_path, SPEC_RFA, name="first.onnx")
    assert "history" not in rep1
    spec2 = dict(SPEC_RFA, forget={"classes": [5]})
    second, rep2, proc = spec_run(tmp_path, spec2, model=first, name="second.onnx")
    h = history(second)
    assert [e["forget"]["classes"] for e in h] == [[3], [5]]
    assert all(e["ulc"] and e["method"] == "rfa" and len(e["spec_sha256"]) == 64 for e in h)
    assert rep2["history"] == {"requests": 1, "carried_classes": [3], "carried_rows": 0,
                               "unmatched_requests": 0}
    labels = load_file(str(TRAIN))["label"]
    # class 3 rows are forget rows again, not retain rows
    assert rep2["forget"]["rows"] == int(np.isin(labels, [3, 5]).sum())
    # and the forgotten classes stay forgotten on the test data
    assert rep2["accuracy"]["after"]["Dft"] <= 0.05 and rep2["accuracy"]["after"]["Drt"] >= 0.9
    # the same request twice carries nothing new
    third, rep3, _ = spec_run(tmp_path, spec2, model=second, name="third.onnx")
    assert rep3["history"]["carried_classes"] == [3]


@pytest.mark.slow
def test_history_carries_rows_only_for_the_same_data(tmp_path):
    labels = load_file(str(TRAIN))["label"]
    rows = [int(i) for i in np.flatnonzero(labels == 4)[:30]]
    spec = {"method": "rfa", "data": {"train": str(TRAIN)}, "forget": {"indices": rows},
            "train": {"epochs": 1, "lr": 5e-3}}
    first, _, _ = spec_run(tmp_path, spec, name="r1.onnx")
    more = [int(i) for i in np.flatnonzero(labels == 6)[:30]]
    second, rep, _ = spec_run(tmp_path, dict(spec, forget={"indices": more}), model=first, name="r2.onnx")
    assert rep["history"]["carried_rows"] == 30 and rep["forget"]["rows"] == 60
    # another training file: the rows cannot be matched, and the report says so
    other = load_file(str(TRAIN))
    save_file({k: v[:1000] for k, v in other.items()}, str(tmp_path / "other.safetensors"))
    third, rep3, _ = spec_run(tmp_path, dict(spec, data={"train": str(tmp_path / "other.safetensors")},
                                             forget={"indices": [0, 1, 2]}), model=second, name="r3.onnx")
    assert rep3["history"]["unmatched_requests"] == 2 and rep3["history"]["carried_rows"] == 0


def test_malformed_history_is_refused(tmp_path):
    m = onnx.load(str(MODEL))
    p = m.metadata_props.add()
    p.key, p.value = "ulc_history", '[{"method": "rfa", "forget": {"classes": ["three"]}}]'
    bad = tmp_path / "bad.onnx"
    onnx.save(m, str(bad))
    sp = tmp_path / "s.json"
    sp.write_text(json.dumps(SPEC_RFA))
    proc = run_ulc(bad, "--forget", sp, "-o", tmp_path / "o.onnx", "-q")
    assert proc.returncode == EXIT_INPUT
    assert "metadata 'ulc_history': request 1 is not" in proc.stderr and str(bad) in proc.stderr
    assert not (tmp_path / "o.onnx").exists()


@pytest.mark.parametrize("value", [
    '[{"method": "rfa", "forget": {"classes": ["three"]}}]',
    '[{"method": "rfa", "forget": {"classes": {"x": "y"}, "rows": [1], "data_sha256": "ab"}}]',
    '[{"method": "rfa", "forget": {"classes": null, "rows": [1], "data_sha256": "ab", "data_rows": 9}}]',
    '[{"method": "rfa", "forget": {"rows": [1], "data_sha256": "ab", "data_rows": 1e300}}]',
    '[{"method": "rfa", "forget": {"rows": [1], "data_sha256": "ab"}}]',
    '[{"method": "rfa", "forget": {"classes": [-1]}}]',
    '[{"forget": {"classes": [1]}}]',
    '{"method": "rfa"}',
])
def test_hostile_history_is_refused(tmp_path, value):
    m = onnx.load(str(MODEL))
    p = m.metadata_props.add()
    p.key, p.value = "ulc_history", value
    bad = tmp_path / "bad.onnx"
    onnx.save(m, str(bad))
    sp = tmp_path / "s.json"
    sp.write_text(json.dumps(SPEC_RFA))
    proc = run_ulc(bad, "--forget", sp, "-o", tmp_path / "o.onnx", "-q")
    assert proc.returncode == EXIT_INPUT, proc.stderr
    assert "metadata 'ulc_history'" in proc.stderr
    assert not (tmp_path / "o.onnx").exists()


@pytest.mark.parametrize("method", ["rfa", "delete"])
def test_data_column_named_after_the_models_input(tmp_path, fixture_dir, method):
    hf = gen_hf.generate(fixture_dir)
    src = gen_hf.hf_dir(hf, "hf_vit", tmp_path / "vit")
    r = np.random.default_rng(0)
    save_file({"pixel_values": r.standard_normal((40, 3, 16, 16)).astype(np.float32),
               "label": (np.arange(40) % 5).astype(np.int64)}, str(tmp_path / "d.safetensors"))
    spec = {"method": method, "data": {"train": "d.safetensors"}, "forget": {"classes": [1]},
            "train": {"batch_size": 16, "lr": 1e-3, "epochs": 1}}
    sp = tmp_path / "spec.json"
    sp.write_text(json.dumps(spec))
    proc = run_ulc(src, "--forget", sp, "-o", f"{tmp_path / 'out'}/", "--threads", "2", "-q")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "model.safetensors").exists()


def test_vit_gelu_trains_as_one_fast_gelu_erf(tmp_path, fixture_dir, monkeypatch):
    """ViT's gelu (the erf form, spelled Div, Erf, Add, Mul, Mul by ulc's builder) trains as one
    ulc FastGelu with approximate "none" (train/train_graph.c, erf_gelu), which keeps only its
    input for the backward pass; ULC_NO_FAST_GELU=1 keeps the spelled form. The two train to the
    same weights within float32 rounding, and the forms did differ."""
    hf = gen_hf.generate(fixture_dir)
    src = gen_hf.hf_dir(hf, "hf_vit", tmp_path / "vit")
    r = np.random.default_rng(0)
    save_file({"pixel_values": r.standard_normal((40, 3, 16, 16)).astype(np.float32),
               "label": (np.arange(40) % 5).astype(np.int64)}, str(tmp_path / "d.safetensors"))
    spec = {"method": "rfa", "data": {"train": "d.safetensors"}, "forget": {"classes": [1]},
            "train": {"batch_size": 16, "lr": 1e-3, "epochs": 2}}
    sp = tmp_path / "spec.json"
    sp.write_text(json.dumps(spec))
    outs = {}
    for tag in ("fused", "spelled"):
        if tag == "spelled":
            monkeypatch.setenv("ULC_NO_FAST_GELU", "1")
        proc = run_ulc(src, "--forget", sp, "-o", f"{tmp_path / tag}/", "--threads", "2", "-q")
        assert proc.returncode == 0, proc.stderr
        outs[tag] = load_file(str(tmp_path / tag / "model.safetensors"))
    a, b = outs["fused"], outs["spelled"]
    base = load_file(str(src / "model.safetensors"))
    assert any(not np.array_equal(a[k], base[k]) for k in a)  # it trained
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-6, err_msg=k)
    assert any(a[k].tobytes() != b[k].tobytes() for k in a)
