"""The trial grid of a suite: cell x method x sparsity x seed, and the ablated trials.

Below both the runner (which runs the grid) and the pages (which report a run's grid, cut
trials and all), so neither needs the other to know what a suite's trials are.
"""

from __future__ import annotations

import copy

from pai_bench.ablations import applies_to
from pai_bench.plugins import method_class
from pai_bench.schema import CellConfig, CutConfig, SuiteConfig
from pai_bench.spec import TrialSpec
from pai_bench.units import is_trajectory_method, level_paths
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
    cell (`pai_bench.units`, `pai_bench.trajectory`).
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
                    if is_cut(config.cuts, row.name, name, sparsity, seed):
                        continue
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


def is_cut(cuts: list[CutConfig], row: str, cell: str | None, sparsity: float, seed: int) -> bool:
    """Whether a cut of the suite leaves this trial out (a row's dense run, at sparsity 0, only
    by its seeds)."""
    for cut in cuts:
        if (cut.rows and row not in cut.rows) or (cut.cells and cell not in cut.cells):
            continue
        if (cut.seeds and seed >= cut.seeds) or (cut.sparsities and sparsity != 0.0 and sparsity not in cut.sparsities):
            return True
    return False


def describe_cuts(cuts: list[CutConfig]) -> list[str]:
    """One line per cut, for the pages: what runs of which rows and cells, and why."""
    lines = []
    for cut in cuts:
        rows = ", ".join(cut.rows) if cut.rows else "every row"
        cells = f" on {', '.join(cut.cells)}" if cut.cells else ""
        kept = []
        if cut.sparsities:
            kept.append(f"sparsit{'ies' if len(cut.sparsities) > 1 else 'y'} " + ", ".join(f"{100 * value:g} %" for value in cut.sparsities))
        if cut.seeds:
            kept.append(f"seed{'s' if cut.seeds > 1 else ''} {', '.join(str(seed) for seed in range(cut.seeds))}")
        why = f" ({cut.why})" if cut.why else ""
        lines.append(f"{rows}{cells}: only {' and '.join(kept) or 'as the grid'}{why}")
    return lines
