"""The PyTorch-eager side of bench/bench_train.py: LoRA self-distillation steps on torchvision
ResNet-18, timed step by step. Run by bench_train.py as a process of its own, so that its
peak RSS is its own; it can be run by hand as well.

The step is the one `ulc train --loss distill --before lora-inject{...}` takes:

  model     torchvision resnet18 (torch.manual_seed(--model-seed), eval: BatchNorm uses its
            running statistics); the same weights bench_train.py exported to ONNX for ulc
  adapters  every Conv2d inside layer1..layer4 (conv1, conv2 and downsample.0 of each
            BasicBlock: 19 convs; the stem conv1 is not in a residual block) wrapped exactly like
            PEFT's LoRA Conv2d: A = Conv2d(in, r, k, stride, padding, dilation, bias=False),
            kaiming-uniform a=sqrt(5); B = Conv2d(r, out, 1, bias=False), zeros;
            y = base(x) + B(A(x)) * alpha / r. Base parameters have requires_grad=False.
  teacher   the untouched model, under torch.no_grad()
  loss      F.kl_div(F.log_softmax(student), F.softmax(teacher), reduction="batchmean")
  optimizer torch.optim.AdamW(LoRA parameters, lr), its defaults otherwise (as ulc's adamw)

A step = teacher forward + student forward + loss + backward + optimizer.step + zero_grad, timed
with time.perf_counter around exactly that (batches are sliced from the loaded data before the
clock starts, in order, as `ulc train --no-shuffle` takes them); the clock is also read between
the phases (teacher, student forward + loss, backward, optimizer step + zero_grad). Prints one
JSON object:

  {"steps": S, "step_ms": [...], "loss": [...], "median_ms": median of step_ms[warmup:],
   "phase_ms": {"teacher": median ms, "forward": ..., "backward": ..., "optimizer": ...},
   "adapters": 19, "trainable": N, "threads": T, "maxrss": bytes, "torch": version}

With --compile (PyTorch 2.x) the teacher and the student run as torch.compile(...) modules
(inductor, its defaults); their compilation happens in the first steps, left out as warm-up.

  .venv/bin/python bench/train_step_torch.py --data D.safetensors --steps S [--batch-size 64]
      [--threads T] [--rank 8] [--alpha 16] [--lr 1e-4] [--warmup 2] [--model-seed 0] [--seed 1]
      [--compile]
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="safetensors with 'input' [N,3,H,W] float32")
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=16)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=2, help="steps left out of the median (default 2)")
    ap.add_argument("--model-seed", type=int, default=0, help="torch seed of the resnet18 weights")
    ap.add_argument("--seed", type=int, default=1, help="torch seed of the LoRA A factors")
    ap.add_argument("--compile", action="store_true", help="torch.compile the teacher and the student")
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F
    import torchvision
    from safetensors.torch import load_file

    torch.set_num_threads(args.threads)

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from torch_lora import LoraConv2d  # the same wrapper on both PyTorch sides

    torch.manual_seed(args.model_seed)
    teacher = torchvision.models.resnet18().eval()
    torch.manual_seed(args.model_seed)
    student = torchvision.models.resnet18().eval()
    student.load_state_dict(teacher.state_dict())
    for p in list(teacher.parameters()) + list(student.parameters()):
        p.requires_grad_(False)

    torch.manual_seed(args.seed)
    targets = [name for name, mod in student.named_modules()
               if isinstance(mod, torch.nn.Conv2d) and name.startswith("layer")]
    for name in targets:
        parent_name, _, child = name.rpartition(".")
        parent = student.get_submodule(parent_name)
        setattr(parent, child, LoraConv2d(getattr(parent, child), args.rank, args.alpha))
    student.eval()
    params = [p for n, p in student.named_parameters() if "lora_" in n]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=args.lr)
    if args.compile:
        teacher, student = torch.compile(teacher), torch.compile(student)

    data = load_file(args.data)["input"]
    bs = args.batch_size
    if data.shape[0] < args.steps * bs:
        raise SystemExit(f"{args.data}: {data.shape[0]} rows, {args.steps} steps of {bs} need "
                         f"{args.steps * bs}")

    step_ms, losses, phases = [], [], {"teacher": [], "forward": [], "backward": [], "optimizer": []}
    for i in range(args.steps):
        x = data[i * bs:(i + 1) * bs]
        t0 = time.perf_counter()
        with torch.no_grad():
            t_logits = teacher(x)
        t1 = time.perf_counter()
        s_logits = student(x)
        loss = F.kl_div(F.log_softmax(s_logits, dim=-1), F.softmax(t_logits, dim=-1),
                        reduction="batchmean")
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=True)
        t4 = time.perf_counter()
        step_ms.append((t4 - t0) * 1e3)
        losses.append(float(loss))
        for k, a, b in (("teacher", t0, t1), ("forward", t1, t2), ("backward", t2, t3), ("optimizer", t3, t4)):
            phases[k].append((b - a) * 1e3)

    timed = step_ms[args.warmup:] or step_ms
    print(json.dumps({
        "steps": args.steps, "step_ms": step_ms, "loss": losses,
        "median_ms": statistics.median(timed),
        "phase_ms": {k: statistics.median(v[args.warmup:] or v) for k, v in phases.items()},
        "adapters": len(targets),
        "trainable": sum(p.numel() for p in params), "threads": torch.get_num_threads(),
        "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "torch": torch.__version__, "compiled": args.compile,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
