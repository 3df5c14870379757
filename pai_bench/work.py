"""The unit of work: what a trial and a trajectory (`pai_bench.trial`, `pai_bench.trajectory`)
share, written once.

A trial prunes once and trains once; a trajectory of a trajectory method (imp) trains, prunes
and trains again level by level and yields a record per sparsity. Both set up the same way and
end the same way, and that is here: their data (`load_trial_data`, shared by `data_key`), the
seeded network (`build_network`) and training subset (`training_set`), seeded training with the
spec's loaders (`seeded_train`), the checkpoint hook the executor gives them and the check that
a saved checkpoint is theirs (`usable_checkpoint`), the record's mask and training fields
(`mask_summary`, `training_outcome`; the fields every record starts with are
`pai_bench.spec.base_record`), and the failure handling that turns what stopped one into its
record's status instead of stopping a suite (`attempt`, `failure_fields`). Each of the two
modules keeps only what differs.
"""

from __future__ import annotations

import traceback
import warnings
from collections.abc import Callable
from typing import Any, Protocol

import torch

from pai_bench.data import Dataset, ImageSet, load_dataset
from pai_bench.data.splits import stratified_subset
from pai_bench.effective import effective_masks
from pai_bench.errors import UserError
from pai_bench.masks import LayerStat, Masks, full_masks, prunable_parameters
from pai_bench.models import build_model
from pai_bench.schema import DataConfig, TrainConfig
from pai_bench.spec import TrialSpec
from pai_bench.training import Diverged, TrainResult, eval_loader, train, train_loader


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


#: What to do about a trial that ran out of GPU memory (its record is failed, so rerunning the
#: suite retries it).
OUT_OF_MEMORY_HINT = (
    "(trials packed on one GPU share its memory: give each a larger share, e.g. resources.gpu=0.5, "
    "or a smaller prune.batch_size; rerunning the suite retries this trial)"
)


def build_network(spec: TrialSpec, num_classes: int, device: torch.device) -> torch.nn.Module:
    """The spec's network at its seeded initialisation (or its pretrained weights), on `device`."""
    options = {"weights": spec.model.weights} if spec.model.weights else {}
    return build_model(spec.model.name, num_classes=num_classes, seed=spec.seed, **options).to(device)


def training_set(dataset: Dataset, spec: TrialSpec) -> ImageSet:
    """What the unit trains on: the training set, or its class-stratified `data.subset`."""
    images = dataset.train
    if spec.data.subset is not None:
        images = images.subset(stratified_subset(images.labels, spec.data.subset, spec.seed))
    return images


def seeded_train(
    model: torch.nn.Module,
    masks: Masks,
    images: ImageSet,
    dataset: Dataset,
    spec: TrialSpec,
    device: torch.device,
    config: TrainConfig,
    **hooks: Any,
) -> TrainResult:
    """Train `model` under `masks` on `images` with `config` (the spec's schedule, or one
    scaled to a train budget), the spec's loaders, and torch's RNG seeded by the spec's seed
    inside a forked state, so the caller's RNG is left as it was and the same spec trains the
    same way. `hooks` are `train`'s (on_epoch, save_every, on_save, resume)."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(spec.seed)
        return train(
            model,
            masks,
            train_loader(images, dataset, spec.data, spec.train, spec.seed, device),
            eval_loader(dataset.test, dataset, spec.data, spec.train, device),
            config,
            **hooks,
        )


def usable_checkpoint(hook: CheckpointHook | None, key: str, format: int, unit: str) -> dict[str, Any] | None:
    """The hook's latest checkpoint if it is this unit's (`key`), in this `format`; otherwise
    None (and a warning): the unit starts over."""
    saved = hook.load() if hook is not None else None
    if saved is None:
        return None
    if saved.get("format") != format or saved.get("key") != key:
        warnings.warn(
            f"ignoring a checkpoint of another {unit} or format (key {saved.get('key')}, format {saved.get('format')}); {unit} {key} starts over"
        )
        return None
    return saved


def attempt(spec: TrialSpec, dataset: Dataset | None, work: Callable[[Dataset], None]) -> dict[str, Any]:
    """Run `work` on the unit's data (loaded unless given); {} when it finished, else the
    record fields of what stopped it (`failure_fields`). Recorded, not raised: one broken unit
    must not stop a suite, and nothing finished before it is lost."""
    try:
        work(dataset or load_trial_data(spec))
    except Exception as error:
        return failure_fields(error)
    return {}


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


def training_outcome(trained: TrainResult) -> dict[str, Any]:
    """What a record says of its training: the engine (and why it fell back, if it did), the
    final test accuracy and training loss. A trajectory's levels say the same."""
    outcome = {"engine": trained.engine, "precision": trained.precision, "test_acc": trained.epochs[-1]["test_acc"], "train_loss": trained.epochs[-1]["train_loss"]}
    if trained.engine_fallback is not None:
        outcome["engine_fallback"] = trained.engine_fallback
    return outcome


def mask_summary(dense: torch.nn.Module, pruned: torch.nn.Module, masks: Masks, stats: list[LayerStat], shape: tuple[int, ...]) -> dict[str, Any]:
    """A record's `masks` (kept, total, collapsed and effective counts, per layer) and its
    `sparsity_effective`: the same fields for a trial and for each level of a trajectory."""
    kept, total = sum(stat.kept for stat in stats), sum(stat.total for stat in stats)
    layers, effective_kept = effective_layers(dense, pruned, masks, stats, shape)
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


def effective_layers(
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
