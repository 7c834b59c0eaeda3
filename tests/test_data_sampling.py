"""Clip indices follow the official rule."""

from __future__ import annotations

import numpy as np
import pytest

from vjepa.data.sampling import ClipSpec, clip_indices, eval_clip_indices, train_clip_indices

OFFSETS_16x4 = [0, 4, 8, 12, 17, 21, 25, 29, 34, 38, 42, 46, 51, 55, 59, 63]


def test_linspace_offsets_for_16_frames_step_4() -> None:
    idx = clip_indices(300, ClipSpec(), random_window=False, allow_overlap=False)
    assert idx.tolist() == [OFFSETS_16x4]


def test_random_window_keeps_offsets_and_stays_in_partition() -> None:
    rng = np.random.default_rng(0)
    spec = ClipSpec(num_clips=3)
    for _ in range(50):
        idx = train_clip_indices(600, spec, rng)  # partitions of 200 frames
        assert idx.shape == (3, 16)
        for i, clip in enumerate(idx):
            start = clip[0]
            assert (clip - start).tolist() == OFFSETS_16x4
            # end = start + 64 is drawn from [64, 200): the window lies inside partition i
            assert i * 200 <= start and start + 64 < (i + 1) * 200


def test_short_video_is_padded_with_its_last_frame() -> None:
    idx = train_clip_indices(40, ClipSpec(), np.random.default_rng(0))
    assert idx.tolist() == [[0, 4, 8, 13, 17, 22, 26, 31, 35, 39] + [39] * 6]


def test_short_partitions_are_padded_per_partition() -> None:
    idx = train_clip_indices(80, ClipSpec(num_clips=2), np.random.default_rng(0))
    first = [0, 4, 8, 13, 17, 22, 26, 31, 35, 39] + [39] * 6
    assert idx.tolist() == [first, [i + 40 for i in first]]


def test_eval_windows_are_fixed_and_evenly_spaced() -> None:
    spec = ClipSpec(num_clips=2)
    a = eval_clip_indices(100, spec)  # partitions of 50 < 64 frames: overlapping windows
    assert np.array_equal(a, eval_clip_indices(100, spec))
    base = np.clip(np.linspace(0, 63, 63 // 4), 0, 62).astype(np.int64).tolist() + [62]
    assert a.tolist() == [base, [i + 36 for i in base]]  # clip step (100 - 64) // 1
    short = eval_clip_indices(30, spec)  # shorter than a clip: every segment is the same window
    assert np.array_equal(short[0], short[1]) and short.max() <= 28
    long = eval_clip_indices(1000, ClipSpec(num_clips=4))  # long partitions: their first window
    assert [c[0] for c in long.tolist()] == [0, 250, 500, 750]


def test_duration_sets_the_step_from_the_frame_rate() -> None:
    spec = ClipSpec(duration=2.0)
    assert spec.step_for(30.0) == 3 and spec.step_for(4.0) == 1
    idx = clip_indices(500, spec, fps=30.0, random_window=False, allow_overlap=False)
    assert idx[0, -1] == 47 and idx[0, 0] == 0
    with pytest.raises(ValueError, match="frame rate"):
        spec.step_for(None)


def test_invalid_requests() -> None:
    with pytest.raises(ValueError, match="cannot cut"):
        clip_indices(2, ClipSpec(num_clips=3), random_window=False, allow_overlap=False)
    with pytest.raises(ValueError, match=">= 1"):
        ClipSpec(num_frames=0)
    with pytest.raises(ValueError, match="rng"):
        clip_indices(100, ClipSpec(), random_window=True, allow_overlap=False)
    single = train_clip_indices(1, ClipSpec(), np.random.default_rng(0))
    assert single.tolist() == [[0] * 16]
