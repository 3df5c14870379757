"""Scratch-E and Scratch-B: small dense models trained from scratch (Liu et al., ICLR 2019,
"Rethinking the Value of Network Pruning").

Instead of masking the network, build a narrower dense member of its family whose conv and
linear weights number what a pruning method keeps, round((1 - s) * N), and train it from fresh
weights. Scratch-E trains it for the suite's epochs. Scratch-B gives it the dense model's
compute: epochs x MACs(dense) / MACs(small), learning-rate milestones scaled alike. (The
released weight-level Scratch-B code counted the FLOPs before loading the pruned model, so its
ratio was always 1; here both models are measured as they are.)

The widths (each model's `widths` option: stage widths for ResNets, every conv for VGG): first
one multiplier on all of the family's widths, solved by bisection, which keeps the family's
proportions; then greedy steps of one or two channels on up to three widths at once, first to
bring the count within `GOAL` of the target, then to stay there nearer the multiplier's shape.
A layer narrower than another in the family never becomes wider than it. One multiplier alone
is not enough: at 99 % ResNet-20 has 2,709 weights to spend, its nearest uniform narrowing
(2, 3, 6) has 2,595 (-4.2 %), and (1, 2, 7) has 2,696 (-0.5 %).
"""

from __future__ import annotations

import functools
import itertools
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from pai_bench.errors import UserError
from pai_bench.flops import count_macs
from pai_bench.masks import kept_count, prunable_parameters
from pai_bench.method import ArchitectureMethod
from pai_bench.models import accepts_widths, build_model, list_width_models
from pai_bench.plugins import register_method

#: The parameter count must come within this fraction of the target.
TOLERANCE = 0.01
#: The search is content with any widths this close to the target, and then keeps the
#: family's proportions best.
GOAL = TOLERANCE / 4
#: A search step changes at most this many widths, each by at most `MAX_STEP` channels.
MAX_MOVE_WIDTHS = 3
MAX_STEP = 2
#: Drift differences below this are rounding, not a better shape.
DRIFT_EPSILON = 1e-9
#: Bisection steps on the multiplier (2**-40: far below one channel).
BISECTION_STEPS = 40
#: Build options the widths replace.
WIDTH_OPTIONS = ("width", "width_multiplier", "widths")

Widths = tuple[int, ...]


@dataclass(frozen=True)
class Family:
    """How to build another member of a model's family: `build_model(name, num_classes, widths=..., **options)`."""

    name: str
    num_classes: int
    options: tuple[tuple[str, Any], ...]
    widths: Widths

    def build(self, widths: Sequence[int], seed: int | None = None) -> nn.Module:
        return build_model(self.name, self.num_classes, seed=seed, widths=list(widths), **dict(self.options))

    def prunable_count(self, widths: Sequence[int]) -> int:
        """Conv and linear weights at `widths`, built on the meta device: no memory, no init."""
        with torch.device("meta"):
            model = self.build(widths)
        return sum(p.numel() for p in prunable_parameters(model).values())


def family_of(model: nn.Module, method: str) -> Family:
    """The family `model` belongs to, from the `build_spec` that `build_model` leaves on it."""
    spec = getattr(model, "build_spec", None)
    supported = ", ".join(list_width_models())
    if spec is None:
        raise UserError(
            f"{method} needs a model from pai_bench.build_model to narrow, got a {type(model).__name__}; supported: {supported}"
        )
    if not accepts_widths(spec["name"]):
        raise UserError(f"{method} cannot narrow model {spec['name']!r}; supported: {supported}")
    options = tuple(sorted((key, value) for key, value in spec["options"].items() if key not in WIDTH_OPTIONS))
    with torch.device("meta"):
        reference = build_model(spec["name"], spec["num_classes"], **spec["options"])
    return Family(spec["name"], spec["num_classes"], options, tuple(reference.widths))


@dataclass(frozen=True)
class Solution:
    widths: Widths
    count: int
    target: int
    multiplier: float

    @property
    def error(self) -> float:
        """(count - target) / target."""
        return (self.count - self.target) / self.target if self.target else float(self.count > 0)


def solve_widths(
    count: Callable[[Widths], int], base: Sequence[int], target: int, quadratic: Quadratic | None = None
) -> Solution:
    """Integer widths near `base` scaled uniformly whose `count` comes closest to `target`.

    The search runs on `quadratic`, the exact quadratic through `count` (a conv or linear
    layer's weights are a product of at most two widths; fitted here when not given), which
    makes tens of thousands of candidates cheap. The answer is checked against `count` itself;
    a family that is not quadratic in its widths is searched again with `count` and single-width
    +-1 steps.
    """
    quadratic = quadratic or Quadratic(count, len(base))
    solution = _search(quadratic, base, target, _moves(len(base), MAX_MOVE_WIDTHS, MAX_STEP))
    if count(solution.widths) != solution.count:
        cached = functools.lru_cache(maxsize=None)(count)
        direct = lambda rows: np.array([cached(tuple(int(w) for w in row)) for row in rows], dtype=np.int64)  # noqa: E731
        solution = _search(direct, base, target, _moves(len(base), 1, 1))
    return solution


class Quadratic:
    """A weight count as the quadratic in the widths w it is: c + b.x + x'Ax with x = w - 1.

    Fitted exactly from `count` at all-ones, one width raised by 1 or 2, and two widths raised by
    1: 1 + 2k + k(k-1)/2 calls. Called on an (n, k) array of widths, it gives the n counts.
    """

    def __init__(self, count: Callable[[Widths], int], length: int) -> None:
        def at(*raised: int) -> int:
            widths = [1] * length
            for position in raised:
                widths[position] += 1
            return count(tuple(widths))

        self.constant = at()
        once = np.array([at(i) for i in range(length)], dtype=np.int64)
        twice = np.array([at(i, i) for i in range(length)], dtype=np.int64)
        square = (twice - 2 * once + self.constant) // 2
        self.linear = once - self.constant - square
        self.matrix = np.diag(square)
        for i, j in itertools.combinations(range(length), 2):
            self.matrix[i, j] = at(i, j) - once[i] - once[j] + self.constant

    def __call__(self, widths: np.ndarray) -> np.ndarray:
        x = np.asarray(widths, dtype=np.int64) - 1
        return self.constant + x @ self.linear + np.einsum("ni,ij,nj->n", x, self.matrix, x)


@functools.lru_cache(maxsize=32)
def fitted(family: Family) -> Quadratic:
    """One fit per family and process: a VGG-16's takes about 100 builds, a second."""
    return Quadratic(family.prunable_count, len(family.widths))


def _search(counts: Callable[[np.ndarray], np.ndarray], base: Sequence[int], target: int, moves: np.ndarray) -> Solution:
    """Bisection on one multiplier, then greedy `moves` while they bring the count within `GOAL`
    of the target, or keep it there closer to the multiplier's widths."""
    base_array = np.array(base, dtype=np.float64)

    def scaled(multiplier: float) -> np.ndarray:
        return np.maximum(1, np.round(base_array * multiplier)).astype(np.int64)

    def miss(multiplier: float) -> int:
        return int(counts(scaled(multiplier)[None])[0]) - target

    low, high = 0.0, 1.0
    while miss(high) < 0 and high < 2.0**20:
        high *= 2.0
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2
        low, high = (low, middle) if miss(middle) >= 0 else (middle, high)
    multiplier = min((low, high), key=lambda m: abs(miss(m)))
    ideal = np.log(np.maximum(base_array * multiplier, 1.0))
    # A layer narrower than another in the family stays no wider: the proportions keep their order.
    narrower, wider = np.array([(i, j) for i, j in itertools.permutations(range(len(base)), 2) if base[i] < base[j]]).reshape(-1, 2).T

    def badness(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """How far each count is outside `GOAL` of the target, and its widths' drift."""
        excess = np.maximum(np.abs(counts(rows) - target) - GOAL * target, 0.0)
        return excess, np.abs(np.log(rows) - ideal).sum(axis=1)

    widths = scaled(multiplier)
    current = [value[0] for value in badness(widths[None])]
    while True:
        rows = widths + moves
        rows = rows[(rows >= 1).all(axis=1) & (rows[:, narrower] <= rows[:, wider]).all(axis=1)]
        if not len(rows):
            break
        excess, drift = badness(rows)
        best = np.lexsort((drift, excess))[0]
        if (excess[best], drift[best]) >= (current[0], current[1] - DRIFT_EPSILON):
            break
        widths, current = rows[best], [excess[best], drift[best]]
    count = int(counts(widths[None])[0])
    return Solution(tuple(int(w) for w in widths), count, target, multiplier)


@functools.lru_cache(maxsize=None)
def _moves(length: int, max_widths: int, max_step: int) -> np.ndarray:
    """Every change of one to `max_widths` of `length` widths by up to `max_step` each."""
    steps = [step for step in range(-max_step, max_step + 1) if step]
    moves = []
    for size in range(1, min(max_widths, length) + 1):
        for positions in itertools.combinations(range(length), size):
            for changes in itertools.product(steps, repeat=size):
                move = [0] * length
                for position, change in zip(positions, changes):
                    move[position] = change
                moves.append(move)
    return np.array(moves, dtype=np.int64)


class Scratch(ArchitectureMethod):
    """A narrower dense model of the same family, with the pruned model's weight count."""

    def build(self, model, sparsity, batches, seed):
        family = family_of(model, self.name)
        total = sum(p.numel() for p in prunable_parameters(model).values())
        target = kept_count(total, sparsity)
        solution = solve_widths(family.prunable_count, family.widths, target, fitted(family))
        if abs(solution.error) > TOLERANCE:
            warnings.warn(
                f"{self.name}: no {family.name} has {target} conv and linear weights; the nearest "
                f"(widths {list(solution.widths)}) has {solution.count} ({100 * solution.error:+.1f} %)",
                RuntimeWarning,
                stacklevel=2,
            )
        small = family.build(solution.widths, seed=seed)
        first = next(model.parameters(), None)
        if first is not None:
            small.to(device=first.device, dtype=first.dtype if first.is_floating_point() else None)
        self.extras.update(
            widths=list(solution.widths),
            multiplier=solution.multiplier,
            target_prunable=target,
            prunable=solution.count,
            count_error=solution.error,
        )
        return small


@register_method("scratch-e")
class ScratchE(Scratch):
    """Scratch-E: trained for the same epochs as every other method."""


@dataclass
class ScratchBOptions:
    # Scratch-B's budget grows as the model shrinks: x7.75 at 90 % and x144 at 99 % on
    # ResNet-20 (22,970 epochs for a 160-epoch protocol). None keeps the definition; a number
    # caps the multiple, and the record says the budget was capped.
    max_budget: Optional[float] = None

    def __post_init__(self) -> None:
        if self.max_budget is not None and self.max_budget < 1:
            raise UserError(f"scratch-b.max_budget={self.max_budget} must be at least 1 (or null for no cap)")


@register_method("scratch-b")
class ScratchB(Scratch):
    """Scratch-B: trained for the dense model's compute, epochs x MACs(dense) / MACs(small)."""

    Options = ScratchBOptions

    def train_budget(self, dense, small, input_shape):
        budget = count_macs(dense, input_shape) / count_macs(small, input_shape)
        cap = self.options.max_budget
        if cap is not None and budget > cap:
            self.extras["uncapped_budget"] = budget
            return cap
        return budget

