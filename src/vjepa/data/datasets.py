"""Map-style datasets: video clips for pretraining, segments x views for evaluation, images as videos.

Each dataset is indexed by `DrawKey` (or a plain int) and seeds every random choice from (seed, draw). A
record whose file fails to decode (`VideoDecodeError`) is replaced by another record drawn from the same
distribution with a generator of the same draw, at most `FailurePolicy.max_attempts` times; the failures are
returned on the sample (`skipped`) so the loader can count them in the main process.

The video datasets take an optional `ClipCache` (`vjepa.data.clip_cache`): whole videos are then decoded
once and read back memory-mapped; the frames a draw selects, and so its clip, are the same with and without
it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from vjepa.data.clip_cache import ClipCache
from vjepa.data.clip_frames import read_video_clips
from vjepa.data.decode import read_image
from vjepa.data.draws import LOAD_STREAM, REPLACE_STREAM, DrawKey, as_draw_key, draw_rng
from vjepa.data.errors import (
    FailurePolicy,
    SkippedVideo,
    TooManyFailuresError,
    VideoDecodeError,
    format_failures,
)
from vjepa.data.index import MixedIndex, VideoRecord, mix_indexes
from vjepa.data.sampling import ClipSpec, clip_indices
from vjepa.data.transforms import CropSpec, EvalViewSpec, eval_views, train_transform


@dataclass
class ClipSample:
    """One training sample (duck-typed by `vjepa.masks.collate.MaskCollator`: `.clip`, `.label`, `.draw`).

    Args:
        clip: [3, T, S, S] float32 normalized, or [num_clips, 3, T, S, S] when num_clips > 1.
        label: the record's label (ignored by pretraining).
        draw: the global draw position that produced this sample.
        index: the record actually loaded (differs from the sampler's when a bad file was replaced).
        path: that record's file.
        frame_indices: [num_clips, T] int64 source frame indices.
        skipped: failed attempts made for this draw before it succeeded.
    """

    clip: torch.Tensor
    label: int
    draw: int
    index: int
    path: str
    frame_indices: torch.Tensor
    skipped: tuple[SkippedVideo, ...] = ()


@dataclass
class EvalSample:
    """One evaluation sample.

    Args:
        clip: [num_segments, num_views, 3, T, S, S] float32 normalized.
        label: class label.
        draw: global draw position.
        index: record loaded.
        path: its file.
        frame_indices: [num_segments, T] int64.
        counted: False for padded duplicates and for replacements of bad files: metrics must skip it.
        skipped: failed attempts for this draw.
    """

    clip: torch.Tensor
    label: int
    draw: int
    index: int
    path: str
    frame_indices: torch.Tensor
    counted: bool = True
    skipped: tuple[SkippedVideo, ...] = ()


@dataclass
class SampleBatch:
    """The default collated batch (the lead swaps in `MaskCollator` for pretraining).

    Args:
        clips: [B, ...] the samples' clips stacked.
        labels: [B] int64.
        draws: [B] int64.
        counted: [B] bool (all True for training samples).
        paths: the files.
        skipped: all failed attempts of the batch's draws.
    """

    clips: torch.Tensor
    labels: torch.Tensor
    draws: torch.Tensor
    counted: torch.Tensor
    paths: list[str]
    skipped: list[SkippedVideo] = field(default_factory=list)

    def pin_memory(self) -> SampleBatch:
        self.clips = self.clips.pin_memory()
        return self


def collate_samples(samples: Sequence[ClipSample | EvalSample]) -> SampleBatch:
    """Stack samples into a `SampleBatch` (a plain `collate_fn`)."""
    return SampleBatch(
        clips=torch.stack([s.clip for s in samples]),
        labels=torch.tensor([s.label for s in samples], dtype=torch.int64),
        draws=torch.tensor([s.draw for s in samples], dtype=torch.int64),
        counted=torch.tensor([getattr(s, "counted", True) for s in samples], dtype=torch.bool),
        paths=[s.path for s in samples],
        skipped=[k for s in samples for k in s.skipped],
    )


class _RobustDataset(Dataset):
    """Shared draw -> record -> sample logic with bounded, deterministic replacement of bad files.

    Args:
        records: the records, or a `MixedIndex` whose weights also govern replacements.
        seed: the data seed (>= 0).
        failure_policy: bounds (only `max_attempts` is used here; rates are checked by the loader).
    """

    def __init__(
        self, records: Sequence[VideoRecord] | MixedIndex, seed: int, failure_policy: FailurePolicy
    ) -> None:
        self.index = records if isinstance(records, MixedIndex) else mix_indexes([list(records)])
        if len(self.index) == 0:
            raise ValueError("a dataset needs at least one record")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.seed = seed
        self.failure_policy = failure_policy
        self._cum_weights = np.cumsum(self.index.weights)

    @property
    def records(self) -> tuple[VideoRecord, ...]:
        return self.index.records

    def __len__(self) -> int:
        return len(self.index)

    def _replacement(self, rng: np.random.Generator) -> int:
        i = int(np.searchsorted(self._cum_weights, rng.uniform() * self._cum_weights[-1], side="right"))
        return min(i, len(self.index) - 1)

    def _load(self, record: VideoRecord, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (clip tensor, frame indices) or raise `VideoDecodeError`."""
        raise NotImplementedError

    def _resolve(
        self, key: DrawKey | int
    ) -> tuple[DrawKey, torch.Tensor, torch.Tensor, int, tuple[SkippedVideo, ...]]:
        """Load the draw's record, or replacements while it fails.

        Returns:
            (the key, clip tensor, frame indices, index of the record loaded, failed attempts).
        """
        k = as_draw_key(key)
        index = k.index
        skipped: list[SkippedVideo] = []
        for attempt in range(self.failure_policy.max_attempts):
            record = self.index.records[index]
            try:
                clip, frames = self._load(record, draw_rng(self.seed, k.draw, attempt, LOAD_STREAM))
            except VideoDecodeError as e:
                skipped.append(SkippedVideo(record.path, e.reason, k.draw))
                index = self._replacement(draw_rng(self.seed, k.draw, attempt, REPLACE_STREAM))
                continue
            return k, clip, frames, index, tuple(skipped)
        raise TooManyFailuresError(
            f"draw {k.draw}: {len(skipped)} records in a row failed to load "
            f"(FailurePolicy.max_attempts={self.failure_policy.max_attempts}):\n{format_failures(skipped)}"
        )


class _VideoFileDataset(_RobustDataset):
    """A dataset of video files: each draw's clips are decoded (or read from the clip cache) with the
    settings its subclass gives.

    Args:
        records: the index.
        clip: clip shape.
        seed: data seed.
        min_frames: videos with fewer frames are skipped as too short.
        max_short_side: shrink frames during decoding (None: full size).
        decode_threads: decoder threads per worker.
        failure_policy: bound on replacements per draw (None: the default).
        clip_cache: decoded-video cache (None: decode every draw).
    """

    def __init__(
        self,
        records: Sequence[VideoRecord] | MixedIndex,
        clip: ClipSpec,
        seed: int,
        min_frames: int,
        max_short_side: int | None,
        decode_threads: int,
        failure_policy: FailurePolicy | None,
        clip_cache: ClipCache | None,
    ) -> None:
        super().__init__(records, seed, failure_policy or FailurePolicy())
        self.clip_spec = clip
        self.min_frames = min_frames
        self.max_short_side = max_short_side
        self.decode_threads = decode_threads
        self.clip_cache = clip_cache

    def _read_clips(
        self, record: VideoRecord, sample: Callable[[int, float], np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(frames [num_clips, T, H, W, 3] uint8, indices [num_clips, T] int64)`` of the windows ``sample``
        picks (given the frame count and the frame rate)."""
        return read_video_clips(
            record.path,
            max_short_side=self.max_short_side,
            threads=self.decode_threads,
            min_frames=self.min_frames,
            sample_indices=sample,
            cache=self.clip_cache,
        )


class VideoClipDataset(_VideoFileDataset):
    """Video clips for pretraining (or for training a probe, with `allow_overlap=True` and its own crop).

    Args:
        records: the index (records, or a `MixedIndex`).
        clip: clip shape; num_clips > 1 gives [num_clips, 3, T, S, S] clips.
        crop: augmentation.
        seed: data seed; with the draw it fixes every random choice.
        random_window: random temporal window per partition (official training); False = fixed windows.
        allow_overlap: short videos use overlapping windows over the whole video (official probe loaders)
            instead of per-partition last-frame padding (official pretraining).
        min_frames: videos with fewer frames are skipped as too short (default: the clip's num_frames and at least
            num_clips). 1 keeps the official behaviour of padding any short video with its last frame.
        max_short_side: shrink frames during decoding so their short side is at most this (None: full size).
        decode_threads: decoder threads per worker.
        failure_policy: bound on replacements per draw.
        clip_cache: decoded-video cache (None: decode every draw).
    """

    def __init__(
        self,
        records: Sequence[VideoRecord] | MixedIndex,
        clip: ClipSpec,
        crop: CropSpec,
        *,
        seed: int,
        random_window: bool = True,
        allow_overlap: bool = False,
        min_frames: int | None = None,
        max_short_side: int | None = None,
        decode_threads: int = 1,
        failure_policy: FailurePolicy | None = None,
        clip_cache: ClipCache | None = None,
    ) -> None:
        least = max(min_frames if min_frames is not None else clip.num_frames, clip.num_clips, 1)
        super().__init__(
            records, clip, seed, least, max_short_side, decode_threads, failure_policy, clip_cache
        )
        self.crop = crop
        self.random_window = random_window
        self.allow_overlap = allow_overlap

    def read_frames(self, record: VideoRecord, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Sample the draw's windows and decode them (or read them from the clip cache).

        Returns:
            (frames [num_clips, T, H, W, 3] uint8, indices [num_clips, T] int64)
        """

        def sample(n: int, fps: float) -> np.ndarray:
            return clip_indices(
                n,
                self.clip_spec,
                fps=fps,
                random_window=self.random_window,
                allow_overlap=self.allow_overlap,
                rng=rng,
            )

        return self._read_clips(record, sample)

    def augment(self, frames: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """Random resized crop, flip and normalization of each clip: [C, T, H, W, 3] uint8 -> [C, 3, T, S, S]
        float ([3, T, S, S] when num_clips is 1)."""
        clips = torch.stack([train_transform(f, self.crop, rng)[0] for f in frames])  # [C, 3, T, S, S]
        return clips[0] if self.clip_spec.num_clips == 1 else clips

    def _load(self, record: VideoRecord, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        frames, indices = self.read_frames(record, rng)
        return self.augment(frames, rng), torch.from_numpy(indices)

    def __getitem__(self, key: DrawKey | int) -> ClipSample:
        k, clip, indices, index, skipped = self._resolve(key)
        record = self.index.records[index]
        return ClipSample(clip, record.label, k.draw, index, record.path, indices, skipped)


class EvalVideoDataset(_VideoFileDataset):
    """Deterministic evaluation samples: num_clips temporal segments x spatial views.

    Args:
        records: the index.
        clip: clip shape; num_clips is the number of segments.
        views: spatial views.
        seed: data seed (only used to pick replacements of bad files).
        min_frames: shorter videos are skipped (default num_clips: the official eval pads short videos).
        max_short_side: shrink during decoding (None: full size).
        decode_threads: decoder threads per worker.
        failure_policy: bound on replacements per draw.
        clip_cache: decoded-video cache (None: decode every sample).
    """

    def __init__(
        self,
        records: Sequence[VideoRecord] | MixedIndex,
        clip: ClipSpec,
        views: EvalViewSpec,
        *,
        seed: int = 0,
        min_frames: int | None = None,
        max_short_side: int | None = None,
        decode_threads: int = 1,
        failure_policy: FailurePolicy | None = None,
        clip_cache: ClipCache | None = None,
    ) -> None:
        least = max(min_frames if min_frames is not None else 1, clip.num_clips)
        super().__init__(
            records, clip, seed, least, max_short_side, decode_threads, failure_policy, clip_cache
        )
        self.views = views

    def _load(self, record: VideoRecord, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        def sample(n: int, fps: float) -> np.ndarray:
            return clip_indices(n, self.clip_spec, fps=fps, random_window=False, allow_overlap=True)

        frames, indices = self._read_clips(record, sample)
        clips = torch.stack([eval_views(f, self.views) for f in frames])  # [C, V, 3, T, S, S]
        return clips, torch.from_numpy(indices)

    def __getitem__(self, key: DrawKey | int) -> EvalSample:
        k, clip, indices, index, skipped = self._resolve(key)
        record = self.index.records[index]
        counted = not k.padded and not skipped
        return EvalSample(clip, record.label, k.draw, index, record.path, indices, counted, skipped)


class ImageDataset(_RobustDataset):
    """Images (e.g. a folder of class folders) as clips: each image repeated `num_frames` times along time.

    Args:
        records: image records (see `index.read_folder_index(root, IMAGE_EXTENSIONS)`).
        num_frames: T, the number of repeats (16 in the official image evaluation).
        crop: training augmentation; None = evaluation (short side to int(S * 256 / 224), centre crop).
        resolution: output side for evaluation (ignored when `crop` is given).
        seed: data seed.
        failure_policy: bound on replacements per draw.
    """

    def __init__(
        self,
        records: Sequence[VideoRecord] | MixedIndex,
        *,
        num_frames: int = 16,
        crop: CropSpec | None = None,
        resolution: int = 224,
        seed: int = 0,
        failure_policy: FailurePolicy | None = None,
    ) -> None:
        super().__init__(records, seed, failure_policy or FailurePolicy())
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        self.num_frames = num_frames
        self.crop = crop
        self.views = EvalViewSpec(resolution=resolution, num_views=1)

    def _load(self, record: VideoRecord, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        image = read_image(record.path)[None]  # [1, H, W, 3]
        if self.crop is not None:
            clip = train_transform(image, self.crop, rng)[0]  # [3, 1, S, S]
        else:
            clip = eval_views(image, self.views)[0]  # [3, 1, S, S]
        return clip.expand(-1, self.num_frames, -1, -1), torch.zeros(1, self.num_frames, dtype=torch.int64)

    def __getitem__(self, key: DrawKey | int) -> ClipSample:
        k, clip, indices, index, skipped = self._resolve(key)
        record = self.index.records[index]
        return ClipSample(clip, record.label, k.draw, index, record.path, indices, skipped)
