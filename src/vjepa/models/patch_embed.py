"""Tubelet embedding: non-overlapping 3D patches of a clip, projected to tokens."""

from __future__ import annotations

import torch
import torch.nn.functional as F
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
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            return self._as_matmul(x)
        return self.proj(x).flatten(2).transpose(1, 2)

    def _as_matmul(self, x: Tensor) -> Tensor:
        """The same map as the convolution (kernel = stride), as one matmul over the flattened tubelets.

        Used on CPU under bf16 autocast, where oneDNN's bf16 Conv3d (forward and backward) is ~7x slower
        than this; elsewhere, fp32 included, the convolution runs unchanged.
        """
        kt, kh, kw = self.proj.kernel_size
        b, c, t, h, w = x.shape
        x = x[:, :, : t - t % kt, : h - h % kh, : w - w % kw]  # the strided conv drops remainders too
        b, c, t, h, w = x.shape
        x = x.reshape(b, c, t // kt, kt, h // kh, kh, w // kw, kw)
        x = x.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(b, (t // kt) * (h // kh) * (w // kw), c * kt * kh * kw)
        return F.linear(x, self.proj.weight.flatten(1), self.proj.bias)  # [B, N, D]
