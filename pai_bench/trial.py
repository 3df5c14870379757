"""One trial: build, prune, train, evaluate, and the record that describes it.

With `train.epochs=0` a trial only prunes: its record holds what the masks are at
initialisation (effective sparsity, collapse, pruning time, the NTK and the mask itself when
asked for) and no accuracy.

A trial knows nothing about executors: it is a pure function of its `TrialSpec`, and its key
is a hash of every field that determines the result, so a rerun finds finished work and a
changed protocol never reuses a stale record.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import platform
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Protocol

import torch
import torchvision

from pai_bench.ablations import applies_to, check_ablation, reinit_seed, shuffle_masks
from pai_bench.config import DataConfig, DiagnosticsConfig, ModelConfig, PruneConfig, TrainConfig
from pai_bench.data import Dataset, ImageSet, load_dataset
from pai_bench.data.splits import class_balanced_indices, stratified_subset
from pai_bench.diagnostics import ntk_diagnostics
from pai_bench.effective import effective_masks
from pai_bench.machine import describe_machine
from pai_bench.errors import UserError
from pai_bench.flops import trial_figures
from pai_bench.maskbits import encode_masks
from pai_bench.masks import LayerStat, Masks, apply_masks, full_masks, layer_stats, prunable_parameters
from pai_bench.method import ArchitectureMethod, TrajectoryMethod
from pai_bench.models import build_model
from pai_bench.plugins import create_method
from pai_bench.pruning import PruneResult, prune
from pai_bench.rounding import rounding_agreement
from pai_bench.training import Diverged, EpochCallback, TrainResult, eval_loader, resolve_device, scale_schedule, train, train_loader
from pai_bench.version import __version__

#: Fields that change where or how fast a trial runs, not what it computes.
NOT_IN_KEY = {
    ("data", "root"),
    ("data", "download"),
    ("train", "device"),
    ("train", "eval_batch_size"),
    # the engine, like the device, changes the arithmetic (bf16, fused kernels), not the
    # protocol; its accuracy is checked against the fp32 loop, and each record says which ran
    ("train", "fast"),
}
#: Fields added after trials were first keyed: hashed only when set (not None), so the trials
#: that do not use them keep their keys, and their finished records.
KEY_ONLY_WHEN_SET = {("ablation",), ("levels",), ("prune", "batch_size"), ("data", "rrc_scale"), ("data", "rrc_ratio")}


@dataclass(frozen=True)
class TrialSpec:
    method: str
    sparsity: float
    seed: int
    options: dict[str, Any]
    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    prune: PruneConfig = field(default_factory=PruneConfig)
    suite: str = "custom"
    cell: str | None = None  # the suite's cell (None: a suite without cells); not in the key
    ablation: str | None = None  # shuffle | reinit | invert (pai_bench.ablations); None: the method as it is
    # A trajectory method's (imp's) level densities up to this sparsity (pai_bench.levels): in
    # the key, since the levels a mask went through change it. None for every other method.
    levels: list[float] | None = None
    # Measurements beside the result (NTK at init): not in the key, since they change nothing
    # the trial computes; a finished trial rerun with them turned on is not run again.
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    # The suite's row this trial belongs to: `method` itself, or a variant's name
    # (pai_bench.variants). A label, not in the key: renaming a variant reruns nothing.
    row: str | None = None

    @property
    def row_name(self) -> str:
        return self.row or self.method

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def label(self) -> str:
        """How progress lines name the trial: row (and ablation), sparsity, seed, cell."""
        method = f"{self.row_name} ({self.ablation})" if self.ablation else self.row_name
        cell = f", {self.cell}" if self.cell else ""
        return f"{method}, s={self.sparsity:g}, seed={self.seed}{cell}"

    @property
    def key(self) -> str:
        """A short hash of everything that determines the trial's result."""
        content = self.as_dict()
        content.pop("suite")
        content.pop("cell")  # its model/data/train are in the key; its name is only a label
        content.pop("row")  # the method and options are in the key; the row's name is a label
        content.pop("diagnostics")
        for section, name in NOT_IN_KEY:
            content[section].pop(name)
        for *sections, name in KEY_ONLY_WHEN_SET:
            where = content
            for section in sections:
                where = where[section]
            if where.get(name) is None:
                where.pop(name, None)
        content["pai_bench"] = __version__
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialSpec:
        return cls(
            method=data["method"],
            sparsity=float(data["sparsity"]),
            seed=int(data["seed"]),
            options=dict(data["options"]),
            model=ModelConfig(**data["model"]),
            data=DataConfig(**data["data"]),
            train=TrainConfig(**data["train"]),
            prune=PruneConfig(**data.get("prune", {})),
            suite=data.get("suite", "custom"),
            cell=data.get("cell"),
            ablation=data.get("ablation"),
            levels=data.get("levels"),
            diagnostics=DiagnosticsConfig(**data.get("diagnostics", {})),
            row=data.get("row"),
        )


def versions() -> dict[str, str]:
    return {
        "pai_bench": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
    }


def base_record(spec: TrialSpec, status: str) -> dict[str, Any]:
    return {
        "key": spec.key,
        "status": status,
        "suite": spec.suite,
        "cell": spec.cell,
        "method": spec.method,  # the registered method that ran; its options are the record's `options`
        "row": spec.row_name,  # the suite's row: the method, or a variant of it by name
        "ablation": spec.ablation,
        "sparsity": spec.sparsity,
        "seed": spec.seed,
        "model": spec.model.name,
        "dataset": spec.data.name,
        "config": spec.as_dict(),
        "versions": versions(),
        "machine": describe_machine(),
        "started_at": _now(),
    }


def data_key(spec: TrialSpec) -> tuple:
    """Trials with equal data keys share one loaded dataset."""
    return (spec.data.name, spec.data.root, spec.data.image_size, spec.data.download)


def load_trial_data(spec: TrialSpec) -> Dataset:
    return load_dataset(spec.data.name, spec.data.root, image_size=spec.data.image_size, download=spec.data.download)


def input_shape(dataset: Dataset, data: DataConfig) -> tuple[int, ...]:
    """One example's shape as the model sees it: (C, H, W), resized to `data.input_size` if set."""
    channels, *size = dataset.train.images.shape[1:]
    if data.input_size:
        size = [data.input_size] * len(size)
    return (channels, *size)


class CheckpointHook(Protocol):
    """Where one trial keeps its latest checkpoint; the executor provides it.

    The trial saves every `every` epochs (0: never) a dict that goes through `torch.save` and
    `torch.load(weights_only=True)`, and at its start resumes from what `load` returns.
    """

    every: int

    def load(self) -> dict[str, Any] | None:
        """The latest checkpoint saved for this trial, or None to start from scratch."""

    def save(self, state: dict[str, Any]) -> None:
        """Keep `state` as this trial's latest checkpoint."""


#: Bumped when a checkpoint's content changes; older checkpoints are then ignored.
CHECKPOINT_FORMAT = 1


#: What to do about a trial that ran out of GPU memory (its record is failed, so rerunning the
#: suite retries it).
OUT_OF_MEMORY_HINT = (
    "(trials packed on one GPU share its memory: give each a larger share, e.g. resources.gpu=0.5, "
    "or a smaller prune.batch_size; rerunning the suite retries this trial)"
)


def run_trial(
    spec: TrialSpec,
    on_epoch: EpochCallback | None = None,
    dataset: Dataset | None = None,
    checkpoint: CheckpointHook | None = None,
    masks: Masks | None = None,
) -> dict[str, Any]:
    """Run the trial and return its record: done, diverged, or failed with the reason.

    `masks` are, for an ablated trial of a trajectory method (imp), the masks its trajectory
    reached at this sparsity and seed (the executor keeps them); other trials choose their own.

    A bad config (UserError) or an internal error is recorded as `failed`, so a suite goes on
    past one broken trial and nothing finished before it is lost. With a `checkpoint` hook the
    trial resumes from its latest checkpoint (the record then says `resumed_from_epoch`) and
    ends with the weights and metrics of an uninterrupted run; `on_epoch` sees only the epochs
    run now, the record holds them all.
    """
    record = base_record(spec, "running")
    started = time.perf_counter()
    try:
        dataset = dataset or load_trial_data(spec)
        _run(spec, dataset, record, on_epoch, checkpoint, masks)
        record["status"] = "done"
    except Exception as error:  # recorded, not raised: one broken trial must not stop a suite
        record.update(failure_fields(error))
    record["timings"] = {**record.get("timings", {}), "total_s": time.perf_counter() - started}
    record["finished_at"] = _now()
    return record


def failure_fields(error: Exception) -> dict[str, Any]:
    """A record's status and error for what stopped its training: diverged (a result), a user's
    mistake (its one line), out of GPU memory (with what to do), or a bug (with its traceback)."""
    if isinstance(error, Diverged):
        return {"status": "diverged", "error": str(error)}
    if isinstance(error, UserError):
        return {"status": "failed", "error": str(error)}
    if isinstance(error, torch.cuda.OutOfMemoryError):
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else "CUDA out of memory"
        return {"status": "failed", "error": f"{first_line} {OUT_OF_MEMORY_HINT}", "traceback": traceback.format_exc()}
    return {"status": "failed", "error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}


def _run(
    spec: TrialSpec,
    dataset: Dataset,
    record: dict[str, Any],
    on_epoch: EpochCallback | None,
    checkpoint: CheckpointHook | None,
    reached: Masks | None = None,
) -> None:
    device = resolve_device(spec.train.device)
    record["device"] = str(device)
    saved = _usable_checkpoint(spec, checkpoint)
    if saved is not None and saved["model_spec"] is not None:
        # Pruning is skipped: the checkpoint holds the masks and the model's build, and setup's
        # record fields, so a resumed trial is recorded as the uninterrupted one would be.
        model = _rebuild(saved["model_spec"]).to(device)
        masks = {name: mask.to(device) for name, mask in saved["masks"].items()}
        setup = saved["setup"]
    else:
        model, masks, setup = _prune(spec, dataset, device, reached)
        if saved is not None:  # a model not from build_model: pruned again, for its architecture
            masks = {name: mask.to(device) for name, mask in saved["masks"].items()}
            setup = saved["setup"]
    record.update(copy.deepcopy(setup))
    if spec.train.epochs == 0:  # prune only: the masks at initialisation are the result
        return
    train_config = scale_schedule(spec.train, setup["train_budget"]["ratio"])

    train_set = dataset.train
    if spec.data.subset is not None:
        train_set = train_set.subset(stratified_subset(train_set.labels, spec.data.subset, spec.seed))
    record["epochs"] = epochs = []
    trained_before = 0.0
    if saved is not None:
        record["resumed_from_epoch"] = saved["train"]["epoch"]
        epochs.extend(saved["train"]["epochs"])
        trained_before = saved["train_s"]

    def keep_epoch(metrics: dict) -> None:
        epochs.append(metrics)
        if on_epoch is not None:
            on_epoch(metrics)

    model_spec = getattr(model, "build_spec", None)
    masks_cpu = {name: mask.cpu() for name, mask in masks.items()}

    def save(state: dict) -> None:
        checkpoint.save(
            {
                "format": CHECKPOINT_FORMAT,
                "key": spec.key,
                "setup": setup,
                "model_spec": model_spec,
                "masks": masks_cpu,
                "train_s": trained_before + time.perf_counter() - train_started,
                "train": state,
            }
        )

    train_started = time.perf_counter()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(spec.seed)
        trained = train(
            model,
            masks,
            train_loader(train_set, dataset, spec.data, spec.train, spec.seed, device),
            eval_loader(dataset.test, dataset, spec.data, spec.train, device),
            train_config,
            on_epoch=keep_epoch,
            save_every=checkpoint.every if checkpoint is not None else 0,
            on_save=save,
            resume=saved["train"] if saved is not None else None,
        )
    record["timings"]["train_s"] = trained_before + time.perf_counter() - train_started
    record.update(training_outcome(trained))


def training_outcome(trained: TrainResult) -> dict[str, Any]:
    """What a record says of its training: the engine (and why it fell back, if it did), the
    final test accuracy and training loss. A trajectory's levels say the same."""
    outcome = {"engine": trained.engine, "precision": trained.precision, "test_acc": trained.epochs[-1]["test_acc"], "train_loss": trained.epochs[-1]["train_loss"]}
    if trained.engine_fallback is not None:
        outcome["engine_fallback"] = trained.engine_fallback
    return outcome


def _prune(spec: TrialSpec, dataset: Dataset, device: torch.device, reached: Masks | None = None) -> tuple[torch.nn.Module, dict, dict[str, Any]]:
    """Build and prune the trial's model: the network to train, its masks, and the record's
    fields about them (options, masks, timings, size figures, train budget, extras, and the
    diagnostics at init when asked for)."""
    if spec.ablation is not None:
        check_ablation(spec.ablation)
        if not applies_to(spec.method, spec.ablation):
            raise UserError(f"ablation {spec.ablation!r} does not apply to {spec.method!r}: it chooses no mask by scores")
    model_options = {"weights": spec.model.weights} if spec.model.weights else {}
    model = build_model(spec.model.name, num_classes=dataset.num_classes, seed=spec.seed, **model_options).to(device)

    split = dataset.train.subset(class_balanced_indices(dataset.train.labels, spec.data.prune_per_class, spec.seed))
    method = create_method(spec.method, spec.options)
    batches = list(pruning_loader(split, dataset, spec, device))
    with warnings.catch_warnings(record=True) as raised:
        warnings.simplefilter("always", RuntimeWarning)
        if isinstance(method, TrajectoryMethod):
            result = _reached_masks(spec, method, model, reached)
        else:
            result = prune(
                model,
                method,
                spec.sparsity,
                batches,
                seed=spec.seed,
                exclude=spec.prune.exclude,
                invert=spec.ablation == "invert",
            )
    setup: dict[str, Any] = {"options": result.options}
    pruning_warnings = _reraise_warnings(raised)
    if pruning_warnings:
        setup["warnings"] = pruning_warnings
    dense, pruned, masks, stats = model, result.model, result.masks, result.layer_stats
    if spec.ablation in ("shuffle", "reinit"):
        dense, masks, setup["ablation_seed"] = _ablate(spec, model, masks, dataset.num_classes, device)
        pruned = copy.deepcopy(dense)
        apply_masks(pruned, masks)
        stats = layer_stats(masks)
    shape = input_shape(dataset, spec.data)
    effective_started = time.perf_counter()
    setup.update(mask_summary(dense, pruned, masks, stats, shape))
    if result.tie_break is not None:
        setup["masks"]["tie_break"] = result.tie_break.as_dict()
    setup["timings"] = {"prune_s": result.seconds, "effective_s": time.perf_counter() - effective_started}
    if spec.train.epochs == 0 and masks and _keeps_mask_at(spec):
        setup["mask"] = encode_masks(masks)
    setup.update(trial_figures(dense, pruned, masks, shape))
    # The budget is derived from the spec (Scratch-B: MACs of the dense over the small model),
    # so it is recorded here and stays out of the key.
    budget = method.train_budget(model, pruned, shape) if isinstance(method, ArchitectureMethod) else 1.0
    train_config = scale_schedule(spec.train, budget) if spec.train.epochs else spec.train
    setup["train_budget"] = {"ratio": budget, "epochs": train_config.epochs, "milestones": list(train_config.milestones)}
    if method.extras:  # read after train_budget, which may add to it
        setup["extras"] = dict(method.extras)
    if spec.diagnostics.ntk:
        ntk_started = time.perf_counter()
        ntk = ntk_diagnostics(dense, pruned, masks, ntk_inputs(split, dataset, spec, device))
        # Numeric top-level keys are what the leaderboard tabulates; the summaries ride along.
        setup["diagnostics"] = {
            "ntk_trace_ratio": ntk["trace_ratio"],
            "ntk_top_eigenvalue_ratio": ntk["top_eigenvalue_ratio"],
            "ntk": ntk,
        }
        setup["timings"]["ntk_s"] = time.perf_counter() - ntk_started  # the dense NTK may come from an earlier trial
    if spec.diagnostics.rounding and masks and spec.ablation is None and not method.keeps_everything and _keeps_mask_at(spec):
        rounding = rounding_agreement(model, spec.method, spec.options, spec.sparsity, batches, masks, spec.seed, spec.prune.exclude)
        setup["timings"]["rounding_s"] = rounding.pop("rounding_s")
        setup.setdefault("diagnostics", {}).update(rounding)
    return pruned, masks, setup


def _reached_masks(spec: TrialSpec, method: TrajectoryMethod, model: torch.nn.Module, masks: Masks | None) -> PruneResult:
    """A trajectory method's masks at this sparsity, as its trajectory reached them: what an
    ablated trial of imp starts from (its plain trials are the trajectory's own records)."""
    if masks is None:
        raise UserError(
            f"no {spec.method} mask at sparsity {spec.sparsity:g} for seed {spec.seed}: its trajectory has not reached it "
            "(it runs before its ablations; rerun the suite once it has)"
        )
    device = next(model.parameters()).device
    masks = {name: mask.to(device) for name, mask in masks.items()}
    pruned = copy.deepcopy(model)
    apply_masks(pruned, masks)
    return PruneResult(pruned, masks, layer_stats(masks), spec.method, spec.sparsity, method.option_values(), seconds=0.0)


def mask_summary(dense: torch.nn.Module, pruned: torch.nn.Module, masks: Masks, stats: list[LayerStat], shape: tuple[int, ...]) -> dict[str, Any]:
    """A record's `masks` (kept, total, collapsed and effective counts, per layer) and its
    `sparsity_effective`: the same fields for a trial and for each level of a trajectory."""
    kept, total = sum(stat.kept for stat in stats), sum(stat.total for stat in stats)
    layers, effective_kept = _effective_layers(dense, pruned, masks, stats, shape)
    return {
        "masks": {
            "kept": kept,
            "total": total,
            "density": kept / total if total else 1.0,
            "collapsed_layers": sum(stat.collapsed for stat in stats),
            "effective_kept": effective_kept,
            "effective_collapsed_layers": sum(1 for layer in layers if layer["effective"] == 0),
            "layers": layers,
        },
        "sparsity_effective": 1.0 - effective_kept / total if total else 0.0,
    }


def _effective_layers(
    dense: torch.nn.Module, pruned: torch.nn.Module, masks: Masks, stats: list[LayerStat], shape: tuple[int, ...]
) -> tuple[list[dict[str, Any]], int]:
    """Each layer's stats with its `effective` count (kept weights on a path from input to
    output, `pai_bench.effective`), and their sum. An architecture method's small model has no
    masks: all its weights are kept, and those on a path count, against the dense layer's size."""
    if masks:
        effective = effective_masks(dense, masks, shape)
    else:
        effective = effective_masks(pruned, full_masks(prunable_parameters(pruned)), shape)
    counts = {name: int(mask.sum()) for name, mask in effective.items()}
    layers = [stat.as_dict() for stat in stats]
    for layer in layers:
        # architecture_stats names one line "(model)" when the small model's layers are not the dense one's
        layer["effective"] = counts.get(layer["name"], sum(counts.values()) if layer["name"] == "(model)" else 0)
    return layers, sum(counts.values())


def _keeps_mask_at(spec: TrialSpec) -> bool:
    """Whether the trial is at a sparsity of `diagnostics.masks_at`, where a prune-only trial
    keeps its mask and `diagnostics.rounding` recomputes it (three prunes instead of one)."""
    wanted = spec.diagnostics.masks_at
    return wanted is None or any(math.isclose(spec.sparsity, s, abs_tol=1e-12) for s in wanted)


def _reraise_warnings(raised: list[warnings.WarningMessage]) -> list[str]:
    """The distinct messages of the RuntimeWarnings (what the driver and methods warn about
    the masks) raised while pruning; every warning caught is shown again.

    Captured so the record keeps them: under Ray a warning reaches only a worker's log, and a
    leaderboard reader must learn that, say, a method's scores were rounding noise.
    """
    messages: list[str] = []
    for caught in raised:
        warnings.warn_explicit(caught.message, caught.category, caught.filename, caught.lineno)
        text = str(caught.message)
        if issubclass(caught.category, RuntimeWarning) and text not in messages:
            messages.append(text)
    return messages


def _ablate(
    spec: TrialSpec, model: torch.nn.Module, masks: dict, num_classes: int, device: torch.device
) -> tuple[torch.nn.Module, dict, int]:
    """The dense network and masks of a shuffle or reinit trial, and the seed that made them.

    shuffle: the method's masks permuted within each layer, on the unpruned network's weights
    (not the masked copy, whose zeros would follow the old mask). reinit: the method's masks on
    a network initialised from another seed; a pretrained model gets random weights, since
    fresh weights are the point.
    """
    if spec.ablation == "shuffle":
        generator = torch.Generator().manual_seed(spec.seed)  # CPU: the same permutation on any device
        return model, shuffle_masks(masks, generator), spec.seed
    seed = reinit_seed(spec.seed)
    return build_model(spec.model.name, num_classes=num_classes, seed=seed).to(device), masks, seed


def pruning_loader(split: ImageSet, dataset: Dataset, spec: TrialSpec, device: torch.device):
    """The pruning split in batches of `prune.batch_size`, or in one batch when it is None.

    Not `train.eval_batch_size`: that one only changes speed and stays out of the key, while
    the pruning batch changes the masks of methods that score in train-mode BatchNorm.
    """
    size = spec.prune.batch_size or len(split)
    return eval_loader(split, dataset, spec.data, replace(spec.train, eval_batch_size=size), device)


def ntk_inputs(split: ImageSet, dataset: Dataset, spec: TrialSpec, device: torch.device) -> torch.Tensor:
    """The first `diagnostics.ntk_examples` of the pruning split, taken one class after another
    (the split is grouped by class), so a small batch still spans many classes."""
    labels = split.labels.cpu()
    rank = torch.zeros_like(labels)
    for label in labels.unique():
        where = (labels == label).nonzero().flatten()
        rank[where] = torch.arange(len(where))
    order = torch.argsort(rank * (int(labels.max()) + 1) + labels)[: spec.diagnostics.ntk_examples]
    chosen = split.subset(order)
    loader = eval_loader(chosen, dataset, spec.data, replace(spec.train, eval_batch_size=len(chosen)), device)
    return next(iter(loader))[0]


def _usable_checkpoint(spec: TrialSpec, hook: CheckpointHook | None) -> dict[str, Any] | None:
    """The hook's checkpoint if it is this trial's, in this format; otherwise start over."""
    saved = hook.load() if hook is not None else None
    if saved is None:
        return None
    if saved.get("format") != CHECKPOINT_FORMAT or saved.get("key") != spec.key:
        warnings.warn(f"ignoring a checkpoint of another trial or format (key {saved.get('key')}, format {saved.get('format')}); trial {spec.key} starts over")
        return None
    return saved


def _rebuild(model_spec: dict[str, Any]) -> torch.nn.Module:
    """The architecture `build_model` recorded; the checkpoint supplies every weight, so no
    pretrained ones are fetched (and the seed, which keeps the caller's RNG untouched, does
    not matter)."""
    options = {name: value for name, value in model_spec["options"].items() if name != "weights"}
    return build_model(model_spec["name"], model_spec["num_classes"], seed=0, **options)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
