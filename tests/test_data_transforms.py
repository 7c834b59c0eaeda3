"""Transforms: crop boxes in bounds and shared by all frames, flip, normalization, evaluation views."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vjepa.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CropBox,
    CropSpec,
    EvalViewSpec,
    crop_resize,
    eval_views,
    max_useful_short_side,
    normalize,
    random_resized_crop_box,
    train_transform,
)


@pytest.mark.parametrize(("height", "width"), [(240, 320), (720, 1280), (64, 40), (10, 300), (3, 3)])
def test_crop_boxes_stay_in_bounds_and_follow_the_ranges(height: int, width: int) -> None:
    rng = np.random.default_rng(0)
    spec = CropSpec()
    for _ in range(300):
        box = random_resized_crop_box(height, width, spec.scale, spec.aspect, rng)
        assert box.top >= 0 and box.top + box.height <= height
        assert box.left >= 0 and box.left + box.width <= width
        assert box.height > 0 and box.width > 0
    if (height, width) == (240, 320):  # the common case: no fallback, area and aspect within range
        boxes = [random_resized_crop_box(240, 320, (0.3, 1.0), (0.75, 1.35), rng) for _ in range(300)]
        areas = np.array([b.height * b.width / (240 * 320) for b in boxes])
        aspects = np.array([b.width / b.height for b in boxes])
        assert areas.min() > 0.28 and areas.max() <= 1.0
        assert aspects.min() > 0.72 and aspects.max() < 1.40


def test_fallback_is_a_central_crop_with_clamped_aspect() -> None:
    # a 10 x 300 strip: no crop with aspect <= 1.35 and area >= 30% fits, so the fallback is used
    box = random_resized_crop_box(10, 300, (0.3, 1.0), (0.75, 1.35), np.random.default_rng(0))
    assert box == CropBox(0, (300 - 14) // 2, 10, 14)


def test_one_box_for_all_frames() -> None:
    """Frames that differ only by a constant give outputs that differ only by that constant."""
    base = np.random.default_rng(0).integers(0, 200, (1, 60, 80, 3), dtype=np.uint8)
    frames = np.concatenate([base + t * 10 for t in range(5)])  # [5, 60, 80, 3]
    for seed in range(10):
        clip, box, _ = train_transform(frames, CropSpec(resolution=32), np.random.default_rng(seed))
        assert clip.shape == (3, 5, 32, 32) and clip.dtype == torch.float32
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1) * 255
        for t in range(1, 5):
            diff = (clip[:, t] - clip[:, 0]) * std
            assert torch.allclose(diff, torch.full_like(diff, 10.0 * t), atol=1e-3)


def test_flip_uses_the_same_box() -> None:
    frames = np.random.default_rng(1).integers(0, 256, (3, 50, 70, 3), dtype=np.uint8)
    flips = 0
    for seed in range(20):
        plain, box_a, flipped_a = train_transform(
            frames, CropSpec(resolution=24, flip=False), np.random.default_rng(seed)
        )
        maybe, box_b, flipped = train_transform(frames, CropSpec(resolution=24), np.random.default_rng(seed))
        assert box_a == box_b and not flipped_a
        flips += flipped
        assert torch.equal(maybe, plain.flip(-1) if flipped else plain)
    assert 3 < flips < 17


def test_crop_resize_matches_bilinear_interpolation_of_the_crop() -> None:
    frames = np.random.default_rng(2).integers(0, 256, (2, 40, 50, 3), dtype=np.uint8)
    box = CropBox(5, 7, 20, 30)
    out = crop_resize(frames, box, 16)
    ref = torch.from_numpy(frames[:, 5:25, 7:37]).permute(0, 3, 1, 2).float()
    ref = torch.nn.functional.interpolate(ref, size=(16, 16), mode="bilinear", align_corners=False)
    assert torch.equal(out, ref)


def test_max_useful_short_side() -> None:
    assert max_useful_short_side(CropSpec()) == 409
    assert max_useful_short_side(CropSpec(resolution=64, scale=(1.0, 1.0))) == 64


def test_normalization_is_imagenet() -> None:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255
    x = mean.expand(4, 3, 5, 5).clone()
    assert torch.allclose(normalize(x), torch.zeros(3, 4, 5, 5), atol=1e-6)
    white = normalize(torch.full((1, 3, 1, 1), 255.0)).flatten()
    expected = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(white, expected, atol=1e-6)


def test_three_views_along_the_long_side() -> None:
    frames = np.zeros((2, 240, 320, 3), dtype=np.uint8)
    frames[:, :, :, 0] = (np.arange(320) * 255 // 319)[None, None, :]  # red grows with the column
    views = eval_views(frames, EvalViewSpec(resolution=112, num_views=3))
    assert views.shape == (3, 3, 2, 112, 112)
    lefts = [v[0, 0, 0, 0].item() for v in views]
    assert lefts[0] < lefts[1] < lefts[2]  # left, centre, right
    portrait = eval_views(frames.transpose(0, 2, 1, 3).copy(), EvalViewSpec(resolution=112, num_views=3))
    assert portrait.shape == (3, 3, 2, 112, 112)
    square = eval_views(np.zeros((1, 50, 50, 3), np.uint8), EvalViewSpec(resolution=32, num_views=3))
    assert torch.equal(square[0], square[2])


def test_single_view_is_a_centre_crop_after_resizing_to_256_over_224() -> None:
    frames = np.random.default_rng(3).integers(0, 256, (2, 240, 320, 3), dtype=np.uint8)
    view = eval_views(frames, EvalViewSpec(resolution=224, num_views=1))
    assert view.shape == (1, 3, 2, 224, 224)
    assert torch.equal(view, eval_views(frames, EvalViewSpec(resolution=224, num_views=1)))
