"""pysteps' Lucas-Kanade motion and semi-Lagrangian extrapolation, on tensors: the one place that calls them.

The ``optical_flow`` baseline is these two functions with the forecaster interface; the ``extrapolation_nowcast``
model starts from their forecast and learns a correction. Both live above this module (baselines sit above models,
which must not import them), so the pysteps calls live here, where each can import them.

For every sequence and channel a motion field is estimated from the last ``motion_frames`` context frames (pysteps
``motion.get_method("lucaskanade")``) and the last frame is advected along it, semi-Lagrangian, for ``horizon``
steps (pysteps ``nowcasts.get_method("extrapolation")``). pysteps runs on the CPU in float64 numpy; the results
come back as tensors on the context's device and dtype, outside autograd. Pixels advected in from beyond the frame
come out of pysteps as NaN; they are set to 0 (no echo / background), as radar nowcasts treat the area beyond the
domain.

pysteps and OpenCV are the optional extra ``convlstm[nowcast]``; they are imported only when a forecast runs.
"""

import contextlib
import io
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from convlstm.utils.checks import check_int

logger = logging.getLogger(__name__)


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
            f"pysteps' motion and extrapolation (optical_flow, steps, extrapolation_nowcast) need pysteps and "
            f"opencv-python-headless ({err}); install them with `pip install convlstm[nowcast]`"
        ) from err
    if banner.getvalue().strip():
        logger.debug("pysteps: %s", banner.getvalue().strip())
    return motion.get_method("lucaskanade"), nowcasts.get_method("extrapolation")


def motion_fields(context: Tensor, motion_frames: int) -> Tensor:
    """The Lucas-Kanade motion of every sequence and channel, from its last ``motion_frames`` frames.

    Args:
        context: (B, T_in, C, H, W) frames, T_in >= motion_frames, the last motion_frames of them finite.
        motion_frames: frames the motion is estimated from (>= 2; pysteps pools the vectors of each pair).

    Returns:
        (B, C, 2, H, W): x then y component in pixels per frame, on the context's device and dtype.

    Shape:
        context (B, T_in, C, H, W) -> (B, C, 2, H, W).
    """
    estimate_motion, _ = import_pysteps()
    frames = _recent_frames(context, motion_frames)  # (B, motion_frames, C, H, W) float64
    fields = np.stack([np.stack([estimate_motion(seq[:, c]) for c in range(seq.shape[1])]) for seq in frames])
    return torch.from_numpy(fields).to(device=context.device, dtype=context.dtype)


def extrapolate(context: Tensor, horizon: int, *, motion_frames: int = 3) -> tuple[Tensor, Tensor]:
    """pysteps' extrapolation nowcast of every sequence and channel: the last frame moved along its Lucas-Kanade
    motion (constant over the forecast), NaN beyond the advected domain set to 0.

    Args:
        context: (B, T_in, C, H, W) frames, T_in >= motion_frames, the last motion_frames of them finite.
        horizon: frames to forecast (>= 1).
        motion_frames: frames the motion is estimated from (>= 2).

    Returns:
        (forecast (B, horizon, C, H, W), velocity (B, C, 2, H, W) in pixels per frame, x then y), both on the
        context's device and dtype, without gradient.

    Shape:
        context (B, T_in, C, H, W) -> (B, horizon, C, H, W), (B, C, 2, H, W).
    """
    check_int("horizon", horizon, 1)
    estimate_motion, advect = import_pysteps()
    frames = _recent_frames(context, motion_frames)
    batch, _, channels, height, width = frames.shape
    out = np.empty((batch, horizon, channels, height, width))
    velocity = np.empty((batch, channels, 2, height, width))
    for b in range(batch):
        for c in range(channels):
            velocity[b, c] = estimate_motion(frames[b, :, c])  # (2, H, W): x and y pixels per step
            out[b, :, c] = advect(frames[b, -1, c], velocity[b, c], horizon)
    out[np.isnan(out)] = 0.0
    device, dtype = context.device, context.dtype
    return torch.from_numpy(out).to(device=device, dtype=dtype), torch.from_numpy(velocity).to(
        device=device, dtype=dtype
    )


def _recent_frames(context: Tensor, motion_frames: int) -> np.ndarray:
    """The last ``motion_frames`` frames as float64 numpy (B, motion_frames, C, H, W), checked."""
    if not isinstance(context, Tensor) or context.ndim != 5:
        got = tuple(context.shape) if isinstance(context, Tensor) else type(context).__name__
        raise ValueError(f"context must have shape (B, T_in, C, H, W), got {got}")
    check_int("motion_frames", motion_frames, 2)  # motion needs two frames
    if context.shape[1] < motion_frames:
        raise ValueError(
            f"context must have at least motion_frames={motion_frames} frames, got shape {tuple(context.shape)}"
        )
    recent = context[:, -motion_frames:].detach().to("cpu", torch.float64)
    if not torch.isfinite(recent).all():
        raise ValueError("context must be finite: its last motion_frames frames hold NaN or inf")
    return recent.numpy()
