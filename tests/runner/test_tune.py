"""The Ray Tune executor on one Ray session with 4 logical CPUs and 1 logical GPU: the CLI on
the quickstart, four 0.25-GPU trials packed on the one GPU, a lost worker retried from its
checkpoint, a failing trial recorded while the suite goes on."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import ray
from quick_trials import SMALL, small_specs
from ray import tune

from pai_bench.cli import main
from pai_bench.config import RayConfig, ResourcesConfig, load_config
from pai_bench.errors import UserError
from pai_bench.grid import expand_grid
from pai_bench.runner.tune import _location, _Recorder, _trial_name, plan_resources, run_tune
from pai_bench.store import ResultStore
from pai_bench.trial import data_key


@pytest.fixture(scope="module")
def ray_session():
    ray.init(address="local", num_cpus=4, num_gpus=1, object_store_memory=150 * 2**20, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


def run(specs, store, quickstart, callbacks=(), **resources):
    datasets = {data_key(spec): quickstart for spec in specs}
    return run_tune(specs, store, datasets, ResourcesConfig(**resources), RayConfig(), checkpoint_every=1, progress=False, callbacks=callbacks)


class Packing(tune.Callback):
    """The most trials holding a quarter of a GPU at once, and the most running at once."""

    def __init__(self) -> None:
        self.held = self.running = self.most_running = 0

    def on_trial_start(self, iteration, trials, trial, **info):
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        self._count_held()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._count_held()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.running -= 1

    def _count_held(self) -> None:
        # Each Tune trial holds its resources through a placement group while it runs.
        groups = ray.util.placement_group_table().values()
        held = sum(g["state"] == "CREATED" and any(b.get("GPU") == 0.25 for b in g["bundles"].values()) for g in groups)
        self.held = max(self.held, held)


def test_four_quarter_gpu_trials_run_at_once_on_one_gpu(ray_session, tmp_path, quickstart):
    # train.device=auto: each trial asks for a quarter of the (logical) GPU; on this CPU-only
    # machine the trial then trains on the CPU, but Ray's placement is the real one. First in
    # the module, so that the four worker processes all start cold, at about the same time.
    specs = small_specs("methods=[random,magnitude]", "sparsities=[0.5,0.9]", "train.device=auto", "train.epochs=2")
    assert len(specs) == 4
    packing = Packing()
    store = ResultStore(tmp_path)
    counts = run(specs, store, quickstart, callbacks=[packing], cpu=1, gpu=0.25)
    assert counts == {"done": 4}
    assert packing.held == 4  # Ray granted all four their quarter of the one GPU at once
    assert [r["runner"]["gpu_ids"] for r in store.records()] == [["0"]] * 4
    # Whether all four also *train* at once depends on how fast this machine starts four
    # Python workers; at least two overlapped, or the GPU share bought nothing.
    assert packing.most_running >= 2


def test_quickstart_through_ray_then_rerun_skips(ray_session, tmp_path, capsys):
    out = tmp_path / "q"
    args = ["run", *SMALL, "methods=[random,magnitude]", "executor=tune", f"out={out}", "--no-progress"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "2 trials" in captured.out and "2 done" in captured.out
    assert "train.device=cpu: trials ask for no GPU" in captured.err
    records = ResultStore(out).records()
    assert [r["status"] for r in records] == ["done", "done"]
    assert all(r["runner"]["executor"] == "tune" and r["runner"]["threads"] == 1 for r in records)
    assert (out / "results.md").read_text().count("(n=1)") == 2
    assert not list((out / "ray").glob("*/*/checkpoint_*"))  # finished trials keep no checkpoint
    assert main(args) == 0
    assert "2 skipped" in capsys.readouterr().out
    assert len(ResultStore(out).records()) == 2


class KillAtFirstCheckpoint(tune.Callback):
    """Kills a trial's worker process once, as a lost node or an OOM kill would."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.killed_at = None

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        if trial.config["trial"]["key"] == self.key and self.killed_at is None:
            self.killed_at = trial.last_result["epoch"]
            ray.kill(trial.temporary_state.ray_actor)


def test_a_lost_worker_is_retried_from_its_checkpoint_and_a_failing_trial_is_recorded(ray_session, tmp_path, quickstart):
    [lost] = small_specs("train.epochs=3")
    [broken] = small_specs("methods=[magnitude]")
    broken = dataclasses.replace(broken, train=dataclasses.replace(broken.train, device="cuda"))  # no GPU here
    killer = KillAtFirstCheckpoint(lost.key)
    store = ResultStore(tmp_path)
    counts = run([lost, broken], store, quickstart, callbacks=[killer], cpu=1, gpu=0)
    assert counts == {"done": 1, "failed": 1}
    record = store.read(lost.key)
    assert killer.killed_at >= 1 and record["resumed_from_epoch"] == killer.killed_at
    assert [e["epoch"] for e in record["epochs"]] == [1, 2, 3]
    failed = store.read(broken.key)
    assert failed["status"] == "failed" and failed["error"] and failed["traceback"]
    assert len(store.records()) == 2


def test_a_trial_out_of_retries_is_recorded_failed_with_its_latest_checkpoint(tmp_path):
    # The driver's side alone, with the calls Tune makes for a trial whose worker keeps dying.
    [spec] = small_specs()
    store = ResultStore(tmp_path)
    bar = SimpleNamespace(write=print, update=lambda: None, set_postfix=lambda *a, **k: None)
    recorder = _Recorder(store, {spec.key: spec}, str(tmp_path), bar)
    earlier = {"path": str(tmp_path / "run-1" / "t" / "checkpoint_000001"), "epoch": 2}
    trial = SimpleNamespace(
        config={"trial": {"key": spec.key, "resume": earlier}},
        last_result={"epoch": 3},
        num_failures=3,
        get_error=lambda: "Traceback ...\nray.exceptions.ActorDiedError: The actor died unexpectedly\n",
    )
    recorder.on_trial_start(0, [], trial)
    assert store.read(spec.key)["status"] == "running" and store.read(spec.key)["checkpoint"] == earlier
    recorder.on_checkpoint(0, [], trial, SimpleNamespace(path=str(tmp_path / "run-2" / "t" / "checkpoint_000000")))
    latest = {"path": str(tmp_path / "run-2" / "t" / "checkpoint_000000"), "epoch": 3}
    assert store.read(spec.key)["checkpoint"] == latest
    recorder.on_trial_recover(0, [], trial)
    recorder.on_trial_start(0, [], trial)  # restarted by Tune: still resumes from the latest
    assert store.read(spec.key)["checkpoint"] == latest
    recorder.on_trial_error(0, [], trial)
    record = store.read(spec.key)
    assert record["status"] == "failed" and record["checkpoint"] == latest  # a rerun resumes it
    assert record["error"] == "worker failed 3 time(s), the last: ray.exceptions.ActorDiedError: The actor died unexpectedly"
    recorder.on_trial_complete(0, [], trial)  # no second record
    assert store.read(spec.key) == record and len(store.records()) == 1


def test_plan_resources_drops_the_gpu_share_where_there_is_no_gpu():
    gpu_node, cpu_node = {"CPU": 16, "GPU": 1}, {"CPU": 8}
    assert plan_resources(2, 0.25, [gpu_node]) == ({"cpu": 2, "gpu": 0.25}, [])
    request, notes = plan_resources(2, 0.25, [cpu_node])
    assert request == {"cpu": 2, "gpu": 0.0} and "no GPU in the Ray cluster" in notes[0]
    request, notes = plan_resources(1, 1, [gpu_node], cpu_only=True)
    assert request["gpu"] == 0.0 and "train.device=cpu" in notes[0]
    with pytest.raises(UserError, match="no node of the Ray cluster can hold a trial of resources.cpu=32"):
        plan_resources(32, 1, [gpu_node, cpu_node])
    request, notes = plan_resources(32, 1, [gpu_node], strict=False)  # a joined cluster may grow
    assert request == {"cpu": 32, "gpu": 1} and "wait until one joins" in notes[0]


def test_checkpoint_locations_keep_the_storage_uri():
    assert _location("/runs/q/ray", "/runs/q/ray/run-1/t/checkpoint_000002") == "/runs/q/ray/run-1/t/checkpoint_000002"
    assert _location("s3://bucket/pai/", "bucket/pai/run-1/t/checkpoint_000002") == "s3://bucket/pai/run-1/t/checkpoint_000002"
    assert _location("hdfs://name:9000/pai", "/pai/run-1/t/checkpoint_000002") == "hdfs://name:9000/pai/run-1/t/checkpoint_000002"


def test_trial_names_say_the_row_a_variant_s_name_or_the_method():
    config = load_config("quickstart", ["methods=[snip,snip-train]", "ablations=[shuffle]", "seeds=1", "sparsities=[0.9]"])
    names = [_trial_name(SimpleNamespace(config={"trial": {"key": s.key, "spec": s.as_dict()}})) for s in expand_grid(config)]
    keys = [s.key for s in expand_grid(config)]
    assert names == [f"snip-s0.9-seed0-{keys[0]}", f"snip-train-s0.9-seed0-{keys[1]}", f"snip-shuffle-s0.9-seed0-{keys[2]}",
                     f"snip-train-shuffle-s0.9-seed0-{keys[3]}"]  # fmt: skip
