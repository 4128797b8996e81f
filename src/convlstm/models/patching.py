"""Space-to-depth patching of frame sequences, as Shi et al. (2015) feed 64x64 Moving MNIST as 16x16x16 patches.

A (B, T, C, H, W) sequence becomes (B, T, C * p * p, H / p, W / p): every non-overlapping p x p patch turns into
p * p channels, ordered as `torch.nn.functional.pixel_unshuffle` orders them (channel c, then row, then
column inside the patch). `depth_to_space` inverts it exactly.
"""

import torch.nn.functional as F
from torch import Tensor

from convlstm.utils.checks import check_int


def check_patch_size(patch_size: int, name: str = "patch_size") -> int:
    """Returns ``patch_size`` if it is an int >= 1, else raises ValueError naming ``name``."""
    return check_int(name, patch_size, 1)


def space_to_depth(x: Tensor, patch_size: int, *, name: str = "x") -> Tensor:
    """Folds each p x p patch of every frame into channels.

    Args:
        x: (B, T, C, H, W) sequence (any number of leading dimensions before C, H, W works).
        patch_size: p; H and W must be divisible by it.
        name: what to call ``x`` in error messages (e.g. "context").

    Returns:
        (B, T, C * p * p, H / p, W / p); ``x`` itself when p is 1.

    Raises:
        ValueError: x has fewer than 3 dimensions, or H or W is not divisible by p.
    """
    p = check_patch_size(patch_size)
    _check_frames(x, name)
    height, width = x.shape[-2:]
    if height % p or width % p:
        raise ValueError(
            f"{name} frames of size {height}x{width} (H x W) cannot be cut into {p}x{p} patches: "
            f"H and W must be divisible by patch_size={p}, got shape {tuple(x.shape)}"
        )
    if p == 1:
        return x
    return F.pixel_unshuffle(x, p)


def depth_to_space(x: Tensor, patch_size: int, *, name: str = "x") -> Tensor:
    """Unfolds channels back into p x p patches: the inverse of `space_to_depth`.

    Args:
        x: (B, T, C * p * p, h, w) sequence.
        patch_size: p; the channel count must be divisible by p * p.
        name: what to call ``x`` in error messages.

    Returns:
        (B, T, C, h * p, w * p); ``x`` itself when p is 1.

    Raises:
        ValueError: x has fewer than 3 dimensions, or its channels are not divisible by p * p.
    """
    p = check_patch_size(patch_size)
    _check_frames(x, name)
    channels = x.shape[-3]
    if channels % (p * p):
        raise ValueError(
            f"{name} has {channels} channels, which are not a whole number of {p}x{p} patches: the channel count "
            f"must be divisible by patch_size**2={p * p}, got shape {tuple(x.shape)}"
        )
    if p == 1:
        return x
    return F.pixel_shuffle(x, p)


def _check_frames(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor) or x.ndim < 3:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a tensor of frames (..., C, H, W), got {shape}")
