"""Folder datasets (ImageFolder trees, Tiny-ImageNet) from real image files, and their cache."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from data_formats import solid, write_image

import pai_bench.data.folders
from pai_bench.data import load_dataset
from pai_bench.errors import UserError

# Far-apart colors survive JPEG compression close enough to tell which file a row came from.
COLORS = [
    (250, 10, 10),
    (10, 250, 10),
    (10, 10, 250),
    (250, 250, 10),
    (10, 250, 250),
    (250, 10, 250),
    (128, 128, 128),
    (250, 250, 250),
]


def color_index(image: torch.Tensor) -> int:
    mean = image.double().mean((1, 2))
    distances = [float((mean - torch.tensor(c, dtype=torch.float64)).abs().sum()) for c in COLORS]
    return int(np.argmin(distances))


def make_tiny(root: Path) -> Path:
    """A tiny-imagenet-200 tree: 2 classes (wnids.txt not in sorted order), 2 train images each,
    3 val images labelled only through val_annotations.txt."""
    folder = root / "tiny-imagenet-200"
    folder.mkdir(parents=True)
    (folder / "wnids.txt").write_text("n09999999\nn01000000\n")
    for c, wnid in enumerate(["n09999999", "n01000000"]):
        for i in range(2):
            write_image(
                folder / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", solid(COLORS[2 * c + i])
            )
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
    annotations = [
        ("val_0.JPEG", "n01000000", 4),
        ("val_1.JPEG", "n09999999", 5),
        ("val_2.JPEG", "n01000000", 6),
    ]
    for file, _, color in annotations:
        write_image(folder / "val" / "images" / file, solid(COLORS[color]))
    (folder / "val" / "val_annotations.txt").write_text(
        "".join(f"{file}\t{wnid}\t0\t0\t8\t8\n" for file, wnid, _ in annotations)
    )
    # One grayscale JPEG, as the real set has: it must come out as 3 equal channels.
    write_image(
        folder / "train" / "n01000000" / "images" / "n01000000_2.JPEG",
        np.full((8, 8), 128, dtype=np.uint8),
    )
    return folder


def test_tinyimagenet_labels_follow_wnids_and_annotations(tmp_path: Path) -> None:
    folder = make_tiny(tmp_path)
    for root in (tmp_path, folder):  # the parent or the tiny-imagenet-200 folder itself
        dataset = load_dataset("tinyimagenet", root=str(root), download=False)
        assert dataset.classes == ["n09999999", "n01000000"]
        assert dataset.train.images.shape == (5, 3, 8, 8)
        assert dataset.train.labels.tolist() == [0, 0, 1, 1, 1]
        assert [color_index(image) for image in dataset.train.images[:4]] == [0, 1, 2, 3]
        assert color_index(dataset.train.images[4]) == 6  # the grayscale one, gray
        assert dataset.test.labels.tolist() == [1, 0, 1]
        assert [color_index(image) for image in dataset.test.images] == [4, 5, 6]
        assert dataset.mean == (0.480, 0.448, 0.397)  # as Synaptic-Flow and PX normalize
        assert dataset.std == (0.276, 0.269, 0.282)


def test_tinyimagenet_resizes(tmp_path: Path) -> None:
    make_tiny(tmp_path)
    dataset = load_dataset("tinyimagenet", root=str(tmp_path), image_size=4, download=False)
    assert dataset.train.images.shape == (5, 3, 4, 4)
    assert dataset.test.images.shape == (3, 3, 4, 4)


def test_tinyimagenet_missing_says_where_to_put_it(tmp_path: Path) -> None:
    with pytest.raises(UserError) as caught:
        load_dataset("tinyimagenet", root=str(tmp_path), download=False)
    message = str(caught.value)
    assert "\n" not in message
    assert "download http://cs231n.stanford.edu/tiny-imagenet-200.zip" in message
    assert f"unzip it in {tmp_path}" in message


def test_tinyimagenet_bad_annotation(tmp_path: Path) -> None:
    folder = make_tiny(tmp_path)
    (folder / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn05555555\t0\t0\t8\t8\n")
    with pytest.raises(UserError, match=r"val_annotations\.txt:1"):
        load_dataset("tinyimagenet", root=str(tmp_path), download=False)


def make_imagefolder(
    root: Path, rng: np.random.Generator, test_name: str = "test"
) -> dict[str, np.ndarray]:
    """PNG (lossless, so pixels can be compared exactly) and JPEG files in three classes."""
    pixels = {}
    for split, count in (("train", 2), (test_name, 1)):
        for label in ("dog", "Zebra", "cat"):
            for i in range(count):
                path = root / split / label / f"{i}.png"
                pixels[f"{split}/{label}/{i}"] = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
                write_image(path, pixels[f"{split}/{label}/{i}"])
    write_image(root / "train" / "cat" / "2.jpg", solid((200, 100, 50), size=6))
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    return pixels


def test_imagefolder_class_order_pixels_and_stats(tmp_path: Path, rng: np.random.Generator) -> None:
    pixels = make_imagefolder(tmp_path, rng)
    dataset = load_dataset("imagefolder", root=str(tmp_path))

    assert dataset.classes == ["Zebra", "cat", "dog"]  # torchvision's order: sorted names
    assert dataset.train.labels.tolist() == [0, 0, 1, 1, 1, 2, 2]
    assert dataset.test.labels.tolist() == [0, 1, 2]
    expected = torch.from_numpy(pixels["train/cat/1"]).permute(2, 0, 1)
    assert torch.equal(dataset.train.images[3], expected)
    expected = torch.from_numpy(pixels["test/dog/0"]).permute(2, 0, 1)
    assert torch.equal(dataset.test.images[2], expected)
    jpeg = dataset.train.images[4].double().mean((1, 2))
    assert torch.allclose(jpeg, torch.tensor([200.0, 100.0, 50.0], dtype=torch.float64), atol=3)

    train = dataset.train.images.double() / 255
    assert dataset.mean == pytest.approx(train.mean((0, 2, 3)).tolist(), abs=1e-6)
    assert dataset.std == pytest.approx(train.std((0, 2, 3), unbiased=False).tolist(), abs=1e-6)


def test_imagefolder_accepts_val(tmp_path: Path, rng: np.random.Generator) -> None:
    make_imagefolder(tmp_path, rng, test_name="val")
    assert len(load_dataset("imagefolder", root=str(tmp_path)).test) == 3


def test_imagefolder_class_mismatch(tmp_path: Path, rng: np.random.Generator) -> None:
    make_imagefolder(tmp_path, rng)
    write_image(tmp_path / "test" / "emu" / "0.png", solid((1, 2, 3)))
    with pytest.raises(UserError, match=r"only in test: \['emu'\]"):
        load_dataset("imagefolder", root=str(tmp_path))


def test_mixed_sizes_need_image_size(tmp_path: Path, rng: np.random.Generator) -> None:
    make_imagefolder(tmp_path, rng)
    write_image(tmp_path / "train" / "dog" / "big.png", solid((0, 0, 0), size=12))
    with pytest.raises(UserError, match=r"data\.image_size"):
        load_dataset("imagefolder", root=str(tmp_path))
    dataset = load_dataset("imagefolder", root=str(tmp_path), image_size=5)
    assert dataset.train.images.shape == (8, 3, 5, 5)
    assert dataset.test.images.shape == (3, 3, 5, 5)


def test_missing_folder_message(tmp_path: Path) -> None:
    with pytest.raises(UserError) as caught:
        load_dataset("imagefolder", root=str(tmp_path / "nowhere"))
    message = str(caught.value)
    assert "\n" not in message
    assert f"{tmp_path / 'nowhere'}/train/<class>/" in message
    assert "data.root=DIR" in message


def no_decoding(*args: object, **kwargs: object) -> torch.Tensor:
    raise AssertionError("decoded although the cache is current")


def test_cache_is_reused_and_invalidated(
    tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_imagefolder(tmp_path, rng)
    first = load_dataset("imagefolder", root=str(tmp_path))
    assert (tmp_path / ".pai-bench-cache" / "imagefolder-native.pt").is_file()

    with monkeypatch.context() as patch:
        patch.setattr(pai_bench.data.folders, "decode_images", no_decoding)
        second = load_dataset("imagefolder", root=str(tmp_path))
        assert torch.equal(first.train.images, second.train.images)
        assert torch.equal(first.test.labels, second.test.labels)
        assert first.mean == second.mean and first.classes == second.classes

        # A rewritten file changes the key, so the cache must not be used.
        path = tmp_path / "train" / "dog" / "0.png"
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
        with pytest.raises(AssertionError, match="decoded although"):
            load_dataset("imagefolder", root=str(tmp_path))
        # A different image size is a different cache.
        with pytest.raises(AssertionError, match="decoded although"):
            load_dataset("imagefolder", root=str(tmp_path), image_size=4)


def test_corrupt_cache_is_rebuilt(
    tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_imagefolder(tmp_path, rng)
    first = load_dataset("imagefolder", root=str(tmp_path))
    cache = tmp_path / ".pai-bench-cache" / "imagefolder-native.pt"
    cache.write_bytes(cache.read_bytes()[:100])

    with pytest.warns(UserWarning, match="unreadable cache"):
        rebuilt = load_dataset("imagefolder", root=str(tmp_path))
    assert torch.equal(first.train.images, rebuilt.train.images)
    assert first.mean == rebuilt.mean
    # The rebuild rewrote a good cache.
    monkeypatch.setattr(pai_bench.data.folders, "decode_images", no_decoding)
    assert torch.equal(
        load_dataset("imagefolder", root=str(tmp_path)).train.images, first.train.images
    )


def test_cifar10_jpeg_is_an_imagefolder_of_cifar10s_classes(tmp_path: Path, rng: np.random.Generator) -> None:
    from pai_bench.data.folders import CIFAR10_CLASSES

    for split in ("train", "test"):
        for label in CIFAR10_CLASSES:
            write_image(tmp_path / split / label / "0.jpg", rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
    dataset = load_dataset("cifar10-jpeg", root=str(tmp_path))
    assert dataset.name == "cifar10-jpeg" and dataset.classes == CIFAR10_CLASSES
    assert dataset.train.labels.tolist() == list(range(10)) and dataset.train.images.shape == (10, 3, 4, 4)


def test_cifar10_jpeg_refuses_other_classes(tmp_path: Path, rng: np.random.Generator) -> None:
    make_imagefolder(tmp_path, rng)
    with pytest.raises(UserError, match=r"does not hold CIFAR-10's classes: its folders are \['Zebra', 'cat', 'dog'\]"):
        load_dataset("cifar10-jpeg", root=str(tmp_path))
