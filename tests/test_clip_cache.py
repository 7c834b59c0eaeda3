"""The decoded-clip cache: hits, invalidation by file content and decode settings, and clips identical with
and without it for a fixed seed (so augmentation, per-draw randomness and exact resume are unchanged)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from data_helpers import smooth_frames
from vjepa.data.clip_cache import ClipCache, open_clip_cache
from vjepa.data.datasets import EvalVideoDataset, VideoClipDataset, collate_samples
from vjepa.data.decode import VideoReader, write_video
from vjepa.data.draws import DrawKey
from vjepa.data.index import VideoRecord
from vjepa.data.loader import make_loader
from vjepa.data.sampling import ClipSpec
from vjepa.data.transforms import CropSpec, EvalViewSpec
from vjepa.errors import InvalidArgument

MB = 10**6


def _video(path, num_frames=24, size=(32, 40), seed=0, gop=8):
    """A lossy mp4 with key frames every ``gop`` frames (so clips past frame 16 are read after a seek)."""
    write_video(path, smooth_frames(num_frames, *size, seed=seed), fps=25, options={"g": str(gop), "bf": "2"})
    return str(path)


def _decode_count(monkeypatch) -> list[int]:
    """Counts VideoReader.read calls (each a decode)."""
    calls = [0]
    original = VideoReader.read

    def counting(self, indices):
        calls[0] += 1
        return original(self, indices)

    monkeypatch.setattr(VideoReader, "read", counting)
    return calls


def test_a_second_read_hits_the_cache_without_decoding(tmp_path, monkeypatch):
    path = _video(tmp_path / "a.mp4")
    first = ClipCache(tmp_path / "cache", 100 * MB).get(path, None)
    assert first is not None and first.frames.shape == (24, 32, 40, 3) and first.num_frames == 24
    calls = _decode_count(monkeypatch)
    cache = ClipCache(tmp_path / "cache", 100 * MB)  # a new process: only the folder is shared
    again = cache.get(path, None)
    assert calls[0] == 0 and cache.stats.hits == 1 and cache.stats.stored == 0
    assert isinstance(again.frames, np.memmap) and np.array_equal(again.frames, first.frames)
    with VideoReader(path) as reader:
        assert np.array_equal(again.frames, reader.read(np.arange(24)))
    assert not list((tmp_path / "cache").rglob("*.tmp"))  # writes are atomic


def test_a_changed_file_misses_and_is_decoded_again(tmp_path):
    path = tmp_path / "a.mp4"
    _video(path, seed=0)
    cache = ClipCache(tmp_path / "cache", 100 * MB)
    old = np.array(cache.get(str(path), None).frames)
    _video(tmp_path / "b.mp4", seed=1)
    os.replace(tmp_path / "b.mp4", path)  # same path, new content
    new = cache.get(str(path), None)
    assert cache.stats.stored == 2 and cache.stats.hits == 0
    with VideoReader(str(path)) as reader:
        assert np.array_equal(new.frames, reader.read(np.arange(24)))
    assert not np.array_equal(new.frames, old)


def test_changed_decode_settings_miss(tmp_path):
    path = _video(tmp_path / "a.mp4", size=(48, 64))
    cache = ClipCache(tmp_path / "cache", 100 * MB)
    full = cache.get(path, None)
    small = cache.get(path, 24)
    assert cache.stats.stored == 2 and cache.stats.hits == 0
    assert full.frames.shape[1:3] == (48, 64) and small.frames.shape[1:3] == (24, 32)
    assert cache.key(path, None) != cache.key(path, 24)
    assert cache.get(path, 24) is not None and cache.stats.hits == 1


def test_the_budget_bounds_the_folder_and_undecodable_files_are_left_to_the_reader(tmp_path):
    paths = [_video(tmp_path / f"{i}.mp4", seed=i) for i in range(3)]
    one = 24 * 32 * 40 * 3
    cache = ClipCache(tmp_path / "cache", int(2.5 * one))
    stored = [cache.get(p, None) is not None for p in paths]
    assert stored == [True, True, False] and cache.stats.skipped == 1
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\0" * 4096)
    assert cache.get(str(broken), None) is None
    assert cache.get(str(tmp_path / "missing.mp4"), None) is None
    assert cache.get(str(tmp_path), None) is None  # a folder
    assert cache.get("bad\0name.mp4", None) is None
    os.mkfifo(tmp_path / "fifo.mp4")
    assert cache.get(str(tmp_path / "fifo.mp4"), None) is None  # not read (it would block)


def _records(tmp_path):
    return [
        VideoRecord(_video(tmp_path / "long.mp4", num_frames=60, seed=0), 0),  # windows past a seek
        VideoRecord(_video(tmp_path / "short.mp4", num_frames=12, seed=1), 1),  # padded with the last frame
        VideoRecord(_video(tmp_path / "mid.mp4", num_frames=30, size=(48, 64), seed=2), 2),
    ]


def test_training_clips_are_identical_with_and_without_the_cache(tmp_path):
    records = _records(tmp_path)
    spec, crop = ClipSpec(num_frames=8, frame_step=3, num_clips=2), CropSpec(resolution=24)
    plain = VideoClipDataset(records, spec, crop, seed=7, max_short_side=40)
    cache = ClipCache(tmp_path / "cache", 100 * MB)
    cached = VideoClipDataset(records, spec, crop, seed=7, max_short_side=40, clip_cache=cache)
    for epoch in range(2):  # the first pass fills the cache, the second reads it
        for i in range(len(records)):
            key = DrawKey(epoch * 10 + i, i)
            a, b = plain[key], cached[key]
            assert torch.equal(a.clip, b.clip) and torch.equal(a.frame_indices, b.frame_indices)
    assert cache.stats.stored == 3 and cache.stats.hits >= 3
    # augmentation stays random per draw: two draws of the same video differ
    assert not torch.equal(cached[DrawKey(100, 0)].clip, cached[DrawKey(101, 0)].clip)


def test_eval_clips_are_identical_with_and_without_the_cache(tmp_path):
    records = _records(tmp_path)
    spec, views = ClipSpec(num_frames=8, frame_step=2, num_clips=2), EvalViewSpec(resolution=24, num_views=3)
    plain = EvalVideoDataset(records, spec, views)
    cached = EvalVideoDataset(records, spec, views, clip_cache=ClipCache(tmp_path / "cache", 100 * MB))
    for i in range(len(records)):
        assert torch.equal(plain[i].clip, cached[i].clip)


def test_a_stream_with_a_worker_and_the_cache_yields_the_batches_of_the_plain_stream(tmp_path):
    records = _records(tmp_path) * 2
    spec, crop = ClipSpec(num_frames=8, frame_step=2), CropSpec(resolution=24)
    cache = ClipCache(tmp_path / "cache", 100 * MB)

    def batches(clip_cache, workers):
        ds = VideoClipDataset(records, spec, crop, seed=3, clip_cache=clip_cache)
        stream = make_loader(ds, batch_size=2, collate_fn=collate_samples, seed=3, num_workers=workers)
        return [b.clips for _, b in zip(range(6), stream.batches(), strict=False)]

    plain = batches(None, 0)
    for got in (batches(cache, 1), batches(cache, 1)):  # the worker fills the folder, then reads it
        assert all(torch.equal(a, b) for a, b in zip(plain, got, strict=True))
    assert ClipCache(tmp_path / "cache", 100 * MB).load(records[0].path, None) is not None


def test_open_clip_cache_decides_from_the_estimated_size(tmp_path):
    paths = [_video(tmp_path / f"{i}.mp4", seed=i) for i in range(3)]
    off = open_clip_cache(False, paths, None, cache_dir=tmp_path / "c")
    assert off.cache is None and "off" in off.reason
    auto = open_clip_cache("auto", paths, None, cache_dir=tmp_path / "c")
    assert auto.cache is not None and auto.estimated_bytes == 3 * 24 * 32 * 40 * 3
    small = open_clip_cache("auto", paths, None, cache_dir=tmp_path / "c", max_gb=1e-6)
    assert small.cache is None and "clip_cache_max_gb" in small.reason
    forced = open_clip_cache(True, paths, None, cache_dir=tmp_path / "c", max_gb=1e-6)
    assert forced.cache is not None
    for bad in ("sometimes", "on", 1):
        with pytest.raises(InvalidArgument, match="'auto', true or false"):
            open_clip_cache(bad, paths, None)  # type: ignore[arg-type]
