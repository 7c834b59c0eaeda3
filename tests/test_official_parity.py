"""Our modules, loaded through our loader, reproduce every output of the official code on its fixture
(tests/data/official_vjepa_small.README.md) to 1e-5."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vjepa.checkpoint import load_pretrained
from vjepa.masks import MaskPair
from vjepa.pretrain.objective import JEPAObjective

ATOL = 1e-5


@pytest.fixture()
def loaded(official_checkpoint):
    return load_pretrained(official_checkpoint, num_heads=4)


@pytest.fixture()
def objective(loaded):
    return JEPAObjective(loaded.encoder("encoder"), loaded.predictor, loaded.encoder("target_encoder")).eval()


def masks_of(fx) -> list[MaskPair]:
    return [MaskPair(c, t) for c, t in zip(fx["masks_enc"], fx["masks_pred"], strict=True)]


def close(actual, expected):
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=0)


def test_target_encoder_raw_output_and_target_features(loaded, official_fixture):
    fx = official_fixture
    with torch.no_grad():
        raw = loaded.encoder("target_encoder")(fx["clip"])
    close(raw, fx["target_encoder_raw_output"])
    close(F.layer_norm(raw, (64,)), fx["target_features"])


def test_online_encoder_full_output(loaded, official_fixture):
    with torch.no_grad():
        close(loaded.encoder("encoder")(official_fixture["clip"]), official_fixture["encoder_full_output"])


def test_objective_reproduces_targets_context_predictions_and_loss(objective, official_fixture):
    fx = official_fixture
    masks = masks_of(fx)
    with torch.no_grad():
        close(objective.target_features(fx["clip"]), fx["target_features"])
        contexts = objective.encoder(fx["clip"], [m.context for m in masks])
        out = objective(fx["clip"], masks)
    for i in range(2):
        close(contexts[i], fx["context_features"][i])
        close(out.targets[i], fx["targets"][i])
        close(out.predictions[i], fx["predictions"][i])
    torch.testing.assert_close(out.loss, fx["loss"], rtol=1e-6, atol=0)
    torch.testing.assert_close(out.loss, fx["loss_jepa"], rtol=1e-6, atol=0)
    assert out.loss.item() == pytest.approx(0.8143198, abs=1e-6)


def test_position_tables_in_checkpoint_equal_our_tables(loaded, official_fixture):
    from vjepa.models.pos_embed import sincos_3d

    ckpt = official_fixture["checkpoint"]
    grid = loaded.encoder_config.grid
    assert torch.equal(sincos_3d(64, grid), ckpt["encoder"]["module.backbone.pos_embed"][0])
    assert torch.equal(sincos_3d(32, grid), ckpt["predictor"]["module.backbone.predictor_pos_embed"][0])


def test_converted_checkpoint_gives_the_same_outputs(official_checkpoint, official_fixture, tmp_path):
    from vjepa.checkpoint import convert_official

    ours = load_pretrained(convert_official(official_checkpoint, tmp_path / "c", num_heads=4))
    objective = JEPAObjective(ours.encoder("encoder"), ours.predictor, ours.encoder("target_encoder"))
    with torch.no_grad():
        out = objective(official_fixture["clip"], masks_of(official_fixture))
    torch.testing.assert_close(out.loss, official_fixture["loss"], rtol=1e-6, atol=0)
