"""What the reports of a results folder cover: every trial of the protocol it holds.

A user who runs a suite into `out`, then a few more methods or sparsities into the same `out`,
expects the reports to grow, not to shrink to the last command's subset while the earlier
records sit unreported in `trials/`. So each run widens the grid that `out/config.yaml` holds
(and `results.md`, `leaderboard.md` and `pai-bench leaderboard` report) to the union of the
earlier grid and its own, as long as both describe one protocol: the same suite, and the same
model, data, training and pruning settings in every cell they share. A run with another
protocol (say `train.epochs=2` into the folder of a full run) replaces the grid instead: its
reports never mix protocols, and when finished trials drop out of the reports the earlier
config is kept beside the new one, so rerunning it reports them again, without training
anything. (So does a run whose new options for a method change an earlier row.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pai_bench.config import SuiteConfig, load_config, to_yaml
from pai_bench.errors import UserError
from pai_bench.grid import expand_grid, suite_cells
from pai_bench.spec import TrialSpec, base_record
from pai_bench.store import ResultStore
from pai_bench.variants import label_rows, resolve_row, suite_rows

CONFIG_FILE = "config.yaml"
#: Where a replaced grid's config is kept: `pai-bench run suite=<this file>` reports it again.
PREVIOUS_CONFIG_FILE = "config.previous.yaml"


@dataclass
class ReportScope:
    config: SuiteConfig  # the grid the reports cover, written to out/config.yaml
    replaced: int = 0  # finished records of the earlier grid that the reports no longer cover
    previous: Path | None = None  # the earlier grid's config, kept when records were replaced


def widen_scope(out: Path, current: SuiteConfig, store: ResultStore) -> ReportScope:
    """The grid `out`'s reports cover after a run of `current`; writes it to out/config.yaml."""
    previous = _previous_config(out)
    if previous is None:
        scope = ReportScope(current)
    elif same_protocol(previous, current):
        scope = ReportScope(union(previous, current))
    else:
        scope = ReportScope(current)
    if previous is not None:
        kept = {spec.key for spec in expand_grid(scope.config)}
        scope.replaced = sum(1 for spec in expand_grid(previous) if spec.key not in kept and store.is_final(spec.key))
        if scope.replaced:
            scope.previous = out / PREVIOUS_CONFIG_FILE
            scope.previous.write_text((out / CONFIG_FILE).read_text())
    (out / CONFIG_FILE).write_text(to_yaml(scope.config))
    return scope


def same_protocol(a: SuiteConfig, b: SuiteConfig) -> bool:
    """One suite, and every cell both have trains the same way (what the trial key hashes,
    less the method, sparsity and seed)."""
    if a.suite != b.suite or bool(a.cells) != bool(b.cells):
        return False
    cells_a, cells_b = suite_cells(a), suite_cells(b)
    return all(_protocol_key(cells_a[name]) == _protocol_key(cells_b[name]) for name in cells_a.keys() & cells_b.keys())


def union(previous: SuiteConfig, current: SuiteConfig) -> SuiteConfig:
    """`current` with the earlier grid's rows, sparsities, ablations, seeds and cells added;
    where both set a row, a method's options or a cell, `current`'s win (its trials are the new
    ones). An earlier row stays only if it still runs the trials it ran (`current`'s options for
    its method would make it other, unasked-for trials) and no row of `current` runs them."""
    merged = dataclasses.replace(current)
    merged.variants = {**previous.variants, **current.variants}
    merged.options = {**previous.options, **current.options}
    merged.cuts = _cuts_of_both(previous, current)
    current_rows = suite_rows(current)
    taken = {row.content for row in current_rows.values()}
    earlier = [
        name
        for name, row in suite_rows(previous).items()
        if name in current_rows or (row.content not in taken and resolve_row(name, merged.variants, merged.options).content == row.content)
    ]
    merged.methods = list(dict.fromkeys([*earlier, *current.methods]))
    merged.ablations = list(dict.fromkeys([*previous.ablations, *current.ablations]))
    merged.sparsities = sorted(set(previous.sparsities) | set(current.sparsities))
    merged.seeds = max(previous.seeds, current.seeds)
    merged.cells = {**previous.cells, **current.cells}
    return merged


def _cuts_of_both(previous: SuiteConfig, current: SuiteConfig) -> list:
    """A cut hides trials from the reports, so the union keeps one that both grids make, or
    one of cells only its own grid has (a run split by `cells=[...]`); a cut only one of them
    makes on a grid both share would hide trials the other asked for."""
    kept = []
    for cut in [*current.cuts, *(cut for cut in previous.cuts if cut not in current.cuts)]:
        other = previous if cut in current.cuts else current
        if cut in other.cuts or (cut.cells and not set(cut.cells) & set(other.cells)):
            kept.append(cut)
    return kept


def report_records(specs: Sequence[TrialSpec], store: ResultStore) -> list[dict[str, Any]]:
    """The records of `specs`, each named by its row in this grid (a renamed variant's records
    carry the old name), with a `missing` placeholder for each trial that has no record yet,
    so the reports count it as not done instead of dropping it."""
    records = [store.read(spec.key) or base_record(spec, "missing") for spec in specs]
    return label_rows(records, specs)


def _previous_config(out: Path) -> SuiteConfig | None:
    path = out / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        return load_config(str(path))
    except UserError:  # written by an older pai-bench, or edited: the new run's grid replaces it
        return None


def _protocol_key(cell) -> str:
    return TrialSpec(method="dense", sparsity=0.0, seed=0, options={}, model=cell.model, data=cell.data, train=cell.train, prune=cell.prune).key
