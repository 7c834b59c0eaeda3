"""Probe pieces on in-memory tensors: views and segments, the feature cache, schedules, sharding, grids of
heads trained in one pass, trained / not-trained heads and the selection of the reported one, metrics, k-NN."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import get_args

import numpy as np
import pytest
import torch

from vjepa.errors import InvalidArgument
from vjepa.models import VideoEncoder
from vjepa.models.registry import EncoderConfig
from vjepa.probe.attentive import AttentiveClassifier
from vjepa.probe.caching import build_cache
from vjepa.probe.config import OptimizationSection
from vjepa.probe.config import Readout as ReadoutKind
from vjepa.probe.evaluation import predict
from vjepa.probe.features import CacheError, encode_views, open_cache, token_set_shape
from vjepa.probe.heads import AttentiveGrid, make_grid
from vjepa.probe.knn import KNNClassifier
from vjepa.probe.metrics import classification_metrics, save_confusion_png
from vjepa.probe.readouts import READOUTS, fit_knn, fit_probes
from vjepa.probe.selection import HeadKeeper, SplitScores, select_head, trained_threshold
from vjepa.probe.sources import CachedFeatures, FeatureBatch, OnlineFeatures, epoch_order
from vjepa.probe.training import (
    cosine_value,
    grid_optimizer,
    planned_epochs,
    set_schedule,
    steps_per_epoch,
    train_grid,
    view_scores,
)
from vjepa.runtime import Runtime, share

CPU = Runtime(torch.device("cpu"))


def tiny_encoder(seed: int = 0) -> VideoEncoder:
    torch.manual_seed(seed)
    cfg = EncoderConfig(embed_dim=32, depth=2, num_heads=4, num_frames=4, resolution=32)
    return VideoEncoder(cfg).eval().requires_grad_(False)


@dataclass
class Rec:
    path: str
    label: int


@dataclass
class Sample:
    clip: torch.Tensor
    label: int
    counted: bool = True


class ClipSet(torch.utils.data.Dataset):
    """Random clips [S, V, 3, T, H, W] with labels, shaped like the data layer's eval samples."""

    def __init__(self, n: int, segments: int, views: int, classes: int = 3, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.clips = torch.randn(n, segments, views, 3, 4, 32, 32, generator=g)
        self.records = [Rec(f"v{i}.mp4", i % classes) for i in range(n)]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> Sample:
        return Sample(self.clips[i], self.records[i].label)


def test_encode_views_concatenates_segments_per_view():
    enc = tiny_encoder()
    clips = torch.randn(2, 3, 2, 3, 4, 32, 32)  # [B, S=3, V=2, 3, T, H, W]
    tokens = encode_views(enc, clips)
    n = enc.grid_for(clips[0, 0]).num_tokens
    assert tokens.shape == (2, 2, 3 * n, 32)
    for v in range(2):
        expected = torch.cat([enc(clips[:, s, v]) for s in range(3)], dim=1)  # segments in time order
        torch.testing.assert_close(tokens[:, v], expected, atol=1e-5, rtol=1e-5)
    sep = encode_views(enc, clips, segments="separate")
    assert sep.shape == (2, 6, n, 32)
    torch.testing.assert_close(sep[:, 1 * 2 + 0], enc(clips[:, 1, 0]), atol=1e-5, rtol=1e-5)
    assert token_set_shape(3, 2, n, "concat") == (2, 3 * n)
    assert token_set_shape(3, 2, n, "separate") == (6, n)
    assert not tokens.requires_grad


def test_cached_and_uncached_give_the_same_predictions(tmp_path):
    enc = tiny_encoder()
    data = ClipSet(10, segments=2, views=3)
    online = OnlineFeatures(enc, data)
    torch.manual_seed(0)
    probe = AttentiveClassifier(32, 4, 3).eval()
    v, n = token_set_shape(2, 3, enc.grid_for(data.clips[0, 0]).num_tokens, "concat")
    pinned = {"encoder": "abc", "clip": {"segments": 2}}
    cache = build_cache(
        tmp_path / "val",
        online,
        shape=(10, v, n, 32),
        pinned=pinned,
        info={},
        batch_size=4,
        dtype="float32",
        runtime=CPU,
    )
    cached = CachedFeatures(cache)

    grid = make_grid(probe, 1).eval()

    def score(t):
        return view_scores(grid, t, "fp32")[1]

    a = predict(score, online, batch_size=3, runtime=CPU)
    b = predict(score, cached, batch_size=4, runtime=CPU)
    assert torch.equal(a.index, torch.arange(10)) and torch.equal(a.labels, b.labels)
    torch.testing.assert_close(a.scores[0], b.scores[0], atol=1e-5, rtol=1e-5)
    assert torch.equal(a.scores[0].argmax(1), b.scores[0].argmax(1))
    # the mean of softmaxes over the 3 views
    tokens = encode_views(enc, data.clips[:2])
    expected = torch.stack([probe(tokens[:, k]).softmax(-1) for k in range(3)]).mean(0)
    torch.testing.assert_close(a.scores[0][:2], expected, atol=1e-5, rtol=1e-5)


def test_stale_or_unfinished_cache(tmp_path):
    enc = tiny_encoder()
    data = ClipSet(4, 1, 1)
    online = OnlineFeatures(enc, data)
    pinned = {"encoder": "abc", "dataset": {"videos": "r1"}}
    build_cache(
        tmp_path / "c",
        online,
        shape=(4, 1, 8, 32),
        pinned=pinned,
        info={},
        batch_size=2,
        dtype="float16",
        runtime=CPU,
    )
    assert open_cache(tmp_path / "c", pinned, online.labels) is not None
    with pytest.raises(CacheError, match=r"dataset\.videos: cache has 'r1', this run needs 'r2'"):
        open_cache(tmp_path / "c", {"encoder": "abc", "dataset": {"videos": "r2"}}, online.labels)
    with pytest.raises(CacheError, match="encoder"):
        open_cache(tmp_path / "c", {"encoder": "xyz", "dataset": {"videos": "r1"}}, online.labels)
    with pytest.raises(CacheError, match="outside this run's 3"):  # an index shorter than the cache's
        open_cache(tmp_path / "c", pinned, online.labels[:3])
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    (tmp_path / "c" / "manifest.json").write_text(json.dumps({**manifest, "version": 1}))
    with pytest.raises(CacheError, match=r"older vjepa \(version 1.*cache\.overwrite=true"):
        open_cache(tmp_path / "c", pinned, online.labels)
    (tmp_path / "c" / "manifest.json").unlink()  # an interrupted build leaves no manifest
    assert open_cache(tmp_path / "c", pinned, online.labels) is None


@dataclass
class Replaced(Sample):
    index: int = 0  # the record whose video this sample holds


class ReplacingClipSet(ClipSet):
    """Sample 1's file is bad: it holds record 3's video and label (as the data layer's replacement does)."""

    def __getitem__(self, i: int) -> Replaced:
        j = 3 if i == 1 else i
        return Replaced(self.clips[j], self.records[j].label, counted=i != 1, index=j)


def test_cache_keeps_videos_not_labels(tmp_path):
    """A cache depends on the videos only: a run with other labels for the same videos reads it, each row with
    that run's label of the video the row holds (a replaced file's row: the replacement's label)."""
    enc = tiny_encoder()
    data = ReplacingClipSet(6, 1, 1)
    online = OnlineFeatures(enc, data)
    pinned = {"encoder": "abc", "dataset": {"videos": "v"}}
    cache = build_cache(
        tmp_path / "c", online, shape=(6, 1, 8, 32), pinned=pinned, info={}, batch_size=4, dtype="float32",
        runtime=CPU,
    )  # fmt: skip
    assert np.load(tmp_path / "c" / "sources.npy").tolist() == [0, 3, 2, 3, 4, 5]
    assert cache.labels.tolist() == [0, 0, 2, 0, 1, 2]  # ClipSet: record i has label i % 3
    assert cache.counted.tolist() == [True, False, True, True, True, True]
    other = np.array([5, 4, 3, 2, 1, 0])  # another label set for the same six videos
    reread = CachedFeatures(open_cache(tmp_path / "c", pinned, other))
    assert reread.labels.tolist() == [5, 2, 3, 2, 1, 0]
    batch = next(reread.batches(np.arange(6), 6, 0))
    assert batch.labels.tolist() == [5, 2, 3, 2, 1, 0]
    fresh = next(online.batches(np.arange(6), 6, 0))
    torch.testing.assert_close(batch.tokens, fresh.tokens)
    assert fresh.sources.tolist() == [0, 3, 2, 3, 4, 5]


def test_schedules_follow_the_official_recipe():
    assert cosine_value(1e-3, 0.0, 0, 100) == pytest.approx(1e-3)
    assert cosine_value(1e-3, 0.0, 50, 100) == pytest.approx(5e-4)
    assert cosine_value(1e-3, 0.0, 100, 100) == pytest.approx(0.0)
    assert cosine_value(0.01, 1e-6, 100, 100) == pytest.approx(1e-6)
    assert cosine_value(1e-3, 0.0, 1, 100) == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi / 100)))


def test_weight_decay_groups_are_the_official_ones():
    grid = AttentiveGrid(AttentiveClassifier(32, 4, 3), 2)
    opt = grid_optimizer(grid)
    assert len(opt.param_groups) == 4
    set_schedule(
        opt, torch.tensor([1e-3, 2e-3], dtype=torch.float64), torch.tensor([0.05, 0.5], dtype=torch.float64)
    )
    decayed, excluded = opt.param_groups[2:]  # head 1
    assert decayed["lr"] == excluded["lr"] == 2e-3
    assert decayed["weight_decay"] == 0.5 and excluded["weight_decay"] == 0.0
    head = grid.heads[1]
    assert any(p is head.pooler.query_tokens for p in decayed["params"])
    assert all(p.ndim == 1 for p in excluded["params"])
    assert len(decayed["params"]) + len(excluded["params"]) == len(list(head.parameters()))


def test_eval_sharding_counts_every_sample_once_and_training_shares_are_equal():
    for n, w in ((10, 3), (7, 2), (2, 4)):  # evaluation shares may be empty
        shares = [np.asarray(share(n, r, w), dtype=np.int64) for r in range(w)]
        assert sorted(np.concatenate(shares).tolist()) == list(range(n))
    idx = np.arange(11)
    orders = [epoch_order(idx, 0, 2, r, 3) for r in range(3)]
    assert {len(o) for o in orders} == {3}
    assert len(set(np.concatenate(orders).tolist())) == 9
    assert not np.array_equal(epoch_order(idx, 0, 0, 0, 1), epoch_order(idx, 0, 1, 0, 1))
    with pytest.raises(InvalidArgument, match="cannot be shared"):
        epoch_order(np.arange(2), 0, 0, 0, 4)


class Memory:
    """Tokens in memory that count the batches read."""

    def __init__(self, tokens, labels):
        self.tokens, self.label_tensor = tokens, labels
        self.labels = labels.numpy()
        self.reads = 0

    def __len__(self):
        return len(self.labels)

    def batches(self, indices, batch_size, epoch):
        for s in range(0, len(indices), batch_size):
            i = torch.as_tensor(indices[s : s + batch_size])
            self.reads += 1
            yield FeatureBatch(i, self.tokens[i], self.label_tensor[i], torch.ones(len(i), dtype=torch.bool))


def train(src, settings, epochs=4, mode="last"):
    """A grid trained on ``src`` with the keeper following it; returns the grid and the kept epochs."""
    torch.manual_seed(0)
    grid = make_grid(AttentiveClassifier(16, 2, 3), len(settings))
    keeper = HeadKeeper(grid, trained_threshold(src.labels), mode)
    lrs = [s[0] for s in settings]
    opt = OptimizationSection(epochs=epochs, batch_size=10, lr=lrs, weight_decay=[0.01], min_steps=0)

    def after(record):
        grid.eval()
        preds = predict(lambda t: view_scores(grid, t, "fp32")[1], src, 16, CPU)
        grid.train()
        keeper.update(
            record.epoch, record.train_loss, record.train_top1, SplitScores.of(preds.scores, preds.labels)
        )
        return False

    train_grid(grid, settings, src, np.arange(len(src)), opt, after, seed=0, precision="fp32", runtime=CPU)
    keeper.restore()
    return grid.eval(), keeper.kept


def test_several_settings_train_in_one_pass_and_learn():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(60) % 3
    tokens = torch.randn(60, 2, 6, 16, generator=g)  # [M, V, N, D]
    tokens[..., :3] += 3 * torch.nn.functional.one_hot(labels, 3)[:, None, None, :].float()
    src = Memory(tokens, labels)
    grid, kept = train(src, [(1e-2, 0.01), (1e-6, 0.01)])
    assert (
        src.reads == 4 * 6 + 4 * 4
    )  # one read per training batch, shared by both heads; one scoring pass per epoch
    assert kept[0].trained and kept[0].train_top1 > 90 and kept[0].epoch == 4
    assert not kept[1].trained and kept[1].train_top1 < trained_threshold(
        src.labels
    )  # lr 1e-6: it cannot move
    assert select_head(kept) == 0
    preds = predict(lambda t: view_scores(grid, t, "fp32")[1], src, 16, CPU)
    assert classification_metrics(preds.scores[0], preds.labels, 3).top1 > 90


def test_labels_the_features_cannot_explain_are_not_trained():
    labels = torch.arange(60) % 3
    tokens = torch.ones(60, 1, 6, 16)  # every sample has the same features
    src = Memory(tokens, labels)
    _, kept = train(src, [(1e-2, 0.01), (1e-3, 0.01)], mode="best")
    assert trained_threshold(src.labels) == pytest.approx(100 / 3 + 3 * 100 * math.sqrt(2 / 9 / 60))
    assert all(not k.trained for k in kept) and all(k.train_top1 <= 40 for k in kept)
    assert select_head(kept) is None


def test_small_training_sets_get_more_epochs_to_reach_min_steps():
    opt = OptimizationSection(epochs=20, batch_size=16, min_steps=500)
    assert steps_per_epoch(opt, 408, 1) == 26 and planned_epochs(opt, 408, 1) == 20  # 520 steps already
    assert steps_per_epoch(opt, 41, 1) == 3 and planned_epochs(opt, 41, 1) == 167
    assert planned_epochs(opt, 41, 2) == 250  # 20 samples per rank: 2 steps per epoch
    assert planned_epochs(OptimizationSection(epochs=20, min_steps=0), 41, 1) == 20


def test_the_best_epoch_is_kept_only_among_trained_epochs():
    grid = AttentiveGrid(AttentiveClassifier(8, 2, 2), 1)
    keeper = HeadKeeper(grid, threshold=60.0, mode="best")
    rows = [(1, 55.0, 70.0), (2, 80.0, 65.0), (3, 90.0, 75.0), (4, 95.0, 72.0)]  # epoch, train, selection
    for epoch, train_top1, sel in rows:
        with torch.no_grad():
            grid.heads[0].linear.bias.fill_(epoch)
        keeper.update(
            epoch,
            torch.tensor([0.1]),
            torch.tensor([train_top1]),
            SplitScores(torch.tensor([sel]), torch.tensor([0.5])),
        )
    keeper.restore()
    assert (
        keeper.kept[0].epoch == 3 and keeper.kept[0].selection_top1 == 75.0
    )  # epoch 1 had the best selection, untrained
    assert torch.all(grid.heads[0].linear.bias == 3)


def test_metrics_and_confusion_png(tmp_path):
    scores = torch.tensor(
        [[0.7, 0.2, 0.1, 0.0], [0.1, 0.2, 0.3, 0.4], [0.0, 0.9, 0.1, 0.0], [0.3, 0.3, 0.4, 0.0]]
    )
    labels = torch.tensor([0, 1, 1, 0])
    m = classification_metrics(scores, labels, 4)
    assert m.top1 == 50.0 and m.num_samples == 4
    assert m.confusion == [[1, 0, 1, 0], [0, 1, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert m.per_class == [50.0, 50.0, None, None] and m.mean_per_class == 50.0
    # top-5 with 4 classes is top-4: always right
    assert m.top5 == 100.0
    m2 = classification_metrics(scores, labels, 4)
    assert m2.to_dict()["confusion"] == m.confusion
    save_confusion_png(m.confusion, tmp_path / "cm.png", ["a", "b", "c", "d"], "test")
    assert (tmp_path / "cm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_knn_votes_with_temperature():
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    knn = KNNClassifier(bank, torch.tensor([0, 0, 1, 1]), num_classes=2, k=3, temperature=0.1)
    scores = knn.scores(torch.tensor([[1.0, 0.05], [0.0, 1.0]]))
    assert scores.argmax(1).tolist() == [0, 1]
    torch.testing.assert_close(scores.sum(1), torch.ones(2))
    tokens = torch.tensor([[1.0, 0.0], [0.0, 1.0]])[:, None, None, :].expand(2, 3, 5, 2)  # [B, V, N, D]
    assert knn.predict(tokens).argmax(1).tolist() == [0, 1]


def test_every_readout_is_one_entry_behind_the_same_interface():
    assert set(READOUTS) == set(get_args(ReadoutKind))
    assert READOUTS["knn"].fit is fit_knn and not READOUTS["knn"].trains and READOUTS["knn"].pooled
    assert READOUTS["attentive"].fit is fit_probes and not READOUTS["attentive"].pooled
    assert READOUTS["linear"].trains and READOUTS["linear"].pooled
