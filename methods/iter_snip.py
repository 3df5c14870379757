"""Iterative SNIP (de Jorge et al., "Progressive Skeletonization", ICLR 2021): SNIP rescored
on the masked network each round.

As naver/force's `prune_method=1` computes it: the SNIP score |θ ⊙ ∂L/∂θ| recomputed on the
masked network each round, on the driver's exponential schedule density_r = d^((r+1)/rounds)
(FORCE's `mode='exp'`). Pruned weights stay pruned (the driver never brings one back;
FORCE's Iter SNIP blocks their gradients). FORCE's code feeds raw logits to `nll_loss`; this
uses real cross-entropy.
"""

from __future__ import annotations

from dataclasses import dataclass

from pai_bench.method import ScoreMethod, check_choice
from pai_bench.methods.snip import BN_MODES, snip_scores
from pai_bench.plugins import register_method


@dataclass
class IterSnipOptions:
    # FORCE's train_cifar_tiny_imagenet.py defaults to --num_steps 10; its README runs CIFAR,
    # Tiny-ImageNet and ImageNet with --num_steps 60. 100 matches the other iterative methods
    # here (SynFlow, PX), so all of them prune on the same schedule.
    rounds: int = 100
    # FORCE scores the freshly built network, which is in train mode (BatchNorm on batch
    # statistics); `eval` scores like one-shot SNIP's official code.
    bn_mode: str = "train"  # train | eval

    def __post_init__(self) -> None:
        check_choice("iter-snip.bn_mode", self.bn_mode, BN_MODES)


@register_method("iter-snip")
class IterSnip(ScoreMethod):
    """SNIP applied in many small steps, rescoring the pruned network each time."""

    Options = IterSnipOptions

    def score(self, model, masks, batches, generator):
        return snip_scores(model, masks, batches, self.options.bn_mode)
