"""Optical-flow extrapolation with pysteps: the ROVER-like baseline of Shi et al. (2015) and HKO-7.

For every sequence and channel, a Lucas-Kanade motion field is estimated from the last ``motion_frames`` context
frames (pysteps ``motion.get_method("lucaskanade")``) and the last frame is advected along it, semi-Lagrangian,
for ``horizon`` steps (pysteps ``nowcasts.get_method("extrapolation")``). The pysteps calls live in
`convlstm.models.extrapolation`, shared with the learned ``extrapolation_nowcast`` that starts from this
forecast. pysteps runs on the CPU in numpy; the result comes back as a tensor on the context's device and dtype.

pysteps and OpenCV are the optional extra ``convlstm[nowcast]``; they are imported only when a forecast runs.
"""

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from convlstm.baselines.persistence import check_baseline_arguments, context_channels
from convlstm.models.base import ForecastingModel, config_from_arguments
from convlstm.models.extrapolation import extrapolate, import_pysteps, motion_fields
from convlstm.models.registry import register_model
from convlstm.utils.checks import check_int

__all__ = ["OpticalFlow", "OpticalFlowConfig", "import_pysteps", "optical_flow"]


@dataclass
class OpticalFlowConfig:
    in_channels: int | None = None
    motion_frames: int = 3
    default_horizon: int = 10


class OpticalFlow(ForecastingModel):
    """Lucas-Kanade motion plus semi-Lagrangian extrapolation (pysteps), with the forecaster interface.

    Each sequence and channel gets its own motion field, held constant over the forecast. Pixels advected in from
    outside the frame come out of pysteps as NaN; they are set to 0 (no echo / background), as radar nowcasts
    treat the area beyond the domain. It has no parameters; its config still saves and loads.

    Args:
        in_channels: channels the context must have, or None to accept any.
        motion_frames: how many of the last context frames the motion is estimated from (>= 2; pysteps pools the
            vectors of each consecutive pair). The context must have at least this many frames.
        default_horizon: frames predicted when forward gets no horizon.

    Shape:
        context: (B, T_in, C, H, W) -> predictions (B, horizon, C, H, W).
    """

    family = "optical_flow"
    config_class = OpticalFlowConfig

    def __init__(self, in_channels: int | None = None, *, motion_frames: int = 3, default_horizon: int = 10) -> None:
        super().__init__()
        check_baseline_arguments(in_channels, default_horizon)
        check_int("motion_frames", motion_frames, 2)  # motion needs two frames
        self.config = config_from_arguments(OpticalFlowConfig, locals())
        self.in_channels = in_channels
        self.motion_frames = motion_frames
        self.default_horizon = default_horizon

    def forward(
        self,
        context: Tensor,
        horizon: int | None = None,
        targets: Tensor | None = None,
        teacher_forcing: Tensor | None = None,
    ) -> Tensor:
        """Extrapolates the last context frame along the estimated motion for ``horizon`` steps.

        Args:
            context: (B, T_in, C, H, W) finite frames, T_in >= motion_frames.
            horizon: frames to predict (default: ``default_horizon``).
            targets: validated, then ignored (nothing is fed back).
            teacher_forcing: validated, then ignored.

        Returns:
            (B, horizon, C, H, W) on the context's device and dtype, without gradient.
        """
        horizon, _ = self.check_forecast_arguments(
            context, horizon, targets, teacher_forcing, channels=context_channels(context, self.in_channels)
        )
        forecast, _ = extrapolate(context, horizon, motion_frames=self.motion_frames)
        return forecast

    def motion(self, context: Tensor) -> Tensor:
        """The motion fields the forecast uses: (B, C, 2, H, W), x then y component in pixels per frame."""
        self.check_forecast_arguments(context, 1, None, None, channels=context_channels(context, self.in_channels))
        return motion_fields(context, self.motion_frames)


@register_model
def optical_flow(**overrides: Any) -> OpticalFlow:
    """Lucas-Kanade optical flow and semi-Lagrangian extrapolation (pysteps), the ROVER-like baseline."""
    return OpticalFlow(**overrides)
