"""Data throughput: clips/s of ONE worker for decode + sample + augment to 16x224x224.

Generates H.264 mp4 sources (320x240 and 1280x720, 30 fps, x264 defaults: key frame every 250 frames,
B-frames) in a temporary folder, then times in this single process (torch and the decoder on one thread,
as in a DataLoader worker):

- ``ours``: `VideoClipDataset` (seek + decode only the needed frames, RGB only for the 16 kept frames,
  crop on uint8, resize the crop);
- ``ours, shrunk``: the same with frames shrunk during decoding, to 409 (`max_useful_short_side`: the
  smallest crop still has 224 source pixels, so nothing is lost) or to 256 (faster, slightly blurrier);
- ``naive``: decode every frame of the video to RGB, then index and apply the same augmentation.

Usage: ``python benchmarks/data.py [--clips 40] [--seconds 10] [--workers 2]``
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vjepa.data.datasets import VideoClipDataset, collate_samples
from vjepa.data.decode import VideoReader, write_video
from vjepa.data.draws import LOAD_STREAM, DrawKey, draw_rng
from vjepa.data.index import VideoRecord
from vjepa.data.loader import make_loader
from vjepa.data.sampling import ClipSpec, train_clip_indices
from vjepa.data.transforms import CropSpec, max_useful_short_side, train_transform

CLIP = ClipSpec(num_frames=16, frame_step=4)
CROP = CropSpec(resolution=224)


def make_source(path: Path, height: int, width: int, num_frames: int, seed: int) -> None:
    """A textured scene panning slowly, with a little noise: compresses like camera footage."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : height + num_frames, 0 : width + 2 * num_frames].astype(np.float32)
    scene = np.stack([127 + 60 * np.sin(x / p + y / q) for p, q in ((23, 41), (31, 17), (13, 29))], -1)
    scene += rng.normal(0, 12, scene.shape).astype(np.float32)
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for t in range(num_frames):
        frames[t] = np.clip(scene[t : t + height, 2 * t : 2 * t + width], 0, 255)
    write_video(path, frames, fps=30, options={"crf": "23", "preset": "veryfast"})


class Rate:
    """Clips per wall-clock second and per CPU second of this process (the CPU rate is what one worker
    achieves on an otherwise idle core, even when other jobs share the machine)."""

    def __init__(self, num_clips: int) -> None:
        self.num_clips = num_clips

    def __enter__(self) -> Rate:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = self.num_clips / (time.perf_counter() - self.wall)
        self.cpu = self.num_clips / (time.process_time() - self.cpu)


def time_dataset(ds: VideoClipDataset, num_clips: int) -> Rate:
    n = len(ds)
    ds[DrawKey(10_000, 0)]  # warm up
    with Rate(num_clips) as rate:
        for i in range(num_clips):
            ds[DrawKey(i, i % n)]
    return rate


def time_naive(records: list[VideoRecord], num_clips: int) -> Rate:
    with Rate(num_clips) as rate:
        for i in range(num_clips):
            with VideoReader(records[i % len(records)].path) as reader:
                everything = reader.read_all()  # [N, H, W, 3]
            rng = draw_rng(0, i, 0, LOAD_STREAM)
            indices = train_clip_indices(len(everything), CLIP, rng)[0]
            train_transform(everything[indices], CROP, rng)
    return rate


def time_loader(ds: VideoClipDataset, num_clips: int, workers: int) -> Rate:
    stream = make_loader(
        ds,
        batch_size=4,
        collate_fn=collate_samples,
        seed=0,
        num_workers=workers,
        num_samples=num_clips + 8 * workers,
    )
    batches = iter(stream)
    next(batches)  # start-up of the workers is not throughput
    rate = Rate(num_clips + 8 * workers - 4)
    with rate:
        for _ in batches:
            pass
    rate.cpu = float("nan")  # the work happens in the worker processes
    return rate


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(
            line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")
        )
    except (OSError, subprocess.CalledProcessError, StopIteration):
        model = platform.processor() or "unknown CPU"
    return f"{model}, {os.cpu_count()} cores, torch {torch.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=40, help="clips timed per row")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each source video")
    parser.add_argument("--videos", type=int, default=3, help="source videos per resolution")
    parser.add_argument(
        "--workers", type=int, default=0, help="also time a DataLoader with this many workers"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_before = f"{os.getloadavg()[0]:.2f}"
    num_frames = int(args.seconds * 30)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for height, width in ((240, 320), (720, 1280)):
            records = []
            for k in range(args.videos):
                path = Path(tmp) / f"{width}x{height}_{k}.mp4"
                make_source(path, height, width, num_frames, seed=k)
                records.append(VideoRecord(str(path), 0))
            source = f"{width}x{height}"
            ours = VideoClipDataset(records, CLIP, CROP, seed=0)
            rows.append((source, "ours: seek + decode needed frames", time_dataset(ours, args.clips)))
            if height > max_useful_short_side(CROP):
                for side in (max_useful_short_side(CROP), 256):
                    small = VideoClipDataset(records, CLIP, CROP, seed=0, max_short_side=side)
                    name = f"ours, shrunk to short side {side} while decoding"
                    rows.append((source, name, time_dataset(small, args.clips)))
            rows.append(
                (
                    source,
                    "naive: decode every frame, then sample",
                    time_naive(records, max(4, args.clips // 2)),
                )
            )
            if args.workers:
                rows.append(
                    (
                        source,
                        f"ours, DataLoader {args.workers} workers (total)",
                        time_loader(ours, args.clips, args.workers),
                    )
                )
    print(f"machine: {machine()}")
    print(
        f"sources: {args.videos} x {num_frames} frames at 30 fps, H.264 crf 23; clip 16 frames, step 4, crop 224"
    )
    print()
    print(f"load average before: {load_before}, after: {os.getloadavg()[0]:.2f}")
    print()
    print("| source | pipeline | clips/s (wall) | clips per CPU-second |")
    print("|---|---|---|---|")
    for source, name, rate in rows:
        print(f"| {source} | {name} | {rate.wall:.1f} | {rate.cpu:.1f} |")


if __name__ == "__main__":
    main()
