"""The trial grid of a suite: cell x method x sparsity x seed, and the ablated trials."""

from __future__ import annotations

import copy

from pai_bench.ablations import applies_to
from pai_bench.config import CellConfig, SuiteConfig
from pai_bench.plugins import method_class, resolve_options
from pai_bench.trial import TrialSpec


def suite_cells(config: SuiteConfig) -> dict[str | None, CellConfig]:
    """The suite's cells by name; a suite without cells is one unnamed cell of its own sections."""
    if config.cells:
        return dict(config.cells)
    return {
        None: CellConfig(
            model=config.model, data=config.data, train=config.train, prune=config.prune, diagnostics=config.diagnostics
        )
    }


def expand_grid(config: SuiteConfig) -> list[TrialSpec]:
    """Every trial of the suite, in seed-major order so early results cover every cell and method.

    A method that keeps every weight (dense) runs once per seed and cell, at sparsity 0. Options
    are resolved with their defaults, so the record (and the key) says exactly what ran. Each
    of `config.ablations` adds, after a cell's plain trials of a seed, one trial per sparsity
    for every method it applies to (those that choose masks by scores).
    """
    cells = suite_cells(config)
    options = {method: vars(resolve_options(method, config.options.get(method, {}))) for method in config.methods}
    runs = [(method, None) for method in config.methods]
    runs += [(method, ablation) for ablation in config.ablations for method in config.methods if applies_to(method)]
    specs = []
    for seed in range(config.seeds):
        for name, cell in cells.items():
            for method, ablation in runs:
                sparsities = [0.0] if method_class(method).keeps_everything else config.sparsities
                for sparsity in sparsities:
                    specs.append(
                        TrialSpec(
                            method=method,
                            sparsity=float(sparsity),
                            seed=seed,
                            options=copy.deepcopy(options[method]),
                            model=copy.deepcopy(cell.model),
                            data=copy.deepcopy(cell.data),
                            train=copy.deepcopy(cell.train),
                            prune=copy.deepcopy(cell.prune),
                            suite=config.suite,
                            cell=name,
                            ablation=ablation,
                            diagnostics=copy.deepcopy(cell.diagnostics),
                        )
                    )
    return specs
