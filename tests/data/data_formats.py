"""Writers for the on-disk formats the data loaders read (a module with a name of its own,
so importing it cannot pick up another folder's conftest)."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image


def py2_pickle(obj: object) -> bytes:
    """`obj` pickled the way Python 2 pickled the official CIFAR batches (protocol 2).

    There, dict keys and label names are Python 2 `str`, which Python 3 can only read back
    through `encoding=`; writing them with Python 3's pickle would make them `bytes` or `str`
    objects of a different kind and test a format the real files do not have.
    """
    return b"\x80\x02" + _py2_body(obj) + b"."


def _py2_body(obj: object) -> bytes:
    if isinstance(obj, dict):
        items = b"".join(_py2_body(key) + _py2_body(value) for key, value in obj.items())
        return b"}(" + items + b"u"  # EMPTY_DICT MARK ... SETITEMS
    if isinstance(obj, list):
        return b"](" + b"".join(_py2_body(item) for item in obj) + b"e"  # EMPTY_LIST MARK APPENDS
    if isinstance(obj, str):  # a Python 2 byte string: SHORT_BINSTRING or BINSTRING
        data = obj.encode("latin1")
        if len(data) < 256:
            return b"U" + bytes([len(data)]) + data
        return b"T" + struct.pack("<i", len(data)) + data
    if isinstance(obj, int):
        return b"J" + struct.pack("<i", obj)  # BININT
    if isinstance(obj, np.ndarray):
        # numpy's own protocol-2 pickle minus its PROTO header and STOP; it only refers to memo
        # entries it put itself, so it nests safely.
        return pickle.dumps(obj, protocol=2)[2:-1]
    raise TypeError(type(obj))


def write_image(path: Path, pixels: np.ndarray) -> None:
    """Save H x W x 3 (or H x W for grayscale) uint8 pixels; the format follows the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def solid(color: tuple[int, int, int], size: int = 8) -> np.ndarray:
    return np.broadcast_to(np.array(color, dtype=np.uint8), (size, size, 3)).copy()


#: CIFAR-10's class names, in its label order.
CIFAR10_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def write_cifar_batch(path: Path, data: np.ndarray, **labels: list[int]) -> None:
    """One pickled batch as the official archives hold it: uint8 N x 3072 rows (R, G, B planes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    content = {
        "batch_label": f"batch {path.name}",
        "data": data,
        **labels,
        "filenames": [f"{i}.png" for i in range(len(data))],
    }
    path.write_bytes(py2_pickle(content))


def make_cifar(root: Path, name: str, train_labels: list[int], test_labels: list[int], rng: np.random.Generator) -> Path:
    """A small `cifar-10-batches-py` (five train batches, test_batch, batches.meta) or
    `cifar-100-python` (train, test, meta with fine and coarse labels) folder under `root`."""
    def pixels(count: int) -> np.ndarray:
        return rng.integers(0, 256, (count, 3072), dtype=np.uint8)

    if name == "cifar10":
        folder = root / "cifar-10-batches-py"
        for batch, labels in enumerate(np.array_split(np.array(train_labels), 5), 1):
            write_cifar_batch(folder / f"data_batch_{batch}", pixels(len(labels)), labels=labels.tolist())
        write_cifar_batch(folder / "test_batch", pixels(len(test_labels)), labels=list(test_labels))
        meta = {"num_cases_per_batch": len(train_labels) // 5, "label_names": CIFAR10_NAMES, "num_vis": 3072}
        (folder / "batches.meta").write_bytes(py2_pickle(meta))
        return folder
    folder = root / "cifar-100-python"
    for split, labels in (("train", list(train_labels)), ("test", list(test_labels))):
        write_cifar_batch(folder / split, pixels(len(labels)), fine_labels=labels, coarse_labels=[label // 5 for label in labels])
    meta = {"fine_label_names": [f"class{i:02d}" for i in range(100)], "coarse_label_names": [f"super{i:02d}" for i in range(20)]}
    (folder / "meta").write_bytes(py2_pickle(meta))
    return folder


def make_tiny_imagenet(root: Path, classes: int, train_per_class: int, val_per_class: int, size: int, rng: np.random.Generator) -> Path:
    """A `tiny-imagenet-200` tree: wnids.txt, train/<wnid>/images/*.JPEG with its boxes file,
    val/images/*.JPEG labelled only through val/val_annotations.txt."""
    folder = root / "tiny-imagenet-200"
    wnids = [f"n{1000000 + 7 * c:08d}" for c in range(classes)]
    folder.mkdir(parents=True)
    (folder / "wnids.txt").write_text("".join(f"{wnid}\n" for wnid in wnids))
    annotations = []
    for wnid in wnids:
        for i in range(train_per_class):
            write_image(folder / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for i in range(val_per_class):
            file = f"val_{len(annotations)}.JPEG"
            write_image(folder / "val" / "images" / file, rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
            annotations.append(f"{file}\t{wnid}\t0\t0\t{size}\t{size}\n")
    (folder / "val" / "val_annotations.txt").write_text("".join(annotations))
    return folder
