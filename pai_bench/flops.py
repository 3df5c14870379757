"""Compute and size of dense, masked and small models: MACs, parameters, sparsity, compression.

Counts are multiply-accumulates (MACs), the unit the pruning literature reports (often under
the name "FLOPs"): ResNet-20 on CIFAR is 40.8 M MACs, the CIFAR VGG-16 313 M. PyTorch's
`FlopCounterMode` counts two FLOPs per MAC; pai-bench halves it. As in the literature, only
convolutions and matrix products count: batch norm, activations, pooling, additions and bias
additions are left out.

A masked convolution or linear layer counts only its kept weights: its MACs times its density.
That is exact, not an estimate, because each weight of a convolution is used once per output
position (and each weight of a linear layer once per input row), so a layer's MACs are its
weight count times a number that masking does not change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from pai_bench.masks import PRUNABLE_MODULES, prunable_parameters

#: FlopCounterMode counts a multiply-accumulate as two FLOPs.
FLOPS_PER_MAC = 2


@dataclass(frozen=True)
class ModelSummary:
    """One model's figures, with `masks` applied when given.

    `params` counts every parameter (BatchNorm and biases included); `params_kept` removes the
    masked-out weights from it. `prunable` counts conv and linear weights; `prunable_kept` those
    the masks keep.
    """

    macs: int
    params: int
    params_kept: int
    prunable: int
    prunable_kept: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def layer_macs(model: nn.Module, input_shape: Sequence[int]) -> tuple[dict[str, int], int]:
    """(MACs of each conv and linear module by name, MACs of the whole model) for one example.

    `input_shape` is one example's shape, (C, H, W) for images. The model runs once, in eval
    mode, without gradients, on its own device (the meta device works too); its modes are
    restored afterwards and eval mode leaves BatchNorm statistics alone, so the model is
    unchanged. A module called twice counts twice.
    """
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    example = torch.zeros(1, *input_shape, device=device, dtype=dtype)
    modes = [(module, module.training) for module in model.modules()]
    counter = FlopCounterMode(display=False)
    per_layer: dict[str, int] = {}
    handles = []
    # A layer's share is the counter's growth while the layer runs: this holds whatever names
    # FlopCounterMode's own module tracking gives (they changed across torch versions).
    for name, module in model.named_modules():
        if isinstance(module, PRUNABLE_MODULES):
            per_layer[name] = 0
            handles.extend(_track(module, name, counter, per_layer))
    try:
        model.eval()
        with torch.no_grad(), counter:
            model(example)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes:
            module.training = training
    return {name: flops // FLOPS_PER_MAC for name, flops in per_layer.items()}, counter.get_total_flops() // FLOPS_PER_MAC


def _track(module: nn.Module, name: str, counter: FlopCounterMode, per_layer: dict[str, int]) -> list:
    started: list[int] = []

    def before(*_: object) -> None:
        started.append(counter.get_total_flops())

    def after(*_: object) -> None:
        per_layer[name] += counter.get_total_flops() - started.pop()

    return [module.register_forward_pre_hook(before), module.register_forward_hook(after)]


def count_macs(model: nn.Module, input_shape: Sequence[int], masks: Mapping[str, torch.Tensor] | None = None) -> int:
    """Multiply-accumulates of one forward pass of one example of shape `input_shape` (C, H, W).

    With `masks` ({parameter name: bool tensor, True = kept}, as `pai_bench.prune` returns), a
    masked conv or linear layer counts its MACs times its density; everything else counts in full.
    """
    per_layer, total = layer_macs(model, input_shape)
    if not masks:
        return total
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        module_name, _, attribute = name.rpartition(".")
        if attribute != "weight" or module_name not in per_layer:
            continue
        size = params[name].numel()
        kept = int(mask.sum())
        macs = per_layer[module_name]
        # Integer and exact: a layer's MACs are a whole multiple of its weight count.
        total -= macs - (macs * kept + size // 2) // size
    return total


def model_summary(model: nn.Module, input_shape: Sequence[int], masks: Mapping[str, torch.Tensor] | None = None) -> ModelSummary:
    """MACs and parameter counts of `model`, with `masks` applied when given."""
    masks = masks or {}
    params = sum(p.numel() for p in model.parameters())
    prunable = sum(p.numel() for p in prunable_parameters(model).values())
    removed = sum(mask.numel() - int(mask.sum()) for mask in masks.values())
    return ModelSummary(
        macs=count_macs(model, input_shape, masks),
        params=params,
        params_kept=params - removed,
        prunable=prunable,
        prunable_kept=prunable - removed,
    )


def trial_figures(
    dense: nn.Module,
    model: nn.Module,
    masks: Mapping[str, torch.Tensor],
    input_shape: Sequence[int],
) -> dict[str, float | int | None]:
    """The compute and size figures of a trial, the pruned (or small) `model` against `dense`.

    - `macs_dense`, `macs`: MACs of one example through the unpruned and the trained model.
    - `speedup`: macs_dense / macs, the theoretical speed-up (real kernels rarely reach it).
    - `sparsity_prunable`: 1 - kept / N over the N conv and linear weights of the dense model;
      for a small dense model, kept is its own conv and linear weight count.
    - `compression`: every parameter of the dense model (BatchNorm and biases included) over
      the parameters the trained model keeps (its parameters minus masked-out weights).
    - `params_dense`, `params`, `prunable_dense`, `prunable`: the counts behind those ratios.
    """
    full = model_summary(dense, input_shape)
    kept = model_summary(model, input_shape, masks)
    return {
        "macs_dense": full.macs,
        "macs": kept.macs,
        "speedup": full.macs / kept.macs if kept.macs else None,
        "sparsity_prunable": 1.0 - kept.prunable_kept / full.prunable if full.prunable else 0.0,
        "compression": full.params / kept.params_kept if kept.params_kept else None,
        "params_dense": full.params,
        "params": kept.params_kept,
        "prunable_dense": full.prunable,
        "prunable": kept.prunable_kept,
    }
