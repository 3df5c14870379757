"""Decode image files into one uint8 N x 3 x H x W tensor.

PIL decodes with the GIL released, so a thread pool scales over cores without the pickling
cost of processes; each worker fills its own slice of one preallocated array, so there is no
per-image tensor and no concatenation at the end.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pai_bench.errors import UserError

CHUNK = 256


def decode_images(paths: Sequence[Path], image_size: int | None) -> torch.Tensor:
    """All `paths` as RGB, resized to `image_size` squared if given.

    Without `image_size` every image must have the first one's size; a mixed folder raises a
    `UserError` asking for `data.image_size` rather than silently picking a size.
    """
    if not paths:
        return torch.empty(0, 3, image_size or 0, image_size or 0, dtype=torch.uint8)
    if image_size is None:
        width, height = _decode(paths[0]).size
    else:
        width = height = image_size
    out = np.empty((len(paths), height, width, 3), dtype=np.uint8)

    def fill(start: int) -> None:
        for index in range(start, min(start + CHUNK, len(paths))):
            out[index] = _read(paths[index], image_size, (width, height))

    workers = min(32, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        # list() re-raises the first error from a worker here.
        list(pool.map(fill, range(0, len(paths), CHUNK)))
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def _read(path: Path, image_size: int | None, expected: tuple[int, int]) -> np.ndarray:
    rgb = _decode(path)
    if image_size is not None and rgb.size != expected:
        rgb = rgb.resize(expected, Image.BILINEAR)
    elif rgb.size != expected:
        raise UserError(
            f"images differ in size ({path} is {rgb.size[0]}x{rgb.size[1]}, others "
            f"{expected[0]}x{expected[1]}); set data.image_size=N to resize them all to NxN"
        )
    return np.asarray(rgb)


def _decode(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except OSError as error:  # PIL.UnidentifiedImageError and truncated files are OSErrors
        raise UserError(f"cannot read image {path}: {error}") from None
