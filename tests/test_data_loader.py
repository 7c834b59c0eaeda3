"""Sampler and stream: distributed partitioning, distinct streams per rank, exact mid-epoch resume."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from vjepa.data.datasets import VideoClipDataset, collate_samples
from vjepa.data.draws import DrawKey, as_draw_key, draw_rng
from vjepa.data.index import VideoRecord
from vjepa.data.loader import DataStream, DrawSampler, make_loader
from vjepa.data.sampling import ClipSpec
from vjepa.data.transforms import CropSpec


@dataclass
class Tiny:
    clip: torch.Tensor
    label: int
    draw: int


class RandomByDraw(Dataset):
    """A dataset whose sample is a random number seeded by the draw (like our video datasets)."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n, self.seed = n, seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key: DrawKey) -> Tiny:
        k = as_draw_key(key)
        value = draw_rng(self.seed, k.draw, 0, 1).uniform()
        return Tiny(torch.tensor([float(k.index), value]), k.index, k.draw)


def stack(samples: list[Tiny]) -> torch.Tensor:
    return torch.stack([s.clip for s in samples])  # [B, 2]: record index, random value


def test_ranks_partition_each_epoch_like_distributed_sampler() -> None:
    samplers = [DrawSampler(10, seed=1, rank=r, world_size=3) for r in range(3)]
    keys = [list(s) for s in samplers]
    assert all(len(k) == 4 for k in keys)  # ceil(10 / 3), padded
    draws = sorted(k.draw for ks in keys for k in ks)
    assert draws == list(range(12))  # every position once, over all ranks
    order = samplers[0].epoch_order(0)
    assert sorted(order[:10]) == list(range(10)) and order[10:] == order[:2]
    assert [k.padded for ks in keys for k in ks].count(True) == 2
    for s in samplers:
        s.set_epoch(1)
    assert samplers[0].epoch_order(1) != order
    assert min(k.draw for s in samplers for k in s) == 12  # draws continue across epochs
    dropped = DrawSampler(10, seed=1, rank=0, world_size=3, drop_last=True)
    assert len(dropped) == 3 and not any(k.padded for k in dropped)


def test_eval_order_is_sequential() -> None:
    keys = list(DrawSampler(5, shuffle=False, rank=1, world_size=2))
    assert [(k.index, k.padded) for k in keys] == [(1, False), (3, False), (0, True)]


def test_two_ranks_get_different_augmentations(tmp_path) -> None:
    from data_helpers import random_frames, write_lossless

    path = write_lossless(tmp_path / "v.mp4", random_frames(40, 48, 64))
    ds = VideoClipDataset([VideoRecord(str(path), 0)] * 2, ClipSpec(8, 2), CropSpec(resolution=32), seed=0)
    clips = []
    for rank in range(2):
        stream = make_loader(ds, batch_size=1, collate_fn=collate_samples, seed=0, rank=rank, world_size=2)
        batch = next(iter(stream))
        clips.append(batch.clips[0])
        assert batch.draws.tolist() == [rank]
    assert not torch.equal(clips[0], clips[1])  # same file and seed, different draws


def run(stream: DataStream, num_batches: int) -> list[torch.Tensor]:
    out = []
    for batch in stream.batches():
        out.append(batch)
        if len(out) == num_batches:
            break
    return out


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_mid_epoch_gives_the_same_remaining_batches(workers: int) -> None:
    ds = RandomByDraw(23)

    def new_stream() -> DataStream:
        return make_loader(
            ds, batch_size=4, collate_fn=stack, seed=7, num_workers=workers, rank=1, world_size=2
        )

    reference = run(new_stream(), 7)  # 2 full epochs (2 batches of 4 out of 12 per rank) and more
    first = new_stream()
    head = run(first, 3)
    state = first.state_dict()
    assert (state["epoch"], state["batches_done"]) == (1, 1)
    resumed = new_stream()
    resumed.load_state_dict(state)
    tail = run(resumed, 4)
    for a, b in zip(head + tail, reference, strict=True):
        assert torch.equal(a, b)


def test_resume_refuses_a_different_setup() -> None:
    ds = RandomByDraw(20)
    state = make_loader(ds, batch_size=4, collate_fn=stack, seed=0).state_dict()
    other = make_loader(ds, batch_size=5, collate_fn=stack, seed=0)
    with pytest.raises(ValueError, match="batch_size"):
        other.load_state_dict(state)


def test_weighted_sampling_is_with_replacement_and_seeded() -> None:
    w = np.array([0.5] + [0.5 / 99] * 99)
    keys = [k.index for k in DrawSampler(100, weights=w, num_samples=4000, seed=3, rank=0, world_size=1)]
    assert 0.45 < keys.count(0) / 4000 < 0.55
    again = [k.index for k in DrawSampler(100, weights=w, num_samples=4000, seed=3, rank=0, world_size=1)]
    assert keys == again
    with pytest.raises(ValueError, match="shuffle"):
        DrawSampler(100, weights=w, shuffle=False)


def test_worker_global_rngs_differ_per_worker_and_rank() -> None:
    from vjepa.data.loader import _WorkerSeeder

    values = set()
    np_state, py_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng():
        for rank in range(2):
            for worker in range(2):
                _WorkerSeeder(0, rank)(worker)
                values.add((float(torch.rand(1)), float(np.random.rand()), random.random()))
    np.random.set_state(np_state)
    random.setstate(py_state)
    assert len(values) == 4


def test_rank_and_world_size_come_from_the_process_group(tmp_path) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    try:
        sampler = DrawSampler(10, seed=0)
        assert (sampler.rank, sampler.world_size) == (0, 1)
        assert (
            DrawSampler(10, rank=1, world_size=2).rank,
            DrawSampler(10, rank=1, world_size=2).world_size,
        ) == (1, 2)
    finally:
        dist.destroy_process_group()
