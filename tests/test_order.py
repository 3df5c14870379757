"""The k-th largest and smallest entries, against a full sort."""

from __future__ import annotations

import pytest
import torch

from pai_bench.order import kth_largest, kth_smallest


@pytest.mark.parametrize("n", [1, 2, 7, 1000])
def test_every_k_agrees_with_a_sort_ties_and_infinities_included(n):
    generator = torch.Generator().manual_seed(n)
    values = torch.randint(0, max(2, n // 3), (n,), generator=generator).double()  # many ties
    values[: n // 10] = -torch.inf
    descending = values.sort(descending=True).values
    for k in range(1, n + 1):
        assert kth_largest(values, k) == descending[k - 1]
        assert kth_smallest(values, k) == descending[n - k]


def test_a_k_outside_the_values_is_refused():
    with pytest.raises(ValueError, match="k=0 is outside 1..3"):
        kth_largest(torch.ones(3), 0)
    with pytest.raises(ValueError, match="k=4 is outside 1..3"):
        kth_largest(torch.ones(3), 4)
