"""A built-in procedural video dataset with an appearance label and a motion label.

Each video shows one object (or ``num_objects`` objects) on a plain background. Their SHAPE is the appearance
class (square, disc, triangle, cross) and their DIRECTION of constant-speed motion is the motion class
(right, left, down, up); several objects all move together, like a field of dots drifting one way.
Colours, start positions and speed are random and independent of both labels.

The motion label cannot be read from a single frame: the frame is a torus (the object wraps around the
edges), the start position is uniform over all pixels and the object is drawn identically whatever its
motion (no blur, no trail, no orientation change), so the distribution of any single frame is the same for
every motion class. Two frames give it away (the displacement between them). The appearance label is
visible in every frame. These are the two regimes of the paper: Something-Something (motion) and Kinetics
(appearance).

Defaults suit a tiny ViT with patch 16 and tubelet 2 trained on a CPU: 16 frames of 64x64 (4x4 patches),
objects about 26 pixels wide, 3-4 pixels of motion per frame (6-8 per tubelet). Sample clips from these
videos with frame_step 1.

`generate_videos` makes the videos in memory (tests); `write_synthetic_dataset` writes them as H.264 mp4
files (lossless in YUV 4:4:4, bit-exact: the same seed gives the same bytes) plus official-format CSVs.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vjepa.data.decode import write_video
from vjepa.errors import InvalidArgument

SHAPES = ("square", "disc", "triangle", "cross")
MOTIONS = ("right", "left", "down", "up")
_VELOCITY = {"right": (1, 0), "left": (-1, 0), "down": (0, 1), "up": (0, -1)}  # (dx, dy) per unit speed
_SPLITS = {"train": 0, "val": 1}


@dataclass(frozen=True)
class SyntheticSpec:
    """Shape of the synthetic videos.

    Args:
        num_frames: frames per video.
        resolution: frame side in pixels (square frames).
        object_size: object side (bounding box) in pixels.
        speeds: possible speeds in pixels per frame (drawn uniformly per video).
        fps: frame rate written to the files.
        hold: the object moves every ``hold`` frames and stays put in between. With ``hold`` equal to the
            tubelet size (2), no single tubelet shows any motion: the direction can only be read by
            comparing tokens across time (the regime of Something-Something). ``hold=1`` moves every frame.
        num_objects: objects per video, all of the video's shape and moving with its velocity, each with its
            own colour and start position. With one object a probe on any encoder can follow it; with many,
            which object went where is ambiguous, and the direction is a property of the whole field.
    """

    num_frames: int = 16
    resolution: int = 64
    object_size: int = 26
    speeds: tuple[int, ...] = (3, 4)
    fps: int = 8
    hold: int = 1
    num_objects: int = 1

    def __post_init__(self) -> None:
        if self.num_frames < 2 or self.resolution < 8:
            raise InvalidArgument(f"need num_frames >= 2 and resolution >= 8, got {self}")
        if not 4 <= self.object_size <= self.resolution // 2:
            raise InvalidArgument(f"object_size must lie in [4, resolution // 2], got {self.object_size}")
        if not self.speeds or min(self.speeds) < 1 or max(self.speeds) >= self.resolution // 2:
            raise InvalidArgument(f"speeds must be integers in [1, resolution // 2), got {self.speeds}")
        if not 1 <= self.hold <= self.num_frames:
            raise InvalidArgument(f"hold must lie in [1, num_frames], got {self.hold}")
        if self.num_objects < 1:
            raise InvalidArgument(f"num_objects must be >= 1, got {self.num_objects}")

    @property
    def num_classes(self) -> int:
        return len(SHAPES) * len(MOTIONS)


def default_object_size(resolution: int) -> int:
    """The object side at frame side ``resolution`` that keeps the default look (26 pixels at 64):
    ``resolution * 26 / 64`` rounded to the nearest integer, within ``[4, resolution // 2]``."""
    return max(4, min(resolution // 2, round(resolution * 26 / 64)))


@dataclass(frozen=True)
class SyntheticVideos:
    """Videos in memory.

    Args:
        frames: [N, T, H, W, 3] uint8.
        appearance: [N] int64 shape labels (index into SHAPES).
        motion: [N] int64 motion labels (index into MOTIONS).
    """

    frames: np.ndarray
    appearance: np.ndarray
    motion: np.ndarray

    @property
    def combined(self) -> np.ndarray:
        """[N] the combined label ``appearance * len(MOTIONS) + motion``."""
        return self.appearance * len(MOTIONS) + self.motion


def _shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, half: float) -> np.ndarray:
    """Boolean mask of a shape centred at the origin; dx, dy: [H, W] signed toroidal offsets."""
    if shape == "square":
        return (np.abs(dx) <= half * 0.8) & (np.abs(dy) <= half * 0.8)
    if shape == "disc":
        return dx**2 + dy**2 <= half**2
    if shape == "triangle":  # pointing up
        return (dy >= -half) & (dy <= half) & (np.abs(dx) <= (dy + half) / 2)
    if shape == "cross":
        bar = half / 3
        return ((np.abs(dx) <= bar) & (np.abs(dy) <= half)) | ((np.abs(dy) <= bar) & (np.abs(dx) <= half))
    raise ValueError(f"unknown shape {shape!r}; choose from {SHAPES}")


def render_video(spec: SyntheticSpec, appearance: int, motion: int, rng: np.random.Generator) -> np.ndarray:
    """Draw one video.

    Args:
        spec: video shape.
        appearance: index into SHAPES.
        motion: index into MOTIONS.
        rng: draws colours, start positions and speed.

    Returns:
        [T, H, W, 3] uint8.
    """
    n, k = spec.resolution, spec.num_objects
    background = rng.integers(0, 90, size=3)
    colours = rng.integers(140, 256, size=(k, 3))  # with k = 1 the draws of the single-object videos
    starts = rng.integers(0, n, size=(k, 2))
    speed = int(rng.choice(spec.speeds))
    vx, vy = _VELOCITY[MOTIONS[motion]]
    coords = np.arange(n)
    half = spec.object_size / 2
    video = np.empty((spec.num_frames, n, n, 3), dtype=np.uint8)
    for t in range(spec.num_frames):
        moved = t - t % spec.hold  # frames the objects have moved for
        frame = np.broadcast_to(background, (n, n, 3)).copy()
        for (x0, y0), colour in zip(starts, colours, strict=True):
            cx = (x0 + vx * speed * moved) % n
            cy = (y0 + vy * speed * moved) % n
            dx = (coords[None, :] - cx + n // 2) % n - n // 2  # [1, W] signed offset on the torus
            dy = (coords[:, None] - cy + n // 2) % n - n // 2  # [H, 1]
            dx, dy = np.broadcast_arrays(dx, dy)
            frame[_shape_mask(SHAPES[appearance], dx, dy, half)] = colour  # later objects in front
        video[t] = frame
    return video


def _video_rng(seed: int, split: str, i: int) -> np.random.Generator:
    return np.random.default_rng([seed, _SPLITS[split], i])


def _labels(i: int) -> tuple[int, int]:
    """Balanced labels: video i cycles through all (appearance, motion) pairs."""
    return i % len(SHAPES), (i // len(SHAPES)) % len(MOTIONS)


def generate_videos(spec: SyntheticSpec, num_videos: int, seed: int, split: str = "train") -> SyntheticVideos:
    """Generate videos in memory (the same ones `write_synthetic_dataset` encodes).

    Args:
        spec: video shape.
        num_videos: N.
        seed: dataset seed.
        split: "train" or "val" (independent streams).
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {list(_SPLITS)}, got {split!r}")
    frames = np.empty((num_videos, spec.num_frames, spec.resolution, spec.resolution, 3), dtype=np.uint8)
    appearance = np.empty(num_videos, dtype=np.int64)
    motion = np.empty(num_videos, dtype=np.int64)
    for i in range(num_videos):
        appearance[i], motion[i] = _labels(i)
        frames[i] = render_video(spec, int(appearance[i]), int(motion[i]), _video_rng(seed, split, i))
    return SyntheticVideos(frames, appearance, motion)


def encode_mp4(path: str | os.PathLike, frames: np.ndarray, fps: int, lossless: bool = True) -> None:
    """Write frames as an H.264 mp4, deterministically (bit-exact muxing, one encoder thread).

    Args:
        path: output file.
        frames: [T, H, W, 3] uint8 (H and W even).
        fps: frame rate.
        lossless: qp 0 in YUV 4:4:4 (decodes within +-2 of the input); else crf 18 in YUV 4:2:0.
    """
    write_video(
        path,
        frames,
        fps=fps,
        pix_fmt="yuv444p" if lossless else "yuv420p",
        options={"qp": "0", "preset": "veryfast"} if lossless else {"crf": "18", "preset": "veryfast"},
    )


@dataclass(frozen=True)
class SyntheticDatasetFiles:
    """What `write_synthetic_dataset` wrote.

    Args:
        root: the output folder.
        csvs: name -> CSV path, for "train", "val" (combined labels), "train_motion", "train_appearance",
            "val_motion", "val_appearance".
        meta: the JSON file describing the spec and labels.
    """

    root: Path
    csvs: dict[str, Path]
    meta: Path


def write_synthetic_dataset(
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    num_train: int = 320,
    num_val: int = 96,
    spec: SyntheticSpec | None = None,
    overwrite: bool = False,
) -> SyntheticDatasetFiles:
    """Write the synthetic dataset as mp4 files and official-format CSVs.

    Layout: ``train/000000.mp4 ...``, ``val/...``, ``train.csv`` / ``val.csv`` with the combined label
    ``appearance * 4 + motion``, ``{train,val}_motion.csv`` and ``{train,val}_appearance.csv`` with one
    label each, and ``meta.json``. CSV paths are relative to the CSV's folder (our index reader resolves
    them there), so the folder can be moved and the same seed gives the same bytes everywhere.

    Args:
        out_dir: output folder (created; must be empty unless `overwrite`).
        seed: dataset seed.
        num_train: training videos.
        num_val: validation videos.
        spec: video shape.
        overwrite: allow writing into a non-empty folder.
    """
    spec = spec or SyntheticSpec()
    root = Path(out_dir)
    if root.exists() and any(root.iterdir()) and not overwrite:
        raise FileExistsError(f"{root} is not empty; choose another folder or pass overwrite=True")
    csvs: dict[str, Path] = {}
    for split, count in (("train", num_train), ("val", num_val)):
        (root / split).mkdir(parents=True, exist_ok=True)
        lines: dict[str, list[str]] = {split: [], f"{split}_motion": [], f"{split}_appearance": []}
        for i in range(count):
            appearance, motion = _labels(i)
            video = render_video(spec, appearance, motion, _video_rng(seed, split, i))
            rel = f"{split}/{i:06d}.mp4"
            encode_mp4(root / rel, video, spec.fps)
            lines[split].append(f"{rel} {appearance * len(MOTIONS) + motion}")
            lines[f"{split}_motion"].append(f"{rel} {motion}")
            lines[f"{split}_appearance"].append(f"{rel} {appearance}")
        for name, rows in lines.items():
            csvs[name] = root / f"{name}.csv"
            csvs[name].write_text("".join(r + "\n" for r in rows), encoding="utf-8")
    meta = root / "meta.json"
    info = {
        "seed": seed,
        "num_train": num_train,
        "num_val": num_val,
        "spec": asdict(spec),
        "appearance_classes": list(SHAPES),
        "motion_classes": list(MOTIONS),
        "combined_label": "appearance * 4 + motion",
        "recommended_clip": {"num_frames": spec.num_frames, "frame_step": 1},
    }
    meta.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return SyntheticDatasetFiles(root, csvs, meta)
