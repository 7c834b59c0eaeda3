"""The official AdamW groups: biases and 1-D tensors undecayed, mask tokens decayed, no target encoder."""

from __future__ import annotations

from pretrain_helpers import tiny_config
from vjepa.optim import WD_EXCLUDE, build_optimizer, param_groups, set_lr_and_wd
from vjepa.pretrain.setup import build_objective


def test_four_official_groups():
    objective = build_objective(tiny_config())
    groups = param_groups(objective.encoder, [objective.predictor])
    assert [g["name"] for g in groups] == ["encoder", "predictor", "encoder_no_wd", "predictor_no_wd"]
    ids = {name: {id(p) for p in g["params"]} for name, g in ((g["name"], g) for g in groups)}
    enc = dict(objective.encoder.named_parameters())
    pred = dict(objective.predictor.named_parameters())
    for name, p in enc.items():
        want = "encoder_no_wd" if ("bias" in name or p.ndim == 1) else "encoder"
        assert id(p) in ids[want], name
    assert id(pred["mask_tokens.0"]) in ids["predictor"]  # [1, 1, d]: decayed, as official
    assert id(pred["predictor_norm.weight"]) in ids["predictor_no_wd"]
    assert id(enc["patch_embed.proj.weight"]) in ids["encoder"]
    in_groups = set().union(*ids.values())
    assert not in_groups & {id(p) for p in objective.target_encoder.parameters()}
    assert len(in_groups) == len(enc) + len(pred)


def test_pixel_head_trains_with_the_predictor():
    objective = build_objective(tiny_config(["objective.target=pixels"]))
    assert objective.target_encoder is None
    groups = param_groups(objective.encoder, [objective.predictor, objective.pixel_head])
    assert id(objective.pixel_head.weight) in {id(p) for p in groups[1]["params"]}
    assert id(objective.pixel_head.bias) in {id(p) for p in groups[3]["params"]}


def test_schedule_values_reach_the_right_groups():
    objective = build_objective(tiny_config())
    opt = build_optimizer(
        param_groups(objective.encoder, [objective.predictor]),
        betas=(0.9, 0.999),
        eps=1e-8,
        device=objective.encoder.pos_embed.device,
    )
    set_lr_and_wd(opt, 1e-3, 0.25)
    for g in opt.param_groups:
        assert g["lr"] == 1e-3
        assert g["weight_decay"] == (0.0 if g[WD_EXCLUDE] else 0.25)
