"""The next-frame predictor: a per-frame conv encoder, a ConvLSTM stack on the small feature maps, a per-frame
transposed-conv decoder. Trained without labels to predict frame t + 1 from frames up to t.

The encoder halves H and W at every stage (stride-2 convolutions), so the ConvLSTM runs on maps 2**stages times
smaller than the frames, which is what makes it affordable on 64x64 or larger frames. The decoder mirrors the
encoder with stride-2 transposed convolutions and ends with a kxk convolution to the frame channels. Frames may
first be cut into p x p patches (space-to-depth); with no encoder stages and p = 4 this is OpenSTL's ConvLSTM.
"""

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from convlstm.layers import ConvLSTM
from convlstm.layers.cell_base import LSTMState
from convlstm.layers.folding import per_frame
from convlstm.models.base import ForecastingModel, check_context_lengths, config_from_arguments, rollout
from convlstm.models.frame_output import FrameOutput, add_change, check_frame_output, start_at_zero_change
from convlstm.models.patching import depth_to_space, space_to_depth
from convlstm.models.registry import register_model
from convlstm.utils.checks import check_choice, check_int

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
    patch_size: int = 1
    output: FrameOutput = "frame"


class NextFramePredictor(ForecastingModel):
    """Encoder -> ConvLSTM stack -> decoder, predicting frame t + 1 at every step t.

    Args:
        in_channels: channels C of the frames.
        encoder_channels: one stride-2 conv (+ ReLU) per entry, on the patches; frames must have H and W divisible
            by patch_size * 2**len(encoder_channels). Empty: the ConvLSTM reads the patches themselves.
        hidden_channels: one ConvLSTM layer per entry, on the encoded maps.
        kernel_size: of the encoder convolutions and of the decoder's last convolution (odd).
        recurrent_kernel_size: of the ConvLSTM layers (odd).
        output_activation: "sigmoid" (frames in [0, 1]) or "linear". With output="residual", "sigmoid" clamps
            the prediction to [0, 1] instead (`add_change`).
        default_horizon: frames forecast when ``horizon`` is not given.
        patch_size: p; the network works on (C p^2, H / p, W / p) patches of the frames (1: on the frames).
        output: "frame" (the decoder draws the next frame) or "residual" (the next frame is frame t plus the
            decoder's output, whose last convolution starts at zero: untrained, the model copies the last frame).

    Shape:
        [`one_step`][convlstm.models.NextFramePredictor.one_step]: frames (B, T, C, H, W) -> predictions (B, T, C, H,
        W), prediction t for frame t + 1.
        forward: context (B, T_in, C, H, W) -> predictions (B, horizon, C, H, W).
        state: the ConvLSTM's list of (h, c), one per layer, each (B, F_l, H / d, W / d), d = p * 2**stages.

    Examples:
        >>> model = create_model("next_frame_convlstm")
        >>> future = model(torch.rand(4, 10, 1, 64, 64), horizon=10)   # (4, 10, 1, 64, 64)
    """

    family = "next_frame"
    config_class = NextFramePredictorConfig
    accepts_context_lengths = True

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
        patch_size: int = 1,
        output: FrameOutput = "frame",
    ) -> None:
        super().__init__()
        encoder_channels = _int_tuple(encoder_channels, "encoder_channels", allow_empty=True)
        hidden_channels = _int_tuple(hidden_channels, "hidden_channels")
        for value, name in [
            (in_channels, "in_channels"),
            (kernel_size, "kernel_size"),
            (recurrent_kernel_size, "recurrent_kernel_size"),
            (default_horizon, "default_horizon"),
            (patch_size, "patch_size"),
        ]:
            check_int(name, value, 1)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (for 'same' padding), got {kernel_size}")
        check_choice("output_activation", output_activation, ("linear", "sigmoid"))
        check_frame_output(output)
        self.config = config_from_arguments(NextFramePredictorConfig, locals())
        self.default_horizon = default_horizon
        self.patch_size = patch_size
        self.divisor = patch_size * 2 ** len(encoder_channels)
        pad = kernel_size // 2
        patched = in_channels * patch_size**2

        # Encoder: (N, C p^2, H / p, W / p) -> (N, E_last, H / d, W / d).
        encoder: list[nn.Module] = []
        previous = patched
        for channels in encoder_channels:
            encoder += [nn.Conv2d(previous, channels, kernel_size, stride=2, padding=pad), nn.ReLU(inplace=True)]
            previous = channels
        self.encoder = nn.Sequential(*encoder)
        self.rnn = ConvLSTM(previous, list(hidden_channels), recurrent_kernel_size, num_layers=len(hidden_channels))
        # Decoder: (N, F_last, H / d, W / d) -> (N, C p^2, H / p, W / p); each stage doubles H and W exactly
        # (kernel 4, stride 2, padding 1) and goes to the width of the encoder stage it mirrors.
        decoder: list[nn.Module] = []
        previous = hidden_channels[-1]
        mirrored = (encoder_channels[0], *encoder_channels[:-1]) if encoder_channels else ()
        for channels in reversed(mirrored):
            decoder += [nn.ConvTranspose2d(previous, channels, 4, stride=2, padding=1), nn.ReLU(inplace=True)]
            previous = channels
        last = nn.Conv2d(previous, patched, kernel_size, padding=pad)
        if output == "residual":
            start_at_zero_change(last)
        decoder.append(last)
        self.decoder = nn.Sequential(*decoder)

    def one_step(
        self, frames: Tensor, state: list[LSTMState] | None = None, *, lengths: Tensor | None = None
    ) -> tuple[Tensor, list[LSTMState]]:
        """Predictions of frame t + 1 at every step t, continuing from ``state`` (None: zeros).

        Running it frame by frame, passing the state on, gives the same result as one call. With ``lengths`` (B,),
        frames after each sequence's length are padding: the state returned is the one after its last valid frame.

        Returns:
            (predictions (B, T, C, H, W), state after the last frame).
        """
        self._check_frames(frames, "frames")
        patches = space_to_depth(frames, self.patch_size, name="frames")  # (B, T, C p^2, H / p, W / p)
        features = per_frame(self.encoder, patches)  # (B, T, E_last, H / d, W / d)
        hidden, state = self.rnn(features, state, lengths=lengths)  # (B, T, F_last, H / d, W / d)
        out = per_frame(self.decoder, hidden)  # (B, T, C p^2, H / p, W / p)
        sigmoid = self.config.output_activation == "sigmoid"
        if self.config.output == "residual":
            change = depth_to_space(out, self.patch_size, name="change")  # (B, T, C, H, W)
            return add_change(frames, change, bounded=sigmoid), state
        if sigmoid:
            out = torch.sigmoid(out)
        return depth_to_space(out, self.patch_size, name="predictions"), state

    def forward(
        self,
        context: Tensor,
        horizon: int | None = None,
        targets: Tensor | None = None,
        teacher_forcing: Tensor | None = None,
        *,
        context_lengths: Tensor | None = None,
    ) -> Tensor:
        """Reads the context, then rolls out ``horizon`` frames, feeding each forecast (or true frame) back;
        ``context_lengths`` (B,) as in `Forecaster`."""
        horizon, mask = self.check_forecast_arguments(
            context, horizon, targets, teacher_forcing, channels=self.config.in_channels
        )
        self._check_frames(context, "context")
        lengths = check_context_lengths(context_lengths, context)
        return rollout(self.one_step, context, horizon, targets, mask, lengths)

    def conv_flops(self, height: int, width: int, steps: int) -> int:
        """Multiply-adds of the convolutions over ``steps`` frames of H x W (one multiply-add = one FLOP, as fvcore
        counts; a transposed convolution's per input pixel): the encoder, the ConvLSTM's input-to-state convolutions
        and the decoder on every frame, its state-to-state ones from the second frame on (the first starts from
        zeros and skips them). OpenSTL's ConvLSTM convolves those zeros, which fvcore counts: 4 F_l^2 k^2 more per
        layer and patch-grid pixel.
        """
        config, p = self.config, self.patch_size
        k, recurrent = config.kernel_size, config.recurrent_kernel_size
        rows, cols = height // p, width // p
        previous = patched = config.in_channels * p**2
        per_frame = 0
        for channels in config.encoder_channels:
            rows, cols = rows // 2, cols // 2
            per_frame += previous * channels * k * k * rows * cols
            previous = channels
        states = 0  # the state-to-state convolutions, from the second frame on
        for hidden in config.hidden_channels:
            per_frame += previous * 4 * hidden * recurrent**2 * rows * cols
            states += hidden * 4 * hidden * recurrent**2 * rows * cols
            previous = hidden
        stages = config.encoder_channels
        for channels in reversed((stages[0], *stages[:-1]) if stages else ()):
            per_frame += previous * channels * 4 * 4 * rows * cols  # kernel 4, stride 2, per input pixel
            rows, cols, previous = rows * 2, cols * 2, channels
        per_frame += previous * patched * k * k * rows * cols
        return per_frame * steps + states * max(steps - 1, 0)

    def _check_frames(self, frames: Tensor, name: str) -> None:
        channels = self.config.in_channels
        if not isinstance(frames, Tensor) or frames.ndim != 5 or frames.shape[2] != channels:
            got = tuple(frames.shape) if isinstance(frames, Tensor) else type(frames).__name__
            raise ValueError(f"{name} must have shape (B, T, C={channels}, H, W), got {got}")
        height, width = frames.shape[-2:]
        if height % self.divisor or width % self.divisor:
            stages = len(self.config.encoder_channels)
            raise ValueError(
                f"{name} must have H and W divisible by patch_size * 2**len(encoder_channels) = {self.divisor} "
                f"({self.patch_size}x{self.patch_size} patches, {stages} stride-2 stages), got {height}x{width}; "
                "crop or pad them to a multiple"
            )


def _int_tuple(values: Sequence[int], name: str, *, allow_empty: bool = False) -> tuple[int, ...]:
    expected = f"a {'' if allow_empty else 'non-empty '}sequence of ints >= 1"
    if isinstance(values, int | str) or not isinstance(values, Sequence) or (len(values) == 0 and not allow_empty):
        raise ValueError(f"{name} must be {expected}, got {values!r}")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
        raise ValueError(f"{name} must be {expected}, got {values!r}")
    return tuple(values)


# ---------------------------------------------------------------------------------------------------- builders
@register_model
def next_frame_convlstm(**overrides: Any) -> NextFramePredictor:
    """For 64x64 one-channel frames (Moving MNIST): 2 stride-2 stages (32, 64), two 64-channel ConvLSTMs on 16x16."""
    return NextFramePredictor(**overrides)


@register_model
def openstl_convlstm_s(**overrides: Any) -> NextFramePredictor:
    """OpenSTL's ConvLSTM-S (Moving MNIST): 4x4 patches, 4 ConvLSTM layers of 128 with 5x5 kernels on the 16x16
    patch grid, a 1x1 convolution back to the patches, linear output; the 11.68M parameters OpenSTL uses."""
    defaults: dict[str, Any] = {
        "patch_size": 4,
        "encoder_channels": (),
        "hidden_channels": (128, 128, 128, 128),
        "recurrent_kernel_size": 5,
        "kernel_size": 1,
        "output_activation": "linear",
    }
    return NextFramePredictor(**{**defaults, **overrides})


@register_model
def next_frame_tiny(**overrides: Any) -> NextFramePredictor:
    """A few thousand parameters, for CPU tests and demos."""
    return NextFramePredictor(**{"encoder_channels": (8, 8), "hidden_channels": (8,), **overrides})
