"""The probe's data stage: labels, class counts and class names are checked against the index files before
anything is decoded or encoded, and errors name the key, the file and the line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vjepa.data.index import IndexFormatError
from vjepa.probe.config import EvalConfig
from vjepa.probe.data import LabelError, holdout_split, load_probe_data, stratified_subset


def csv(path: Path, labels: list, blank_at: int | None = None) -> str:
    lines = [f"clip{i}.mp4 {label}" for i, label in enumerate(labels)]
    if blank_at is not None:
        lines.insert(blank_at, "")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def config(train: str, val: str, **data) -> EvalConfig:
    cfg = EvalConfig()
    cfg.data.train, cfg.data.val = train, val
    for k, v in data.items():
        setattr(cfg.data, k, v)
    return cfg


def test_classes_are_counted_from_the_training_index(tmp_path):
    cfg = config(csv(tmp_path / "t.csv", [0, 1, 2, 1]), csv(tmp_path / "v.csv", [2, 0]))
    data = load_probe_data(cfg)
    assert data.num_classes == 3 and data.class_names is None and data.warnings == []
    assert data.indexes["train"].lines == [1, 2, 3, 4]


def test_a_label_out_of_range_names_the_file_and_line(tmp_path):
    train = csv(tmp_path / "t.csv", [0, 1, 0, 1])
    val = csv(tmp_path / "v.csv", [0, 1, 2, 1], blank_at=1)  # the blank line shifts the numbering
    with pytest.raises(
        LabelError, match=rf"data.val: {tmp_path}/v.csv:4: label 2 is outside \[0, 2\) .*counted"
    ):
        load_probe_data(config(train, val))
    with pytest.raises(LabelError, match=r"t.csv:2: label 1 is outside \[0, 1\)"):
        load_probe_data(config(train, val, num_classes=1))
    negative = csv(tmp_path / "n.csv", [0, -1, 1])
    with pytest.raises(LabelError, match=r"n.csv:2: label -1"):
        load_probe_data(config(negative, train))


def test_non_integer_labels_and_unlabelled_lists_are_refused(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a.mp4 0\nb.mp4 cat\n")
    with pytest.raises(IndexFormatError, match=r"bad.csv:2: .*integer label"):
        load_probe_data(config(str(bad), str(bad)))
    listing = tmp_path / "paths.txt"
    listing.write_text("a.mp4\nb.mp4\n")
    with pytest.raises(LabelError, match="data.train: .*paths.txt is a plain path list without labels"):
        load_probe_data(config(str(listing), str(listing)))
    with pytest.raises(FileNotFoundError, match="data.val: index .*missing.csv does not exist"):
        load_probe_data(config(csv(tmp_path / "t.csv", [0, 1]), str(tmp_path / "missing.csv")))


def test_class_names_must_fit_the_class_count(tmp_path):
    train, val = csv(tmp_path / "t.csv", [0, 1, 2]), csv(tmp_path / "v.csv", [0])
    with pytest.raises(
        LabelError, match=r"data.class_names has 2 names for 3 classes \(counted from data.train\)"
    ):
        load_probe_data(config(train, val, class_names=["a", "b"]))
    assert load_probe_data(config(train, val, class_names=["a", "b", "c"])).class_names == ["a", "b", "c"]
    with pytest.raises(
        ValueError, match="class_names has 2 names for 3 classes"
    ):  # both given: the config says
        config(train, val, num_classes=3, class_names=["a", "b"]).data.__post_init__()


def test_one_class_is_an_error_and_missing_classes_are_warnings(tmp_path):
    with pytest.raises(LabelError, match="single class"):
        load_probe_data(config(csv(tmp_path / "t.csv", [1, 1]), csv(tmp_path / "v.csv", [1])))
    data = load_probe_data(
        config(csv(tmp_path / "t.csv", [0, 2, 0]), csv(tmp_path / "v.csv", [1, 3]), num_classes=4)
    )
    assert any("2 of 4 classes have no training sample: [1, 3]" in w for w in data.warnings)
    assert any("data.val: classes [1, 3] never occur in training" in w for w in data.warnings)


def test_class_folders_name_the_classes_and_must_agree(tmp_path):
    for split, classes in (("train", ["cat", "dog"]), ("val", ["cat", "dog"]), ("other", ["cat", "eel"])):
        for c in classes:
            (tmp_path / split / c).mkdir(parents=True)
            (tmp_path / split / c / "a.mp4").write_bytes(b"")
    data = load_probe_data(config(str(tmp_path / "train"), str(tmp_path / "val")))
    assert (
        data.num_classes == 2 and data.class_names == ["cat", "dog"] and data.indexes["train"].lines is None
    )
    with pytest.raises(LabelError, match=r"class folders of .*other differ.*\['dog', 'eel'\]"):
        load_probe_data(config(str(tmp_path / "train"), str(tmp_path / "other")))


def test_the_selection_index_is_checked_too(tmp_path):
    cfg = config(csv(tmp_path / "t.csv", [0, 1]), csv(tmp_path / "v.csv", [0, 1]))
    cfg.selection.split, cfg.selection.index = "index", csv(tmp_path / "s.csv", [1, 5])
    with pytest.raises(LabelError, match=r"selection.index: .*s.csv:2: label 5"):
        load_probe_data(cfg)


def test_holdout_is_stratified_seeded_and_leaves_every_class_in_training():
    labels = np.array([0] * 10 + [1] * 5 + [2] * 1)
    train, held = holdout_split(labels, 0.2, seed=3)
    assert len(np.intersect1d(train, held)) == 0 and len(train) + len(held) == 16
    assert np.bincount(labels[held], minlength=3).tolist() == [2, 1, 0]
    assert set(labels[train]) == {0, 1, 2}
    again, held_again = holdout_split(labels, 0.2, seed=3)
    assert np.array_equal(held, held_again) and not np.array_equal(
        held, holdout_split(labels, 0.2, seed=4)[1]
    )


def test_stratified_subsets_are_seeded_and_per_class():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    sub = stratified_subset(labels, 0.1, seed=3)
    assert np.bincount(labels[sub]).tolist() == [5, 3, 2]
    assert np.array_equal(sub, stratified_subset(labels, 0.1, seed=3))
    assert not np.array_equal(sub, stratified_subset(labels, 0.1, seed=4))
    tiny = stratified_subset(labels, 0.001, seed=0)
    assert np.bincount(labels[tiny]).tolist() == [1, 1, 1]
    assert set(stratified_subset(labels, 0.1, 3)) <= set(stratified_subset(labels, 0.5, 3))
    assert np.array_equal(stratified_subset(labels, 1.0, 0), np.arange(100))
