"""Normalizations over channels whose parameters do not depend on the frame size (unlike OpenSTL's LayerNorm)."""

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convlstm.utils.checks import check_choice

NormKind = Literal["group", "layer"]
NORM_KINDS = ("group", "layer")


class BlockNorm(nn.Module):
    """Normalizes each block of ``channels`` channels on its own (one block per gate), with a per-channel affine.

    ``kind="layer"`` normalizes over the block's channels at every position; ``kind="group"`` is GroupNorm with
    ``groups`` groups per block (statistics over channels in the group and all positions). Neither has parameters
    shaped by H x W, so a model trained on one frame size runs on another.

    Shape:
        input and output: (N, blocks * channels, *spatial)
    """

    def __init__(self, blocks: int, channels: int, kind: NormKind, *, groups: int = 1, eps: float = 1e-5) -> None:
        super().__init__()
        check_choice("norm", kind, NORM_KINDS)
        valid_groups = isinstance(groups, int) and not isinstance(groups, bool) and groups >= 1
        if kind == "group" and (not valid_groups or channels % groups):
            raise ValueError(f"norm_groups must divide hidden_channels={channels}, got {groups!r}")
        self.blocks, self.channels, self.kind, self.groups, self.eps = blocks, channels, kind, groups, eps
        self.weight = nn.Parameter(torch.ones(blocks * channels))
        self.bias = nn.Parameter(torch.zeros(blocks * channels))

    def forward(self, x: Tensor) -> Tensor:
        if self.kind == "group":
            return F.group_norm(x, self.blocks * self.groups, self.weight, self.bias, self.eps)
        per_block = x.unflatten(1, (self.blocks, self.channels))  # (N, blocks, channels, *spatial)
        var, mean = torch.var_mean(per_block, dim=2, unbiased=False, keepdim=True)
        normed = ((per_block - mean) * torch.rsqrt(var + self.eps)).flatten(1, 2)
        affine_shape = (1, -1) + (1,) * (x.ndim - 2)
        return normed * self.weight.view(affine_shape) + self.bias.view(affine_shape)
