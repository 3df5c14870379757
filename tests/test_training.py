"""Training schedules: a budget scales epochs and milestones together."""

from __future__ import annotations

import pytest

from pai_bench.config import TrainConfig
from pai_bench.training import scale_schedule


def test_scale_schedule_rounds_epochs_and_milestones():
    train = TrainConfig(epochs=160, milestones=[80, 120])
    assert scale_schedule(train, 1.0) is train
    doubled = scale_schedule(train, 2.0)
    assert (doubled.epochs, doubled.milestones, doubled.lr) == (320, [160, 240], train.lr)
    assert (train.epochs, train.milestones) == (160, [80, 120])
    shorter = scale_schedule(TrainConfig(epochs=3, milestones=[2]), 0.1)
    assert (shorter.epochs, shorter.milestones) == (1, [0])
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="positive"):
            scale_schedule(train, bad)


def test_train_loader_draws_crops_in_the_configured_rrc_ranges():
    import torch

    from pai_bench.config import DataConfig
    from pai_bench.data import Dataset, ImageSet
    from pai_bench.training import train_loader

    images = ImageSet(torch.zeros(2000, 3, 64, 64, dtype=torch.uint8), torch.zeros(2000, dtype=torch.int64))
    dataset = Dataset("made", images, images, ["a"], (0.5,) * 3, (0.5,) * 3)

    def aspects(data: DataConfig) -> torch.Tensor:
        loader = train_loader(images, dataset, data, TrainConfig(batch_size=2000), seed=0, device=torch.device("cpu"))
        _, _, (boxes, _) = next(loader.raw())
        _, _, height, width = boxes.T
        return width.double() / height

    px = aspects(DataConfig(augment="rrc-flip", rrc_scale=[0.5, 1.0], rrc_ratio=[0.8, 1.25]))
    default = aspects(DataConfig(augment="rrc-flip", rrc_scale=[0.5, 1.0]))
    # Whole pixels move a ratio by up to one pixel's worth past its bound.
    assert px.min() > 0.77 and px.max() < 1.3
    assert default.min() < 0.77 and default.max() > 1.3
