"""One trajectory of a trajectory method (imp): a unit of work that yields a record per sparsity.

Iterative magnitude pruning trains inside pruning, and one trajectory per seed passes through
every sparsity of a grid: level 0 trains the dense network; each later level prunes the
trained weights of the level before (global magnitude, `pai_bench.pruning.select`, so the
count is exact, ties are drawn with a seeded generator and a pruned weight never returns),
rewinds the kept ones to the rewind point and trains again. Where a level's density is one of
the grid's, its trained network is that sparsity's trial: its record is written as the
trajectory reaches it, under the key the grid gives that trial, so tables, tests, ablations and
the leaderboard treat the method as any other. Nine separate trials would train 99 levels for
the paper's grid (level L trains L + 1 times); one trajectory trains 19.

Like OpenLTH's lottery runner, the trajectory is its own module with its own resume points,
the executors run it as one unit (one Tune trial, one step of the local executor, grouped by
`pai_bench.units`), and the single-trial code knows nothing of it; what the two share (set-up,
seeded training, checkpoint checks, record fields, failure handling) is `pai_bench.work`.
It checkpoints through the same `CheckpointHook` as a trial: at the start of every level (its
masks) and inside a level's training every `every` epochs and at its last epoch, each
checkpoint carrying the records made so far. Killed
anywhere, a rerun goes on from the latest checkpoint: no level is lost, none trained twice,
and a record whose level ended before the kill is handed out again as it was.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from pai_bench.data import Dataset
from pai_bench.errors import UserError
from pai_bench.flops import trial_figures
from pai_bench.masks import Masks, apply_masks, full_masks, layer_stats, prunable_parameters
from pai_bench.pruning import TIE_BREAK_SEED_OFFSET, kept_count, select
from pai_bench.spec import TrialSpec, base_record, now
from pai_bench.training import EpochCallback, TrainResult, resolve_device
from pai_bench.units import (
    Trajectory,
    cost_lines,
    is_trajectory_method,
    level_paths,
    member_specs,
    needs_reached_masks,
    reached_masks_key,
    trajectory_epochs,
    trajectory_method,
    work_units,
)
from pai_bench.work import (
    CheckpointHook,
    attempt,
    build_network,
    input_shape,
    mask_summary,
    seeded_train,
    training_outcome,
    training_set,
    usable_checkpoint,
)

#: Importable from here as before a grid's units had a module of their own (`pai_bench.units`).
__all__ = [
    "CHECKPOINT_FORMAT",
    "RecordCallback",
    "Trajectory",
    "classifier_names",
    "cost_lines",
    "is_trajectory_method",
    "level_paths",
    "member_specs",
    "needs_reached_masks",
    "reached_masks_key",
    "run_trajectory",
    "trajectory_epochs",
    "work_units",
]

#: Bumped when a trajectory checkpoint's content changes; older ones are then ignored.
CHECKPOINT_FORMAT = 1

#: Hears each record of a trajectory once per run, as it is reached (or, for the members it
#: could not reach, at the end), with the masks of a done record.
RecordCallback = Callable[[dict[str, Any], Masks | None], None]


def run_trajectory(
    trajectory: Trajectory,
    dataset: Dataset | None = None,
    checkpoint: CheckpointHook | None = None,
    on_record: RecordCallback | None = None,
    on_epoch: EpochCallback | None = None,
) -> list[dict[str, Any]]:
    """Run the trajectory; return one record per member, each also handed to `on_record`.

    Done records are handed out as their level ends; if the trajectory fails (an error) the
    members it did not reach are recorded as failed with the reason, and if a level's training
    diverges they are recorded as diverged (rerunning would diverge again). With a
    `checkpoint` hook it resumes from its latest checkpoint; `on_epoch` sees every epoch run now.
    """
    records: dict[str, dict[str, Any]] = {}

    def handed(record: dict[str, Any], masks: Masks | None) -> None:
        records[record["key"]] = record
        if on_record is not None:
            on_record(record, masks)

    started = time.perf_counter()
    outcome = attempt(trajectory.base, dataset, lambda data: _Run(trajectory, data, checkpoint, handed, on_epoch).run())
    if outcome.get("status") == "diverged":
        outcome["error"] = f"the trajectory diverged: {outcome['error']}"
    for spec in trajectory.members:
        if spec.key not in records:
            record = base_record(spec, outcome.get("status", "failed"))
            record.update(outcome or {"error": "the trajectory ended without reaching this sparsity"})
            record["timings"] = {"trajectory_s": time.perf_counter() - started}
            handed(record, None)
    return [records[spec.key] for spec in trajectory.members]


class _Run:
    """The state of one trajectory as it runs: the model, the current masks, the rewind point,
    the records made so far; `run` goes level by level from wherever the checkpoint stood."""

    def __init__(
        self,
        trajectory: Trajectory,
        dataset: Dataset,
        checkpoint: CheckpointHook | None,
        on_record: RecordCallback,
        on_epoch: EpochCallback | None,
    ) -> None:
        self.trajectory = trajectory
        self.base = spec = trajectory.base
        self.dataset = dataset
        self.checkpoint = checkpoint
        self.on_record = on_record
        self.on_epoch = on_epoch
        self.method = trajectory_method(spec)
        self.plan = list(trajectory.members[-1].levels or [])
        self.at_level = {len(member.levels or []): member for member in trajectory.members}
        self.rewind_epoch = self.method.rewind_epoch()
        if not 0 <= self.rewind_epoch < spec.train.epochs:
            raise UserError(
                f"{spec.method}.rewind={self.rewind_epoch}: the rewind point must come before the last epoch "
                f"(train.epochs={spec.train.epochs}); use init or fewer epochs"
            )
        self.device = resolve_device(spec.train.device)
        self.dense = build_network(spec, dataset.num_classes, self.device)
        self.model = copy.deepcopy(self.dense)
        exclude = list(spec.prune.exclude)
        if not self.method.prunes_classifier():
            exclude += [name for name in classifier_names(self.dense)]
        self.params = prunable_parameters(self.dense, exclude)
        if not self.params:
            raise UserError(f"model {spec.model.name} has no prunable (conv or linear) weights")
        self.total = sum(p.numel() for p in self.params.values())
        self.train_set = training_set(dataset, spec)
        self.shape = input_shape(dataset, spec.data)
        self.started = time.perf_counter()
        # What a checkpoint holds (plus, inside a level's training, that training's state).
        self.level = 0
        self.masks: Masks = full_masks(self.params)
        self.rewind: dict[str, Any] | None = None
        self.records: list[dict[str, Any]] = []
        self.level_masks: dict[str, Masks] = {}
        self.trained_epochs = 0  # epochs trained before the current level
        self.prune_s = 0.0  # the current level's pruning time
        self.elapsed_before = 0.0
        self.resumed: dict[str, int] | None = None
        self.level_started = now()

    def run(self) -> None:
        training = self._resume()
        for record in self.records:
            self.on_record(record, self.level_masks.get(record["key"]))
        while True:
            trained, train_s = self._train_level(training)
            training = None
            member = self.at_level.get(self.level)
            if member is not None:
                self._record(member, trained, train_s)
            if self.level >= len(self.plan):
                return
            self.trained_epochs += len(trained.epochs)
            self._prune_next()
            self._save(None)

    # --- levels ---------------------------------------------------------------------------

    def _train_level(self, training: dict[str, Any] | None) -> tuple[TrainResult, float]:
        """Train the current level (from `training`, a checkpoint's state, if given)."""
        spec = self.base
        if training is not None:
            resume = training
        elif self.level > 0 and self.rewind_epoch > 0:
            if self.rewind is None:
                raise RuntimeError(f"level {self.level} has no rewind point (epoch {self.rewind_epoch} of level 0)")
            resume = {**self.rewind, "model": _masked(self.rewind["model"], self.masks)}
        else:  # level 0, or rewinding to the init: the dense init, masked by the trainer
            resume = None
            self.model.load_state_dict(self.dense.state_dict())
        masks = {name: mask.to(self.device) for name, mask in self.masks.items()}
        every = self.checkpoint.every if self.checkpoint is not None else 0
        last = spec.train.epochs

        def saved(state: dict) -> None:
            epoch = state["epoch"]
            if self.level == 0 and self.rewind_epoch > 0 and epoch == self.rewind_epoch:
                self.rewind = _rewind_point(state)
            if every > 0 and (epoch % every == 0 or epoch == last):
                self._save(state)

        began = time.perf_counter()
        self.level_started = now()
        trained = seeded_train(
            self.model,
            masks,
            self.train_set,
            self.dataset,
            spec,
            self.device,
            spec.train,
            on_epoch=self.on_epoch,
            save_every=1,
            on_save=saved,
            resume=resume,
        )
        return trained, time.perf_counter() - began

    def _prune_next(self) -> None:
        """The next level's masks: the current ones less the smallest trained weights."""
        began = time.perf_counter()
        self.level += 1
        keep = kept_count(self.total, 1.0 - self.plan[self.level - 1])
        scores = self.method.score(self.model, self.masks)
        generator = torch.Generator().manual_seed(TIE_BREAK_SEED_OFFSET + self.base.seed + self.level)
        chosen = select(scores, {name: mask.to(self.device) for name, mask in self.masks.items()}, keep, generator=generator)
        self.masks = {name: mask.cpu() for name, mask in chosen.masks.items()}
        self.prune_s = time.perf_counter() - began

    def _record(self, member: TrialSpec, trained: TrainResult, train_s: float) -> None:
        spec = self.base
        record = base_record(member, "done")
        record["started_at"] = self.level_started
        record["options"] = self.method.option_values()
        record["device"] = str(self.device)
        pruned = copy.deepcopy(self.dense)
        masks = {name: mask.to(self.device) for name, mask in self.masks.items()}
        apply_masks(pruned, masks)
        record.update(mask_summary(self.dense, pruned, masks, layer_stats(masks), self.shape))
        record.update(trial_figures(self.dense, pruned, masks, self.shape))
        record["train_budget"] = {"ratio": 1.0, "epochs": spec.train.epochs, "milestones": list(spec.train.milestones)}
        schedule = [{"level": 0, "density": 1.0, "kept": self.total}]
        schedule += [{"level": i + 1, "density": d, "kept": kept_count(self.total, 1.0 - d)} for i, d in enumerate(self.plan[: self.level])]
        # What the mask cost: the training of every level before this one. This level's own
        # training (from the rewind point to the end) is the trial's, as for any method.
        record["mask_train_epochs"] = self.trained_epochs
        record["trajectory"] = {
            "key": self.trajectory.key,
            "level": self.level,
            "levels": schedule,
            "fraction": self.method.option_values().get("fraction"),
            "rewind_epoch": self.rewind_epoch,
            "pruned": "global magnitude of the trained weights" + ("" if self.method.prunes_classifier() else ", classifier kept dense"),
            "trained_epochs": len(trained.epochs),
        }
        if self.resumed is not None:
            record["trajectory"]["resumed_from"] = dict(self.resumed)
        record["epochs"] = list(trained.epochs)
        record.update(training_outcome(trained))
        record["timings"] = {
            "prune_s": self.prune_s,
            "train_s": train_s,
            "trajectory_s": self.elapsed_before + time.perf_counter() - self.started,
        }
        record["finished_at"] = now()
        self.records.append(record)
        self.level_masks[record["key"]] = dict(self.masks)
        self.on_record(record, dict(self.masks))

    # --- checkpoints ----------------------------------------------------------------------

    def _save(self, training: dict[str, Any] | None) -> None:
        """Checkpoint the trajectory: at a level's start (`training` None) or inside its training."""
        if self.checkpoint is None or self.checkpoint.every <= 0:
            return
        self.checkpoint.save(
            {
                "format": CHECKPOINT_FORMAT,
                "key": self.trajectory.key,
                "level": self.level,
                "masks": self.masks,
                "rewind": self.rewind,
                "train": training,
                # JSON text: a record holds str subclasses (torch's version) that
                # torch.load(weights_only=True) refuses
                "records": json.dumps(self.records, default=str),
                "level_masks": self.level_masks,
                "trained_epochs": self.trained_epochs,
                "prune_s": self.prune_s,
                "elapsed_s": self.elapsed_before + time.perf_counter() - self.started,
            }
        )

    def _resume(self) -> dict[str, Any] | None:
        """Take up the latest checkpoint, if it is this trajectory's; its training state, if any."""
        saved = usable_checkpoint(self.checkpoint, self.trajectory.key, CHECKPOINT_FORMAT, "trajectory")
        if saved is None:
            return None
        self.level = int(saved["level"])
        self.masks = dict(saved["masks"])
        self.rewind = saved["rewind"]
        self.records = json.loads(saved["records"])
        self.level_masks = dict(saved["level_masks"])
        self.trained_epochs = int(saved["trained_epochs"])
        self.prune_s = float(saved["prune_s"])
        self.elapsed_before = float(saved["elapsed_s"])
        training = saved["train"]
        self.resumed = {"level": self.level, "epoch": int(training["epoch"]) if training else self.rewind_epoch if self.level else 0}
        return training


def classifier_names(model: nn.Module) -> list[str]:
    """The classifier's weight: that of the model's last linear layer (none if it has none)."""
    linear = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    return [f"{linear[-1]}.weight"] if linear else []


def _rewind_point(state: Mapping[str, Any]) -> dict[str, Any]:
    """The training state to start later levels from: the weights, schedule and RNG after the
    rewind epoch, a fresh momentum (OpenLTH's fresh optimizer), no epochs of its own."""
    optimizer = {"state": {}, "param_groups": copy.deepcopy(state["optimizer"]["param_groups"])}
    return {
        "epoch": state["epoch"],
        "epochs": [],
        "model": {name: tensor.detach().clone() for name, tensor in state["model"].items()},
        "optimizer": optimizer,
        "scheduler": copy.deepcopy(state["scheduler"]),
        "rng": state["rng"].clone(),
        "cuda_rng": state["cuda_rng"].clone() if state.get("cuda_rng") is not None else None,
    }


def _masked(weights: Mapping[str, torch.Tensor], masks: Masks) -> dict[str, torch.Tensor]:
    """`weights` (a state dict) with the masked entries zeroed, so training starts masked."""
    out = dict(weights)
    for name, mask in masks.items():
        out[name] = weights[name] * mask.to(weights[name].device, weights[name].dtype)
    return out
