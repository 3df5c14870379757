"""Train a (masked) network under a suite's protocol and evaluate it.

SGD with momentum, multi-step learning-rate decay, the suite's augmentation, masks kept in
force by `MaskEnforcer`. A non-finite loss ends the run as diverged rather than as an error:
that is a result about the method, and it is recorded as one.

Training can stop after any epoch and go on later exactly: `train` hands out its state
(weights, optimizer and scheduler, RNG, the epochs so far) every `save_every` epochs, and a run
given that state as `resume` continues as if it had never stopped.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from pai_bench.schema import DataConfig, TrainConfig
from pai_bench.data import BatchLoader, Dataset, ImageSet
from pai_bench.data.augment import RRC_RATIO, RRC_SCALE
from pai_bench.engine import EngineSettings, FastTrainer
from pai_bench.masks import MaskEnforcer

EpochCallback = Callable[[dict], None]
#: Receives `train`'s state after an epoch; see `train` for what it holds.
SaveCallback = Callable[[dict], None]


class Diverged(Exception):
    """The training loss became NaN or infinite."""


@dataclass
class TrainResult:
    epochs: list[dict] = field(default_factory=list)
    engine: str = "reference"  # which loop trained: "reference" (fp32), "fast" (pai_bench.engine) or "fast-eager"
    precision: str = "fp32"  # the forward and backward's arithmetic: "fp32" or "bf16" (the fast engine's autocast)
    engine_fallback: str | None = None  # why the fast engine ran eagerly: its compile error, in one line

    @property
    def final(self) -> dict:
        return self.epochs[-1]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def scale_schedule(train: TrainConfig, budget: float) -> TrainConfig:
    """`train` run `budget` times as long: round(epochs * budget) epochs (at least one), and each
    learning-rate milestone at round(milestone * budget), so the schedule keeps its shape."""
    if not (math.isfinite(budget) and budget > 0):
        raise ValueError(f"a training budget must be a positive number, got {budget}")
    if budget == 1.0:
        return train
    return dataclasses.replace(
        train,
        epochs=max(1, round(train.epochs * budget)),
        milestones=[round(milestone * budget) for milestone in train.milestones],
    )


def make_optimizer(model: nn.Module, train: TrainConfig) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=train.lr,
        momentum=train.momentum,
        nesterov=train.nesterov,
        weight_decay=train.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(train.milestones), gamma=train.gamma)
    return optimizer, scheduler


def train_loader(train_set: ImageSet, dataset: Dataset, data: DataConfig, train: TrainConfig, seed: int, device: torch.device) -> BatchLoader:
    return BatchLoader(
        train_set,
        batch_size=train.batch_size,
        mean=dataset.mean,
        std=dataset.std,
        augment=data.augment,
        padding=data.padding,
        crop_scale=tuple(data.rrc_scale) if data.rrc_scale else RRC_SCALE,
        crop_ratio=tuple(data.rrc_ratio) if data.rrc_ratio else RRC_RATIO,
        input_size=data.input_size,
        shuffle=True,
        seed=seed,
        device=device,
    )


def eval_loader(test_set: ImageSet, dataset: Dataset, data: DataConfig, train: TrainConfig, device: torch.device) -> BatchLoader:
    return BatchLoader(
        test_set,
        batch_size=train.eval_batch_size,
        mean=dataset.mean,
        std=dataset.std,
        input_size=data.input_size,
        device=device,
    )


@torch.no_grad()
def evaluate(model: nn.Module, loader: BatchLoader) -> tuple[float, float]:
    """(mean loss, accuracy in percent) over the whole loader."""
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    for inputs, targets in loader:
        logits = model(inputs)
        loss_sum += float(F.cross_entropy(logits, targets, reduction="sum"))
        correct += int((logits.argmax(dim=1) == targets).sum())
        count += targets.numel()
    return loss_sum / max(count, 1), 100.0 * correct / max(count, 1)


class ReferenceTrainer:
    """The plain fp32 loop: one eager step per batch, masks held by `MaskEnforcer`. The fast
    engine (`pai_bench.engine.FastTrainer`, same interface) is checked against it."""

    engine = "reference"
    precision = "fp32"
    fallback = None  # what the fast engine sets when it could not compile

    def __init__(self, model: nn.Module, masks: Mapping[str, torch.Tensor], train_config: TrainConfig) -> None:
        self.model = model
        self.optimizer, self.scheduler = make_optimizer(model, train_config)
        self.enforcer = MaskEnforcer(model, masks)

    def train_epoch(self, batches: BatchLoader) -> tuple[float, float]:
        return _train_epoch(self.model, batches, self.optimizer, self.enforcer)

    def evaluate(self, batches: BatchLoader) -> tuple[float, float]:
        return evaluate(self.model, batches)

    def close(self) -> None:
        self.enforcer.remove()


#: On a CPU, channels_last only for networks whose every convolution writes this many channels. torch 2.14.1's oneDNN path crashed the process (segmentation fault, abort, heap
#: corruption) in the backward of Scratch-E's ResNet-20 at 99 % (widths 1, 2, 7) in 4 runs of 4
#: with channels_last, and trained it in 4 of 4 without; ResNet-20 (16 channels and more) trained
#: with it for hours. A crash would end the whole run, not one trial, so narrower nets go NCHW.
CPU_CHANNELS_LAST_MIN_WIDTH = 16


def narrowest_conv(model: nn.Module) -> int:
    """The fewest channels any convolution of `model` writes (so any but the first reads; the
    image's 3 channels do not count). No convolution: no limit."""
    widths = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    return min(widths, default=CPU_CHANNELS_LAST_MIN_WIDTH)


def make_trainer(model: nn.Module, masks: Mapping[str, torch.Tensor], train_config: TrainConfig) -> ReferenceTrainer | FastTrainer:
    """The fast engine on a GPU or a CPU unless `train.fast=false` (settings per device:
    `EngineSettings.for_device`); the reference loop otherwise, and on devices the engine has
    no settings for."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    settings = EngineSettings.for_device(device) if train_config.fast else None
    if settings is not None and device.type == "cpu" and settings.channels_last and narrowest_conv(model) < CPU_CHANNELS_LAST_MIN_WIDTH:
        settings = dataclasses.replace(settings, channels_last=False)
    if settings is not None:
        return FastTrainer(model, masks, train_config, device, settings)
    return ReferenceTrainer(model, masks, train_config)


def train(
    model: nn.Module,
    masks: Mapping[str, torch.Tensor],
    train_batches: BatchLoader,
    test_batches: BatchLoader,
    train_config: TrainConfig,
    on_epoch: EpochCallback | None = None,
    *,
    save_every: int = 0,
    on_save: SaveCallback | None = None,
    resume: Mapping | None = None,
) -> TrainResult:
    """Train `model` in place with `masks` enforced; one metrics dict per epoch.

    Every `save_every` epochs (0: never), `on_save` gets the training state, before `on_epoch`
    sees that epoch's metrics: `epoch` (epochs done), `epochs` (their metrics), `model`,
    `optimizer`, `scheduler`, `rng` (torch's CPU generator) and `cuda_rng` (None on CPU); it
    can go through `torch.save` and `torch.load(weights_only=True)`. Given such a state as
    `resume` (with the same model, masks, loaders and config), training continues after its
    epoch and ends with the weights an uninterrupted run would have.
    """
    trainer = make_trainer(model, masks, train_config)
    optimizer, scheduler = trainer.optimizer, trainer.scheduler
    result = TrainResult(engine=trainer.engine, precision=trainer.precision)
    first_epoch = 0
    if resume is not None:
        first_epoch = _restore(resume, model, optimizer, scheduler)
        result.epochs = [dict(metrics) for metrics in resume["epochs"]]
        _skip_epochs(train_batches, first_epoch)
    try:
        for epoch in range(first_epoch, train_config.epochs):
            started = time.perf_counter()
            lr = float(optimizer.param_groups[0]["lr"])
            train_loss, train_acc = trainer.train_epoch(train_batches)
            if not math.isfinite(train_loss):
                raise Diverged(f"training loss became {train_loss}")
            scheduler.step()
            test_loss, test_acc = trainer.evaluate(test_batches)
            metrics = {
                "epoch": epoch + 1,
                "lr": lr,
                "train_loss": train_loss,
                "train_acc": train_acc,
                "test_loss": test_loss,
                "test_acc": test_acc,
                "seconds": time.perf_counter() - started,
            }
            result.epochs.append(metrics)
            if on_save is not None and save_every > 0 and (epoch + 1) % save_every == 0:
                on_save(training_state(epoch + 1, result.epochs, model, optimizer, scheduler))
            if on_epoch is not None:
                on_epoch(metrics)
    finally:
        trainer.close()
    result.engine, result.engine_fallback = trainer.engine, trainer.fallback
    return result


def training_state(
    epoch: int,
    epochs: Iterable[dict],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> dict:
    """What `train` needs to go on after `epoch` exactly as if it had not stopped."""
    scheduler_state = scheduler.state_dict()
    # A Counter; older torch.load(weights_only=True) refuses it, a dict always loads.
    scheduler_state["milestones"] = dict(scheduler_state["milestones"])
    device = next((p.device for p in model.parameters() if p.device.type == "cuda"), None)
    return {
        "epoch": epoch,
        "epochs": [dict(metrics) for metrics in epochs],
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler_state,
        "rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(device) if device is not None else None,
    }


def _restore(
    state: Mapping,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> int:
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict({**state["scheduler"], "milestones": Counter(state["scheduler"]["milestones"])})
    torch.set_rng_state(state["rng"])
    if state.get("cuda_rng") is not None:
        device = next(p.device for p in model.parameters() if p.device.type == "cuda")
        torch.cuda.set_rng_state(state["cuda_rng"], device)
    return int(state["epoch"])


def _skip_epochs(batches: Iterable, count: int) -> None:
    """Move `batches` past its first `count` epochs.

    A `BatchLoader` draws an epoch's seed (its order and augmentation) when the epoch starts, so
    starting an epoch and dropping it after one batch leaves the next epoch exactly where an
    uninterrupted run would find it.
    """
    for _ in range(count):
        epoch = iter(batches)
        next(epoch, None)
        close = getattr(epoch, "close", None)
        if close is not None:
            close()


def _train_epoch(model: nn.Module, batches: BatchLoader, optimizer: torch.optim.Optimizer, enforcer: MaskEnforcer) -> tuple[float, float]:
    model.train()
    loss_sum = torch.zeros((), dtype=torch.float64)
    correct, count = 0, 0
    for inputs, targets in batches:
        logits = model(inputs)
        loss = F.cross_entropy(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        enforcer.after_step()
        loss_sum += loss.detach().double().cpu() * targets.numel()
        correct += int((logits.argmax(dim=1) == targets).sum())
        count += targets.numel()
    return float(loss_sum) / max(count, 1), 100.0 * correct / max(count, 1)
