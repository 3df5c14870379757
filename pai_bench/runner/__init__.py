"""Run a suite: expand its grid, hand the trials to an executor, write the summary.

Where trials run (the executor: `tune`, Ray Tune, or `local`, in this process) is kept apart
from what a trial does (`pai_bench.trial`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pai_bench.atomic import remove_partial_writes
from pai_bench.config import SuiteConfig, out_dir, to_yaml
from pai_bench.leaderboard import write_leaderboard
from pai_bench.report import results_frame, summary_markdown
from pai_bench.runner.grid import expand_grid
from pai_bench.runner.local import checkpoint_folder, run_local
from pai_bench.runner.suite_data import SuiteDatasets
from pai_bench.store import ResultStore
from pai_bench.variants import label_rows


@dataclass
class RunSummary:
    out: Path
    trials: int
    counts: Counter
    summary_path: Path
    leaderboard_path: Path
    warned: int = 0  # trials whose pruning raised warnings (listed in the leaderboard)


def run_suite(config: SuiteConfig, progress: bool = True) -> RunSummary:
    out = out_dir(config)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(to_yaml(config))
    store = ResultStore(out)
    # What a killed run was writing: records and checkpoints skip it, and nothing writes here yet.
    for folder in (store.trials, checkpoint_folder(store)):
        remove_partial_writes(folder)
    specs = expand_grid(config)
    # The unfinished trials' datasets, each loaded before any trial runs: a missing dataset is
    # bad input (one line, exit 2), not a hundred failed trials.
    datasets = SuiteDatasets(store.unfinished(specs))
    datasets.check()
    if config.executor == "tune":
        # Imported here: Ray takes a while to import, and the local executor does without it.
        from pai_bench.runner.tune import run_tune

        counts = run_tune(specs, store, datasets, config.resources, config.ray, config.checkpoint_every, progress=progress)
    else:
        counts = run_local(specs, store, datasets, progress=progress, checkpoint_every=config.checkpoint_every)
    keys = {spec.key for spec in specs}
    records = label_rows([record for record in store.records() if record["key"] in keys], specs)
    summary_path = out / "results.md"
    summary_path.write_text(f"# {config.suite}\n\ntest accuracy (%), mean ± std over seeds\n\n" + summary_markdown(results_frame(records)))
    # The publishable tables, with the tests; `pai-bench leaderboard DIR out=leaderboard/NAME.md`
    # writes them where they are published.
    leaderboard_path, _ = write_leaderboard(records, out / "leaderboard.md", title=config.suite)
    warned = sum(1 for record in records if record.get("warnings"))
    return RunSummary(out=out, trials=len(specs), counts=counts, summary_path=summary_path, leaderboard_path=leaderboard_path, warned=warned)
