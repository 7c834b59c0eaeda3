"""Masks: invariants of every strategy, the paper's block sizes, seeding, the collator, and the official
fixture's masks regenerated bit for bit."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from vjepa.grid import TokenGrid
from vjepa.masks import (
    LONG_RANGE,
    PAPER_SETTINGS,
    SHORT_RANGE,
    CausalMasks,
    MaskCollator,
    MaskedBatch,
    MaskGenerator,
    MaskPair,
    MultiBlockMasks,
    MultiBlockSetting,
    RandomTubeMasks,
    make_mask_generators,
    pair_from_target,
)

FIXTURE = Path(__file__).parent / "data" / "official_vjepa_small.pt"
GRID_224 = TokenGrid(8, 14, 14)  # 16 frames at 224 px
SETTINGS = {
    "short": SHORT_RANGE,
    "long": LONG_RANGE,
    "short-time": MultiBlockSetting(num_blocks=4, spatial_scale=(0.1, 0.3), temporal_scale=(0.25, 0.6)),
    "future": MultiBlockSetting(num_blocks=2, spatial_scale=(0.2, 0.2), max_temporal_keep=0.5),
}


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def check_pair(pair: MaskPair, batch_size: int, num_tokens: int) -> None:
    """Shapes, dtype, range, strict order and disjointness of one batch of masks."""
    for idx in (pair.context, pair.target):
        assert idx.dtype == torch.int64 and idx.ndim == 2 and idx.shape[0] == batch_size
        assert idx.shape[1] >= 1
        assert int(idx.min()) >= 0 and int(idx.max()) < num_tokens
        assert bool((idx[:, 1:] > idx[:, :-1]).all()), "indices must be strictly ascending"
    both = torch.cat([pair.context, pair.target], dim=1)  # [B, K_ctx + K_tgt]
    assert bool((both.sort(dim=1).values.diff(dim=1) > 0).all()), "context and target overlap"


# ---------------------------------------------------------------- multi-block


@pytest.mark.parametrize("truncation", ["official", "random"])
@pytest.mark.parametrize("name", list(SETTINGS))
def test_multiblock_invariants(name: str, truncation: str) -> None:
    gen = MultiBlockMasks(GRID_224, SETTINGS[name], truncation)
    for seed in range(3):
        check_pair(gen(24, rng(seed)), 24, GRID_224.num_tokens)


@pytest.mark.parametrize("name", list(SETTINGS))
def test_multiblock_before_truncation_covers_all_tokens(name: str) -> None:
    gen = MultiBlockMasks(GRID_224, SETTINGS[name])
    is_target = gen.sample_target(16, rng(1))  # [B, N]
    assert is_target.shape == (16, GRID_224.num_tokens)
    assert is_target.any(axis=1).all() and (~is_target).any(axis=1).all()
    # With B = 1 nothing is truncated: context + target is every token exactly once.
    pair = gen(1, rng(2))
    assert sorted(torch.cat([pair.context[0], pair.target[0]]).tolist()) == list(range(GRID_224.num_tokens))


@pytest.mark.parametrize("setting", PAPER_SETTINGS)
def test_paper_blocks_are_full_tubes(setting: MultiBlockSetting) -> None:
    is_target = MultiBlockMasks(GRID_224, setting).sample_target(16, rng(3))
    frames = is_target.reshape(16, GRID_224.depth, GRID_224.tokens_per_frame)  # [B, T', H'W']
    assert (frames == frames[:, :1]).all()


def test_max_temporal_keep_makes_late_frames_targets() -> None:
    gen = MultiBlockMasks(GRID_224, SETTINGS["future"])
    assert gen.context_depth == 4
    pair = gen(8, rng(4))
    assert int(pair.context.max()) < 4 * GRID_224.tokens_per_frame
    frames = gen.sample_target(8, rng(4)).reshape(8, 8, -1)
    assert frames[:, 4:].all()


def test_equal_k_and_official_truncation_keeps_lowest() -> None:
    gen = MultiBlockMasks(GRID_224, SHORT_RANGE, "official")
    is_target = gen.sample_target(32, rng(5))
    pair = pair_from_target(is_target, "official")
    assert pair.context.shape[0] == pair.target.shape[0] == 32
    assert pair.context.shape[1] == int((~is_target).sum(axis=1).min())
    assert pair.target.shape[1] == int(is_target.sum(axis=1).min())
    for b in range(32):
        k = pair.context.shape[1]
        assert pair.context[b].tolist() == np.flatnonzero(~is_target[b])[:k].tolist()
        k = pair.target.shape[1]
        assert pair.target[b].tolist() == np.flatnonzero(is_target[b])[:k].tolist()


def test_random_truncation_is_an_unbiased_subset() -> None:
    grid = GRID_224
    gen = MultiBlockMasks(grid, SHORT_RANGE)
    official_means, random_means = [], []
    for seed in range(20):
        is_target = gen.sample_target(32, rng(seed))
        official = pair_from_target(is_target, "official")
        random = pair_from_target(is_target, "random", rng(1000 + seed))
        assert random.context.shape == official.context.shape
        assert random.target.shape == official.target.shape
        for b in range(32):  # a subset of the sample's own sets
            assert bool(torch.from_numpy(~is_target[b])[random.context[b]].all())
            assert bool(torch.from_numpy(is_target[b])[random.target[b]].all())
        # Time step of each kept context token, against the mean time step of the untruncated context.
        full_mean = np.mean([(np.flatnonzero(~row) // grid.tokens_per_frame).mean() for row in is_target])
        official_means.append((official.context // grid.tokens_per_frame).double().mean() - full_mean)
        random_means.append((random.context // grid.tokens_per_frame).double().mean() - full_mean)
    # The untruncated context of tube masks is spread evenly over the 8 time steps (mean 3.5).
    assert abs(float(np.mean(random_means))) < 0.05
    assert float(np.mean(official_means)) < -0.5  # the official mode favours the first frames


def test_max_keep_caps_the_context() -> None:
    setting = MultiBlockSetting(num_blocks=8, spatial_scale=(0.15, 0.15), max_keep=100)
    for truncation in ("official", "random"):
        pair = MultiBlockMasks(GRID_224, setting, truncation)(16, rng(6))
        assert pair.context.shape[1] == 100
        check_pair(pair, 16, GRID_224.num_tokens)


def test_same_seed_same_masks_different_seed_different() -> None:
    for truncation in ("official", "random"):
        gen = MultiBlockMasks(GRID_224, SHORT_RANGE, truncation)
        a, b, c = gen(8, rng(7)), gen(8, rng(7)), gen(8, rng(8))
        assert torch.equal(a.context, b.context) and torch.equal(a.target, b.target)
        assert not (a.context.shape == c.context.shape and torch.equal(a.context, c.context))


def block_sizes(setting: MultiBlockSetting) -> set[tuple[int, int]]:
    gen = MultiBlockMasks(GRID_224, setting)
    sizes = {gen.block_size(0.0, 0.0, u)[1:] for u in np.linspace(0.0, 1.0, 20001)}
    assert {gen.block_size(0.0, 0.0, u)[0] for u in (0.0, 0.5, 1.0)} == {8}
    return sizes


def test_block_sizes_at_224() -> None:
    assert block_sizes(SHORT_RANGE) == {(5, 5), (5, 6), (6, 4), (6, 5), (7, 4)}
    assert block_sizes(LONG_RANGE) == {
        (10, 13), (10, 14), (11, 12), (11, 13), (12, 11), (12, 12), (13, 10), (13, 11), (14, 10),
    }  # fmt: skip
    # The spec's worked values: n=29 at scale 0.15, n=137 at 0.7; round() rounds halves to even.
    short = MultiBlockMasks(GRID_224, SHORT_RANGE)
    assert short.block_size(0, 0, 0.0) == (8, 5, 6)  # a = 0.75
    assert short.block_size(0, 0, 1 / 3) == (8, 5, 5)  # a = 1
    assert short.block_size(0, 0, 1.0) == (8, 7, 4)  # a = 1.5
    assert MultiBlockMasks(GRID_224, LONG_RANGE).block_size(0, 0, 1 / 3) == (8, 12, 12)
    assert MultiBlockMasks(TokenGrid(8, 24, 24), SHORT_RANGE).block_size(0, 0, 1 / 3) == (8, 9, 9)


def test_observed_block_sizes_are_in_the_enumerated_set() -> None:
    allowed = block_sizes(SHORT_RANGE)
    gen = MultiBlockMasks(GRID_224, SHORT_RANGE)
    for seed in range(20):
        u = rng(seed).random(3)
        assert gen.block_size(*u)[1:] in allowed


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"num_blocks": 0}, "num_blocks"),
        ({"spatial_scale": (0.0, 0.1)}, "spatial_scale"),
        ({"spatial_scale": (0.5, 0.2)}, "spatial_scale"),
        ({"spatial_scale": (0.1,)}, "spatial_scale"),
        ({"temporal_scale": (0.5, 1.5)}, "temporal_scale"),
        ({"aspect_ratio": (-1.0, 1.0)}, "aspect_ratio"),
        ({"max_temporal_keep": 0.0}, "max_temporal_keep"),
        ({"max_keep": 0}, "max_keep"),
    ],
)
def test_bad_settings_raise(changes: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        MultiBlockSetting(**changes)


def test_settings_accept_lists_and_bad_generators_raise() -> None:
    setting = MultiBlockSetting(spatial_scale=[0.15, 0.15], aspect_ratio=[0.75, 1.5])  # as read from YAML
    assert setting == SHORT_RANGE
    with pytest.raises(ValueError, match="truncation"):
        MultiBlockMasks(GRID_224, SHORT_RANGE, "lowest")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty blocks"):
        MultiBlockMasks(TokenGrid(2, 2, 2), MultiBlockSetting(spatial_scale=(0.01, 0.01)))
    covers_all = MultiBlockSetting(num_blocks=1, spatial_scale=(1.0, 1.0), aspect_ratio=(1.0, 1.0))
    gen = MultiBlockMasks(TokenGrid(2, 2, 2), covers_all)
    with pytest.raises(RuntimeError, match="covered every token"):
        gen(2, rng(0))
    with pytest.raises(RuntimeError, match="covered every token"):
        gen.sample_official(2, torch.Generator().manual_seed(0), 0)


def test_official_fixture_masks_bit_exact() -> None:
    fx = torch.load(FIXTURE, weights_only=True)
    grid = TokenGrid(4, 4, 4)
    assert fx["config"]["grid"]["num_tokens"] == grid.num_tokens
    settings = [MultiBlockSetting(**cfg) for cfg in fx["config"]["mask"]]
    assert tuple(settings) == PAPER_SETTINGS
    generator = torch.Generator().manual_seed(fx["config"]["seeds"]["mask"])  # shared, short-range first
    for i, setting in enumerate(settings):
        pair = MultiBlockMasks(grid, setting).sample_official(2, generator, call_index=0)
        assert torch.equal(pair.context, fx["masks_enc"][i])
        assert torch.equal(pair.target, fx["masks_pred"][i])


# ---------------------------------------------------------------- ablations


def test_random_tube() -> None:
    gen = RandomTubeMasks(GRID_224, ratio=0.9)
    assert gen.num_keep == 19
    pair = gen(8, rng(9))
    assert pair.context.shape == (8, 19 * 8) and pair.target.shape == (8, (196 - 19) * 8)
    check_pair(pair, 8, GRID_224.num_tokens)
    frames = pair.context.reshape(8, 8, 19)  # [B, T', kept]: the same positions in every time step
    positions = frames % GRID_224.tokens_per_frame
    assert torch.equal(positions, positions[:, :1].expand_as(positions))
    assert not torch.equal(positions[0, 0], positions[1, 0])
    assert torch.equal(gen(8, rng(9)).context, pair.context)
    with pytest.raises(ValueError, match="ratio"):
        RandomTubeMasks(GRID_224, ratio=1.0)


def test_causal() -> None:
    gen = CausalMasks(GRID_224, context_fraction=0.5)
    pair = gen(4, rng(0))
    split = 4 * GRID_224.tokens_per_frame
    assert torch.equal(pair.context, torch.arange(split).expand(4, -1))
    assert torch.equal(pair.target, torch.arange(split, GRID_224.num_tokens).expand(4, -1))
    assert CausalMasks(GRID_224, 0.01).context_depth == 1
    with pytest.raises(ValueError, match="no time step to predict"):
        CausalMasks(TokenGrid(1, 4, 4), 0.5)
    with pytest.raises(ValueError, match="context_fraction"):
        CausalMasks(GRID_224, 1.0)


def test_every_strategy_is_a_mask_generator() -> None:
    for kind in ("multiblock", "random_tube", "causal"):
        gens = make_mask_generators(kind, GRID_224)
        assert all(isinstance(g, MaskGenerator) for g in gens)
    assert [g.setting for g in make_mask_generators("multiblock", GRID_224)] == list(PAPER_SETTINGS)
    assert [g.ratio for g in make_mask_generators("random_tube", GRID_224, settings=[0.9, 0.75])] == [
        0.9,
        0.75,
    ]
    assert make_mask_generators("multiblock", GRID_224, truncation="random")[0].truncation == "random"
    with pytest.raises(ValueError, match="mask kind"):
        make_mask_generators("tubes", GRID_224)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="MultiBlockSetting"):
        make_mask_generators("multiblock", GRID_224, settings=[0.9])
    with pytest.raises(TypeError, match="ratios"):
        make_mask_generators("random_tube", GRID_224, settings=[SHORT_RANGE])


# ---------------------------------------------------------------- collator


@dataclass
class Item:
    clip: torch.Tensor  # [3, T, H, W] or [C, 3, T, H, W]
    label: int
    draw: int


def items(batch_size: int, first_draw: int, clips: int | None = None) -> list[Item]:
    shape = (3, 4, 64, 64) if clips is None else (clips, 3, 4, 64, 64)
    return [Item(torch.full(shape, float(first_draw + i)), i, first_draw + i) for i in range(batch_size)]


def test_collator_shapes() -> None:
    grid = TokenGrid.from_clip(4, 64, 64, tubelet_size=2, patch_size=16)
    collate = MaskCollator(make_mask_generators("multiblock", grid), seed=0)
    batch = collate(items(3, 0))
    assert isinstance(batch, MaskedBatch)
    assert batch.clips.shape == (3, 3, 4, 64, 64) and batch.clips.dtype == torch.float32
    assert batch.labels.tolist() == [0, 1, 2] and batch.labels.dtype == torch.int64
    assert batch.draws.tolist() == [0, 1, 2] and batch.draws.dtype == torch.int64
    assert len(batch.masks) == 2
    for pair in batch.masks:
        check_pair(pair, 3, grid.num_tokens)
    moved = batch.to("cpu")
    assert torch.equal(moved.clips, batch.clips) and len(moved.masks) == 2
    if torch.cuda.is_available():
        assert batch.pin_memory().clips.is_pinned()


def test_collator_multi_clip_samples_share_masks() -> None:
    grid = TokenGrid.from_clip(4, 64, 64, tubelet_size=2, patch_size=16)
    collate = MaskCollator(make_mask_generators("multiblock", grid), seed=0)
    batch = collate(items(3, 6, clips=2))
    assert batch.clips.shape == (6, 3, 4, 64, 64)
    assert batch.clips[:, 0, 0, 0, 0].tolist() == [6, 6, 7, 7, 8, 8]  # sample-major
    assert batch.labels.tolist() == [0, 0, 1, 1, 2, 2] and batch.draws.tolist() == [6, 7, 8]
    single = collate(items(3, 6))
    for pair, ref in zip(batch.masks, single.masks, strict=True):
        assert torch.equal(pair.context, ref.context.repeat_interleave(2, dim=0))
        assert torch.equal(pair.target, ref.target.repeat_interleave(2, dim=0))


def test_collator_masks_depend_only_on_seed_and_draw() -> None:
    collate = MaskCollator(make_mask_generators("multiblock", GRID_224), seed=5)
    grid_items = lambda first: [Item(torch.zeros(3, 16, 224, 224), 0, first + i) for i in range(2)]  # noqa: E731
    a, b = collate(grid_items(10)), collate(grid_items(10))
    for x, y in zip(a.masks, b.masks, strict=True):
        assert torch.equal(x.context, y.context) and torch.equal(x.target, y.target)
    direct = collate.masks(2, 10)  # what a resumed run recomputes from the draw position
    assert all(torch.equal(x.context, y.context) for x, y in zip(a.masks, direct, strict=True))
    c = collate(grid_items(12))
    other_seed = MaskCollator(make_mask_generators("multiblock", GRID_224), seed=6)(grid_items(10))
    for other in (c, other_seed):
        assert any(
            x.context.shape != y.context.shape or not torch.equal(x.context, y.context)
            for x, y in zip(a.masks, other.masks, strict=True)
        )


def test_collator_rejects_bad_input() -> None:
    collate = MaskCollator(make_mask_generators("causal", TokenGrid(2, 2, 2)), seed=0)
    with pytest.raises(ValueError, match="empty"):
        collate([])
    with pytest.raises(ValueError, match="one shape"):
        collate([Item(torch.zeros(3, 4, 32, 32), 0, 0), Item(torch.zeros(3, 4, 16, 16), 0, 1)])
    with pytest.raises(ValueError, match="token grid"):
        MaskCollator([CausalMasks(TokenGrid(2, 2, 2)), CausalMasks(TokenGrid(4, 2, 2))], seed=0)


def test_random_subsets_are_uniform() -> None:
    from vjepa.masks.base import _random_offsets

    offsets = _random_offsets(np.array([10] * 20000 + [4]), 3, rng(11))  # [B, 3]
    assert offsets.shape == (20001, 3) and (np.diff(offsets, axis=1) > 0).all()
    assert set(offsets[-1].tolist()) <= {0, 1, 2, 3}
    frequency = np.bincount(offsets[:-1].ravel(), minlength=10) / 20000  # each slot: 3/10
    assert np.abs(frequency - 0.3).max() < 0.015
