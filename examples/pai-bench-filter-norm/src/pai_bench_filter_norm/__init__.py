"""Filter-norm pruning: keep the weights of the strongest output filters.

pai-bench finds this class through the `pai_bench.methods` entry point in pyproject.toml and
registers it under the entry point's name, `filter-norm`.
"""

from __future__ import annotations

from dataclasses import dataclass

from pai_bench import ScoreMethod


@dataclass
class FilterNormOptions:
    mix: float = 0.0  # 0 = filter norm only; 1 = plain magnitude; between: a blend

    def __post_init__(self) -> None:
        if not 0.0 <= self.mix <= 1.0:
            raise ValueError(f"filter-norm.mix={self.mix} must be in [0, 1]")


class FilterNorm(ScoreMethod):
    Options = FilterNormOptions

    def score(self, model, masks, batches, generator):
        params = dict(model.named_parameters())
        scores = {}
        for name in masks:
            weight = params[name].detach().abs()
            filter_norm = weight.reshape(weight.shape[0], -1).sum(dim=1)
            per_weight = filter_norm.view(-1, *([1] * (weight.dim() - 1))).expand_as(weight)
            scores[name] = (1 - self.options.mix) * per_weight / per_weight.max() + self.options.mix * weight / weight.max()
        return scores
