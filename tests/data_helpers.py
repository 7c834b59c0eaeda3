"""Small media files made on the fly for the data tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vjepa.data.decode import write_video

LOSSLESS = {"qp": "0", "preset": "ultrafast"}


def random_frames(num_frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """[T, H, W, 3] uint8 noise (every frame distinct, so a wrong frame is always detected)."""
    return np.random.default_rng(seed).integers(0, 256, (num_frames, height, width, 3), dtype=np.uint8)


def smooth_frames(num_frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """[T, H, W, 3] uint8 moving gradients that compress like real video (for lossy/seek tests)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    phase = rng.uniform(0, 6.28, 3)
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for t in range(num_frames):
        for c in range(3):
            v = 127 + 100 * np.sin(x / (9 + 3 * c) + y / 13 + phase[c] + 0.3 * t)
            frames[t, :, :, c] = np.clip(v + (t * 37 % 50), 0, 255)
    return frames


def write_lossless(path: Path, frames: np.ndarray, fps: float = 30) -> Path:
    """x264 qp 0 in 4:4:4: decodes within +-2 of the input (RGB <-> YUV rounding)."""
    write_video(path, frames, fps=fps, pix_fmt="yuv444p", options=LOSSLESS)
    return path


@dataclass
class MediaSet:
    """Paths of the good and bad files of one test session, with the frames encoded into the good ones."""

    root: Path
    good: dict[str, Path]
    frames: dict[str, np.ndarray]
    bad: dict[str, Path]


def make_media(root: Path) -> MediaSet:
    """Good videos of several sizes and frame rates and one file of each kind of bad video."""
    root.mkdir(parents=True, exist_ok=True)
    good: dict[str, Path] = {}
    frames: dict[str, np.ndarray] = {}
    specs = {  # name: (frames, height, width, fps)
        "small_30fps": (40, 48, 64, 30),
        "wide_25fps": (100, 32, 80, 25),
        "tall_24fps": (70, 64, 40, 24),
    }
    for k, (name, (t, h, w, fps)) in enumerate(specs.items()):
        frames[name] = random_frames(t, h, w, seed=k)
        good[name] = write_lossless(root / f"{name}.mp4", frames[name], fps)
    # a long lossy one with short GOPs and B-frames, to exercise seeking
    frames["seekable"] = smooth_frames(150, 48, 64, seed=7)
    good["seekable"] = root / "seek able.mp4"  # a space in the name on purpose
    write_video(good["seekable"], frames["seekable"], fps=30, options={"crf": "20", "g": "12", "bf": "2"})

    bad: dict[str, Path] = {"missing": root / "does_not_exist.mp4"}
    bad["empty"] = root / "empty.mp4"
    bad["empty"].write_bytes(b"")
    bad["corrupt"] = root / "corrupt.mp4"
    bad["corrupt"].write_bytes(np.random.default_rng(3).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    bad["too_short"] = write_lossless(root / "too_short.mp4", random_frames(5, 32, 32, seed=9))
    # moov atom at the end: cutting the file loses the index, the container cannot be opened
    full = write_lossless(root / "full.mp4", random_frames(60, 32, 32, seed=11))
    bad["truncated"] = root / "truncated.mp4"
    bad["truncated"].write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    full.unlink()
    # a valid mp4 header with a video stream declared but not a single frame
    bad["zero_frames"] = root / "zero_frames.mp4"
    write_video(bad["zero_frames"], np.zeros((0, 32, 32, 3), dtype=np.uint8), fps=30, options=LOSSLESS)
    return MediaSet(root, good, frames, bad)


def lying_video(root: Path, num_frames: int = 60, keep_fraction: float = 0.5) -> tuple[Path, np.ndarray]:
    """A faststart mp4 cut short: the index (first) still lists every frame, the data holds only some."""
    frames = random_frames(num_frames, 32, 32, seed=13)
    full = write_video(
        root / "lying_full.mp4", frames, fps=30, pix_fmt="yuv444p", options=LOSSLESS, faststart=True
    )
    del full
    data = (root / "lying_full.mp4").read_bytes()
    path = root / "lying.mp4"
    path.write_bytes(data[: int(len(data) * keep_fraction)])
    return path, frames


def write_csv(path: Path, rows: list[tuple[Path | str, int]]) -> Path:
    path.write_text("".join(f"{p} {label}\n" for p, label in rows), encoding="utf-8")
    return path
