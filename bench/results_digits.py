"""docs/results.md: every unlearning method against retrain on the digits default.

Runs `ulc models/digits/digits_resnet.onnx --forget SPEC -o OUT` for retrain, rfa, delete and
every baseline (each with its documented defaults: passes/unlearn.h, passes/rfa.h, the digits
spec's rfa settings), forgetting class 3, then `ulc eval OUT --forget SPEC --original IN
--reference RETRAIN --json` for the paper columns: Acc_f / Acc_r / Acc_ft / Acc_rt (accuracy on
Df, Dr, Dft, Drt), H-Mean (of Acc_rt and the drop of Acc_ft), MIA (entropy attack; and the
confidence-SVM one), the activation distance to the retrained model, and the wall time of the
unlearning command (import, evaluation before/after, training, export).

    .venv/bin/python bench/results_digits.py [--threads 2] [--write-doc]

No other real labelled image data ships inside the Debian or PyPI packages this project uses
(torchvision's and sklearn's other datasets download at run time), so digits is the one table.
"""
import argparse
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
MODEL = DIGITS / "digits_resnet.onnx"
METHODS = ["retrain", "rfa", "delete", "finetune", "neggrad", "random-label", "scrub"]
BEGIN, END = "<!-- results_digits.py: begin -->", "<!-- results_digits.py: end -->"


def spec_for(method, d):
    s = {"method": method,
         "data": {"train": str(DIGITS / "train.safetensors"), "test": str(DIGITS / "test.safetensors")},
         "forget": {"classes": [3]}}
    if method == "rfa":  # the embedded default's settings (models/digits/forget_digit.json)
        ref = json.loads((DIGITS / "forget_digit.json").read_text())
        for k in ("lora", "train", "rfa"):
            if k in ref:
                s[k] = ref[k]
    p = Path(d) / f"{method}.json"
    p.write_text(json.dumps(s))
    return p


def run(args, **kw):
    r = subprocess.run(args, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"{' '.join(map(str, args))} failed ({r.returncode}):\n{r.stderr}")
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--write-doc", action="store_true")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        env = {**os.environ, "ULC_CACHE_DIR": str(Path(d) / "cache")}
        outs = {}
        for m in METHODS:
            sp = spec_for(m, d)
            out = Path(d) / f"{m}.onnx"
            t0 = time.perf_counter()
            run([ULC, MODEL, "--forget", sp, "-o", out, "-q", "--threads", str(a.threads)], env=env)
            wall = time.perf_counter() - t0
            outs[m] = (sp, out, wall)
            print(f"{m}: {wall:.1f} s", file=sys.stderr)
        ref = outs["retrain"][1]
        for m in ["original"] + METHODS:
            sp, out, wall = outs.get(m, (outs["rfa"][0], MODEL, None))
            ev = json.loads(run([ULC, "eval", out, "--forget", sp, "--original", MODEL,
                                 "--reference", ref, "--json", "--threads", str(a.threads)]).stdout)
            acc = ev["accuracy"]["model"]
            mia = ev["mia"]["model"]
            hm = ev.get("h_mean") or {}
            rows.append((m, acc["Df"], acc["Dr"], acc["Dft"], acc["Drt"],
                         hm.get("h_mean") if m != "original" else None,
                         mia["entropy_logreg"]["mia"], mia["confidence_svm"]["mia"],
                         ev["activation_distance"]["model"], wall))
    head = ("| method | Acc_f | Acc_r | Acc_ft | Acc_rt | H-Mean | MIA (entropy) | MIA (conf. SVM) "
            "| act. dist. to retrain | wall s |\n|---|---|---|---|---|---|---|---|---|---|\n")
    f = lambda v: "–" if v is None else f"{100 * v:.2f}"
    body = "".join(f"| {m} | {f(af)} | {f(ar)} | {f(aft)} | {f(art)} | "
                   f"{'–' if h is None else f'{h:.2f}'} | {f(me)} | {f(ms)} | {ad:.3f} | "
                   f"{'–' if w is None else f'{w:.1f}'} |\n"
                   for m, af, ar, aft, art, h, me, ms, ad, w in rows)
    table = head + body
    print(table)
    if a.write_doc:
        doc = ROOT / "docs" / "results.md"
        stamp = (f"`.venv/bin/python bench/results_digits.py --threads {a.threads} --write-doc` — "
                 f"{time.strftime('%Y-%m-%d %H:%M')}; {os.cpu_count()} cores.\n\n")
        block = f"{BEGIN}\n{stamp}{table}{END}"
        text = doc.read_text() if doc.exists() else ""
        if BEGIN in text and END in text:
            text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
        else:
            text += ("\n" if text else "") + block + "\n"
        doc.write_text(text)


if __name__ == "__main__":
    main()
