"""Loading is strict and safe: official layout or bare keys or our format; every problem is named."""

from __future__ import annotations

import collections
import json

import pytest
import torch

from vjepa.checkpoint import (
    CheckpointError,
    convert_official,
    infer_encoder_config,
    load_encoder,
    load_pretrained,
    official_key,
    save_pretrained,
)
from vjepa.cli import main as cli_main
from vjepa.errors import InvalidArgument
from vjepa.io import atomic_write
from vjepa.models import build_encoder, build_predictor


def test_key_map_strips_wrapper_prefixes_only():
    assert official_key("module.backbone.blocks.0.attn.qkv.weight") == "blocks.0.attn.qkv.weight"
    assert official_key("backbone.norm.weight") == "norm.weight"
    assert official_key("pos_embed") == "pos_embed"
    assert official_key("blocks.0.module.x") == "blocks.0.module.x"


def test_official_checkpoint_loads_with_inferred_architecture(official_checkpoint):
    loaded = load_pretrained(official_checkpoint, num_heads=4)
    enc, pred = loaded.encoder_config, loaded.predictor_config
    assert (enc.embed_dim, enc.depth, enc.num_heads, enc.patch_size, enc.tubelet_size) == (64, 2, 4, 16, 2)
    assert (enc.num_frames, enc.resolution, enc.uniform_power) == (8, 64, True)
    assert (pred.predictor_embed_dim, pred.depth, pred.num_heads, pred.num_mask_tokens) == (32, 2, 4, 2)
    assert sorted(loaded.models) == ["encoder", "predictor", "target_encoder"]
    assert loaded.meta["epoch"] == 1
    # the two encoders really are the two different state dicts
    te, e = loaded.encoder("target_encoder"), loaded.encoder("encoder")
    assert not torch.equal(te.blocks[0].attn.qkv.weight, e.blocks[0].attn.qkv.weight)


def test_named_size_gives_the_head_count(tmp_path):
    encoder = build_encoder("vit_small", num_frames=4, resolution=32)
    path = tmp_path / "bare.pth"
    torch.save({f"module.backbone.{k}": v for k, v in encoder.state_dict().items()}, path)
    loaded = load_encoder(path)
    assert loaded.config == encoder.config
    assert loaded.config.num_heads == 6


def test_missing_heads_for_unnamed_size_is_explained(official_checkpoint):
    with pytest.raises(CheckpointError, match="pass num_heads"):
        load_pretrained(official_checkpoint)


def corrupted(official_fixture, tmp_path, edit) -> str:
    ckpt = {k: (dict(v) if isinstance(v, dict) else v) for k, v in official_fixture["checkpoint"].items()}
    edit(ckpt)
    path = tmp_path / "bad.pth.tar"
    torch.save(ckpt, path)
    return str(path)


def test_missing_key_is_named(official_fixture, tmp_path):
    path = corrupted(
        official_fixture, tmp_path, lambda c: c["target_encoder"].pop("module.backbone.norm.bias")
    )
    with pytest.raises(CheckpointError, match=r"missing key\(s\): 'norm.bias'"):
        load_pretrained(path, num_heads=4)


def test_unexpected_key_is_named(official_fixture, tmp_path):
    def add(c):
        c["encoder"]["module.backbone.blocks.0.attn.q_norm.weight"] = torch.ones(16)

    with pytest.raises(CheckpointError, match=r"unexpected key\(s\): 'blocks.0.attn.q_norm.weight'"):
        load_pretrained(corrupted(official_fixture, tmp_path, add), num_heads=4)


def test_wrong_shape_is_named(official_fixture, tmp_path):
    def reshape(c):
        c["predictor"]["module.backbone.predictor_proj.bias"] = torch.zeros(65)

    with pytest.raises(
        CheckpointError, match=r"wrong shape for 'predictor_proj.bias': checkpoint \(65,\), model \(64,\)"
    ):
        load_pretrained(corrupted(official_fixture, tmp_path, reshape), num_heads=4)


class Payload:
    def __reduce__(self):  # what a malicious checkpoint would do
        return (print, ("pickled code ran",))


def test_pickled_object_is_refused_and_never_executed(tmp_path, capsys):
    path = tmp_path / "evil.pth.tar"
    torch.save({"target_encoder": {}, "note": Payload()}, path)
    with pytest.raises(CheckpointError, match="never executes pickled code"):
        load_pretrained(path)
    assert "pickled code ran" not in capsys.readouterr().out


def test_unreadable_and_missing_files(tmp_path):
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="garbage.pth: not a readable PyTorch checkpoint"):
        load_pretrained(bad)
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_pretrained(tmp_path / "nope.pth")


def test_convert_then_load_gives_identical_weights(official_checkpoint, tmp_path):
    out = convert_official(official_checkpoint, tmp_path / "ours", num_heads=4)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    ours, theirs = load_pretrained(out), load_pretrained(official_checkpoint, num_heads=4)
    assert ours.encoder_config == theirs.encoder_config and ours.predictor_config == theirs.predictor_config
    for name in ("encoder", "target_encoder", "predictor"):
        a, b = ours.models[name].state_dict(), theirs.models[name].state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((out / "config.json").read_text())["meta"]["converted_from"] == str(official_checkpoint)
    # the safetensors file path works as well as the folder
    assert load_encoder(out / "model.safetensors").config == ours.encoder_config


def test_cli_convert(official_checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["convert", str(official_checkpoint), str(tmp_path / "out"), "--num-heads", "4"])
    assert exit_info.value.code == 0
    assert (tmp_path / "out" / "model.safetensors").is_file()
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["convert", str(official_checkpoint), str(tmp_path / "out2")])
    assert exit_info.value.code == 2
    assert "pass num_heads" in capsys.readouterr().err


def test_our_format_rejects_unknown_config_keys(tmp_path):
    encoder = build_encoder("vit_tiny", num_frames=4, resolution=32)
    out = save_pretrained(tmp_path / "m", {"target_encoder": encoder}, encoder.config)
    config = json.loads((out / "config.json").read_text())
    config["encoder"]["drop_path"] = 0.1
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"unknown encoder config key\(s\) \['drop_path'\]"):
        load_pretrained(out)


def test_save_predictor_needs_config_and_roundtrips(tmp_path):
    encoder = build_encoder("vit_tiny", num_frames=4, resolution=32)
    predictor = build_predictor(encoder, depth=1, predictor_embed_dim=48)
    with pytest.raises(InvalidArgument, match="needs its predictor_config"):
        save_pretrained(tmp_path / "m", {"predictor": predictor}, encoder.config)
    out = save_pretrained(
        tmp_path / "m", {"encoder": encoder, "predictor": predictor}, encoder.config, predictor.config
    )
    loaded = load_pretrained(out)
    assert loaded.predictor_config == predictor.config
    with pytest.raises(CheckpointError, match="holds no 'target_encoder'"):
        loaded.encoder("target_encoder")


def test_infer_rejects_image_patch_embedding():
    state = collections.OrderedDict({"patch_embed.proj.weight": torch.zeros(8, 3, 16, 16)})
    with pytest.raises(CheckpointError, match="Conv3d tubelet embedding"):
        infer_encoder_config(state)


def test_atomic_write_keeps_old_file_when_writer_fails(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")

    def boom(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]
