"""Scoring in float32 where it decides a round, in float64 where it does not.

Products over many layers (SynFlow's path flows, PX's path kernel) can leave float32's range
at extreme sparsity: scores underflow to 0 and tie, and the driver's tie-break, not the
criterion, picks the mask. float64 removes that, but a float64 convolution costs a CPU about
1.6 (one example) to 3.8 (a batch of 100) times a float32 one, and most rounds do not need
it. A method's `dtype=auto` scores a round in float32 and keeps those scores when they decide
it: the weight at the round's threshold (the k-th highest score of the surviving weights, or
the k-th lowest under the invert ablation) has a finite, normal float32 score that no other
surviving weight ties. Weights beyond such a threshold are the ones float64 keeps too, up to
relative rounding (which, over a hundred rounds, moves masks as much as the thread count does;
the init page measures it). Otherwise the round is scored again in float64.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from pai_bench.method import ScoreMethod
from pai_bench.order import kth_largest, kth_smallest

Scores = dict[str, torch.Tensor]


def decides(scores: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor], keep: int, lowest: bool) -> bool:
    """Whether `scores` pick the `keep` surviving weights (`masks`) with the highest (or
    lowest) scores with no tie at the threshold, and a threshold represented to full precision."""
    flat = torch.cat([scores[name].reshape(-1) for name in masks])
    alive = flat[torch.cat([mask.reshape(-1) for mask in masks.values()]).to(flat.device)]
    if keep <= 0 or keep >= alive.numel():
        return True
    if torch.isnan(alive).any():
        return False
    if lowest:
        threshold = kth_smallest(alive, keep)
        chosen = int((alive <= threshold).sum())
    else:
        threshold = kth_largest(alive, keep)
        chosen = int((alive >= threshold).sum())
    normal = torch.finfo(alive.dtype).tiny <= float(threshold) < float("inf")
    return normal and chosen == keep


def auto_precision(method: ScoreMethod, masks: Mapping[str, torch.Tensor], compute: Callable[[torch.dtype], Scores]) -> Scores:
    """`compute(torch.float32)` when it decides the round `method` is in (the driver's
    `target_kept` and `inverted`), else `compute(torch.float64)`; the float64 rounds are
    counted in `method.extras["float64_rounds"]`."""
    scores = compute(torch.float32)
    if decides(scores, masks, method.target_kept, method.inverted):
        return scores
    method.extras["float64_rounds"] = method.extras.get("float64_rounds", 0) + 1
    return compute(torch.float64)
