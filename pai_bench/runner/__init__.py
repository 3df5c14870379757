"""Run a suite: expand its grid, hand the trials to an executor, write the summary.

Where trials run (the executor: `tune`, Ray Tune, or `local`, in this process) is kept apart
from what a trial does (`pai_bench.trial`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pai_bench.atomic import remove_partial_writes
from pai_bench.config import SuiteConfig, out_dir
from pai_bench.errors import UserError
from pai_bench.grid import expand_grid
from pai_bench.pages import cut_notes, write_leaderboard
from pai_bench.report import results_frame, summary_markdown
from pai_bench.report_scope import report_records, widen_scope
from pai_bench.runner.local import checkpoint_folder, run_local
from pai_bench.runner.lock import run_lock
from pai_bench.runner.preflight import check_kept_counts
from pai_bench.runner.suite_data import SuiteDatasets
from pai_bench.store import ResultStore


@dataclass
class RunSummary:
    out: Path
    trials: int
    counts: Counter
    summary_path: Path
    leaderboard_path: Path
    warned: int = 0  # trials whose pruning raised warnings (listed in the leaderboard)
    reported: int = 0  # trials the reports cover: this run's and the earlier ones of its protocol
    replaced: int = 0  # finished records of an earlier protocol the reports no longer cover
    previous_config: Path | None = None  # that protocol's config: rerunning it reports them again


def run_suite(config: SuiteConfig, progress: bool = True) -> RunSummary:
    out = prepare_out(out_dir(config))
    with run_lock(out):
        return _run_locked(config, out, progress)


def prepare_out(out: Path) -> Path:
    """`out` as a folder this run can write, or a UserError saying why it is not one."""
    if out.exists() and not out.is_dir():
        raise UserError(f"out={out} is a file, not a folder; give out= a folder (it holds config.yaml, trials/, the reports)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create out={out}: {error.strerror}; choose a folder you can write") from None
    return out


def _run_locked(config: SuiteConfig, out: Path, progress: bool) -> RunSummary:
    store = ResultStore(out)
    # What a killed run was writing: records and checkpoints skip it, and nothing writes here
    # now (this run holds the lock).
    for folder in (store.trials, store.masks, checkpoint_folder(store)):
        remove_partial_writes(folder)
    specs = expand_grid(config)
    # The unfinished trials' datasets, each loaded before any trial runs: a missing dataset is
    # bad input (one line, exit 2), not a hundred failed trials.
    todo = store.unfinished(specs)
    datasets = SuiteDatasets(todo)
    check_kept_counts(todo, datasets.check())
    # Only a run that will go ahead changes what the folder reports.
    scope = widen_scope(out, config, store)
    if config.executor == "tune":
        # Imported here: Ray takes a while to import, and the local executor does without it.
        from pai_bench.runner.tune import run_tune

        counts = run_tune(specs, store, datasets, config.resources, config.ray, config.checkpoint_every, progress=progress)
    else:
        counts = run_local(specs, store, datasets, progress=progress, checkpoint_every=config.checkpoint_every)
    records = report_records(expand_grid(scope.config), store)
    summary_path = out / "results.md"
    summary_path.write_text(f"# {config.suite}\n\n" + summary_markdown(results_frame(records)))
    # The publishable tables, with the tests; `pai-bench leaderboard DIR out=leaderboard/NAME.md`
    # writes them where they are published.
    leaderboard_path, _ = write_leaderboard(records, out / "leaderboard.md", title=config.suite, notes=cut_notes(scope.config))
    keys = {spec.key for spec in specs}
    warned = sum(1 for record in records if record.get("warnings") and record["key"] in keys)
    return RunSummary(
        out=out,
        trials=len(specs),
        counts=counts,
        summary_path=summary_path,
        leaderboard_path=leaderboard_path,
        warned=warned,
        reported=len(records),
        replaced=scope.replaced,
        previous_config=scope.previous,
    )
