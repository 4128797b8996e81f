"""Example inputs for every registered model, shared by the registry tests and the golden-output writer."""

from typing import Any

import torch
from torch import Tensor, nn

from convlstm.models import (
    E3DLSTM,
    FCLSTM,
    MIM,
    ConvLSTMUNet,
    PeriodicAnchor,
    PredNet,
    SimVP,
    TrajGRUForecaster,
    create_model,
)

CONTEXT_FRAMES = 3
HORIZON = 2
FRAME = 16  # divisible by every model's patch and pooling factor


def frame_shape(model: nn.Module) -> tuple[int, int, int]:
    """(C, H, W) of frames the model accepts."""
    config = getattr(model, "config", None)
    if isinstance(model, FCLSTM | MIM | E3DLSTM):  # one frame size: fully connected, or per-pixel weights
        return (model.config.in_channels, model.config.height, model.config.width)
    if isinstance(model, PredNet):
        return (model.config.stack_sizes[0], FRAME, FRAME)
    if isinstance(model, TrajGRUForecaster):
        side = model.smallest_frame()  # 30 for the HKO-7 strides (5, 3, 2), 8 for the CPU variant
        return (model.in_channels, side * -(-FRAME // side), side * -(-FRAME // side))
    channels = getattr(config, "in_channels", None)
    return (1 if channels is None else channels, FRAME, FRAME)


def example_input(model: nn.Module, *, seed: int = 0, frames: int = CONTEXT_FRAMES) -> Tensor:
    if isinstance(model, SimVP):
        frames = model.config.context_frames  # stacked as channels: exactly this many
    if isinstance(model, PeriodicAnchor):
        frames = max(frames, model.config.period + 1)  # the anchor of every lead time lies in the context
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(1, frames, *frame_shape(model), generator=gen)


def run(model: nn.Module, x: Tensor) -> Tensor:
    """The model's main output: a forecast for forecasters, per-frame logits for the segmentation U-Net."""
    if isinstance(model, ConvLSTMUNet):
        return model(x)[0]
    return model(x, horizon=HORIZON)


def build(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model(name).eval()


def summary(output: Tensor) -> dict[str, Any]:
    """A few numbers that pin an output: its shape, sum, sum of squares and first values."""
    flat = output.detach().double().flatten()
    return {
        "shape": list(output.shape),
        "sum": flat.sum().item(),
        "sum_sq": flat.square().sum().item(),
        "first": flat[:6].tolist(),
    }
