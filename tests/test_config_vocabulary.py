"""One config vocabulary: old keys load through the one deprecation map, and the encoder config derives
every token grid."""

from __future__ import annotations

import json
import logging

import pytest

from vjepa.checkpoint import load_pretrained, save_pretrained
from vjepa.config import RENAMED_KEYS, ConfigError, from_dict, load_config
from vjepa.data.sampling import ClipConfig
from vjepa.demo.plan import DemoConfig
from vjepa.extract import ExtractSpec
from vjepa.grid import TokenGrid
from vjepa.models import build_encoder
from vjepa.models.registry import EncoderConfig, PredictorConfig, encoder_config
from vjepa.pretrain.config import DataConfig, PretrainConfig, RuntimeConfig, load_pretrain_config
from vjepa.probe.config import DataSection, EvalConfig
from vjepa.runtime import RuntimeSpec


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_old_yaml_keys_load_with_a_one_line_warning_naming_the_new_key(tmp_path, caplog) -> None:
    recipe = tmp_path / "old.yaml"
    recipe.write_text(
        "data:\n  source: synthetic\n  crop_size: 64\n  synthetic_size: 48\n  synthetic_frames: 8\n"
        "  num_frames: 8\nmodel:\n  name: vit_tiny\n"
    )
    with caplog.at_level(logging.WARNING, logger="vjepa.config"):
        cfg = load_config(PretrainConfig, recipe)
    assert (cfg.data.resolution, cfg.data.synthetic_resolution, cfg.data.synthetic_num_frames) == (64, 48, 8)
    messages = _warnings(caplog)
    assert len(messages) == 3 and all("\n" not in m for m in messages)
    assert any("'data.crop_size'" in m and "'data.resolution'" in m and "deprecated" in m for m in messages)
    assert any("'data.synthetic_frames'" in m and "'data.synthetic_num_frames'" in m for m in messages)


def test_old_eval_key_and_old_set_override_load(tmp_path, caplog) -> None:
    recipe = tmp_path / "eval.yaml"
    recipe.write_text("data:\n  frames_per_clip: 8\n  resolution: 32\n")
    with caplog.at_level(logging.WARNING, logger="vjepa.config"):
        cfg = load_config(EvalConfig, recipe, ["data.frames_per_clip=4"])  # the override wins over the file
    assert cfg.data.num_frames == 4
    assert any("'data.frames_per_clip'" in m and "'data.num_frames'" in m for m in _warnings(caplog))
    with caplog.at_level(logging.WARNING, logger="vjepa.config"):
        caplog.clear()
        pre = load_pretrain_config("tiny_cpu", ["data.crop_size=32"])
    assert pre.data.resolution == 32
    assert _warnings(caplog) == ["--set: config key 'data.crop_size' is deprecated, use 'data.resolution'"]


def test_old_and_new_key_together_is_an_error(tmp_path) -> None:
    recipe = tmp_path / "both.yaml"
    recipe.write_text("data:\n  crop_size: 64\n  resolution: 64\n")
    with pytest.raises(ConfigError, match="'data.crop_size' is the old name of 'data.resolution'"):
        load_config(PretrainConfig, recipe)


def test_renamed_keys_are_gone_from_the_configs() -> None:
    for cls in (DataConfig, DataSection, ExtractSpec, DemoConfig, EncoderConfig, PredictorConfig):
        names = set(cls.__dataclass_fields__)
        assert not names & set(RENAMED_KEYS), cls
    assert set(RENAMED_KEYS.values()) <= set(DataConfig.__dataclass_fields__)


def test_model_config_saved_with_img_size_still_loads(tmp_path, caplog) -> None:
    encoder = build_encoder("vit_tiny", num_frames=4, resolution=32)
    save_pretrained(tmp_path / "ckpt", {"encoder": encoder}, encoder.config, None, {})
    config_file = next(p for p in (tmp_path / "ckpt").iterdir() if p.suffix == ".json")
    data = json.loads(config_file.read_text())
    data["encoder"]["img_size"] = data["encoder"].pop("resolution")  # as an earlier version wrote it
    config_file.write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING, logger="vjepa.config"):
        loaded = load_pretrained(tmp_path / "ckpt")
    assert loaded.encoder_config.resolution == 32
    assert any("'img_size'" in m and "'resolution'" in m for m in _warnings(caplog))
    assert EncoderConfig.from_dict({**encoder.config.to_dict()}) == encoder.config


def test_shared_pieces_are_the_configs_fields() -> None:
    for cls in (DataConfig, DataSection, ExtractSpec, DemoConfig):
        assert issubclass(cls, ClipConfig)
    for cls in (RuntimeConfig, EvalConfig):
        assert issubclass(cls, RuntimeSpec)
    # one precision default across commands
    assert RuntimeConfig().precision == EvalConfig().precision == ExtractSpec().precision == "auto"


def test_vit_gigantic_patch_14_grid_comes_from_its_config() -> None:
    cfg = encoder_config("vit_gigantic", num_frames=16, resolution=224)
    assert cfg.patch_size == 14
    assert cfg.grid == TokenGrid(8, 16, 16)
    assert cfg.token_grid(8, 336) == TokenGrid(4, 24, 24)
    assert cfg.token_grid(16, (224, 112)) == TokenGrid(8, 16, 8)
    pre = load_pretrain_config("vitl16", ["model.name=vit_gigantic", "model.pred_num_heads=16"])
    assert pre.token_grid == TokenGrid(8, 16, 16)
    assert load_pretrain_config("vitl16").token_grid == TokenGrid(8, 14, 14)


def test_token_grid_has_no_silent_patch_default() -> None:
    with pytest.raises(TypeError):
        TokenGrid.from_clip(16, 224, 224)  # type: ignore[call-arg]
    demo = DemoConfig()
    assert demo.token_grid == TokenGrid(demo.num_frames // 2, demo.resolution // demo.patch_size, 8)


def test_a_saved_config_dict_with_old_keys_builds_through_from_dict(caplog) -> None:
    """The path of a run directory's saved config.yaml on resume (rundir.check_compatible)."""
    with caplog.at_level(logging.WARNING, logger="vjepa.config"):
        cfg = from_dict(
            PretrainConfig, {"data": {"crop_size": 64, "synthetic_frames": 8}}, source="config.yaml"
        )
    assert (cfg.data.resolution, cfg.data.synthetic_num_frames) == (64, 8)
    assert "config.yaml: config key 'data.crop_size' is deprecated, use 'data.resolution'" in _warnings(
        caplog
    )
