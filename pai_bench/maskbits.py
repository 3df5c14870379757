"""Masks kept inside a trial record, and how alike two masks are.

Records are JSON, and a leaderboard is made from records alone, so a mask that the leaderboard
compares with others (the methods' Jaccard similarity) travels in its record: the layers'
masks flattened in record order, one bit per weight (`numpy.packbits`), compressed with LZMA
(a sparse mask is mostly zero bytes: ResNet-20's 270,896 weights are 34 KB packed, 4 KB
of text at 99 % sparsity, 42 KB at 36 %; VGG-16-BN's 14.7 M, 234 KB at 99 %), as base64 text. The layer names and shapes ride along, so
a mask decodes without the model.
"""

from __future__ import annotations

import base64
import lzma
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

ENCODING = "packbits+lzma+base64"


def encode_masks(masks: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The masks as a JSON-ready dict (`decode_masks` reads it back)."""
    flat = np.concatenate([mask.detach().cpu().numpy().astype(bool).reshape(-1) for mask in masks.values()]) if masks else np.zeros(0, bool)
    packed = np.packbits(flat)
    return {
        "encoding": ENCODING,
        "layers": [[name, list(mask.shape)] for name, mask in masks.items()],
        "data": base64.b64encode(lzma.compress(packed.tobytes(), preset=6)).decode("ascii"),
    }


def decode_masks(encoded: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The bool arrays `encode_masks` stored, by layer name, in layer order."""
    if encoded.get("encoding") != ENCODING:
        raise ValueError(f"unknown mask encoding {encoded.get('encoding')!r}; this pai-bench reads {ENCODING!r}")
    shapes = [(str(name), tuple(int(n) for n in shape)) for name, shape in encoded["layers"]]
    total = sum(int(np.prod(shape)) for _, shape in shapes)
    bits = np.unpackbits(np.frombuffer(lzma.decompress(base64.b64decode(encoded["data"])), dtype=np.uint8), count=total).astype(bool)
    masks, offset = {}, 0
    for name, shape in shapes:
        size = int(np.prod(shape))
        masks[name] = bits[offset : offset + size].reshape(shape)
        offset += size
    return masks


def flat_mask(masks: Mapping[str, Any]) -> np.ndarray:
    """Every layer's mask in one flat bool array, in the mapping's order."""
    flat = [np.asarray(mask.cpu() if isinstance(mask, torch.Tensor) else mask, dtype=bool).reshape(-1) for mask in masks.values()]
    return np.concatenate(flat) if flat else np.zeros(0, dtype=bool)


def jaccard(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    """|A ∩ B| / |A ∪ B| of the kept weights of two masks of one network (1 when both keep
    nothing). Masks of different layers or shapes are not of one network: ValueError."""
    if list(a) != list(b) or any(tuple(np.shape(a[name])) != tuple(np.shape(b[name])) for name in a):
        raise ValueError("the two masks are not of the same layers")
    return jaccard_flat(flat_mask(a), flat_mask(b))


def jaccard_flat(x: np.ndarray, y: np.ndarray) -> float:
    """`jaccard` of two flat bool arrays."""
    union = int(np.count_nonzero(x | y))
    return float(np.count_nonzero(x & y)) / union if union else 1.0
