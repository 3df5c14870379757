"""Batch augmentation against plain per-image reference code."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pai_bench.data.augment import (
    crop_flip,
    normalize,
    random_crop_flip,
    random_resized_crop_flip,
    resize,
    resized_crop_boxes,
    resized_crop_flip,
)


def random_images(n: int, height: int = 6, width: int = 6, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, height, width), dtype=torch.uint8, generator=generator)


def reference_crop_flip(
    image: torch.Tensor, padding: int, y: int, x: int, flip: bool
) -> torch.Tensor:
    channels, height, width = image.shape
    padded = torch.zeros(channels, height + 2 * padding, width + 2 * padding, dtype=image.dtype)
    padded[:, padding : padding + height, padding : padding + width] = image
    crop = padded[:, y : y + height, x : x + width]
    return crop.flip(-1) if flip else crop


def test_crop_flip_matches_reference() -> None:
    images = random_images(6, height=5, width=7)
    offsets_y = torch.tensor([0, 4, 2, 1, 3, 0])
    offsets_x = torch.tensor([4, 0, 2, 3, 0, 4])
    flips = torch.tensor([False, True, False, True, True, False])
    out = crop_flip(images, 2, offsets_y, offsets_x, flips)
    assert out.dtype == torch.uint8 and out.shape == images.shape
    for i in range(len(images)):
        expected = reference_crop_flip(
            images[i], 2, int(offsets_y[i]), int(offsets_x[i]), bool(flips[i])
        )
        assert torch.equal(out[i], expected), i


def test_random_crop_flip_draws_every_offset_and_flip() -> None:
    images = random_images(200, seed=1)
    out = random_crop_flip(images, 2, torch.Generator().manual_seed(0))
    seen = set()
    for i in range(len(images)):
        matches = [
            (y, x, f)
            for y in range(5)
            for x in range(5)
            for f in (False, True)
            if torch.equal(out[i], reference_crop_flip(images[i], 2, y, x, f))
        ]
        assert matches, f"image {i} is no padded crop"
        seen.update(matches)
    assert {y for y, _, _ in seen} == {x for _, x, _ in seen} == set(range(5))
    assert {f for _, _, f in seen} == {False, True}
    again = random_crop_flip(images, 2, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_resized_crop_flip_crops_exact_box() -> None:
    images = random_images(2, height=8, width=10)
    boxes = torch.tensor([[2, 3, 4, 4], [0, 5, 5, 5]])
    out = resized_crop_flip(images, boxes, 4, torch.tensor([False, True]))
    assert torch.equal(out[0], images[0, :, 2:6, 3:7])
    # A 5x5 box into 4x4 averages samples; the flip mirrors that result.
    plain = resized_crop_flip(images[1:], boxes[1:], 4, torch.tensor([False]))
    assert torch.equal(out[1], plain[0].flip(-1))


def test_rrc_full_scale_is_the_image_or_its_mirror() -> None:
    images = random_images(64, height=8, width=8)
    out = random_resized_crop_flip(
        images, 8, torch.Generator().manual_seed(0), scale=(1.0, 1.0), ratio=(1.0, 1.0)
    )
    flipped = [torch.equal(out[i], images[i].flip(-1)) for i in range(64)]
    same = [torch.equal(out[i], images[i]) for i in range(64)]
    assert all(a or b for a, b in zip(flipped, same, strict=True))
    assert any(flipped) and any(same)


def test_rrc_full_scale_upscales_bilinearly() -> None:
    images = random_images(16, height=8, width=8)
    out = random_resized_crop_flip(
        images, 20, torch.Generator().manual_seed(0), scale=(1.0, 1.0), ratio=(1.0, 1.0)
    )
    assert out.shape == (16, 3, 20, 20) and out.dtype == torch.uint8
    upscaled = F.interpolate(images.float(), size=(20, 20), mode="bilinear", align_corners=False)
    for i in range(16):
        error = torch.minimum((out[i] - upscaled[i]).abs(), (out[i] - upscaled[i].flip(-1)).abs())
        assert error.max() <= 0.5 + 1e-3


def test_rrc_falls_back_to_clamped_center_crop() -> None:
    # An area fraction above one never fits: torchvision then center-crops at the nearest
    # allowed ratio: 8 x 16 at ratio <= 4/3 is 8 x 11, left = (16 - 11) // 2.
    images = random_images(8, height=8, width=16)
    out = random_resized_crop_flip(images, 6, torch.Generator().manual_seed(0), scale=(2.0, 2.0))
    box = torch.tensor([[0, 2, 8, 11]]).expand(8, 4)
    plain = resized_crop_flip(images, box, 6, torch.zeros(8, dtype=torch.bool))
    for i in range(8):
        assert torch.equal(out[i], plain[i]) or torch.equal(out[i], plain[i].flip(-1))


def test_rrc_boxes_follow_scale_and_ratio() -> None:
    boxes = resized_crop_boxes(
        4000, 60, 80, torch.Generator().manual_seed(0), (0.1, 0.5), (0.5, 2.0)
    )
    top, left, height, width = boxes.T
    assert boxes.dtype == torch.int64
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + height <= 60).all() and (left + width <= 80).all()
    area = (height * width).double() / (60 * 80)
    aspect = width.double() / height
    # Rounding the sides to whole pixels moves area and ratio a little past the bounds.
    assert area.min() > 0.09 and area.max() < 0.52
    assert aspect.min() > 0.45 and aspect.max() < 2.1
    assert area.mean() == pytest.approx(0.3, abs=0.02)  # uniform in (0.1, 0.5)
    assert aspect.log().mean() == pytest.approx(0.0, abs=0.05)  # log-uniform around 1
    # Positions are uniform over what fits: both edges get touched.
    assert (top == 0).any() and (top + height == 60).any()
    assert (left == 0).any() and (left + width == 80).any()


def test_rrc_crops_are_not_the_whole_image() -> None:
    images = random_images(32, height=16, width=16)
    generator = torch.Generator().manual_seed(0)
    out = random_resized_crop_flip(images, 16, generator, scale=(0.1, 0.3))
    assert out.shape == images.shape
    assert not any(
        torch.equal(out[i], images[i]) or torch.equal(out[i], images[i].flip(-1)) for i in range(32)
    )


def test_normalize() -> None:
    images = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 3, 1, 1)
    out = normalize(images, (0.5, 0.2, 0.0), (0.5, 0.1, 2.0))
    assert out.dtype == torch.float32
    assert out.flatten().tolist() == pytest.approx([-1.0, 0.0, 0.5])
    with pytest.raises(TypeError):
        normalize(images.float(), (0.5,) * 3, (0.5,) * 3)


def test_resize_keeps_dtype_and_constants() -> None:
    images = torch.full((2, 3, 8, 8), 77, dtype=torch.uint8)
    out = resize(images, 20)
    assert out.dtype == torch.uint8 and out.shape == (2, 3, 20, 20)
    assert (out == 77).all()
    floats = resize(images.float() / 255, 4)
    assert floats.dtype == torch.float32 and floats.shape == (2, 3, 4, 4)
    assert torch.allclose(floats, torch.full_like(floats, 77 / 255))
    assert resize(images, 8) is images
