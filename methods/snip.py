"""SNIP (Lee et al., ICLR 2019): connection sensitivity, S = |θ ⊙ ∂L/∂θ|.

L is the cross-entropy of each pruning batch (mean over the batch), summed over the batches,
so the gradient is accumulated over all of them (as the SynFlow repo does). |θ ⊙ ∂L/∂θ| is
|∂L/∂m| at m = 1, the paper's form. BatchNorm runs in eval mode, as in the official TF code
(namhoonlee/snip-public); `snip.bn_mode=train` scores with batch statistics instead. One shot
by default; `snip.rounds=N` runs it iteratively on the driver's exponential schedule (that is
iter-snip, registered separately with FORCE's defaults).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pai_bench.errors import UserError
from pai_bench.method import Batch, ScoreMethod, check_choice
from pai_bench.plugins import register_method

BN_MODES = ("eval", "train")


@dataclass
class SnipOptions:
    bn_mode: str = "eval"  # eval | train; eval: official TF code (snip-public)
    rounds: int = 1  # one shot, as in the paper

    def __post_init__(self) -> None:
        check_choice("snip.bn_mode", self.bn_mode, BN_MODES)


def snip_scores(
    model: nn.Module,
    masks: Mapping[str, torch.Tensor],
    batches: Sequence[Batch],
    bn_mode: str,
) -> dict[str, torch.Tensor]:
    """|θ ⊙ ∂L/∂θ| (float64) for every masked parameter of `model`, which it may change.

    L = Σ_batches cross_entropy(model(x), y). `bn_mode` "eval" or "train" is the mode the whole
    model runs in (it governs BatchNorm, and dropout should a model have any).
    """
    if not batches:
        raise UserError("snip scores need pruning data; got no batches")
    model.train(bn_mode == "train")
    all_params = dict(model.named_parameters())
    names = list(masks)
    params = [all_params[name] for name in names]
    grads = [torch.zeros_like(p) for p in params]
    for x, y in batches:
        loss = F.cross_entropy(model(x), y)
        for total, grad in zip(grads, torch.autograd.grad(loss, params, allow_unused=True)):
            if grad is not None:  # a weight the loss does not reach has gradient 0
                total += grad
    return {
        name: (p.detach().to(torch.float64) * g.to(torch.float64)).abs()
        for name, p, g in zip(names, params, grads)
    }


@register_method("snip")
class Snip(ScoreMethod):
    """Single-shot pruning by connection sensitivity."""

    Options = SnipOptions

    def score(self, model, masks, batches, generator):
        return snip_scores(model, masks, batches, self.options.bn_mode)
