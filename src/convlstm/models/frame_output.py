"""How a next-frame model turns its last layer into a frame: redraw the whole frame, or add a change to the last one.

Real footage changes little from one frame to the next, so a network that redraws every pixel (``"frame"``) spends
its first thousands of steps relearning the background and, early on, scores far below a plain copy of the last
frame. With ``"residual"`` the prediction is the last frame plus a learned change; the layer that makes the change
starts at zero, so an untrained model predicts the last frame exactly (copy-last-frame) and training only has to
learn what moves and what changes. "frame" stays the default: on synthetic frames drawn on black (Moving MNIST's
digits) there is little background for a copy to keep, and the residual output has been measured on real footage
only (docs/results/real-video.md).
"""

from typing import Literal

from torch import Tensor, nn

from convlstm.utils.checks import check_choice

FrameOutput = Literal["frame", "residual"]
FRAME_OUTPUTS = ("frame", "residual")


def check_frame_output(output: str) -> None:
    """Raises ValueError unless ``output`` is "frame" or "residual"."""
    check_choice("output", output, FRAME_OUTPUTS)


def start_at_zero_change(layer: nn.Conv2d) -> None:
    """Zeroes the weight and bias of the layer that makes the change, so that a fresh residual model copies the
    last frame. Its weights still get a gradient (from the features they read), and once they move the features
    before them do too."""
    nn.init.zeros_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def add_change(last_frame: Tensor, change: Tensor, *, bounded: bool) -> Tensor:
    """The residual prediction ``last_frame + change``, clamped to [0, 1] when ``bounded``.

    ``bounded`` stands in for a sigmoid output: a sigmoid of ``last_frame + change`` would not give the last frame
    back at zero change, a clamp does for frames in [0, 1].

    Shape:
        last_frame and change: the same shape, e.g. (B, T, C, H, W) -> the same shape.
    """
    out = last_frame + change
    return out.clamp(0.0, 1.0) if bounded else out
