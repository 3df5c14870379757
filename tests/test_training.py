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
