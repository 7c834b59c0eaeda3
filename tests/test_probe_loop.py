"""Probe training and evaluation pieces on in-memory tensors: views and segments, the feature cache,
schedules, subsets, sharding, metrics, k-NN."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from vjepa.models import VideoEncoder
from vjepa.models.registry import EncoderConfig
from vjepa.probe.attentive import AttentiveClassifier
from vjepa.probe.config import OptimizationSection
from vjepa.probe.features import CacheError, encode_views, open_cache, token_set_shape
from vjepa.probe.knn import KNNClassifier
from vjepa.probe.loop import (
    CachedFeatures,
    OnlineFeatures,
    ProbeRun,
    build_cache,
    cosine_value,
    epoch_order,
    eval_share,
    make_optimizer,
    predict,
    probe_scores,
    stratified_subset,
    train_probes,
)
from vjepa.probe.metrics import classification_metrics, save_confusion_png
from vjepa.runtime import Runtime

CPU = Runtime(torch.device("cpu"))


def tiny_encoder(seed: int = 0) -> VideoEncoder:
    torch.manual_seed(seed)
    cfg = EncoderConfig(embed_dim=32, depth=2, num_heads=4, num_frames=4, img_size=32)
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

    def score(t):
        return probe_scores(probe, t, "fp32")

    a = predict([score], online, batch_size=3, runtime=CPU)
    b = predict([score], cached, batch_size=4, runtime=CPU)
    assert torch.equal(a.index, torch.arange(10)) and torch.equal(a.labels, b.labels)
    torch.testing.assert_close(a.scores[0], b.scores[0], atol=1e-6, rtol=1e-5)
    assert torch.equal(a.scores[0].argmax(1), b.scores[0].argmax(1))
    # the mean of softmaxes over the 3 views
    tokens = encode_views(enc, data.clips[:2])
    expected = torch.stack([probe(tokens[:, k]).softmax(-1) for k in range(3)]).mean(0)
    torch.testing.assert_close(a.scores[0][:2], expected, atol=1e-6, rtol=1e-5)


def test_stale_or_unfinished_cache(tmp_path):
    enc = tiny_encoder()
    data = ClipSet(4, 1, 1)
    online = OnlineFeatures(enc, data)
    pinned = {"encoder": "abc", "dataset": {"records": "r1"}}
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
    assert open_cache(tmp_path / "c", pinned) is not None
    with pytest.raises(CacheError, match=r"dataset\.records: cache has 'r1', this run needs 'r2'"):
        open_cache(tmp_path / "c", {"encoder": "abc", "dataset": {"records": "r2"}})
    with pytest.raises(CacheError, match="encoder"):
        open_cache(tmp_path / "c", {"encoder": "xyz", "dataset": {"records": "r1"}})
    (tmp_path / "c" / "manifest.json").unlink()  # an interrupted build leaves no manifest
    assert open_cache(tmp_path / "c", pinned) is None
    manifest_free = json.dumps(pinned)
    assert "abc" in manifest_free


def test_schedules_follow_the_official_recipe():
    assert cosine_value(1e-3, 0.0, 0, 100) == pytest.approx(1e-3)
    assert cosine_value(1e-3, 0.0, 50, 100) == pytest.approx(5e-4)
    assert cosine_value(1e-3, 0.0, 100, 100) == pytest.approx(0.0)
    assert cosine_value(0.01, 1e-6, 100, 100) == pytest.approx(1e-6)
    assert cosine_value(1e-3, 0.0, 1, 100) == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi / 100)))


def test_optimizer_groups_exclude_biases_and_1d():
    model = AttentiveClassifier(32, 4, 3)
    opt = make_optimizer(model, 1e-3, 0.05)
    decayed, excluded = opt.param_groups
    assert decayed["weight_decay"] == 0.05 and excluded["weight_decay"] == 0.0
    assert any(p is model.pooler.query_tokens for p in decayed["params"])
    assert all(p.ndim == 1 for p in excluded["params"])
    assert len(decayed["params"]) + len(excluded["params"]) == len(list(model.parameters()))


def test_stratified_subsets_are_seeded_and_per_class():
    labels = np.repeat(np.arange(5), [100, 50, 20, 10, 3])
    for f in (0.01, 0.05, 0.1, 0.5):
        sub = stratified_subset(labels, f, seed=3)
        counts = np.bincount(labels[sub], minlength=5)
        assert list(counts) == [max(1, round(f * n)) for n in (100, 50, 20, 10, 3)]
        assert np.array_equal(sub, stratified_subset(labels, f, seed=3))
        assert len(np.unique(sub)) == len(sub)
    assert not np.array_equal(stratified_subset(labels, 0.5, 0), stratified_subset(labels, 0.5, 1))
    assert np.array_equal(stratified_subset(labels, 1.0, 0), np.arange(len(labels)))


def test_eval_sharding_counts_every_sample_once_and_training_shares_are_equal():
    for n, w in ((10, 3), (7, 2), (2, 4)):  # evaluation shares may be empty
        shares = [eval_share(n, r, w) for r in range(w)]
        assert sorted(np.concatenate(shares).tolist()) == list(range(n))
    idx = np.arange(11)
    orders = [epoch_order(idx, 0, 2, r, 3) for r in range(3)]
    assert {len(o) for o in orders} == {3}
    assert len(set(np.concatenate(orders).tolist())) == 9
    assert not np.array_equal(epoch_order(idx, 0, 0, 0, 1), epoch_order(idx, 0, 1, 0, 1))
    with pytest.raises(ValueError, match="cannot be shared"):
        epoch_order(np.arange(2), 0, 0, 0, 4)


def test_several_settings_train_in_one_pass_and_learn():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(60) % 3
    tokens = torch.randn(60, 2, 6, 16, generator=g)  # [M, V, N, D]
    tokens[..., :3] += 3 * torch.nn.functional.one_hot(labels, 3)[:, None, None, :].float()

    class Memory:
        def __init__(self):
            self.labels = labels.numpy()
            self.reads = 0

        def __len__(self):
            return 60

        def batches(self, indices, batch_size, epoch):
            from vjepa.probe.loop import FeatureBatch

            for s in range(0, len(indices), batch_size):
                i = torch.as_tensor(indices[s : s + batch_size])
                self.reads += 1
                yield FeatureBatch(i, tokens[i], labels[i], torch.ones(len(i), dtype=torch.bool))

    src = Memory()
    runs = []
    for lr in (1e-2, 1e-4):
        torch.manual_seed(0)
        model = AttentiveClassifier(16, 2, 3)
        runs.append(ProbeRun(f"lr{lr}", 1.0, lr, 0.01, model, make_optimizer(model, lr, 0.01)))
    opt = OptimizationSection(epochs=4, batch_size=10, lr=[1e-2, 1e-4])
    train_probes(runs, src, np.arange(60), opt, seed=0, precision="fp32", runtime=CPU)
    assert src.reads == 4 * 6  # one read per batch, shared by both settings
    assert runs[0].history[-1]["train_loss"] < runs[1].history[-1]["train_loss"]
    assert runs[0].history[-1]["train_top1"] > 90
    preds = predict([lambda t: probe_scores(runs[0].model.eval(), t, "fp32")], src, 16, CPU)
    assert classification_metrics(preds.scores[0], preds.labels, 3).top1 > 90


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
