"""The PyTorch side of bench/bench_scaling.py: one forward pass of a model bench_scaling.py also
exports for ulc, built the same way (same library, same config, seeded random init), timed in
eager mode under torch.inference_mode. Run in the benchmark venv (bench/setup_torch.sh) as a
process of its own, so that its peak RSS is its own. Prints one JSON object:
  {"median_ms": ..., "min_ms": ..., "runs": R, "maxrss": bytes, "torch": version}

  .bench-venv/bin/python bench/scaling_torch.py --model NAME --batch B [--tokens T] [--threads N]
      [--runs R] [--warmup 2]
"""
import argparse
import json
import resource
import statistics
import sys
import time


def build(name):
    """The model in eval mode and a function making its inputs (batch, tokens)."""
    import torch
    if name in ("resnet18", "resnet50"):
        import torchvision
        torch.manual_seed(0)
        m = getattr(torchvision.models, name)().eval()
        return m, lambda b, t: (torch.randn(b, 3, 224, 224),)
    if name in ("vit_s16", "vit_b16"):
        from transformers import ViTConfig, ViTForImageClassification
        torch.manual_seed(1)
        small = name == "vit_s16"
        cfg = ViTConfig(hidden_size=384 if small else 768, num_hidden_layers=12,
                        num_attention_heads=6 if small else 12, intermediate_size=1536 if small else 3072,
                        image_size=224, patch_size=16, num_labels=1000)
        m = ViTForImageClassification(cfg).eval()
        return m, lambda b, t: (torch.randn(b, 3, 224, 224),)
    if name in ("distilgpt2", "gpt2_medium"):
        from transformers import GPT2Config, GPT2LMHeadModel
        torch.manual_seed(2)
        medium = name == "gpt2_medium"
        cfg = GPT2Config(n_layer=24 if medium else 6, n_embd=1024 if medium else 768,
                         n_head=16 if medium else 12, vocab_size=50257, n_positions=1024,
                         activation_function="gelu_new", use_cache=False)
        m = GPT2LMHeadModel(cfg).eval()

        def inputs(b, t):
            ids = torch.randint(0, 50257, (b, t))
            return ids, torch.ones_like(ids)
        return m, inputs
    raise SystemExit(f"unknown model {name}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()
    import torch
    torch.set_num_threads(args.threads)
    model, make = build(args.model)
    x = make(args.batch, args.tokens)
    ts = []
    with torch.inference_mode():
        for i in range(args.warmup + args.runs):
            t0 = time.perf_counter()
            if args.model.startswith(("distilgpt2", "gpt2")):
                model(input_ids=x[0], attention_mask=x[1], use_cache=False)
            else:
                model(*x)
            if i >= args.warmup:
                ts.append((time.perf_counter() - t0) * 1e3)
    print(json.dumps({"median_ms": statistics.median(ts), "min_ms": min(ts), "runs": len(ts),
                      "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "torch": torch.__version__.split("+")[0]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
