"""Typed configs: strict keys and types, overrides, round trip."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from vjepa.config import ConfigError, apply_overrides, from_dict, load_config, save_config, to_dict


@dataclass(frozen=True)
class Optim:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    epochs: int = 10


@dataclass(frozen=True)
class Run:
    name: str = "run"
    precision: Literal["fp32", "bf16"] = "fp32"
    optimization: Optim = field(default_factory=Optim)
    datasets: list[str] = field(default_factory=list)
    max_keep: int | None = None


def test_unknown_key_lists_valid_keys():
    with pytest.raises(
        ConfigError,
        match=r"unknown key\(s\) 'optimization.lrr'; valid keys under 'optimization': betas, epochs, lr",
    ):
        from_dict(Run, {"optimization": {"lrr": 1}}, source="x.yaml")


def test_wrong_types_name_the_key():
    with pytest.raises(ConfigError, match="optimization.epochs must be an integer"):
        from_dict(Run, {"optimization": {"epochs": 1.5}})
    with pytest.raises(ConfigError, match="precision must be one of 'fp32', 'bf16'"):
        from_dict(Run, {"precision": "fp16"})
    with pytest.raises(ConfigError, match=r"optimization.betas must have 2 items"):
        from_dict(Run, {"optimization": {"betas": [0.9]}})


def test_overrides_parse_yaml_values_and_yaml_1e_notation():
    data = apply_overrides(
        {}, ["optimization.lr=1e-4", "max_keep=12", "datasets=[a.csv, b.csv]", "precision=bf16"]
    )
    run = from_dict(Run, data)
    assert run.optimization.lr == 1e-4 and run.max_keep == 12 and run.datasets == ["a.csv", "b.csv"]
    with pytest.raises(ConfigError, match="not of the form"):
        apply_overrides({}, ["lr"])


def test_round_trip_through_yaml(tmp_path):
    run = from_dict(Run, {"name": "x", "optimization": {"lr": 2e-4}, "max_keep": None})
    save_config(run, tmp_path / "config.yaml")
    assert load_config(Run, tmp_path / "config.yaml") == run
    assert to_dict(run)["optimization"]["betas"] == [0.9, 0.999]


def test_missing_and_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(Run, tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(Run, bad)
