"""The CIFAR-10 subset shipped with the package."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from data_formats import CIFAR10_NAMES
from PIL import Image

from pai_bench.data import default_root, load_dataset
from pai_bench.data.quickstart import ASSET


def test_shipped_asset_loads(tmp_path: Path) -> None:
    dataset = load_dataset("quickstart", root=str(tmp_path), download=False)

    assert dataset.name == "quickstart"
    assert dataset.classes == CIFAR10_NAMES
    assert dataset.train.images.shape == (2000, 3, 32, 32)
    assert dataset.test.images.shape == (500, 3, 32, 32)
    assert dataset.train.images.dtype == torch.uint8
    assert torch.bincount(dataset.train.labels).tolist() == [200] * 10
    assert torch.bincount(dataset.test.labels).tolist() == [50] * 10
    assert dataset.mean == (0.4914, 0.4822, 0.4465)
    assert dataset.std == (0.2470, 0.2435, 0.2616)
    # Real photos, not blank or constant images.
    assert dataset.train.images.float().std() > 40

    # Pixels are the asset's JPEGs decoded: the first test image is test/airplane/0000.jpg.
    with tarfile.open(ASSET) as archive:
        data = archive.extractfile("test/airplane/0000.jpg").read()  # type: ignore[union-attr]
    expected = np.array(Image.open(io.BytesIO(data)).convert("RGB"))
    assert torch.equal(dataset.test.images[0], torch.from_numpy(expected).permute(2, 0, 1))


def test_unpacks_once_under_default_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAI_BENCH_DATA", str(tmp_path))
    assert default_root("quickstart") == tmp_path / "quickstart"
    load_dataset("quickstart")
    (folder,) = (tmp_path / "quickstart").iterdir()  # one unpacked copy, no leftover staging
    assert sorted(path.name for path in folder.iterdir()) == [".pai-bench-cache", "test", "train"]

    def no_unpacking(*args: object, **kwargs: object) -> None:
        raise AssertionError("unpacked again")

    monkeypatch.setattr(tarfile, "open", no_unpacking)
    assert len(load_dataset("quickstart").train) == 2000


def test_default_root_without_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PAI_BENCH_DATA", raising=False)
    assert default_root("cifar10") == Path.home() / ".cache" / "pai-bench" / "data" / "cifar10"
