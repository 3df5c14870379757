"""Order statistics for thresholds: the k-th largest of many scores, as fast as torch allows.

`torch.kthvalue` selects in about the same time whatever k is; `torch.topk` of the smaller
side is several times faster when few weights are kept or few pruned (270,896 scores on one
CPU thread: 3.3 ms against 1.9 ms at 1 % kept, 0.5 ms at 0.1 %), which is every round of an
extreme-sparsity prune. Both return the exact value, so the choice never changes a mask.
"""

from __future__ import annotations

import torch


def kth_largest(values: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th largest entry of the 1-D `values` (1 <= k <= len), a 0-d tensor."""
    n = values.numel()
    if not 1 <= k <= n:
        raise ValueError(f"k={k} is outside 1..{n}")
    if k <= n - k + 1:
        return torch.topk(values, k, sorted=False).values.min()
    return torch.topk(values, n - k + 1, largest=False, sorted=False).values.max()


def kth_smallest(values: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th smallest entry of the 1-D `values` (1 <= k <= len), a 0-d tensor."""
    return kth_largest(values, values.numel() - k + 1)
