"""The token grid of a clip: how many tubelets along time, height and width.

Token order is everywhere time-major, then row, then column: ``n = t * H' * W' + h * W' + w``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TokenGrid:
    """Number of tokens along each axis of a clip after tubelet embedding.

    Args:
        depth: tokens along time, ``num_frames // tubelet_size``.
        height: tokens along height, ``pixels // patch_size``.
        width: tokens along width, ``pixels // patch_size``.
    """

    depth: int
    height: int
    width: int

    def __post_init__(self) -> None:
        if min(self.depth, self.height, self.width) < 1:
            raise ValueError(f"a token grid needs at least one token per axis, got {self}")

    @property
    def num_tokens(self) -> int:
        return self.depth * self.height * self.width

    @property
    def tokens_per_frame(self) -> int:
        return self.height * self.width

    @classmethod
    def from_clip(
        cls, num_frames: int, height: int, width: int, *, tubelet_size: int, patch_size: int
    ) -> TokenGrid:
        """The grid of a clip of ``num_frames`` x ``height`` x ``width`` pixels (remainders are dropped,
        as the strided patch embedding drops them). Callers ask the model's config instead
        (:meth:`vjepa.models.registry.EncoderConfig.token_grid`), which knows its tubelet and patch sizes."""
        return cls(num_frames // tubelet_size, height // patch_size, width // patch_size)

    def as_tuple(self) -> tuple[int, int, int]:
        return (self.depth, self.height, self.width)
