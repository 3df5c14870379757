"""BatchLoader: coverage, determinism, normalization and shapes."""

from __future__ import annotations

import pytest
import torch

from pai_bench.data import BatchLoader, ImageSet
from pai_bench.errors import UserError

MEAN = (0.5, 0.25, 0.0)
STD = (0.5, 0.25, 1.0)


def numbered(n: int = 10, size: int = 4) -> ImageSet:
    """Image i is filled with the value 10 * i and labelled i, so a batch shows what it holds."""
    images = (torch.arange(n, dtype=torch.uint8) * 10).view(n, 1, 1, 1).expand(n, 3, size, size)
    return ImageSet(images.contiguous(), torch.arange(n))


def epoch(loader: BatchLoader) -> tuple[torch.Tensor, torch.Tensor]:
    inputs, labels = zip(*loader, strict=True)
    return torch.cat(inputs), torch.cat(labels)


def test_shuffled_epoch_covers_everything_once() -> None:
    loader = BatchLoader(numbered(), batch_size=3, mean=MEAN, std=STD, shuffle=True, seed=0)
    assert len(loader) == 4
    sizes = [len(labels) for _, labels in loader]
    assert sizes == [3, 3, 3, 1]
    inputs, labels = epoch(loader)
    assert sorted(labels.tolist()) == list(range(10))
    assert labels.tolist() != list(range(10))
    # Inputs travel with their labels, normalized per channel.
    value = labels.double() * 10 / 255
    assert inputs.dtype == torch.float32 and labels.dtype == torch.int64
    assert torch.allclose(inputs[:, 0, 0, 0].double(), (value - 0.5) / 0.5, atol=1e-6)
    assert torch.allclose(inputs[:, 1, 2, 3].double(), (value - 0.25) / 0.25, atol=1e-6)
    assert torch.allclose(inputs[:, 2, 3, 3].double(), value, atol=1e-6)


def test_epochs_differ_and_repeat_per_seed() -> None:
    def loader(seed: int) -> BatchLoader:
        return BatchLoader(
            numbered(),
            batch_size=4,
            mean=MEAN,
            std=STD,
            shuffle=True,
            augment="crop-flip",
            padding=1,
            seed=seed,
        )

    first, second = loader(7), loader(7)
    epochs = [epoch(first) for _ in range(3)]
    assert not torch.equal(epochs[0][1], epochs[1][1])
    for k in range(3):
        inputs, labels = epoch(second)
        assert torch.equal(inputs, epochs[k][0]) and torch.equal(labels, epochs[k][1])
    assert not torch.equal(epoch(loader(8))[1], epochs[0][1])

    # Epoch 1 does not depend on how much of epoch 0 was read.
    partial = loader(7)
    next(iter(partial))
    inputs, labels = epoch(partial)
    assert torch.equal(inputs, epochs[1][0]) and torch.equal(labels, epochs[1][1])


def test_unshuffled_order_and_drop_last() -> None:
    loader = BatchLoader(numbered(), batch_size=4, mean=MEAN, std=STD, drop_last=True)
    assert len(loader) == 2
    assert epoch(loader)[1].tolist() == list(range(8))


def test_augmentations_and_input_size() -> None:
    data = numbered(size=8)
    crop = BatchLoader(
        data, batch_size=5, mean=MEAN, std=STD, augment="crop-flip", padding=2, seed=0
    )
    inputs, _ = epoch(crop)
    assert inputs.shape == (10, 3, 8, 8)
    # Zero padding shows up as pixels darker than the image they came from.
    background = (torch.tensor(0.0) - 0.5) / 0.5
    assert (inputs[1:, 0] == background).any()

    resized = BatchLoader(data, batch_size=5, mean=MEAN, std=STD, input_size=16)
    inputs, labels = epoch(resized)
    assert inputs.shape == (10, 3, 16, 16)
    value = labels.double() * 10 / 255
    assert torch.allclose(inputs[:, 0, 7, 9].double(), (value - 0.5) / 0.5, atol=1e-5)

    rrc = BatchLoader(
        data, batch_size=5, mean=MEAN, std=STD, augment="rrc-flip", input_size=12, seed=0
    )
    inputs, labels = epoch(rrc)
    assert inputs.shape == (10, 3, 12, 12)
    # Constant images stay constant whatever the crop.
    assert torch.allclose(inputs[:, 0].mean((1, 2)).double(), (value - 0.5) / 0.5, atol=1e-5)


def test_bad_arguments() -> None:
    with pytest.raises(UserError, match="valid choices: crop-flip, none, rrc-flip"):
        BatchLoader(numbered(), batch_size=2, mean=MEAN, std=STD, augment="cutout", seed=0)
    with pytest.raises(ValueError, match="seed"):
        BatchLoader(numbered(), batch_size=2, mean=MEAN, std=STD, shuffle=True)
