"""The ConvLSTM U-Net: a U-Net over every frame whose skip connections and bottleneck carry a recurrent memory.

On the way down each scale runs two 3x3 convolutions (+ norm + ReLU) on every frame, then a ConvLSTM (or ConvGRU)
over the whole sequence at that scale; its output sequence is both the skip connection and, after 2x2 max-pooling,
the input of the next scale. The bottleneck has its own recurrent layer. On the way up each scale upsamples,
concatenates the skip and runs two convolutions again; a 1x1 head gives per-pixel outputs for every frame.

Two families share the network:

- ``ConvLSTMUNet`` ("convlstm_unet"): sequence to sequence, ``net(frames, state) -> (output, state)``. With
  ``head="segmentation"`` the output is per-pixel logits (B, T, K, H, W), so that a task can train with
  ``F.cross_entropy(logits.flatten(0, 1), labels.flatten(0, 1))`` (log-softmax inside, numerically stable);
  [`ConvLSTMUNet.predict_proba`][convlstm.models.ConvLSTMUNet.predict_proba] applies the softmax. With
  ``head="regression"`` it gives frames.
- ``ConvLSTMUNetForecaster`` ("convlstm_unet_forecaster"): the regression network used as a next-frame model,
  with the forecaster call ``model(context, horizon, targets, teacher_forcing)``.

Frames must have H and W divisible by 2**depth (a ValueError says so); crop or pad them in the data pipeline,
where the choice is visible, rather than here.
"""

import dataclasses
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convlstm.layers import ConvGRU, ConvLSTM
from convlstm.layers.folding import per_frame
from convlstm.models.base import ForecastingModel, PretrainedModel, check_tensor_type, config_from_arguments, rollout
from convlstm.models.frame_output import FrameOutput, add_change, check_frame_output, start_at_zero_change
from convlstm.models.registry import register_model
from convlstm.utils.checks import check_choice, check_int

Cell = Literal["lstm", "gru"]
Head = Literal["segmentation", "regression"]
Upsample = Literal["transposed", "bilinear"]
Norm = Literal["group", "batch"]
OutputActivation = Literal["linear", "sigmoid"]

#: One entry per scale (depth + 1, finest first, the bottleneck last): the state list of that scale's recurrent
#: layer (one entry per direction), or an empty list for the per-frame variant (recurrent=False).
UNetState = list[list[Any]]


@dataclasses.dataclass
class ConvLSTMUNetConfig:
    in_channels: int = 1
    out_channels: int = 2
    base_channels: int = 12
    depth: int = 2
    kernel_size: int = 3
    cell: Cell = "lstm"
    bidirectional: bool = False
    recurrent: bool = True
    head: Head = "segmentation"
    output_activation: OutputActivation = "linear"
    upsample: Upsample = "transposed"
    norm: Norm | None = "group"
    norm_groups: int = 4


# ---------------------------------------------------------------------------------------------------- blocks
def _norm(kind: Norm | None, channels: int, groups: int) -> nn.Module:
    if kind is None:
        return nn.Identity()
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.GroupNorm(groups, channels)


class ConvBlock(nn.Sequential):
    """Two (conv kxk -> norm -> ReLU) on one frame: (N, C_in, H, W) -> (N, C_out, H, W)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, norm: Norm | None, groups: int) -> None:
        # The norm right after each convolution has its own shift, so the convolution goes without a bias.
        bias = norm is None
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias),
            _norm(norm, out_channels, groups),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias),
            _norm(norm, out_channels, groups),
            nn.ReLU(inplace=True),
        )


class PerFrameMemory(nn.Module):
    """What replaces the recurrent layer when recurrent=False: a kxk convolution + tanh of the same width.

    tanh keeps the output in (-1, 1) like a ConvLSTM's h, so the two variants differ only in the recurrence.
    Shape: (B, T, C, H, W) -> (B, T, F, H, W); the state is always an empty list.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)

    def forward(self, x: Tensor, state: list[Any] | None = None) -> tuple[Tensor, list[Any]]:
        if state:
            raise ValueError(f"the per-frame variant (recurrent=False) has no state, got {len(state)} entries")
        return torch.tanh(per_frame(self.conv, x)), []


class Up(nn.Module):
    """Doubles H and W of one frame: a 2x2 stride-2 transposed convolution, or bilinear resizing + kxk conv."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, mode: Upsample) -> None:
        super().__init__()
        self.mode = mode
        if mode == "transposed":
            self.conv: nn.Module = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        else:
            self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)

    def forward(self, x: Tensor) -> Tensor:  # (N, C_in, H, W) -> (N, C_out, 2H, 2W)
        if self.mode == "bilinear":
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return self.conv(x)


# ---------------------------------------------------------------------------------------------------- network
class ConvLSTMUNet(PretrainedModel):
    """A U-Net with a ConvLSTM (or ConvGRU) at every scale, for per-pixel outputs on every frame of a sequence.

    Args:
        in_channels: channels C of the input frames.
        out_channels: classes K for head="segmentation", output frame channels for head="regression".
        base_channels: filters of the finest scale; they double at every scale down.
        depth: number of 2x2 poolings (scales = depth + 1, the last is the bottleneck); frames must have H and W
            divisible by 2**depth.
        kernel_size: of all convolutions and of the recurrent layers (odd).
        cell: "lstm" (ConvLSTM) or "gru" (ConvGRU).
        bidirectional: run each recurrent layer both ways in time (its output, and so each skip, has twice the
            channels). The output at t then depends on later frames; not for forecasting.
        recurrent: False replaces every recurrent layer by a per-frame convolution of the same width (the
            per-frame U-Net to compare with; outputs at t depend on frame t only).
        head: "segmentation" (logits over K classes) or "regression" (frames).
        output_activation: "linear" or "sigmoid", applied to the regression head (segmentation must stay linear:
            the logits go to cross-entropy).
        upsample: "transposed" (2x2 stride-2 transposed conv) or "bilinear" (bilinear resize + kxk conv).
        norm: "group" (GroupNorm, per frame: independent of batch and sequence length, so stepping frame by frame
            equals one call also in training mode), "batch" (BatchNorm over all B*T frames) or None.
        norm_groups: groups of GroupNorm; must divide base_channels.

    Shape:
        frames: (B, T, C, H, W) -> output (B, T, K or out_channels, H, W); state: `UNetState`.

    Examples:
        >>> net = create_model("convlstm_unet", num_classes=3)
        >>> logits, state = net(torch.randn(2, 8, 1, 64, 64))   # (2, 8, 3, 64, 64)
        >>> loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(0, 1))   # labels (2, 8, 64, 64) int64
    """

    family = "convlstm_unet"
    config_class = ConvLSTMUNetConfig

    def __init__(
        self,
        *,
        in_channels: int = 1,
        out_channels: int = 2,
        base_channels: int = 12,
        depth: int = 2,
        kernel_size: int = 3,
        cell: Cell = "lstm",
        bidirectional: bool = False,
        recurrent: bool = True,
        head: Head = "segmentation",
        output_activation: OutputActivation = "linear",
        upsample: Upsample = "transposed",
        norm: Norm | None = "group",
        norm_groups: int = 4,
    ) -> None:
        super().__init__()
        check_int("in_channels", in_channels)
        check_int("out_channels", out_channels)
        check_int("base_channels", base_channels)
        check_int("depth", depth)
        check_int("kernel_size", kernel_size)
        check_choice("cell", cell, ("lstm", "gru"))
        check_choice("head", head, ("segmentation", "regression"))
        check_choice("output_activation", output_activation, ("linear", "sigmoid"))
        check_choice("upsample", upsample, ("transposed", "bilinear"))
        check_choice("norm", norm, ("group", "batch", None))
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (for 'same' padding), got {kernel_size}")
        if norm == "group" and (not isinstance(norm_groups, int) or norm_groups < 1 or base_channels % norm_groups):
            raise ValueError(f"norm_groups must divide base_channels={base_channels}, got {norm_groups!r}")
        if not recurrent and (bidirectional or cell != "lstm"):
            raise ValueError(
                f"recurrent=False has no recurrent layers: leave cell='lstm' and bidirectional=False "
                f"(got cell={cell!r}, bidirectional={bidirectional!r})"
            )
        if head == "segmentation" and output_activation != "linear":
            raise ValueError(
                f"head='segmentation' returns logits: output_activation must be 'linear', got {output_activation!r}"
            )
        self.config = config_from_arguments(ConvLSTMUNetConfig, locals())
        self.depth = depth
        directions = 2 if bidirectional else 1
        widths = [base_channels * 2**level for level in range(depth + 1)]  # conv widths, finest first

        def memory(channels: int) -> nn.Module:
            if not recurrent:
                return PerFrameMemory(channels, channels, kernel_size)
            layer = ConvLSTM if cell == "lstm" else ConvGRU
            return layer(channels, channels, kernel_size, bidirectional=bidirectional)

        # Down: scale l sees (B, T, width_{l-1} * directions, H / 2**l, W / 2**l); the bottleneck is scale `depth`.
        self.down_blocks = nn.ModuleList()
        self.memories = nn.ModuleList()
        block_in = in_channels
        for width in widths:
            self.down_blocks.append(ConvBlock(block_in, width, kernel_size, norm, norm_groups))
            self.memories.append(memory(width))
            block_in = width * directions
        # Up: scale l gets the upsampled scale l + 1 (width_l channels) beside its skip (width_l * directions).
        self.ups = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for level in range(depth):
            below = widths[level + 1] * (directions if level == depth - 1 else 1)
            self.ups.append(Up(below, widths[level], kernel_size, upsample))
            self.up_blocks.append(
                ConvBlock(widths[level] * (1 + directions), widths[level], kernel_size, norm, norm_groups)
            )
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    @property
    def num_classes(self) -> int:
        """K, the classes of the segmentation head."""
        if self.config.head != "segmentation":
            raise ValueError(f"num_classes exists for head='segmentation' only, this network has {self.config.head!r}")
        return int(self.config.out_channels)

    def forward(self, frames: Tensor, state: UNetState | None = None) -> tuple[Tensor, UNetState]:
        """Runs the network over a sequence, continuing from ``state`` (None: zeros).

        Returns:
            (output, state): logits (B, T, K, H, W) for segmentation or frames (B, T, out_channels, H, W) for
            regression; the state after the last frame, to continue with the next chunk (unidirectional only).
        """
        _check_frames(frames, self.config.in_channels, 2**self.depth, f"2**depth (depth={self.depth})")
        check_tensor_type(self, frames, "frames")
        if state is not None and (not isinstance(state, list | tuple) or len(state) != self.depth + 1):
            got = f"{len(state)} entries" if isinstance(state, list | tuple) else type(state).__name__
            raise ValueError(f"state must be a list of depth + 1 = {self.depth + 1} per-scale states, got {got}")
        new_state: UNetState = []
        skips: list[Tensor] = []
        x = frames  # (B, T, C, H, W)
        for level in range(self.depth + 1):
            x = per_frame(self.down_blocks[level], x)  # (B, T, width_l, H_l, W_l)
            x, scale_state = self.memories[level](x, None if state is None else state[level])
            new_state.append(list(scale_state))
            if level < self.depth:
                skips.append(x)  # (B, T, width_l * directions, H_l, W_l)
                x = _pool(x)  # (B, T, width_l * directions, H_l / 2, W_l / 2)
        for level in reversed(range(self.depth)):
            x = per_frame(self.ups[level], x)  # (B, T, width_l, H_l, W_l)
            x = per_frame(self.up_blocks[level], torch.cat([x, skips[level]], dim=2))  # (B, T, width_l, H_l, W_l)
        out = per_frame(self.head, x)  # (B, T, out_channels, H, W)
        if self.config.output_activation == "sigmoid":
            out = torch.sigmoid(out)
        return out, new_state

    def predict_proba(self, frames: Tensor, state: UNetState | None = None) -> Tensor:
        """Class probabilities (B, T, K, H, W): the softmax over K of the logits
        [`forward`][convlstm.models.ConvLSTMUNet.forward] returns."""
        if self.config.head != "segmentation":
            raise ValueError(f"predict_proba needs head='segmentation', this network has head={self.config.head!r}")
        logits, _ = self(frames, state)
        return logits.softmax(dim=2)


def _pool(x: Tensor) -> Tensor:
    """2x2 max-pooling of every frame: (B, T, C, H, W) -> (B, T, C, H / 2, W / 2)."""
    return F.max_pool2d(x.flatten(0, 1), 2).unflatten(0, x.shape[:2])


# ---------------------------------------------------------------------------------------------------- forecaster
@dataclasses.dataclass
class ConvLSTMUNetForecasterConfig:
    in_channels: int = 1
    base_channels: int = 12
    depth: int = 2
    kernel_size: int = 3
    cell: Cell = "lstm"
    recurrent: bool = True
    output_activation: OutputActivation = "sigmoid"
    upsample: Upsample = "transposed"
    norm: Norm | None = "group"
    norm_groups: int = 4
    default_horizon: int = 10
    output: FrameOutput = "frame"


class ConvLSTMUNetForecaster(ForecastingModel):
    """The ConvLSTM U-Net as a next-frame forecaster: at every step it predicts frame t + 1 from frames up to t.

    ``model(context, horizon)`` reads the context (its last output is the first forecast), then rolls out
    ``horizon - 1`` more steps, each fed the previous forecast (or the true frame where ``teacher_forcing`` says
    so). Unidirectional only: a backward pass would need frames that have not happened yet.

    The arguments are those of [`ConvLSTMUNet`][convlstm.models.ConvLSTMUNet] (head="regression",
    out_channels=in_channels), plus:

    Args:
        default_horizon: frames forecast when ``horizon`` is not given.
        output: "frame" (the head draws frame t + 1) or "residual" (frame t + 1 is frame t plus the head's output,
            the head starting at zero: untrained, the model copies the last frame). With "residual",
            output_activation="sigmoid" clamps the prediction to [0, 1] instead of squashing it.

    Shape:
        context: (B, T_in, C, H, W) -> predictions (B, horizon, C, H, W).
    """

    family = "convlstm_unet_forecaster"
    config_class = ConvLSTMUNetForecasterConfig

    def __init__(
        self,
        *,
        in_channels: int = 1,
        base_channels: int = 12,
        depth: int = 2,
        kernel_size: int = 3,
        cell: Cell = "lstm",
        recurrent: bool = True,
        output_activation: OutputActivation = "sigmoid",
        upsample: Upsample = "transposed",
        norm: Norm | None = "group",
        norm_groups: int = 4,
        default_horizon: int = 10,
        output: FrameOutput = "frame",
    ) -> None:
        super().__init__()
        check_int("default_horizon", default_horizon)
        check_frame_output(output)
        check_choice("output_activation", output_activation, ("linear", "sigmoid"))
        self.config = config_from_arguments(ConvLSTMUNetForecasterConfig, locals())
        self.default_horizon = default_horizon
        self.net = ConvLSTMUNet(
            in_channels=in_channels,
            out_channels=in_channels,
            base_channels=base_channels,
            depth=depth,
            kernel_size=kernel_size,
            cell=cell,
            recurrent=recurrent,
            head="regression",
            # A residual output adds the head's change to the last frame; the activation (a clamp) comes after.
            output_activation="linear" if output == "residual" else output_activation,
            upsample=upsample,
            norm=norm,
            norm_groups=norm_groups,
        )
        if output == "residual":
            start_at_zero_change(self.net.head)

    def one_step(self, frames: Tensor, state: UNetState | None = None) -> tuple[Tensor, UNetState]:
        """Predictions of frame t + 1 at every t: frames (B, T, C, H, W) -> ((B, T, C, H, W), state).

        Running it frame by frame, passing the state on, gives the same result as one call.
        """
        out, state = self.net(frames, state)
        if self.config.output == "residual":
            out = add_change(frames, out, bounded=self.config.output_activation == "sigmoid")
        return out, state

    def forward(
        self,
        context: Tensor,
        horizon: int | None = None,
        targets: Tensor | None = None,
        teacher_forcing: Tensor | None = None,
    ) -> Tensor:
        horizon, mask = self.check_forecast_arguments(
            context, horizon, targets, teacher_forcing, channels=self.config.in_channels
        )
        return rollout(self.one_step, context, horizon, targets, mask)


# ---------------------------------------------------------------------------------------------------- checks
def _check_frames(frames: Tensor, channels: int, divisor: int, why: str) -> None:
    if not isinstance(frames, Tensor) or frames.ndim != 5:
        got = tuple(frames.shape) if isinstance(frames, Tensor) else type(frames).__name__
        raise ValueError(f"frames must have shape (B, T, C={channels}, H, W), got {got}")
    if frames.shape[2] != channels:
        raise ValueError(f"frames must have {channels} channels in dim 2, got shape {tuple(frames.shape)}")
    if frames.shape[0] < 1 or frames.shape[1] < 1:
        raise ValueError(f"frames must have at least one sequence and one step, got shape {tuple(frames.shape)}")
    height, width = frames.shape[-2:]
    if height % divisor or width % divisor:
        raise ValueError(
            f"frames must have H and W divisible by {why} = {divisor}, got {height}x{width}; "
            "crop or pad them to a multiple"
        )


# ---------------------------------------------------------------------------------------------------- builders
def _segmentation_unet(num_classes: int, overrides: dict[str, Any], **defaults: Any) -> ConvLSTMUNet:
    if "out_channels" in overrides:
        raise ValueError(f"give the classes as num_classes, not out_channels={overrides['out_channels']!r}")
    return ConvLSTMUNet(**{"out_channels": num_classes, **defaults, **overrides})


@register_model
def convlstm_unet(*, num_classes: int = 2, **overrides: Any) -> ConvLSTMUNet:
    """The ConvLSTM U-Net for sequence segmentation: 12 filters doubling over 2 poolings, one ConvLSTM per scale."""
    return _segmentation_unet(num_classes, overrides)


@register_model
def convlstm_unet_gru(*, num_classes: int = 2, **overrides: Any) -> ConvLSTMUNet:
    """As `convlstm_unet` with ConvGRU layers."""
    return _segmentation_unet(num_classes, overrides, cell="gru")


@register_model
def convlstm_unet_bidirectional(*, num_classes: int = 2, **overrides: Any) -> ConvLSTMUNet:
    """As `convlstm_unet` with bidirectional ConvLSTM layers (offline segmentation of whole sequences)."""
    return _segmentation_unet(num_classes, overrides, bidirectional=True)


@register_model
def unet_per_frame(*, num_classes: int = 2, **overrides: Any) -> ConvLSTMUNet:
    """The same U-Net without memory: per-frame convolutions where the ConvLSTM layers were (the baseline)."""
    return _segmentation_unet(num_classes, overrides, recurrent=False)


@register_model
def convlstm_unet_forecaster(**overrides: Any) -> ConvLSTMUNetForecaster:
    """The ConvLSTM U-Net as a next-frame forecaster (sigmoid output, frames in [0, 1])."""
    return ConvLSTMUNetForecaster(**overrides)
