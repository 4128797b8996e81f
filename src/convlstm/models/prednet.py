"""PredNet (Lotter, Kreiman & Cox 2016, "Deep predictive coding networks for video prediction and unsupervised
learning"), as in the authors' Keras 2 code.

Each layer l holds a representation R_l (a ConvLSTM with the Keras 2 hard sigmoid gates), predicts its input
Ahat_l = ReLU(conv(R_l)) (layer 0 clipped at pixel_max), and passes up the error
E_l = [ReLU(Ahat_l - A_l), ReLU(A_l - Ahat_l)], from which the next layer's target A_{l+1} = maxpool(ReLU(conv(E_l)))
is made (A_0 is the frame). One time step first updates R from the top down, R_l(t) from
(R_l(t-1), E_l(t-1), upsample(R_{l+1}(t))), then runs the bottom-up pass computing Ahat, E and A. Ahat_0(t) is the
prediction of frame t made before seeing it (from frames < t), so the first step's prediction comes from a zero state.

The model does not compute the training loss: [`PredNet.run`][convlstm.models.PredNet.run] with output_mode="error"
    gives the per-layer mean
errors (B, T, L) and [`PredNet.weighted_error`][convlstm.models.PredNet.weighted_error] weighs them over layers
(``layer_loss_weights``, "L_0" or "L_all") and time (`time_loss_weights`: 0 at t=0, 1 / (nt - 1) after) into one error
per sequence, whose batch mean is the paper's training loss.

Extrapolation (``extrap_start_time``): from that step on the input frame is replaced by the prediction of the
previous step, Ahat_0(t - 1), exactly as the original code does (coxlab/prednet issue #30 discusses that this is a
prediction of frame t - 1 standing in for frame t; weights fine-tuned with that rule expect it).
"""

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convlstm.layers import ConvLSTMCell
from convlstm.models.base import ForecastingModel, config_from_arguments, next_input
from convlstm.models.frame_output import FrameOutput, check_frame_output, start_at_zero_change
from convlstm.models.registry import register_model
from convlstm.utils.checks import check_choice, check_int, check_positive

OutputMode = Literal["prediction", "error", "all"]
OUTPUT_MODES = ("prediction", "error", "all")

#: The paper's named layer loss weightings, by the weight of every layer above the pixels (layer 0 weighs 1).
UPPER_LAYER_WEIGHT = {"L_0": 0.0, "L_all": 0.1}


def named_layer_loss_weights(name: str, num_layers: int) -> tuple[float, ...]:
    """The paper's layer loss weights for ``num_layers`` layers: "L_0" = (1, 0, ...), "L_all" = (1, 0.1, ...)."""
    if name not in UPPER_LAYER_WEIGHT:
        raise ValueError(f"layer_loss_weights must be one of {sorted(UPPER_LAYER_WEIGHT)} or numbers, got {name!r}")
    return (1.0,) + (UPPER_LAYER_WEIGHT[name],) * (num_layers - 1)


def parse_layer_loss_weights(spec: str | Sequence[float], num_layers: int) -> tuple[float, ...]:
    """One loss weight per layer from a name ("L_0", "L_all": `named_layer_loss_weights`) or from numbers.

    Raises:
        ValueError: an unknown name, or not exactly ``num_layers`` numbers.
    """
    if isinstance(spec, str):
        return named_layer_loss_weights(spec, num_layers)
    try:
        weights = tuple(float(w) for w in spec)
    except (TypeError, ValueError):
        raise ValueError(f"layer_loss_weights must be 'L_0', 'L_all' or numbers, got {spec!r}") from None
    if len(weights) != num_layers:
        raise ValueError(f"layer_loss_weights must have {num_layers} entries (one per layer), got {weights}")
    return weights


def weighted_prednet_error(errors: Tensor, layer_weights: Tensor, time_weights: Tensor) -> Tensor:
    """The paper's error per sequence, sum_t w_t sum_l lambda_l errors[b, t, l], in float32; its batch mean is
    PredNet's training loss.

    Args:
        errors: (B, nt, L) mean error of each layer at each step (``output_mode="error"``).
        layer_weights: lambda (L,).
        time_weights: w (nt,).

    Returns:
        (B,) weighted errors.
    """
    if not isinstance(errors, Tensor) or errors.ndim != 3:
        got = tuple(errors.shape) if isinstance(errors, Tensor) else type(errors).__name__
        raise ValueError(f"errors must have shape (B, nt, L), got {got}")
    if layer_weights.shape != errors.shape[2:] or time_weights.shape != errors.shape[1:2]:
        raise ValueError(
            f"errors of shape {tuple(errors.shape)} need layer_weights ({errors.shape[2]},) and time_weights "
            f"({errors.shape[1]},), got {tuple(layer_weights.shape)} and {tuple(time_weights.shape)}"
        )
    per_step = errors.float() @ layer_weights.to(device=errors.device, dtype=torch.float32)  # (B, nt)
    return per_step @ time_weights.to(device=errors.device, dtype=torch.float32)  # (B,)


def time_loss_weights(num_steps: int) -> Tensor:
    """The paper's weights over time steps: 0 at t=0 (a prediction from nothing) and 1 / (nt - 1) after. (nt,)"""
    check_int("num_steps", num_steps, 2)
    weights = torch.full((num_steps,), 1.0 / (num_steps - 1))
    weights[0] = 0.0
    return weights


@dataclasses.dataclass
class PredNetConfig:
    stack_sizes: tuple[int, ...] = (3, 48, 96, 192)
    r_stack_sizes: tuple[int, ...] | None = None
    a_filter_sizes: tuple[int, ...] | None = None
    ahat_filter_sizes: tuple[int, ...] | None = None
    r_filter_sizes: tuple[int, ...] | None = None
    pixel_max: float = 1.0
    output_mode: OutputMode = "error"
    extrap_start_time: int | None = None
    layer_loss_weights: str | tuple[float, ...] = "L_0"
    default_horizon: int = 1
    output: FrameOutput = "frame"


@dataclasses.dataclass
class PredNetState:
    """Everything one step hands to the next; lists run over layers l = 0 (pixels) .. L - 1.

    r, c: the ConvLSTM states R_l and cells, (B, R_l, H / 2**l, W / 2**l).
    e: the errors E_l, (B, 2 * A_l, H / 2**l, W / 2**l).
    prediction: Ahat_0 of the last step (B, C, H, W), the input when extrapolating.
    step: steps taken since the zero state (compared with extrap_start_time).
    latest_frame: what the model knows best of the last step's frame (B, C, H, W), zeros before the first: the
        input when it was an observed frame, the step's own prediction when the input stood in for an unseen one
        (extrapolation); what output="residual" adds its change to. None stands for zeros.
    """

    r: list[Tensor]
    c: list[Tensor]
    e: list[Tensor]
    prediction: Tensor
    step: int
    latest_frame: Tensor | None = None


@dataclasses.dataclass
class PredNetOutput:
    """What output_mode="all" returns; sequences are (B, T, ...).

    predictions: Ahat_0 (B, T, C, H, W). errors: per-layer mean of E_l, (B, T, L).
    representations: R_l per layer, (B, T, R_l, H_l, W_l). error_units: E_l per layer, (B, T, 2 A_l, H_l, W_l).
    """

    predictions: Tensor
    errors: Tensor
    representations: list[Tensor]
    error_units: list[Tensor]


class PredNet(ForecastingModel):
    """PredNet: a stack of ConvLSTM layers that each predict their input and pass their prediction error up.

    Args:
        stack_sizes: channels of A_l and Ahat_l per layer; the first is the frame channels (KITTI: (3, 48, 96, 192)).
        r_stack_sizes: channels of R_l per layer (default: stack_sizes).
        a_filter_sizes: kernel of the E_l -> A_{l+1} convolutions, one per layer but the last (default 3).
        ahat_filter_sizes: kernel of the R_l -> Ahat_l convolutions, one per layer (default 3).
        r_filter_sizes: kernel of the ConvLSTM of each layer (default 3).
        pixel_max: the largest pixel value; Ahat_0 is clipped to it.
        output_mode: what [`run`][convlstm.models.PredNet.run] returns by default: "prediction" (Ahat_0, (B, T, C, H,
            W)), "error" (per-layer mean errors, (B, T, L)) or "all" (`PredNetOutput`).
        extrap_start_time: the step from which [`run`][convlstm.models.PredNet.run] feeds the previous prediction back
            instead of the frame (None: never). The forecaster call always extrapolates from the end of the context.
        layer_loss_weights: "L_0", "L_all" or one number per layer, used by
            [`weighted_error`][convlstm.models.PredNet.weighted_error].
        default_horizon: frames forecast when ``horizon`` is not given.
        output: how the pixel prediction Ahat_0 is made: "frame" (the paper's ReLU(conv(R_0)), clipped) or
            "residual" (the previous input frame plus conv(R_0), the convolution starting at zero, then ReLU and the
            clip: untrained, the model predicts the previous frame, and extrapolates by repeating the last one).
            Not to be confused with ``output_mode``, which chooses what [`run`][convlstm.models.PredNet.run] returns.

    Frames must have H and W divisible by 2**(L - 1), L = len(stack_sizes).

    Shape:
        [`run`][convlstm.models.PredNet.run]: frames (B, T, C, H, W) -> output as output_mode says, and a
        `PredNetState`.
        forward: context (B, T_in, C, H, W) -> predictions (B, horizon, C, H, W).

    Examples:
        >>> model = create_model("prednet_kitti", layer_loss_weights="L_0")
        >>> errors, _ = model.run(frames)                   # frames (4, 10, 3, 128, 160) in [0, 1]; errors (4, 10, 4)
        >>> loss = model.weighted_error(errors).mean()      # the paper's training loss
        >>> future = model(frames, horizon=5)               # (4, 5, 3, 128, 160)
    """

    family = "prednet"
    config_class = PredNetConfig

    def __init__(
        self,
        *,
        stack_sizes: Sequence[int] = (3, 48, 96, 192),
        r_stack_sizes: Sequence[int] | None = None,
        a_filter_sizes: Sequence[int] | None = None,
        ahat_filter_sizes: Sequence[int] | None = None,
        r_filter_sizes: Sequence[int] | None = None,
        pixel_max: float = 1.0,
        output_mode: OutputMode = "error",
        extrap_start_time: int | None = None,
        layer_loss_weights: str | Sequence[float] = "L_0",
        default_horizon: int = 1,
        output: FrameOutput = "frame",
    ) -> None:
        super().__init__()
        check_frame_output(output)
        stack_sizes = _ints(stack_sizes, "stack_sizes", None)
        num_layers = len(stack_sizes)
        r_stack_sizes = _ints(stack_sizes if r_stack_sizes is None else r_stack_sizes, "r_stack_sizes", num_layers)
        a_filter_sizes = _ints(a_filter_sizes, "a_filter_sizes", num_layers - 1)
        ahat_filter_sizes = _ints(ahat_filter_sizes, "ahat_filter_sizes", num_layers)
        r_filter_sizes = _ints(r_filter_sizes, "r_filter_sizes", num_layers)
        for kernel in (*a_filter_sizes, *ahat_filter_sizes, *r_filter_sizes):
            if kernel % 2 == 0:
                raise ValueError(f"filter sizes must be odd (for 'same' padding), got {kernel}")
        pixel_max = check_positive("pixel_max", pixel_max)
        check_choice("output_mode", output_mode, OUTPUT_MODES)
        if extrap_start_time is not None and (not isinstance(extrap_start_time, int) or extrap_start_time < 1):
            raise ValueError(f"extrap_start_time must be None or an int >= 1, got {extrap_start_time!r}")
        weights = parse_layer_loss_weights(layer_loss_weights, num_layers)
        if not isinstance(layer_loss_weights, str):
            layer_loss_weights = weights
        check_int("default_horizon", default_horizon, 1)
        self.config = config_from_arguments(PredNetConfig, locals())
        self.num_layers = num_layers
        self.default_horizon = default_horizon
        self.layer_weights = weights

        # R_l: a ConvLSTM whose input is [E_l(t-1), upsample(R_{l+1}(t))] (the top layer: E_l(t-1) only).
        self.representation = nn.ModuleList(
            ConvLSTMCell(
                2 * stack_sizes[level] + (r_stack_sizes[level + 1] if level < num_layers - 1 else 0),
                r_stack_sizes[level],
                r_filter_sizes[level],
                recurrent_activation="hard_sigmoid_keras2",
                forget_bias=0.0,  # Keras 2 Conv2D biases start at zero, the forget gate's too
            )
            for level in range(num_layers)
        )
        # Ahat_l = ReLU(conv(R_l)); A_{l+1} = maxpool(ReLU(conv(E_l))).
        self.prediction = nn.ModuleList(
            nn.Conv2d(r_stack_sizes[level], stack_sizes[level], kernel, padding=kernel // 2)
            for level, kernel in enumerate(ahat_filter_sizes)
        )
        self.target = nn.ModuleList(
            nn.Conv2d(2 * stack_sizes[level], stack_sizes[level + 1], kernel, padding=kernel // 2)
            for level, kernel in enumerate(a_filter_sizes)
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Keras 2 defaults, as the original: Glorot-uniform kernels, zero biases.

        Keras had one convolution per gate over [R, E, R_up]; here each gate's kernel is split into an input and a
        recurrent part, both drawn with the bound of the whole per-gate kernel so the distribution is the same.
        """
        for cell in self.representation:
            assert isinstance(cell, ConvLSTMCell)
            assert cell.input_conv is not None
            kernel = math.prod(cell.recurrent_conv.kernel_size)
            fan_in = (cell.in_channels + cell.hidden_channels) * kernel
            fan_out = cell.hidden_channels * kernel
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            nn.init.uniform_(cell.input_conv.weight, -bound, bound)
            nn.init.uniform_(cell.recurrent_conv.weight, -bound, bound)
            if cell.bias is not None:
                nn.init.zeros_(cell.bias)
        for conv in (*self.prediction, *self.target):
            assert isinstance(conv, nn.Conv2d)
            assert conv.bias is not None
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)
        if self.config.output == "residual":
            pixels = self.prediction[0]
            assert isinstance(pixels, nn.Conv2d)
            start_at_zero_change(pixels)

    # ----------------------------------------------------------------------------------------------- one step
    def initial_state(self, frames: Tensor) -> PredNetState:
        """Zeros for frames (B, T, C, H, W) (only their batch, size, dtype and device are used)."""
        batch, height, width = frames.shape[0], frames.shape[-2], frames.shape[-1]
        stack, r_stack = self.config.stack_sizes, self.config.r_stack_sizes

        def zeros(channels: int, level: int) -> Tensor:
            return frames.new_zeros(batch, channels, height // 2**level, width // 2**level)

        return PredNetState(
            r=[zeros(r_stack[level], level) for level in range(self.num_layers)],
            c=[zeros(r_stack[level], level) for level in range(self.num_layers)],
            e=[zeros(2 * stack[level], level) for level in range(self.num_layers)],
            prediction=zeros(stack[0], 0),
            step=0,
            latest_frame=zeros(stack[0], 0),
        )

    def step(
        self, frame: Tensor, state: PredNetState, *, observed: bool | Tensor = True
    ) -> tuple[PredNetState, Tensor]:
        """One time step on the input ``frame`` (B, C, H, W) (used as given: extrapolation is decided by callers).

        Args:
            frame: the input of this step, an observed frame or a stand-in for an unseen one.
            state: from the previous step or [`initial_state`][convlstm.models.PredNet.initial_state].
            observed: False (or False in a bool (B,) tensor, per sequence) where ``frame`` stands in for an unseen
                frame; the state then keeps this step's prediction as the latest frame, which output="residual"
                builds the next prediction on (the stand-in of the original rule is one step older).

        Returns the new state (its ``prediction`` is Ahat_0(t), the prediction of this step's frame) and the
        per-layer mean errors (B, L).
        """
        top = self.num_layers - 1
        r: list[Tensor] = [frame] * self.num_layers  # placeholders, all replaced below
        c: list[Tensor] = [frame] * self.num_layers
        # Top-down: R_l(t) from R_l(t-1), E_l(t-1) and the already updated R_{l+1}(t).
        for level in reversed(range(self.num_layers)):
            inputs = state.e[level]  # (B, 2 A_l, H_l, W_l)
            if level < top:
                inputs = torch.cat([inputs, F.interpolate(r[level + 1], scale_factor=2, mode="nearest")], dim=1)
            # (B, R_l, H_l, W_l) each
            r[level], c[level] = self.representation[level](inputs, (state.r[level], state.c[level]))
        # Bottom-up: predictions, errors and the next layer's target.
        target = frame  # A_0
        errors: list[Tensor] = []
        prediction = frame
        for level in range(self.num_layers):
            ahat = self.prediction[level](r[level])  # (B, A_l, H_l, W_l)
            if level == 0 and self.config.output == "residual" and state.latest_frame is not None:
                ahat = ahat + state.latest_frame  # the change added to the last frame
            ahat = F.relu(ahat)
            if level == 0:
                ahat = ahat.clamp(max=self.config.pixel_max)
                prediction = ahat
            errors.append(torch.cat([F.relu(ahat - target), F.relu(target - ahat)], dim=1))  # (B, 2 A_l, H_l, W_l)
            if level < top:
                # A_{l+1}: (B, A_{l+1}, H_l / 2, W_l / 2)
                target = F.max_pool2d(F.relu(self.target[level](errors[level])), 2)
        mean_errors = torch.stack([e.flatten(1).mean(dim=1) for e in errors], dim=1)  # (B, L)
        if isinstance(observed, bool):
            latest = frame if observed else prediction
        else:
            latest = torch.where(observed.view(-1, 1, 1, 1), frame, prediction)
        new_state = PredNetState(r=r, c=c, e=errors, prediction=prediction, step=state.step + 1, latest_frame=latest)
        return new_state, mean_errors

    # ----------------------------------------------------------------------------------------------- sequences
    def run(
        self,
        frames: Tensor,
        state: PredNetState | None = None,
        *,
        output_mode: OutputMode | None = None,
        extrap_start_time: int | None = None,
    ) -> tuple[Any, PredNetState]:
        """Runs PredNet over ``frames`` (B, T, C, H, W) from ``state`` (None: zeros), like the Keras layer.

        Args:
            output_mode: overrides the configured one ("prediction", "error" or "all").
            extrap_start_time: overrides the configured one; counted in steps since the zero state, so a sequence
                run in chunks extrapolates from the same frame as one call.

        Returns:
            (output, state): Ahat_0 (B, T, C, H, W), mean errors (B, T, L) or a `PredNetOutput`; the state
            after the last step.
        """
        mode = self.config.output_mode if output_mode is None else output_mode
        check_choice("output_mode", mode, OUTPUT_MODES)
        extrap = self.config.extrap_start_time if extrap_start_time is None else extrap_start_time
        if extrap is not None and (not isinstance(extrap, int) or extrap < 1):
            raise ValueError(f"extrap_start_time must be None or an int >= 1, got {extrap!r}")
        self._check_frames(frames, "frames")
        state = self.initial_state(frames) if state is None else self._check_state(state, frames)
        predictions, errors, representations, error_units = [], [], [], []
        for t in range(frames.shape[1]):
            extrapolating = extrap is not None and state.step >= extrap
            frame = state.prediction if extrapolating else frames[:, t]
            state, step_errors = self.step(frame, state, observed=not extrapolating)
            predictions.append(state.prediction)
            errors.append(step_errors)
            if mode == "all":
                representations.append(state.r)
                error_units.append(state.e)
        if mode == "prediction":
            return torch.stack(predictions, dim=1), state
        if mode == "error":
            return torch.stack(errors, dim=1), state
        return PredNetOutput(
            predictions=torch.stack(predictions, dim=1),
            errors=torch.stack(errors, dim=1),
            representations=[torch.stack([r[level] for r in representations], 1) for level in range(self.num_layers)],
            error_units=[torch.stack([e[level] for e in error_units], 1) for level in range(self.num_layers)],
        ), state

    def forward(
        self,
        context: Tensor,
        horizon: int | None = None,
        targets: Tensor | None = None,
        teacher_forcing: Tensor | None = None,
    ) -> Tensor:
        """Runs over the context, then extrapolates ``horizon`` frames.

        Forecast k is Ahat_0(T_in + k), made at step T_in + k before that step's input is consumed. The input of
        step T_in + k stands in for the unseen frame T_in + k: the prediction of the previous step (the original
        extrapolation rule, so this equals [`run`][convlstm.models.PredNet.run] with extrap_start_time=T_in), or, where
        ``teacher_forcing[:, k]`` is True, the true frame ``targets[:, k]``. As for the other forecasters a forced
        frame k changes the forecasts from k + 1 on, and forcing every step gives the one-step predictions over the
        true sequence. The configured extrap_start_time is not used.
        """
        horizon, mask = self.check_forecast_arguments(
            context, horizon, targets, teacher_forcing, channels=self.config.stack_sizes[0]
        )
        self._check_frames(context, "context")
        state = self.initial_state(context)
        for t in range(context.shape[1]):
            state, _ = self.step(context[:, t], state)
        predictions = []
        for step in range(horizon):
            # The input stands in for frame T_in + step; the step's own prediction does not depend on it.
            frame = next_input(state.prediction, step, targets, mask)
            state, _ = self.step(frame, state, observed=False if mask is None else mask[:, step])
            predictions.append(state.prediction)
        return torch.stack(predictions, dim=1)  # (B, horizon, C, H, W)

    # ----------------------------------------------------------------------------------------------- loss helper
    def weighted_error(
        self,
        errors: Tensor,
        layer_weights: Sequence[float] | Tensor | None = None,
        time_weights: Sequence[float] | Tensor | None = None,
    ) -> Tensor:
        """The paper's error per sequence: sum_t w_t sum_l lambda_l errors[b, t, l]; its batch mean is the loss.

        Args:
            errors: (B, nt, L) from [`run`][convlstm.models.PredNet.run] with output_mode="error".
            layer_weights: lambda (L,) (default: the configured ``layer_loss_weights``).
            time_weights: w (nt,) (default: `time_loss_weights`, 0 at t=0 and 1 / (nt - 1) after).

        Returns:
            (B,) weighted errors.
        """
        if not isinstance(errors, Tensor) or errors.ndim != 3 or errors.shape[2] != self.num_layers:
            got = tuple(errors.shape) if isinstance(errors, Tensor) else type(errors).__name__
            raise ValueError(f"errors must have shape (B, nt, L={self.num_layers}), got {got}")
        steps = errors.shape[1]
        lam = torch.as_tensor(self.layer_weights if layer_weights is None else layer_weights, dtype=torch.float32)
        w = time_loss_weights(steps) if time_weights is None else torch.as_tensor(time_weights, dtype=torch.float32)
        return weighted_prednet_error(errors, lam, w).to(errors.dtype)

    # ----------------------------------------------------------------------------------------------- checks
    def _check_frames(self, frames: Tensor, name: str) -> None:
        channels = self.config.stack_sizes[0]
        if not isinstance(frames, Tensor) or frames.ndim != 5 or frames.shape[2] != channels:
            got = tuple(frames.shape) if isinstance(frames, Tensor) else type(frames).__name__
            raise ValueError(f"{name} must have shape (B, T, C={channels}, H, W), got {got}")
        if frames.shape[0] < 1 or frames.shape[1] < 1:
            raise ValueError(f"{name} must have at least one sequence and one step, got {tuple(frames.shape)}")
        divisor = 2 ** (self.num_layers - 1)
        height, width = frames.shape[-2:]
        if height % divisor or width % divisor:
            raise ValueError(
                f"{name} must have H and W divisible by 2**(layers - 1) = {divisor} ({self.num_layers} layers), "
                f"got {height}x{width}; crop or pad them to a multiple"
            )

    def _check_state(self, state: PredNetState, frames: Tensor) -> PredNetState:
        if not isinstance(state, PredNetState):
            raise ValueError(f"state must be a PredNetState (from run or initial_state), got {type(state).__name__}")
        expected = self.initial_state(frames)
        for name in ("r", "c", "e"):
            got, want = getattr(state, name), getattr(expected, name)
            if len(got) != len(want):
                raise ValueError(f"state.{name} must have {len(want)} entries (one per layer), got {len(got)}")
            for level, (g, w) in enumerate(zip(got, want, strict=True)):
                if g.shape != w.shape:
                    raise ValueError(f"state.{name}[{level}] must have shape {tuple(w.shape)}, got {tuple(g.shape)}")
        for name in ("prediction", "latest_frame"):
            got_tensor = getattr(state, name)
            if got_tensor is not None and got_tensor.shape != expected.prediction.shape:
                raise ValueError(
                    f"state.{name} must have shape {tuple(expected.prediction.shape)}, got {tuple(got_tensor.shape)}"
                )
        return state


def _ints(values: Sequence[int] | None, name: str, length: int | None) -> tuple[int, ...]:
    """Checks a per-layer tuple of ints; None means 3 (the paper's filter size) for each of ``length`` layers."""
    if values is None and length is not None:
        return (3,) * length
    if isinstance(values, int) or not isinstance(values, Sequence):
        raise ValueError(f"{name} must be a sequence of ints >= 1, got {values!r}")
    result = tuple(values)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in result):
        raise ValueError(f"{name} must be a sequence of ints >= 1, got {values!r}")
    if length is None and len(result) < 1:
        raise ValueError(f"{name} must have at least one entry, got {values!r}")
    if length is not None and len(result) != length:
        raise ValueError(f"{name} must have {length} entries, got {len(result)}: {values!r}")
    return result


# ---------------------------------------------------------------------------------------------------- builders
@register_model
def prednet_kitti(**overrides: Any) -> PredNet:
    """The KITTI PredNet of the paper: stack sizes (3, 48, 96, 192) for 128x160 RGB frames, L_0 weights."""
    return PredNet(**overrides)


@register_model
def prednet_tiny(**overrides: Any) -> PredNet:
    """Three small layers (3, 4, 8), for CPU tests and demos (frames divisible by 4)."""
    return PredNet(**{"stack_sizes": (3, 4, 8), **overrides})
