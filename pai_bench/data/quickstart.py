"""`quickstart`: 2,500 real CIFAR-10 images shipped inside the package, so a first run needs
no download.

The asset (`assets/cifar10-mini.tar.gz`, built by `scripts/make_quickstart_asset.py`) holds 200
train and 50 test JPEGs per class in ImageFolder layout. It is unpacked once and then loaded like
any image folder, cache included.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import tarfile
import tempfile
from pathlib import Path

from pai_bench.data.cifar import CIFAR10_MEAN, CIFAR10_STD
from pai_bench.data.core import Dataset, register_dataset
from pai_bench.data.folders import load_imagefolder

ASSET = Path(__file__).resolve().parent / "assets" / "cifar10-mini.tar.gz"


@register_dataset("quickstart")
def quickstart(root: Path, image_size: int | None, download: bool) -> Dataset:
    """Ships with the package, so `download` is never needed."""
    dataset = load_imagefolder(_unpacked(root), image_size, name="quickstart")
    # CIFAR-10's statistics, so a model trained here is normalized as one trained on CIFAR-10.
    return dataclasses.replace(dataset, mean=CIFAR10_MEAN, std=CIFAR10_STD)


def _unpacked(root: Path) -> Path:
    """The asset's folder under `root`, unpacking it first if needed.

    The folder is named by the asset's hash, so a rebuilt asset is never shadowed by an old
    copy; it appears by one rename, so an interrupted or concurrent unpack never leaves a
    half-filled folder that looks complete.
    """
    digest = hashlib.sha256(ASSET.read_bytes()).hexdigest()[:12]
    target = root / f"cifar10-mini-{digest}"
    if target.is_dir():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".unpacking-", dir=root))
    staging.chmod(0o755)  # mkdtemp's 0o700 would hide a shared data folder from other users
    try:
        with tarfile.open(ASSET, "r:gz") as archive:
            archive.extractall(staging, filter="data")
        staging.rename(target)
    except OSError:
        if not target.is_dir():  # lost a race with another process: its copy is as good
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
