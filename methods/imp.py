"""Iterative magnitude pruning with rewinding, the lottery ticket (Frankle & Carbin, ICLR 2019;
Frankle et al., "Linear Mode Connectivity and the Lottery Ticket Hypothesis", ICML 2020).

Train the network under the suite's protocol, remove `fraction` of the weights it still keeps
by global magnitude of the trained weights, set the kept weights back to their values at the
rewind point, and repeat: one trajectory per seed passes through every sparsity of the grid.
The reference PaI methods try to reach without training; its masks cost training (level L
trains L + 1 times), PaI's none, so no standard suite runs it: add it with methods=[...,imp].

How the reference code computes it, and pai-bench's choices:
- OpenLTH (Facebook's lottery-ticket framework, `lottery/runner.py`, `pruning/sparse_global.py`):
  levels of 20 %, global magnitude over the prunable weights, rewinding to the init or to a
  training step (`--rewinding_steps`, e.g. `2ep`), a fresh optimizer at each level with the
  learning-rate schedule at the rewind point, the data order of the first level. It leaves the
  classifier out for its CIFAR ResNets (`pruning_layers_to_ignore = fc.weight`).
- The PX authors' `train_classification.py` (2024) runs an `IMP` pruner beside PX: train,
  global magnitude, rewind to the initial weights, the exponential schedule; the classifier is
  pruned.
- Defaults here: `rewind=init` and `prune_classifier=true`, as the PX authors ran it beside PX,
  and as every pai-bench method prunes (the classifier is in the global pool unless the suite
  excludes it): a sparsity means the same N weights in every row of a leaderboard.
  `imp.prune_classifier=false` is OpenLTH's CIFAR setting (the classifier kept dense, counted
  as kept). `imp.rewind=N` rewinds to the weights after N epochs of the first level's
  training, with the learning-rate schedule at epoch N and a fresh momentum, as OpenLTH does;
  Frankle et al. (2020) need it for ResNet-20 at lr 0.1, where rewinding to the init loses.
- Each level keeps exactly round(d * N) weights; the level towards each sparsity of the grid
  lands on it exactly (`pai_bench.levels`); masks are nested (a pruned weight never returns)
  and ties at the threshold are drawn by the driver's seeded tie-break (`pruning.select`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from pai_bench.errors import UserError
from pai_bench.levels import exponential_levels
from pai_bench.method import TrajectoryMethod
from pai_bench.plugins import register_method


@dataclass
class Options:
    fraction: float = 0.2  # of the kept weights removed per level
    rewind: str = "init"  # init, or N: the weights after N epochs of the first level
    prune_classifier: bool = True  # false: the last linear layer stays dense (OpenLTH on CIFAR ResNets)

    def __post_init__(self) -> None:
        if not 0.0 < self.fraction < 1.0:
            raise UserError(f"imp.fraction={self.fraction}: a level removes a fraction in (0, 1) of the kept weights, e.g. 0.2")
        rewind = str(self.rewind).strip().lower().removesuffix("ep")
        if rewind not in ("init", "0") and not rewind.isdigit():
            raise UserError(f"imp.rewind={self.rewind!r}: valid values are init or a number of epochs N (the weights after N epochs)")
        self.rewind = "init" if rewind in ("init", "0") else str(int(rewind))


@register_method("imp")
class IMP(TrajectoryMethod):
    """Iterative magnitude pruning with rewinding (the lottery ticket)."""

    Options = Options

    def plan(self, sparsities: Sequence[float]) -> dict[float, list[float]]:
        return exponential_levels(sparsities, self.options.fraction)

    def rewind_epoch(self) -> int:
        return 0 if self.options.rewind == "init" else int(self.options.rewind)

    def prunes_classifier(self) -> bool:
        return self.options.prune_classifier

    def score(self, model: nn.Module, masks: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        params = dict(model.named_parameters())
        return {name: params[name].detach().abs() for name in masks}
