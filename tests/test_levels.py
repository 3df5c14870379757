"""The level plan of iterative magnitude pruning."""

from __future__ import annotations

import pytest

from pai_bench.levels import exponential_levels

PAPER = [0.36, 0.5904, 0.738, 0.8322, 0.893, 0.9312, 0.956, 0.9717, 0.982]


def test_the_paper_sparsities_are_levels_two_to_eighteen_of_twenty_percent():
    plans = exponential_levels(PAPER, 0.2)
    assert [len(plans[s]) for s in PAPER] == [2, 4, 6, 8, 10, 12, 14, 16, 18]
    path = plans[0.982]
    for sparsity in PAPER:  # each lands exactly on its sparsity, on the one path
        assert path[len(plans[sparsity]) - 1] == pytest.approx(1 - sparsity, abs=1e-12)
        assert plans[sparsity] == path[: len(plans[sparsity])]
    # Between the grid's sparsities, full levels of 20 %: 0.8^9 from the 0.8^8 the paper rounds to 0.1678.
    assert path[8] == pytest.approx(0.1678 * 0.8)


def test_a_sparsity_between_levels_ends_with_a_partial_level():
    plans = exponential_levels([0.9, 0.5], 0.2)
    assert plans[0.5] == [0.8, 0.64, 0.512, 0.5]  # 0.8^3 then 2.3 % of the kept: a partial level
    assert plans[0.9][:4] == plans[0.5]
    assert plans[0.9][4:] == pytest.approx([0.4, 0.32, 0.256, 0.2048, 0.16384, 0.131072, 0.1048576, 0.1])


def test_larger_sparsities_never_change_the_levels_to_smaller_ones():
    assert exponential_levels([0.5], 0.2)[0.5] == exponential_levels([0.5, 0.99], 0.2)[0.5]
    assert exponential_levels([0.0, 0.36], 0.5) == {0.0: [], 0.36: [0.64]}


def test_a_fraction_outside_zero_one_is_refused():
    with pytest.raises(ValueError, match="fraction"):
        exponential_levels([0.5], 1.0)
