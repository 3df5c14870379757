"""The CIFAR ResNets of He et al. (2016) as OpenLTH and Synaptic-Flow build them.

Parameter names follow Synaptic-Flow's `Models/lottery_resnet.py`, so per-layer results line
up with the papers' and their checkpoints load (see `load_reference_state_dict`). Downsampling
shortcuts are 1x1 convolutions with batch norm (the paper's option B), which puts ResNet-20 at
272,474 parameters against the zero-padding version's 269,722 (both "0.27 M").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pai_bench.errors import UserError
from pai_bench.models import register_model, resolve_widths


class Block(nn.Module):
    """Two 3x3 convolutions around a residual connection."""

    def __init__(self, f_in: int, f_out: int, downsample: bool) -> None:
        super().__init__()
        stride = 2 if downsample else 1
        self.conv1 = nn.Conv2d(f_in, f_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(f_out)
        self.conv2 = nn.Conv2d(f_out, f_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(f_out)
        self.shortcut: nn.Module
        if downsample or f_in != f_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(f_in, f_out, 1, stride=stride, bias=False), nn.BatchNorm2d(f_out)
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """A stem convolution, three stages of blocks at widths W, 2W, 4W, and a linear head.

    `widths` holds the stage widths as built, for methods that build a narrower sibling.
    """

    def __init__(self, plan: list[tuple[int, int]], num_classes: int) -> None:
        super().__init__()
        filters = plan[0][0]
        self.conv = nn.Conv2d(3, filters, 3, stride=1, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(filters)
        blocks = []
        for stage, (stage_filters, num_blocks) in enumerate(plan):
            for index in range(num_blocks):
                blocks.append(Block(filters, stage_filters, downsample=stage > 0 and index == 0))
                filters = stage_filters
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(filters, num_classes)
        self.widths = [stage_filters for stage_filters, _ in plan]
        init_openlth(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.conv(x)))
        out = self.blocks(out)
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)


def init_openlth(model: nn.Module) -> None:
    """OpenLTH's init, shared with the VGGs: pruning scores at init depend on it."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


#: The first stage's width; the others are twice and four times it.
DEFAULT_WIDTH = 16


def _build(
    depth: int, num_classes: int, width: int, width_multiplier: float, widths: list[int] | None
) -> CifarResNet:
    """`widths`, when given, are the three stages' widths (default W, 2W, 4W with W = `width`)."""
    if width < 1:
        raise UserError(f"width must be at least 1, got {width}")
    if widths is not None and width != DEFAULT_WIDTH:
        raise UserError(f"pass widths or width, not both (got width={width})")
    stage_widths = resolve_widths(widths, (width, 2 * width, 4 * width), width_multiplier, "the three stage widths")
    per_stage = (depth - 2) // 6
    return CifarResNet([(w, per_stage) for w in stage_widths], num_classes)


@register_model("resnet20")
def resnet20(
    num_classes: int, width: int = DEFAULT_WIDTH, width_multiplier: float = 1.0, widths: list[int] | None = None
) -> nn.Module:
    return _build(20, num_classes, width, width_multiplier, widths)


@register_model("resnet32")
def resnet32(
    num_classes: int, width: int = DEFAULT_WIDTH, width_multiplier: float = 1.0, widths: list[int] | None = None
) -> nn.Module:
    return _build(32, num_classes, width, width_multiplier, widths)


@register_model("resnet44")
def resnet44(
    num_classes: int, width: int = DEFAULT_WIDTH, width_multiplier: float = 1.0, widths: list[int] | None = None
) -> nn.Module:
    return _build(44, num_classes, width, width_multiplier, widths)


@register_model("resnet56")
def resnet56(
    num_classes: int, width: int = DEFAULT_WIDTH, width_multiplier: float = 1.0, widths: list[int] | None = None
) -> nn.Module:
    return _build(56, num_classes, width, width_multiplier, widths)


@register_model("resnet110")
def resnet110(
    num_classes: int, width: int = DEFAULT_WIDTH, width_multiplier: float = 1.0, widths: list[int] | None = None
) -> nn.Module:
    return _build(110, num_classes, width, width_multiplier, widths)
