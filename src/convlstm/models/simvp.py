"""SimVP (Gao et al. 2022; v2 with gSTA, Tan et al. 2022) and TAU (Tan et al. 2023): the non-recurrent models that
a recurrent one has to beat. Every context frame goes through a convolutional encoder, the frames' features are
stacked as channels and translated by a stack of MetaFormer blocks into the features of as many future frames,
which a decoder (with a skip from the encoder's first stage) turns back into frames: T_in frames in, T_in out, in
one pass.

The configuration and the layout of the weights are OpenSTL's (Tan et al. 2023), for its Moving MNIST benchmark
(10 -> 10 frames; hid_S 64, hid_T 512, N_S 4, N_T 8, 3x3 encoder and decoder kernels, MLP ratio 8):

- ``simvp_gsta_mmnist``: 46,769,665 parameters (OpenSTL: 46.8M) and 16,526,049,280 FLOPs as fvcore counts them for
  one 10 -> 10 sequence (16.5G);
- ``tau_mmnist``: 44,656,001 parameters (44.7M) and 15,952,646,144 FLOPs (16.0G).

Those counts are [`SimVP.flops`][convlstm.models.SimVP.flops]: fvcore's, the convolutions' and linear layers'
multiply-adds plus its estimates for the norms (5 per element for GroupNorm, 2 for BatchNorm in evaluation) and 1 per
element for the average pooling.

TAU trains with a differential divergence regularisation beside the MSE
([`differential_divergence`][convlstm.tasks.differential_divergence], ``ForecastingTask(divergence_alpha=0.1)``).
"""

import dataclasses
from typing import Any

import torch
from torch import Tensor, nn

from convlstm.layers.simvp import ConvNormAct, MetaFormerBlock
from convlstm.models.base import ForecastingModel, config_from_arguments, next_input
from convlstm.models.registry import register_model
from convlstm.utils.checks import check_choice, check_float, check_int


@dataclasses.dataclass
class SimVPConfig:
    in_channels: int = 1
    context_frames: int = 10
    translator: str = "gsta"
    spatial_channels: int = 64
    temporal_channels: int = 512
    spatial_layers: int = 4
    temporal_layers: int = 8
    encoder_kernel_size: int = 3
    decoder_kernel_size: int = 3
    mlp_ratio: float = 8.0
    drop_path_first: float = 0.0
    drop_path_last: float = 0.0
    default_horizon: int = 10


class SimVP(ForecastingModel):
    """Encoder -> translator -> decoder, all frames at once (OpenSTL's SimVP_Model).

    - encoder: ``spatial_layers`` [`ConvNormAct`][convlstm.layers.ConvNormAct] stages on every frame, every second one
      halving H and W (the first stage's output is kept for the decoder's skip);
    - translator: the T_in frames' features as T_in F_S channels, ``temporal_layers``
      [`MetaFormerBlock`][convlstm.layers.MetaFormerBlock] (the first maps T_in F_S to F_T channels by a 1x1 convolution
      after its block, the last F_T back to T_in F_S);
    - decoder: the encoder mirrored (sub-pixel convolutions up), the skip added before the last stage, a 1x1
      convolution to C.

    A forecast of more than T_in frames runs the model again on its own last T_in frames (or on the true frames
    where teacher forcing says so), as OpenSTL does; a shorter one keeps the first frames.

    Args:
        in_channels: channels C of the frames.
        context_frames: T_in: the model reads exactly this many frames (they are channels of the translator).
        translator: ``"gsta"`` (SimVP v2's gated spatiotemporal attention) or ``"tau"`` (TAU).
        spatial_channels: F_S, the encoder's and decoder's width (OpenSTL's hid_S).
        temporal_channels: F_T, the translator's width (hid_T).
        spatial_layers: encoder and decoder stages (N_S; even: H and W shrink by 2^(N_S / 2)).
        temporal_layers: translator blocks (N_T, at least 2).
        encoder_kernel_size: of the encoder's convolutions (odd).
        decoder_kernel_size: of the decoder's convolutions (odd).
        mlp_ratio: the blocks' MLP width over their channels.
        drop_path_first: stochastic depth of the first translator block, in training.
        drop_path_last: stochastic depth of the last one; those between are linearly in between. OpenSTL's code
            runs from 0.01 to its ``drop_path`` (0 in its Moving MNIST configs), as the mmnist builders do.
        default_horizon: frames forecast when ``horizon`` is not given.

    Shape:
        forward: context (B, T_in, C, H, W) -> predictions (B, horizon, C, H, W); H and W divisible by
        2^(spatial_layers / 2).

    Examples:
        >>> model = create_model("tau_mmnist")
        >>> future = model(torch.rand(4, 10, 1, 64, 64))   # (4, 10, 1, 64, 64)
    """

    family = "simvp"
    config_class = SimVPConfig

    def __init__(
        self,
        *,
        in_channels: int = 1,
        context_frames: int = 10,
        translator: str = "gsta",
        spatial_channels: int = 64,
        temporal_channels: int = 512,
        spatial_layers: int = 4,
        temporal_layers: int = 8,
        encoder_kernel_size: int = 3,
        decoder_kernel_size: int = 3,
        mlp_ratio: float = 8.0,
        drop_path_first: float = 0.0,
        drop_path_last: float = 0.0,
        default_horizon: int = 10,
    ) -> None:
        super().__init__()
        for name in ("in_channels", "context_frames", "spatial_channels", "temporal_channels", "default_horizon"):
            check_int(name, locals()[name])
        check_choice("translator", translator, ("gsta", "tau"))
        check_int("temporal_layers", temporal_layers, minimum=2)
        if check_int("spatial_layers", spatial_layers, minimum=2) % 2:
            raise ValueError(f"spatial_layers must be even (every second stage halves H and W), got {spatial_layers}")
        if spatial_channels % 2:
            raise ValueError(f"spatial_channels must be even (GroupNorm with 2 groups), got {spatial_channels}")
        for name in ("drop_path_first", "drop_path_last"):
            check_float(name, locals()[name], 0.0, 1.0)
        self.config = config_from_arguments(SimVPConfig, locals())
        self.default_horizon = default_horizon
        self.scale = 2 ** (spatial_layers // 2)
        down = [stage % 2 == 1 for stage in range(spatial_layers)]  # OpenSTL: [False, True, False, True, ...]
        f_s, f_t, stacked = spatial_channels, temporal_channels, context_frames * spatial_channels
        self.encoder = nn.ModuleList(
            ConvNormAct(in_channels if stage == 0 else f_s, f_s, encoder_kernel_size, resample="down" if d else "none")
            for stage, d in enumerate(down)
        )
        self.translator = nn.ModuleList()
        step = (drop_path_last - drop_path_first) / (temporal_layers - 1)
        rates = [drop_path_first + layer * step for layer in range(temporal_layers)]  # OpenSTL's linspace
        for layer, rate in enumerate(rates):
            width = stacked if layer == 0 else f_t
            out = stacked if layer == temporal_layers - 1 else f_t
            block = MetaFormerBlock(width, translator, mlp_ratio=mlp_ratio, drop_path=rate)
            stage = [block] if width == out else [block, nn.Conv2d(width, out, 1)]
            self.translator.append(nn.Sequential(*stage))
        self.decoder = nn.ModuleList(
            ConvNormAct(f_s, f_s, decoder_kernel_size, resample="up" if d else "none") for d in reversed(down)
        )
        self.readout = nn.Conv2d(f_s, in_channels, 1)

    def forward(
        self,
        context: Tensor,
        horizon: int | None = None,
        targets: Tensor | None = None,
        teacher_forcing: Tensor | None = None,
    ) -> Tensor:
        """T_in frames in, ``horizon`` out: the first of the model's T_in, or more from further passes."""
        horizon, mask = self.check_forecast_arguments(
            context, horizon, targets, teacher_forcing, channels=self.config.in_channels
        )
        self._check_context(context)
        predictions: list[Tensor] = []
        frames, done = context, 0
        while done < horizon:
            chunk = self.translate(frames)  # (B, T_in, C, H, W)
            predictions.append(chunk)
            done += chunk.shape[1]
            if done < horizon:  # the next pass reads this one's frames, or the true ones where forced
                steps = range(done - chunk.shape[1], done)
                fed = [next_input(chunk[:, k - steps.start], k, targets, mask) for k in steps]
                frames = torch.stack(fed, dim=1)
        return torch.cat(predictions, dim=1)[:, :horizon]

    def translate(self, frames: Tensor) -> Tensor:
        """One pass: (B, T_in, C, H, W) -> the next T_in frames (B, T_in, C, H, W)."""
        batch, steps = frames.shape[:2]
        x = frames.flatten(0, 1)  # (B T, C, H, W)
        skip = x = self.encoder[0](x)
        for stage in self.encoder[1:]:
            x = stage(x)
        z = x.unflatten(0, (batch, steps)).flatten(1, 2)  # (B, T F_S, H / s, W / s)
        for stage in self.translator:
            z = stage(z)
        x = z.unflatten(1, (steps, -1)).flatten(0, 1)  # (B T, F_S, H / s, W / s)
        for stage in self.decoder[:-1]:
            x = stage(x)
        x = self.readout(self.decoder[-1](x + skip))
        return x.unflatten(0, (batch, steps))

    def flops(self, height: int, width: int) -> int:
        """What fvcore counts for one pass on T_in frames of H x W (one sequence): the multiply-adds of the
        convolutions and linear layers, 5 per element of a GroupNorm's input, 2 per element of a BatchNorm's (in
        evaluation) and 1 per element of the average pooling's."""
        cfg = self.config
        frames, f_s, total = cfg.context_frames, cfg.spatial_channels, 0
        h, w = height, width
        encoder: list[ConvNormAct] = list(self.encoder)  # type: ignore[arg-type]
        decoder: list[ConvNormAct] = list(self.decoder)  # type: ignore[arg-type]
        for stage in encoder:
            if stage.resample == "down":
                h, w = h // 2, w // 2
            total += frames * h * w * (_conv_macs(stage.conv) + 5 * f_s)
        pixels = h * w
        for sequential in self.translator:
            block: MetaFormerBlock = sequential[0]  # type: ignore[index]
            c = block.norm1.num_features
            total += pixels * (2 * 2 * c + sum(_conv_macs(m) for m in block.modules() if isinstance(m, nn.Conv2d)))
            if cfg.translator == "tau":
                squeeze: nn.Linear = block.attn.squeeze  # type: ignore[assignment]
                total += pixels * c + 2 * c * squeeze.out_features  # the pooling; the two linear layers
            if len(sequential) > 1:  # type: ignore[arg-type]
                total += pixels * _conv_macs(sequential[1])  # type: ignore[index]
        for stage in decoder:
            total += frames * h * w * _conv_macs(stage.conv)  # before the pixel shuffle
            if stage.resample == "up":
                h, w = 2 * h, 2 * w
            total += frames * h * w * 5 * f_s
        return total + frames * h * w * _conv_macs(self.readout)

    def _check_context(self, context: Tensor) -> None:
        steps, (height, width) = context.shape[1], context.shape[-2:]
        if steps != self.config.context_frames:
            raise ValueError(
                f"context must have context_frames={self.config.context_frames} frames (SimVP stacks them as "
                f"channels), got {steps}"
            )
        if height % self.scale or width % self.scale:
            raise ValueError(f"context must have H and W divisible by {self.scale}, got {height}x{width}")


def _conv_macs(conv: nn.Module) -> int:
    """Multiply-adds per output pixel of a convolution (fvcore's count, biases aside)."""
    assert isinstance(conv, nn.Conv2d)
    return conv.out_channels * conv.in_channels // conv.groups * conv.kernel_size[0] * conv.kernel_size[1]


# ---------------------------------------------------------------------------------------------------- builders
#: OpenSTL's configs/mmnist/simvp/SimVP_gSTA.py and configs/mmnist/TAU.py; OpenSTL's code starts stochastic depth at
#: 0.01 in the first translator block even with drop_path = 0.
_MMNIST: dict[str, Any] = {
    "context_frames": 10,
    "spatial_channels": 64,
    "temporal_channels": 512,
    "spatial_layers": 4,
    "temporal_layers": 8,
    "drop_path_first": 0.01,
}
_TINY: dict[str, Any] = {
    "context_frames": 3,
    "spatial_channels": 8,
    "temporal_channels": 32,
    "spatial_layers": 2,
    "temporal_layers": 2,
}


@register_model
def simvp_gsta_mmnist(**overrides: Any) -> SimVP:
    """OpenSTL's SimVP with gSTA (SimVP v2) for Moving MNIST, 10 -> 10 frames; 46,769,665 parameters, as OpenSTL's."""
    return SimVP(**{**_MMNIST, "translator": "gsta", **overrides})


@register_model
def tau_mmnist(**overrides: Any) -> SimVP:
    """OpenSTL's TAU for Moving MNIST, 10 -> 10 frames; 44,656,001 parameters, as OpenSTL's."""
    return SimVP(**{**_MMNIST, "translator": "tau", **overrides})


@register_model
def simvp_gsta_tiny(**overrides: Any) -> SimVP:
    """3 frames in, F_S 8 (2 stages: H / 2), F_T 32, 2 gSTA blocks: for CPU tests and demos."""
    return SimVP(**{**_TINY, "translator": "gsta", "default_horizon": 3, **overrides})


@register_model
def tau_tiny(**overrides: Any) -> SimVP:
    """3 frames in, F_S 8 (2 stages: H / 2), F_T 32, 2 TAU blocks: for CPU tests and demos."""
    return SimVP(**{**_TINY, "translator": "tau", "default_horizon": 3, **overrides})
