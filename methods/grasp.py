"""GraSP (Wang et al., ICLR 2020): keep the weights that gradient flow depends on.

As the official code (alecwangcq/GraSP, pruner/GraSP.py) computes it, on the copy in train
mode, with L_T = cross_entropy(f(x) / T, y) on each pruning batch:
  g  = Σ_batches ∇θ L_T                            (no graph),
  Hg = Σ_batches ∇θ (g.detach() · ∇θ L_T)          (a Hessian-gradient product per batch),
and S = −θ ⊙ Hg. Removing weight q changes ‖g‖² by about −θ_q ∂‖g‖²/∂θ_q = 2 S_q, so GraSP
removes the largest S (whose removal raises the gradient norm) and keeps the smallest. The
driver keeps the highest scores, so this returns −S = θ ⊙ Hg. (The SynFlow repo kept the
largest S until August 2020.) θ, g and Hg range over the weights being pruned: the conv and
linear weights, as in the official code, less any the run excludes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pai_bench.errors import UserError
from pai_bench.method import Batch, ScoreMethod
from pai_bench.plugins import register_method


@dataclass
class GraspOptions:
    temperature: float = 200.0  # T = 200, the official code's default
    # The official code re-draws every linear layer of its scoring copy with xavier_normal
    # (reinit=True, never overridden): its own init of linear layers is N(0, 0.01), which
    # would give them near-zero scores. pai-bench's models already init linear layers like
    # their convs, so the default scores the network as built; True does what the official
    # code does (drawn from the method's generator), affecting the scores only.
    reinit_linear: bool = False

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise UserError(f"grasp.temperature must be positive, got {self.temperature}")


def gradient_and_hessian_gradient(
    model: nn.Module, params: Sequence[torch.Tensor], batches: Sequence[Batch], temperature: float
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(g, Hg) of Σ_batches cross_entropy(model(x) / T, y) with respect to `params`."""
    if not batches:
        raise UserError("grasp scores need pruning data; got no batches")
    g = [torch.zeros_like(p) for p in params]
    for x, y in batches:
        loss = F.cross_entropy(model(x) / temperature, y)
        for total, grad in zip(g, torch.autograd.grad(loss, params, allow_unused=True)):
            if grad is not None:
                total += grad
    hg = [torch.zeros_like(p) for p in params]
    for x, y in batches:
        loss = F.cross_entropy(model(x) / temperature, y)
        grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        z = sum((fixed * grad).sum() for fixed, grad in zip(g, grads) if grad is not None)
        if not isinstance(z, torch.Tensor) or not z.requires_grad:
            continue  # the gradient does not depend on the weights: this batch adds H g = 0
        for total, grad in zip(hg, torch.autograd.grad(z, params, allow_unused=True)):
            if grad is not None:
                total += grad
    return g, hg


@torch.no_grad()
def reinit_linear_layers(model: nn.Module, masks: Mapping[str, torch.Tensor], generator: torch.Generator) -> None:
    """xavier_normal on every nn.Linear weight, drawn from `generator`, masks re-applied."""
    for module_name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        weight = module.weight
        fan_out, fan_in = weight.shape
        std = math.sqrt(2.0 / (fan_in + fan_out))
        fresh = torch.randn(weight.shape, generator=generator, device=generator.device, dtype=weight.dtype)
        weight.copy_(fresh.to(weight.device) * std)
        mask = masks.get(f"{module_name}.weight" if module_name else "weight")
        if mask is not None:
            weight.mul_(mask.to(weight.device, weight.dtype))


@register_method("grasp")
class Grasp(ScoreMethod):
    """Gradient Signal Preservation: prune the weights whose removal least hurts gradient flow."""

    Options = GraspOptions

    def score(self, model, masks, batches, generator):
        if self.options.reinit_linear:
            reinit_linear_layers(model, masks, generator)
        model.train()
        all_params = dict(model.named_parameters())
        names = list(masks)
        params = [all_params[name] for name in names]
        _, hg = gradient_and_hessian_gradient(model, params, batches, self.options.temperature)
        return {
            name: p.detach().to(torch.float64) * h.to(torch.float64)
            for name, p, h in zip(names, params, hg)
        }
