"""Datasets as in-memory uint8 tensors, and the batch-level tools that feed them to a model.

`load_dataset(name)` looks a loader up in `DATASETS`; the loaders below register themselves on
import. A loader is `(root, image_size, download) -> Dataset`.
"""

from __future__ import annotations

from pathlib import Path

from pai_bench.data.augment import (
    crop_flip,
    normalize,
    random_crop_flip,
    random_resized_crop_flip,
    resize,
)
from pai_bench.data.batches import AUGMENTATIONS, BatchLoader
from pai_bench.data.core import (
    DATASETS,
    Dataset,
    DatasetLoader,
    ImageSet,
    default_root,
    register_dataset,
)
from pai_bench.data.splits import class_balanced_indices, stratified_subset
from pai_bench.errors import UserError

# Imported for their @register_dataset side effect.
from pai_bench.data import cifar, folders, quickstart  # noqa: F401  isort: skip


def load_dataset(
    name: str, root: str | None = None, image_size: int | None = None, download: bool = True
) -> Dataset:
    """Dataset `name` from `root` (default: `default_root(name)`), fetching it if allowed.

    `image_size` stores the images resized to that many pixels square (None: as they are). To
    feed a large model input, prefer `BatchLoader(input_size=...)`, which resizes per batch.
    """
    loader = DATASETS.get(name)
    if image_size is not None and image_size < 1:
        raise UserError(f"data.image_size must be a positive number of pixels, got {image_size}")
    folder = Path(root).expanduser() if root is not None else default_root(name)
    return loader(folder, image_size, download)


def list_datasets() -> list[str]:
    return DATASETS.names()


__all__ = [
    "AUGMENTATIONS",
    "DATASETS",
    "BatchLoader",
    "Dataset",
    "DatasetLoader",
    "ImageSet",
    "class_balanced_indices",
    "crop_flip",
    "default_root",
    "list_datasets",
    "load_dataset",
    "normalize",
    "random_crop_flip",
    "random_resized_crop_flip",
    "register_dataset",
    "resize",
    "stratified_subset",
]
