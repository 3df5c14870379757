"""The in-process executor: trials one after another, for debugging and CPU runs.

It knows nothing about pruning: it takes trial specs, skips the finished ones, runs the rest
through `run_trial`, and writes each record as soon as it exists. Each trial checkpoints to
`<out>/checkpoints/<key>.pt` every `checkpoint_every` epochs, so a run killed mid-trial resumes
that trial where it stopped (the running record names the checkpoint, a Tune one included);
the file goes once the trial is done or diverged.
"""

from __future__ import annotations

import os
import platform
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from pai_bench.data import Dataset
from pai_bench.runner.checkpoints import FileCheckpoint, resume_point
from pai_bench.store import FINAL_STATUSES, ResultStore
from pai_bench.trial import TrialSpec, base_record, data_key, run_trial


def run_local(
    specs: Sequence[TrialSpec],
    store: ResultStore,
    datasets: Mapping[tuple, Dataset],
    progress: bool = True,
    checkpoint_every: int = 0,
) -> Counter:
    """Run the unfinished trials of `specs` on `datasets` (by `data_key`; a `SuiteDatasets`
    loads each when first asked for); return how many ended in each status."""
    todo = store.unfinished(specs)
    # A dataset's trials run together, so a `SuiteDatasets` reads each dataset once.
    keys = list(dict.fromkeys(data_key(spec) for spec in todo))
    todo.sort(key=lambda spec: keys.index(data_key(spec)))
    counts: Counter = +Counter(skipped=len(specs) - len(todo))  # unary + drops a zero count
    bar = tqdm(total=len(todo), unit="trial", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    try:
        for spec in todo:
            bar.set_description(spec.label)
            record = _run_one(spec, store, datasets[data_key(spec)], checkpoint_every)
            counts[record["status"]] += 1
            if record["status"] == "failed":
                bar.write(f"trial {spec.key} ({spec.label}) failed: {record['error']}")
            bar.set_postfix({status: counts[status] for status in ("done", "failed", "diverged") if counts[status]})
            bar.update()
    finally:
        bar.close()
    return counts


def checkpoint_folder(store: ResultStore) -> Path:
    return store.root / "checkpoints"


def _run_one(spec: TrialSpec, store: ResultStore, dataset: Dataset, checkpoint_every: int) -> dict:
    """Run one trial, its running record naming its latest checkpoint; write its record."""
    running = base_record(spec, "running")
    point = resume_point(store.read(spec.key))
    if point:
        running["checkpoint"] = point
    store.write(running)
    path = checkpoint_folder(store) / f"{spec.key}.pt"

    def saved(state: dict) -> None:
        running["checkpoint"] = {"path": str(path.resolve()), "epoch": state["train"]["epoch"]}
        store.write(running)

    checkpoint = FileCheckpoint(path, checkpoint_every, resume_from=point["path"] if point else None, on_save=saved)
    record = run_trial(spec, dataset=dataset, checkpoint=checkpoint)
    record["runner"] = {"executor": "local", "node": platform.node(), "pid": os.getpid(), "threads": torch.get_num_threads()}
    if record["status"] == "failed" and "checkpoint" in running:
        record["checkpoint"] = running["checkpoint"]  # the next run resumes from it
    store.write(record)
    if record["status"] in FINAL_STATUSES:
        checkpoint.discard()
    return record
