"""One imp trajectory on quicknet with the shipped quickstart images (40 to train on, 40 to
test on): exact counts at every level, nested masks, rewinding, and kill-and-resume."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pai_bench import work as work_module  # where a unit of work calls `train`
from pai_bench.config import load_config
from pai_bench.masks import prunable_parameters
from pai_bench.models import build_model
from pai_bench.pruning import kept_count
from pai_bench.runner.checkpoints import FileCheckpoint
from pai_bench.grid import expand_grid
from pai_bench.engine import FastTrainer
from pai_bench.training import ReferenceTrainer
from pai_bench.trajectory import Trajectory, classifier_names, run_trajectory, work_units
from pai_bench.trial import load_trial_data

#: fraction 0.5 and sparsities 0.6, 0.9: levels 0.5, 0.4 (partial), 0.2, 0.1 (lands on it).
SMALL = ["data.subset=40", "train.batch_size=20", "seeds=1", "methods=[imp]", "imp.fraction=0.5", "sparsities=[0.6,0.9]", "train.epochs=2", "train.milestones=[1]"]


def small_trajectory(*overrides: str) -> Trajectory:
    units = work_units(expand_grid(load_config("quickstart", [*SMALL, *overrides])))
    assert len(units) == 1 and isinstance(units[0], Trajectory)
    return units[0]


@pytest.fixture(scope="module")
def quickstart():
    dataset = load_trial_data(small_trajectory().base)
    return dataclasses.replace(dataset, test=dataset.test.subset(torch.arange(40)))


class Levels:
    """What each level's training starts from: the masks handed to `train` and the weights
    the first epoch sees (after any rewind state is restored and the masks applied), and the
    weights at the start of every epoch of level 0."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.masks: list[dict] = []
        self.starts: list[dict] = []
        self.level0_epochs: list[dict] = []
        self._trainers: list = []
        real_train = work_module.train

        def train(model, masks, *args, **kwargs):
            self.masks.append({name: mask.clone().cpu() for name, mask in masks.items()})
            return real_train(model, masks, *args, **kwargs)

        def watched(real_epoch):
            def train_epoch(trainer, batches):
                weights = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
                if trainer not in self._trainers:
                    self._trainers.append(trainer)
                    self.starts.append(weights)
                if len(self._trainers) == 1:
                    self.level0_epochs.append(weights)
                return real_epoch(trainer, batches)

            return train_epoch

        monkeypatch.setattr(work_module, "train", train)
        # whichever loop trains: the reference, or the fast engine a CPU takes by default
        for trainer_class in (ReferenceTrainer, FastTrainer):
            monkeypatch.setattr(trainer_class, "train_epoch", watched(trainer_class.train_epoch))


def test_plan_of_the_grid_lands_on_each_sparsity():
    trajectory = small_trajectory()
    assert [spec.sparsity for spec in trajectory.members] == [0.6, 0.9]
    assert [spec.levels for spec in trajectory.members] == [[0.5, 0.4], [0.5, 0.4, 0.2, 0.1]]
    assert trajectory.epochs == 2 * 5  # five levels of two epochs
    assert small_trajectory("imp.rewind=1").epochs == 2 + 4 * 1


@pytest.fixture(scope="module")
def uninterrupted(quickstart):
    """The small trajectory run once, uninterrupted: what each level started from, the records
    with their masks as handed out, and the records returned."""
    handed: list = []
    with pytest.MonkeyPatch.context() as patch:
        levels = Levels(patch)
        records = run_trajectory(small_trajectory(), quickstart, on_record=lambda record, masks: handed.append((record, masks)))
    return levels, handed, records


def test_every_level_keeps_its_exact_count_nested_and_rewound_to_init(uninterrupted):
    levels, handed, records = uninterrupted
    trajectory = small_trajectory()
    assert [r["status"] for r in records] == ["done", "done"], [r.get("error") for r in records]
    assert [r["key"] for r, _ in handed] == [spec.key for spec in trajectory.members]

    init = build_model("quicknet", num_classes=10, seed=0)
    params = prunable_parameters(init)
    total = sum(p.numel() for p in params.values())
    densities = [1.0, 0.5, 0.4, 0.2, 0.1]
    assert len(levels.masks) == len(densities)
    for density, masks, start in zip(densities, levels.masks, levels.starts):
        assert sum(int(mask.sum()) for mask in masks.values()) == kept_count(total, 1 - density)
        for name, mask in masks.items():
            # Rewound to the init: each kept weight as initialised, each pruned one zero.
            assert torch.equal(start[name][mask], params[name].detach()[mask])
            assert not start[name][~mask].any()
    for before, after in zip(levels.masks, levels.masks[1:]):
        assert all(not (after[name] & ~before[name]).any() for name in before)  # nested

    # The records: their own masks, the schedule, what the masks cost.
    for (record, masks), level in zip(handed, (2, 4)):
        assert torch.equal(torch.cat([m.flatten() for m in masks.values()]), torch.cat([m.flatten() for m in levels.masks[level].values()]))
        assert record["masks"]["kept"] == kept_count(total, record["sparsity"])
        assert record["trajectory"]["level"] == level
        assert [entry["density"] for entry in record["trajectory"]["levels"]] == densities[: level + 1]
        assert record["mask_train_epochs"] == 2 * level
        assert len(record["epochs"]) == 2
        assert record["test_acc"] == record["epochs"][-1]["test_acc"]
    # The classifier is pruned by default, as every pai-bench method prunes it.
    classifier = classifier_names(init)[0]
    assert not levels.masks[-1][classifier].all()


def test_rewinding_to_an_epoch_starts_each_level_from_that_epoch_weights(quickstart, monkeypatch):
    levels = Levels(monkeypatch)
    trajectory = small_trajectory("imp.rewind=1", "imp.prune_classifier=false")
    records = run_trajectory(trajectory, quickstart)
    assert [r["status"] for r in records] == ["done", "done"], [r.get("error") for r in records]
    after_one_epoch = levels.level0_epochs[1]
    init = build_model("quicknet", num_classes=10, seed=0)
    classifier = classifier_names(init)[0]
    for masks, start in zip(levels.masks[1:], levels.starts[1:]):
        assert classifier not in masks  # kept dense: out of the pool
        for name, mask in masks.items():
            assert torch.equal(start[name][mask], after_one_epoch[name][mask])
            assert not start[name][~mask].any()
        assert torch.equal(start[classifier], after_one_epoch[classifier])
    # Level 0 trains 2 epochs, each later level 1 (from the rewind point to the end).
    assert [len(r["epochs"]) for r in records] == [1, 1]
    assert [r["mask_train_epochs"] for r in records] == [2 + 1, 2 + 3]
    assert records[0]["epochs"][0]["epoch"] == 2


class Killed(BaseException):
    """Stands for a kill: not an Exception, so nothing records it as a failure."""


def test_killed_mid_trajectory_a_rerun_finishes_with_the_uninterrupted_records(quickstart, uninterrupted, tmp_path):
    trajectory = small_trajectory()

    epochs_run = []

    def kill_at_level_three(metrics):
        epochs_run.append(metrics)
        if len(epochs_run) == 7:  # the first epoch of level 3 (levels 0-2 ran six)
            raise Killed

    first = []
    with pytest.raises(Killed):
        run_trajectory(trajectory, quickstart, FileCheckpoint(tmp_path / "t.pt", 1), lambda r, m: first.append(r), kill_at_level_three)
    assert [r["sparsity"] for r in first] == [0.6]

    resumed_epochs, second = [], []
    records = run_trajectory(trajectory, quickstart, FileCheckpoint(tmp_path / "t.pt", 1), lambda r, m: second.append(r), resumed_epochs.append)
    # Nothing lost, nothing trained twice: 7 + 3 epochs are the uninterrupted run's 10.
    assert len(epochs_run) + len(resumed_epochs) == trajectory.epochs
    assert [r["key"] for r in second] == [spec.key for spec in trajectory.members]
    assert second[0] == first[0]  # handed out again as it was
    for got, want in zip(records, uninterrupted[2]):
        assert got["status"] == want["status"] == "done"
        assert got["test_acc"] == want["test_acc"]
        assert [e["train_loss"] for e in got["epochs"]] == [e["train_loss"] for e in want["epochs"]]
        assert got["masks"]["layers"] == want["masks"]["layers"]
    assert records[1]["trajectory"]["resumed_from"] == {"level": 3, "epoch": 1}


def test_a_trajectory_that_cannot_start_records_every_member_failed(quickstart):
    # Rewinding past the last epoch (which the config check refuses; a record read back from
    # elsewhere may still ask for it): every member says so.
    trajectory = small_trajectory("imp.rewind=1")
    members = tuple(dataclasses.replace(member, options={**member.options, "rewind": "2"}) for member in trajectory.members)
    records = run_trajectory(Trajectory(members), quickstart)
    assert [r["status"] for r in records] == ["failed", "failed"]
    assert all("imp.rewind=2" in r["error"] for r in records)
