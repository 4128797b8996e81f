"""The next-frame predictor: a per-frame conv encoder, a ConvLSTM stack on the small feature maps, a per-frame
transposed-conv decoder. Trained without labels to predict frame t + 1 from frames up to t.

The encoder halves H and W at every stage (stride-2 convolutions), so the ConvLSTM runs on maps 2**stages times
smaller than the frames, which is what makes it affordable on 64x64 or larger frames. The decoder mirrors the
encoder with stride-2 transposed convolutions and ends with a kxk convolution to the frame channels.
"""

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from convlstm.layers import ConvLSTM
from convlstm.layers.cell_base import LSTMState
from convlstm.models.base import Forecaster, config_from_arguments, rollout
from convlstm.models.registry import register_model

OutputActivation = Literal["linear", "sigmoid"]


@dataclasses.dataclass
class NextFramePredictorConfig:
    in_channels: int = 1
    encoder_channels: tuple[int, ...] = (32, 64)
    hidden_channels: tuple[int, ...] = (64, 64)
    kernel_size: int = 3
    recurrent_kernel_size: int = 3
    output_activation: OutputActivation = "sigmoid"
    default_horizon: int = 10


def per_frame(module: nn.Module, x: Tensor) -> Tensor:
    """Applies a frame module to every frame: (B, T, C, H, W) -> (B, T, C', H', W') by folding time into batch."""
    return module(x.flatten(0, 1)).unflatten(0, x.shape[:2])


class NextFramePredictor(Forecaster):
    """Encoder -> ConvLSTM stack -> decoder, predicting frame t + 1 at every step t.

    Args:
        in_channels: channels C of the frames.
        encoder_channels: one stride-2 conv (+ ReLU) per entry; frames must have H and W divisible by
            2**len(encoder_channels).
        hidden_channels: one ConvLSTM layer per entry, on the encoded maps.
        kernel_size: of the encoder convolutions and of the decoder's last convolution (odd).
        recurrent_kernel_size: of the ConvLSTM layers (odd).
        output_activation: "sigmoid" (frames in [0, 1]) or "linear".
        default_horizon: frames forecast when ``horizon`` is not given.

    Shape:
        :meth:`one_step`: frames (B, T, C, H, W) -> predictions (B, T, C, H, W), prediction t for frame t + 1.
        forward: context (B, T_in, C, H, W) -> predictions (B, horizon, C, H, W).
        state: the ConvLSTM's list of (h, c), one per layer, each (B, F_l, H / 2**stages, W / 2**stages).

    Example:
        >>> model = create_model("next_frame_convlstm")
        >>> future = model(torch.rand(4, 10, 1, 64, 64), horizon=10)   # (4, 10, 1, 64, 64)
    """

    family = "next_frame"
    config_class = NextFramePredictorConfig

    def __init__(
        self,
        *,
        in_channels: int = 1,
        encoder_channels: Sequence[int] = (32, 64),
        hidden_channels: Sequence[int] = (64, 64),
        kernel_size: int = 3,
        recurrent_kernel_size: int = 3,
        output_activation: OutputActivation = "sigmoid",
        default_horizon: int = 10,
    ) -> None:
        super().__init__()
        encoder_channels = _int_tuple(encoder_channels, "encoder_channels")
        hidden_channels = _int_tuple(hidden_channels, "hidden_channels")
        for value, name in [
            (in_channels, "in_channels"),
            (kernel_size, "kernel_size"),
            (recurrent_kernel_size, "recurrent_kernel_size"),
            (default_horizon, "default_horizon"),
        ]:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (for 'same' padding), got {kernel_size}")
        if output_activation not in ("linear", "sigmoid"):
            raise ValueError(f"output_activation must be 'linear' or 'sigmoid', got {output_activation!r}")
        self.config = config_from_arguments(NextFramePredictorConfig, locals())
        self.default_horizon = default_horizon
        self.divisor = 2 ** len(encoder_channels)
        pad = kernel_size // 2

        # Encoder: (N, C, H, W) -> (N, E_last, H / 2**S, W / 2**S).
        encoder: list[nn.Module] = []
        previous = in_channels
        for channels in encoder_channels:
            encoder += [nn.Conv2d(previous, channels, kernel_size, stride=2, padding=pad), nn.ReLU(inplace=True)]
            previous = channels
        self.encoder = nn.Sequential(*encoder)
        self.rnn = ConvLSTM(
            encoder_channels[-1], list(hidden_channels), recurrent_kernel_size, num_layers=len(hidden_channels)
        )
        # Decoder: (N, F_last, H / 2**S, W / 2**S) -> (N, C, H, W); each stage doubles H and W exactly
        # (kernel 4, stride 2, padding 1) and goes to the width of the encoder stage it mirrors.
        decoder: list[nn.Module] = []
        previous = hidden_channels[-1]
        for channels in reversed((encoder_channels[0], *encoder_channels[:-1])):
            decoder += [nn.ConvTranspose2d(previous, channels, 4, stride=2, padding=1), nn.ReLU(inplace=True)]
            previous = channels
        decoder.append(nn.Conv2d(previous, in_channels, kernel_size, padding=pad))
        self.decoder = nn.Sequential(*decoder)

    def one_step(self, frames: Tensor, state: list[LSTMState] | None = None) -> tuple[Tensor, list[LSTMState]]:
        """Predictions of frame t + 1 at every step t, continuing from ``state`` (None: zeros).

        Running it frame by frame, passing the state on, gives the same result as one call.

        Returns:
            (predictions (B, T, C, H, W), state after the last frame).
        """
        self._check_frames(frames, "frames")
        features = per_frame(self.encoder, frames)  # (B, T, E_last, H / 2**S, W / 2**S)
        hidden, state = self.rnn(features, state)  # (B, T, F_last, H / 2**S, W / 2**S)
        out = per_frame(self.decoder, hidden)  # (B, T, C, H, W)
        if self.config.output_activation == "sigmoid":
            out = torch.sigmoid(out)
        return out, state

    def forward(
        self,
        context: Tensor,
        horizon: int | None = None,
        targets: Tensor | None = None,
        teacher_forcing: Tensor | None = None,
    ) -> Tensor:
        """Reads the context, then rolls out ``horizon`` frames, feeding each forecast (or true frame) back."""
        horizon, mask = self.check_forecast_arguments(
            context, horizon, targets, teacher_forcing, channels=self.config.in_channels
        )
        self._check_frames(context, "context")
        return rollout(self.one_step, context, horizon, targets, mask)

    def _check_frames(self, frames: Tensor, name: str) -> None:
        channels = self.config.in_channels
        if not isinstance(frames, Tensor) or frames.ndim != 5 or frames.shape[2] != channels:
            got = tuple(frames.shape) if isinstance(frames, Tensor) else type(frames).__name__
            raise ValueError(f"{name} must have shape (B, T, C={channels}, H, W), got {got}")
        height, width = frames.shape[-2:]
        if height % self.divisor or width % self.divisor:
            stages = len(self.config.encoder_channels)
            raise ValueError(
                f"{name} must have H and W divisible by 2**len(encoder_channels) = {self.divisor} "
                f"({stages} stride-2 stages), got {height}x{width}; crop or pad them to a multiple"
            )


def _int_tuple(values: Sequence[int], name: str) -> tuple[int, ...]:
    if isinstance(values, int) or not isinstance(values, Sequence) or len(values) == 0:
        raise ValueError(f"{name} must be a non-empty sequence of ints >= 1, got {values!r}")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
        raise ValueError(f"{name} must be a non-empty sequence of ints >= 1, got {values!r}")
    return tuple(values)


# ---------------------------------------------------------------------------------------------------- builders
@register_model
def next_frame_convlstm(**overrides: Any) -> NextFramePredictor:
    """For 64x64 one-channel frames (Moving MNIST): 2 stride-2 stages (32, 64), two 64-channel ConvLSTMs on 16x16."""
    return NextFramePredictor(**overrides)


@register_model
def next_frame_tiny(**overrides: Any) -> NextFramePredictor:
    """A few thousand parameters, for CPU tests and demos."""
    return NextFramePredictor(**{"encoder_channels": (8, 8), "hidden_channels": (8,), **overrides})
