"""Augmentation and input preparation on whole batches (N x C x H x W), on any device.

Each random op draws its parameters from the generator it is given, on the generator's device,
and applies them through a deterministic core that takes them as tensors; the core is what the
tests check against a plain per-image reference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

FALLBACK_TRIES = 10
"""torchvision's RandomResizedCrop tries this many (scale, ratio) draws before a center crop."""

RRC_SCALE = (0.1, 1.0)
"""Area fractions of a random resized crop: the PX and Synaptic-Flow codes' Tiny-ImageNet range."""
RRC_RATIO = (3 / 4, 4 / 3)
"""Aspect ratios of a random resized crop: torchvision's default (the PX code uses 0.8 to 1.25)."""


def random_crop_flip(
    images: torch.Tensor, padding: int, generator: torch.Generator
) -> torch.Tensor:
    """The CIFAR recipe: a random crop of the zero-padded image, flipped with probability 1/2."""
    return crop_flip(images, padding, *draw_crop_flip(len(images), padding, generator, images.device))


def draw_crop_flip(
    n: int, padding: int, generator: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(offsets_y, offsets_x, flips) for `crop_flip`, drawn on the generator's device."""
    offsets = torch.randint(
        0, 2 * padding + 1, (2, n), generator=generator, device=generator.device
    )
    flips = torch.rand(n, generator=generator, device=generator.device) < 0.5
    offsets, flips = offsets.to(device), flips.to(device)
    return offsets[0], offsets[1], flips


def crop_flip(
    images: torch.Tensor,
    padding: int,
    offsets_y: torch.Tensor,
    offsets_x: torch.Tensor,
    flips: torch.Tensor,
) -> torch.Tensor:
    """Crop image i of the `padding`-zero-padded batch at (offsets_y[i], offsets_x[i]), same size
    as the input, and mirror it left-right where flips[i].

    One gather over flat pixel indices serves the whole batch, whatever the offsets.
    """
    n, channels, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    padded_width = width + 2 * padding
    rows = offsets_y[:, None] + torch.arange(height, device=images.device)  # n x H
    columns = torch.arange(width, device=images.device).expand(n, width)
    columns = torch.where(flips[:, None], columns.flip(1), columns) + offsets_x[:, None]  # n x W
    flat = (rows[:, :, None] * padded_width + columns[:, None, :]).reshape(n, 1, -1)
    pixels = padded.reshape(n, channels, -1).gather(2, flat.expand(n, channels, -1))
    return pixels.reshape(n, channels, height, width)


def random_resized_crop_flip(
    images: torch.Tensor,
    output_size: int,
    generator: torch.Generator,
    scale: tuple[float, float] = RRC_SCALE,
    ratio: tuple[float, float] = RRC_RATIO,
) -> torch.Tensor:
    """torchvision's RandomResizedCrop + RandomHorizontalFlip, drawn for all images at once."""
    n, _, height, width = images.shape
    boxes, flips = draw_resized_crop_flip(n, height, width, generator, images.device, scale, ratio)
    return resized_crop_flip(images, boxes, output_size, flips)


def draw_resized_crop_flip(
    n: int,
    height: int,
    width: int,
    generator: torch.Generator,
    device: torch.device,
    scale: tuple[float, float] = RRC_SCALE,
    ratio: tuple[float, float] = RRC_RATIO,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(boxes, flips) for `resized_crop_flip`, drawn on the generator's device."""
    boxes = resized_crop_boxes(n, height, width, generator, scale, ratio)
    flips = torch.rand(n, generator=generator, device=generator.device) < 0.5
    return boxes.to(device), flips.to(device)


def resized_crop_boxes(
    n: int,
    height: int,
    width: int,
    generator: torch.Generator,
    scale: tuple[float, float],
    ratio: tuple[float, float],
) -> torch.Tensor:
    """n x (top, left, height, width) crops with RandomResizedCrop.get_params' distribution.

    Per image: up to FALLBACK_TRIES (area fraction, log-uniform aspect ratio) draws, the first
    that fits wins, at a uniform position; if none fits, the center crop clamped to `ratio`.
    """
    device = generator.device
    fraction = torch.empty(n, FALLBACK_TRIES, device=device).uniform_(*scale, generator=generator)
    log_ratio = torch.empty(n, FALLBACK_TRIES, device=device).uniform_(
        math.log(ratio[0]), math.log(ratio[1]), generator=generator
    )
    area = fraction * (height * width)
    crop_w = (area * log_ratio.exp()).sqrt().round()
    crop_h = (area / log_ratio.exp()).sqrt().round()
    fits = (crop_w > 0) & (crop_w <= width) & (crop_h > 0) & (crop_h <= height)
    first = fits.float().argmax(1, keepdim=True)  # argmax of a 0/1 row: its first fit
    found = fits.any(1)
    fallback_h, fallback_w = _center_crop_size(height, width, ratio)
    h = torch.where(found, crop_h.gather(1, first).squeeze(1), fallback_h)
    w = torch.where(found, crop_w.gather(1, first).squeeze(1), fallback_w)
    top = (torch.rand(n, generator=generator, device=device) * (height - h + 1)).floor()
    left = (torch.rand(n, generator=generator, device=device) * (width - w + 1)).floor()
    top = torch.where(found, top, (height - h).div(2, rounding_mode="floor"))
    left = torch.where(found, left, (width - w).div(2, rounding_mode="floor"))
    return torch.stack([top, left, h, w], 1).long()


def _center_crop_size(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int]:
    in_ratio = width / height
    if in_ratio < min(ratio):
        return round(width / min(ratio)), width
    if in_ratio > max(ratio):
        return height, round(height * max(ratio))
    return height, width


def resized_crop_flip(
    images: torch.Tensor, boxes: torch.Tensor, output_size: int, flips: torch.Tensor
) -> torch.Tensor:
    """Crop box i = (top, left, height, width) in pixels out of image i, resize it to
    `output_size` squared and mirror it where flips[i]; uint8 in, uint8 out.

    `roi_align` with adaptive sampling averages ceil(crop/output) bilinear samples per output
    pixel, which antialiases downscaling and is plain bilinear (as `interpolate` with
    align_corners=False) when upscaling.
    """
    n = len(images)
    top, left, height, width = boxes.to(torch.float32).unbind(1)
    indices = torch.arange(n, device=images.device, dtype=torch.float32)
    rois = torch.stack([indices, left, top, left + width, top + height], 1)
    crops = roi_align(images.float(), rois, output_size, sampling_ratio=-1, aligned=True)
    crops = torch.where(flips[:, None, None, None], crops.flip(3), crops)
    return _to_uint8(crops)


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear, antialiased resize to `size` squared (e.g. 32 -> 224 for transfer suites).

    Float in, float out; uint8 in, uint8 out (rounded), so it fits before or after `normalize`.
    """
    if images.shape[-2:] == (size, size):
        return images
    resized = F.interpolate(
        images.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True
    )
    return _to_uint8(resized) if images.dtype == torch.uint8 else resized


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 images -> float32 `(x / 255 - mean) / std` per channel."""
    if images.dtype != torch.uint8:
        raise TypeError(f"normalize expects uint8 images, got {images.dtype}")
    mean_t = torch.tensor(mean, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    return images.float().div_(255).sub_(mean_t).div_(std_t)


def _to_uint8(images: torch.Tensor) -> torch.Tensor:
    return images.round_().clamp_(0, 255).to(torch.uint8)
