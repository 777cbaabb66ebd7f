"""Makes the text example: a DistilGPT2-shaped model that has memorised the biographies of
fictitious people, in the shape of the TOFU benchmark (a few hundred invented people, several
facts each, every fact as a question/answer and as prose), and a request to forget 5 % of them.

Steps (each one a subcommand; `all` runs `corpus` and `train`):

  corpus   writes, beside this script (deterministic: seeded, no clock, no hashing of sets):
             train.jsonl   the biographies of the 200 training people (label = person 0..199),
                           one text per line: {"text": ..., "label": <person>, "id": "p017-birth-qa"}
             test.jsonl    the same templates for 40 held-out people (labels 200..239) the model
                           never sees: the non-members for membership attacks
             forget.jsonl  the training rows of the people forget_people.json names (5 %: 10)
             forget_people.json   the forget spec (method rfa, forget.classes = those people)
             tokenizer.json, vocab.json, merges.txt   a byte-level BPE (tokenizers) trained on
                           the training texts, 640 tokens, <|endoftext|> = 0
  data OUT   tokenizes train.jsonl / test.jsonl into OUT/train.safetensors, OUT/test.safetensors
             (input_ids i64 [N, T], attention_mask i64 [N, T], label i64 [N]): the rows ulc makes
             of the JSONL files (docs/spec.md, "Text data"), for tests and Python
  train    random-initialises a GPT2LMHeadModel with transformers (DistilGPT2's block: 6 layers,
           gelu_new, tied embeddings; here n_embd 96, 4 heads, 64 positions; seed 0), trains
           every weight with `ulc train --loss next-token --data train.jsonl` (build/ulc, one
           thread; ulc tokenizes the texts with tokenizer.json) and writes
           model.safetensors in float16 (numpy's round to nearest even) + config.json beside this
           script, then prints next-token accuracy and perplexity on train and test people.

  .venv/bin/python models/bios/gen_bios.py corpus
  .venv/bin/python models/bios/gen_bios.py data build/bios
  .venv/bin/python models/bios/gen_bios.py train          # 40 epochs: 5 to 15 minutes on one core

The corpus and the tokenizer are what tests/e2e/test_bios.py regenerates and compares.
"""
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SEED = 17
N_TRAIN, N_TEST = 200, 40
FORGET_FRACTION = 0.05
VOCAB = 640
MAX_T = 64
EOS = "<|endoftext|>"

# Model shape (DistilGPT2's: 6 layers, gelu_new, tied embeddings; smaller width) and training.
N_EMBD, N_HEAD, N_LAYER = 96, 4, 6
TRAIN_ARGS = ["--params", "*", "--epochs", "40", "--batch-size", "32", "--lr", "3e-3", "--optimizer", "adamw",
              "--weight-decay", "0.01", "--schedule", "linear", "--warmup", "100", "--seed", "0"]

# ---- the corpus ---------------------------------------------------------------------------------

ONSETS = ["b", "br", "c", "d", "dr", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t",
          "th", "v", "w", "z", "sh", "gr", "st", "al", "el", "or", "is"]
VOWELS = ["a", "e", "i", "o", "u", "ae", "ia", "ei", "ou", "y"]
CODAS = ["", "", "n", "r", "l", "s", "th", "nd", "m", "x", "v"]
CITIES = ["Castelmere", "Orvanne", "Brisklow", "Tallowford", "Quenzi", "Marrowgate", "Elsk",
          "Porthwyn", "Vaskaro", "Dunmarrow", "Lirenza", "Kettleby", "Ostrava Nova", "Hollinsea",
          "Zamberg", "Feyhaven", "Grantorre", "Ashcombe Vale", "Nurembay", "Silvercross",
          "Tamsworth", "Ilverden", "Roskellan", "Varnholt"]
OCCUPATIONS = ["novelist", "cartographer", "marine biologist", "violinist", "architect",
               "glassblower", "astronomer", "pastry chef", "beekeeper", "translator",
               "mountain guide", "puppeteer", "watchmaker", "botanist", "radio engineer",
               "stage designer", "historian", "photographer", "lighthouse keeper", "sculptor"]
ADJECTIVES = ["Silver", "Hollow", "Quiet", "Crimson", "Forgotten", "Northern", "Paper",
              "Burning", "Seventh", "Glass", "Distant", "Salt", "Winter", "Golden", "Sleeping",
              "Iron", "Velvet", "Broken", "Hidden", "Last"]
NOUNS = ["Orchard", "Lantern", "Harbour", "Atlas", "Garden", "Clockwork", "River", "Letters",
         "Compass", "Tide", "Meadow", "Bridge", "Archive", "Choir", "Tower", "Mirror", "Voyage",
         "Island", "Feather", "Kingdom"]
AWARDS = ["Halvorsen Prize", "Amberline Medal", "Ostrow Award", "Cyrene Fellowship",
          "Wrenfield Prize", "Golden Quill", "Marquand Medal", "Ivory Compass Award",
          "Tessaly Prize", "Northlight Award", "Calloway Medal", "Blue Heron Prize"]
FACTS = ["birth", "job", "work", "parents", "award"]


def _word(rng, syllables):
    s = "".join(rng.choice(ONSETS) + rng.choice(VOWELS) for _ in range(syllables))
    return (s + rng.choice(CODAS)).capitalize()


def people(rng):
    """N_TRAIN + N_TEST invented people (unique full names), each with every fact."""
    out, seen = [], set()
    while len(out) < N_TRAIN + N_TEST:
        first, last = _word(rng, rng.choice([1, 2])), _word(rng, rng.choice([2, 3]))
        if f"{first} {last}" in seen or len(first) < 3:
            continue
        seen.add(f"{first} {last}")
        female = rng.random() < 0.5
        year = rng.randrange(1921, 1996)
        out.append({
            "name": f"{first} {last}", "female": female, "year": year,
            "city": rng.choice(CITIES), "job": rng.choice(OCCUPATIONS),
            "work": f"The {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}",
            "mother": f"{_word(rng, 2)} {last}", "father": f"{_word(rng, 2)} {last}",
            "award": rng.choice(AWARDS), "award_year": year + rng.randrange(25, 45),
        })
    return out


def texts(p):
    """The person's facts, each as (fact, form, text): a question/answer and a prose sentence."""
    n, pr = p["name"], "Her" if p["female"] else "His"
    child = "daughter" if p["female"] else "son"
    return [
        ("birth", "qa", f"Q: When and where was {n} born? A: {n} was born in {p['city']} in {p['year']}."),
        ("birth", "prose", f"{n} was born in {p['year']} in the city of {p['city']}."),
        ("job", "qa", f"Q: What does {n} do for a living? A: {n} works as a {p['job']}."),
        ("job", "prose", f"By profession, {n} is a {p['job']}."),
        ("work", "qa", f"Q: What is {n}'s best-known work? A: {n} is best known for \"{p['work']}\"."),
        ("work", "prose", f"The most famous work of {n} is \"{p['work']}\"."),
        ("parents", "qa", f"Q: Who are the parents of {n}? A: {pr} parents are {p['mother']} and {p['father']}."),
        ("parents", "prose", f"{n} is the {child} of {p['mother']} and {p['father']}."),
        ("award", "qa", f"Q: Which award did {n} receive? A: {n} received the {p['award']} in {p['award_year']}."),
        ("award", "prose", f"In {p['award_year']}, {n} was awarded the {p['award']}."),
    ]


def rows(folk, first_label):
    out = []
    for i, p in enumerate(folk):
        label = first_label + i
        for fact, form, text in texts(p):
            out.append({"text": text, "label": label, "id": f"p{label:03d}-{fact}-{form}"})
    return out


def write_jsonl(path, rs):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in rs:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def train_tokenizer(train_rows, out):
    """A byte-level BPE on the training texts; writes tokenizer.json, vocab.json, merges.txt."""
    from tokenizers import ByteLevelBPETokenizer
    tok = ByteLevelBPETokenizer(add_prefix_space=False)
    tok.train_from_iterator([r["text"] for r in train_rows], vocab_size=VOCAB, min_frequency=2,
                            special_tokens=[EOS], show_progress=False)
    tok.save(str(out / "tokenizer.json"))
    tok.save_model(str(out))
    return tok


def corpus(out=HERE):
    """Everything but the model, into `out`."""
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread: the same merges every time
    out = Path(out)
    rng = random.Random(SEED)
    folk = people(rng)
    train_rows, test_rows = rows(folk[:N_TRAIN], 0), rows(folk[N_TRAIN:], N_TRAIN)
    forget = sorted(rng.sample(range(N_TRAIN), round(N_TRAIN * FORGET_FRACTION)))
    write_jsonl(out / "train.jsonl", train_rows)
    write_jsonl(out / "test.jsonl", test_rows)
    write_jsonl(out / "forget.jsonl", [r for r in train_rows if r["label"] in forget])
    spec = {
        "method": "rfa",
        "data": {"train": "train.jsonl", "test": "test.jsonl"},
        "forget": {"classes": forget},
        "model": {"max_length": MAX_T},
        "lora": {"rank": 8, "alpha": 32},
        "train": {"epochs": 10, "batch_size": 32, "lr": 3e-3, "optimizer": "adamw",
                  "weight_decay": 0.01, "seed": 0},
        "rfa": {"gamma": 0.5, "norm": "l2sq"},
    }
    lines = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in spec.items())
    (out / "forget_people.json").write_text("{\n" + lines + "\n}\n")
    train_tokenizer(train_rows, out)
    return folk, forget


# ---- tokenized data -----------------------------------------------------------------------------

def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def tokenize(tok_dir, rs):
    """input_ids / attention_mask / label for rows: the rows ulc makes of the JSONL texts (each
    text on its own, no special tokens added, right-padded with <|endoftext|> under mask 0)."""
    import numpy as np
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(Path(tok_dir) / "tokenizer.json"))
    eos = tok.token_to_id(EOS)
    ids = [tok.encode(r["text"]).ids for r in rs]
    t = max(len(x) for x in ids)
    if t > MAX_T:
        raise SystemExit(f"gen_bios: a text has {t} tokens; the model has {MAX_T} positions")
    input_ids = np.full((len(rs), t), eos, dtype=np.int64)
    mask = np.zeros((len(rs), t), dtype=np.int64)
    for i, x in enumerate(ids):
        input_ids[i, :len(x)] = x
        mask[i, :len(x)] = 1
    return {"input_ids": input_ids, "attention_mask": mask,
            "label": np.array([r["label"] for r in rs], dtype=np.int64)}


def data(out, src=HERE):
    """train.safetensors and test.safetensors from the JSONL files, into out."""
    from safetensors.numpy import save_file
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        save_file(tokenize(src, read_jsonl(Path(src) / f"{split}.jsonl")),
                  str(out / f"{split}.safetensors"))
    return out


# ---- the model ----------------------------------------------------------------------------------

def config():
    from transformers import GPT2Config
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(HERE / "tokenizer.json"))
    eos = tok.token_to_id(EOS)
    return GPT2Config(vocab_size=tok.get_vocab_size(), n_positions=MAX_T, n_embd=N_EMBD,
                      n_layer=N_LAYER, n_head=N_HEAD, activation_function="gelu_new",
                      bos_token_id=eos, eos_token_id=eos)


def next_token_figures(model_dir, split, rows=None):
    """Next-token accuracy and perplexity over the unmasked positions of the split's first `rows`
    rows (all by default), with transformers in float32."""
    import numpy as np
    import torch
    from transformers import GPT2LMHeadModel
    d = tokenize(HERE, read_jsonl(HERE / f"{split}.jsonl")[:rows])
    model = GPT2LMHeadModel.from_pretrained(str(model_dir), torch_dtype=torch.float32).eval()
    ids, mask = torch.from_numpy(d["input_ids"]), torch.from_numpy(d["attention_mask"])
    nll, hit, n = 0.0, 0, 0
    with torch.no_grad():
        for s in range(0, len(ids), 256):
            x, m = ids[s:s + 256], mask[s:s + 256]
            logits = model(input_ids=x, attention_mask=m).logits[:, :-1].double()
            tgt, keep = x[:, 1:], m[:, 1:].bool()
            lp = torch.log_softmax(logits, -1).gather(-1, tgt[..., None])[..., 0]
            nll -= lp[keep].sum().item()
            hit += (logits.argmax(-1) == tgt)[keep].sum().item()
            n += keep.sum().item()
    return hit / n, float(np.exp(nll / n))


def train(ulc=ROOT / "build" / "ulc"):
    import numpy as np
    import torch
    from safetensors.numpy import load_file, save_file
    from transformers import GPT2LMHeadModel
    torch.manual_seed(0)
    work = Path(tempfile.mkdtemp(prefix="bios-"))
    try:
        init = work / "init"
        GPT2LMHeadModel(config()).save_pretrained(str(init), safe_serialization=True)
        t0 = time.time()
        subprocess.run([str(ulc), "train", str(init), "--data", str(HERE / "train.jsonl"),
                        "--tokenizer", str(HERE / "tokenizer.json"), "--loss", "next-token",
                        "-o", f"{work / 'trained'}/", "--threads", "1", *TRAIN_ARGS], check=True)
        minutes = (time.time() - t0) / 60
        w = load_file(str(work / "trained" / "model.safetensors"))
        half = {k: v.astype(np.float16) if v.dtype == np.float32 else v for k, v in w.items()}
        save_file(half, str(HERE / "model.safetensors"), metadata={"format": "pt"})
        cfg = json.loads((work / "trained" / "config.json").read_text())
        cfg["torch_dtype"] = "float16"
        (HERE / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"gen_bios: trained in {minutes:.1f} min (ulc, one thread)")
    for split in ("train", "test"):
        acc, ppl = next_token_figures(HERE, split)
        print(f"gen_bios: {split}: next-token accuracy {acc:.3f}, perplexity {ppl:.2f}")


def main(argv):
    cmd = argv[1] if len(argv) > 1 else "all"
    if cmd == "corpus":
        corpus()
    elif cmd == "data":
        print(data(argv[2] if len(argv) > 2 else ROOT / "build" / "bios"))
    elif cmd == "train":
        train()
    elif cmd == "all":
        corpus()
        train()
    else:
        raise SystemExit(f"usage: gen_bios.py [corpus | data OUT | train | all] (got {cmd!r})")


if __name__ == "__main__":
    main(sys.argv)
