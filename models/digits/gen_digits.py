"""Makes the embedded default: a small ResNet-style CNN trained on the UCI handwritten digits
that scikit-learn ships (sklearn.datasets.load_digits: 1,797 8x8 images, 10 classes).

Writes, beside this script:
  digits_resnet.onnx   the model: input `input` f32 [N,1,8,8] in [0,1], output `logits` f32 [N,10]
  train.safetensors    `input` f32 [N,1,8,8], `label` i64 [N]  (stratified 80 %)
  test.safetensors     the same for the other 20 %

Deterministic: fixed seeds, one thread. Run with the project's venv:
  .venv/bin/python models/digits/gen_digits.py

The model, the training loop and the writers are functions that bench/results.py imports to make
its MNIST-5k case the same way (DigitsResNet(stem_stride=2) on 28x28 images).
"""
import os
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

HERE = Path(__file__).resolve().parent
SEED = 0


class Block(nn.Module):
    """Basic residual block: conv-bn-relu-conv-bn, identity skip, relu."""

    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(x + y)


class DigitsResNet(nn.Module):
    """stem conv-bn-relu, two basic blocks, global average pooling, linear head.
    stem_stride 2 halves the image once (28x28 MNIST -> 14x14 blocks); digits uses 1."""

    def __init__(self, width=16, classes=10, stem_stride=1):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, stride=stem_stride, padding=1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU())
        self.layer1 = Block(width)
        self.layer2 = Block(width)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, classes)

    def forward(self, x):
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def fit(model, x, y, epochs=40, seed=SEED):
    """Trains model in place on x f32 [N,...], y i64 [N] (numpy): Adam lr 3e-3, weight decay
    1e-4, cosine schedule over the epochs, batch 64, batch order drawn from seed. Returns the
    model in eval mode."""
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    gen = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    model.eval()
    return model


def accuracy(model, x, y):
    with torch.no_grad():
        return (model(torch.from_numpy(x)).argmax(1).numpy() == y).mean()


def _tmp(path):
    """each file is written beside its final name and renamed into place"""
    return path.parent / f".{path.name}.{os.getpid()}.tmp"


def export_onnx(model, path, sample):
    """model (eval mode) -> ONNX opset 17, `input` -> `logits`, dynamic batch; sample: one row's
    tensor [1, ...]."""
    path = Path(path)
    tmp = _tmp(path)
    torch.onnx.export(model, sample, str(tmp), opset_version=17,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    os.replace(tmp, path)


def save_data(path, x, y):
    """`input` f32 [N,...], `label` i64 [N] as safetensors."""
    path = Path(path)
    tmp = _tmp(path)
    save_file({"input": np.ascontiguousarray(x), "label": y}, str(tmp))
    os.replace(tmp, path)


def main():
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=SEED, stratify=y)

    model = fit(DigitsResNet(), xtr, ytr)
    acc = accuracy(model, xte, yte)
    train_acc = accuracy(model, xtr, ytr)

    export_onnx(model, HERE / "digits_resnet.onnx", torch.zeros(1, 1, 8, 8))
    for name, xs, ys in (("train", xtr, ytr), ("test", xte, yte)):
        save_data(HERE / f"{name}.safetensors", xs, ys)
    print(f"digits: train {len(ytr)}, test {len(yte)}; train accuracy {train_acc:.4f}, "
          f"test accuracy {acc:.4f}")
    return 0 if acc > 0.95 else 1


if __name__ == "__main__":
    sys.exit(main())
