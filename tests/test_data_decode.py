"""Decoding: frames decoded match frames encoded, seeks are exact, bad files raise VideoDecodeError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from data_helpers import MediaSet, lying_video, make_media, random_frames, write_lossless
from vjepa.data.decode import VideoReader, output_size, read_image, write_video
from vjepa.data.errors import VideoDecodeError, VideoTooShortError


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> MediaSet:
    return make_media(tmp_path_factory.mktemp("media"))


@pytest.mark.parametrize("name", ["small_30fps", "wide_25fps", "tall_24fps"])
def test_decoded_frames_match_encoded(media: MediaSet, name: str) -> None:
    expected = media.frames[name]
    with VideoReader(str(media.good[name])) as reader:
        assert reader.num_frames == len(expected) and reader.info.frame_count_source == "container"
        assert (reader.info.height, reader.info.width) == expected.shape[1:3]
        everything = reader.read_all()
        assert everything.shape == expected.shape and everything.dtype == np.uint8
        assert np.abs(everything.astype(int) - expected).max() <= 2  # lossless YUV 4:4:4, RGB rounding
        idx = np.array([len(expected) - 1, 3, 3, 17, 0])
        assert np.array_equal(reader.read(idx), everything[idx])
    fps = {"small_30fps": 30, "wide_25fps": 25, "tall_24fps": 24}[name]
    assert reader.fps == pytest.approx(fps)


def test_seek_reads_exactly_the_requested_frames(media: MediaSet) -> None:
    """A long lossy video with B-frames and a key frame every 12 frames: reads after seeks equal the
    frames of a full sequential decode."""
    with VideoReader(str(media.good["seekable"])) as reader:
        everything = reader.read_all()
        assert len(everything) == 150
        rng = np.random.default_rng(0)
        for _ in range(15):
            start = int(rng.integers(16, 140))
            idx = np.arange(start, min(start + 48, 150), 3)
            assert np.array_equal(reader.read(idx), everything[idx])


def test_downscale_during_decoding(media: MediaSet) -> None:
    assert output_size(720, 1280, 256) == (256, 455) and output_size(240, 320, 256) == (240, 320)
    with VideoReader(str(media.good["tall_24fps"]), max_short_side=20) as reader:
        frames = reader.read([0, 5])
    assert frames.shape == (2, 32, 20, 3)
    # the shrunk frame is close to an area-average of the original
    original = media.frames["tall_24fps"][0].astype(float)
    assert abs(frames[0].mean() - original.mean()) < 3


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("missing", "missing file"),
        ("empty", "empty file"),
        ("corrupt", "cannot open"),
        ("truncated", "cannot open"),
        ("zero_frames", "no video stream"),
    ],
)
def test_bad_files_raise_decode_error(media: MediaSet, kind: str, reason: str) -> None:
    with pytest.raises(VideoDecodeError, match=reason) as info:
        VideoReader(str(media.bad[kind])).read([0])
    assert info.value.path == str(media.bad[kind])


def test_too_short_video_reports_its_frame_count(media: MediaSet) -> None:
    with VideoReader(str(media.bad["too_short"])) as reader:
        assert reader.num_frames == 5
        with pytest.raises(VideoTooShortError) as info:
            reader.read(np.arange(16))
    assert info.value.num_frames == 5


def test_container_that_lies_about_its_frame_count(tmp_path: Path) -> None:
    path, frames = lying_video(tmp_path)
    with VideoReader(str(path)) as reader:
        assert reader.num_frames == 60  # what the index at the front says
        with pytest.raises(VideoTooShortError) as info:
            reader.read([10, 55])
        available = info.value.num_frames
        assert 0 < available < 60
        got = reader.read([0, available - 1])  # what did decode is still readable
    assert np.abs(got.astype(int) - frames[[0, available - 1]]).max() <= 2


def test_frame_count_fallback_without_container_count(tmp_path: Path) -> None:
    frames = random_frames(20, 32, 48, seed=5)
    path = write_lossless(tmp_path / "clip.mkv", frames, fps=25)  # Matroska stores no frame count
    with VideoReader(str(path)) as reader:
        assert reader.info.frame_count_source in ("duration", "packets")
        assert reader.num_frames == 20
        assert np.abs(reader.read([19]).astype(int) - frames[19:20]).max() <= 2


def test_read_image(tmp_path: Path) -> None:
    image = random_frames(1, 30, 40, seed=2)
    write_video(tmp_path / "im.png", image, fps=1, codec="png", pix_fmt="rgb24", options={"update": "1"})
    assert np.array_equal(read_image(str(tmp_path / "im.png")), image[0])
    with pytest.raises(VideoDecodeError, match="missing"):
        read_image(str(tmp_path / "none.png"))


def test_container_with_almost_no_data(tmp_path: Path) -> None:
    path, _ = lying_video(tmp_path, keep_fraction=0.02)
    with pytest.raises(VideoDecodeError):
        VideoReader(str(path)).read(np.arange(16))
