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
