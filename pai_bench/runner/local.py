"""The in-process executor: trials one after another, for debugging and CPU runs.

It knows nothing about pruning: it takes trial specs, skips the finished ones, runs the rest
through `run_trial`, and writes each record as soon as it exists. Each trial checkpoints to
`<out>/checkpoints/<key>.pt` every `checkpoint_every` epochs, so a run killed mid-trial resumes
that trial where it stopped (the running record names the checkpoint, a Tune one included);
the file goes once the trial is done or diverged. A trajectory method's (imp's) trials of one
seed and cell run as one step, their trajectory (`pai_bench.trajectory`), which writes each
trial's record as it reaches that sparsity and checkpoints to `<out>/checkpoints/<its key>.pt`.
"""

from __future__ import annotations

import os
import platform
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from pai_bench.data import Dataset
from pai_bench.runner.checkpoints import FileCheckpoint, resume_point
from pai_bench.spec import TrialSpec, base_record
from pai_bench.store import FINAL_STATUSES, ResultStore
from pai_bench.trajectory import run_trajectory
from pai_bench.trial import run_trial
from pai_bench.units import Trajectory, member_specs, needs_reached_masks, reached_masks_key, work_units
from pai_bench.work import data_key


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
    # A trajectory method's trials run as one trajectory per seed and cell, all its members in
    # it (those already done are not written again); a unit is to do while any member is.
    unfinished = {spec.key for spec in todo}
    units = [unit for unit in work_units(specs) if any(spec.key in unfinished for spec in member_specs(unit))]
    # A dataset's trials run together, so a `SuiteDatasets` reads each dataset once.
    keys = list(dict.fromkeys(data_key(member_specs(unit)[0]) for unit in units))
    # An ablated trial of a trajectory method starts from the masks its trajectory reached.
    units.sort(key=lambda unit: (keys.index(data_key(member_specs(unit)[0])), needs_reached_masks(unit)))
    counts: Counter = +Counter(skipped=len(specs) - len(todo))  # unary + drops a zero count
    bar = tqdm(total=len(todo), unit="trial", disable=not progress, file=sys.stderr, dynamic_ncols=True)

    def finished(record: dict) -> None:
        counts[record["status"]] += 1
        if record["status"] == "failed":
            bar.write(f"trial {record['key']} ({TrialSpec.from_dict(record['config']).label}) failed: {record['error']}")
        bar.set_postfix({status: counts[status] for status in ("done", "failed", "diverged") if counts[status]})
        bar.update()

    try:
        for unit in units:
            bar.set_description(unit.label)
            dataset = datasets[data_key(member_specs(unit)[0])]
            if isinstance(unit, Trajectory):
                _run_trajectory(unit, store, dataset, checkpoint_every, finished)
            else:
                masks = store.read_masks(reached_masks_key(unit)) if needs_reached_masks(unit) else None
                finished(_run_one(unit, store, dataset, checkpoint_every, masks))
    finally:
        bar.close()
    return counts


def checkpoint_folder(store: ResultStore) -> Path:
    return store.root / "checkpoints"


def _run_one(spec: TrialSpec, store: ResultStore, dataset: Dataset, checkpoint_every: int, masks: dict | None = None) -> dict:
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
    record = run_trial(spec, dataset=dataset, checkpoint=checkpoint, masks=masks)
    record["runner"] = _runner()
    if record["status"] == "failed" and "checkpoint" in running:
        record["checkpoint"] = running["checkpoint"]  # the next run resumes from it
    store.write(record)
    if record["status"] in FINAL_STATUSES:
        checkpoint.discard()
    return record


def _run_trajectory(trajectory: Trajectory, store: ResultStore, dataset: Dataset, checkpoint_every: int, finished: Callable[[dict], None]) -> None:
    """Run one trajectory, its members' running records naming its latest checkpoint; write
    each member's record as the trajectory reaches it (one already done stays as it is)."""
    pending = [spec for spec in trajectory.members if not store.is_final(spec.key)]
    point = next((found for found in (resume_point(store.read(spec.key)) for spec in pending) if found), None)
    running = {spec.key: base_record(spec, "running") for spec in pending}
    for record in running.values():
        if point:
            record["checkpoint"] = point
        store.write(record)
    path = checkpoint_folder(store) / f"{trajectory.key}.pt"

    def saved(state: dict) -> None:
        epoch = state["train"]["epoch"] if state["train"] else None
        for record in running.values():
            record["checkpoint"] = {"path": str(path.resolve()), "level": state["level"], "epoch": epoch}
            store.write(record)

    def reached(record: dict, masks: dict | None) -> None:
        if masks is not None and store.read_masks(record["key"]) is None:
            store.write_masks(record["key"], masks)  # for the ablated trials of this mask
        before = running.pop(record["key"], None)
        if before is None:  # done in an earlier run, handed out again from the checkpoint
            return
        record["runner"] = _runner()
        if record["status"] == "failed" and "checkpoint" in before:
            record["checkpoint"] = before["checkpoint"]  # the next run resumes from it
        store.write(record)
        finished(record)

    checkpoint = FileCheckpoint(path, checkpoint_every, resume_from=point["path"] if point else None, on_save=saved)
    run_trajectory(trajectory, dataset=dataset, checkpoint=checkpoint, on_record=reached)
    if all(store.is_final(spec.key) for spec in trajectory.members):
        checkpoint.discard()


def _runner() -> dict:
    return {"executor": "local", "node": platform.node(), "pid": os.getpid(), "threads": torch.get_num_threads()}
