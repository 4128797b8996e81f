"""The encoder-forecaster ConvLSTM of Shi et al. (2015), "Convolutional LSTM Network: A Machine Learning Approach
for Precipitation Nowcasting", with its Moving MNIST and radar configurations.

context (B, T_in, C, H, W) --space-to-depth--> encoder stack (L ConvLSTM layers) --copy (h, c)--> forecaster stack
(L layers; layer 1 has no input, layer l > 1 reads layer l - 1) --1x1 conv over all forecaster h--> depth-to-space
--> predictions (B, horizon, C, H, W).

Two additions of ours, both off by default: ``head="advection"`` forecasts by moving the last frame along a velocity
field read from the forecaster (`convlstm.models.advection_head`), and ``motion_radius`` feeds the encoder
block-matching costs of each frame against the one before (`convlstm.models.motion_cues`).

Shi's naming ConvLSTM(K_i)-K_h-C1-K_h-C2 maps to ``kernel_size=K_i`` (input-to-state, every layer),
``recurrent_kernel_size=K_h`` (state-to-state) and ``hidden_channels=[C1, C2]``.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convlstm.layers import ConvGRU, ConvLSTM
from convlstm.models.advection_head import AdvectionHead
from convlstm.models.base import ForecastingModel, check_context_lengths, config_from_arguments, last_valid
from convlstm.models.motion_cues import cue_channels, matching_costs
from convlstm.models.output_head import OutputActivation, activate, check_output_head, start_at_mean
from convlstm.models.patching import check_patch_size, depth_to_space, space_to_depth
from convlstm.models.registry import register_model
from convlstm.utils.checks import check_choice, check_int, check_int_list

CellKind = Literal["lstm", "gru"]
HeadKind = Literal["pixels", "advection"]
HEADS = ("pixels", "advection")
#: One entry per layer: (h, c) pairs for cell="lstm", h tensors for cell="gru" (the state of the sequence layers);
#: with the advection head or motion cues, the last frame seen (B, C, H, W) follows.
RecurrentState = list[Any]


@dataclass
class EncoderForecasterConfig:
    in_channels: int = 1
    hidden_channels: list[int] = field(default_factory=lambda: [64, 64])
    kernel_size: int = 3
    recurrent_kernel_size: int | None = None
    patch_size: int = 1
    cell: CellKind = "lstm"
    peephole: bool = True
    output_activation: OutputActivation = "sigmoid"
    initial_mean: float | None = None
    default_horizon: int = 10
    head: HeadKind = "pixels"
    motion_radius: int = 0


class EncoderForecaster(ForecastingModel):
    """Shi et al.'s encoder-forecaster network of ConvLSTM (or ConvGRU) layers.

    The forecaster stack runs from the copied encoder state alone: its first layer has no input, so predictions are
    never fed back. Teacher forcing therefore has nothing to act on: a ``teacher_forcing`` mask is validated (with
    ``targets``) and otherwise ignored, so the same training loop can drive every forecaster.

    Args:
        in_channels: channels C of the frames.
        hidden_channels: channels of each layer, bottom first; the forecaster mirrors the encoder layer by layer.
        kernel_size: input-to-state kernel K_i of every layer (odd or even; "same" padding).
        recurrent_kernel_size: state-to-state kernel K_h (default: kernel_size).
        patch_size: frames are cut into p x p patches folded into channels (space-to-depth) before the encoder;
            H and W must be divisible by it.
        cell: "lstm" (ConvLSTM, Shi's cell) or "gru" (ConvGRU).
        peephole: Shi's per-channel peephole weights (cell="lstm" only; pass False with cell="gru").
        output_activation: "sigmoid" for data in [0, 1], or "none" for unbounded data.
        initial_mean: the mean pixel value a fresh model predicts (the data's mean; see
            `start_at_mean`), or None for PyTorch's default initialisation.
        default_horizon: frames predicted when forward gets no horizon.
        head: "pixels", Shi's 1x1 convolution that draws each frame from the forecaster states, or "advection",
            which moves the last context frame by a velocity field read from those states and adds a change
            (`AdvectionHead`; starts close to persistence and needs
            output_activation="none").
        motion_radius: with r > 0, each encoder step also reads the (2r + 1)^2 block-matching costs of its frame
            against the one before (displacements up to r pixels; zeros for the very first frame), averaged over
            each patch. 0: frames only, as Shi.

    Shape:
        context: (B, T_in, C, H, W) -> predictions (B, horizon, C, H, W).

    Examples:
        >>> model = EncoderForecaster(1, [16, 16], kernel_size=3, patch_size=2, default_horizon=5)
        >>> model(torch.rand(2, 10, 1, 32, 32)).shape
        torch.Size([2, 5, 1, 32, 32])
    """

    family = "encoder_forecaster"
    config_class = EncoderForecasterConfig
    accepts_context_lengths = True

    def __init__(
        self,
        in_channels: int = 1,
        hidden_channels: int | Sequence[int] = (64, 64),
        *,
        kernel_size: int = 3,
        recurrent_kernel_size: int | None = None,
        patch_size: int = 1,
        cell: CellKind = "lstm",
        peephole: bool = True,
        output_activation: OutputActivation = "sigmoid",
        initial_mean: float | None = None,
        default_horizon: int = 10,
        head: HeadKind = "pixels",
        motion_radius: int = 0,
    ) -> None:
        super().__init__()
        check_int("in_channels", in_channels)
        hidden_channels = check_int_list("hidden_channels", hidden_channels)
        for name, value in (("kernel_size", kernel_size), ("recurrent_kernel_size", recurrent_kernel_size)):
            if value is not None:
                check_int(name, value)
        check_patch_size(patch_size)
        check_choice("cell", cell, ("lstm", "gru"))
        if peephole and cell == "gru":
            raise ValueError("peephole=True needs cell='lstm': a ConvGRU has no cell state to peep at")
        check_output_head(output_activation, initial_mean)
        _check_head(head, output_activation, initial_mean)
        check_int("motion_radius", motion_radius, 0)
        check_int("default_horizon", default_horizon)
        self.config = config_from_arguments(EncoderForecasterConfig, locals())
        self.in_channels = in_channels
        self.patch_size = patch_size
        self.cell_kind = cell
        self.output_activation = output_activation
        self.default_horizon = default_horizon

        self.motion_radius = motion_radius
        # The advection head moves the last frame and the motion cues compare each frame with the one before:
        # both need the last frame seen, which the state then carries so that chunked encoding equals one call.
        self.keeps_last_frame = head == "advection" or motion_radius > 0
        patched = in_channels * patch_size**2
        layers: dict[str, Any] = {
            "hidden_channels": hidden_channels,
            "kernel_size": kernel_size,
            "num_layers": len(hidden_channels),
            "recurrent_kernel_size": recurrent_kernel_size,
        }
        encoder_inputs = patched + (cue_channels(motion_radius) if motion_radius else 0)
        if cell == "lstm":
            self.encoder: ConvLSTM | ConvGRU = ConvLSTM(encoder_inputs, peephole=peephole, **layers)
            # in_channels=0: the first forecaster layer is state-to-state only (Shi's figure 3).
            self.forecaster: ConvLSTM | ConvGRU = ConvLSTM(0, peephole=peephole, **layers)
        else:
            self.encoder = ConvGRU(encoder_inputs, **layers)
            self.forecaster = ConvGRU(0, **layers)
        self.head_kind = head
        if head == "advection":
            self.head: nn.Module = AdvectionHead(sum(hidden_channels), in_channels, patch_size)
        else:
            self.head = nn.Conv2d(sum(hidden_channels), patched, kernel_size=1)
            if initial_mean is not None:
                start_at_mean(self.head, output_activation, initial_mean)

    def forward(
        self,
        context: Tensor,
        horizon: int | None = None,
        targets: Tensor | None = None,
        teacher_forcing: Tensor | None = None,
        *,
        context_lengths: Tensor | None = None,
    ) -> Tensor:
        """Predicts ``horizon`` frames after ``context``.

        Args:
            context: (B, T_in, C, H, W) observed frames; H and W divisible by patch_size.
            horizon: frames to predict (default: ``default_horizon``).
            targets: validated as in [`ForecastingModel`][convlstm.models.ForecastingModel], then ignored: the
                forecaster stack takes no input, so there is nothing to feed the true frames into.
            teacher_forcing: validated, then ignored (as ``targets``).
            context_lengths: optional (B,): contexts of different lengths, padded at the end; each forecast
                starts from the encoder state after its own last valid frame.

        Returns:
            (B, horizon, C, H, W) predictions.
        """
        horizon, _ = self.check_forecast_arguments(
            context, horizon, targets, teacher_forcing, channels=self.in_channels
        )
        lengths = check_context_lengths(context_lengths, context)
        return self.forecast(self.encode(context, lengths=lengths), horizon)

    def encode(
        self, context: Tensor, state: RecurrentState | None = None, *, lengths: Tensor | None = None
    ) -> RecurrentState:
        """Runs the encoder over ``context``, continuing from ``state``; chunks fed in turn equal one call.

        Args:
            context: (B, T, C, H, W) frames.
            state: what an earlier call returned, or None to start from zeros.
            lengths: optional (B,): frames at and after lengths[b] are padding, and the state returned is the one
                after each sequence's last valid frame.

        Returns:
            The encoder state after the last frame, one entry per layer: (h, c) for cell="lstm", h for "gru",
            each (B, hidden_channels[l], H / p, W / p); then, with the advection head or motion cues, the last
            frame (B, C, H, W).
        """
        if not isinstance(context, Tensor) or context.ndim != 5 or context.shape[2] != self.in_channels:
            shape = tuple(context.shape) if isinstance(context, Tensor) else type(context).__name__
            raise ValueError(f"context must have shape (B, T, C={self.in_channels}, H, W), got {shape}")
        patches = space_to_depth(context, self.patch_size, name="context")  # (B, T, C*p*p, H/p, W/p)
        layers = None if state is None else state[: len(self.encoder.cells)]
        if self.motion_radius:
            previous = None if state is None else state[-1]
            patches = torch.cat((patches, self._motion_cues(previous, context)), dim=2)
        _, final = self.encoder(patches, layers, lengths=lengths)
        if self.keeps_last_frame:
            final.append(last_valid(context, lengths))
        return final

    def _motion_cues(self, previous: Tensor | None, context: Tensor) -> Tensor:
        """(B, T, cue channels, H / p, W / p): each context frame against the one before it; ``previous`` (B, C, H, W)
        is the frame before the context, or None at the start, where the first frame gets zeros (no motion seen)."""
        batch = context.shape[0]
        earlier = context[:, :-1] if previous is None else torch.cat((previous.unsqueeze(1), context[:, :-1]), dim=1)
        later = context[:, 1:] if previous is None else context
        costs = matching_costs(earlier.flatten(0, 1), later.flatten(0, 1), self.motion_radius)
        if self.patch_size > 1:
            costs = F.avg_pool2d(costs, self.patch_size)
        costs = costs.unflatten(0, (batch, later.shape[1]))
        if previous is None:
            costs = torch.cat((costs.new_zeros(batch, 1, *costs.shape[2:]), costs), dim=1)
        return costs

    def forecast(self, state: RecurrentState, horizon: int) -> Tensor:
        """Runs the forecaster stack from an encoder state (see [`encode`][convlstm.models.EncoderForecaster.encode])
        for ``horizon`` steps.

        Returns:
            (B, horizon, C, H, W) predictions.
        """
        check_int("horizon", horizon)
        entries = len(self.forecaster.cells) + self.keeps_last_frame
        if not isinstance(state, list | tuple) or len(state) != entries:
            got = f"{type(state).__name__} of length {len(state)}" if isinstance(state, list | tuple) else state
            what = "one per layer, then the last frame" if self.keeps_last_frame else "one per layer"
            raise ValueError(f"state must be a list of {entries} entries ({what}) as encode returns, got {got}")
        layers = list(state[: len(self.forecaster.cells)])
        first = state[0]
        h = first[0] if isinstance(first, tuple | list) else first
        if not isinstance(h, Tensor) or h.ndim != 4:
            raise ValueError(f"state[0] must hold a hidden state (B, F, h, w), got {type(h).__name__}")
        # The forecaster takes no input: a (B, horizon, 0, h, w) tensor carries only the step count and size.
        steps = h.new_empty(h.shape[0], horizon, 0, *h.shape[2:])
        hidden, _ = self.forecaster.forward_layers(steps, layers)
        stacked = torch.cat(hidden, dim=2)  # (B, horizon, sum(hidden_channels), h, w)
        if self.head_kind == "advection":
            return self.head(stacked, state[-1])
        out = self.head(stacked.flatten(0, 1)).unflatten(0, stacked.shape[:2])  # (B, horizon, C*p*p, h, w)
        out = activate(out, self.output_activation)
        return depth_to_space(out, self.patch_size, name="prediction")


def _check_head(head: str, output_activation: str, initial_mean: float | None) -> None:
    check_choice("head", head, HEADS)
    if head == "advection" and output_activation != "none":
        raise ValueError(
            "head='advection' needs output_activation='none': it moves the last frame and adds a change, "
            f"keeping the frames' own range, got output_activation={output_activation!r}"
        )
    if head == "advection" and initial_mean is not None:
        raise ValueError(
            f"head='advection' starts from the last frame, so initial_mean must be None, got {initial_mean!r}"
        )


def _build(defaults: dict[str, Any], overrides: dict[str, Any]) -> EncoderForecaster:
    return EncoderForecaster(**{**defaults, **overrides})


# Moving MNIST (Shi et al. 2015, table 1): 64x64 frames as 4x4 patches (16 channels of 16x16), 10 -> 10 frames.
_MOVING_MNIST: dict[str, Any] = {"in_channels": 1, "patch_size": 4, "default_horizon": 10}


@register_model
def shi2015_convlstm_5x5_256(**overrides: Any) -> EncoderForecaster:
    """ConvLSTM(5x5)-5x5-256 of Shi et al. 2015 (Moving MNIST): 13,524,496 parameters."""
    return _build({**_MOVING_MNIST, "hidden_channels": [256], "kernel_size": 5, "recurrent_kernel_size": 5}, overrides)


@register_model
def shi2015_convlstm_5x5_128_128(**overrides: Any) -> EncoderForecaster:
    """ConvLSTM(5x5)-5x5-128-5x5-128 of Shi et al. 2015 (Moving MNIST): 10,042,896 parameters."""
    return _build(
        {**_MOVING_MNIST, "hidden_channels": [128, 128], "kernel_size": 5, "recurrent_kernel_size": 5}, overrides
    )


@register_model
def shi2015_convlstm_5x5_128_64_64(**overrides: Any) -> EncoderForecaster:
    """ConvLSTM(5x5)-5x5-128-5x5-64-5x5-64 of Shi et al. 2015 (Moving MNIST): 7,585,296 parameters."""
    return _build(
        {**_MOVING_MNIST, "hidden_channels": [128, 64, 64], "kernel_size": 5, "recurrent_kernel_size": 5}, overrides
    )


@register_model
def shi2015_convlstm_9x9_1x1_128_128(**overrides: Any) -> EncoderForecaster:
    """ConvLSTM(9x9)-1x1-128-1x1-128 of Shi et al. 2015 (Moving MNIST): 11,550,224 parameters."""
    return _build(
        {**_MOVING_MNIST, "hidden_channels": [128, 128], "kernel_size": 9, "recurrent_kernel_size": 1}, overrides
    )


@register_model
def shi2015_convlstm_9x9_1x1_128_64_64(**overrides: Any) -> EncoderForecaster:
    """ConvLSTM(9x9)-1x1-128-1x1-64-1x1-64 of Shi et al. 2015 (Moving MNIST): 8,830,480 parameters."""
    return _build(
        {**_MOVING_MNIST, "hidden_channels": [128, 64, 64], "kernel_size": 9, "recurrent_kernel_size": 1}, overrides
    )


# Radar echo nowcasting (Shi et al. 2015, section 4.2): 100x100 frames as 2x2 patches, 5 -> 15 frames.
_RADAR: dict[str, Any] = {
    "in_channels": 1,
    "patch_size": 2,
    "hidden_channels": [64, 64],
    "kernel_size": 3,
    "recurrent_kernel_size": 3,
    "default_horizon": 15,
}


@register_model
def shi2015_radar_convlstm(**overrides: Any) -> EncoderForecaster:
    """Shi et al.'s radar nowcasting ConvLSTM: 2 layers x 64 channels, 3x3 kernels, 2x2 patches, 15 frames."""
    return _build(_RADAR, overrides)


@register_model
def shi2015_radar_convgru(**overrides: Any) -> EncoderForecaster:
    """The radar configuration with ConvGRU cells (no peepholes) in place of ConvLSTM."""
    return _build({**_RADAR, "cell": "gru", "peephole": False}, overrides)


@register_model
def radar_convlstm_advection(**overrides: Any) -> EncoderForecaster:
    """Shi's radar ConvLSTM with motion cues (radius 2) and the advection head: it forecasts by moving the last frame
    along a learned velocity field and adding a learned change."""
    return _build({**_RADAR, "head": "advection", "output_activation": "none", "motion_radius": 2}, overrides)


@register_model
def encoder_forecaster_tiny(**overrides: Any) -> EncoderForecaster:
    """A small encoder-forecaster (2 x 12 channels, 3x3 kernels, 2x2 patches) for CPU tests and demos."""
    return _build(
        {"in_channels": 1, "patch_size": 2, "hidden_channels": [12, 12], "kernel_size": 3, "default_horizon": 5},
        overrides,
    )
