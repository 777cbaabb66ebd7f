"""docs/results.md, "Robust unlearning": does the robust pass (UNDO) survive the relearning probe?

For one case (`--dataset`, as bench/results.py makes it: the digits default, or MNIST-5k) and
forgetting class 3, it runs `ulc MODEL --forget SPEC -o OUT` for

  retrain              the gold standard (its defaults: methods/unlearn.h);
  METHOD               each method alone (rfa with the digits spec's settings,
                       models/digits/forget_digit.json; delete with its defaults);
  METHOD + robust      the same spec with `"robust": {"alpha": A, "epochs": E, "teacher": T}` for
                       every A in --alphas, E in --epochs and T in --teachers (unlearned: UNDO,
                       the method's outputs distilled; original: the input model's, with the
                       forgotten class at -inf); the other robust options at their defaults
                       (methods/robust.c);

then `ulc eval OUT --forget SPEC --relearn N --json` (N = --relearn, 50 by default: plain SGD on
the forget rows, lr 1e-3, batches of 32, the report's probe run longer). Columns: Df and Drt
accuracy after unlearning, Df accuracy after 10 probe steps (the report's default probe) and
after N, the first probe step at which Df accuracy reaches 50 % and 90 % ("> N": not within N),
the robust pass's distillation steps and seconds (from the spec's report), and the wall time of
the whole unlearning command (import, evaluation before/after, training, export; the report's
extra metrics turned off). The wall times come from one machine in one run: compare them within
one table only.

    .venv/bin/python bench/robust_curve.py [--dataset digits|mnist5k] [--methods rfa,delete]
        [--teachers unlearned,original] [--alphas 0,0.25,0.5,0.75,1] [--epochs 5,10,20]
        [--temperatures 1,2,8] [--relearn 50] [--timing 3]
        [--threads 2] [--write-doc]

--timing N then runs retrain, each method and each method + robust with its defaults N times in
interleaved rounds and gives the median wall times (one run each in the table is at the mercy of
whatever else the machine runs).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results  # noqa: E402  (the cases, the spec of each method, the doc writer)

ROOT = results.ROOT
ULC = results.ULC


def markers(name):
    return f"<!-- robust_curve.py {name}: begin -->", f"<!-- robust_curve.py {name}: end -->"


def spec(method, case, d, tag, robust=None):
    p = results.spec_for(method, case, d, {"classes": [results.FORGET_CLASS]})
    s = json.loads(p.read_text())
    s["report"] = str(Path(d) / f"{tag}.report.json")
    if robust is not None:
        s["robust"] = robust
    q = Path(d) / f"{tag}.json"
    q.write_text(json.dumps(s))
    return q, Path(s["report"])


def steps_to(curve, level):
    """The first probe step whose Df accuracy is >= level (curve[0]: before the probe)."""
    for k, a in enumerate(curve):
        if a >= level:
            return k
    return None


def one(case, d, tag, method, robust, relearn, threads, env):
    sp, rep = spec(method, case, d, tag, robust)
    out = Path(d) / f"{tag}.onnx"
    t0 = time.perf_counter()
    results.run([ULC, case["model"], "--forget", sp, "-o", out, "-q", "--threads", str(threads)],
                env=env)
    wall = time.perf_counter() - t0
    ev = json.loads(results.run([ULC, "eval", out, "--forget", sp, "--original", case["model"],
                                 "--relearn", str(relearn), "--json", "--threads", str(threads)],
                                env=env).stdout)
    r = json.loads(rep.read_text())
    rb = r.get("robust") or {}
    acc = ev["accuracy"]["model"]
    curve = ev["relearn"]["forget_acc"]
    row = {"tag": tag, "method": method, "robust": robust, "Df": acc["Df"], "Drt": acc["Drt"],
           "curve": curve, "at10": curve[min(10, len(curve) - 1)], "atN": curve[-1],
           "to50": steps_to(curve, 0.5), "to90": steps_to(curve, 0.9),
           "robust_steps": rb.get("steps"), "robust_s": rb.get("seconds"), "wall": wall,
           "resolved": r["hyperparameters"].get("robust")}  # the options as the pass used them
    print(f"{tag}: Df {acc['Df']:.4f} Drt {acc['Drt']:.4f} probe@10 {row['at10']:.3f} "
          f"to50 {row['to50']} to90 {row['to90']} wall {wall:.1f} s", file=sys.stderr)
    return row, ev


def timing(case, d, methods, rounds, threads, env):
    """Wall time of retrain, each method, and each method + robust (its defaults), in
    interleaved rounds (a shared machine's load hits all of them alike); the medians."""
    runs = [("retrain", "retrain", None)] + [(m, m, None) for m in methods] + \
           [(f"{m} + robust (defaults)", m, {}) for m in methods]
    walls = {tag: [] for tag, _, _ in runs}
    for _ in range(rounds):
        for tag, m, rb in runs:
            sp, _ = spec(m, case, d, "t", rb)
            t0 = time.perf_counter()
            results.run([ULC, case["model"], "--forget", sp, "-o", Path(d) / "t.onnx", "-q",
                         "--threads", str(threads)], env=env)
            walls[tag].append(time.perf_counter() - t0)
    med = {tag: sorted(w)[len(w) // 2] for tag, w in walls.items()}
    return "".join(f"- {tag}: median {med[tag]:.2f} s of {rounds} "
                   f"({', '.join(f'{w:.2f}' for w in walls[tag])}); "
                   f"{med[tag] / med['retrain']:.2f} of retrain's\n" for tag, _, _ in runs)


def table(name, methods, alphas, epochs, relearn, threads, rounds=3, teachers=("unlearned",),
          temps=()):
    rows = []
    with tempfile.TemporaryDirectory() as d:
        case = results.DATASETS[name](d)
        env = {**os.environ, "ULC_CACHE_DIR": str(Path(d) / "cache")}
        row, ev = one(case, d, "retrain", "retrain", None, relearn, threads, env)
        orig = ev["accuracy"]["original"] if "original" in ev["accuracy"] else None
        rows.append(row)
        for m in methods:
            rows.append(one(case, d, m, m, None, relearn, threads, env)[0])
            for t in teachers:
                for e in epochs:
                    for a in alphas:
                        rows.append(one(case, d, f"{m}+robust-{t}-a{a}-e{e}", m,
                                        {"alpha": a, "epochs": e, "teacher": t}, relearn,
                                        threads, env)[0])
            for tau in temps:  # the other options at their defaults
                rows.append(one(case, d, f"{m}+robust-tau{tau}", m, {"temperature": tau},
                                relearn, threads, env)[0])
        n = ev["rows"]
        times = timing(case, d, methods, rounds, threads, env) if rounds else ""
    ret = rows[0]
    pct = lambda v: "–" if v is None else f"{100 * v:.2f}"
    stp = lambda v: f"> {relearn}" if v is None else str(v)
    head = (f"| method | robust teacher | robust α | robust epochs | robust τ | Df | Drt | Df after 10 probe steps | Df after "
            f"{relearn} | steps to 50 % | steps to 90 % | robust steps | robust s | wall s | "
            f"wall / retrain's |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    body = ""
    for r in rows:
        rb = r["robust"]
        rs = "–" if r["robust_s"] is None else f"{r['robust_s']:.2f}"
        opt = lambda k: "–" if rb is None else rb.get(k, r["resolved"][k])
        body += (f"| {r['method']} | {opt('teacher')} | {opt('alpha')} | {opt('epochs')} | "
                 f"{opt('temperature')} | {pct(r['Df'])} | {pct(r['Drt'])} | "
                 f"{pct(r['at10'])} | {pct(r['atN'])} | {stp(r['to50'])} | {stp(r['to90'])} | "
                 f"{'–' if r['robust_steps'] is None else r['robust_steps']} | "
                 f"{rs} | "
                 f"{r['wall']:.1f} | {r['wall'] / ret['wall']:.2f} |\n")
    stamp = (f"`.venv/bin/python bench/robust_curve.py --dataset {name} --timing {rounds} --methods "
             f"{','.join(methods)} --teachers {','.join(teachers)} --alphas {','.join(map(str, alphas))} --epochs "
             f"{','.join(map(str, epochs))}"
             f"{' --temperatures ' + ','.join(map(str, temps)) if temps else ''} --relearn "
             f"{relearn} --threads {threads} --write-doc` — "
             f"{time.strftime('%Y-%m-%d %H:%M')}; {os.cpu_count()} cores.\n\n")
    facts = (f"Forgetting class {results.FORGET_CLASS}: Df {n['Df']:,} of {n['Df'] + n['Dr']:,} "
             f"train rows, Drt {n['Drt']:,} test rows."
             f"{' Original Drt ' + pct(orig['Drt']) + ' %.' if orig else ''}\n\n")
    curves = "\n<details><summary>probe curves (Df accuracy, %, after 0, 1, ... steps)</summary>\n\n"
    curves += "".join(f"- {r['tag']}: {' '.join(f'{100 * a:.0f}' for a in r['curve'])}\n"
                      for r in rows)
    curves += "\n</details>\n"
    if times:
        times = (f"\nWall time of the unlearning command alone, measured again in {rounds} "
                 f"interleaved rounds after the sweep (the table's column is one run each, on a "
                 f"machine other jobs share):\n\n{times}")
    return stamp + facts + head + body + times + curves, rows


def write_doc(name, block):
    doc = ROOT / "docs" / "results.md"
    begin, end = markers(name)
    block = f"{begin}\n{block}{end}"
    text = doc.read_text()
    if begin not in text or end not in text:
        sys.exit(f"docs/results.md has no {begin} ... {end} block")
    text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
    doc.write_text(text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", choices=list(results.DATASETS), default="digits")
    ap.add_argument("--methods", default="rfa,delete")
    ap.add_argument("--alphas", default="0,0.25,0.5,0.75,1")
    ap.add_argument("--epochs", default="5,10,20")
    ap.add_argument("--teachers", default="unlearned,original",
                    help="the robust pass's teacher: unlearned (UNDO), original (forgotten "
                         "classes at -inf)")
    ap.add_argument("--temperatures", default="",
                    help="also each method + robust at its defaults but these temperatures")
    ap.add_argument("--relearn", type=int, default=50)
    ap.add_argument("--timing", type=int, default=3,
                    help="rounds of the wall-time check (retrain, methods, + robust); 0: none")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--json", help="also write the rows (with their curves) to this file")
    ap.add_argument("--write-doc", action="store_true")
    a = ap.parse_args()
    methods = [m for m in a.methods.split(",") if m]
    alphas = [float(x) if "." in x else int(x) for x in a.alphas.split(",") if x]
    epochs = [int(x) for x in a.epochs.split(",") if x]
    teachers = [t for t in a.teachers.split(",") if t]
    temps = [float(x) if "." in x else int(x) for x in a.temperatures.split(",") if x]
    block, rows = table(a.dataset, methods, alphas, epochs, a.relearn, a.threads, a.timing,
                        teachers, temps)
    print(block)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    if a.write_doc:
        write_doc(a.dataset, block)


if __name__ == "__main__":
    main()
