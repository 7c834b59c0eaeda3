"""Indexes: CSV (paths with spaces), folders, path lists, line-numbered errors, mixing weights."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from vjepa.data.index import (
    IndexFormatError,
    IndexNotFoundError,
    VideoRecord,
    load_index,
    load_mixed_index,
    mix_indexes,
    read_csv_index,
    read_folder_index,
)
from vjepa.data.loader import DrawSampler
from vjepa.errors import InvalidArgument


def test_csv_label_is_last_field_and_paths_keep_spaces(tmp_path: Path) -> None:
    csv = tmp_path / "train.csv"
    csv.write_text("/abs/a.mp4 3\n\n/abs/my clips/b c.mp4 12\nrel/d.mp4 0\n", encoding="utf-8")
    records = read_csv_index(csv)
    assert records == [
        VideoRecord("/abs/a.mp4", 3),
        VideoRecord("/abs/my clips/b c.mp4", 12),
        VideoRecord(str(tmp_path / "rel/d.mp4"), 0),  # relative: resolved against the CSV's folder
    ]
    assert load_index(csv) == records


@pytest.mark.parametrize(
    ("content", "line"),
    [("/a.mp4 1\n/b.mp4 cat\n", 2), ("/a.mp4 1\n\n/nolabel.mp4\n", 3), ("/a.mp4 1.5\n", 1), (" 4\n", 1)],
)
def test_csv_errors_name_file_and_line(tmp_path: Path, content: str, line: int) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text(content, encoding="utf-8")
    with pytest.raises(IndexFormatError, match=rf"bad\.csv:{line}:"):
        read_csv_index(csv)


def test_folder_index_labels_are_sorted_class_names(tmp_path: Path) -> None:
    for cls, names in {"zebra": ["b.mp4", "a.MP4"], "ant": ["x.mkv", "notes.txt"], "empty": []}.items():
        (tmp_path / cls).mkdir()
        for n in names:
            (tmp_path / cls / n).write_bytes(b"x")
    records, classes = read_folder_index(tmp_path)
    assert classes == ["ant", "empty", "zebra"]
    assert [(Path(r.path).name, r.label) for r in records] == [("x.mkv", 0), ("a.MP4", 2), ("b.mp4", 2)]
    assert load_index(tmp_path) == records


def test_path_list_and_missing_index(tmp_path: Path) -> None:
    listing = tmp_path / "videos.txt"
    listing.write_text("/v/a b.mp4\n\nc.mp4\n", encoding="utf-8")
    assert load_index(listing) == [VideoRecord("/v/a b.mp4", 0), VideoRecord(str(tmp_path / "c.mp4"), 0)]
    with pytest.raises(IndexNotFoundError, match="nope.csv: the index file does not exist"):
        load_index(tmp_path / "nope.csv")


def test_mixing_weights_change_draw_frequency() -> None:
    small = [VideoRecord(f"/s/{i}.mp4", 0) for i in range(10)]
    large = [VideoRecord(f"/l/{i}.mp4", 1) for i in range(90)]
    mixed = mix_indexes([small, large], weights=[0.8, 0.2], names=["small", "large"])
    assert mixed.source_sizes == (10, 90) and mixed.source_of(9) == 0 and mixed.source_of(10) == 1
    sampler = DrawSampler(len(mixed), weights=mixed.weights, num_samples=20000, seed=0, rank=0, world_size=1)
    counts = Counter(mixed.source_of(k.index) for k in sampler)
    assert abs(counts[0] / 20000 - 0.8) < 0.02  # 10% of the records, 80% of the draws
    # plain concatenation: frequency follows the record counts
    plain = mix_indexes([small, large])
    assert plain.uniform and np.allclose(plain.weights, 0.01)


def test_load_mixed_index_reads_every_format(tmp_path: Path) -> None:
    csv = tmp_path / "a.csv"
    csv.write_text("/x/1.mp4 1\n/x/2.mp4 2\n", encoding="utf-8")
    listing = tmp_path / "b.txt"
    listing.write_text("/y/1.mp4\n", encoding="utf-8")
    mixed = load_mixed_index([csv, listing], weights=[1, 3])
    assert [r.path for r in mixed.records] == ["/x/1.mp4", "/x/2.mp4", "/y/1.mp4"]
    assert np.allclose(mixed.weights, [0.125, 0.125, 0.75]) and mixed.sources == (str(csv), str(listing))


def test_mixing_rejects_bad_weights() -> None:
    a = [VideoRecord("/a.mp4", 0)]
    with pytest.raises(InvalidArgument, match="weights"):
        mix_indexes([a, a], weights=[1.0])
    with pytest.raises(InvalidArgument, match="non-negative"):
        mix_indexes([a, a], weights=[1.0, -1.0])
    with pytest.raises(InvalidArgument, match="empty"):
        mix_indexes([a, []])
