"""A three-layer CNN small enough for the CPU quickstart.

It has to train an epoch of 2,000 32x32 images in about a second on two cores, yet still have
conv, batch-norm and linear layers for every pruning method to score.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pai_bench.models import register_model, resolve_widths
from pai_bench.models.cifar_resnet import init_openlth


class QuickNet(nn.Module):
    """`widths`, when given, are the three convolutions' widths (default 16, 32, 64)."""

    def __init__(self, num_classes: int, width_multiplier: float, widths: list[int] | None = None) -> None:
        super().__init__()
        self.widths = resolve_widths(widths, (16, 32, 64), width_multiplier, "the three convolutions' widths")
        w1, w2, w3 = self.widths
        self.conv1 = nn.Conv2d(3, w1, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(w1)
        self.conv2 = nn.Conv2d(w1, w2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(w2)
        self.conv3 = nn.Conv2d(w2, w3, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(w3)
        self.fc = nn.Linear(w3, num_classes)
        init_openlth(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        x = F.relu(self.bn3(self.conv3(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


@register_model("quicknet")
def quicknet(num_classes: int, width_multiplier: float = 1.0, widths: list[int] | None = None) -> nn.Module:
    return QuickNet(num_classes, width_multiplier, widths)
