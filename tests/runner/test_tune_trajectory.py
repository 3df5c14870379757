"""Through Ray Tune, an imp trajectory is one Tune trial that writes the record of every
sparsity it passes, and its ablated trials run after it, from the masks it reached."""

from __future__ import annotations

import dataclasses

import pytest
import ray
from quick_trials import small_specs
from ray import tune

from pai_bench.config import RayConfig, ResourcesConfig
from pai_bench.runner.tune import run_tune
from pai_bench.store import ResultStore
from pai_bench.trajectory import work_units
from pai_bench.trial import data_key


@pytest.fixture(scope="module")
def ray_session():
    ray.init(address="local", num_cpus=2, object_store_memory=150 * 2**20, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


class TuneTrials(tune.Callback):
    """The keys of the Tune trials started."""

    def __init__(self) -> None:
        self.started: list[str] = []

    def on_trial_start(self, iteration, trials, trial, **info):
        self.started.append(trial.config["trial"]["key"])


def test_a_trajectory_is_one_tune_trial_that_writes_all_its_records(ray_session, tmp_path, quickstart):
    specs = small_specs("methods=[imp]", "ablations=[shuffle]", "imp.fraction=0.5", "sparsities=[0.5,0.75]", "data.subset=40", "train.batch_size=20")
    imp = [spec for spec in specs if not spec.ablation]
    assert len(specs) == 4 and len(imp) == 2
    seen = TuneTrials()
    store = ResultStore(tmp_path)
    datasets = {data_key(spec): quickstart for spec in specs}
    counts = run_tune(specs, store, datasets, ResourcesConfig(cpu=1, gpu=0), RayConfig(), checkpoint_every=1, progress=False, callbacks=[seen])
    assert counts == {"done": 4}
    assert len(seen.started) == 3  # one trajectory, then its two shuffled masks
    records = {record["key"]: record for record in store.records()}
    assert len(records) == 4
    trajectory = {records[spec.key]["trajectory"]["key"] for spec in imp}
    assert len(trajectory) == 1 and trajectory.pop() in seen.started  # both records from the one trial
    assert len({records[spec.key]["runner"]["pid"] for spec in imp}) == 1
    assert [records[spec.key]["trajectory"]["level"] for spec in imp] == [1, 2]
    assert all(records[spec.key]["runner"]["executor"] == "tune" for spec in specs)
    for spec in specs:
        if spec.ablation:  # the trajectory's masks at that sparsity, shuffled within each layer
            plain = records[dataclasses.replace(spec, ablation=None).key]
            assert [layer["kept"] for layer in records[spec.key]["masks"]["layers"]] == [layer["kept"] for layer in plain["masks"]["layers"]]
    assert not list((tmp_path / "ray").glob("*/*/checkpoint_*"))  # a finished trajectory keeps no checkpoint


class KillAtCheckpoint(tune.Callback):
    """Kills the worker of the trial with `key` once, at its `nth` checkpoint."""

    def __init__(self, key: str, nth: int) -> None:
        self.key = key
        self.nth = nth
        self.seen = 0

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        if trial.config["trial"]["key"] == self.key:
            self.seen += 1
            if self.seen == self.nth:
                ray.kill(trial.temporary_state.ray_actor)


def test_a_lost_trajectory_worker_resumes_from_its_checkpoint(ray_session, tmp_path, quickstart):
    specs = small_specs("methods=[imp]", "imp.fraction=0.5", "sparsities=[0.5,0.75]", "data.subset=40", "train.batch_size=20", "train.epochs=2")
    [trajectory] = work_units(specs)
    killer = KillAtCheckpoint(trajectory.key, nth=3)  # level 0's two epochs, then level 1's first
    store = ResultStore(tmp_path)
    datasets = {data_key(spec): quickstart for spec in specs}
    counts = run_tune(specs, store, datasets, ResourcesConfig(cpu=1, gpu=0), RayConfig(), checkpoint_every=1, progress=False, callbacks=[killer])
    assert counts == {"done": 2} and killer.seen >= 3
    records = [store.read(spec.key) for spec in specs]
    # Retried from a checkpoint of level 1 or later (the worker may have gone on a little while
    # the driver killed it), not from the start.
    assert records[1]["trajectory"]["resumed_from"]["level"] >= 1
    assert [r["trajectory"]["level"] for r in records] == [1, 2] and [len(r["epochs"]) for r in records] == [2, 2]
    assert len(store.records()) == 2
