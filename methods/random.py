"""Random pruning, the floor any method must beat, in three allocations.

`global`: random scores and one global threshold (about uniform per layer); `layer`: exactly
the same density in every layer; `erk`: Erdős–Rényi-Kernel densities (Evci et al., RigL), which
give small layers more weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from pai_bench.method import ScoreMethod, check_choice
from pai_bench.plugins import register_method

SCOPES = ("global", "layer", "erk")


@dataclass
class RandomOptions:
    scope: str = "global"  # global | layer | erk

    def __post_init__(self) -> None:
        check_choice("random.scope", self.scope, SCOPES)


@register_method("random")
class Random(ScoreMethod):
    Options = RandomOptions
    reads_only = True

    def score(self, model, masks, batches, generator):
        return {
            name: torch.rand(mask.shape, generator=generator, device=generator.device)
            for name, mask in masks.items()
        }

    def layer_densities(self, shapes, density):
        if self.options.scope == "layer":
            return {name: density for name in shapes}
        if self.options.scope == "erk":
            return erk_densities(shapes, density)
        return None


def erk_densities(shapes: Mapping[str, torch.Size], density: float) -> dict[str, float]:
    """ERK: density_l ∝ sum(dims) / prod(dims); layers that would exceed 1 are made dense and the
    scale is solved again for the rest, so the overall density is `density`."""
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    raw = {name: sum(shape) / sizes[name] for name, shape in shapes.items()}
    target = density * sum(sizes.values())
    dense: set[str] = set()
    while True:
        sparse = [name for name in shapes if name not in dense]
        budget = target - sum(sizes[name] for name in dense)
        scale = budget / sum(raw[name] * sizes[name] for name in sparse) if sparse else 0.0
        too_dense = [name for name in sparse if raw[name] * scale > 1.0]
        if not too_dense:
            break
        dense.update(too_dense)
    return {name: 1.0 if name in dense else raw[name] * scale for name in shapes}
