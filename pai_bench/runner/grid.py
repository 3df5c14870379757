"""The trial grid of a suite: cell x method x sparsity x seed, and the ablated trials."""

from __future__ import annotations

import copy

from pai_bench.ablations import applies_to
from pai_bench.config import CellConfig, SuiteConfig
from pai_bench.plugins import method_class
from pai_bench.trajectory import is_trajectory_method, level_paths
from pai_bench.trial import TrialSpec
from pai_bench.variants import suite_rows


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
    """Every trial of the suite, in seed-major order so early results cover every cell and row.

    A row is a method or a variant of one (`pai_bench.variants`). A method that keeps every
    weight (dense) runs once per seed and cell, at sparsity 0. Options are resolved with their
    defaults, so the record (and the key) says exactly what ran. Each of `config.ablations`
    adds, after a cell's plain trials of a seed, one trial per sparsity for every row it
    applies to (those that choose masks by scores). A trajectory method's (imp's) trials carry
    the levels their masks go through; its executor runs them as one trajectory per seed and
    cell (`pai_bench.trajectory`).
    """
    cells = suite_cells(config)
    rows = list(suite_rows(config).values())
    runs = [(row, None) for row in rows]
    runs += [(row, ablation) for ablation in config.ablations for row in rows if applies_to(row.method, ablation)]
    specs = []
    # A trajectory method's (imp's) trials say the levels their masks go through (in their key).
    levels = {row.name: level_paths(row.method, row.options, config.sparsities) for row in rows if is_trajectory_method(row.method)}
    for seed in range(config.seeds):
        for name, cell in cells.items():
            for row, ablation in runs:
                sparsities = [0.0] if method_class(row.method).keeps_everything else config.sparsities
                for sparsity in sparsities:
                    specs.append(
                        TrialSpec(
                            method=row.method,
                            row=row.name,
                            sparsity=float(sparsity),
                            seed=seed,
                            options=copy.deepcopy(row.options),
                            model=copy.deepcopy(cell.model),
                            data=copy.deepcopy(cell.data),
                            train=copy.deepcopy(cell.train),
                            prune=copy.deepcopy(cell.prune),
                            suite=config.suite,
                            cell=name,
                            ablation=ablation,
                            levels=copy.deepcopy(levels[row.name][float(sparsity)]) if row.name in levels else None,
                            diagnostics=copy.deepcopy(cell.diagnostics),
                        )
                    )
    return specs
