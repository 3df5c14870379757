"""CIFAR loaders against small batch files in the official pickled format."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from data_formats import CIFAR10_NAMES, py2_pickle, write_cifar_batch

import pai_bench.data.download
from pai_bench.data import load_dataset
from pai_bench.errors import UserError

def write_cifar10(
    root: Path, rng: np.random.Generator
) -> tuple[np.ndarray, list[int], np.ndarray, list[int]]:
    folder = root / "cifar-10-batches-py"
    train_data, train_labels = [], []
    for batch in range(1, 6):
        data = rng.integers(0, 256, (2, 3072), dtype=np.uint8)
        labels = [batch % 10, (batch * 3) % 10]
        write_cifar_batch(folder / f"data_batch_{batch}", data, labels=labels)
        train_data.append(data)
        train_labels += labels
    test_data = rng.integers(0, 256, (3, 3072), dtype=np.uint8)
    write_cifar_batch(folder / "test_batch", test_data, labels=[9, 0, 4])
    meta = {"num_cases_per_batch": 2, "label_names": CIFAR10_NAMES, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(py2_pickle(meta))
    return np.concatenate(train_data), train_labels, test_data, [9, 0, 4]


def test_cifar10_reads_official_batch_format(tmp_path: Path, rng: np.random.Generator) -> None:
    train_data, train_labels, test_data, test_labels = write_cifar10(tmp_path, rng)
    dataset = load_dataset("cifar10", root=str(tmp_path), download=False)

    assert dataset.name == "cifar10"
    assert dataset.classes == CIFAR10_NAMES and dataset.num_classes == 10
    assert dataset.mean == (0.4914, 0.4822, 0.4465)
    assert dataset.std == (0.2470, 0.2435, 0.2616)
    assert dataset.train.images.dtype == torch.uint8
    assert dataset.train.images.shape == (10, 3, 32, 32)
    assert dataset.train.labels.tolist() == train_labels
    assert dataset.test.labels.tolist() == test_labels
    # A row is the red plane, then green, then blue, each 32x32 row-major.
    first = train_data[0]
    assert dataset.train.images[0, 0, 0, 1] == first[1]
    assert dataset.train.images[0, 1, 0, 0] == first[1024]
    assert dataset.train.images[0, 2, 31, 31] == first[3071]
    assert dataset.train.images[0, 0, 1, 0] == first[32]
    assert torch.equal(dataset.train.images.reshape(10, -1), torch.from_numpy(train_data))
    assert torch.equal(dataset.test.images.reshape(3, -1), torch.from_numpy(test_data))


def test_cifar100_uses_fine_labels(tmp_path: Path, rng: np.random.Generator) -> None:
    folder = tmp_path / "cifar-100-python"
    names = [f"class{i:02d}" for i in range(100)]
    train = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
    write_cifar_batch(folder / "train", train, fine_labels=[99, 5, 0, 42], coarse_labels=[1, 2, 3, 4])
    test = rng.integers(0, 256, (2, 3072), dtype=np.uint8)
    write_cifar_batch(folder / "test", test, fine_labels=[7, 8], coarse_labels=[0, 0])
    meta = {"fine_label_names": names, "coarse_label_names": [f"super{i}" for i in range(20)]}
    (folder / "meta").write_bytes(py2_pickle(meta))

    dataset = load_dataset("cifar100", root=str(tmp_path), download=False)
    assert dataset.classes == names
    assert dataset.train.labels.tolist() == [99, 5, 0, 42]
    assert dataset.test.labels.tolist() == [7, 8]
    assert dataset.mean == (0.5071, 0.4865, 0.4409)
    assert torch.equal(dataset.train.images.reshape(4, -1), torch.from_numpy(train))


def test_image_size_resizes(tmp_path: Path, rng: np.random.Generator) -> None:
    write_cifar10(tmp_path, rng)
    dataset = load_dataset("cifar10", root=str(tmp_path), image_size=48, download=False)
    assert dataset.train.images.shape == (10, 3, 48, 48)
    assert dataset.train.images.dtype == torch.uint8


def test_missing_without_download_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(UserError) as caught:
        load_dataset("cifar10", root=str(tmp_path), download=False)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"CIFAR-10 not found in {tmp_path} and could not be downloaded")
    assert "(download=False)" in message
    assert "cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html" in message
    assert "data.root=DIR" in message


def test_failed_download_gives_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Stands in for the network so the test neither downloads 160 MB on a connected machine
    # nor depends on how an offline one fails.
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(pai_bench.data.download, "download_and_extract_archive", offline)
    with pytest.raises(UserError) as caught:
        load_dataset("cifar100", root=str(tmp_path), download=True)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("CIFAR-100 not found")
    assert "Name or service not known" in message
    assert "cifar-100-python.tar.gz" in message


def test_corrupt_batch_is_a_user_error(tmp_path: Path, rng: np.random.Generator) -> None:
    write_cifar10(tmp_path, rng)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"\x80\x02}q")
    with pytest.raises(UserError, match="data_batch_3"):
        load_dataset("cifar10", root=str(tmp_path), download=False)
