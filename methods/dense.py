"""The unpruned reference every leaderboard row is read against."""

from __future__ import annotations

from pai_bench.method import ScoreMethod
from pai_bench.plugins import register_method


@register_method("dense")
class Dense(ScoreMethod):
    """Keeps every weight; runs only at sparsity 0, once per seed."""

    keeps_everything = True

    def score(self, model, masks, batches, generator):
        return {name: mask.to(float) for name, mask in masks.items()}
