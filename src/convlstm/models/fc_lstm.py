"""The fully connected LSTM encoder-forecaster of Srivastava et al. (2015), "Unsupervised Learning of Video
Representations using LSTMs", as Shi et al. (2015) compare against it (FC-LSTM-2048-2048).

Each frame is flattened to a vector of C * H * W pixels. The LSTMs are written as ConvLSTM layers on 1 x 1 "frames"
whose channels are those pixels, with 1 x 1 kernels: a 1 x 1 convolution is exactly a fully connected layer, and
the ConvLSTM's per-channel peephole is exactly the diagonal peephole of a fully connected LSTM, so the layers (and
their state handling and tests) are shared with the convolutional models and the parameter count is the FC-LSTM's.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from convlstm.layers import ConvLSTM
from convlstm.models.base import ForecastingModel, config_from_arguments
from convlstm.models.output_head import OutputActivation, activate, check_output_head, start_at_mean
from convlstm.models.registry import register_model
from convlstm.utils.checks import check_int, check_int_list

#: One (h, c) pair per layer, each (B, hidden_sizes[l], 1, 1).
LSTMStates = list[Any]


@dataclass
class FCLSTMConfig:
    in_channels: int = 1
    height: int = 64
    width: int = 64
    hidden_sizes: list[int] = field(default_factory=lambda: [2048, 2048])
    peephole: bool = True
    output_activation: OutputActivation = "sigmoid"
    initial_mean: float | None = None
    default_horizon: int = 10


class FCLSTM(ForecastingModel):
    """An encoder-forecaster of fully connected LSTMs with peepholes on flattened frames.

    The encoder stack reads the flattened context frames; the forecaster stack starts from a copy of its (h, c)
    states, its first layer has no input and higher layers read the layer below; a linear map from the last
    forecaster layer's h gives the C * H * W pixels of each predicted frame. As in
    [`EncoderForecaster`][convlstm.models.EncoderForecaster], predictions are never fed back, so a ``teacher_forcing``
    mask is validated and otherwise ignored.

    Args:
        in_channels: channels C of the frames; the input layer has C * H * W units.
        height: height H of the frames.
        width: width W of the frames.
        hidden_sizes: units of each LSTM layer, bottom first (the forecaster mirrors the encoder).
        peephole: diagonal peephole weights (Gers & Schmidhuber), as Srivastava et al. use.
        output_activation: "sigmoid" for data in [0, 1], or "none".
        initial_mean: the mean pixel value a fresh model predicts (the data's mean; see
            `start_at_mean`), or None for PyTorch's default initialisation.
        default_horizon: frames predicted when forward gets no horizon.

    Shape:
        context: (B, T_in, C, H, W) -> predictions (B, horizon, C, H, W).
    """

    family = "fc_lstm"
    config_class = FCLSTMConfig

    def __init__(
        self,
        in_channels: int = 1,
        height: int = 64,
        width: int = 64,
        hidden_sizes: int | Sequence[int] = (2048, 2048),
        *,
        peephole: bool = True,
        output_activation: OutputActivation = "sigmoid",
        initial_mean: float | None = None,
        default_horizon: int = 10,
    ) -> None:
        super().__init__()
        for name, value in (
            ("in_channels", in_channels),
            ("height", height),
            ("width", width),
            ("default_horizon", default_horizon),
        ):
            check_int(name, value, 1)
        hidden_sizes = check_int_list("hidden_sizes", hidden_sizes, 1)
        check_output_head(output_activation, initial_mean)
        self.config = config_from_arguments(FCLSTMConfig, locals())
        self.in_channels, self.height, self.width = in_channels, height, width
        self.output_activation = output_activation
        self.default_horizon = default_horizon
        pixels = in_channels * height * width
        layers: dict[str, Any] = {"kernel_size": 1, "num_layers": len(hidden_sizes), "peephole": peephole}
        self.encoder = ConvLSTM(pixels, hidden_sizes, **layers)
        self.forecaster = ConvLSTM(0, hidden_sizes, **layers)
        self.head = nn.Linear(hidden_sizes[-1], pixels)
        if initial_mean is not None:
            start_at_mean(self.head, output_activation, initial_mean)

    def forward(
        self,
        context: Tensor,
        horizon: int | None = None,
        targets: Tensor | None = None,
        teacher_forcing: Tensor | None = None,
    ) -> Tensor:
        """Predicts ``horizon`` frames after ``context`` (B, T_in, C, H, W); targets / teacher_forcing are
        validated and ignored (see the class docstring). Returns (B, horizon, C, H, W)."""
        horizon, _ = self.check_forecast_arguments(
            context, horizon, targets, teacher_forcing, channels=self.in_channels
        )
        return self.forecast(self.encode(context), horizon)

    def encode(self, context: Tensor, state: LSTMStates | None = None) -> LSTMStates:
        """Runs the encoder over ``context`` (B, T, C, H, W), continuing from ``state``; returns its final state."""
        expected = (self.in_channels, self.height, self.width)
        if not isinstance(context, Tensor) or context.ndim != 5 or tuple(context.shape[2:]) != expected:
            shape = tuple(context.shape) if isinstance(context, Tensor) else type(context).__name__
            raise ValueError(f"context must have shape (B, T, {', '.join(map(str, expected))}), got {shape}")
        vectors = context.flatten(2)[..., None, None]  # (B, T, C*H*W, 1, 1)
        _, final = self.encoder(vectors, state)
        return final

    def forecast(self, state: LSTMStates, horizon: int) -> Tensor:
        """Runs the forecaster from an encoder state for ``horizon`` steps; returns (B, horizon, C, H, W)."""
        check_int("horizon", horizon, 1)
        if not isinstance(state, list | tuple) or len(state) != len(self.forecaster.cells):
            raise ValueError(f"state must be a list of {len(self.forecaster.cells)} (h, c) pairs as encode returns")
        first = state[0]
        if not isinstance(first, tuple | list) or len(first) != 2 or not isinstance(first[0], Tensor):
            raise ValueError(f"state[0] must be a pair (h, c) of tensors, got {type(first).__name__}")
        h = first[0]
        steps = h.new_empty(h.shape[0], horizon, 0, 1, 1)  # no input: only the step count
        out, _ = self.forecaster(steps, list(state))  # (B, horizon, hidden_sizes[-1], 1, 1)
        pixels = activate(self.head(out.flatten(2)), self.output_activation)  # (B, horizon, C*H*W)
        return pixels.unflatten(2, (self.in_channels, self.height, self.width))


@register_model
def fc_lstm_2048_2048(**overrides: Any) -> FCLSTM:
    """FC-LSTM-2048-2048 on 64x64 Moving MNIST (Srivastava et al. 2015; Shi et al. 2015): 142,667,776 parameters."""
    return FCLSTM(**{"in_channels": 1, "height": 64, "width": 64, "hidden_sizes": [2048, 2048], **overrides})


@register_model
def fc_lstm_tiny(**overrides: Any) -> FCLSTM:
    """A small FC-LSTM (16x16 frames, 2 x 32 units) for CPU tests and demos."""
    return FCLSTM(
        **{"in_channels": 1, "height": 16, "width": 16, "hidden_sizes": [32, 32], "default_horizon": 5, **overrides}
    )
