"""Datasets stored as image files: any ImageFolder tree, and Tiny-ImageNet's own layout.

Both decode once into uint8 tensors (`decode.py`) and keep them in the on-disk cache
(`cache.py`), so later loads read one file instead of thousands of JPEGs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from pai_bench.data.cache import Content, cached
from pai_bench.data.core import Dataset, ImageSet, register_dataset
from pai_bench.data.decode import decode_images
from pai_bench.data.download import fetch_archive
from pai_bench.errors import UserError

TINY_FOLDER = "tiny-imagenet-200"
TINY_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINY_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
# The normalization of the PaI reference code (Synaptic-Flow, PX) that the papers' numbers were
# trained with. The std (0.2302, 0.2265, 0.2262), also in circulation, would scale every input
# by 1.2 against theirs.
TINY_MEAN = (0.480, 0.448, 0.397)
TINY_STD = (0.276, 0.269, 0.282)

Split = list[tuple[Path, int]]
"""(file, class index) pairs, in the order the tensors hold them."""


@register_dataset("imagefolder")
def imagefolder(root: Path, image_size: int | None, download: bool) -> Dataset:
    """`root/train/<class>/*` and `root/test/<class>/*` (or `val/`); never downloaded."""
    return load_imagefolder(root, image_size, name="imagefolder")


def load_imagefolder(root: Path, image_size: int | None, name: str) -> Dataset:
    """An ImageFolder tree as a `Dataset` called `name`, with mean/std of its train images."""
    test_dir = next((root / split for split in ("test", "val") if (root / split).is_dir()), None)
    if not (root / "train").is_dir() or test_dir is None:
        raise UserError(
            f"no image folder dataset in {root}: put the images in {root}/train/<class>/ and "
            f"{root}/test/<class>/ (or val/<class>/), or set data.root=DIR"
        )
    train = _scan(root / "train")
    test = _scan(test_dir)
    if test.classes != train.classes:
        raise UserError(
            f"{test_dir} and {root / 'train'} must have the same class folders; only in "
            f"train: {sorted(set(train.classes) - set(test.classes))}, only in "
            f"{test_dir.name}: {sorted(set(test.classes) - set(train.classes))}"
        )
    return _decoded(
        name, root, image_size, train.classes, _pairs(train), _pairs(test), mean_std=None
    )


#: torchvision's CIFAR-10 classes, in its order (sorted, as ImageFolder orders its folders).
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@register_dataset("cifar10-jpeg")
def cifar10_jpeg(root: Path, image_size: int | None, download: bool) -> Dataset:
    """CIFAR-10 as JPEG files in ImageFolder layout (`root/train/<class>/`, `root/test/<class>/`),
    such as the project's `cifar10-jpeg.tar.gz`; never downloaded.

    The images are an ImageFolder's, loaded the same way; the name says what they are, so pages
    can call them CIFAR-10 (JPEG) and set them beside CIFAR-10's published numbers. The JPEG
    re-encoding is lossy and costs accuracy (a dense ResNet-20 reaches about 87.6 % on it at
    the full protocol against 91.5-92 % on the official files), which the pages say."""
    dataset = load_imagefolder(root, image_size, name="cifar10-jpeg")
    if dataset.classes != CIFAR10_CLASSES:
        raise UserError(f"{root} does not hold CIFAR-10's classes: its folders are {dataset.classes}, CIFAR-10's are {CIFAR10_CLASSES}; use data.name=imagefolder for other images")
    return dataset


@register_dataset("tinyimagenet")
def tinyimagenet(root: Path, image_size: int | None, download: bool) -> Dataset:
    """Tiny-ImageNet-200 as distributed; its labelled val set is the test split."""
    folder = _find_tiny(root)
    if folder is None:
        reason = fetch_archive(TINY_URL, root, f"{TINY_FOLDER}.zip", TINY_MD5, download)
        folder = _find_tiny(root)
        if folder is None:
            raise UserError(
                f"Tiny-ImageNet not found in {root} and could not be downloaded "
                f"({reason or f'the archive did not contain {TINY_FOLDER}'}); download "
                f"{TINY_URL} and unzip it in {root}, or set data.root=DIR"
            )
    wnids = (folder / "wnids.txt").read_text().split()
    index = {wnid: i for i, wnid in enumerate(wnids)}
    train = [
        (path, index[wnid])
        for wnid in wnids
        for path in _image_files(folder / "train" / wnid / "images")
    ]
    test = []
    annotations = folder / "val" / "val_annotations.txt"
    for line_number, line in enumerate(annotations.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in index:
            raise UserError(
                f"{annotations}:{line_number}: expected 'file<TAB>wnid<TAB>...' with a "
                f"wnid from wnids.txt, got {line!r}"
            )
        test.append((folder / "val" / "images" / fields[0], index[fields[1]]))
    return _decoded(
        "tinyimagenet",
        folder,
        image_size,
        wnids,
        train,
        test,
        mean_std=(TINY_MEAN, TINY_STD),
        extra_sources=[folder / "wnids.txt", annotations],
    )


def _find_tiny(root: Path) -> Path | None:
    # Accept the tiny-imagenet-200 folder itself or the folder it was unzipped in.
    for folder in (root, root / TINY_FOLDER):
        if (folder / "wnids.txt").is_file():
            return folder
    return None


def _scan(directory: Path) -> ImageFolder:
    # torchvision's scan, so class order and accepted extensions match ImageFolder everywhere.
    try:
        return ImageFolder(str(directory))
    except FileNotFoundError as error:
        raise UserError(f"no images in {directory}: {error}") from None


def _pairs(folder: ImageFolder) -> Split:
    return [(Path(path), label) for path, label in folder.samples]


def _image_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise UserError(f"missing folder {directory}")
    return sorted(p for p in directory.iterdir() if p.suffix.lower() in IMG_EXTENSIONS)


def _decoded(
    name: str,
    folder: Path,
    image_size: int | None,
    classes: list[str],
    train: Split,
    test: Split,
    mean_std: tuple[tuple[float, float, float], tuple[float, float, float]] | None,
    extra_sources: Sequence[Path] = (),
) -> Dataset:
    """Decode (or fetch from the cache) both splits; mean/std from train unless given."""

    def build() -> Content:
        train_images = decode_images([path for path, _ in train], image_size)
        content: Content = {
            "train_images": train_images,
            "train_labels": _labels(train),
            "test_images": decode_images([path for path, _ in test], image_size),
            "test_labels": _labels(test),
        }
        if mean_std is None:
            content["mean"], content["std"] = _channel_mean_std(train_images)
        return content

    sources = [path for path, _ in train] + [path for path, _ in test] + list(extra_sources)
    content = cached(folder, f"{name}-{image_size or 'native'}", sources, build)
    mean, std = mean_std or (_triple(content["mean"]), _triple(content["std"]))
    return Dataset(
        name=name,
        train=ImageSet(content["train_images"], content["train_labels"]),  # type: ignore[arg-type]
        test=ImageSet(content["test_images"], content["test_labels"]),  # type: ignore[arg-type]
        classes=classes,
        mean=mean,
        std=std,
    )


def _labels(split: Split) -> torch.Tensor:
    return torch.tensor([label for _, label in split], dtype=torch.int64)


def _channel_mean_std(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of uint8 images on the [0, 1] scale.

    From a 256-bin histogram per channel: exact, and no float copy of a large train set.
    """
    values = torch.arange(256, dtype=torch.float64) / 255
    means, stds = [], []
    for channel in images.unbind(1):
        weights = torch.bincount(channel.flatten(), minlength=256).double()
        weights /= weights.sum()
        mean = (weights * values).sum()
        means.append(mean)
        stds.append((weights * (values - mean).square()).sum().sqrt())
    return torch.stack(means), torch.stack(stds)


def _triple(values: object) -> tuple[float, float, float]:
    first, second, third = (float(v) for v in values)  # type: ignore[attr-defined]
    return first, second, third
