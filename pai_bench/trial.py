"""One trial: build, prune, train, evaluate, and the record that describes it.

With `train.epochs=0` a trial only prunes: its record holds what the masks are at
initialisation (effective sparsity, collapse, pruning time, the NTK and the mask itself when
asked for) and no accuracy.

A trial knows nothing about executors: it is a pure function of its `TrialSpec`
(`pai_bench.spec`), whose key is a hash of every field that determines the result, so a rerun
finds finished work and a changed protocol never reuses a stale record. What a trial shares
with an imp trajectory (data, seeded network and training, checkpoint checks, record fields,
failure handling) is `pai_bench.work`; this module is what only a trial does: prune once (with
its ablations and diagnostics), then train once.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import replace
from typing import Any

import torch

from pai_bench.ablations import applies_to, check_ablation, reinit_seed, shuffle_masks
from pai_bench.data import Dataset, ImageSet
from pai_bench.data.splits import class_balanced_indices
from pai_bench.diagnostics import ntk_diagnostics
from pai_bench.errors import UserError
from pai_bench.flops import trial_figures
from pai_bench.maskbits import encode_masks
from pai_bench.masks import Masks, apply_masks, layer_stats
from pai_bench.method import ArchitectureMethod, TrajectoryMethod
from pai_bench.models import build_model
from pai_bench.plugins import create_method
from pai_bench.pruning import PruneResult, prune
from pai_bench.rounding import rounding_agreement
from pai_bench.spec import KEY_ONLY_WHEN_SET, NOT_IN_KEY, TrialSpec, base_record, now
from pai_bench.training import EpochCallback, eval_loader, resolve_device, scale_schedule
from pai_bench.work import (
    CheckpointHook,
    attempt,
    build_network,
    data_key,
    input_shape,
    load_trial_data,
    mask_summary,
    seeded_train,
    training_outcome,
    training_set,
    usable_checkpoint,
)

#: Importable from here as before the unit of work had a module of its own (`pai_bench.work`)
#: and the spec one (`pai_bench.spec`).
__all__ = [
    "CHECKPOINT_FORMAT",
    "KEY_ONLY_WHEN_SET",
    "NOT_IN_KEY",
    "CheckpointHook",
    "TrialSpec",
    "base_record",
    "data_key",
    "input_shape",
    "load_trial_data",
    "ntk_inputs",
    "pruning_loader",
    "run_trial",
]

#: Bumped when a checkpoint's content changes; older checkpoints are then ignored.
CHECKPOINT_FORMAT = 1


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
    record.update(attempt(spec, dataset, lambda data: _run(spec, data, record, on_epoch, checkpoint, masks)) or {"status": "done"})
    record["timings"] = {**record.get("timings", {}), "total_s": time.perf_counter() - started}
    record["finished_at"] = now()
    return record


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
    saved = usable_checkpoint(checkpoint, spec.key, CHECKPOINT_FORMAT, "trial")
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

    train_set = training_set(dataset, spec)
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
    trained = seeded_train(
        model,
        masks,
        train_set,
        dataset,
        spec,
        device,
        train_config,
        on_epoch=keep_epoch,
        save_every=checkpoint.every if checkpoint is not None else 0,
        on_save=save,
        resume=saved["train"] if saved is not None else None,
    )
    record["timings"]["train_s"] = trained_before + time.perf_counter() - train_started
    record.update(training_outcome(trained))


def _prune(spec: TrialSpec, dataset: Dataset, device: torch.device, reached: Masks | None = None) -> tuple[torch.nn.Module, dict, dict[str, Any]]:
    """Build and prune the trial's model: the network to train, its masks, and the record's
    fields about them (options, masks, timings, size figures, train budget, extras, and the
    diagnostics at init when asked for)."""
    if spec.ablation is not None:
        check_ablation(spec.ablation)
        if not applies_to(spec.method, spec.ablation):
            raise UserError(f"ablation {spec.ablation!r} does not apply to {spec.method!r}: it chooses no mask by scores")
    model = build_network(spec, dataset.num_classes, device)

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


def _rebuild(model_spec: dict[str, Any]) -> torch.nn.Module:
    """The architecture `build_model` recorded; the checkpoint supplies every weight, so no
    pretrained ones are fetched (and the seed, which keeps the caller's RNG untouched, does
    not matter)."""
    options = {name: value for name, value in model_spec["options"].items() if name != "weights"}
    return build_model(model_spec["name"], model_spec["num_classes"], seed=0, **options)
