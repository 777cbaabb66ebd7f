"""The PyTorch side of bench/bench_vit_rfa.py: one RFA unlearning epoch on a ViT image classifier
(residual feature alignment with LoRA, shared/methods/rfa.md) written the way methods/rfa.c
computes it for classifiers, timed. Runs in the benchmark venv (bench/setup_torch.sh: PyPI's
torch 2.x, transformers, peft), as a process of its own so its peak RSS is its own.

  model     a Hugging Face ViTForImageClassification directory (--model), eval (no dropout)
  adapters  PEFT LoRA, rank 8, alpha 32, no dropout, on the modules ulc's placement=rfa adapts in
            a transformer: each layer's FFN (intermediate.dense and output.dense; mlp.fc1 and
            mlp.fc2 in transformers 5) and the head (classifier): 25 for ViT-S/16. Only A and B train (AdamW, weight decay 0.01)
  teacher   the untouched model under torch.no_grad(); features by forward hooks on the
            original modules (teacher) and the LoRA wrappers (student): their outputs
  batches   ulc's order (rfa_torch.ulc_permutation), --batch rows; the last partial batch is a
            smaller step
  loss      per batch, f the forget flags, b_r / b_f the retain / forget rows, t_k the teacher's
            features, z the student's logits (as bench/rfa_torch.py, methods/rfa.h):
              m_k = mean over b_r of t_k, ybar = mean over b_r of softmax(teacher logits)
              L_inter = sum_k [ sum_{b_r} ||s_k - t_k||^2 / |b_r| + sum_{b_f} ||s_k - m_k||^2 / |b_f| ]
              L_task  = sum_{b_r} CE(z, y) / |b_r| + sum_{b_f} softCE(z, ybar) / |b_f|
              L       = gamma / m * L_inter + (1 - gamma) * L_task   (gamma 0.5, m modules)

Prints one JSON line: epoch seconds, the losses of every step, modules adapted, trainable
parameters, torch's version and threads.
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rfa_torch import add_loop_args, lora_pair, ulc_permutation  # noqa: E402

# each layer's FFN and the head, as transformers 4 (intermediate/output.dense) and 5 (mlp.fc1/fc2)
# name them (5 still saves checkpoints under the old names, which ulc reads)
MODULES = r"vit\.(encoder\.layer\.\d+\.(intermediate|output)\.dense|layers\.\d+\.mlp\.fc[12])|classifier"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, help="safetensors: pixel_values, label")
    ap.add_argument("--forget-classes", type=int, nargs="+", default=[3])
    ap.add_argument("--modules", default=MODULES)
    add_loop_args(ap)
    a = ap.parse_args()

    from safetensors.torch import load_file
    from transformers import ViTForImageClassification

    t_load = time.perf_counter()
    teacher, student, names = lora_pair(ViTForImageClassification, a)
    data = load_file(a.data)
    dev = torch.device(a.device)
    X, Y = data["pixel_values"].to(dev), data["label"].to(dev)
    n = X.shape[0]
    forget = torch.zeros(n, dtype=torch.bool, device=dev)
    for c in a.forget_classes:
        forget |= Y == c

    feats_t, feats_s = {}, {}
    tmods = dict(teacher.named_modules())
    smods = dict(student.named_modules())
    for k, name in enumerate(names):
        tmods[name].register_forward_hook(lambda m, i, o, k=k: feats_t.__setitem__(k, o))
        smods["base_model.model." + name].register_forward_hook(lambda m, i, o, k=k: feats_s.__setitem__(k, o))
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.01)
    m = len(names)
    losses, step_s = [], []
    load_s = time.perf_counter() - t_load
    t0 = time.perf_counter()
    for epoch in range(a.epochs):
        perm = ulc_permutation(a.seed, epoch, n)
        for b0 in range(0, n, a.batch):
            ts = time.perf_counter()
            idx = torch.tensor(perm[b0:b0 + a.batch], device=dev)
            x, y, f = X[idx], Y[idx], forget[idx]
            r = ~f
            nr, nf = int(r.sum()), int(f.sum())
            with torch.no_grad():
                zt = teacher(pixel_values=x).logits
                ybar = torch.softmax(zt[r], -1).mean(0) if nr else torch.zeros(zt.shape[1], device=dev)
            z = student(pixel_values=x).logits
            inter = 0.0
            for k in range(m):
                s, t = feats_s[k], feats_t[k].detach()
                if nf and nr:
                    tmean = t[r].mean(0, keepdim=True)
                    t = torch.where(f.view(-1, *[1] * (t.dim() - 1)), tmean.expand_as(t), t)
                d = ((s - t) ** 2).flatten(1).sum(1)
                wi = torch.where(f, torch.tensor(1.0 / max(nf, 1) if nr else 0.0, device=dev),
                                 torch.tensor(1.0 / max(nr, 1), device=dev))
                inter = inter + (d * wi).sum()
            lp = F.log_softmax(z, -1)
            ce = -lp.gather(1, y[:, None]).squeeze(1)
            sce = -(lp * ybar).sum(-1)
            task = (ce * r / max(nr, 1)).sum() + (sce * f / max(nf, 1) * (1.0 if nr else 0.0)).sum()
            loss = a.gamma / m * inter + (1 - a.gamma) * task
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss))
            step_s.append(time.perf_counter() - ts)
    epoch_s = (time.perf_counter() - t0) / a.epochs
    print(json.dumps({"epoch_seconds": epoch_s, "load_seconds": load_s, "steps": len(losses),
                      "losses": losses, "step_seconds": step_s, "modules": names,
                      "trainable": sum(p.numel() for p in params), "torch": torch.__version__,
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
