"""Strict loading of state dicts into our models, and what a loaded checkpoint gives (:class:`Pretrained`).

Every tensor is checked against the model before it is loaded: shape, a floating-point dtype
(`FLOAT_DTYPES`; integer or boolean tensors are refused, never cast) and finite values (a NaN or an
infinity is refused naming the tensor). Every format (:mod:`.export`, :mod:`.official`, Hugging Face folders)
loads through here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from vjepa.errors import InvalidArgument
from vjepa.io import CheckpointError
from vjepa.models.encoder import VideoEncoder
from vjepa.models.predictor import Predictor
from vjepa.models.registry import EncoderConfig, PredictorConfig

MODEL_KEYS = ("encoder", "target_encoder", "predictor")
EncoderKey = Literal["target_encoder", "encoder"]
# dtypes a model's floating-point weights may be stored in (they are cast to the model's dtype on load).
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


@dataclass
class Pretrained:
    """The models of a pretraining checkpoint (those it holds), with their configs.

    Args:
        encoder_config: architecture of both encoders.
        predictor_config: architecture of the predictor, or None when the checkpoint holds none.
        models: ``encoder`` / ``target_encoder`` / ``predictor`` present in the file, loaded strictly.
        meta: anything else worth keeping (source file, epoch, format).
    """

    encoder_config: EncoderConfig
    predictor_config: PredictorConfig | None
    models: dict[str, nn.Module]
    meta: dict[str, Any] = field(default_factory=dict)

    def encoder(self, which: EncoderKey = "target_encoder") -> VideoEncoder:
        """The chosen encoder; ``target_encoder`` (the EMA weights) is what the paper evaluates."""
        if which not in MODEL_KEYS[:2]:
            raise InvalidArgument(f"which must be 'target_encoder' or 'encoder', got {which!r}")
        if which not in self.models:
            raise CheckpointError(
                f"{self.meta.get('source', 'checkpoint')} holds no {which!r}; it has {sorted(self.models)}"
            )
        return self.models[which]  # type: ignore[return-value]

    @property
    def predictor(self) -> Predictor:
        if "predictor" not in self.models:
            raise CheckpointError(f"{self.meta.get('source', 'checkpoint')} holds no predictor")
        return self.models["predictor"]  # type: ignore[return-value]


def check_state(model: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    """Strict comparison of ``state`` against ``model.state_dict()``: every missing key, unexpected key and
    shape mismatch is listed in one error."""
    expected = model.state_dict()
    problems = []
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing:
        problems.append(f"missing key(s): {key_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected key(s): {key_listing(unexpected)}")
    for key, value in state.items():
        if key in expected:
            problems += _tensor_problems(key, value, expected[key])
    if problems:
        raise CheckpointError(f"{source} does not fit {type(model).__name__}: " + "; ".join(problems))


def _tensor_problems(key: str, value: Tensor, expected: Tensor) -> list[str]:
    """What is wrong with one tensor: its shape, its dtype, non-finite values (checked in that order)."""
    if tuple(value.shape) != tuple(expected.shape):
        return [f"wrong shape for {key!r}: checkpoint {tuple(value.shape)}, model {tuple(expected.shape)}"]
    if not expected.is_floating_point():
        if value.dtype != expected.dtype:
            return [f"{key!r} has dtype {value.dtype}; the model holds {expected.dtype}"]
        return []
    return _value_problems(key, value)


def _value_problems(key: str, value: Tensor) -> list[str]:
    """A floating-point tensor's dtype and non-finite values."""
    if value.dtype not in FLOAT_DTYPES:
        return [
            f"{key!r} has dtype {value.dtype}, not a floating-point type (float32, bfloat16, float16, "
            f"float64): refused rather than cast"
        ]
    bad = value.numel() - int(torch.isfinite(value).sum())
    if bad:
        return [f"{key!r} holds {bad} non-finite value(s) (NaN or infinity) of {value.numel()}"]
    return []


def load_strict(model: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    check_state(model, state, source)
    model.load_state_dict(state, strict=True)


def key_listing(keys: list[str], most: int = 8) -> str:
    shown = ", ".join(repr(k) for k in keys[:most])
    return shown + (f" (+{len(keys) - most} more)" if len(keys) > most else "")


def build_models(
    states: Mapping[str, Mapping[str, Tensor]],
    enc_cfg: EncoderConfig,
    pred_cfg: PredictorConfig | None,
    source: str,
) -> dict[str, nn.Module]:
    for key, state in states.items():  # refuse bad values before building anything
        problems = [p for name, value in state.items() for p in _value_problems(name, value)]
        if problems:
            raise CheckpointError(f"{source}[{key!r}]: " + "; ".join(problems[:8]))
    models: dict[str, nn.Module] = {}
    for key, state in states.items():
        model: nn.Module = Predictor(pred_cfg) if key == "predictor" else VideoEncoder(enc_cfg)  # type: ignore[arg-type]
        load_strict(model, state, f"{source}[{key!r}]")
        models[key] = model
    return models
