"""Clip transforms in torch: uint8 frames in, normalized float clips out.

Frames stay uint8 through cropping (a view, no copy); only the cropped region is converted to float for the
bilinear resize. Training follows the official `VideoTransform`: one random resized crop box for all frames
of a clip, a horizontal flip of all frames with probability 0.5, ImageNet normalization. Evaluation resizes
the short side and takes a centre crop (1 view) or views spread along the long side (several views).
All randomness comes from the `numpy.random.Generator` passed in, so a sample is a function of its seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class CropSpec:
    """Training augmentation of a clip.

    Args:
        resolution: output side S in pixels.
        scale: range of the crop area as a fraction of the frame area.
        aspect: range of the crop aspect ratio w/h, drawn log-uniformly.
        flip: flip all frames horizontally with probability 0.5.
    """

    resolution: int = 224
    scale: tuple[float, float] = (0.3, 1.0)
    aspect: tuple[float, float] = (0.75, 1.35)
    flip: bool = True

    def __post_init__(self) -> None:
        if self.resolution < 1:
            raise ValueError(f"crop resolution must be >= 1, got {self.resolution}")
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < lo <= hi <= 1, got {self.scale}")
        if not 0 < self.aspect[0] <= self.aspect[1]:
            raise ValueError(f"aspect must satisfy 0 < lo <= hi, got {self.aspect}")


def max_useful_short_side(spec: CropSpec) -> int:
    """The largest source short side that still matters for `spec`: a square crop of the smallest area
    fraction has S pixels per side at this size, so shrinking larger sources to it during decoding never
    makes the resize upsample (for aspect-1 crops). 224 and scale 0.3 give 409.

    Args:
        spec: the training crop.
    """
    return math.ceil(spec.resolution / math.sqrt(spec.scale[0]))


@dataclass(frozen=True)
class EvalViewSpec:
    """Evaluation views of a clip.

    Args:
        resolution: output side S in pixels.
        num_views: 1 = resize the short side to int(S * 256 / 224) then centre crop; k > 1 = resize the short
            side to S and take k crops evenly spread along the long side (left/centre/right for k = 3).
    """

    resolution: int = 224
    num_views: int = 1

    def __post_init__(self) -> None:
        if self.resolution < 1 or self.num_views < 1:
            raise ValueError(f"resolution and num_views must be >= 1, got {self}")


@dataclass(frozen=True)
class CropBox:
    """A crop rectangle in pixels: rows [top, top + height), columns [left, left + width)."""

    top: int
    left: int
    height: int
    width: int


def random_resized_crop_box(
    height: int,
    width: int,
    scale: tuple[float, float],
    aspect: tuple[float, float],
    rng: np.random.Generator,
) -> CropBox:
    """Draw a crop box the way the official `random_resized_crop` does.

    Up to 10 tries of area fraction ~ U(scale) and aspect ~ exp(U(log aspect)), w = round(sqrt(A r)),
    h = round(sqrt(A / r)); accepted when it fits, placed uniformly. Otherwise a central crop with the aspect
    clamped into range.

    Args:
        height: frame height H.
        width: frame width W.
        scale: area fraction range.
        aspect: w/h range.
        rng: the sample's generator.
    """
    area = height * width
    log_lo, log_hi = math.log(aspect[0]), math.log(aspect[1])
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        ratio = math.exp(rng.uniform(log_lo, log_hi))
        w = round(math.sqrt(target * ratio))
        h = round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return CropBox(top, left, h, w)
    in_ratio = width / height
    if in_ratio < min(aspect):
        w, h = width, round(width / min(aspect))
    elif in_ratio > max(aspect):
        h, w = height, round(height * max(aspect))
    else:
        w, h = width, height
    return CropBox((height - h) // 2, (width - w) // 2, h, w)


def _as_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [T, H, W, 3] as a tensor (no copy for numpy input)."""
    t = torch.from_numpy(frames) if isinstance(frames, np.ndarray) else frames
    if t.dtype != torch.uint8 or t.ndim != 4 or t.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames [T, H, W, 3], got {t.dtype} {tuple(t.shape)}")
    return t


def normalize(clip: torch.Tensor) -> torch.Tensor:
    """ImageNet normalization of a clip in the 0..255 range.

    Args:
        clip: [T, 3, H, W] float in 0..255.

    Returns:
        [3, T, H, W] float32, (x / 255 - mean) / std.
    """
    mean = torch.tensor(IMAGENET_MEAN, dtype=clip.dtype).view(1, 3, 1, 1) * 255.0
    inv_std = 1.0 / (torch.tensor(IMAGENET_STD, dtype=clip.dtype).view(1, 3, 1, 1) * 255.0)
    return ((clip - mean) * inv_std).permute(1, 0, 2, 3).contiguous()  # [3, T, H, W]


def crop_resize(frames: np.ndarray | torch.Tensor, box: CropBox, resolution: int) -> torch.Tensor:
    """Crop one box from every frame and resize it bilinearly (no antialiasing, align_corners=False).

    Args:
        frames: uint8 [T, H, W, 3].
        box: the crop, shared by all frames.
        resolution: output side S.

    Returns:
        [T, 3, S, S] float32 in 0..255.
    """
    t = _as_tensor(frames)
    crop = t[:, box.top : box.top + box.height, box.left : box.left + box.width]  # [T, h, w, 3] uint8 view
    crop = crop.permute(0, 3, 1, 2).float()  # [T, 3, h, w]
    if (box.height, box.width) == (resolution, resolution):
        return crop
    return F.interpolate(crop, size=(resolution, resolution), mode="bilinear", align_corners=False)


def train_transform(
    frames: np.ndarray | torch.Tensor, spec: CropSpec, rng: np.random.Generator
) -> tuple[torch.Tensor, CropBox, bool]:
    """The pretraining augmentation of one clip.

    Args:
        frames: uint8 [T, H, W, 3].
        spec: crop settings.
        rng: the sample's generator.

    Returns:
        (clip [3, T, S, S] float32 normalized, the crop box, whether it was flipped).
    """
    t = _as_tensor(frames)
    box = random_resized_crop_box(t.shape[1], t.shape[2], spec.scale, spec.aspect, rng)
    clip = crop_resize(t, box, spec.resolution)  # [T, 3, S, S]
    flipped = bool(spec.flip and rng.uniform() < 0.5)
    if flipped:
        clip = clip.flip(-1)
    return normalize(clip), box, flipped


def resize_short_side(frames: np.ndarray | torch.Tensor, short_side: int) -> torch.Tensor:
    """Resize so the short side equals `short_side`, keeping the aspect ratio (bilinear on uint8, like the
    official OpenCV resize).

    Args:
        frames: uint8 [T, H, W, 3].
        short_side: target length of the short side.

    Returns:
        uint8 [T, 3, H', W'] (channels_last memory).
    """
    t = _as_tensor(frames).permute(0, 3, 1, 2)  # [T, 3, H, W] view, channels_last strides
    h, w = t.shape[-2:]
    if min(h, w) == short_side:
        return t
    if h <= w:
        out = (short_side, max(short_side, int(w * short_side / h)))
    else:
        out = (max(short_side, int(h * short_side / w)), short_side)
    return F.interpolate(t, size=out, mode="bilinear", align_corners=False, antialias=False)


def center_crop(frames: torch.Tensor, resolution: int) -> torch.Tensor:
    """The central ``resolution x resolution`` window of ``[..., H, W]`` frames (a view; H, W >= resolution)."""
    h, w = frames.shape[-2:]
    top, left = (h - resolution) // 2, (w - resolution) // 2
    return frames[..., top : top + resolution, left : left + resolution]


def eval_views(frames: np.ndarray | torch.Tensor, spec: EvalViewSpec) -> torch.Tensor:
    """The deterministic evaluation views of one clip.

    Args:
        frames: uint8 [T, H, W, 3].
        spec: view settings.

    Returns:
        [V, 3, T, S, S] float32 normalized.
    """
    s = spec.resolution
    if spec.num_views == 1:
        resized = resize_short_side(frames, int(s * 256 / 224))  # [T, 3, H', W']
        return normalize(center_crop(resized, s).float()).unsqueeze(0)
    resized = resize_short_side(frames, s)
    h, w = resized.shape[-2:]
    views = []
    for k in range(spec.num_views):
        if w >= h:
            left = k * ((w - s) // (spec.num_views - 1))
            crop = resized[..., :, left : left + s]
        else:
            top = k * ((h - s) // (spec.num_views - 1))
            crop = resized[..., top : top + s, :]
        views.append(normalize(crop.float()))
    return torch.stack(views)  # [V, 3, T, S, S]
