"""Train a (masked) network under a suite's protocol and evaluate it.

SGD with momentum, multi-step learning-rate decay, the suite's augmentation, masks kept in
force by `MaskEnforcer`. A non-finite loss ends the run as diverged rather than as an error:
that is a result about the method, and it is recorded as one.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from pai_bench.config import DataConfig, TrainConfig
from pai_bench.data import BatchLoader, Dataset, ImageSet
from pai_bench.masks import MaskEnforcer

EpochCallback = Callable[[dict], None]


class Diverged(Exception):
    """The training loss became NaN or infinite."""


@dataclass
class TrainResult:
    epochs: list[dict] = field(default_factory=list)

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


def train(
    model: nn.Module,
    masks: Mapping[str, torch.Tensor],
    train_batches: BatchLoader,
    test_batches: BatchLoader,
    train_config: TrainConfig,
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """Train `model` in place with `masks` enforced; one metrics dict per epoch."""
    optimizer, scheduler = make_optimizer(model, train_config)
    enforcer = MaskEnforcer(model, masks)
    result = TrainResult()
    try:
        for epoch in range(train_config.epochs):
            started = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            train_loss, train_acc = _train_epoch(model, train_batches, optimizer, enforcer)
            scheduler.step()
            test_loss, test_acc = evaluate(model, test_batches)
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
            if on_epoch is not None:
                on_epoch(metrics)
    finally:
        enforcer.remove()
    return result


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
    mean_loss = float(loss_sum) / max(count, 1)
    if not math.isfinite(mean_loss):
        raise Diverged(f"training loss became {mean_loss}")
    return mean_loss, 100.0 * correct / max(count, 1)
