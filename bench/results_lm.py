"""docs/results.md, language models: every text unlearning method against retrain on the bios
case (models/bios/: a DistilGPT2-shaped model that memorised fictitious people's biographies,
TOFU's shape; models/bios/gen_bios.py), forgetting the people models/bios/forget_people.json
names (5 %).

For each method: `ulc models/bios --forget SPEC -o OUT/` (SPEC = forget_people.json with the
method swapped in), then `ulc eval OUT --forget SPEC --original models/bios --json --relearn 10`
for the columns below. rfa runs as forget_people.json says; retrain with its documented defaults
(methods/unlearn.h: 40 epochs, AdamW 3e-3, linear decay); every other method gets 10 epochs, its
own optimizer and batch size, and the learning rate a sweep over 1e-5 ... 3e-3 picks by one rule
stated before looking: the largest Df perplexity among the rates that keep Dr perplexity within
10 % of the original's (the smallest rate when none does); ssd, which trains nothing, gets the same
rule over its α (3 ... 100; a larger α dampens less). The sweep's rows are printed too.
`--only ssd,npo` computes those rows alone and, with --write-doc, replaces just their lines (and
sweep lines) in the table already in docs/results.md.

  ppl Df / Dr / test perplexity (docs/metrics.md, "Language models") on the forget people's
                     rows, the retained people's rows and the held-out people's rows (test.jsonl:
                     Drt, as no held-out person is a forgotten one)
  acc Df             next-token accuracy on Df
  extract            verbatim extraction on Df: ROUGE-L recall of the greedy continuation of
                     each row's first tokens, and the exact-match rate
  MIA loss / min-k   AUC of Df against held-out rows (0.5: Df looks like text never trained on)
  relearn            Df perplexity after the relearning probe's 10 SGD steps on Df (lower:
                     the forgotten text comes back)
  time               the unlearning command's wall time (import, evaluation before/after,
                     training, export)

    .venv/bin/python bench/results_lm.py [--threads 2] [--write-doc]
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
BIOS = ROOT / "models" / "bios"
METHODS = ["retrain", "rfa", "delete", "finetune", "neggrad", "graddiff", "npo", "ssd"]
SSD_ALPHAS = [3, 10, 30, 100]  # ssd trains nothing: its selection weighting α is swept instead
BEGIN, END = "<!-- results_lm.py bios: begin -->", "<!-- results_lm.py bios: end -->"


LRS = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3]


def spec_for(method, d, lr=None, alpha=None):
    """forget_people.json with `method` swapped in (and, with lr, 10 epochs at that rate); data
    paths made absolute."""
    spec = json.loads((BIOS / "forget_people.json").read_text())
    for k, v in list(spec.get("data", {}).items()):
        spec["data"][k] = str((BIOS / v).resolve())
    if "tokenizer" in spec.get("model", {}):
        spec["model"]["tokenizer"] = str((BIOS / spec["model"]["tokenizer"]).resolve())
    if method != "rfa":
        for k in ("rfa", "lora", "train"):
            spec.pop(k, None)
    spec["method"] = method
    if lr is not None:
        spec["train"] = {"epochs": 10, "lr": lr, "seed": 0}
    if alpha is not None:
        spec["ssd"] = {"alpha": alpha}
    spec.pop("report", None)
    spec.setdefault("eval", {})["relearn_steps"] = 0  # the eval below runs the probe
    p = d / f"spec_{method}{'' if lr is None else f'_{lr:g}'}{'' if alpha is None else f'_a{alpha:g}'}.json"
    p.write_text(json.dumps(spec, indent=1))
    return p


def run(args):
    p = subprocess.run([ULC, *map(str, args)], capture_output=True, text=True)
    if p.returncode not in (0, 10):
        sys.exit(f"ulc {' '.join(map(str, args))} failed ({p.returncode}):\n{p.stderr[-4000:]}")
    return p


def row(method, d, threads, lr=None, relearn=10):
    """One run; for ssd `lr` carries its α."""
    ssd = method == "ssd"
    spec = spec_for(method, d, None if ssd else lr, lr if ssd else None)
    out = d / f"out_{method}{'' if lr is None else f'_{lr:g}'}"
    t0 = time.perf_counter()
    run([BIOS, "--forget", spec, "-o", f"{out}/", "--threads", threads, "-q"])
    wall = time.perf_counter() - t0
    ev = json.loads(run(["eval", f"{out}/", "--forget", spec, "--original", f"{BIOS}/",
                         "--relearn", relearn, "--json", "--threads", threads]).stdout)
    return ev, wall


def sweep(method, d, threads):
    """The rate the rule picks (module doc), and the sweep's points."""
    pts = []
    for lr in (SSD_ALPHAS if method == "ssd" else LRS):
        ev, wall = row(method, d, threads, lr, relearn=0)
        ppl = ev["perplexity"]
        pts.append((lr, ppl["model"]["Df"], ppl["model"]["Dr"], ppl["original"]["Dr"]))
        print(f"  {method} lr {lr:g}: ppl Df {ppl['model']['Df']:.3g}, Dr {ppl['model']['Dr']:.3g}",
              file=sys.stderr, flush=True)
    ok = [p for p in pts if p[2] <= 1.1 * p[3]]
    best = max(ok, key=lambda p: p[1])[0] if ok else pts[0][0]
    return best, pts


def label(m, lr):
    return m if lr is None else f"{m} (α {lr:g})" if m == "ssd" else f"{m} (lr {lr:g})"


def fmt(x, nd=2):
    return "—" if x is None else f"{x:.{nd}f}"


def table(threads, methods=METHODS):
    sweeps = {}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        rows, orig = [], None
        for m in methods:
            lr = None
            if m not in ("rfa", "retrain"):
                lr, sweeps[m] = sweep(m, d, threads)
            ev, wall = row(m, d, threads, lr)
            print(f"{m}: {wall:.1f} s", file=sys.stderr, flush=True)
            if orig is None:
                orig = ev
            rows.append((label(m, lr), ev, wall))
    head = ("| method | ppl Df | ppl Dr | ppl test | acc Df | extract ROUGE-L / exact | MIA loss AUC | "
            "MIA min-k AUC | relearn ppl Df | time s |\n|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]

    def line(name, ev, role, wall):
        ppl, acc = ev["perplexity"][role], ev["accuracy"][role]
        ex = ev.get("extraction", {}).get(role, {}).get("Df", {})
        mia = ev.get("mia", {}).get(role, {})
        rl = ev.get("relearn", {}).get("forget_ppl") if role == "model" else None
        lines.append(
            f"| {name} | {fmt(ppl.get('Df'))} | {fmt(ppl.get('Dr'))} | {fmt(ppl.get('Dt', ppl.get('Drt')))} | "
            f"{fmt(acc.get('Df'), 3)} | {fmt(ex.get('rouge_l'), 3)} / {fmt(ex.get('exact'), 3)} | "
            f"{fmt(mia.get('loss', {}).get('auc'), 3)} | {fmt(mia.get('min_k', {}).get('auc'), 3)} | "
            f"{fmt(rl[-1] if rl else None)} | {'' if wall is None else f'{wall:.1f}'} |")

    line("original (IN)", orig, "original", None)
    for m, ev, wall in rows:
        line(f"**{m}**" if m == "retrain" else m, ev, "model", wall)
    lines += ["", "The learning-rate sweeps (10 epochs each; ppl Df / ppl Dr after; the rule's pick in "
              "bold; ssd's row: its α 3, 10, 30, 100):", "",
              "| method | " + " | ".join(f"{lr:g}" for lr in LRS) + " |",
              "|---|" + "---|" * len(LRS)]
    for m, pts in sweeps.items():
        pick = dict((r[0], r) for r in rows)
        cells = []
        for lr, df, dr, _ in pts:
            c = f"{df:.3g} / {dr:.3g}"
            cells.append(f"**{c}**" if label(m, lr) in pick else c)
        cells += [""] * (len(LRS) - len(cells))
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def merge_rows(old, new, methods):
    """The block `old` with the lines of `methods` (rows and sweep lines) taken from `new`."""
    def key(line):
        cell = line.split("|")[1].strip().strip("*") if line.startswith("| ") else ""
        return cell.split(" (")[0]
    fresh = {}
    for line in new.split("\n"):
        if key(line) in methods:
            fresh.setdefault(key(line), []).append(line)
    out, used = [], {m: 0 for m in methods}
    lines = old.split("\n")
    for i, line in enumerate(lines):
        k = key(line)
        if k in methods and used[k] < len(fresh.get(k, [])):
            out.append(fresh[k][used[k]])
            used[k] += 1
            continue
        if k in methods:
            continue
        out.append(line)
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        for m in methods:  # rows not in the old block go at the end of their table
            if line.startswith("|") and not nxt.startswith("|") and used[m] < len(fresh.get(m, [])):
                out.append(fresh[m][used[m]])
                used[m] += 1
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", default="2")
    ap.add_argument("--only", help="comma-separated methods: compute these rows only")
    ap.add_argument("--write-doc", action="store_true")
    a = ap.parse_args()
    only = a.only.split(",") if a.only else None
    if only and any(m not in METHODS for m in only):
        sys.exit(f"--only: expected some of {', '.join(METHODS)}")
    block = table(a.threads, only or METHODS)
    print(block)
    if a.write_doc:
        doc_path = ROOT / "docs" / "results.md"
        doc = doc_path.read_text()
        cmd = f"`.venv/bin/python bench/results_lm.py --threads {a.threads} --write-doc`"
        if only and BEGIN in doc:  # the rows of `only` replaced in the table already there
            old = doc[doc.index(BEGIN) + len(BEGIN):doc.index(END)].strip("\n")
            old_block = old.split("\n", 2)[2] if old.startswith("`") else old
            block = merge_rows(old_block, block, only)
            cmd += f" (rows {', '.join(only)}: `--only {a.only} --write-doc`)"
        body = f"{BEGIN}\n{cmd}\n\n{block}\n{END}"
        if BEGIN in doc:
            doc = doc[:doc.index(BEGIN)] + body + doc[doc.index(END) + len(END):]
        else:
            doc = doc.rstrip("\n") + "\n\n## Language models: forgetting people (bios)\n\n" + body + "\n"
        doc_path.write_text(doc)


if __name__ == "__main__":
    main()
