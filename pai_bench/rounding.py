"""How much of a mask is rounding: the same method, weights and seed, recomputed in the other
precision and with the pruning examples in another order.

A criterion that ranks weights by something real gives the same mask either way; where the
ranking rests on score differences at the level of float round-off (ties broken by the last
bit, a signal that vanished in a deep product), the mask moves, and a method whose mask moves
with the precision or the summation order ranks by rounding, not by its criterion. Recorded as
the Jaccard index of each recomputed mask with the trial's mask (1: identical).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from pai_bench.maskbits import jaccard
from pai_bench.method import SCORE_DTYPES, Batch
from pai_bench.plugins import create_method
from pai_bench.pruning import prune

#: Added to the trial's seed for the permutation of the pruning split (fixed, so it repeats).
ORDER_SEED_OFFSET = 0x0DE5


def other_precision(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype == torch.float64 else torch.float64


def permuted(batches: Sequence[Batch], seed: int) -> list[Batch]:
    """The same examples in another order, cut into batches of the same sizes."""
    inputs = torch.cat([x for x, _ in batches])
    targets = torch.cat([y for _, y in batches])
    order = torch.randperm(len(inputs), generator=torch.Generator().manual_seed(ORDER_SEED_OFFSET + seed)).to(inputs.device)
    inputs, targets = inputs[order], targets[order]
    out, start = [], 0
    for x, _ in batches:
        out.append((inputs[start : start + len(x)], targets[start : start + len(x)]))
        start += len(x)
    return out


def rounding_agreement(
    model: nn.Module,
    method: str,
    options: Mapping[str, Any],
    sparsity: float,
    batches: Sequence[Batch],
    masks: Mapping[str, torch.Tensor],
    seed: int,
    exclude: Iterable[str] = (),
) -> dict[str, Any]:
    """The Jaccard index of `masks` (the method's mask of `model`) with the mask it gives in the
    other precision (`rounding_jaccard_dtype`) and with the pruning examples permuted
    (`rounding_jaccard_order`), and the precision it was compared with.

    A method that scores in a precision of its own (a `dtype` option: px, synflow) is rescored
    in the other value of that option, since converting the model would not reach its scores;
    any other method gets the model and the examples in the other precision. The
    recomputations' warnings are not the trial's: they are silenced.
    """
    options = dict(options)
    exclude = list(exclude)
    if "dtype" in options:
        other = other_precision(SCORE_DTYPES.get(options["dtype"], torch.float32))  # auto scores in float32 mostly
        other_model, other_batches = model, batches
        other_options = {**options, "dtype": str(other).removeprefix("torch.")}
    else:
        other = other_precision(next(model.parameters()).dtype)
        other_model, other_batches = copy.deepcopy(model).to(other), [(x.to(other), y) for x, y in batches]
        other_options = options
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        in_other = prune(other_model, create_method(method, other_options), sparsity, other_batches, seed=seed, exclude=exclude)
        reordered = prune(model, create_method(method, options), sparsity, permuted(batches, seed), seed=seed, exclude=exclude)
    return {
        "rounding_jaccard_dtype": jaccard(masks, in_other.masks),
        "rounding_jaccard_order": jaccard(masks, reordered.masks),
        "rounding_precision": str(other).removeprefix("torch."),
        "rounding_s": in_other.seconds + reordered.seconds,
    }
