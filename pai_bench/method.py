"""What a pruning method is: the contract every plugin, built-in or third-party, fulfils.

A score method computes scores on the network it is handed; the driver (`pai_bench.pruning`)
owns everything else (prunable set, schedule, top-k, the deep copy, the pruning data), so every
method is measured under the same rules. An architecture method returns a new, smaller model
instead of masks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch
from torch import nn

from pai_bench.errors import UserError

Batch = tuple[torch.Tensor, torch.Tensor]

#: Precisions a method may score in: float64 keeps path products from underflowing at extreme
#: sparsity; float32 reproduces the reference repos.
SCORE_DTYPES = {"float64": torch.float64, "float32": torch.float32}


@dataclass
class NoOptions:
    """For methods without options."""


class Method:
    """Base of all methods. Subclasses set `Options` to a dataclass of their options.

    What a method wants recorded about a run (the widths it chose, a warning about its scores)
    goes in `self.extras`: the driver empties it before pruning and copies it into
    `PruneResult.extras`, and a trial records it.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    #: True for a method that keeps every weight (it only runs at sparsity 0).
    keeps_everything: ClassVar[bool] = False

    def __init__(self, options: Any | None = None) -> None:
        self.options = options if options is not None else self.Options()
        self.extras: dict[str, Any] = {}

    def option_values(self) -> dict[str, Any]:
        return {f.name: getattr(self.options, f.name) for f in fields(self.options)}


class ScoreMethod(Method):
    """A method that scores weights; higher scores are kept.

    `score` receives a deep copy of the network with the current masks applied (it may change
    that copy freely), the masks, the pruning batches on the network's device, and a seeded
    generator. It returns one score tensor per masked parameter, same shape.
    """

    #: The number of weights the current round keeps; the driver sets it before each `score`
    #: call, for methods whose scoring depends on it (PHEW walks until it has visited this many).
    target_kept: int = 0
    #: True while the driver keeps the lowest scores instead of the highest (the invert
    #: ablation), for methods that check where their scores decide a round.
    inverted: bool = False
    #: True for a method whose `score` changes its copy only through the values, dtype,
    #: `requires_grad` and train/eval mode of the copy's parameters and buffers (no hooks, no
    #: replaced modules). The driver then deep-copies the network once per prune and, before
    #: each round, writes the network's values and mode back into that copy (in the dtype the
    #: method converted it to): for a 100-round method on a small network the deep copies cost
    #: as much as the scoring.
    reuses_copy: ClassVar[bool] = False
    #: True for a method whose `score` only reads the network it is handed: in the first round,
    #: where every weight is still kept, the driver hands it the network itself, no copy.
    reads_only: ClassVar[bool] = False

    def rounds(self) -> int:
        """Pruning rounds: 1 is one-shot; more uses the exponential density schedule."""
        return int(getattr(self.options, "rounds", 1))

    def score(
        self,
        model: nn.Module,
        masks: Mapping[str, torch.Tensor],
        batches: Sequence[Batch],
        generator: torch.Generator,
    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def layer_densities(self, shapes: Mapping[str, torch.Size], density: float) -> dict[str, float] | None:
        """Per-layer densities for methods that allocate layer by layer; None = one global top-k."""
        return None


class ArchitectureMethod(Method):
    """A method that returns a new (smaller) model instead of masks.

    `build` runs under the driver's forked RNG, seeded with `seed`; it must leave `model` as it
    is.
    """

    def build(self, model: nn.Module, sparsity: float, batches: Sequence[Batch], seed: int) -> nn.Module:
        raise NotImplementedError

    def train_budget(self, dense: nn.Module, small: nn.Module, input_shape: Sequence[int]) -> float:
        """How long to train `small`, as a multiple of the suite's epochs: 1.0 trains as long.

        A trial trains round(epochs * budget) epochs and moves each learning-rate milestone to
        round(milestone * budget). `input_shape` is one example's shape, (C, H, W).
        """
        return 1.0


class TrajectoryMethod(Method):
    """A method whose masks come from training (iterative magnitude pruning): each level trains
    the masked network, prunes some of the weights it kept and rewinds the rest.

    One trajectory per seed passes through every sparsity of a suite's grid, so it runs as one
    unit of work (`pai_bench.trajectory`) that writes a record per sparsity, not through
    `prune`. A method of this kind scores the *trained* weights and plans the levels.
    """

    def plan(self, sparsities: Sequence[float]) -> dict[float, list[float]]:
        """For each sparsity, the densities of the levels its mask goes through (level 1 on)."""
        raise NotImplementedError

    def rewind_epoch(self) -> int:
        """The epoch whose weights each level after the first starts from (0: the init)."""
        return 0

    def prunes_classifier(self) -> bool:
        return True

    def score(self, model: nn.Module, masks: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Scores of the trained `model`'s masked weights; higher scores are kept."""
        raise NotImplementedError


def check_choice(option: str, value: str, choices: Sequence[str]) -> None:
    """For an option's `__post_init__`: a one-line error naming the value and the choices."""
    if value not in choices:
        raise UserError(f"unknown {option} {value!r}; valid choices: {', '.join(choices)}")
