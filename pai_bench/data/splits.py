"""Deterministic subsets of a split: balanced per class (e.g. the batch a pruning method scores
on) or proportional (`data.subset=N`, to cut a dataset down from the command line).

Both rank each class's examples by one draw of random keys from a generator seeded with `seed`,
so the same labels and seed give the same indices whichever method or run asks.
"""

from __future__ import annotations

import torch

from pai_bench.errors import UserError


def class_balanced_indices(labels: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """`per_class` random indices of every class `0..labels.max()`, grouped by class.

    Within a class the indices are in draw order, so a smaller `per_class` with the same seed
    gives a prefix of each class's draw.
    """
    order, counts = _ranked(labels, seed)
    short = (counts < per_class).nonzero().flatten()
    if len(short):
        found = ", ".join(f"class {int(c)} has {int(counts[c])}" for c in short[:5])
        more = f" and {len(short) - 5} more" if len(short) > 5 else ""
        raise UserError(f"need {per_class} examples of every class but {found}{more}")
    starts = counts.cumsum(0) - counts
    positions = starts[:, None] + torch.arange(per_class, device=labels.device)
    return order[positions.flatten()]


def stratified_subset(labels: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """`size` random indices with the classes in their original proportions, ascending.

    Every present class gets one example and the rest is shared out by largest remainder
    (ties to the lower class) in proportion to each class's share of `size` above that one.
    When every share is at least one, this is plain largest-remainder rounding of the shares.
    """
    if size >= len(labels):
        return torch.arange(len(labels), device=labels.device)
    order, counts = _ranked(labels, seed)
    present = int((counts > 0).sum())
    if size < present:
        raise UserError(
            f"subset of {size} examples cannot hold all {present} classes; use a larger data.subset"
        )
    # Shares above one, scaled by len(labels) to stay in exact integer arithmetic.
    above_one = (counts * size - len(labels)).clamp_min(0)
    quota = (counts > 0).long() + _largest_remainder(above_one, size - present)
    starts = counts.cumsum(0) - counts
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=labels.device) - starts[labels[order]]
    return (rank < quota[labels]).nonzero().flatten()


def _largest_remainder(weights: torch.Tensor, total: int) -> torch.Tensor:
    """Integers summing to `total`, proportional to the integer `weights` (Hamilton's method)."""
    if total == 0:
        return torch.zeros_like(weights)
    scaled = weights * total
    quota, remainder = scaled // weights.sum(), scaled % weights.sum()
    extra = torch.argsort(remainder, descending=True, stable=True)[: total - int(quota.sum())]
    quota[extra] += 1
    return quota


def _ranked(labels: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All indices sorted by class, randomly within a class; and the count of every class."""
    if labels.dim() != 1 or len(labels) == 0:
        raise ValueError(f"labels must be a non-empty 1-D tensor, got shape {tuple(labels.shape)}")
    generator = torch.Generator().manual_seed(seed)
    keys = torch.rand(len(labels), generator=generator, dtype=torch.float64).to(labels.device)
    by_key = torch.argsort(keys)
    order = by_key[torch.argsort(labels[by_key], stable=True)]
    return order, torch.bincount(labels, minlength=int(labels.max()) + 1)
