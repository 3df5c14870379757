"""The records a page reports from a run folder: those of the grid in its `config.yaml`
(`pai_bench.grid`, `pai_bench.report_scope`), each labelled with its row's current name, with a
placeholder for each trial not run yet; and the notes the folder's config adds to the footer
(what the suite cut to fit). Pages read records; they know nothing of trials being run."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pai_bench.config import load_config
from pai_bench.errors import UserError
from pai_bench.grid import describe_cuts, expand_grid
from pai_bench.report_scope import report_records
from pai_bench.schema import SuiteConfig
from pai_bench.spec import TrialSpec
from pai_bench.store import ResultStore


def load_run_records(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of the run in `run_dir`: those of the grid in its `config.yaml` (as
    `pai-bench run` reports them), so records left by an earlier protocol stay out, each
    labelled with its row's current name (a renamed variant's records carry the old one), and a
    `missing` placeholder for each trial of the grid with no record, so it counts as not done.
    With no usable config.yaml, or none of its keys present (e.g. records of an older
    pai-bench), all records, said on stderr."""
    store = ResultStore(run_dir)
    if not store.trials.is_dir():
        raise UserError(f"no trial records in {run_dir} (expected {store.trials}); pass the out= folder of a run")
    records = store.records()
    if not records:
        raise UserError(f"no trial records in {store.trials}; pass the out= folder of a run")
    specs = run_grid(run_dir)
    if specs is None:
        return records
    selected = report_records(specs, store)
    if all(record["status"] == "missing" for record in selected):
        print(f"pai-bench: note: no record matches {Path(run_dir) / 'config.yaml'}; using every record in {store.trials}", file=sys.stderr)
        return records
    return selected


def run_grid(run_dir: str | Path) -> list[TrialSpec] | None:
    """The trial specs of the run in `run_dir`, from its `config.yaml` (`run_config`)."""
    config = run_config(run_dir)
    return expand_grid(config) if config is not None else None


def run_config(run_dir: str | Path, say: bool = True) -> SuiteConfig | None:
    """The grid of the run in `run_dir`, its `config.yaml`; None when it has none or it does
    not load (said on stderr unless `say` is false)."""
    config_path = Path(run_dir) / "config.yaml"
    if not config_path.is_file():
        return None
    try:
        return load_config(str(config_path))
    except UserError as error:
        if say:
            print(f"pai-bench: note: {config_path} does not load ({error}); using every record in {Path(run_dir) / 'trials'}", file=sys.stderr)
        return None


def run_notes(run_dir: str | Path) -> list[str]:
    """Footer lines for the pages of the run in `run_dir`: what its suite cut to fit (a
    config.yaml that does not load was already said by `load_run_records`)."""
    config = run_config(run_dir, say=False)
    return cut_notes(config) if config is not None else []


def cut_notes(config: SuiteConfig) -> list[str]:
    return [f"Cut to fit: {line}." for line in describe_cuts(config.cuts)]
