"""V-JEPA 2 weights across formats, against outputs of Hugging Face transformers (written once by
``tests/data/vjepa2/make_fixtures.py``; transformers is not imported here): HF folders and official V-JEPA 2 files
load strictly into our modules and compute what transformers computes; ours -> HF -> ours is bit-identical."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from vjepa.checkpoint import CheckpointError, load_official, load_pretrained, save_pretrained
from vjepa.cli import main
from vjepa.interop.hf import load_hf
from vjepa.interop.hf_export import export_hf
from vjepa.models import VideoEncoder, build_predictor
from vjepa.models.registry import EncoderConfig
from vjepa.models.tokens import gather_tokens
from vjepa.probe.checkpoint import load_probe, save_probe

DATA = Path(__file__).parent / "data" / "vjepa2"
HF_MODEL, HF_CLASSIFIER = DATA / "hf_model", DATA / "hf_classifier"
TOL = dict(atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def ref() -> dict[str, torch.Tensor]:
    return load_file(DATA / "reference.safetensors")


def run_cli(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as done:
        main(argv)
    return done.value.code


def encode_and_predict(pretrained, ref, tag):
    encoder, predictor = pretrained.encoder(), pretrained.predictor
    clip, ctx, tgt = ref[f"clip_{tag}"], ref[f"context_{tag}"], ref[f"target_{tag}"]
    with torch.no_grad():
        z = encoder(clip)  # [B, N, D]
        # transformers' VJEPA2Model feeds the predictor the full-clip encoding at the context indices, with
        # mask token 1
        pred = predictor(gather_tokens(z, ctx), ctx, tgt, mask_index=1, grid=encoder.grid_for(clip))
    return z, pred


@pytest.mark.parametrize("tag", ["native", "other"])
def test_hf_model_matches_transformers(ref, tag):
    """With transformers' position placement (``rope_grid="config"``), at the config's resolution and at
    another size, frame count and aspect ratio."""
    loaded = load_hf(HF_MODEL, rope_grid="config")
    z, pred = encode_and_predict(loaded.pretrained, ref, tag)
    torch.testing.assert_close(z, ref[f"encoder_{tag}"], **TOL)
    torch.testing.assert_close(pred, ref[f"predictor_{tag}"], **TOL)


def test_official_positions_agree_at_the_native_resolution_only(ref):
    loaded = load_hf(HF_MODEL)  # rope_grid="clip": the official V-JEPA 2 placement (the default)
    z, pred = encode_and_predict(loaded.pretrained, ref, "native")
    torch.testing.assert_close(z, ref["encoder_native"], **TOL)
    torch.testing.assert_close(pred, ref["predictor_native"], **TOL)
    z, _ = encode_and_predict(loaded.pretrained, ref, "other")
    assert (z - ref["encoder_other"]).abs().max() > 1e-2  # the documented difference off the native size


def test_hidden_states_of_transformers_are_unnormed_and_start_with_the_embeddings(ref):
    encoder = load_hf(HF_MODEL).pretrained.encoder()
    clip = ref["clip_native"]
    with torch.no_grad():
        torch.testing.assert_close(encoder.embed(clip), ref["hidden_states_native_0"], **TOL)
        layers = encoder(clip, layers=[0, 1])
    for i, ours in enumerate(layers):
        hidden = ref[f"hidden_states_native_{i + 1}"]
        torch.testing.assert_close(ours, encoder.norm(hidden), **TOL)  # ours: through the final LayerNorm
    assert len([k for k in ref if k.startswith("hidden_states_native_")]) == 1 + encoder.config.depth


@pytest.mark.parametrize("tag", ["native", "other"])
def test_hf_classifier_logits_match_transformers(ref, tag):
    loaded = load_hf(HF_CLASSIFIER, rope_grid="config")
    probe = loaded.probe
    assert probe is not None and probe.arch.depth == 4 and probe.arch.norm_eps == 1e-6
    assert probe.arch.num_heads == 2 and not probe.arch.xattn_proj
    assert loaded.class_names == [f"LABEL_{i}" for i in range(5)]
    encoder = loaded.pretrained.encoder()
    with torch.no_grad():
        tokens = encoder(ref[f"clip_{tag}"])
        torch.testing.assert_close(tokens, ref[f"classifier_encoder_{tag}"], **TOL)
        torch.testing.assert_close(probe.model(tokens), ref[f"logits_{tag}"], **TOL)


def folder_tensors(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


@pytest.mark.parametrize("source", [HF_MODEL, HF_CLASSIFIER])
def test_hf_to_ours_to_hf_is_bit_identical(source, tmp_path):
    assert run_cli(["convert", str(source), str(tmp_path / "ours")]) == 0
    argv = ["export", str(tmp_path / "ours"), str(tmp_path / "hf"), "--hf"]
    if source == HF_CLASSIFIER:
        argv += ["--probe", str(tmp_path / "ours" / "probe")]
    assert run_cli(argv) == 0
    before, after = folder_tensors(source), folder_tensors(tmp_path / "hf")
    assert sorted(before) == sorted(after)
    assert all(torch.equal(before[k], after[k]) for k in before)
    config_before = json.loads((source / "config.json").read_text())
    config_after = json.loads((tmp_path / "hf" / "config.json").read_text())
    for key, value in config_after.items():
        if key in config_before and key != "dtype":
            assert config_before[key] == value, key


def test_ours_to_hf_to_ours_is_bit_identical(tmp_path):
    torch.manual_seed(0)
    cfg = EncoderConfig(
        embed_dim=64, depth=2, num_heads=4, num_frames=8, resolution=32, patch_size=8, positions="rope"
    )
    encoder = VideoEncoder(cfg)
    predictor = build_predictor(encoder, predictor_embed_dim=32, depth=2, num_heads=2, num_mask_tokens=3)
    for token in predictor.mask_tokens:
        torch.nn.init.normal_(token)
    ours = save_pretrained(
        tmp_path / "ours", {"target_encoder": encoder, "predictor": predictor}, cfg, predictor.config
    )
    export_hf(ours, tmp_path / "hf")
    back = load_pretrained(tmp_path / "hf")  # an HF folder is recognized by its config.json
    assert back.meta["format"] == "huggingface"
    assert back.encoder_config == cfg and back.predictor_config == predictor.config
    for name, module in (("target_encoder", encoder), ("predictor", predictor)):
        again = back.models[name].state_dict()
        assert all(torch.equal(v, again[k]) for k, v in module.state_dict().items())


def write_folder(tmp_path: Path, tensors: dict[str, torch.Tensor], config_from: Path = HF_MODEL) -> Path:
    folder = tmp_path / "hf_edit"
    folder.mkdir(exist_ok=True)
    shutil.copy(config_from / "config.json", folder / "config.json")
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def test_hf_loading_is_strict_and_names_the_key(tmp_path):
    tensors = folder_tensors(HF_MODEL)
    extra = write_folder(tmp_path, {**tensors, "encoder.layer.0.attention.rotary.weight": torch.zeros(2)})
    with pytest.raises(CheckpointError, match="encoder.layer.0.attention.rotary.weight"):
        load_hf(extra)
    missing = dict(tensors)
    del missing["encoder.layer.1.attention.key.bias"]
    with pytest.raises(CheckpointError, match="encoder.layer.1.attention.key.bias"):
        load_hf(write_folder(tmp_path, missing))
    wrong = {**tensors, "encoder.layernorm.weight": torch.ones(7)}
    with pytest.raises(CheckpointError, match="norm.weight"):
        load_hf(write_folder(tmp_path, wrong))


def test_encoder_only_hf_folder(ref, tmp_path):
    encoder_only = {k: v for k, v in folder_tensors(HF_MODEL).items() if k.startswith("encoder.")}
    folder = write_folder(tmp_path, encoder_only)
    loaded = load_hf(folder, rope_grid="config")
    assert set(loaded.pretrained.models) == {"target_encoder"} and loaded.pretrained.predictor_config is None
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.pretrained.encoder()(ref["clip_native"]), ref["encoder_native"], **TOL
        )
    with pytest.raises(CheckpointError, match="no predictor"):
        export_hf(folder, tmp_path / "out")


def test_official_vjepa2_file_loads_strictly(ref, tmp_path):
    path = DATA / "official_pretrain.pt"
    with pytest.raises(CheckpointError, match="--positions rope"):  # its unused pos_embed is no sin-cos table
        load_official(path)
    loaded = load_official(path, positions="rope", num_heads=2, pred_num_heads=2, resolution=32)
    assert set(loaded.models) == {"encoder", "target_encoder", "predictor"}
    assert loaded.meta["ignored_keys"] == [
        "encoder.pos_embed",
        "target_encoder.pos_embed",
        "predictor.predictor_pos_embed",
    ]
    assert loaded.encoder_config.positions == "rope" and loaded.encoder_config.num_heads == 2
    z, pred = encode_and_predict(loaded, ref, "native")
    torch.testing.assert_close(z, ref["encoder_native"], **TOL)
    torch.testing.assert_close(pred, ref["predictor_native"], **TOL)

    raw = torch.load(path, weights_only=True)
    del raw["predictor"]["module.backbone.predictor_blocks.1.attn.qkv.bias"]
    broken = tmp_path / "broken.pt"
    torch.save(raw, broken)
    with pytest.raises(CheckpointError, match="predictor_blocks.1.attn.qkv.bias"):
        load_official(broken, positions="rope", num_heads=2, pred_num_heads=2)


def test_vjepa2_file_without_pos_embed_is_detected_and_ten_mask_tokens_must_be_told(tmp_path):
    torch.manual_seed(0)
    cfg = EncoderConfig(
        embed_dim=48, depth=2, num_heads=2, num_frames=4, resolution=32, patch_size=8, positions="rope"
    )
    encoder = VideoEncoder(cfg)
    predictor = build_predictor(encoder, predictor_embed_dim=32, depth=1, num_heads=2)  # 10 mask tokens
    state = {
        "target_encoder": {f"module.backbone.{k}": v for k, v in encoder.state_dict().items()},
        "predictor": {f"module.backbone.{k}": v for k, v in predictor.state_dict().items()},
    }
    path = tmp_path / "no_table.pt"
    torch.save(state, path)
    loaded = load_official(path, num_heads=2, pred_num_heads=2)  # auto: no pos_embed -> RoPE
    assert loaded.encoder_config.positions == "rope" and loaded.predictor_config.num_mask_tokens == 10
    state["target_encoder"]["module.backbone.pos_embed"] = torch.zeros(1, 32, 48)
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="10 mask tokens"):
        load_official(path, num_heads=2)


def test_official_vjepa2_probe_heads(tmp_path):
    path = DATA / "official_probe.pt"
    with pytest.raises(CheckpointError, match="holds 2 probes"):
        load_probe(path, num_heads=2)
    with pytest.raises(CheckpointError, match="out of range"):
        load_probe(path, num_heads=2, head=2)
    hf_probe = load_hf(HF_CLASSIFIER).probe
    heads = [load_probe(path, num_heads=2, head=i) for i in (0, 1)]
    for head in heads:
        a = head.arch
        assert (a.depth, a.norm_eps, a.xattn_proj, a.num_classes) == (4, 1e-5, False, 5)
    same = heads[0].model.state_dict()
    assert all(torch.equal(v, same[k]) for k, v in hf_probe.model.state_dict().items())
    other = heads[1].model.state_dict()
    assert not torch.equal(other["linear.weight"], same["linear.weight"])
    assert heads[1].meta["head"] == 1


def test_export_refuses_what_transformers_would_compute_differently(tmp_path):
    ours = tmp_path / "ours"
    assert run_cli(["convert", str(HF_CLASSIFIER), str(ours)]) == 0
    # the official probe: LayerNorm eps 1e-5, where transformers' classifier uses layer_norm_eps = 1e-6
    with pytest.raises(CheckpointError, match="eps"):
        export_hf(ours, tmp_path / "out", probe=DATA / "official_probe.pt", probe_head=0)
    assert (
        run_cli(
            ["export", str(ours), str(tmp_path / "o2"), "--hf", "--probe", str(DATA / "official_probe.pt")]
        )
        == 2
    )
    sincos = EncoderConfig(embed_dim=32, depth=1, num_heads=2, num_frames=4, resolution=32)
    encoder = VideoEncoder(sincos)
    predictor = build_predictor(encoder, predictor_embed_dim=16, depth=1, num_heads=2)
    v1 = save_pretrained(
        tmp_path / "v1", {"target_encoder": encoder, "predictor": predictor}, sincos, predictor.config
    )
    with pytest.raises(CheckpointError, match="sin-cos"):
        export_hf(v1, tmp_path / "out")


def test_converted_probe_round_trips_through_our_probe_format(ref, tmp_path):
    loaded = load_hf(HF_CLASSIFIER, rope_grid="config")
    folder = save_probe(tmp_path / "probe", loaded.probe.arch, loaded.probe.model)
    again = load_probe(folder)
    assert again.arch == loaded.probe.arch
    with torch.no_grad():
        tokens = loaded.pretrained.encoder()(ref["clip_native"])
        torch.testing.assert_close(again.model(tokens), ref["logits_native"], **TOL)


def test_sharded_hf_folder(ref, tmp_path):
    tensors = folder_tensors(HF_MODEL)
    folder = tmp_path / "sharded"
    folder.mkdir()
    shutil.copy(HF_MODEL / "config.json", folder / "config.json")
    names = sorted(tensors)
    weight_map = {}
    for i, part in enumerate((names[: len(names) // 2], names[len(names) // 2 :])):
        shard = f"model-0000{i + 1}-of-00002.safetensors"
        save_file({k: tensors[k] for k in part}, str(folder / shard), metadata={"format": "pt"})
        weight_map.update({k: shard for k in part})
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map})
    )
    z, _ = encode_and_predict(load_hf(folder, rope_grid="config").pretrained, ref, "native")
    torch.testing.assert_close(z, ref["encoder_native"], **TOL)
