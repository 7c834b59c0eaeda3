"""Training clips of the built-in synthetic videos (:mod:`vjepa.data.synthetic`), rendered in memory: no
files, no decoding; sampled and augmented as the file datasets of :mod:`vjepa.data.datasets` are."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from vjepa.data.datasets import ClipSample
from vjepa.data.draws import LOAD_STREAM, DrawKey, as_draw_key, draw_rng
from vjepa.data.sampling import ClipSpec, train_clip_indices
from vjepa.data.synthetic import SyntheticSpec, SyntheticVideos, default_object_size, generate_videos
from vjepa.data.transforms import CropSpec, train_transform


class SyntheticClipDataset(Dataset):
    """Training clips of the built-in synthetic videos, rendered in memory (no files, no decoding).

    Sampling and augmentation follow the file datasets: a random window (frame step ``clip.frame_step``),
    one random resized crop and flip per clip, all drawn from the sample's ``(seed, draw)`` generator.

    Args:
        videos: the rendered videos.
        clip: clip shape.
        crop: augmentation.
        seed: data seed.
    """

    def __init__(self, videos: SyntheticVideos, clip: ClipSpec, crop: CropSpec, seed: int) -> None:
        if clip.num_clips != 1:
            raise ValueError("SyntheticClipDataset makes one clip per sample")
        self.videos = videos
        self.clip_spec = clip
        self.crop = crop
        self.seed = seed
        self.labels = videos.appearance * 4 + videos.motion  # [N] the combined label

    def __len__(self) -> int:
        return len(self.videos.frames)

    def __getitem__(self, key: DrawKey | int) -> ClipSample:
        k = as_draw_key(key)
        rng = draw_rng(self.seed, k.draw, 0, LOAD_STREAM)
        video = self.videos.frames[k.index]  # [T_video, H, W, 3] uint8
        indices = train_clip_indices(video.shape[0], self.clip_spec, rng)  # [1, T]
        clip = train_transform(video[indices[0]], self.crop, rng)[0]  # [3, T, S, S]
        return ClipSample(
            clip,
            int(self.labels[k.index]),
            k.draw,
            k.index,
            f"synthetic/{k.index:06d}",
            torch.from_numpy(indices),
        )


def synthetic_clip_dataset(
    num_videos: int, num_frames: int, resolution: int, clip: ClipSpec, crop: CropSpec, seed: int
) -> SyntheticClipDataset:
    """``num_videos`` synthetic videos of ``num_frames`` frames of ``resolution x resolution`` pixels (objects of
    :func:`vjepa.data.synthetic.default_object_size`), rendered from ``seed``, as training clips."""
    spec = SyntheticSpec(
        num_frames=num_frames, resolution=resolution, object_size=default_object_size(resolution)
    )
    return SyntheticClipDataset(generate_videos(spec, num_videos, seed=seed), clip, crop, seed)
