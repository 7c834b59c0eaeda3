"""Hostile and unusual videos: each bad file is one clear skip (never a traceback), unusual valid files
(variable frame rate, a late start, AV1, lying headers) are read on the time grid, huge frames are bounded.
The corpus is generated at test time (tests/bad_inputs.py)."""

from __future__ import annotations

import json
import math
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from bad_inputs import (
    av1_video,
    bad_videos,
    damaged_middle,
    decode_all,
    flat_video,
    huge_frame_video,
    late_start_video,
    lying_avi,
    mpeg4_avi,
    raw_h264,
    vfr_video,
)
from data_helpers import write_csv
from vjepa.checkpoint import save_pretrained
from vjepa.cli import main
from vjepa.data.datasets import VideoClipDataset
from vjepa.data.decode import VideoReader
from vjepa.data.draws import DrawKey
from vjepa.data.errors import FailurePolicy, FailureTracker, VideoDecodeError
from vjepa.data.index import VideoRecord, read_csv_index
from vjepa.data.sampling import ClipSpec
from vjepa.data.transforms import CropSpec
from vjepa.errors import MAX_SHOWN_CHARS
from vjepa.extract import ExtractSpec, load_clip_frames
from vjepa.models import VideoEncoder
from vjepa.models.registry import EncoderConfig
from vjepa.pretrain.config import DataConfig
from vjepa.pretrain.data import build_dataset


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path | str, str]]:
    return bad_videos(tmp_path_factory.mktemp("bad"))


@pytest.fixture(scope="module")
def unusual(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("unusual")
    return {
        "vfr_mp4": vfr_video(root / "vfr.mp4"),
        "vfr_mkv": vfr_video(root / "vfr.mkv"),
        "late_start_mkv": late_start_video(root / "late.mkv"),
        "late_start_mp4": late_start_video(root / "late.mp4"),
        "av1_mkv": av1_video(root / "av1.mkv"),
        "mpeg4_avi": mpeg4_avi(root / "plain.avi"),
    }


BAD_KINDS = [
    "no_decoder",
    "nul_byte",
    "folder",
    "empty",
    "text",
    "noise",
    "missing",
    "huge_frames",
    "long_name",
]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_each_bad_video_is_one_decode_error_naming_it(corpus, kind: str) -> None:
    path, phrase = corpus[kind]
    with pytest.raises(VideoDecodeError) as info, VideoReader(str(path)) as reader:
        reader.read([0])
    message = str(info.value)
    assert phrase in message and "\n" not in message
    assert info.value.path == str(path)
    assert len(message) < MAX_SHOWN_CHARS + 200  # a 5000-character path is shortened, and printed once
    assert message.count(".mp4") + message.count(".avi") == 1  # the file is named once


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_pretraining_dataset_counts_each_bad_video_as_a_skip(corpus, unusual, kind: str) -> None:
    path, phrase = corpus[kind]
    records = [VideoRecord(str(path), 0), VideoRecord(str(unusual["mpeg4_avi"]), 1)]
    ds = VideoClipDataset(records, ClipSpec(8, 2), CropSpec(32), seed=0)
    sample = ds[DrawKey(0, 0)]  # draws the bad record first, then a replacement
    assert sample.label == 1 and sample.clip.shape == (3, 8, 32, 32)
    assert [s.path for s in sample.skipped] == [str(path)] and phrase in sample.skipped[0].reason
    tracker = FailureTracker(FailurePolicy())
    tracker.update(1, sample.skipped)
    assert tracker.bad_paths == [str(path)] and tracker.failures == 1


def _on_screen(frames: list[tuple[float, np.ndarray]], index: int, fps: float) -> np.ndarray:
    """The frame on screen at index ``index``: the last one whose position (time * fps) is <= index + 0.5."""
    shown = [f for t, f in frames if t * fps <= index + 0.5 + 1e-9]
    return shown[-1] if shown else frames[0][1]


@pytest.mark.parametrize("kind", ["vfr_mp4", "vfr_mkv", "late_start_mkv", "late_start_mp4", "av1_mkv"])
def test_unusual_valid_videos_are_read_on_the_time_grid(unusual, kind: str) -> None:
    path = unusual[kind]
    everything = decode_all(path)
    with VideoReader(str(path)) as reader:
        n = reader.verified_num_frames()
        fps = reader.fps
    assert 0.9 * len(everything) <= n <= len(everything) + 1
    spec = ExtractSpec(num_frames=16, frame_step=1)
    starts = list(range(0, n - spec.span + 1, 16)) + [n - spec.span]
    for start in starts:  # every window, each from a fresh reader (the seek path), as extract reads them
        indices = np.arange(start, start + spec.span)
        with VideoReader(str(path)) as reader:
            got = reader.read(indices)
        for i, frame in zip(indices, got, strict=True):
            assert np.array_equal(frame, _on_screen(everything, int(i), fps)), (kind, int(i))


def test_unusual_videos_train_without_a_skip(unusual) -> None:
    records = [VideoRecord(str(p), 0) for p in unusual.values()]
    ds = VideoClipDataset(records, ClipSpec(16, 4), CropSpec(32), seed=0)
    for draw in range(len(records) * 3):
        sample = ds[DrawKey(draw, draw % len(records))]
        assert sample.skipped == () and sample.index == draw % len(records)


def test_lying_header_counts_the_frames_that_decode(tmp_path) -> None:
    path = lying_avi(tmp_path / "lying.avi", claimed=1_000_000)
    with VideoReader(str(path)) as reader:
        assert reader.num_frames == 1_000_000  # what the header says
        assert reader.verified_num_frames() == 60  # what decodes
    ds = VideoClipDataset([VideoRecord(str(path), 0)], ClipSpec(16, 4), CropSpec(32), seed=0)
    sample = ds[DrawKey(0, 0)]
    assert sample.skipped == () and sample.frame_indices.max() < 60


@pytest.mark.parametrize("maker", [raw_h264, damaged_middle])
def test_unseekable_and_damaged_videos_are_used(tmp_path, maker) -> None:
    """A raw elementary stream cannot seek (reads fall back to decoding from the start); a damaged packet
    is skipped as FFmpeg's tools skip it, and the frames after it are still read."""
    path = maker(tmp_path / f"v{maker.__name__}.{'h264' if maker is raw_h264 else 'mp4'}")
    with VideoReader(str(path)) as reader:
        n = reader.verified_num_frames()
        assert n >= 50
        late = reader.read(np.arange(n - 16, n))
    assert late.shape == (16, 48, 64, 3)
    ds = VideoClipDataset([VideoRecord(str(path), 0)], ClipSpec(16, 2), CropSpec(32), seed=0)
    assert all(ds[DrawKey(d, 0)].skipped == () for d in range(4))


def test_pretraining_run_goes_on_past_bad_videos(corpus, tmp_path) -> None:
    from pretrain_helpers import tiny_config
    from vjepa.data.synthetic import SyntheticSpec, write_synthetic_dataset
    from vjepa.pretrain.loop import pretrain
    from vjepa.pretrain.state import load_training_state

    files = write_synthetic_dataset(
        tmp_path / "videos",
        num_train=12,
        num_val=1,
        spec=SyntheticSpec(num_frames=8, resolution=48, object_size=16),
    )
    good = [r.path for r in read_csv_index(files.csvs["train"])]
    bad = [corpus[k][0] for k in ("no_decoder", "nul_byte", "huge_frames", "folder", "long_name")]
    index = write_csv(tmp_path / "mixed.csv", [(p, 0) for p in good * 4 + bad])  # within the 10% bound
    config = tiny_config(["data.source=csv", f"data.datasets=[{index}]", "optimization.epochs=1"])
    result = pretrain(config, tmp_path / "run")
    assert result.end_step == 5 and math.isfinite(result.last_loss)
    skipped = load_training_state(tmp_path / "run/checkpoints/latest.pt")["data"]["failures"]["skipped"]
    assert skipped and {path for path, _, _ in skipped} <= {str(p) for p in bad}


def test_frames_are_shrunk_at_decode_by_default(tmp_path) -> None:
    """Pretraining (data.max_short_side=auto) and extract decode a 1080p video to the size the crop needs:
    the decoded frames take a small fraction of their full-size memory."""
    video = flat_video(tmp_path / "hd.mp4", 1920, 1080, 16)
    full_bytes = 16 * 1920 * 1080 * 3
    index = str(write_csv(tmp_path / "i.csv", [(video, 0)]))
    data = DataConfig(
        datasets=[index], num_frames=16, clip_cache=False
    )  # the clip cache decodes whole videos
    ds = build_dataset(data, seed=0)
    assert ds.max_short_side == 409  # ceil(224 / sqrt(0.3))
    tracemalloc.start()
    sample = ds[DrawKey(0, 0)]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert sample.clip.shape == (3, 16, 224, 224) and peak < full_bytes / 4
    spec = ExtractSpec(num_frames=16, frame_step=1, resolution=224)
    tracemalloc.start()
    clip = load_clip_frames(str(video), np.arange(16), spec)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert clip.shape == (3, 16, 224, 224) and peak < full_bytes / 8


def test_huge_frames_are_refused_before_decoding(tmp_path) -> None:
    path = huge_frame_video(tmp_path / "huge.mp4", side=8192)
    assert path.stat().st_size < 1_000_000
    tracemalloc.start()
    with pytest.raises(VideoDecodeError, match=r"8192x8192 \(67.1 megapixels\) exceed the decoding limit"):
        VideoReader(str(path))
    assert tracemalloc.get_traced_memory()[1] < 50_000_000
    tracemalloc.stop()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    cfg = EncoderConfig(embed_dim=32, depth=1, num_heads=4, num_frames=8, resolution=32)
    root = tmp_path_factory.mktemp("ckpt")
    return save_pretrained(root / "ckpt", {"target_encoder": VideoEncoder(cfg)}, cfg)


def test_extract_records_every_bad_file_and_goes_on(corpus, unusual, checkpoint, tmp_path, capsys) -> None:
    lying = lying_avi(tmp_path / "lying.avi", claimed=1_000_000)
    good = [*unusual.values(), lying]
    bad = [corpus[k][0] for k in ("no_decoder", "nul_byte", "huge_frames", "empty", "text", "missing")]
    index = write_csv(tmp_path / "inputs.csv", [(p, 0) for p in good + bad])
    out = tmp_path / "features"
    args = ["extract", str(index), "--checkpoint", str(checkpoint), "--encoder", "target_encoder"]
    with pytest.raises(SystemExit) as code:
        main([*args, "--out", str(out), "--frames", "8", "--frame-step", "2", "--resolution", "32"])
    assert code.value.code == 1  # some inputs failed; the others were written
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["failed"]) == {str(p) for p in bad}
    for p in bad:
        phrase = next(ph for k, (q, ph) in corpus.items() if q == p)
        assert phrase in manifest["failed"][str(p)]
    assert len(manifest["written"]) == len(good)
    from safetensors.torch import load_file

    late = load_file(out / f"{manifest['inputs'][str(lying)]}.safetensors")
    assert late["frame_indices"].max() < 60 and late["features"].shape[0] <= 5  # not ~62,500 windows
    assert torch.isfinite(late["features"]).all()
    printed = capsys.readouterr()
    assert "Traceback" not in printed.err
    assert all(printed.out.count(str(p)) == 1 for p in bad if "\x00" not in str(p))  # each named once
