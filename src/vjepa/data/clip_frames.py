"""The frames of a draw's clips: sample the windows for the video's frame count and decode them, or gather
them from the clip cache, with the same result either way.

A container may over-state its frame count (truncated files, lying headers): the windows are then
re-sampled once for the frames that really decode, on both paths.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from vjepa.data.clip_cache import CachedVideo, ClipCache
from vjepa.data.decode import VideoReader
from vjepa.data.errors import VideoTooShortError


def _read_clips(
    reader: VideoReader, min_frames: int, sample_indices: Callable[[int], np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Sample indices for the container's frame count and decode them; if the container over-states its
    frame count, re-sample once for the frames that really decode.

    Returns:
        (frames [num_clips, T, H, W, 3] uint8, indices [num_clips, T] int64)
    """
    num_frames = reader.num_frames
    for attempt in range(2):
        if num_frames < min_frames:
            raise VideoTooShortError(
                reader.path, f"{num_frames} frames < min_frames {min_frames}", num_frames
            )
        indices = sample_indices(num_frames)  # [C, T]
        try:
            frames = reader.read(indices.reshape(-1))  # [C*T, H, W, 3]
        except VideoTooShortError as e:
            if attempt == 1 or e.num_frames >= num_frames:
                raise
            num_frames = e.num_frames
            continue
        return frames.reshape(*indices.shape, *frames.shape[1:]), indices
    raise AssertionError("unreachable")


def _cached_clips(
    video: CachedVideo, path: str, min_frames: int, sample_indices: Callable[[int], np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """`_read_clips` on a cached decoding: the same sampling, the same single re-sample when the container
    over-states its frame count, the same frames.

    Returns:
        (frames [num_clips, T, H, W, 3] uint8, indices [num_clips, T] int64)
    """
    num_frames, decodable = video.num_frames, video.frames.shape[0]
    for attempt in range(2):
        if num_frames < min_frames:
            raise VideoTooShortError(path, f"{num_frames} frames < min_frames {min_frames}", num_frames)
        indices = sample_indices(num_frames)  # [C, T]
        if indices.max() >= decodable:
            if attempt == 1 or decodable >= num_frames:
                raise VideoTooShortError(
                    path, f"frame {int(indices.max())} not decodable: {decodable} frames decode", decodable
                )
            num_frames = decodable
            continue
        frames = np.asarray(video.frames[indices.reshape(-1)])  # [C*T, H, W, 3]
        return frames.reshape(*indices.shape, *frames.shape[1:]), indices
    raise AssertionError("unreachable")


def read_video_clips(
    path: str,
    *,
    max_short_side: int | None,
    threads: int,
    min_frames: int,
    sample_indices: Callable[[int, float], np.ndarray],
    cache: ClipCache | None,
) -> tuple[np.ndarray, np.ndarray]:
    """The clips' frames of one video, from the clip cache when there is one, else decoded.

    Args:
        path: the video.
        max_short_side: decoder shrinking.
        threads: decoder threads.
        min_frames: shorter videos raise `VideoTooShortError`.
        sample_indices: (frame count, fps) -> [num_clips, T] indices.
        cache: the clip cache, or None.

    Returns:
        (frames [num_clips, T, H, W, 3] uint8, indices [num_clips, T] int64)
    """
    video = cache.get(path, max_short_side, threads) if cache is not None else None
    if video is not None:
        return _cached_clips(video, path, min_frames, lambda n: sample_indices(n, video.fps))
    with VideoReader(path, max_short_side=max_short_side, threads=threads) as reader:
        return _read_clips(reader, min_frames, lambda n: sample_indices(n, reader.fps))
