"""Makes the embedded default: a small ResNet-style CNN trained on the UCI handwritten digits
that scikit-learn ships (sklearn.datasets.load_digits: 1,797 8x8 images, 10 classes).

Writes, beside this script:
  digits_resnet.onnx   the model: input `input` f32 [N,1,8,8] in [0,1], output `logits` f32 [N,10]
  train.safetensors    `input` f32 [N,1,8,8], `label` i64 [N]  (stratified 80 %)
  test.safetensors     the same for the other 20 %

Deterministic: fixed seeds, one thread. Run with the project's venv:
  .venv/bin/python models/digits/gen_digits.py
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
    def __init__(self, width=16, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU())
        self.layer1 = Block(width)
        self.layer2 = Block(width)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, classes)

    def forward(self, x):
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def main():
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=SEED, stratify=y)

    model = DigitsResNet()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=40)
    gen = torch.Generator().manual_seed(SEED)
    xt, yt = torch.from_numpy(xtr), torch.from_numpy(ytr)
    for _ in range(40):
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
    with torch.no_grad():
        acc = (model(torch.from_numpy(xte)).argmax(1).numpy() == yte).mean()
        train_acc = (model(xt).argmax(1).numpy() == ytr).mean()

    # each file is written beside its final name and renamed into place
    tmp = HERE / f".digits_resnet.onnx.{os.getpid()}.tmp"
    torch.onnx.export(model, torch.zeros(1, 1, 8, 8), str(tmp), opset_version=17,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    os.replace(tmp, HERE / "digits_resnet.onnx")
    for name, xs, ys in (("train", xtr, ytr), ("test", xte, yte)):
        tmp = HERE / f".{name}.safetensors.{os.getpid()}.tmp"
        save_file({"input": np.ascontiguousarray(xs), "label": ys}, str(tmp))
        os.replace(tmp, HERE / f"{name}.safetensors")
    print(f"digits: train {len(ytr)}, test {len(yte)}; train accuracy {train_acc:.4f}, "
          f"test accuracy {acc:.4f}")
    return 0 if acc > 0.95 else 1


if __name__ == "__main__":
    sys.exit(main())
