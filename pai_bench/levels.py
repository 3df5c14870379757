"""The levels of iterative magnitude pruning: which densities a trajectory passes through.

Each level removes `fraction` of the weights still kept, so the density after level L is
(1 - fraction)^L (0.8^L with the usual 20 %). A suite's grid names sparsities that this
sequence rarely hits exactly (the paper sparsities are rounded: 89.30 % for 1 - 0.8^10 =
89.26 %), and every method must keep exactly round((1 - s) * N) weights. So the levels
towards each sparsity of the grid, in increasing order, are full levels from the density the
trajectory stands at, and the last of them lands exactly on the sparsity: a partial level
where a full one would overshoot, or a slightly larger or smaller one where the sparsity is
within `SNAP` of a full level (then no sliver of a level is trained for a rounding).

The levels to a sparsity depend on the grid's smaller sparsities (the trajectory passes
through them exactly), never on its larger ones: extending a grid to sparser masks keeps the
records already made.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

#: A sparsity within this share of a level of a full level lands on that level.
SNAP = 0.05
#: Digits a level's density keeps, so that plans compare and hash the same on every machine.
DIGITS = 12


def exponential_levels(sparsities: Sequence[float], fraction: float) -> dict[float, list[float]]:
    """For each sparsity, the densities after levels 1, 2, ... up to the one that reaches it
    (an empty list for sparsity 0: level 0, the dense network trained)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"a level prunes a fraction in (0, 1) of the kept weights, got {fraction}")
    step = math.log1p(-fraction)
    plans: dict[float, list[float]] = {}
    path: list[float] = []
    current = 1.0
    for sparsity in sorted({float(s) for s in sparsities}):
        target = 1.0 - sparsity
        if sparsity > 0.0:
            steps = math.log(target / current) / step
            nearest = round(steps)
            full = nearest - 1 if abs(steps - nearest) < SNAP else math.floor(steps)
            path += [round(current * (1.0 - fraction) ** (level + 1), DIGITS) for level in range(max(0, full))]
            path.append(round(target, DIGITS))
            current = target
        plans[sparsity] = list(path)
    return plans
