"""Batches of normalized float inputs from an in-memory `ImageSet`, augmented on its device.

The uint8 images move to `device` once; each batch is then an index, an augmentation and a
normalization there, with no worker processes or per-image Python.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from pai_bench.data.augment import (
    RRC_RATIO,
    RRC_SCALE,
    crop_flip,
    draw_crop_flip,
    draw_resized_crop_flip,
    normalize,
    resize,
    resized_crop_flip,
)
from pai_bench.data.core import ImageSet
from pai_bench.errors import unknown_choice

AUGMENTATIONS = ("none", "crop-flip", "rrc-flip")


class BatchLoader:
    """Iterate `(inputs float32 N x C x S x S normalized, labels int64 N)` over an ImageSet.

    `augment`: "none", "crop-flip" (pad by `padding`, random crop, flip) or "rrc-flip" (random
    resized crop to the input size, flip). `input_size` resizes the batch (after crop-flip, or
    as the crop's output size) for models that want a larger input than the data has.

    Randomness: a generator seeded once from `seed` gives each epoch (each `iter()`) its own
    seed, and that epoch's shuffle and augmentation come from a generator seeded with it. So
    epoch k is the same in every run with the same seed, whether or not earlier epochs were
    read to the end.
    """

    def __init__(
        self,
        images: ImageSet,
        *,
        batch_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        augment: str = "none",
        padding: int = 4,
        crop_scale: tuple[float, float] = RRC_SCALE,
        crop_ratio: tuple[float, float] = RRC_RATIO,
        input_size: int | None = None,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        if augment not in AUGMENTATIONS:
            raise unknown_choice("augmentation", augment, AUGMENTATIONS)
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if (shuffle or augment != "none") and seed is None:
            raise ValueError("a seed is required to shuffle or augment")
        self.device = torch.device(device)
        self.images = images.images.to(self.device)
        self.labels = images.labels.to(self.device)
        self.batch_size = batch_size
        self.mean, self.std = tuple(mean), tuple(std)
        self.augment = augment
        self.padding = padding
        self.crop_scale, self.crop_ratio = crop_scale, crop_ratio
        self.input_size = input_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self._epoch_seeds = torch.Generator().manual_seed(seed if seed is not None else 0)

    def __len__(self) -> int:
        if self.drop_last:
            return len(self.labels) // self.batch_size
        return -(-len(self.labels) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, labels, draws in self.raw():
            yield self.prepare(images, draws), labels

    def raw(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]]:
        """Per batch: the uint8 images as stored, their labels, and the augmentation's random
        draws for them; `prepare(images, draws)` makes the model's inputs.

        Split so a compiled training step can take the augmentation inside its graph while the
        draws (and so the data an epoch sees) stay exactly those of iterating the loader.
        """
        epoch_seed = int(torch.randint(2**62, (1,), generator=self._epoch_seeds))
        generator = torch.Generator(self.device).manual_seed(epoch_seed)
        count = len(self.labels)
        if self.shuffle:
            order = torch.randperm(count, generator=generator, device=self.device)
        else:
            order = torch.arange(count, device=self.device)
        for batch in range(len(self)):
            index = order[batch * self.batch_size : (batch + 1) * self.batch_size]
            images = self.images[index]
            yield images, self.labels[index], self._draw(images, generator)

    def _draw(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        n, _, height, width = images.shape
        if self.augment == "crop-flip":
            return draw_crop_flip(n, self.padding, generator, self.device)
        if self.augment == "rrc-flip":
            return draw_resized_crop_flip(n, height, width, generator, self.device, self.crop_scale, self.crop_ratio)
        return ()

    def prepare(self, images: torch.Tensor, draws: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Augment uint8 `images` with `draws` (from `raw`), normalize, and resize."""
        if self.augment == "crop-flip":
            images = crop_flip(images, self.padding, *draws)
        elif self.augment == "rrc-flip":
            images = resized_crop_flip(images, draws[0], self.input_size or images.shape[-1], draws[1])
        # Resize after normalizing: bilinear weights sum to one, so the result is the same and
        # the float input skips a round trip through uint8.
        inputs = normalize(images, self.mean, self.std)
        return resize(inputs, self.input_size) if self.input_size is not None else inputs
