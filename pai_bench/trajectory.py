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
the executors run it as one unit (one Tune trial, one step of the local executor), and the
single-trial code knows nothing of it. It checkpoints through the same `CheckpointHook` as a
trial: at the start of every level (its masks) and inside a level's training every `every`
epochs and at its last epoch, each checkpoint carrying the records made so far. Killed
anywhere, a rerun goes on from the latest checkpoint: no level is lost, none trained twice,
and a record whose level ended before the kill is handed out again as it was.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

import torch
from torch import nn

from pai_bench.data import Dataset
from pai_bench.data.splits import stratified_subset
from pai_bench.errors import UserError
from pai_bench.flops import trial_figures
from pai_bench.masks import Masks, apply_masks, full_masks, layer_stats, prunable_parameters
from pai_bench.method import TrajectoryMethod
from pai_bench.models import build_model
from pai_bench.plugins import create_method, method_class
from pai_bench.pruning import TIE_BREAK_SEED_OFFSET, kept_count, select
from pai_bench.training import Diverged, EpochCallback, TrainResult, eval_loader, resolve_device, train, train_loader
from pai_bench.trial import CheckpointHook, TrialSpec, base_record, failure_fields, input_shape, load_trial_data, mask_summary, training_outcome

#: Bumped when a trajectory checkpoint's content changes; older ones are then ignored.
CHECKPOINT_FORMAT = 1

#: Hears each record of a trajectory once per run, as it is reached (or, for the members it
#: could not reach, at the end), with the masks of a done record.
RecordCallback = Callable[[dict[str, Any], Masks | None], None]


def is_trajectory_method(method: str) -> bool:
    return issubclass(method_class(method), TrajectoryMethod)


def level_paths(method: str, options: Mapping[str, Any], sparsities: Iterable[float]) -> dict[float, list[float]]:
    """For each sparsity, the densities of the levels the method's mask goes through."""
    instance = create_method(method, options)
    if not isinstance(instance, TrajectoryMethod):
        raise TypeError(f"{method} is not a trajectory method")
    return instance.plan([float(s) for s in sparsities])


@dataclass(frozen=True)
class Trajectory:
    """The plain trials of one trajectory method, seed and cell, by increasing sparsity: what
    one trajectory yields. Its key hashes its members' keys: the same grid finds the same
    checkpoint, a changed one starts afresh."""

    members: tuple[TrialSpec, ...]

    @property
    def key(self) -> str:
        return hashlib.sha256(",".join(spec.key for spec in self.members).encode()).hexdigest()[:16]

    @property
    def base(self) -> TrialSpec:
        return self.members[0]

    @property
    def label(self) -> str:
        cell = f", {self.base.cell}" if self.base.cell else ""
        sparsities = ", ".join(f"{spec.sparsity:g}" for spec in self.members)
        return f"{self.base.method} trajectory (s={sparsities}), seed={self.base.seed}{cell}"

    @property
    def epochs(self) -> int:
        """The training epochs the whole trajectory costs: level 0 whole, each later level
        from the rewind point to the end."""
        return trajectory_epochs(self.base, len(self.members[-1].levels or []))


def trajectory_epochs(spec: TrialSpec, levels: int) -> int:
    """Epochs trained by a trajectory of `levels` levels after level 0 (level 0 included)."""
    rewind = _method(spec).rewind_epoch()
    return spec.train.epochs + levels * (spec.train.epochs - rewind)


def cost_lines(specs: Sequence[TrialSpec]) -> list[str]:
    """What each trajectory method of a grid will train, for `pai-bench show` to say before a
    run: a trajectory costs its levels' epochs, where a trial of any other method costs one
    protocol."""
    trajectories: dict[str, list[Trajectory]] = {}
    for unit in work_units(specs):
        if isinstance(unit, Trajectory):
            trajectories.setdefault(unit.base.method, []).append(unit)
    lines = []
    for method, units in trajectories.items():
        longest = max(units, key=lambda unit: unit.epochs)
        levels = len(longest.members[-1].levels or []) + 1
        lines.append(
            f"# {method}: one trajectory per seed and cell: {levels} trained levels (to {100 * longest.members[-1].sparsity:g} % "
            f"sparsity), {longest.epochs} epochs of training each (a trial of another method trains {longest.base.train.epochs}); "
            f"{len(units)} {'trajectory' if len(units) == 1 else 'trajectories'}, {sum(unit.epochs for unit in units)} epochs in all"
        )
    return lines


def work_units(specs: Sequence[TrialSpec]) -> list[TrialSpec | Trajectory]:
    """`specs` as units of work: each trial alone, the plain trials of a trajectory method
    grouped into their trajectory (placed where its first member was)."""
    groups: dict[str, list[TrialSpec]] = {}
    for spec in specs:
        if _in_trajectory(spec):
            groups.setdefault(_trajectory_group(spec), []).append(spec)
    units: list[TrialSpec | Trajectory] = []
    placed: set[str] = set()
    for spec in specs:
        if not _in_trajectory(spec):
            units.append(spec)
        elif (group := _trajectory_group(spec)) not in placed:
            placed.add(group)
            units.append(Trajectory(tuple(sorted(groups[group], key=lambda member: member.sparsity))))
    return units


def _in_trajectory(spec: TrialSpec) -> bool:
    return spec.ablation is None and is_trajectory_method(spec.method)


def _trajectory_group(spec: TrialSpec) -> str:
    """What a trajectory's members share: everything but the sparsity and its levels."""
    return replace(spec, sparsity=0.0, levels=None).key


def member_specs(unit: TrialSpec | Trajectory) -> tuple[TrialSpec, ...]:
    return unit.members if isinstance(unit, Trajectory) else (unit,)


def needs_reached_masks(unit: TrialSpec | Trajectory) -> bool:
    """Whether `unit` is an ablated trial of a trajectory method: it starts from the masks the
    trajectory reached (`reached_masks_key`), so it runs after the trajectories."""
    return isinstance(unit, TrialSpec) and unit.ablation is not None and is_trajectory_method(unit.method)


def reached_masks_key(spec: TrialSpec) -> str:
    """The key the masks an ablated trial of a trajectory method starts from are kept under:
    that of the trajectory's record at its sparsity."""
    return replace(spec, ablation=None).key


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
    outcome: dict[str, Any] = {}
    try:
        dataset = dataset or load_trial_data(trajectory.base)
        _Run(trajectory, dataset, checkpoint, handed, on_epoch).run()
    except Exception as error:  # recorded, not raised: one broken trajectory must not stop a suite
        outcome = failure_fields(error)
        if isinstance(error, Diverged):
            outcome["error"] = f"the trajectory diverged: {error}"
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
        self.method = _method(spec)
        self.plan = list(trajectory.members[-1].levels or [])
        self.at_level = {len(member.levels or []): member for member in trajectory.members}
        self.rewind_epoch = self.method.rewind_epoch()
        if not 0 <= self.rewind_epoch < spec.train.epochs:
            raise UserError(
                f"{spec.method}.rewind={self.rewind_epoch}: the rewind point must come before the last epoch "
                f"(train.epochs={spec.train.epochs}); use init or fewer epochs"
            )
        self.device = resolve_device(spec.train.device)
        options = {"weights": spec.model.weights} if spec.model.weights else {}
        self.dense = build_model(spec.model.name, num_classes=dataset.num_classes, seed=spec.seed, **options).to(self.device)
        self.model = copy.deepcopy(self.dense)
        exclude = list(spec.prune.exclude)
        if not self.method.prunes_classifier():
            exclude += [name for name in classifier_names(self.dense)]
        self.params = prunable_parameters(self.dense, exclude)
        if not self.params:
            raise UserError(f"model {spec.model.name} has no prunable (conv or linear) weights")
        self.total = sum(p.numel() for p in self.params.values())
        self.train_set = dataset.train
        if spec.data.subset is not None:
            self.train_set = self.train_set.subset(stratified_subset(self.train_set.labels, spec.data.subset, spec.seed))
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
        self.level_started = _now()

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
        self.level_started = _now()
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(spec.seed)
            trained = train(
                self.model,
                masks,
                train_loader(self.train_set, self.dataset, spec.data, spec.train, spec.seed, self.device),
                eval_loader(self.dataset.test, self.dataset, spec.data, spec.train, self.device),
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
        record["finished_at"] = _now()
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
        saved = self.checkpoint.load() if self.checkpoint is not None else None
        if saved is None:
            return None
        if saved.get("format") != CHECKPOINT_FORMAT or saved.get("key") != self.trajectory.key:
            print(f"warning: ignoring a checkpoint of another trajectory or format; trajectory {self.trajectory.key} starts over")
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


def _method(spec: TrialSpec) -> TrajectoryMethod:
    method = create_method(spec.method, spec.options)
    if not isinstance(method, TrajectoryMethod):
        raise TypeError(f"{spec.method} is not a trajectory method")
    return method


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


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _masked(weights: Mapping[str, torch.Tensor], masks: Masks) -> dict[str, torch.Tensor]:
    """`weights` (a state dict) with the masked entries zeroed, so training starts masked."""
    out = dict(weights)
    for name, mask in masks.items():
        out[name] = weights[name] * mask.to(weights[name].device, weights[name].dtype)
    return out
