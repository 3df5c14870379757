"""Checks of a suite's trials that need its models and datasets, made before any trial runs.

The config check (`pai_bench.config.validate`) sees values, not models: whether a sparsity
leaves a model any weight depends on how many prunable weights it has. A sparsity that keeps
none would fail every trial that asks for it; it is bad input, said once, before the first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from pai_bench.masks import prunable_parameters
from pai_bench.method import ScoreMethod, TrajectoryMethod
from pai_bench.models import build_model
from pai_bench.plugins import method_class
from pai_bench.pruning import check_kept
from pai_bench.spec import TrialSpec
from pai_bench.work import data_key


def check_kept_counts(specs: Sequence[TrialSpec], num_classes: Mapping[tuple, int]) -> None:
    """Raise a UserError if a masking trial's sparsity keeps no weight of its model.

    `num_classes` is each dataset's class count by `data_key` (the classifier's size)."""
    sparsest: dict[tuple, TrialSpec] = {}
    for spec in specs:
        if not issubclass(method_class(spec.method), (ScoreMethod, TrajectoryMethod)):
            continue
        model = (spec.model.name, num_classes[data_key(spec)], tuple(spec.prune.exclude))
        if model not in sparsest or spec.sparsity > sparsest[model].sparsity:
            sparsest[model] = spec
    for (name, classes, exclude), spec in sparsest.items():
        with torch.device("meta"):  # shapes only: no memory, no initialisation
            model = build_model(name, num_classes=classes, seed=0)
        check_kept(sum(p.numel() for p in prunable_parameters(model, exclude).values()), spec.sparsity, name)
