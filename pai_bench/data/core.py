"""The in-memory dataset types and the registry that loaders add themselves to.

Every dataset is held whole as uint8 tensors: the benchmark's datasets fit in memory, a uint8
copy is a quarter of a float one, and batches are then cut and augmented with tensor ops on
whatever device trains, with no per-image Python on the hot path.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from pai_bench.registry import Registry


@dataclass(frozen=True)
class ImageSet:
    """One split: `images` uint8 N x C x H x W, `labels` int64 N."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(
                f"images must be uint8 N x C x H x W, got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise ValueError(
                f"labels must be int64 of shape ({len(self.images)},), got "
                f"{self.labels.dtype} {tuple(self.labels.shape)}"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: torch.Tensor) -> ImageSet:
        """The examples at `indices` (e.g. from `pai_bench.data.splits`), in that order."""
        indices = indices.to(self.labels.device)
        return ImageSet(self.images[indices], self.labels[indices])


@dataclass(frozen=True)
class Dataset:
    """A train and a test split with the class names and the per-channel normalization."""

    name: str
    train: ImageSet
    test: ImageSet
    classes: list[str]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


DatasetLoader = Callable[[Path, "int | None", bool], Dataset]
"""`(root, image_size, download) -> Dataset`; `image_size=None` keeps the native size."""

DATASETS: Registry[DatasetLoader] = Registry("dataset")
register_dataset = DATASETS.register


def default_root(name: str) -> Path:
    """Where dataset `name` lives unless `data.root` says otherwise.

    One folder per dataset under a shared base, so `$PAI_BENCH_DATA` can point every dataset at
    a big disk at once.
    """
    base = os.environ.get("PAI_BENCH_DATA")
    if base:
        return Path(base).expanduser() / name
    return Path.home() / ".cache" / "pai-bench" / "data" / name
