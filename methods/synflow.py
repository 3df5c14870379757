"""SynFlow (Tanaka et al., NeurIPS 2020): iterative synaptic-flow conservation, data-free.

The copy is linearised as the authors' `Pruners/pruners.py` does: every entry of its state
dict, parameters and buffers alike, is replaced by its absolute value, and the network runs in
eval mode (their `prune_loop` calls `model.eval()`). A BatchNorm therefore computes
(x - |running_mean|) / sqrt(|running_var| + eps) * |weight| + |bias| with its running
statistics (at init 0 and 1), never batch statistics. ReLUs stay: with non-negative weights
and input they pass everything, unless a large |running_mean| makes a pre-activation
negative. The input is a batch of one all-ones example of the pruning data's shape,
R = sum(f(1)), and S = |θ ⊙ ∂R/∂θ|.

The authors compute in float32, where products over many layers can leave the range of the
type and tie (their issue #12: with `score <= threshold` ties prune past the target). By
default (`dtype=auto`, `pai_bench.precision`) a round scores in float32 and again in float64
when float32 cannot decide it, so no kept weight depends on an underflow: at 99.99 % on
ResNet-20 the last round's scores of the surviving weights are all positive and the 27 kept
lie strictly above the rest (tested). `dtype=float64` scores every round in float64 (1.3 times
the time on a CPU), `float32` every round in the authors' precision (the driver's seeded
tie-break still keeps the exact count). Over 100 rounds the three give masks as different as
rounding makes them (auto against float64 on ResNet-20: Jaccard 0.66 at 99 %).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pai_bench.errors import UserError
from pai_bench.method import SCORE_DTYPES, ScoreMethod, check_choice
from pai_bench.plugins import register_method
from pai_bench.precision import auto_precision


@dataclass
class SynFlowOptions:
    rounds: int = 100
    dtype: str = "auto"  # auto (float32, float64 where float32 cannot decide) | float64 | float32 (the authors')

    def __post_init__(self) -> None:
        check_choice("synflow.dtype", self.dtype, ("auto", *SCORE_DTYPES))


@register_method("synflow")
class SynFlow(ScoreMethod):
    """S = |θ ⊙ ∂R/∂θ|, R = sum(f(1)) on the absolute-valued network, eval mode."""

    Options = SynFlowOptions
    reuses_copy = True

    def score(self, model, masks, batches, generator):
        if not batches:
            raise UserError("synflow needs one pruning batch for the input shape")
        example = batches[0][0]
        if self.options.dtype == "auto":
            return auto_precision(self, masks, lambda dtype: synaptic_flow(model, masks, example, dtype))
        return synaptic_flow(model, masks, example, SCORE_DTYPES[self.options.dtype])


def synaptic_flow(model: nn.Module, masks, example: torch.Tensor, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """|θ ⊙ ∂R/∂θ| on `model` (changed in place: linearised, eval mode, in `dtype`)."""
    if any(param.dtype != dtype for param in model.parameters()):  # a reused copy is converted once
        model.to(dtype)
    model.eval()
    with torch.no_grad():
        seen: set[int] = set()
        for module in model.modules():
            for tensor in [*module._parameters.values(), *module._buffers.values()]:
                if tensor is not None and id(tensor) not in seen:  # a tensor shared under two names: once
                    seen.add(id(tensor))
                    tensor.abs_()
    params = dict(model.named_parameters())
    weights = [params[name].requires_grad_(True) for name in masks]
    ones = torch.ones((1, *example.shape[1:]), dtype=dtype, device=example.device)
    with torch.enable_grad():
        flow = model(ones).sum()
        grads = torch.autograd.grad(flow, weights, allow_unused=True)
    return {
        name: (weight.detach() * grad).abs() if grad is not None else torch.zeros_like(weight.detach())
        for name, weight, grad in zip(masks, weights, grads)
    }
