"""CIFAR-10 and CIFAR-100 from the official pickled batches.

torchvision supplies what the files are (folder, names, URL, archive md5) and the download, but
the batches are unpickled here rather than through `torchvision.datasets.CIFAR10`: that class
md5-checks every batch file, so it only ever accepts the full official files, and a test could
not feed it a small file in the same format. The format is the documented one: each batch is a
pickled dict whose `data` is uint8 N x 3072 (3 x 32 x 32 planes, so already NCHW).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import CIFAR10, CIFAR100

from pai_bench.data.augment import resize
from pai_bench.data.core import Dataset, ImageSet, register_dataset
from pai_bench.data.download import fetch_archive
from pai_bench.errors import UserError

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)

HOMEPAGE = "https://www.cs.toronto.edu/~kriz/cifar.html"


@register_dataset("cifar10")
def cifar10(root: Path, image_size: int | None, download: bool) -> Dataset:
    return _load(
        "cifar10", "CIFAR-10", CIFAR10, CIFAR10_MEAN, CIFAR10_STD, root, image_size, download
    )


@register_dataset("cifar100")
def cifar100(root: Path, image_size: int | None, download: bool) -> Dataset:
    return _load(
        "cifar100", "CIFAR-100", CIFAR100, CIFAR100_MEAN, CIFAR100_STD, root, image_size, download
    )


def _load(
    name: str,
    title: str,
    source: type[CIFAR10],
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    root: Path,
    image_size: int | None,
    download: bool,
) -> Dataset:
    folder = root / source.base_folder
    train_files = [folder / file for file, _ in source.train_list]
    test_files = [folder / file for file, _ in source.test_list]
    meta_file = folder / source.meta["filename"]
    needed = [*train_files, *test_files, meta_file]
    if not all(path.is_file() for path in needed):
        reason = fetch_archive(source.url, root, source.filename, source.tgz_md5, download)
        if reason is not None or not all(path.is_file() for path in needed):
            raise UserError(
                f"{title} not found in {root} and could not be downloaded "
                f"({reason or f'the archive did not contain {folder.name}'}); download "
                f"{source.filename} from {HOMEPAGE} and extract it there, or set data.root=DIR"
            )
    classes = [str(label) for label in _unpickle(meta_file)[source.meta["key"]]]
    return Dataset(
        name=name,
        train=_read_batches(train_files, image_size),
        test=_read_batches(test_files, image_size),
        classes=classes,
        mean=mean,
        std=std,
    )


def _read_batches(files: list[Path], image_size: int | None) -> ImageSet:
    images, labels = [], []
    for path in files:
        batch = _unpickle(path)
        # CIFAR-10 batches hold "labels", CIFAR-100's "fine_labels" (and "coarse_labels").
        batch_labels = batch["labels"] if "labels" in batch else batch["fine_labels"]
        data = np.asarray(batch["data"], dtype=np.uint8)
        if data.shape != (len(batch_labels), 3 * 32 * 32):
            raise UserError(
                f"{path} is not a CIFAR batch: data has shape {data.shape} "
                f"for {len(batch_labels)} labels; delete it and download again"
            )
        batch_images = torch.from_numpy(data.reshape(-1, 3, 32, 32))
        if image_size is not None:
            # In chunks, so the float copy that resizing needs stays small.
            batch_images = torch.cat(
                [resize(chunk, image_size) for chunk in batch_images.split(1000)]
            )
        images.append(batch_images)
        labels.append(torch.tensor(batch_labels, dtype=torch.int64))
    return ImageSet(torch.cat(images), torch.cat(labels))


def _unpickle(path: Path) -> dict[str, object]:
    # latin1 keeps the Python 2 byte strings readable; keys come back as str, as in torchvision.
    try:
        with path.open("rb") as file:
            return pickle.load(file, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, ValueError) as error:
        raise UserError(f"cannot read {path} ({error}); delete it and download again") from None
