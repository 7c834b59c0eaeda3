"""Datasets: shapes, determinism per draw, bad files skipped, counted and reported, failure bounds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from data_helpers import MediaSet, lying_video, make_media, random_frames, write_video
from vjepa.data.datasets import (
    ClipSample,
    EvalVideoDataset,
    ImageDataset,
    VideoClipDataset,
    collate_samples,
)
from vjepa.data.draws import DrawKey
from vjepa.data.errors import FailurePolicy, TooManyFailuresError
from vjepa.data.index import IMAGE_EXTENSIONS, VideoRecord, read_folder_index
from vjepa.data.loader import make_loader
from vjepa.data.sampling import ClipSpec
from vjepa.data.transforms import CropSpec, EvalViewSpec

CLIP = ClipSpec(num_frames=8, frame_step=2)
CROP = CropSpec(resolution=32)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> MediaSet:
    return make_media(tmp_path_factory.mktemp("media"))


def good_records(media: MediaSet) -> list[VideoRecord]:
    return [VideoRecord(str(p), k) for k, p in enumerate(media.good.values())]


def test_clip_sample_shapes_and_mask_collator_contract(media: MediaSet) -> None:
    ds = VideoClipDataset(good_records(media), CLIP, CROP, seed=0)
    sample = ds[DrawKey(draw=7, index=1)]
    assert isinstance(sample, ClipSample)
    assert sample.clip.shape == (3, 8, 32, 32) and sample.clip.dtype == torch.float32
    assert (sample.label, sample.draw, sample.index, sample.skipped) == (1, 7, 1, ())
    assert sample.frame_indices.shape == (1, 8)
    multi = VideoClipDataset(good_records(media), ClipSpec(8, 2, num_clips=2), CROP, seed=0)[DrawKey(0, 1)]
    assert multi.clip.shape == (2, 3, 8, 32, 32)
    assert ds[3].draw == 3  # plain integer keys work too


def test_samples_depend_only_on_seed_and_draw(media: MediaSet) -> None:
    ds = VideoClipDataset(good_records(media), CLIP, CROP, seed=5)
    a, b = ds[DrawKey(11, 0)], ds[DrawKey(11, 0)]
    assert torch.equal(a.clip, b.clip) and torch.equal(a.frame_indices, b.frame_indices)
    c = ds[DrawKey(12, 0)]
    assert not torch.equal(a.clip, c.clip)
    other_seed = VideoClipDataset(good_records(media), CLIP, CROP, seed=6)[DrawKey(11, 0)]
    assert not torch.equal(a.clip, other_seed.clip)


def test_bad_files_are_skipped_and_reported(media: MediaSet) -> None:
    records = good_records(media) + [VideoRecord(str(p), 99) for p in media.bad.values()]
    ds = VideoClipDataset(records, CLIP, CROP, seed=0)
    good_paths = {str(p) for p in media.good.values()}
    reported: dict[str, str] = {}
    for i in range(len(records)):
        sample = ds[DrawKey(i, i)]
        assert sample.path in good_paths and sample.label != 99
        assert sample.clip.shape == (3, 8, 32, 32)
        for s in sample.skipped:
            assert s.draw == i
            reported[s.path] = s.reason
    assert set(reported) == {str(p) for p in media.bad.values()}
    assert "missing" in reported[str(media.bad["missing"])]
    assert "empty" in reported[str(media.bad["empty"])]
    assert "min_frames" in reported[str(media.bad["too_short"])]


def test_container_that_lies_is_resampled_not_skipped(tmp_path: Path) -> None:
    path, _ = lying_video(tmp_path, num_frames=120)
    ds = VideoClipDataset([VideoRecord(str(path), 0)], ClipSpec(8, 4), CROP, seed=0)
    for draw in range(5):
        sample = ds[DrawKey(draw, 0)]
        assert sample.skipped == () and sample.frame_indices.max() < 120


def test_loader_counts_bad_files_and_stops_past_the_bound(media: MediaSet) -> None:
    records = good_records(media) + [VideoRecord(str(media.bad["corrupt"]), 0)]
    ds = VideoClipDataset(records, CLIP, CROP, seed=0)
    stream = make_loader(ds, batch_size=5, collate_fn=collate_samples, seed=0, rank=0, world_size=1)
    batches = list(stream)
    assert len(batches) == 1 and batches[0].clips.shape == (5, 3, 8, 32, 32)
    assert stream.failures.bad_paths == [str(media.bad["corrupt"])]
    assert stream.failures.successes == 5 and "corrupt.mp4" in stream.failures.summary()

    # mostly bad files: the run stops with the list of failing files
    bad = [VideoRecord(str(p), 0) for p in media.bad.values()]
    policy = FailurePolicy(max_failure_rate=0.2, min_failures=5, max_attempts=50)
    ds = VideoClipDataset(good_records(media)[:1] + bad * 3, CLIP, CROP, seed=0, failure_policy=policy)
    stream = make_loader(ds, batch_size=4, collate_fn=collate_samples, seed=0)
    with pytest.raises(TooManyFailuresError, match="failing files") as info:
        list(stream)
    assert "corrupt.mp4" in str(info.value) and "empty.mp4" in str(info.value)


def test_retries_per_draw_are_bounded(media: MediaSet) -> None:
    bad = [VideoRecord(str(p), 0) for p in media.bad.values()]
    ds = VideoClipDataset(bad, CLIP, CROP, seed=0, failure_policy=FailurePolicy(max_attempts=4))
    with pytest.raises(TooManyFailuresError, match="4 records in a row"):
        ds[DrawKey(0, 0)]


def test_workers_give_the_same_batches_and_report_failures(media: MediaSet) -> None:
    records = good_records(media) + [VideoRecord(str(media.bad["empty"]), 0)]
    ds = VideoClipDataset(records, CLIP, CROP, seed=3)
    results = []
    for workers in (0, 2):
        stream = make_loader(ds, batch_size=2, collate_fn=collate_samples, seed=3, num_workers=workers)
        results.append((torch.cat([b.clips for b in stream]), stream.failures.bad_paths))
    assert torch.equal(results[0][0], results[1][0])
    assert results[0][1] == results[1][1] == [str(media.bad["empty"])]


def test_eval_dataset_segments_views_and_counting(media: MediaSet) -> None:
    records = good_records(media) + [VideoRecord(str(media.bad["missing"]), 0)]
    ds = EvalVideoDataset(records, ClipSpec(8, 2, num_clips=2), EvalViewSpec(resolution=32, num_views=3))
    sample = ds[DrawKey(1, 1)]
    assert sample.clip.shape == (2, 3, 3, 8, 32, 32) and sample.counted
    assert torch.equal(sample.clip, ds[DrawKey(1, 1)].clip)
    assert not ds[DrawKey(2, 1, padded=True)].counted
    replaced = ds[DrawKey(9, len(records) - 1)]
    assert not replaced.counted and replaced.skipped[0].path == str(media.bad["missing"])
    stream = make_loader(ds, batch_size=3, collate_fn=collate_samples, seed=0, shuffle=False, drop_last=False)
    batch = next(iter(stream))
    assert batch.clips.shape == (3, 2, 3, 3, 8, 32, 32) and batch.counted.all()


def test_image_dataset_repeats_each_image_along_time(tmp_path: Path) -> None:
    for k, cls in enumerate(["cat", "dog"]):
        (tmp_path / cls).mkdir()
        write_video(
            tmp_path / cls / "a.png",
            random_frames(1, 40, 60, seed=k),
            fps=1,
            codec="png",
            pix_fmt="rgb24",
            options={"update": "1"},
        )
    records, classes = read_folder_index(tmp_path, IMAGE_EXTENSIONS)
    assert classes == ["cat", "dog"]
    train = ImageDataset(records, num_frames=16, crop=CropSpec(resolution=32, scale=(0.08, 1.0)))
    sample = train[DrawKey(0, 1)]
    assert sample.clip.shape == (3, 16, 32, 32) and sample.label == 1
    assert torch.equal(sample.clip[:, 0], sample.clip[:, 15])
    val = ImageDataset(records, num_frames=16, resolution=32)[0]
    assert val.clip.shape == (3, 16, 32, 32)
    assert np.isfinite(val.clip.numpy()).all()
