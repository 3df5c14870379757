"""Trial checkpoints: a trial stopped after any epoch and resumed ends exactly where an
uninterrupted one does, and the local executor resumes a killed run from its checkpoint."""

from __future__ import annotations

import io

import pytest
import torch
from quick_trials import small_specs

from pai_bench.runner import local
from pai_bench.runner.checkpoints import FileCheckpoint, read_checkpoint, resume_point, write_state
from pai_bench.store import ResultStore
from pai_bench.trial import CHECKPOINT_FORMAT, data_key, run_trial


class MemoryCheckpoint:
    """Keeps every saved state, each through torch.save and torch.load(weights_only=True)."""

    def __init__(self, every: int, start: dict | None = None) -> None:
        self.every = every
        self.start = start
        self.states: list[dict] = []

    def load(self) -> dict | None:
        return self.start

    def save(self, state: dict) -> None:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        buffer.seek(0)
        self.states.append(torch.load(buffer, weights_only=True))


class Stop(Exception):
    """Ends a trial after an epoch, as a killed process would."""


def stop_after(epoch: int):
    def on_epoch(metrics: dict) -> None:
        if metrics["epoch"] == epoch:
            raise Stop

    return on_epoch


def assert_same_tensors(a, b, where="") -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for name in a:
            assert_same_tensors(a[name], b[name], f"{where}.{name}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def without_seconds(epochs: list[dict]) -> list[dict]:
    return [{k: v for k, v in metrics.items() if k != "seconds"} for metrics in epochs]


ENGINES = {"fast-bf16": ("train.fast=true", True), "fast-fp32": ("train.fast=true", False), "reference": ("train.fast=false", False)}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("method", ["random", "scratch-e"])
def test_resumed_trial_ends_with_the_uninterrupted_weights(quickstart, method, engine, monkeypatch):
    # Resumed across a learning-rate milestone, with augmentation and shuffling: every stream
    # (data order, crops, flips, momentum, schedule) must pick up where it stopped, on each
    # engine a CPU trains with (bf16 is forced on where the CPU only emulates it).
    import pai_bench.engine

    fast, bf16 = ENGINES[engine]
    monkeypatch.setattr(pai_bench.engine, "cpu_has_bf16", lambda: bf16)
    [spec] = small_specs(f"methods=[{method}]", "train.epochs=2", "train.milestones=[1]", fast)
    whole = MemoryCheckpoint(every=1)
    uninterrupted = run_trial(spec, dataset=quickstart, checkpoint=whole)
    assert uninterrupted["status"] == "done" and [s["train"]["epoch"] for s in whole.states] == [1, 2]
    assert (uninterrupted["engine"], uninterrupted["precision"]) == (engine.split("-")[0], "bf16" if bf16 else "fp32")
    assert [e["lr"] for e in uninterrupted["epochs"]] == [spec.train.lr, spec.train.lr * spec.train.gamma]

    first = MemoryCheckpoint(every=1)
    stopped = run_trial(spec, on_epoch=stop_after(1), dataset=quickstart, checkpoint=first)
    assert stopped["status"] == "failed" and [s["train"]["epoch"] for s in first.states] == [1]

    seen = []
    second = MemoryCheckpoint(every=1, start=first.states[-1])
    resumed = run_trial(spec, on_epoch=lambda m: seen.append(m["epoch"]), dataset=quickstart, checkpoint=second)
    assert resumed["status"] == "done" and resumed["resumed_from_epoch"] == 1
    assert seen == [2]  # the hook sees the epochs run now; the record holds them all
    assert without_seconds(resumed["epochs"]) == without_seconds(uninterrupted["epochs"])
    assert resumed["test_acc"] == uninterrupted["test_acc"]
    for field in ("masks", "options", "train_budget", "macs", "params"):
        assert resumed[field] == uninterrupted[field]
    # Pruning was not run again: its timing is the first run's, from the checkpoint.
    assert resumed["timings"]["prune_s"] == stopped["timings"]["prune_s"]
    final, expected = second.states[-1]["train"], whole.states[-1]["train"]
    assert final["epoch"] == 2
    for part in ("model", "optimizer", "scheduler", "rng"):
        assert_same_tensors(final[part], expected[part], part)


def test_a_checkpoint_of_another_trial_or_format_is_ignored(quickstart):
    [spec] = small_specs()
    for start in ({"format": CHECKPOINT_FORMAT, "key": "0123456789abcdef"}, {"format": CHECKPOINT_FORMAT + 1, "key": spec.key}):
        with pytest.warns(UserWarning, match="another trial or format"):
            record = run_trial(spec, dataset=quickstart, checkpoint=MemoryCheckpoint(every=0, start=start))
        assert record["status"] == "done" and "resumed_from_epoch" not in record


def test_checkpoint_files_are_atomic_and_unreadable_ones_start_over(tmp_path, capsys):
    path = tmp_path / "c" / "k.pt"
    write_state({"epoch": torch.tensor(3)}, path)
    assert read_checkpoint(path)["epoch"] == 3 and not list(path.parent.glob(".tmp-*"))
    folder = tmp_path / "tune-checkpoint"
    write_state({"epoch": 4}, folder / "state.pt")
    assert read_checkpoint(folder)["epoch"] == 4  # a Tune checkpoint folder reads the same
    path.write_bytes(b"not a checkpoint")
    assert read_checkpoint(path) is None and "starts over" in capsys.readouterr().err
    assert read_checkpoint(tmp_path / "gone.pt") is None and "is gone" in capsys.readouterr().err
    hook = FileCheckpoint(tmp_path / "own.pt", every=2, resume_from=str(folder))
    assert hook.load() == {"epoch": 4}
    hook.save({"epoch": 6})
    assert hook.load() == {"epoch": 6}


def test_resume_point_comes_from_unfinished_records_only():
    point = {"path": "/x/checkpoint_000002", "epoch": 2}
    assert resume_point({"status": "running", "checkpoint": point}) == point
    assert resume_point({"status": "failed", "checkpoint": point}) == point
    assert resume_point({"status": "done", "checkpoint": point}) is None
    assert resume_point({"status": "running"}) is None and resume_point(None) is None


def test_local_executor_resumes_a_killed_run_from_its_checkpoint(tmp_path, quickstart, monkeypatch):
    specs = small_specs("methods=[random,magnitude]", "train.epochs=2")
    datasets = {data_key(spec): quickstart for spec in specs}
    real_run_trial = local.run_trial

    def killed_after_epoch_1_of_the_second_trial(spec, **kwargs):
        if spec.key != specs[1].key:
            return real_run_trial(spec, **kwargs)

        def kill(metrics):
            if metrics["epoch"] == 1:
                raise KeyboardInterrupt  # not caught by run_trial, as a kill is not

        return real_run_trial(spec, on_epoch=kill, **kwargs)

    store = ResultStore(tmp_path / "run")
    monkeypatch.setattr(local, "run_trial", killed_after_epoch_1_of_the_second_trial)
    with pytest.raises(KeyboardInterrupt):
        local.run_local(specs, store, datasets, progress=False, checkpoint_every=1)
    monkeypatch.setattr(local, "run_trial", real_run_trial)
    left = store.read(specs[1].key)
    assert left["status"] == "running" and left["checkpoint"]["epoch"] == 1
    assert store.read(specs[0].key)["status"] == "done"

    counts = local.run_local(specs, store, datasets, progress=False, checkpoint_every=1)
    assert counts == {"skipped": 1, "done": 1}
    record = store.read(specs[1].key)
    assert record["resumed_from_epoch"] == 1 and "checkpoint" not in record
    assert [e["epoch"] for e in record["epochs"]] == [1, 2]
    assert not list((store.root / "checkpoints").glob("*"))  # finished trials leave no checkpoint
    assert len(store.records()) == 2
