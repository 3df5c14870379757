"""Datasets through Ray's object store without a copy in every trial process.

Ray keeps numpy arrays in the node's shared memory and a worker's `ray.get` maps them there,
read-only, without copying; a torch tensor would be unpickled into a private copy in every
trial process instead (a 224-px CIFAR cell is 9 GB, and trials packed on a machine's GPUs would
each hold one). So the driver puts a dataset's arrays, and a trial wraps them as tensors again,
still without copying; moving them to a GPU copies them there, as it would anyway.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from pai_bench.data import Dataset, ImageSet


@dataclass
class SharedDataset:
    """A `Dataset` whose images and labels are numpy arrays, as the object store shares them."""

    name: str
    classes: list[str]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    arrays: dict[str, np.ndarray]  # train_images, train_labels, test_images, test_labels


def share(dataset: Dataset) -> SharedDataset:
    arrays = {}
    for split in ("train", "test"):
        images: ImageSet = getattr(dataset, split)
        arrays[f"{split}_images"] = images.images.numpy()
        arrays[f"{split}_labels"] = images.labels.numpy()
    return SharedDataset(dataset.name, list(dataset.classes), dataset.mean, dataset.std, arrays)


def unshare(shared: SharedDataset) -> Dataset:
    """The `Dataset` again, its tensors views of the shared arrays (read-only: pai-bench never
    writes a dataset in place, it indexes or moves it, which copies)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        splits = {
            split: ImageSet(torch.from_numpy(shared.arrays[f"{split}_images"]), torch.from_numpy(shared.arrays[f"{split}_labels"]))
            for split in ("train", "test")
        }
    return Dataset(shared.name, splits["train"], splits["test"], list(shared.classes), shared.mean, shared.std)
