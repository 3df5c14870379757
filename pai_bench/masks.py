"""Which weights are prunable, and how masks stay in force.

A mask is a bool tensor per prunable parameter (True = kept). Training keeps masked weights at
exactly zero by masking their gradients (so SGD's momentum buffers and weight decay never move
them) and re-zeroing after each optimizer step as a guard against optimizers that would.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

Masks = dict[str, torch.Tensor]

PRUNABLE_MODULES = (nn.modules.conv._ConvNd, nn.Linear)


def prunable_parameters(model: nn.Module, exclude: Iterable[str] = ()) -> dict[str, nn.Parameter]:
    """Conv and linear weights, in module order; biases and normalisation layers never.

    `exclude` holds glob patterns on parameter names (e.g. `fc.weight`) kept dense.
    """
    patterns = list(exclude)
    found: dict[str, nn.Parameter] = {}
    for module_name, module in model.named_modules():
        if isinstance(module, PRUNABLE_MODULES):
            name = f"{module_name}.weight" if module_name else "weight"
            if not any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
                found[name] = module.weight
    return found


def full_masks(params: Mapping[str, torch.Tensor]) -> Masks:
    return {name: torch.ones_like(p, dtype=torch.bool) for name, p in params.items()}


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Zero the masked weights of `model` in place."""
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        params[name].mul_(mask.to(params[name].device, params[name].dtype))


class MaskEnforcer:
    """Keeps masked weights at exactly zero through training.

    Gradient hooks zero the gradients of masked weights, so momentum and weight decay see zeros;
    `after_step` re-zeroes the weights so an optimizer that moves zero-gradient weights anyway
    cannot revive them.
    """

    def __init__(self, model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
        params = dict(model.named_parameters())
        self._pairs = []
        self._handles = []
        for name, mask in masks.items():
            param = params[name]
            float_mask = mask.to(param.device, param.dtype)
            self._pairs.append((param, float_mask))
            self._handles.append(param.register_hook(lambda grad, m=float_mask: grad * m))
        self.after_step()

    @torch.no_grad()
    def after_step(self) -> None:
        for param, mask in self._pairs:
            param.mul_(mask)

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


@dataclass(frozen=True)
class LayerStat:
    """One prunable layer after pruning. `alive_outputs` counts output units that kept any
    incoming weight: a layer can keep weights and still have lost most of its width."""

    name: str
    kept: int
    total: int
    density: float
    outputs: int
    alive_outputs: int

    @property
    def collapsed(self) -> bool:
        return self.kept == 0

    def as_dict(self) -> dict:
        return {**asdict(self), "collapsed": self.collapsed}


def layer_stats(masks: Mapping[str, torch.Tensor]) -> list[LayerStat]:
    stats = []
    for name, mask in masks.items():
        kept = int(mask.sum())
        total = mask.numel()
        per_output = mask.reshape(mask.shape[0], -1).any(dim=1)
        stats.append(
            LayerStat(
                name=name,
                kept=kept,
                total=total,
                density=kept / total,
                outputs=mask.shape[0],
                alive_outputs=int(per_output.sum()),
            )
        )
    return stats


def architecture_stats(dense: nn.Module, small: nn.Module) -> list[LayerStat]:
    """Per-layer figures of a small model that replaces `dense`, in `layer_stats`' terms.

    When the two share layer names (the same family, narrowed), each dense layer's `kept` is the
    small layer's weight count, `total` the dense layer's, and `alive_outputs` the small layer's
    output units against the dense `outputs`. Otherwise one line, `(model)`, sums the whole net.
    """
    before, after = prunable_parameters(dense), prunable_parameters(small)
    if before.keys() != after.keys():
        kept, total = sum(p.numel() for p in after.values()), sum(p.numel() for p in before.values())
        outputs = sum(p.shape[0] for p in before.values())
        alive = sum(p.shape[0] for p in after.values())
        return [LayerStat("(model)", kept, total, kept / total if total else 1.0, outputs, alive)]
    return [
        LayerStat(
            name=name,
            kept=after[name].numel(),
            total=weight.numel(),
            density=after[name].numel() / weight.numel(),
            outputs=weight.shape[0],
            alive_outputs=after[name].shape[0],
        )
        for name, weight in before.items()
    ]


def export_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> nn.Module:
    """Put `masks` on `model` in `torch.nn.utils.prune` form (`weight_orig`, `weight_mask`).

    Modifies and returns `model`, so tools that expect PyTorch's pruning reparametrisation
    (and `prune.remove`) work on a pai-bench result.
    """
    modules = dict(model.named_modules())
    for name, mask in masks.items():
        module_name, _, attribute = name.rpartition(".")
        module = modules[module_name]
        torch_prune.custom_from_mask(module, attribute, mask.to(getattr(module, attribute).device))
    return model


def kept_count(total: int, sparsity: float) -> int:
    """round((1 - s) * N): the exact number of weights every method keeps (the driver's
    `pai_bench.pruning`, and a method that sizes a small model to it, `methods/scratch.py`)."""
    return int(round((1.0 - sparsity) * total))
