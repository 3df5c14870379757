"""Magnitude at initialisation: the baseline that collapses layers with small init scale."""

from __future__ import annotations

from pai_bench.method import ScoreMethod
from pai_bench.plugins import register_method


@register_method("magnitude")
class Magnitude(ScoreMethod):
    """Score |θ| at init, one global top-k."""

    reads_only = True

    def score(self, model, masks, batches, generator):
        params = dict(model.named_parameters())
        return {name: params[name].detach().abs() for name in masks}
