"""Optical-flow extrapolation with pysteps: the ROVER-like baseline of Shi et al. (2015) and HKO-7.

For every sequence and channel, a Lucas-Kanade motion field is estimated from the last ``motion_frames`` context
frames (pysteps ``motion.get_method("lucaskanade")``) and the last frame is advected along it, semi-Lagrangian,
for ``horizon`` steps (pysteps ``nowcasts.get_method("extrapolation")``). pysteps runs on the CPU in numpy; the
result comes back as a tensor on the context's device and dtype.

pysteps and OpenCV are the optional extra ``convlstm[nowcast]``; they are imported only when a forecast runs.
"""

import contextlib
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from convlstm.baselines.persistence import check_baseline_arguments, context_channels
from convlstm.models.base import ForecastingModel, config_from_arguments
from convlstm.models.registry import register_model

logger = logging.getLogger(__name__)


@dataclass
class OpticalFlowConfig:
    in_channels: int | None = None
    motion_frames: int = 3
    default_horizon: int = 10


def import_pysteps() -> tuple[Callable[..., Any], Callable[..., Any]]:
    """pysteps' Lucas-Kanade motion and extrapolation nowcast functions.

    Raises:
        ImportError: pysteps or OpenCV is missing; the message names the extra that installs them.
    """
    try:
        # pysteps' Lucas-Kanade needs OpenCV but only says so once it is called; ask for it up front.
        import cv2  # noqa: F401

        # pysteps prints where it found its configuration file on import; keep that out of stdout.
        with contextlib.redirect_stdout(io.StringIO()) as banner:
            from pysteps import motion, nowcasts
    except ImportError as err:
        raise ImportError(
            f"the optical_flow baseline needs pysteps and opencv-python-headless ({err}); "
            "install them with `pip install convlstm[nowcast]`"
        ) from err
    if banner.getvalue().strip():
        logger.debug("pysteps: %s", banner.getvalue().strip())
    return motion.get_method("lucaskanade"), nowcasts.get_method("extrapolation")


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
        if not isinstance(motion_frames, int) or isinstance(motion_frames, bool) or motion_frames < 2:
            raise ValueError(f"motion_frames must be an int >= 2 (motion needs two frames), got {motion_frames!r}")
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
        estimate_motion, extrapolate = import_pysteps()
        frames = self._recent_frames(context)  # (B, motion_frames, C, H, W) float64
        batch, _, channels, height, width = frames.shape
        out = np.empty((batch, horizon, channels, height, width))
        for b in range(batch):
            for c in range(channels):
                velocity = estimate_motion(frames[b, :, c])  # (2, H, W): x and y pixels per step
                out[b, :, c] = extrapolate(frames[b, -1, c], velocity, horizon)
        out[np.isnan(out)] = 0.0
        return torch.from_numpy(out).to(device=context.device, dtype=context.dtype)

    def motion(self, context: Tensor) -> Tensor:
        """The motion fields the forecast uses: (B, C, 2, H, W), x then y component in pixels per frame."""
        self.check_forecast_arguments(context, 1, None, None, channels=context_channels(context, self.in_channels))
        estimate_motion, _ = import_pysteps()
        frames = self._recent_frames(context)
        fields = np.stack(
            [np.stack([estimate_motion(seq[:, c]) for c in range(seq.shape[1])]) for seq in frames]
        )  # (B, C, 2, H, W)
        return torch.from_numpy(fields).to(device=context.device, dtype=context.dtype)

    def _recent_frames(self, context: Tensor) -> np.ndarray:
        if context.shape[1] < self.motion_frames:
            raise ValueError(
                f"context must have at least motion_frames={self.motion_frames} frames, "
                f"got shape {tuple(context.shape)}"
            )
        recent = context[:, -self.motion_frames :].detach().to("cpu", torch.float64)
        if not torch.isfinite(recent).all():
            raise ValueError("context must be finite: its last motion_frames frames hold NaN or inf")
        return recent.numpy()


@register_model
def optical_flow(**overrides: Any) -> OpticalFlow:
    """Lucas-Kanade optical flow and semi-Lagrangian extrapolation (pysteps), the ROVER-like baseline."""
    return OpticalFlow(**overrides)
