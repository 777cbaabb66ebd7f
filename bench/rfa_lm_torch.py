"""The PyTorch side of bench/bench_lm_rfa.py: one RFA unlearning epoch on a GPT2 language model
(residual feature alignment with LoRA, shared/methods/rfa.md), written the way methods/rfa.c
computes it for next-token models, timed. Runs in the benchmark venv (bench/setup_torch.sh:
PyPI's torch 2.x, transformers, peft), as a process of its own so its peak RSS is its own.

  model     a Hugging Face GPT2LMHeadModel directory (--model), eval mode (no dropout)
  adapters  PEFT LoRA, rank 8, alpha 32, no dropout, fan_in_fan_out (GPT2's Conv1D), on the
            modules ulc adapts (--modules: regex over module names; the default is RFA's
            DistilGPT2 placement as ulc applies it: every mlp.c_fc and mlp.c_proj, and the
            head, lm_head, tied to wte; PEFT wraps it like any Linear). Only A and B train
            (AdamW, weight decay 0.01)
  teacher   the untouched model under torch.no_grad(); features by forward hooks on the
            original modules (teacher) and the LoRA wrappers (student): their outputs
  batches   ulc's order (rfa_torch.ulc_permutation), --batch rows; the last partial batch is a
            smaller step
  loss      per batch, f the forget flags, b_r/b_f the retain/forget rows, t_k the teacher's
            features, z the student's logits, positions q = 0..T-2 predicting token q+1 with
            weight 1/valid on a row's valid positions (attention_mask of token q+1):
              means    m_k = mean over b_r of t_k; ybar = the mean over b_r's valid positions of
                       softmax(teacher logits) (detached)
              L_inter  sum_k [ sum_{b_r} ||s_k - t_k||^2 / |b_r| + sum_{b_f} ||s_k - m_k||^2 / |b_f| ]
              L_task   sum_{b_r} mean_q CE(z_q, y_{q+1}) / |b_r| + sum_{b_f} mean_q softCE(z_q, ybar) / |b_f|
              L        gamma / m * L_inter + (1 - gamma) * L_task   (gamma 0.5, m adapted modules)

Prints one JSON line: epoch seconds, the losses of every step, modules adapted, trainable
parameters, torch's version and threads.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rfa_torch import add_loop_args, lora_pair, ulc_permutation  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, help="safetensors: input_ids, attention_mask")
    ap.add_argument("--forget", required=True, help="JSON list of row indices")
    ap.add_argument("--modules", default=r".*\.mlp\.(c_fc|c_proj)$|lm_head")
    add_loop_args(ap)
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: all)")
    a = ap.parse_args()

    from safetensors.numpy import load_file
    from transformers import GPT2LMHeadModel

    t_load = time.perf_counter()
    teacher, student, names = lora_pair(GPT2LMHeadModel, a, fan_in_fan_out=True)
    data = load_file(a.data)
    ids = torch.from_numpy(data["input_ids"].astype(np.int64))
    am = torch.from_numpy(data["attention_mask"].astype(np.int64))
    n = ids.shape[0]
    forget = torch.zeros(n, dtype=torch.bool)
    forget[json.load(open(a.forget))] = True

    feats_t, feats_s = {}, {}
    tmods = dict(teacher.named_modules())
    for k, name in enumerate(names):
        tmods[name].register_forward_hook(lambda m, i, o, k=k: feats_t.__setitem__(k, o))
    smods = dict(student.named_modules())
    for k, name in enumerate(names):
        smods["base_model.model." + name].register_forward_hook(
            lambda m, i, o, k=k: feats_s.__setitem__(k, o))
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.01)
    m = len(names)
    losses, step_s = [], []
    load_s = time.perf_counter() - t_load
    t0 = time.perf_counter()
    steps = 0
    for epoch in range(a.epochs):
        perm = ulc_permutation(a.seed, epoch, n)
        for b0 in range(0, n, a.batch):
            if a.max_steps and steps >= a.max_steps:
                break
            ts = time.perf_counter()
            idx = torch.tensor(perm[b0:b0 + a.batch])
            x, mk, f = ids[idx], am[idx], forget[idx]
            r = ~f
            nr, nf = int(r.sum()), int(f.sum())
            with torch.no_grad():
                zt = teacher(input_ids=x, attention_mask=mk).logits
            valid = mk[:, 1:].float()
            posw = valid / valid.sum(1, keepdim=True).clamp_min(1)
            with torch.no_grad():
                pt = torch.softmax(zt[:, :-1].float(), -1)
                w = (posw * r[:, None].float())
                ybar = (pt * w[..., None]).sum((0, 1)) / w.sum().clamp_min(1e-30)
            del zt, pt
            z = student(input_ids=x, attention_mask=mk).logits
            inter = 0.0
            for k in range(m):
                s, t = feats_s[k], feats_t[k].detach()
                tmean = t[r].mean(0, keepdim=True) if nr else t.mean(0, keepdim=True)
                tgt = torch.where(f.view(-1, *[1] * (t.dim() - 1)), tmean.expand_as(t), t)
                d = ((s - tgt) ** 2).flatten(1).sum(1)
                wi = torch.where(f, torch.tensor(1.0 / max(nf, 1)), torch.tensor(1.0 / max(nr, 1)))
                inter = inter + (d * wi).sum()
            lp = F.log_softmax(z[:, :-1], -1)
            ce = -lp.gather(-1, x[:, 1:, None]).squeeze(-1)
            sce = -(lp * ybar).sum(-1)
            ce_r = (ce * posw).sum(1)
            sce_f = (sce * posw).sum(1)
            task = (ce_r * r / max(nr, 1)).sum() + (sce_f * f / max(nf, 1)).sum()
            loss = a.gamma / m * inter + (1 - a.gamma) * task
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss))
            step_s.append(time.perf_counter() - ts)
            steps += 1
    epoch_s = (time.perf_counter() - t0) / a.epochs
    print(json.dumps({"epoch_seconds": epoch_s, "load_seconds": load_s, "steps": steps,
                      "losses": losses, "step_seconds": step_s, "modules": names,
                      "trainable": sum(p.numel() for p in params), "torch": torch.__version__,
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
