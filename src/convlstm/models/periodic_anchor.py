"""A forecaster that starts from the same time one period earlier ("the same hour yesterday") and learns what it
misses.

Fields with a strong daily cycle, such as 2 m temperature, are forecast well a day ahead by the field 24 hours
before the valid time, and an hour ahead by the last field. A network trained from scratch on a few weeks must
learn the daily cycle before it can beat either; here it starts from the first and is given the second. For a
context X_1 ... X_t (at least ``period`` + 1 frames) and lead time k = 1 ... ``period``:

    F_k = X_{t+k-P} + lambda_k * (X_t - X_{t-P}) + c_k

- X_{t+k-P}, the **anchor**: the field one period P before the valid time, inside the context;
- X_t - X_{t-P}, the **departure**: how far the last field is from its own time one period earlier; lambda_k (one
  per lead time and channel) is how much of it lasts k steps on. It starts at exp(-k / (P / 2)), a departure
  fading with an e-folding time of half a period: near 1 at the first lead, where the forecast is then the last
  field plus the change the anchor made over the same hour (persistence with the daily cycle), and e^-2 a period
  ahead, near the anchor. Trained with the network's learning rate it moves slowly (about lr per step), so where
  it starts matters; a start of 0 (the anchor alone) was too far from persistence at the first lead times;
- c_k: a 1x1 convolution (starting at zero) of the backbone's forecast for lead k, the anchor and the departure:
  what a forecaster reading the last ``backbone_frames`` frames (a ConvLSTM, say) adds, or replaces.

Untrained, the forecast is the anchor plus the fading departure: "same hour yesterday" a period ahead, persistence
with the daily cycle an hour ahead. Channels that are known functions of time (a time-of-day input) are periodic,
so their anchor is already exact and their departure 0.
"""

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from convlstm.layers.folding import per_frame
from convlstm.models.base import ForecastingModel, backbone_forecaster, config_from_arguments
from convlstm.models.frame_output import start_at_zero_change
from convlstm.models.registry import register_model
from convlstm.utils.checks import check_int


@dataclass
class PeriodicAnchorConfig:
    """The constructor arguments of [`PeriodicAnchor`][convlstm.models.PeriodicAnchor], as saved with a model."""

    backbone: str = "shi2015_radar_convlstm"
    backbone_args: dict[str, Any] = field(default_factory=dict)
    channels: int = 1
    period: int = 24
    backbone_frames: int | None = None


class PeriodicAnchor(ForecastingModel):
    """The field one period before each valid time, corrected by a persisting departure and a backbone forecaster
    (see the module docstring).

    Args:
        backbone: the registered forecaster whose forecast the correction reads.
        backbone_args: its constructor overrides (``in_channels`` must be ``channels``; ``default_horizon`` is
            taken from it, at most ``period``).
        channels: channels of the frames (inputs and forecast alike).
        period: steps in one period (24 for hourly data and a daily cycle).
        backbone_frames: last context frames the backbone reads (None: all of them).

    Shape:
        context: (B, T_in, channels, H, W) with T_in >= period + 1 -> (B, horizon, channels, H, W), horizon <=
        period.
    """

    family = "periodic_anchor"
    config_class = PeriodicAnchorConfig

    def __init__(
        self,
        backbone: str = "shi2015_radar_convlstm",
        backbone_args: dict[str, Any] | None = None,
        *,
        channels: int = 1,
        period: int = 24,
        backbone_frames: int | None = None,
    ) -> None:
        super().__init__()
        check_int("channels", channels)
        check_int("period", period, minimum=1)
        if backbone_frames is not None:
            check_int("backbone_frames", backbone_frames)
        backbone_args = dict(backbone_args or {})
        self.config = config_from_arguments(PeriodicAnchorConfig, locals())
        net = backbone_forecaster(backbone, **backbone_args)
        self.backbone = net
        self.default_horizon = min(int(getattr(net, "default_horizon", period)), period)
        fading = torch.exp(-torch.arange(1, period + 1, dtype=torch.float32) / (period / 2))
        self.persistence = nn.Parameter(fading.unsqueeze(1).repeat(1, channels))  # lambda_k, per lead and channel
        self.correction = nn.Conv2d(3 * channels, channels, 1)
        start_at_zero_change(self.correction)

    def forward(
        self,
        context: Tensor,
        horizon: int | None = None,
        targets: Tensor | None = None,
        teacher_forcing: Tensor | None = None,
    ) -> Tensor:
        """The anchored forecast (B, horizon, channels, H, W); targets / teacher_forcing are validated and ignored
        (every lead time starts from the context)."""
        period = self.config.period
        horizon, _ = self.check_forecast_arguments(context, horizon, targets, teacher_forcing, channels=self.channels)
        if horizon > period:
            raise ValueError(f"horizon must be at most period={period} (the anchor lies in the context), got {horizon}")
        steps = context.shape[1]
        if steps < period + 1:
            raise ValueError(
                f"context must have at least period + 1 = {period + 1} frames (the anchor of every lead time and the "
                f"last frame's own one period earlier), got {steps}"
            )
        last = steps - 1
        anchor = context[:, last + 1 - period : last + 1 - period + horizon]  # X_{t+k-P}, k = 1 ... horizon
        departure = (context[:, last] - context[:, last - period]).unsqueeze(1)  # (B, 1, C, H, W)
        frames = self.config.backbone_frames or steps
        forecast = self.backbone(context[:, -frames:], horizon)
        inputs = torch.cat([forecast.to(anchor.dtype), anchor, departure.expand_as(anchor)], dim=2)
        lasting = self.persistence[:horizon].view(1, horizon, -1, 1, 1)
        return anchor + lasting * departure + per_frame(self.correction, inputs)

    @property
    def channels(self) -> int:
        """Channels of the frames, inputs and forecast alike."""
        return self.config.channels


@register_model
def periodic_anchor(**overrides: Any) -> PeriodicAnchor:
    """The same hour one period (24 steps) earlier plus a fading departure and a zero-started correction from Shi's
    radar ConvLSTM encoder-forecaster."""
    return PeriodicAnchor(**overrides)
