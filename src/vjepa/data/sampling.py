"""What a clip is: the clip every command reads (`ClipConfig`), and which frames of a video make it (the
official index rule, as pure functions of the video's frame count).

A video of `video_frames` frames is cut into `num_clips` equal partitions of ``partition_len = video_frames //
num_clips`` frames. A clip spans ``clip_len = num_frames * frame_step`` frames and its indices come from
``linspace(start, end, num_frames)`` floored, so with 16 frames and step 4 the offsets are
0,4,8,12,17,21,25,29,34,38,42,46,51,55,59,63 (irregular 4/5 spacing, as in the official code).

- partition longer than the clip: a window of clip_len frames inside each partition, at a uniformly random
  end (training) or at the partition start (evaluation, deterministic);
- otherwise, without overlap (pretraining): ``partition_len // frame_step`` evenly spaced frames of the
  partition, padded with its last frame (40 frames -> 0,4,8,13,17,22,26,31,35,39,39,39,...);
- otherwise, with overlap (evaluation): windows of ``min(clip_len, video_frames)`` frames starting at evenly
  spaced offsets ``i * (video_frames - clip_len) // (num_clips - 1)`` (all identical when the video is short).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from vjepa.config import InvalidValue

# What clips are cut from: videos, or images repeated ``num_frames`` times along time.
MediaKind = Literal["video", "image"]


@dataclass
class ClipConfig:
    """The clip, in the words every command's config uses (pretraining ``data``, evaluation ``data``,
    extraction, the demo): ``num_frames`` frames ``frame_step`` source frames apart, ``resolution`` pixels a
    side (square). The configs inherit these fields (and their checks), so their YAML keys are the same.

    Args:
        num_frames: frames per clip (T).
        frame_step: source frames between consecutive clip frames.
        resolution: clip side in pixels (S).
    """

    num_frames: int = 16
    frame_step: int = 4
    resolution: int = 224

    def __post_init__(self) -> None:
        for name in ("num_frames", "frame_step", "resolution"):
            value = getattr(self, name)
            if value < 1:
                raise InvalidValue(name, f"must be >= 1, got {value}")


@dataclass(frozen=True)
class ClipSpec:
    """How clips are cut from a video.

    Args:
        num_frames: frames in each clip (T).
        frame_step: source frames between consecutive clip frames.
        num_clips: clips per video (temporal segments for evaluation), one per equal partition.
        duration: if set, the clip covers this many seconds and the step becomes
            ``max(1, int(duration * fps / num_frames))`` (overrides frame_step).
    """

    num_frames: int = 16
    frame_step: int = 4
    num_clips: int = 1
    duration: float | None = None

    def __post_init__(self) -> None:
        if self.num_frames < 1 or self.frame_step < 1 or self.num_clips < 1:
            raise ValueError(f"num_frames, frame_step and num_clips must be >= 1, got {self}")
        if self.duration is not None and self.duration <= 0:
            raise ValueError(f"duration must be positive seconds, got {self.duration}")

    def step_for(self, fps: float | None) -> int:
        """The frame step for a video at `fps` frames per second (fps only matters with a duration).

        Args:
            fps: the video's average frame rate; required when `duration` is set.
        """
        if self.duration is None:
            return self.frame_step
        if fps is None or fps <= 0:
            raise ValueError(
                f"a clip duration of {self.duration}s needs the video's frame rate, got fps={fps}"
            )
        return max(1, int(self.duration * fps / self.num_frames))


def _linspace_indices(start: int, end: int, num: int, clip_to: int) -> np.ndarray:
    """floor(linspace(start, end, num)) clipped to [start, clip_to - 1]; [num] int64."""
    return np.clip(np.linspace(start, end, num), start, clip_to - 1).astype(np.int64)


def clip_indices(
    video_frames: int,
    spec: ClipSpec,
    *,
    fps: float | None = None,
    random_window: bool,
    allow_overlap: bool,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Frame indices of every clip of a video, following the official rule exactly.

    Args:
        video_frames: frames in the video (>= spec.num_clips).
        spec: clip shape.
        fps: frame rate, needed only when spec.duration is set.
        random_window: draw each window's end uniformly inside its partition (training); else take the
            partition's first window.
        allow_overlap: for partitions not longer than a clip, use evenly spaced overlapping windows over the
            whole video (evaluation) instead of padding each partition with its last frame (pretraining).
        rng: the generator for random windows.

    Returns:
        [num_clips, num_frames] int64 indices in [0, video_frames).
    """
    if video_frames < spec.num_clips:
        raise ValueError(f"cannot cut {spec.num_clips} clips from {video_frames} frames")
    if random_window and rng is None:
        raise ValueError("random_window=True needs an rng")
    fpc = spec.num_frames
    step = spec.step_for(fps)
    clip_len = fpc * step
    partition_len = video_frames // spec.num_clips
    clips = []
    for i in range(spec.num_clips):
        if partition_len > clip_len:
            end = int(rng.integers(clip_len, partition_len)) if random_window else clip_len
            indices = _linspace_indices(end - clip_len, end, fpc, end) + i * partition_len
        elif not allow_overlap:
            n = partition_len // step
            indices = np.concatenate(
                [np.linspace(0, partition_len, n), np.full(fpc - n, float(partition_len))]
            )
            indices = np.clip(indices, 0, partition_len - 1).astype(np.int64) + i * partition_len
        else:
            sample_len = min(clip_len, video_frames) - 1
            n = sample_len // step
            indices = np.concatenate([np.linspace(0, sample_len, n), np.full(fpc - n, float(sample_len))])
            indices = np.clip(indices, 0, max(sample_len - 1, 0)).astype(np.int64)
            clip_step = (video_frames - clip_len) // (spec.num_clips - 1) if video_frames > clip_len else 0
            indices = indices + i * clip_step
        clips.append(indices)
    return np.stack(clips)  # [num_clips, F]


def train_clip_indices(
    video_frames: int, spec: ClipSpec, rng: np.random.Generator, fps: float | None = None
) -> np.ndarray:
    """Pretraining sampling: a random window per partition, last-frame padding for short partitions.

    Returns:
        [num_clips, num_frames] int64.
    """
    return clip_indices(video_frames, spec, fps=fps, random_window=True, allow_overlap=False, rng=rng)


def eval_clip_indices(video_frames: int, spec: ClipSpec, fps: float | None = None) -> np.ndarray:
    """Evaluation sampling: fixed, evenly spaced windows (deterministic, unlike the official eval).

    Returns:
        [num_clips, num_frames] int64.
    """
    return clip_indices(video_frames, spec, fps=fps, random_window=False, allow_overlap=True)
