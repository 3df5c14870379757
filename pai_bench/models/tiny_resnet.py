"""ResNet-18/34 with a CIFAR-style stem, for Tiny-ImageNet's 64 px images.

Follows Synaptic-Flow's `Models/tinyimagenet_resnet.py`: a 3x3 stride-1 stem with no max-pool
(an ImageNet stem would shrink 64 px to 2 px before the last stage), and its parameter names
(`conv1.0`, `conv2_x.0.residual_function.0`, ...). Unlike the CIFAR models, the classifier
keeps PyTorch's default init, as the reference does.
"""

from __future__ import annotations

import torch
from torch import nn

from pai_bench.models import register_model, resolve_widths


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.residual_function = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut: nn.Module
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.residual_function(x) + self.shortcut(x))


class TinyResNet(nn.Module):
    """`widths`, when given, are the four stages' widths (default 64, 128, 256, 512)."""

    def __init__(
        self, blocks: list[int], num_classes: int, width_multiplier: float, widths: list[int] | None = None
    ) -> None:
        super().__init__()
        widths = resolve_widths(widths, (64, 128, 256, 512), width_multiplier, "the four stage widths")
        self.widths = widths
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        channels = widths[0]
        stages = []
        for width, num_blocks, stride in zip(widths, blocks, (1, 2, 2, 2)):
            strides = [stride] + [1] * (num_blocks - 1)
            stage = []
            for block_stride in strides:
                stage.append(BasicBlock(channels, width, block_stride))
                channels = width
            stages.append(nn.Sequential(*stage))
        self.conv2_x, self.conv3_x, self.conv4_x, self.conv5_x = stages
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.conv5_x(self.conv4_x(self.conv3_x(self.conv2_x(x))))
        return self.fc(self.avg_pool(x).flatten(1))


@register_model("resnet18")
def resnet18(num_classes: int, width_multiplier: float = 1.0, widths: list[int] | None = None) -> nn.Module:
    return TinyResNet([2, 2, 2, 2], num_classes, width_multiplier, widths)


@register_model("resnet34")
def resnet34(num_classes: int, width_multiplier: float = 1.0, widths: list[int] | None = None) -> nn.Module:
    return TinyResNet([3, 4, 6, 3], num_classes, width_multiplier, widths)
