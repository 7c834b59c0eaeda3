"""The synthetic dataset: deterministic bytes, motion invisible in single frames, visible in two."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vjepa.cli import main
from vjepa.data.datasets import VideoClipDataset
from vjepa.data.decode import VideoReader
from vjepa.data.index import read_csv_index
from vjepa.data.sampling import ClipSpec
from vjepa.data.synthetic import (
    MOTIONS,
    SHAPES,
    SyntheticSpec,
    default_object_size,
    generate_videos,
    write_synthetic_dataset,
)
from vjepa.data.transforms import CropSpec

SPEC = SyntheticSpec()


def nearest_centroid_accuracy(train_x, train_y, test_x, test_y) -> float:
    """Accuracy of a nearest-centroid classifier on standardized features."""
    mu, sd = train_x.mean(0), train_x.std(0) + 1e-6
    train_x, test_x = (train_x - mu) / sd, (test_x - mu) / sd
    classes = np.unique(train_y)
    centroids = np.stack([train_x[train_y == c].mean(0) for c in classes])
    dist = ((test_x[:, None, :] - centroids[None]) ** 2).sum(-1)
    return float((classes[dist.argmin(1)] == test_y).mean())


def single_frame_features(frames: np.ndarray) -> np.ndarray:
    """Per-frame features: downsampled pixels plus the translation-invariant |FFT| of the luminance.

    frames: [N, H, W, 3] -> [N, D]
    """
    gray = frames.astype(np.float64).mean(-1)  # [N, H, W]
    gray = (gray - gray.mean((1, 2), keepdims=True)) / (gray.std((1, 2), keepdims=True) + 1e-6)
    spectrum = np.abs(np.fft.fft2(gray))[:, :16, :16].reshape(len(frames), -1)
    pixels = frames.reshape(len(frames), 16, 4, 16, 4, 3).mean((2, 4)).reshape(len(frames), -1)
    return np.concatenate([spectrum, pixels / 255.0], axis=1)


def two_frame_features(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The displacement between two frames: argmax of their circular cross-correlation. [N, 2]"""
    ga, gb = a.astype(np.float64).mean(-1), b.astype(np.float64).mean(-1)
    ga, gb = ga - ga.mean((1, 2), keepdims=True), gb - gb.mean((1, 2), keepdims=True)
    corr = np.real(np.fft.ifft2(np.conj(np.fft.fft2(ga)) * np.fft.fft2(gb)))  # [N, H, W]
    n = a.shape[1]
    flat = corr.reshape(len(a), -1).argmax(1)
    dy, dx = np.unravel_index(flat, (n, n))
    wrap = lambda d: (d + n // 2) % n - n // 2  # noqa: E731
    return np.stack([wrap(dx), wrap(dy)], 1).astype(np.float64)


def test_motion_is_invisible_in_single_frames_but_visible_in_two() -> None:
    train = generate_videos(SPEC, 320, seed=0, split="train")
    test = generate_videos(SPEC, 160, seed=0, split="val")
    rng = np.random.default_rng(0)
    t_train = rng.integers(0, SPEC.num_frames - 1, len(train.frames))
    t_test = rng.integers(0, SPEC.num_frames - 1, len(test.frames))
    frame_train = train.frames[np.arange(len(t_train)), t_train]  # [N, H, W, 3] one random frame each
    frame_test = test.frames[np.arange(len(t_test)), t_test]
    f_train, f_test = single_frame_features(frame_train), single_frame_features(frame_test)

    chance = 1 / len(MOTIONS)
    motion_single = nearest_centroid_accuracy(f_train, train.motion, f_test, test.motion)
    appearance_single = nearest_centroid_accuracy(f_train, train.appearance, f_test, test.appearance)
    assert abs(motion_single - chance) < 0.1, motion_single  # chance: 0.25 +- 0.034 (1 sd)
    assert appearance_single > 0.7, appearance_single  # the same features do see the shape

    next_train = train.frames[np.arange(len(t_train)), t_train + 1]
    next_test = test.frames[np.arange(len(t_test)), t_test + 1]
    d_train, d_test = two_frame_features(frame_train, next_train), two_frame_features(frame_test, next_test)
    motion_pair = nearest_centroid_accuracy(d_train, train.motion, d_test, test.motion)
    assert motion_pair > 0.9, motion_pair


def test_frame_distribution_is_the_same_for_every_motion() -> None:
    """The object's position is uniform in every frame for every motion class (toroidal wrap)."""
    videos = generate_videos(SyntheticSpec(num_frames=4), 400, seed=1)
    for m in range(len(MOTIONS)):
        frames = videos.frames[videos.motion == m]  # [n, T, H, W, 3]
        for t in (0, 3):
            occupancy = (frames[:, t].astype(int).sum(-1) > 3 * 110).mean(0)  # [H, W] object presence
            assert occupancy.std() < 0.06  # no region preferred at any time for any motion


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a = write_synthetic_dataset(tmp_path / "a", seed=3, num_train=6, num_val=2)
    b = write_synthetic_dataset(tmp_path / "b", seed=3, num_train=6, num_val=2)
    c = write_synthetic_dataset(tmp_path / "c", seed=4, num_train=6, num_val=2)
    files = sorted(p.relative_to(a.root) for p in a.root.rglob("*") if p.is_file())
    assert len(files) == 6 + 2 + 6 + 1  # videos, CSVs, meta.json
    for rel in files:
        assert (a.root / rel).read_bytes() == (b.root / rel).read_bytes(), rel
    assert (a.root / "train/000000.mp4").read_bytes() != (c.root / "train/000000.mp4").read_bytes()
    with pytest.raises(FileExistsError):
        write_synthetic_dataset(tmp_path / "a", seed=3, num_train=1, num_val=1)


def test_files_decode_to_the_generated_videos_and_load_as_clips(tmp_path: Path) -> None:
    files = write_synthetic_dataset(tmp_path, seed=0, num_train=8, num_val=4)
    videos = generate_videos(SPEC, 8, seed=0, split="train")
    records = read_csv_index(files.csvs["train"])
    motion = read_csv_index(files.csvs["train_motion"])
    appearance = read_csv_index(files.csvs["train_appearance"])
    for i, (r, m, a) in enumerate(zip(records, motion, appearance, strict=True)):
        assert r.label == a.label * len(MOTIONS) + m.label == videos.combined[i]
        with VideoReader(r.path) as reader:
            assert np.abs(reader.read_all().astype(int) - videos.frames[i]).max() <= 2
    meta = json.loads(files.meta.read_text())
    assert meta["appearance_classes"] == list(SHAPES) and meta["motion_classes"] == list(MOTIONS)
    ds = VideoClipDataset(motion, ClipSpec(num_frames=16, frame_step=1), CropSpec(resolution=64), seed=0)
    assert ds[0].clip.shape == (3, 16, 64, 64) and ds[0].frame_indices.tolist() == [list(range(16))]


def test_make_data_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(
            [
                "make-data",
                "synthetic",
                str(tmp_path / "out"),
                "--num-train",
                "3",
                "--num-val",
                "1",
                "--size",
                "32",
                "--frames",
                "8",
                "--object-size",
                "12",
            ]
        )
    assert info.value.code == 0
    assert len(read_csv_index(tmp_path / "out" / "val_motion.csv")) == 1
    with VideoReader(str(tmp_path / "out" / "train" / "000002.mp4")) as reader:
        assert (reader.num_frames, reader.info.width) == (8, 32)
    assert "wrote 3 + 1 videos" in capsys.readouterr().out


def test_hold_keeps_the_object_still_inside_each_tubelet():
    videos = generate_videos(SyntheticSpec(hold=2), 8, seed=3)
    frames = videos.frames.astype(int)
    assert (frames[:, 0::2] == frames[:, 1::2]).all()  # no motion inside a 2-frame tubelet
    assert (frames[:, 0] != frames[:, 2]).any(axis=(1, 2, 3)).all()  # but motion across tubelets


def test_several_objects_move_together_and_keep_the_single_object_draws():
    one = generate_videos(SyntheticSpec(num_frames=4, resolution=32, object_size=6, speeds=(2,)), 4, seed=5)
    many = SyntheticSpec(num_frames=4, resolution=32, object_size=6, speeds=(2,), num_objects=6)
    videos = generate_videos(many, 4, seed=5)
    assert videos.frames.shape == one.frames.shape
    for i in range(4):
        dx, dy = {0: (2, 0), 1: (-2, 0), 2: (0, 2), 3: (0, -2)}[int(videos.motion[i])]
        # the whole field shifts by the velocity from one frame to the next (the frame is a torus)
        np.testing.assert_array_equal(
            np.roll(videos.frames[i, 0], (dy, dx), axis=(0, 1)), videos.frames[i, 1]
        )
        lit = (videos.frames[i, 0] != videos.frames[i, 0, 0, 0]).any(-1).sum()
        assert lit > (one.frames[i, 0] != one.frames[i, 0, 0, 0]).any(-1).sum()  # more objects, more pixels


def test_one_object_size_rule_keeps_the_default_look_at_any_size():
    assert default_object_size(64) == SyntheticSpec().object_size == 26
    assert [default_object_size(s) for s in (8, 16, 96, 112, 224)] == [4, 6, 39, 46, 91]  # nearest, not floor
    for resolution in range(8, 300):
        SyntheticSpec(
            resolution=resolution, object_size=default_object_size(resolution), speeds=(1,)
        )  # always a valid size
