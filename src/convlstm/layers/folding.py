"""Time folding: running a per-frame module (a Conv2d stack, a norm) on every frame of a sequence at once."""

from torch import Tensor, nn


def per_frame(module: nn.Module, x: Tensor) -> Tensor:
    """Applies a frame module to every frame by folding time into the batch.

    Shape:
        x: (B, T, C, *spatial); returns (B, T, C', *spatial') as the module maps (C, *spatial) to (C', *spatial').
    """
    return module(x.flatten(0, 1)).unflatten(0, x.shape[:2])
