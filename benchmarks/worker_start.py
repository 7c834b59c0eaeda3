"""Worker start-up: seconds from a new DataStream's first ``next()`` to its first batch, per start method.

Our loaders start their DataLoader workers from a fork server (`vjepa.data.workers`) instead of forking the
training process. This prints what that costs against ``fork`` and ``spawn``: the time to the first batch
of a fresh stream with W workers (a loader without persistent workers pays it every epoch; pretraining keeps
its workers and pays it once). The dataset is `VideoClipDataset` on small H.264 files, 8x64x64 clips, batch 4:
the decode is cheap so that the start-up dominates. The fork server starts with the first forkserver loader
of a process; that first round is reported apart.

Usage: ``python benchmarks/worker_start.py [--workers 1 2 4] [--rounds 5]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vjepa.data.datasets import VideoClipDataset, collate_samples
from vjepa.data.decode import write_video
from vjepa.data.index import VideoRecord
from vjepa.data.loader import make_loader
from vjepa.data.sampling import ClipSpec
from vjepa.data.transforms import CropSpec


def first_batch_seconds(ds: VideoClipDataset, workers: int, start: str) -> float:
    stream = make_loader(
        ds, batch_size=4, collate_fn=collate_samples, seed=0, num_workers=workers, worker_start=start
    )
    t0 = time.perf_counter()
    batches = iter(stream)
    next(batches)
    elapsed = time.perf_counter() - t0
    for _ in batches:  # the rest of the epoch, untimed: the workers end normally before the next round
        pass
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--rounds", type=int, default=5, help="fresh streams timed per row (median)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        records = []
        for k in range(4):
            path = Path(tmp) / f"v{k}.mp4"
            write_video(path, rng.integers(0, 256, (40, 64, 64, 3), dtype=np.uint8), fps=10)
            records.append(VideoRecord(str(path), 0))
        ds = VideoClipDataset(records * 16, ClipSpec(8, 2), CropSpec(resolution=64), seed=0)
        first_server = first_batch_seconds(ds, args.workers[0], "forkserver")
        rows = []
        for workers in args.workers:
            for start in ("fork", "forkserver", "spawn"):
                times = [first_batch_seconds(ds, workers, start) for _ in range(args.rounds)]
                rows.append((workers, start, statistics.median(times), min(times), max(times)))
    print(
        f"torch {torch.__version__}; first forkserver stream of the process ({args.workers[0]} workers, "
        f"server start included): {first_server:.2f} s"
    )
    print()
    print("| workers | start method | first batch, median (s) | min | max |")
    print("|---|---|---|---|---|")
    for workers, start, med, lo, hi in rows:
        print(f"| {workers} | {start} | {med:.3f} | {lo:.3f} | {hi:.3f} |")


if __name__ == "__main__":
    main()
