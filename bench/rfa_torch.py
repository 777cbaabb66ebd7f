"""The PyTorch-eager side of bench/bench_rfa.py: one RFA unlearning run (residual feature
alignment with LoRA, shared/methods/rfa.md) written the way methods/rfa.c computes it, timed epoch
by epoch. Run by bench_rfa.py as a process of its own, so that its peak RSS is its own; it can be
run by hand as well.

The run does what `ulc IN --forget SPEC.json -o OUT` does, in the same order:

  model     --model digits: the embedded default's network as its ONNX file holds it (BatchNorm
            folded into the convs' biases by the exporter: stem conv, two basic blocks of two
            3x3 convs, global average pool, linear head), weights from --weights (bench_rfa.py
            copies them out of models/digits/digits_resnet.onnx). --model resnet18:
            torchvision resnet18(num_classes=--classes) built after torch.manual_seed(--model-seed),
            eval (BatchNorm on running statistics): the module bench_rfa.py exported to ONNX
  adapters  RFA's default placement as ulc's: every Conv2d inside a residual block, i.e. under
            layer* (digits: 4; ResNet-18: conv1, conv2 and downsample.0 of each BasicBlock, 19),
            wrapped exactly like PEFT's LoRA Conv2d: A = Conv2d(in, r, k, stride, padding,
            dilation, bias=False), kaiming-uniform a=sqrt(5) (torch.manual_seed(--lora-seed));
            B = Conv2d(r, out, 1, bias=False), zeros; y = base(x) + B(A(x)) * alpha / r. Only A and
            B train.
  teacher   the untouched model, eval, under torch.no_grad()
  features  the adapted modules' outputs: forward hooks on the LoRA wrappers (student) and on the
            original convs of the same names (teacher)
  batches   ulc's order: ulc_train_permutation(seed, epoch) (splitmix64 Fisher-Yates, train/
            train.c), re-implemented below; the last partial batch is a smaller step
  loss      per batch, with f the forget flags, b_r / b_f the retain / forget rows, t_k the
            teacher's features and z the student's logits (methods/rfa.h):
              means    m_k = mean over b_r of t_k, ybar = mean over b_r of softmax(teacher logits)
                       (detached; a batch without retain rows reuses the last ones, and before
                       any retain row its forget terms are skipped)
              targets  t_k on retain rows, m_k on forget rows
              weights  w_inter = alpha/|b_r| (retain), beta/|b_f| (forget); w_ce = lambda/|b_r|
                       on retain rows; w_soft = mu/|b_f| on forget rows (alpha = beta = lambda =
                       mu = 1)
              L = gamma/m sum_k sum_i w_inter[i] ||s_k[i] - target_k[i]||^2
                  + (1 - gamma) sum_i (w_ce[i] CE(z_i, y_i) + w_soft[i] softCE(z_i, ybar))
            (rfa.c sums the means in double; here they are float32 torch means)
  optimizer torch.optim.AdamW(LoRA parameters, lr, weight_decay), betas/eps its defaults (as
            ulc's adamw), constant lr
  around    accuracy on Df / Dr (the train rows of the forgotten classes / the others) before
            (the teacher) and after (the merged model), 256 rows per forward as ulc's EVAL_BATCH;
            the adapters merged into the conv weights (W += s * B A); with --out the merged
            state_dict saved as safetensors (ulc's export)

Each epoch (every batch: row gather, teacher forward, targets, student forward, loss, backward,
AdamW step, zero_grad) is timed with time.perf_counter; so is each step and the phases of the
run. Prints one JSON object on its last line of stdout:

  {"epochs": E, "steps": S, "epoch_s": [...], "train_s": sum, "step_ms": [...], "loss": [...],
   "first_loss", "last_loss", "accuracy": {"before": {"Df", "Dr"}, "after": {...}},
   "phase_s": {"import", "setup", "eval_before", "eval_after", "merge_save"}, "modules": [...],
   "trainable": N, "forget_rows": n, "threads": T, "maxrss": bytes, "torch": version}

  .venv/bin/python bench/rfa_torch.py --model digits --weights W.safetensors --data D.safetensors
      [--forget-classes 3] [--epochs 1] [--batch-size 128] [--lr 5e-5] [--weight-decay 0.01]
      [--rank 8] [--alpha 32] [--gamma 0.5] [--seed 0] [--lora-seed 1] [--threads T] [--out O]
  .venv/bin/python bench/rfa_torch.py --model resnet18 --classes 10 --model-seed 0 --data D ...
"""
import time

T_START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402

EVAL_BATCH = 256  # tools/forget.c's rows per scoring run
M64 = (1 << 64) - 1


def _splitmix64(state):
    """train/train.c's splitmix64: (new state, draw)."""
    state = (state + 0x9E3779B97F4A7C15) & M64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return state, z ^ (z >> 31)


def ulc_permutation(seed, epoch, n):
    """ulc_train_permutation(seed, epoch, n): the order in which ulc's epoch visits n rows."""
    perm = list(range(n))
    _, first = _splitmix64(seed & M64)
    state = first ^ ((epoch * 0xD1B54A32D192ED03) & M64)
    for i in range(n - 1, 0, -1):
        bound = i + 1
        threshold = ((1 << 64) - bound) % bound  # (0 - bound) % bound in uint64
        while True:
            state, r = _splitmix64(state)
            if r >= threshold:
                break
        j = r % bound
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def add_loop_args(ap):
    """The options every transformer RFA epoch script shares (rfa_vit_torch.py, rfa_lm_torch.py)."""
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--gamma", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="torch device: cpu, or cuda (bench/bench_gpu.py)")


def lora_pair(cls, a, **lora):
    """Teacher and student from a Hugging Face directory a.model (class cls, eval), the teacher
    frozen, the student with PEFT LoRA (rank 8, alpha 32, no dropout; lora: more LoraConfig
    fields) on the modules whose names match a.modules; torch's threads and seed set from a.
    Returns (teacher, student, the adapted module names)."""
    import re
    import torch
    from peft import LoraConfig, get_peft_model
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    teacher = cls.from_pretrained(a.model).eval()
    student = cls.from_pretrained(a.model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    names = [n for n, _ in student.named_modules() if re.fullmatch(a.modules, n)]
    cfg = LoraConfig(r=8, lora_alpha=32, lora_dropout=0.0, target_modules=names, init_lora_weights=True, **lora)
    dev = torch.device(getattr(a, "device", "cpu"))
    return teacher.to(dev), get_peft_model(student, cfg).eval().to(dev), names


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["digits", "resnet18"], required=True)
    ap.add_argument("--weights", help="digits: safetensors with the folded network's weights")
    ap.add_argument("--classes", type=int, default=10, help="resnet18: classes of the head")
    ap.add_argument("--model-seed", type=int, default=0, help="resnet18: torch seed of the weights")
    ap.add_argument("--data", required=True, help="safetensors with 'input' float32 [N,...], 'label' int64 [N]")
    ap.add_argument("--forget-classes", type=int, nargs="+", default=[3])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=32)
    ap.add_argument("--gamma", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0, help="batch order (ulc's permutation of this seed)")
    ap.add_argument("--lora-seed", type=int, default=1, help="torch seed of the LoRA A factors")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", help="save the merged model's state_dict here (safetensors)")
    ap.add_argument("--device", default="cpu", help="torch device (cpu, cuda): bench/bench_gpu.py runs it on a GPU")
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F
    from safetensors.torch import load_file, save_file

    torch.set_num_threads(args.threads)
    t_imported = time.perf_counter()

    # ------------------------------------------------------------ the model
    class FoldedBlock(torch.nn.Module):
        """gen_digits.py's Block with BatchNorm folded into the convs (as the ONNX file holds it)."""

        def __init__(self, c):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(c, c, 3, padding=1, bias=True)
            self.conv2 = torch.nn.Conv2d(c, c, 3, padding=1, bias=True)

        def forward(self, x):
            return torch.relu(x + self.conv2(torch.relu(self.conv1(x))))

    class FoldedDigits(torch.nn.Module):
        def __init__(self, width=16, classes=10):
            super().__init__()
            self.stem = torch.nn.Conv2d(1, width, 3, padding=1, bias=True)
            self.layer1 = FoldedBlock(width)
            self.layer2 = FoldedBlock(width)
            self.fc = torch.nn.Linear(width, classes)

        def forward(self, x):
            x = self.layer2(self.layer1(torch.relu(self.stem(x))))
            return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    def build():
        if args.model == "digits":
            if not args.weights:
                raise SystemExit("--model digits needs --weights")
            m = FoldedDigits()
            m.load_state_dict(load_file(args.weights))
            return m.eval()
        import torchvision
        torch.manual_seed(args.model_seed)
        return torchvision.models.resnet18(num_classes=args.classes).eval()

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from torch_lora import LoraConv2d  # the same wrapper on both PyTorch sides

    teacher = build()
    student = build()
    student.load_state_dict(teacher.state_dict())
    for p in list(teacher.parameters()) + list(student.parameters()):
        p.requires_grad_(False)
    names = [n for n, mod in student.named_modules()
             if isinstance(mod, torch.nn.Conv2d) and n.startswith("layer")]
    torch.manual_seed(args.lora_seed)
    for n in names:
        parent, _, child = n.rpartition(".")
        holder = student.get_submodule(parent)
        setattr(holder, child, LoraConv2d(getattr(holder, child), args.rank, args.alpha))
    student.eval()
    dev = torch.device(args.device)
    teacher.to(dev)
    student.to(dev)
    params = [p for n, p in student.named_parameters() if "lora_" in n]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)

    # features: the adapted modules' outputs, caught by forward hooks
    s_feat, t_feat = {}, {}

    def catch(store, key):
        def hook(_mod, _inp, out):
            store[key] = out
        return hook

    for n in names:
        student.get_submodule(n).register_forward_hook(catch(s_feat, n))
        teacher.get_submodule(n).register_forward_hook(catch(t_feat, n))

    data = load_file(args.data)
    X, Y = data["input"].to(dev), data["label"].to(dev)
    rows = X.shape[0]
    forget = torch.zeros(rows, dtype=torch.bool, device=dev)
    for c in args.forget_classes:
        forget |= Y == c
    n_forget = int(forget.sum())
    if n_forget == 0 or n_forget == rows:
        raise SystemExit(f"{args.data}: classes {args.forget_classes} select {n_forget} of {rows} rows")
    t_setup = time.perf_counter()

    def accuracy(model):
        """Accuracy on Df and Dr (train rows of the forgotten classes / the rest)."""
        hit = torch.zeros(rows, dtype=torch.bool, device=dev)
        with torch.no_grad():
            for at in range(0, rows, EVAL_BATCH):
                hit[at:at + EVAL_BATCH] = model(X[at:at + EVAL_BATCH]).argmax(1) == Y[at:at + EVAL_BATCH]
        return {"Df": float(hit[forget].float().mean()), "Dr": float(hit[~forget].float().mean())}

    acc_before = accuracy(teacher)
    t_eval0 = time.perf_counter()

    # ------------------------------------------------------------ RFA
    m, gamma = len(names), args.gamma
    alpha_w = beta_w = lambda_w = mu_w = 1.0
    bs = args.batch_size
    per_epoch = (rows + bs - 1) // bs
    means, ybar = None, None
    epoch_s, step_ms, losses = [], [], []
    for e in range(args.epochs):
        perm = torch.tensor(ulc_permutation(args.seed, e, rows), dtype=torch.int64, device=dev)
        e0 = time.perf_counter()
        for b in range(per_epoch):
            s0 = time.perf_counter()
            idx = perm[b * bs:(b + 1) * bs]
            x, y, f = X[idx], Y[idx], forget[idx]
            keep = ~f
            nr, nf = int(keep.sum()), int(f.sum())
            with torch.no_grad():
                t_logits = teacher(x)
                if nr:  # retain means, detached; kept for batches with no retain rows
                    means = [t_feat[n][keep].mean(0) for n in names]
                    ybar = F.softmax(t_logits[keep], dim=1).mean(0)
                have = means is not None
                targets = []
                for k, n in enumerate(names):
                    t = t_feat[n]
                    if nf and have:
                        fm = f.view(-1, *([1] * (t.dim() - 1)))
                        t = torch.where(fm, means[k].unsqueeze(0), t)
                    targets.append(t)
                w_inter = torch.where(f, beta_w / nf if (nf and have) else 0.0, alpha_w / nr if nr else 0.0)
                w_ce = torch.where(f, 0.0, lambda_w / nr if nr else 0.0)
                w_soft = torch.where(f, mu_w / nf if (nf and have) else 0.0, 0.0)
                ybar_rows = ybar if have else torch.zeros(t_logits.shape[1], device=dev)
            z = student(x)
            inter = 0.0
            for k, n in enumerate(names):
                d = (s_feat[n] - targets[k]).pow(2).flatten(1).sum(1)  # squared L2 per row
                inter = inter + (w_inter * d).sum()
            lp = F.log_softmax(z, dim=1)
            ce = -lp.gather(1, y.unsqueeze(1)).squeeze(1)
            sce = -(ybar_rows.unsqueeze(0) * lp).sum(1)
            task = (w_ce * ce + w_soft * sce).sum()
            loss = (gamma / m) * inter + (1.0 - gamma) * task
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss))  # waits for the device: each step is timed whole
            step_ms.append((time.perf_counter() - s0) * 1e3)
        epoch_s.append(time.perf_counter() - e0)
    t_train = time.perf_counter()

    # ------------------------------------------------------------ merge, score, save
    with torch.no_grad():
        for n in names:
            w = student.get_submodule(n)
            base = w.base_layer
            A = w.lora_A.weight.reshape(args.rank, -1)
            B = w.lora_B.weight.reshape(base.out_channels, args.rank)
            base.weight += (w.scaling * (B @ A)).reshape(base.weight.shape)
            parent, _, child = n.rpartition(".")
            setattr(student.get_submodule(parent), child, base)
    t_merged = time.perf_counter()
    acc_after = accuracy(student)
    t_eval1 = time.perf_counter()
    if args.out:
        save_file({k: v.contiguous() for k, v in student.state_dict().items()}, args.out)
    t_end = time.perf_counter()

    print(json.dumps({
        "epochs": args.epochs, "steps": len(losses), "epoch_s": epoch_s, "train_s": sum(epoch_s),
        "step_ms": step_ms, "loss": losses, "first_loss": losses[0], "last_loss": losses[-1],
        "accuracy": {"before": acc_before, "after": acc_after},
        "phase_s": {"import": t_imported - T_START, "setup": t_setup - t_imported,
                    "eval_before": t_eval0 - t_setup, "eval_after": t_eval1 - t_merged,
                    "merge_save": (t_merged - t_train) + (t_end - t_eval1), "total": t_end - T_START},
        "modules": names, "trainable": sum(p.numel() for p in params), "forget_rows": n_forget,
        "rows": rows, "threads": torch.get_num_threads(),
        "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "torch": torch.__version__,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
