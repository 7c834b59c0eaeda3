"""Recipes and config errors: every shipped YAML loads; mistakes fail with the key and the valid keys."""

from __future__ import annotations

import pytest

from vjepa.config import ConfigError, to_dict
from vjepa.pretrain.config import load_pretrain_config, shipped_recipes
from vjepa.pretrain.rundir import check_compatible


def test_every_shipped_recipe_loads():
    recipes = shipped_recipes()
    assert {"vitl16", "vith16", "vith16_384", "tiny_cpu"} <= set(recipes)
    for name in recipes:
        config = load_pretrain_config(name)
        assert config.optimization.total_steps > 0


def test_paper_recipes_hold_the_paper_values():
    l16, h16, h384 = (load_pretrain_config(n) for n in ("vitl16", "vith16", "vith16_384"))
    assert (l16.model.name, h16.model.name, h384.model.name) == ("vit_large", "vit_huge", "vit_huge")
    assert (l16.data.batch_size, h384.data.batch_size) == (24, 10)
    assert (l16.data.resolution, h384.data.resolution) == (224, 384)
    o = l16.optimization
    assert (o.epochs, o.ipe, o.ipe_scale, o.warmup, o.clip_grad) == (300, 300, 1.25, 40.0, 10.0)
    assert (o.start_lr, o.lr, o.final_lr, o.weight_decay, o.final_weight_decay) == (
        2e-4, 6.25e-4, 1e-6, 0.04, 0.4
    )  # fmt: skip
    assert o.ema == (0.998, 1.0)
    assert [(m.num_blocks, m.spatial_scale) for m in l16.masks.multiblock] == [
        (8, (0.15, 0.15)),
        (2, (0.7, 0.7)),
    ]
    assert len(l16.data.datasets) == 3 and l16.runtime.precision == "auto"  # bf16 on the paper's GPUs
    assert load_pretrain_config("tiny_cpu").runtime.precision == "auto"


def test_unknown_key_lists_the_valid_ones():
    with pytest.raises(ConfigError) as err:
        load_pretrain_config("tiny_cpu", ["optimization.learning_rate=1e-3"])
    message = str(err.value)
    assert "optimization.learning_rate" in message and "tiny_cpu.yaml" in message
    for valid in ("lr", "start_lr", "warmup", "accumulation_steps"):
        assert valid in message


def test_unknown_section_and_bad_values_fail():
    with pytest.raises(ConfigError, match="valid keys at the top level"):
        load_pretrain_config("tiny_cpu", ["optimizer.lr=1"])
    with pytest.raises(ConfigError, match="runtime.precision must be one of"):
        load_pretrain_config("tiny_cpu", ["runtime.precision=fp16"])
    with pytest.raises(ConfigError, match="objective.target must be one of"):
        load_pretrain_config("tiny_cpu", ["objective.target=tokens"])
    with pytest.raises(ConfigError, match="data.batch_size must be an integer"):
        load_pretrain_config("tiny_cpu", ["data.batch_size=many"])
    with pytest.raises(ConfigError, match="batch_size must be >= 1"):
        load_pretrain_config("tiny_cpu", ["data.batch_size=0"])
    with pytest.raises(ConfigError, match="neither a config file nor a shipped recipe"):
        load_pretrain_config("vitz16")


def test_overrides_apply():
    c = load_pretrain_config(
        "tiny_cpu", ["optimization.lr=3e-4", "masks.kind=random_tube", "model.name=small"]
    )
    assert c.optimization.lr == 3e-4 and c.masks.kind == "random_tube" and c.model.name == "vit_small"


def test_resume_allows_only_harmless_changes(tmp_path):
    saved = to_dict(load_pretrain_config("tiny_cpu"))
    check_compatible(
        saved, load_pretrain_config("tiny_cpu", ["logging.log_every=3", "runtime.threads=1"]), tmp_path
    )
    with pytest.raises(ConfigError, match=r"optimization.lr: 0.001 -> 0.002"):
        check_compatible(saved, load_pretrain_config("tiny_cpu", ["optimization.lr=2e-3"]), tmp_path)
