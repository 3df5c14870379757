"""Effective masks: the kept weights that lie on a path of kept weights from input to output.

Nominal sparsity overstates what a mask keeps: at high sparsity a kept weight can feed a unit
that nothing feeds, or a unit that feeds nothing (Vysogorets & Kempe, "Connectivity Matters:
Neural Network Pruning Through the Lens of Effective Sparsity", JMLR 2023). Such a weight
cannot change the network's output, so it is not part of the sub-network the mask chose.

How it is computed, for any model, through the model's own forward: on a copy, every kept
weight is 1 and every pruned one 0 (weights outside `masks`, e.g. a layer kept dense, are all
1), biases are 0 (a bias does not make a unit an input), normalisation is the identity and
max-pooling an average (a pooled unit passes on any of its inputs, not only the one a tie
picks). An all-ones input then reaches exactly the units on a path from the input. Every
module's output is clamped to 0/1 on the way forward, and every gradient to 0/1 on the way
back, so values stay small integers on any depth (the SynFlow product of |θ| in float64, the
other way to compute this, underflows or overflows on deep nets at extreme sparsity). The
gradient of the summed output with respect to a weight is then positive exactly when the
weight's input unit is reached from the input and its output unit reaches the output: the
weight is effective. Residual additions merge paths and identity shortcuts carry them, as the
forward does.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from pai_bench.masks import Masks

#: Functional normalisations that become the identity: they rescale a unit, never cut it.
_NORMALISATIONS = {"batch_norm", "instance_norm", "layer_norm", "group_norm", "local_response_norm"}
_MAX_POOLS = {"max_pool1d": F.avg_pool1d, "max_pool2d": F.avg_pool2d, "max_pool3d": F.avg_pool3d}
_ADAPTIVE_MAX_POOLS = {
    "adaptive_max_pool1d": F.adaptive_avg_pool1d,
    "adaptive_max_pool2d": F.adaptive_avg_pool2d,
    "adaptive_max_pool3d": F.adaptive_avg_pool3d,
}


class _Connectivity(torch.autograd.Function):
    """0/1 on the way forward (reached or not) and back (reaches the output or not)."""

    @staticmethod
    def forward(ctx: Any, values: torch.Tensor) -> torch.Tensor:
        return (values > 0).to(values.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return (grad > 0).to(grad.dtype)


class _PathMode(TorchFunctionMode):
    """Normalisation as the identity, max-pooling as average pooling, wherever the model calls
    them (as modules or as functions)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in _NORMALISATIONS:
            return args[0] if args else kwargs["input"]
        if name in _MAX_POOLS and not _arg(args, kwargs, 6, "return_indices", False) and _arg(args, kwargs, 4, "dilation", 1) in (1, (1,), (1, 1), (1, 1, 1)):
            kernel = _arg(args, kwargs, 1, "kernel_size", None)
            return _MAX_POOLS[name](
                _arg(args, kwargs, 0, "input", None),
                kernel,
                _arg(args, kwargs, 2, "stride", None) or kernel,
                _arg(args, kwargs, 3, "padding", 0),
                ceil_mode=_arg(args, kwargs, 5, "ceil_mode", False),
            )
        if name in _ADAPTIVE_MAX_POOLS and not _arg(args, kwargs, 2, "return_indices", False):
            return _ADAPTIVE_MAX_POOLS[name](_arg(args, kwargs, 0, "input", None), _arg(args, kwargs, 1, "output_size", None))
        return func(*args, **kwargs)


def _arg(args: Sequence[Any], kwargs: Mapping[str, Any], index: int, name: str, default: Any) -> Any:
    return args[index] if len(args) > index else kwargs.get(name, default)


def _clamp_output(module: nn.Module, inputs: Any, output: Any) -> Any:
    if isinstance(output, torch.Tensor) and output.is_floating_point():
        return _Connectivity.apply(output)
    return None


def effective_masks(model: nn.Module, masks: Mapping[str, torch.Tensor], input_shape: Sequence[int]) -> Masks:
    """The effective part of each mask of `masks` (bool, same names and shapes): the kept
    weights on at least one path of kept weights from the input to the output of `model`.

    `input_shape` is one example's shape, (C, H, W) for images. `model` is not modified.
    """
    working = copy.deepcopy(model).float().eval()
    params = dict(working.named_parameters())
    unknown = sorted(set(masks) - set(params))
    if unknown:
        raise ValueError(f"masks name parameters the model does not have: {unknown[:3]}")
    with torch.no_grad():
        for name, param in params.items():
            param.requires_grad_(name in masks)
            if name in masks:
                param.copy_(masks[name].to(param.device, param.dtype))
            elif name.rsplit(".", 1)[-1] == "bias":
                param.zero_()
            else:
                param.fill_(1.0)
    handles = [module.register_forward_hook(_clamp_output) for module in working.modules()]
    device = next(iter(params.values())).device if params else torch.device("cpu")
    try:
        with torch.enable_grad(), _PathMode():
            output = working(torch.ones(1, *input_shape, device=device))
            weights = [params[name] for name in masks]
            grads = torch.autograd.grad(output.sum(), weights, allow_unused=True)
    finally:
        for handle in handles:
            handle.remove()
    return {
        name: masks[name].to(torch.bool) & (grad > 0).to(masks[name].device) if grad is not None else torch.zeros_like(masks[name], dtype=torch.bool)
        for name, grad in zip(masks, grads)
    }
