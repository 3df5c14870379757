"""VGG with batch norm for 32x32 images, as OpenLTH and Synaptic-Flow build it.

Names follow Synaptic-Flow's `Models/lottery_vgg.py` (its `ConvBNModule`): `layers.<i>.conv`
and `layers.<i>.bn`, max-pools in between, and a single linear `fc` instead of the ImageNet
VGG's three-layer classifier. The convolutions keep their biases, as in the reference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pai_bench.models import register_model, resolve_widths
from pai_bench.models.cifar_resnet import init_openlth

# "M" is a 2x2 max-pool; numbers are the widths of 3x3 convolutions.
PLANS: dict[int, list[int | str]] = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    19: [
        64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
        512, 512, 512, 512, "M", 512, 512, 512, 512,
    ],
}  # fmt: skip


class ConvBN(nn.Module):
    def __init__(self, in_filters: int, out_filters: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_filters, out_filters, 3, padding=1)
        self.bn = nn.BatchNorm2d(out_filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class VGG(nn.Module):
    """Four max-pools take 32 px to 2 px; a 2x2 average pool leaves one vector for `fc`.

    `widths`, when given, replaces every convolution's width (one per number in the plan).
    """

    def __init__(
        self, plan: list[int | str], num_classes: int, width_multiplier: float, widths: list[int] | None = None
    ) -> None:
        super().__init__()
        base = [int(spec) for spec in plan if spec != "M"]
        self.widths = resolve_widths(widths, base, width_multiplier, "one per convolution")
        conv_widths = iter(self.widths)
        modules: list[nn.Module] = []
        filters = 3
        for spec in plan:
            if spec == "M":
                modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                width = next(conv_widths)
                modules.append(ConvBN(filters, width))
                filters = width
        self.layers = nn.Sequential(*modules)
        self.fc = nn.Linear(filters, num_classes)
        init_openlth(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(self.layers(x), 2)
        return self.fc(x.flatten(1))


@register_model("vgg11-bn")
def vgg11_bn(num_classes: int, width_multiplier: float = 1.0, widths: list[int] | None = None) -> nn.Module:
    return VGG(PLANS[11], num_classes, width_multiplier, widths)


@register_model("vgg13-bn")
def vgg13_bn(num_classes: int, width_multiplier: float = 1.0, widths: list[int] | None = None) -> nn.Module:
    return VGG(PLANS[13], num_classes, width_multiplier, widths)


@register_model("vgg16-bn")
def vgg16_bn(num_classes: int, width_multiplier: float = 1.0, widths: list[int] | None = None) -> nn.Module:
    return VGG(PLANS[16], num_classes, width_multiplier, widths)


@register_model("vgg19-bn")
def vgg19_bn(num_classes: int, width_multiplier: float = 1.0, widths: list[int] | None = None) -> nn.Module:
    return VGG(PLANS[19], num_classes, width_multiplier, widths)
