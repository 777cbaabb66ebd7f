"""PEFT's LoRA Conv2d wrapper (peft/tuners/lora.py: init_lora_weights=True, no dropout), the one
the PyTorch sides of bench_train.py (train_step_torch.py) and bench_rfa.py (rfa_torch.py) put on
the ResNet convs: A is a conv with the base kernel, stride, padding and dilation into r channels
(Kaiming-uniform), B a 1x1 conv back (zeros), scaled by alpha / r."""
import math

import torch


class LoraConv2d(torch.nn.Module):
    def __init__(self, base, r, alpha):
        super().__init__()
        self.base_layer = base
        self.lora_A = torch.nn.Conv2d(base.in_channels, r, base.kernel_size, base.stride,
                                      base.padding, base.dilation, bias=False)
        self.lora_B = torch.nn.Conv2d(r, base.out_channels, (1, 1), (1, 1), bias=False)
        torch.nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        torch.nn.init.zeros_(self.lora_B.weight)
        self.scaling = alpha / r

    def forward(self, x):
        return self.base_layer(x) + self.lora_B(self.lora_A(x)) * self.scaling
