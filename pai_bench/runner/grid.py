"""The trial grid of a suite: method x sparsity x seed."""

from __future__ import annotations

import copy

from pai_bench.config import SuiteConfig
from pai_bench.plugins import method_class, resolve_options
from pai_bench.trial import TrialSpec


def expand_grid(config: SuiteConfig) -> list[TrialSpec]:
    """Every trial of the suite, in seed-major order so early results cover every method.

    A method that keeps every weight (dense) runs once per seed, at sparsity 0. Options are
    resolved with their defaults, so the record (and the key) says exactly what ran.
    """
    specs = []
    for seed in range(config.seeds):
        for method in config.methods:
            options = vars(resolve_options(method, config.options.get(method, {})))
            sparsities = [0.0] if method_class(method).keeps_everything else config.sparsities
            for sparsity in sparsities:
                specs.append(
                    TrialSpec(
                        method=method,
                        sparsity=float(sparsity),
                        seed=seed,
                        options=copy.deepcopy(options),
                        model=copy.deepcopy(config.model),
                        data=copy.deepcopy(config.data),
                        train=copy.deepcopy(config.train),
                        prune=copy.deepcopy(config.prune),
                        suite=config.suite,
                    )
                )
    return specs
