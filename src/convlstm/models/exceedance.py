"""Probabilistic nowcasts: the probability, per pixel and lead time, that the rain rate reaches each threshold.

[`ExceedanceForecaster`][convlstm.models.ExceedanceForecaster] puts a small convolutional head on any registered
forecaster (its backbone, built with ``output_activation="none"``): the backbone's predicted frames, with the last
    context frame beside each, go
through two convolutions to one logit per threshold. Trained end to end with the per-threshold cross-entropy
(`convlstm.tasks.losses.exceedance_loss`), the backbone is free to predict whatever field serves the
probabilities best, and the head's neighbourhood turns a displaced or uncertain echo into spread-out probability
rather than a sharp yes/no.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from convlstm.layers.activations import leaky_relu_02
from convlstm.models.base import ForecastingModel, backbone_forecaster, config_from_arguments
from convlstm.utils.checks import check_int

#: The HKO-7 thresholds in mm/h.
EXCEEDANCE_THRESHOLDS: tuple[float, ...] = (0.5, 2.0, 5.0, 10.0, 30.0)


@dataclass
class ExceedanceForecasterConfig:
    """The constructor arguments of [`ExceedanceForecaster`][convlstm.models.ExceedanceForecaster], as saved with a
    model."""

    backbone: str = "shi2015_radar_convlstm"
    backbone_args: dict[str, Any] = field(default_factory=dict)
    thresholds: list[float] = field(default_factory=lambda: list(EXCEEDANCE_THRESHOLDS))
    head_channels: int = 16
    head_kernel_size: int = 5


class ExceedanceForecaster(ForecastingModel):
    """Exceedance probabilities of K rain-rate thresholds from any forecaster plus a convolutional head.

    Args:
        backbone: the registered model name of the forecaster underneath (single-channel frames).
        backbone_args: its constructor overrides (``output_activation`` is set to "none").
        thresholds: the K rain rates (mm/h) whose exceedance is predicted.
        head_channels: hidden channels of the head.
        head_kernel_size: kernel of the head's convolutions (odd).

    Shape:
        context: (B, T_in, 1, H, W) -> probabilities (B, horizon, K, H, W) in [0, 1];
        [`logits`][convlstm.models.ExceedanceForecaster.logits] returns the same shape before the sigmoid (for the
        loss).
    """

    family = "exceedance_forecaster"
    config_class = ExceedanceForecasterConfig

    def __init__(
        self,
        backbone: str = "shi2015_radar_convlstm",
        backbone_args: dict[str, Any] | None = None,
        *,
        thresholds: Sequence[float] = EXCEEDANCE_THRESHOLDS,
        head_channels: int = 16,
        head_kernel_size: int = 5,
    ) -> None:
        super().__init__()
        thresholds = [float(t) for t in thresholds]
        if not thresholds or sorted(set(thresholds)) != thresholds or thresholds[0] <= 0:
            raise ValueError(f"thresholds must be distinct positive rain rates in increasing order, got {thresholds}")
        check_int("head_channels", head_channels)
        check_int("head_kernel_size", head_kernel_size)
        if head_kernel_size % 2 == 0:
            raise ValueError(f"head_kernel_size must be odd, got {head_kernel_size}")
        backbone_args = dict(backbone_args or {})
        self.config = config_from_arguments(ExceedanceForecasterConfig, locals())
        net = backbone_forecaster(backbone, **{**backbone_args, "output_activation": "none"})
        self.backbone = net
        self.default_horizon = int(getattr(net, "default_horizon", 1))
        self.thresholds = thresholds
        pad = head_kernel_size // 2
        self.head_hidden = nn.Conv2d(2, head_channels, head_kernel_size, padding=pad)
        self.head_out = nn.Conv2d(head_channels, len(thresholds), head_kernel_size, padding=pad)

    def logits(self, context: Tensor, horizon: int | None = None) -> Tensor:
        """Per-threshold logits (B, horizon, K, H, W)."""
        horizon, _ = self.check_forecast_arguments(context, horizon, None, None, channels=1)
        frames = self.backbone(context, horizon)  # (B, horizon, 1, H, W)
        last = context[:, -1:].expand_as(frames)
        features = torch.cat((frames, last.to(frames.dtype)), dim=2).flatten(0, 1)  # (B * horizon, 2, H, W)
        logits = self.head_out(leaky_relu_02(self.head_hidden(features)))
        return logits.unflatten(0, frames.shape[:2])

    def forward(
        self,
        context: Tensor,
        horizon: int | None = None,
        targets: Tensor | None = None,
        teacher_forcing: Tensor | None = None,
    ) -> Tensor:
        """Exceedance probabilities (B, horizon, K, H, W); targets / teacher_forcing are validated and ignored."""
        horizon, _ = self.check_forecast_arguments(context, horizon, targets, teacher_forcing, channels=1)
        return torch.sigmoid(self.logits(context, horizon))
