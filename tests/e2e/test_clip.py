"""CLIP as zero-shot classifiers (jobs/clip.c, passes/clip_zeroshot.c, eval/clip_eval.c) and
knowledge-tracing unlearning on it (methods/nhl.c), end to end on the real small CLIP of
models/clip_digits (a transformers CLIPModel trained on the UCI digits, with its own CLIP-style
BPE tokenizer), against transformers 4.36 and numpy (the reference: tests/fixtures/clip_ref.py,
the model in float64):

- `ulc tokenize` gives transformers' CLIPTokenizer (slow) and CLIPTokenizerFast ids for every
  prompt the spec builds, the captions and a few harder strings;
- `ulc eval DIR --data test --clip SPEC` gives transformers' zero-shot accuracy, per-class counts
  and confusion matrix (class embedding: the renormalised mean of the templates' normalised text
  features; logits: exp(logit_scale) times the cosine), for the fine and the coarse classes;
- nhl-kl forgets "one": the report's before/after accuracies (Df/Dr fine and coarse, held-out,
  retrieval R@1) are transformers' on the input and on the written model, Q/U/Q-U follow their
  definitions, the concept is forgotten while the rest is kept, and only the image tower moved;
- every other method (GA+KL too: graddiff with retain kl) runs on CLIP and writes a model
  transformers loads; clip.tower "text" and "both", and nhl-kl training every weight, change
  exactly the weights they name;
- the report's per-layer CKA/L1 compares the trained tower's last layers and the class scores;
- `ulc eval OUT --forget SPEC --original IN` repeats the report's "clip" numbers;
- bad CLIP specs are refused before any work, naming what is wrong.
"""
import json
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from conftest import ROOT, run_ulc

sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
import clip_ref  # noqa: E402

CLIP = ROOT / "models" / "clip_digits"
SPEC = CLIP / "forget_one.json"
EXIT_INPUT = 2
MARGIN = 1e-4  # rows whose top-2 logits are closer than this may go either way (float32)
KEYS = ["df_fine", "dr_fine", "df_coarse", "dr_coarse", "heldout", "retrieval_r1"]


@pytest.fixture(scope="module")
def clip_dir():
    need = ["config.json", "model.safetensors", "tokenizer.json", "vocab.json", "merges.txt",
            "exemplars.safetensors", "test.safetensors", "heldout.safetensors", "captions.txt",
            "forget_one.json"]
    missing = [n for n in need if not (CLIP / n).exists()]
    if missing:
        pytest.fail(f"{CLIP}: missing {missing} (models/clip_digits/gen_clip_digits.py makes them)")
    return CLIP


@pytest.fixture(scope="module")
def spec(clip_dir):
    return json.loads(SPEC.read_text())


@pytest.fixture(scope="module")
def hf(clip_dir):
    from transformers import CLIPModel, CLIPTokenizer, CLIPTokenizerFast
    torch.set_num_threads(1)
    return {"model": CLIPModel.from_pretrained(str(clip_dir)).eval(),
            "slow": CLIPTokenizer.from_pretrained(str(clip_dir)),
            "fast": CLIPTokenizerFast.from_pretrained(str(clip_dir))}


# ---- the reference: tests/fixtures/clip_ref.py ---------------------------------------------------

@pytest.fixture(scope="module")
def ref(clip_dir):
    """the input model as the float64 transformers reference"""
    torch.set_num_threads(1)
    return clip_ref.Clip(clip_dir)


def accuracies(ref, c, forget, clip_dir):
    return clip_ref.report_accuracies(ref, c, forget, clip_dir, MARGIN)


def ambiguous(z):
    return clip_ref.near_ties(z, MARGIN)


def check_accuracies(got, want, close, what):
    """got: the report's fractions; want: (hits, count). Equal within 1e-9, unless rows within
    MARGIN of a tie allow a difference of as many hits."""
    for k in KEYS:
        h, n = want[k]
        slack = close[k] / n + 1e-9
        assert abs(got[k] - h / n) <= slack, (what, k, got[k], h / n, close[k])


def write_spec(path, spec):
    path.write_text(json.dumps(spec, indent=1))
    return path


def in_clip_dir(tmp_path, name, spec):
    """a spec in a copy of the model directory's data (relative file names keep working)"""
    d = tmp_path / "spec"
    if not d.exists():
        d.mkdir()
        for f in CLIP.iterdir():
            if f.suffix in (".safetensors", ".txt", ".json") and f.name != "model.safetensors":
                (d / f.name).symlink_to(f)
    return write_spec(d / name, spec)


# ---- 1. the tokenizer -------------------------------------------------------------------------

HARD = ["A PHOTO OF THE DIGIT SEVEN.", "a   photo  of\tthe digit\n nine ", "  the digit one!!?",
        "it's an odd number, isn't it?", "(two) / [three] & four...", "zebra quokka xylophone",
        "digits 0123456789 and 42", "", "café naïve"]


def prompts_of(c):
    texts = [t.format(k) for k in c["classes"] for t in c["templates"]]
    cc = clip_ref.coarse_classes(c)
    texts += [t.format(k) for k in cc for t in c.get("coarse_templates", c["templates"])]
    h = c["heldout"]
    texts += [t.format(k) for k in h["classes"] for t in h.get("templates", c["templates"])]
    return texts


def test_tokenizer_matches_transformers(ulc, clip_dir, spec, hf, tmp_path):
    lines = (clip_dir / "captions.txt").read_text().split("\n")
    texts = prompts_of(spec["clip"]) + sorted(set(lines) - {""}) + HARD
    f = tmp_path / "texts.jsonl"
    f.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    for tok in (clip_dir, clip_dir / "tokenizer.json"):
        p = ulc("tokenize", tok, "--file", f, "--add-special", check=True)
        got = [json.loads(s)["ids"] for s in p.stdout.split("\n")[:-1]]
        assert len(got) == len(texts)
        for name in ("fast", "slow"):
            want = [hf[name](t)["input_ids"] for t in texts]
            bad = [(texts[i], got[i], want[i]) for i in range(len(texts)) if got[i] != want[i]]
            assert not bad, (str(tok), name, bad[:5])


# ---- 2. zero-shot against transformers --------------------------------------------------------

def check_eval(ulc, model_dir, data, prompts, classes, z, y):
    p = ulc("eval", model_dir, "--data", data, "--clip", prompts, "--json", check=True)
    r = json.loads(p.stdout)
    K = len(classes)
    pred = z.argmax(1)
    conf = np.zeros((K, K), np.int64)
    np.add.at(conf, (y, pred), 1)
    close = int(ambiguous(z).sum())
    got = np.array(r["confusion"], np.int64)
    assert got.shape == (K, K)
    assert r["n"] == len(y)
    assert abs(r["correct"] - int((pred == y).sum())) <= close
    assert np.abs(got - conf).sum() <= 2 * close, (got, conf, close)
    assert [e["n"] for e in r["per_class"]] == np.bincount(y, minlength=K).tolist()
    for k, e in enumerate(r["per_class"]):
        assert abs(e["correct"] - conf[k, k]) <= close
    return r


def test_zero_shot_fine_matches_transformers(ulc, clip_dir, spec, ref):
    c = spec["clip"]
    test = load_file(str(clip_dir / "test.safetensors"))
    z = ref.zero_shot_logits(test["input"], c["classes"], c["templates"])
    r = check_eval(ulc, clip_dir, clip_dir / "test.safetensors", SPEC, c["classes"], z,
                   test["label"])
    assert r["accuracy"] > 0.8  # a trained CLIP, not noise


def test_zero_shot_coarse_matches_transformers(ulc, clip_dir, spec, ref, tmp_path):
    c = spec["clip"]
    cc = clip_ref.coarse_classes(c)
    test = load_file(str(clip_dir / "test.safetensors"))
    yc = np.array([cc.index(c["coarse"][c["classes"][v]]) for v in test["label"]], np.int64)
    data = tmp_path / "test_coarse.safetensors"
    save_file({"input": test["input"], "label": yc}, str(data))
    # the "clip" object alone, as `ulc eval --clip` also takes it
    prompts = write_spec(tmp_path / "coarse.json",
                         {"classes": cc, "templates": c["coarse_templates"]})
    z = ref.zero_shot_logits(test["input"], cc, c["coarse_templates"])
    r = check_eval(ulc, clip_dir, data, prompts, cc, z, yc)
    assert r["accuracy"] > 0.8


# ---- 3. nhl-kl end to end ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def nhl_run(clip_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("nhl")
    out, rep = d / "out", d / "report.json"
    t0 = time.monotonic()
    p = run_ulc(clip_dir, "--forget", SPEC, "-o", f"{out}/", "--report", rep)
    return p, out, rep, time.monotonic() - t0


def test_nhl_kl_forgets_one(clip_dir, spec, hf, ref, nhl_run):
    from transformers import CLIPModel
    p, out, rep, secs = nhl_run
    assert p.returncode == 0, p.stderr
    report = json.loads(rep.read_text())
    cj = report["clip"]
    c = spec["clip"]
    forget = [c["classes"].index(k) for k in spec["forget"]["concepts"]]

    before, close_b = accuracies(ref, c, forget, clip_dir)
    check_accuracies(cj["before"], before, close_b, "before")
    m = CLIPModel.from_pretrained(str(out)).eval()
    after, close_a = accuracies(clip_ref.Clip(out, clip_dir), c, forget, clip_dir)
    check_accuracies(cj["after"], after, close_a, "after")

    # Q, U, Q-U from the report's own accuracies
    want = clip_ref.qu_metrics(cj["before"], cj["after"])
    for k in ("Q", "U", "QU"):
        assert abs(cj[k] - want[k.lower()]) <= 1e-12, (k, cj[k], want[k.lower()])
    for k in clip_ref.QU_KEYS:
        assert abs(cj["a_bar"][k] - want["abar"][k]) <= 1e-12, k

    # forgotten, and the rest kept
    b, a = cj["before"], cj["after"]
    assert a["df_fine"] < 0.20, a
    assert a["dr_fine"] >= b["dr_fine"] - 0.05, (b, a)
    assert a["df_coarse"] >= b["df_coarse"] - 0.10, (b, a)

    # the default tower is the image's: every other weight bit for bit as it was
    w0 = load_file(str(clip_dir / "model.safetensors"))
    w1 = load_file(str(out / "model.safetensors"))
    assert set(w0) == set(w1)
    vision = [k for k in w0 if k.startswith("vision_model.") or k.startswith("visual_projection")]
    rest = [k for k in w0 if k not in vision]
    assert any(k.startswith("text_model.") for k in rest) and "logit_scale" in rest
    for k in rest:
        assert w0[k].dtype == w1[k].dtype and w0[k].tobytes() == w1[k].tobytes(), k
    assert any(w0[k].tobytes() != w1[k].tobytes() for k in vision)
    # the text tower gives the same text features
    with torch.no_grad():
        e = hf["slow"](prompts_of(c), padding=True, return_tensors="pt")
        assert torch.equal(hf["model"].get_text_features(**e), m.get_text_features(**e))


def test_eval_forget_repeats_the_report(ulc, clip_dir, nhl_run):
    p, out, rep, _ = nhl_run
    assert p.returncode == 0, p.stderr
    cj = json.loads(rep.read_text())["clip"]
    e = ulc("eval", out, "--forget", SPEC, "--original", clip_dir, "--json", check=True)
    got = json.loads(e.stdout)["clip"]
    for part in ("before", "after", "a_bar"):
        for k, v in cj[part].items():
            assert got[part][k] == pytest.approx(v, abs=1e-12), (part, k)
    for k in ("Q", "U", "QU"):
        assert got[k] == pytest.approx(cj[k], abs=1e-12), k


# ---- 4. every other method on CLIP ------------------------------------------------------------

# id -> (method, the spec's keys besides it)
METHODS = {
    "rfa": ("rfa", {"train": {"epochs": 2}}),
    "delete": ("delete", {}),
    "neggrad": ("neggrad", {"train": {"epochs": 1}}),
    "graddiff": ("graddiff", {"train": {"epochs": 1}}),
    # GA+KL, one of the paper's baselines: its results.md row's settings
    "graddiff-kl": ("graddiff", {"train": {"epochs": 8, "batch_size": 32, "lr": 3e-4,
                                           "optimizer": "adamw", "weight_decay": 0},
                                 "graddiff": {"train": "lora", "retain": "kl"}}),
    "npo": ("npo", {"train": {"epochs": 1}}),
    "random-label": ("random-label", {"train": {"epochs": 1}}),
    "ssd": ("ssd", {}),
    "scrub": ("scrub", {"train": {"epochs": 1}}),
    "finetune": ("finetune", {"train": {"epochs": 1}}),
}


def weights(path):
    return load_file(str(path / "model.safetensors"))


def tower_of(name):
    """"image", "text" or None (logit_scale): clip.tower's split of transformers' names"""
    if name.startswith(("vision_model.", "visual_projection")):
        return "image"
    if name.startswith(("text_model.", "text_projection")):
        return "text"
    return None


def changed(w0, w1):
    assert set(w0) == set(w1)
    return {k for k in w0 if w0[k].dtype != w1[k].dtype or w0[k].tobytes() != w1[k].tobytes()}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(METHODS))
def test_every_method_runs_on_clip(clip_dir, spec, case, tmp_path):
    method, keys = METHODS[case]
    s = dict(spec, method=method, **keys)
    path = in_clip_dir(tmp_path, f"forget_{case}.json", s)
    out, rep = tmp_path / "out", tmp_path / "report.json"
    p = run_ulc(clip_dir, "--forget", path, "-o", f"{out}/", "--report", rep)
    assert p.returncode == 0, (case, p.stderr)
    report = json.loads(rep.read_text())
    cj = report["clip"]
    for k in KEYS:
        assert 0 <= cj["after"][k] <= 1 and 0 <= cj["before"][k] <= 1, (k, cj)
    assert all(isinstance(cj[k], (int, float)) for k in ("Q", "U", "QU")), cj
    for k, v in keys.get(method, {}).items():  # the method's own options, as the spec gave them
        assert report["hyperparameters"][method][k] == v, (case, k, report["hyperparameters"])
    # the written model is what was scored: transformers' accuracies on it are the report's
    c = spec["clip"]
    forget = [c["classes"].index(k) for k in spec["forget"]["concepts"]]
    after, close = accuracies(clip_ref.Clip(out, clip_dir), c, forget, clip_dir)
    check_accuracies(cj["after"], after, close, case)
    # clip.tower (default "image") bounds what every method trains, LoRA or all weights: the
    # text tower and logit_scale as they were, and the image tower changed
    moved = changed(weights(clip_dir), weights(out))
    assert moved and all(tower_of(k) == "image" for k in moved), (case, sorted(moved))
    if case == "graddiff-kl":  # GA+KL forgets part of "one" and keeps the rest (results.md)
        b, a = cj["before"], cj["after"]
        assert a["df_fine"] < b["df_fine"] - 0.2 and a["dr_fine"] >= b["dr_fine"] - 0.1, (b, a)


def run_tower(clip_dir, spec, tmp_path, name, method, tower=None, **keys):
    s = dict(spec, method=method, **keys)
    if tower:
        s["clip"] = dict(spec["clip"], tower=tower)
    out, rep = tmp_path / name, tmp_path / f"{name}.json"
    p = run_ulc(clip_dir, "--forget", in_clip_dir(tmp_path, f"{name}.spec.json", s), "-o",
                f"{out}/", "--report", rep, "-q")
    assert p.returncode == 0, p.stderr
    return changed(weights(clip_dir), weights(out)), json.loads(rep.read_text())


def test_tower_text_trains_the_text_tower_only(clip_dir, spec, tmp_path):
    """clip.tower "text": the image tower keeps its bytes, whatever the method trains."""
    moved, _ = run_tower(clip_dir, spec, tmp_path, "text", "finetune", "text",
                         train={"epochs": 1, "lr": 1e-3})
    assert moved and all(tower_of(k) == "text" for k in moved), sorted(moved)


def test_tower_both_trains_both_towers(clip_dir, spec, tmp_path):
    """clip.tower "both": LoRA adapters on both towers' linear layers, so exactly their weights
    (q/k/v/out, fc1/fc2 and the projections) change; with every weight training, each tower's
    weights change, its norms and embeddings too; logit_scale never."""
    w0 = weights(clip_dir)
    linear = {k for k in w0 if k.endswith(".weight") and w0[k].ndim == 2 and
              (k.endswith(("_proj.weight", "fc1.weight", "fc2.weight")) or "projection" in k)}
    assert {tower_of(k) for k in linear} == {"image", "text"} and "text_projection.weight" in linear
    moved, rep = run_tower(clip_dir, spec, tmp_path, "both_lora", "nhl-kl", "both")
    assert moved == linear, (sorted(moved ^ linear))
    assert rep["hyperparameters"]["train"]["lr"] == 1e-3  # LoRA's default
    moved, rep = run_tower(clip_dir, spec, tmp_path, "both_all", "finetune", "both",
                           train={"epochs": 1, "lr": 1e-3})
    assert {tower_of(k) for k in moved} == {"image", "text"} and "logit_scale" not in moved
    for k in ("vision_model.post_layernorm.weight", "text_model.final_layer_norm.weight",
              "vision_model.embeddings.class_embedding", "visual_projection.weight",
              "text_projection.weight"):
        assert k in moved, (k, sorted(moved))


def test_nhl_kl_trains_every_image_weight(clip_dir, spec, tmp_path):
    """nhl-kl with "train": "all": every weight of the image tower trains (norms, embeddings,
    biases, the projection), nothing else; its default learning rate is the one for every
    weight (docs/spec.md); it forgets "one" and keeps the rest."""
    w0 = weights(clip_dir)
    image = {k for k in w0 if tower_of(k) == "image"}
    moved, rep = run_tower(clip_dir, spec, tmp_path, "all", "nhl-kl", **{"nhl-kl": {"train": "all"}})
    assert moved == image, sorted(moved ^ image)
    assert rep["hyperparameters"]["train"]["lr"] == 3e-4
    assert rep["hyperparameters"]["nhl-kl"]["train"] == "all"
    b, a = rep["clip"]["before"], rep["clip"]["after"]
    assert a["df_fine"] < 0.2 and a["dr_fine"] >= b["dr_fine"] - 0.05, (b, a)


def test_features_compare_the_trained_tower(clip_dir, spec, nhl_run, tmp_path):
    """The report's per-layer CKA and L1 on a CLIP request compare layers the method can change:
    the trained tower's last linear layers (the image tower's last block and its projection),
    then the class scores — not the patch convolution, which LoRA never touches. nhl-kl moves
    each of them. With tower "text" the image tower's layers stay out (the text tower runs on
    the prompts): the class scores remain, and move."""
    p, out, rep, _ = nhl_run
    assert p.returncode == 0, p.stderr
    layers = json.loads(rep.read_text())["features"]["layers"]
    names = [e["name"] for e in layers]
    assert len(names) == 8 and names[-2:] == ["/projection/MatMul_235_output_0", "logits"], names
    assert all(n.startswith("/vision_model.encoder.layers.1/") for n in names[:6]), names
    assert not any("Conv" in n or "embeddings" in n for n in names), names
    for e in layers:
        assert e["l1_forget"] > 1e-3 and e["l1_retain"] > 1e-3, e
        assert e["cka_forget"] < 1 - 1e-6, e
    # forgetting shows most where the concept is: the class scores of the forgotten rows
    last = layers[-1]
    assert last["l1_forget"] > last["l1_retain"] and last["cka_forget"] < last["cka_retain"], last
    # ulc eval --forget compares the same layers
    e = run_ulc("eval", out, "--forget", SPEC, "--original", clip_dir, "--json")
    assert e.returncode == 0, e.stderr
    assert [x["name"] for x in json.loads(e.stdout)["features"]["layers"]] == names
    # tower text: the text tower's change reaches the rows through the class scores
    _, r = run_tower(clip_dir, spec, tmp_path, "text", "nhl-kl", "text")
    layers = r["features"]["layers"]
    assert [x["name"] for x in layers] == ["logits"], layers
    assert layers[0]["l1_forget"] > 1e-3 and layers[0]["cka_forget"] < 1 - 1e-6, layers


# ---- 6. bad input -----------------------------------------------------------------------------

def assert_no_work(p):
    """refused before any work: no adapters injected, no training epoch"""
    assert "lora-inject" not in p.stderr and "epoch" not in p.stderr, p.stderr


def mutate(spec, edit):
    s = json.loads(json.dumps(spec))
    edit(s)
    return s


def _drop_coarse_class(s):
    del s["clip"]["coarse"]["seven"]


def _no_coarse(s):
    del s["clip"]["coarse"]
    del s["clip"]["coarse_templates"]


BAD = {
    "unknown concept": (lambda s: s["forget"].update(concepts=["eleven"]), ["eleven"]),
    "empty templates": (lambda s: s["clip"].update(templates=[]), ["clip.templates", "empty"]),
    "template without {}": (lambda s: s["clip"].update(templates=["a photo of a digit."]),
                            ["clip.templates", "{}"]),
    "template with {} twice": (lambda s: s["clip"].update(templates=["a {} photo of {}."]),
                               ["clip.templates", "{}"]),
    "coarse missing a class": (_drop_coarse_class, ["clip.coarse", "seven"]),
    "nhl-kl without coarse": (_no_coarse, ["nhl-kl", "coarse"]),
    "concepts without clip": (lambda s: (s.pop("clip"), s.update(method="rfa")),
                              ["forget.concepts", "'clip'", "missing"]),
    "nhl-kl without clip": (lambda s: s.pop("clip"), ["nhl-kl", "'clip'"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_clip_spec_is_refused(clip_dir, spec, case, tmp_path):
    edit, needles = BAD[case]
    path = in_clip_dir(tmp_path, "bad.json", mutate(spec, edit))
    out = tmp_path / "out"
    p = run_ulc(clip_dir, "--forget", path, "-o", f"{out}/", "--report", tmp_path / "r.json")
    assert p.returncode == EXIT_INPUT, (case, p.returncode, p.stderr)
    for n in needles:
        assert n in p.stderr, (case, n, p.stderr)
    assert not out.exists() and not (tmp_path / "r.json").exists()
    assert_no_work(p)


def test_concept_without_exemplars_is_refused(clip_dir, spec, tmp_path):
    ex = load_file(str(clip_dir / "exemplars.safetensors"))
    keep = ex["label"] != 1
    d = tmp_path / "spec"
    in_clip_dir(tmp_path, "unused.json", spec)
    (d / "exemplars.safetensors").unlink()
    save_file({"input": ex["input"][keep], "label": ex["label"][keep]},
              str(d / "exemplars.safetensors"))
    path = write_spec(d / "bad.json", spec)
    out = tmp_path / "out"
    p = run_ulc(clip_dir, "--forget", path, "-o", f"{out}/")
    assert p.returncode == EXIT_INPUT, (p.returncode, p.stderr)
    # the spec names the concept "one" under forget.concepts: so should the message
    assert "exemplars.safetensors" in p.stderr and "data.train" in p.stderr, p.stderr
    assert "'one'" in p.stderr and "forget.concepts" in p.stderr, p.stderr
    assert not out.exists()
    assert_no_work(p)


def test_captions_must_match_test_rows(clip_dir, spec, tmp_path):
    lines = (clip_dir / "captions.txt").read_text().split("\n")[:-1]
    d = tmp_path / "spec"
    in_clip_dir(tmp_path, "unused.json", spec)
    (d / "short.txt").write_text("\n".join(lines[:-3]) + "\n")
    path = write_spec(d / "bad.json", mutate(spec, lambda s: s["clip"].update(captions="short.txt")))
    out = tmp_path / "out"
    p = run_ulc(clip_dir, "--forget", path, "-o", f"{out}/")
    assert p.returncode == EXIT_INPUT, (p.returncode, p.stderr)
    assert "clip.captions" in p.stderr and str(len(lines) - 3) in p.stderr \
        and str(len(lines)) in p.stderr, p.stderr
    assert not out.exists()
    assert_no_work(p)


def test_clip_on_a_non_clip_model_is_refused(spec, tmp_path):
    model = ROOT / "models" / "digits" / "digits_resnet.onnx"
    path = in_clip_dir(tmp_path, "bad.json", spec)
    out = tmp_path / "out.onnx"
    p = run_ulc(model, "--forget", path, "-o", out)
    assert p.returncode == 4, (p.returncode, p.stderr)  # valid input ulc does not handle
    assert "'clip'" in p.stderr and "not a CLIP model" in p.stderr and "input_ids" in p.stderr, \
        p.stderr
    assert not out.exists()
    assert_no_work(p)


@pytest.mark.parametrize("case", ["missing", "not json", "no classes", "empty template"])
def test_eval_clip_with_a_bad_file(clip_dir, case, tmp_path):
    f = tmp_path / "prompts.json"
    if case == "not json":
        f.write_text("{classes: [")
    elif case == "no classes":
        f.write_text(json.dumps({"templates": ["a photo of the digit {}."]}))
    elif case == "empty template":
        f.write_text(json.dumps({"classes": ["zero", "one"], "templates": ["no slot"]}))
    p = run_ulc("eval", clip_dir, "--data", clip_dir / "test.safetensors", "--clip", f, "--json")
    assert p.returncode != 0 and p.returncode < 70, (case, p.returncode, p.stderr)
    assert "prompts.json" in p.stderr, (case, p.stderr)
    assert p.stdout == ""


# ---- ONNX in, ONNX out --------------------------------------------------------------------------

@pytest.mark.slow
def test_onnx_clip_in_onnx_out(ulc, clip_dir, spec, hf, tmp_path):
    """A CLIP exported to ONNX (ulc convert: inputs input_ids, pixel_values, attention_mask;
    outputs logits_per_image, text_embeds, ...) forgets the same way with the tokenizer named by
    model.tokenizer; OUT is ONNX with IN's interface, and onnxruntime on it gives the report's
    zero-shot accuracies."""
    import onnxruntime as ort
    src = tmp_path / "clip.onnx"
    ulc("convert", clip_dir, "-o", src, check=True)
    s = json.loads(json.dumps(spec))
    s["model"] = {"tokenizer": str(clip_dir)}
    out, rep = tmp_path / "out.onnx", tmp_path / "r.json"
    p = ulc(src, "--forget", in_clip_dir(tmp_path, "onnx.json", s), "-o", out, "--report", rep, "-q")
    assert p.returncode == 0, p.stderr
    got = json.loads(rep.read_text())["clip"]
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert sorted(i.name for i in sess.get_inputs()) == ["attention_mask", "input_ids", "pixel_values"]
    c = spec["clip"]
    tok = hf["slow"]
    prompts = [t.format(k) for k in c["classes"] for t in c["templates"]]
    e = tok(prompts, padding=True, return_tensors="np")
    test = load_file(str(clip_dir / "test.safetensors"))
    lpi, te = sess.run(["logits_per_image", "text_embeds"],
                       {"input_ids": e["input_ids"].astype(np.int64),
                        "attention_mask": e["attention_mask"].astype(np.int64),
                        "pixel_values": test["input"]})
    K, T = len(c["classes"]), len(c["templates"])
    s_ = lpi.astype(np.float64).reshape(len(test["label"]), K, T).sum(2)
    n_ = np.linalg.norm(te.astype(np.float64).reshape(K, T, -1).sum(1), axis=1)
    pred = (s_ / n_).argmax(1)
    gone = np.isin(test["label"], [c["classes"].index(x) for x in spec["forget"]["concepts"]])
    hit = pred == test["label"]
    assert abs(got["after"]["df_fine"] - hit[gone].mean()) < 1e-9
    assert abs(got["after"]["dr_fine"] - hit[~gone].mean()) < 1e-9
    assert got["after"]["df_fine"] < 0.2 <= got["before"]["df_fine"]
    # the ONNX input forgets as the directory does (same prompts, same training)
    d = tmp_path / "dir_out"
    p = ulc(clip_dir, "--forget", SPEC, "-o", str(d) + "/", "--report", tmp_path / "rd.json", "-q")
    assert p.returncode == 0, p.stderr
    want = json.loads((tmp_path / "rd.json").read_text())["clip"]
    for k in ("df_fine", "dr_fine", "df_coarse", "dr_coarse"):
        assert abs(got["after"][k] - want["after"][k]) < 0.02, (k, got["after"][k], want["after"][k])


@pytest.mark.slow
def test_markdown_report_and_reference(ulc, clip_dir, spec, nhl_run, tmp_path):
    """The Markdown report has the CLIP section with the JSON's numbers; a reference model
    (eval.reference: here the nhl-kl output) is scored as the same zero-shot classifiers."""
    s = json.loads(json.dumps(spec))
    s["eval"] = {"reference": str(nhl_run[1]), "relearn_steps": 0, "features": False}
    out, md, js = tmp_path / "o", tmp_path / "r.md", tmp_path / "r.json"
    p = ulc(clip_dir, "--forget", in_clip_dir(tmp_path, "ref.json", s), "-o", str(out) + "/",
            "--report", md, "--report", js, "-q")
    assert p.returncode == 0, p.stderr
    rep = json.loads(js.read_text())
    text = md.read_text()
    assert "## CLIP: knowledge-tracing metrics" in text
    row = next(line for line in text.splitlines() if line.startswith("| Df fine"))
    assert row.split("|")[2].strip() == f"{rep['clip']['before']['df_fine']:.4f}"
    assert row.split("|")[3].strip() == f"{rep['clip']['after']['df_fine']:.4f}"
    assert f"Q-U {100 * rep['clip']['QU']:.2f}" in text
    # the same training as nhl_run's: the distance to it on Df is 0 after, not before
    ad = rep["activation_distance"]
    assert ad["model"] < 1e-6 < ad["original"]


@pytest.mark.slow
def test_megu_similarity_from_clip_text(clip_dir, spec, ref, tmp_path):
    """megu on a CLIP request without a similarity file takes MeGU's offline similarity from
    CLIP's class text embeddings: S[k][l] = max(0, cos(e_k, e_l)), e the prompts' class
    embeddings, as transformers computes them."""
    s = dict(spec, method="megu", train={"lr": 3e-3})
    rep = tmp_path / "r.json"
    p = run_ulc(clip_dir, "--forget", in_clip_dir(tmp_path, "megu.json", s), "-o",
                f"{tmp_path / 'o'}/", "--report", rep, "-q")
    assert p.returncode == 0, p.stderr
    m = json.loads(rep.read_text())["megu"]
    assert m["similarity_source"] == "clip-text"
    c = spec["clip"]
    e = ref.class_embeddings(c["classes"], c["templates"])
    want = np.maximum(e @ e.T, 0)
    np.testing.assert_allclose(np.array(m["similarity"]), want, atol=1e-5)
