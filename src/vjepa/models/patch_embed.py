"""Tubelet embedding: non-overlapping 3D patches of a clip, projected to tokens."""

from __future__ import annotations

from torch import Tensor, nn


class PatchEmbed3D(nn.Module):
    """A Conv3d with kernel = stride = (tubelet, patch, patch), so official weights load as they are.

    Args:
        in_chans: input channels (3 for RGB).
        embed_dim: token width D.
        patch_size: spatial patch side p.
        tubelet_size: frames per tubelet t.
    """

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int, tubelet_size: int) -> None:
        super().__init__()
        k = (tubelet_size, patch_size, patch_size)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=k, stride=k)

    def forward(self, x: Tensor) -> Tensor:  # [B, C, T, H, W] -> [B, T'*H'*W', D], time-major
        return self.proj(x).flatten(2).transpose(1, 2)
