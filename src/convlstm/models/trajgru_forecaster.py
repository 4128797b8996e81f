"""The TrajGRU encoder-forecaster of Shi et al. (2017), "Deep Learning for Precipitation Nowcasting: A Benchmark and
A New Model" (the HKO-7 benchmark), with its HKO-7 configuration and a CPU-sized one.

Unlike Shi 2015's network (one resolution, frames cut into patches), it works on three resolutions:

    context (B, T, C, H, W) -> stem conv (stride s0) -> TrajGRU 1 -> down conv -> TrajGRU 2 -> down conv -> TrajGRU 3
                                                            |                        |                        |
    forecaster, from the copied states:  head <- TrajGRU 1' <- up deconv <- TrajGRU 2' <- up deconv <- TrajGRU 3'

The forecaster's top layer takes no input; every lower layer reads the upsampled outputs of the layer above; the head
(a transposed convolution back to the frame size, a 3x3 and a 1x1 convolution) draws the frames from the bottom
layer's outputs. Every convolution but the last is followed by a leaky ReLU of slope 0.2, as in the authors'
released configuration, whose layer sizes `shi2017_hko7_trajgru` reproduces.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from convlstm.layers.activations import leaky_relu_02
from convlstm.layers.trajgru import TrajGRUCell
from convlstm.models.base import ForecastingModel, config_from_arguments
from convlstm.models.output_head import OutputActivation, activate, check_output_head, start_at_mean
from convlstm.models.registry import register_model
from convlstm.utils.checks import check_int

#: A convolution's [out_channels, kernel, stride, padding] (stem and head) or [kernel, stride, padding] (down/up).
ConvSpec = list[int]


@dataclass
class TrajGRUForecasterConfig:
    """The constructor arguments of [`TrajGRUForecaster`][convlstm.models.TrajGRUForecaster], as saved with a model."""

    in_channels: int = 1
    hidden_channels: list[int] = field(default_factory=lambda: [64, 192, 192])
    links: list[int] = field(default_factory=lambda: [13, 13, 9])
    kernel_size: int = 3
    flow_channels: int = 32
    flow_kernel_size: int = 5
    stem: ConvSpec = field(default_factory=lambda: [8, 7, 5, 1])
    head: ConvSpec = field(default_factory=lambda: [8, 7, 5, 1])
    downsample: list[ConvSpec] = field(default_factory=lambda: [[5, 3, 1], [3, 2, 1]])
    upsample: list[ConvSpec] = field(default_factory=lambda: [[5, 3, 1], [4, 2, 1]])
    output_activation: OutputActivation = "sigmoid"
    initial_mean: float | None = None
    default_horizon: int = 20


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _deconv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size - 1) * stride - 2 * padding + kernel


class TrajGRUForecaster(ForecastingModel):
    """Shi et al.'s (2017) TrajGRU encoder-forecaster over three (or any number of) resolutions.

    Args:
        in_channels: channels C of the frames.
        hidden_channels: state channels of the TrajGRU at each resolution, finest first.
        links: L of each resolution's TrajGRU.
        kernel_size: input-to-state kernel of every TrajGRU (odd).
        flow_channels: channels of the flow subnetwork of every TrajGRU (see
            [`TrajGRUCell`][convlstm.layers.TrajGRUCell]).
        flow_kernel_size: kernel of that subnetwork.
        stem: [out_channels, kernel, stride, padding] of the convolution from frames to the finest resolution.
        head: [channels, kernel, stride, padding] of the transposed convolution back to the frame size (then a 3x3
            convolution with as many channels and a 1x1 convolution to C).
        downsample: [kernel, stride, padding] of the convolution from resolution i to i + 1 (to hidden_channels[i+1]
            channels), one per step down.
        upsample: [kernel, stride, padding] of the transposed convolution from resolution i + 1 to i (keeping
            hidden_channels[i+1] channels), one per step up.
        output_activation: "sigmoid" for data in [0, 1], or "none".
        initial_mean: the mean pixel value a fresh model predicts, or None.
        default_horizon: frames predicted when forward gets no horizon.

    The frame size must come back unchanged through the strides (see
    [`check_frame_size`][convlstm.models.TrajGRUForecaster.check_frame_size]; multiples of 30 for the HKO-7
    configuration, which runs at 480 x 480).

    Shape:
        context: (B, T_in, C, H, W) -> predictions (B, horizon, C, H, W).
    """

    family = "trajgru_forecaster"
    config_class = TrajGRUForecasterConfig

    def __init__(
        self,
        in_channels: int = 1,
        hidden_channels: Sequence[int] = (64, 192, 192),
        *,
        links: Sequence[int] = (13, 13, 9),
        kernel_size: int = 3,
        flow_channels: int = 32,
        flow_kernel_size: int = 5,
        stem: Sequence[int] = (8, 7, 5, 1),
        head: Sequence[int] = (8, 7, 5, 1),
        downsample: Sequence[Sequence[int]] = ((5, 3, 1), (3, 2, 1)),
        upsample: Sequence[Sequence[int]] = ((5, 3, 1), (4, 2, 1)),
        output_activation: OutputActivation = "sigmoid",
        initial_mean: float | None = None,
        default_horizon: int = 20,
    ) -> None:
        super().__init__()
        check_int("in_channels", in_channels)
        hidden = _int_list(hidden_channels, "hidden_channels")
        levels = len(hidden)
        links_ = _int_list(links, "links", length=levels)
        stem_, head_ = _int_list(stem, "stem", length=4), _int_list(head, "head", length=4)
        downs = [_int_list(d, "downsample entries", length=3) for d in downsample]
        ups = [_int_list(u, "upsample entries", length=3) for u in upsample]
        for name, specs in (("downsample", downs), ("upsample", ups)):
            if len(specs) != levels - 1:
                raise ValueError(f"{name} must have len(hidden_channels) - 1 = {levels - 1} entries, got {len(specs)}")
        check_output_head(output_activation, initial_mean)
        check_int("default_horizon", default_horizon)
        hidden_channels, links, stem, head = hidden, links_, stem_, head_
        downsample, upsample = downs, ups
        self.config = config_from_arguments(TrajGRUForecasterConfig, locals())
        self.in_channels, self.default_horizon = in_channels, default_horizon
        self.output_activation = output_activation
        self.levels = levels
        cell: dict[str, Any] = {"flow_channels": flow_channels, "flow_kernel_size": flow_kernel_size}
        out, kernel, stride, pad = stem
        self.stem = nn.Conv2d(in_channels, out, kernel, stride, pad)
        self.encoder = nn.ModuleList()
        self.down = nn.ModuleList()
        layer_in = out
        for level in range(levels):
            self.encoder.append(TrajGRUCell(layer_in, hidden[level], kernel_size, links=links[level], **cell))
            if level < levels - 1:
                k, s, p = downs[level]
                self.down.append(nn.Conv2d(hidden[level], hidden[level + 1], k, s, p))
                layer_in = hidden[level + 1]
        # forecaster[i] and up[i] serve resolution i; the top forecaster layer has no input.
        self.forecaster = nn.ModuleList(
            TrajGRUCell(0 if level == levels - 1 else hidden[level + 1], hidden[level], kernel_size,
                        links=links[level], **cell)
            for level in range(levels)
        )  # fmt: skip
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(hidden[level + 1], hidden[level + 1], k, s, p) for level, (k, s, p) in enumerate(ups)
        )
        channels, kernel, stride, pad = head
        self.head_up = nn.ConvTranspose2d(hidden[0], channels, kernel, stride, pad)
        self.head_conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.head_out = nn.Conv2d(channels, in_channels, 1)
        if initial_mean is not None:
            start_at_mean(self.head_out, output_activation, initial_mean)

    # ------------------------------------------------------------------------------------------------ sizes
    def level_sizes(self, size: int) -> list[int]:
        """The side of each resolution for frames of side ``size``."""
        stem = self.config.stem
        sizes = [_conv_out(size, *stem[1:])]
        for k, s, p in self.config.downsample:
            sizes.append(_conv_out(sizes[-1], k, s, p))
        return sizes

    def fits(self, size: int) -> bool:
        """Whether a frame side comes back unchanged through the strides down and the transposed strides up."""
        sizes = self.level_sizes(size)
        if min(sizes) < 1:
            return False
        ups = [_deconv_out(sizes[i + 1], *spec) == sizes[i] for i, spec in enumerate(self.config.upsample)]
        return all(ups) and _deconv_out(sizes[0], *self.config.head[1:]) == size

    def smallest_frame(self) -> int:
        """The smallest frame side the network accepts (e.g. for tests)."""
        return next(n for n in range(1, 4096) if self.fits(n))

    def check_frame_size(self, height: int, width: int) -> None:
        """Raises ValueError unless H and W come back unchanged through the network."""
        for name, side in (("H", height), ("W", width)):
            if not self.fits(side):
                raise ValueError(
                    f"context frames of {height}x{width} do not fit this network: {name}={side} does not come back "
                    f"unchanged through its strides (sides that do: multiples of {self.smallest_frame()})"
                )

    # ------------------------------------------------------------------------------------------------ running
    def forward(
        self,
        context: Tensor,
        horizon: int | None = None,
        targets: Tensor | None = None,
        teacher_forcing: Tensor | None = None,
    ) -> Tensor:
        """Predicts ``horizon`` frames after ``context`` (teacher forcing is validated and ignored: the
        forecaster reads no frames).

        Returns:
            (B, horizon, C, H, W) predictions.
        """
        horizon, _ = self.check_forecast_arguments(
            context, horizon, targets, teacher_forcing, channels=self.in_channels
        )
        return self.forecast(self.encode(context), horizon)

    def encode(self, context: Tensor, state: list[Tensor] | None = None) -> list[Tensor]:
        """Runs the encoder over ``context`` (B, T, C, H, W), continuing from ``state``; returns one state per
        resolution, finest first. Chunks fed in turn equal one call."""
        if not isinstance(context, Tensor) or context.ndim != 5 or context.shape[2] != self.in_channels:
            shape = tuple(context.shape) if isinstance(context, Tensor) else type(context).__name__
            raise ValueError(f"context must have shape (B, T, C={self.in_channels}, H, W), got {shape}")
        self.check_frame_size(context.shape[3], context.shape[4])
        if state is not None and (not isinstance(state, list | tuple) or len(state) != self.levels):
            raise ValueError(f"state must be a list of {self.levels} tensors as encode returns, got {state!r:.80}")
        batch, steps = context.shape[:2]
        frames = leaky_relu_02(self.stem(context.flatten(0, 1))).unflatten(0, (batch, steps))  # (B, T, C0, h, w)
        final = []
        for level, cell in enumerate(self.encoder):
            outputs, h = _run_cell(cell, frames, None if state is None else state[level], steps)
            final.append(h)
            if level < self.levels - 1:
                frames = leaky_relu_02(self.down[level](outputs.flatten(0, 1))).unflatten(0, (batch, steps))
        return final

    def forecast(self, state: list[Tensor], horizon: int) -> Tensor:
        """Runs the forecaster from an encoder state (see [`encode`][convlstm.models.TrajGRUForecaster.encode]) for
        ``horizon`` steps.

        Returns:
            (B, horizon, C, H, W) predictions.
        """
        check_int("horizon", horizon)
        if not isinstance(state, list | tuple) or len(state) != self.levels:
            raise ValueError(f"state must be a list of {self.levels} tensors as encode returns, got {state!r:.80}")
        batch = state[0].shape[0]
        frames: Tensor | None = None
        for level in reversed(range(self.levels)):
            outputs, _ = _run_cell(self.forecaster[level], frames, state[level], horizon)
            if level > 0:
                up = self.up[level - 1](outputs.flatten(0, 1))
                frames = leaky_relu_02(up).unflatten(0, (batch, horizon))
        flat = outputs.flatten(0, 1)  # (B * horizon, F0, h, w)
        flat = leaky_relu_02(self.head_conv(leaky_relu_02(self.head_up(flat))))
        return activate(self.head_out(flat).unflatten(0, (batch, horizon)), self.output_activation)


def _run_cell(cell: nn.Module, frames: Tensor | None, h: Tensor | None, steps: int) -> tuple[Tensor, Tensor]:
    """Runs ``cell`` over (B, T, C, h, w) frames (None for a cell without input): -> outputs (B, T, F, h, w), last h."""
    hidden = []
    for t in range(steps):
        h = cell(None if frames is None else frames[:, t], h)
        hidden.append(h)
    if h is None:
        raise AssertionError("unreachable: at least one step ran")
    return torch.stack(hidden, dim=1), h


def _int_list(values: Sequence[int], name: str, *, length: int | None = None) -> list[int]:
    items = list(values) if isinstance(values, list | tuple) else None
    if (
        items is None
        or not items
        or (length is not None and len(items) != length)
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in items)
    ):
        wanted = f"{length} " if length is not None else "a non-empty list of "
        raise ValueError(f"{name} must be {wanted}ints >= 0, got {values!r}")
    return items


@register_model
def shi2017_hko7_trajgru(**overrides: Any) -> TrajGRUForecaster:
    """The TrajGRU network of Shi et al. 2017 at its HKO-7 configuration (480x480 frames, 5 -> 20): three
    resolutions (96, 32, 16) with 64, 192, 192 channels and 13, 13, 9 links; 12,149,269 parameters (counted
    from the layer sizes in the tests)."""
    return TrajGRUForecaster(**{"in_channels": 1, "default_horizon": 20, **overrides})


#: The CPU-sized variant: strides 2 everywhere (48x48 frames -> 24, 12, 6), 16/32/32 channels, 5 links each.
_CPU: dict[str, Any] = {
    "in_channels": 1,
    "hidden_channels": [16, 32, 32],
    "links": [5, 5, 5],
    "flow_channels": 16,
    "stem": [8, 3, 2, 1],
    "head": [8, 4, 2, 1],
    "downsample": [[3, 2, 1], [3, 2, 1]],
    "upsample": [[4, 2, 1], [4, 2, 1]],
    "default_horizon": 15,
}


@register_model
def trajgru_radar_small(**overrides: Any) -> TrajGRUForecaster:
    """A CPU-sized TrajGRU encoder-forecaster (16/32/32 channels, 5 links, strides of 2; frames of a multiple of
    8 pixels) for the nowcasting study and tests."""
    return TrajGRUForecaster(**{**_CPU, **overrides})
