"""pysteps' STEPS ensemble nowcast (Bowler et al. 2006; Seed et al. 2013) as a baseline with the model interface.

For every sequence and channel: the frames are turned into rain rate (mm/h), then decibels (pysteps
``dB_transform``, rain below ``rain_threshold`` set to a floor); a Lucas-Kanade motion field is estimated from the
last ``motion_frames`` frames; pysteps ``nowcasts.get_method("steps")`` decomposes the field into a cascade of
spatial scales, evolves each with an autoregressive model, adds stochastic noise of the observed spectrum and
perturbs the motion, member by member. The members come back in the units of the context.

``forward`` returns the ensemble mean (a deterministic forecast, blurred where the members disagree);
[`STEPS.ensemble`][convlstm.baselines.STEPS.ensemble] returns the members, for probabilistic scores.
"""

import contextlib
import io
import logging
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from convlstm.baselines.persistence import check_baseline_arguments, context_channels
from convlstm.models.base import ForecastingModel, config_from_arguments
from convlstm.models.extrapolation import import_pysteps
from convlstm.models.registry import register_model
from convlstm.units import pixel_to_rain_rate, rain_rate_to_pixel
from convlstm.utils.checks import check_choice, check_int, check_positive

logger = logging.getLogger(__name__)

Units = Literal["pixel", "mm/h"]
#: dB value given to rain below the threshold (pysteps' usual floor for dB-transformed rain rates).
_DB_FLOOR = -15.0


@dataclass
class STEPSConfig:
    """The constructor arguments of [`STEPS`][convlstm.baselines.STEPS], as saved with a model."""

    in_channels: int | None = None
    members: int = 8
    motion_frames: int = 3
    cascade_levels: int = 4
    rain_threshold: float = 0.1
    units: Units = "pixel"
    seed: int = 0
    default_horizon: int = 10


class STEPS(ForecastingModel):
    """The STEPS ensemble nowcast of pysteps, with the forecaster interface.

    Args:
        in_channels: channels the context must have, or None to accept any.
        members: ensemble size N.
        motion_frames: last context frames the motion is estimated from (>= 3: STEPS fits a second-order
            autoregressive model, which needs three frames).
        cascade_levels: spatial scales of the cascade decomposition (fewer for small frames).
        rain_threshold: rain rate (mm/h) below which a pixel is dry.
        units: what the frames are: "pixel" (HKO-7 radar pixels in [0, 1]) or "mm/h".
        seed: seed of the members' noise; the same context and seed give the same ensemble.
        default_horizon: frames predicted when forward gets no horizon.

    Shape:
        context: (B, T_in, C, H, W) -> forward: ensemble mean (B, horizon, C, H, W);
        [`ensemble`][convlstm.baselines.STEPS.ensemble]: (B, N, horizon, C, H, W).
    """

    family = "steps"
    config_class = STEPSConfig

    def __init__(
        self,
        in_channels: int | None = None,
        *,
        members: int = 8,
        motion_frames: int = 3,
        cascade_levels: int = 4,
        rain_threshold: float = 0.1,
        units: Units = "pixel",
        seed: int = 0,
        default_horizon: int = 10,
    ) -> None:
        super().__init__()
        check_baseline_arguments(in_channels, default_horizon)
        check_int("members", members, 1)
        check_int("motion_frames", motion_frames, 3)
        check_int("cascade_levels", cascade_levels, 1)
        check_positive("rain_threshold (mm/h)", rain_threshold)
        check_choice("units", units, ("pixel", "mm/h"))
        self.config = config_from_arguments(STEPSConfig, locals())
        self.in_channels, self.default_horizon = in_channels, default_horizon

    def forward(
        self,
        context: Tensor,
        horizon: int | None = None,
        targets: Tensor | None = None,
        teacher_forcing: Tensor | None = None,
    ) -> Tensor:
        """The ensemble mean, (B, horizon, C, H, W) in the context's units (targets / teacher_forcing are
        validated and ignored)."""
        horizon, _ = self.check_forecast_arguments(
            context, horizon, targets, teacher_forcing, channels=context_channels(context, self.in_channels)
        )
        return self.ensemble(context, horizon).mean(dim=1)

    def ensemble(self, context: Tensor, horizon: int | None = None) -> Tensor:
        """The members: (B, N, horizon, C, H, W), in the context's units, device and dtype, without gradient."""
        horizon, _ = self.check_forecast_arguments(
            context, horizon, None, None, channels=context_channels(context, self.in_channels)
        )
        cfg = self.config
        if context.shape[1] < cfg.motion_frames:
            raise ValueError(
                f"context must have at least motion_frames={cfg.motion_frames} frames, got shape {tuple(context.shape)}"
            )
        frames = context[:, -cfg.motion_frames :].detach().to("cpu", torch.float64).numpy()
        if not np.isfinite(frames).all():
            raise ValueError("context must be finite: its last motion_frames frames hold NaN or inf")
        rain = pixel_to_rain_rate(frames, "hko7") if cfg.units == "pixel" else np.maximum(frames, 0.0)
        estimate_motion, _ = import_pysteps()
        steps, transformation = _import_steps()
        batch, _, channels, height, width = rain.shape
        out = np.empty((batch, cfg.members, horizon, channels, height, width))
        for b in range(batch):
            for c in range(channels):
                db, _ = transformation.dB_transform(rain[b, :, c], threshold=cfg.rain_threshold, zerovalue=_DB_FLOOR)
                velocity = estimate_motion(db)
                # STEPS logs every step to stdout; keep it out of ours.
                with contextlib.redirect_stdout(io.StringIO()):
                    members = steps(
                        db,
                        velocity,
                        horizon,
                        n_ens_members=cfg.members,
                        n_cascade_levels=cfg.cascade_levels,
                        precip_thr=10.0 * np.log10(cfg.rain_threshold),
                        kmperpixel=1.0,
                        timestep=1.0,
                        noise_method="nonparametric",
                        vel_pert_method="bps",
                        mask_method="incremental",
                        seed=cfg.seed + b * channels + c,
                        num_workers=1,
                    )  # (N, horizon, H, W) in dB
                values, _ = transformation.dB_transform(
                    members, threshold=10.0 * np.log10(cfg.rain_threshold), inverse=True
                )
                # Pixels advected in from outside the frame are NaN: no echo, as the optical-flow baseline treats them.
                out[b, :, :, c] = np.nan_to_num(values, nan=0.0)
        if cfg.units == "pixel":
            out = rain_rate_to_pixel(out, "hko7")
        return torch.from_numpy(out).to(device=context.device, dtype=context.dtype)


def _import_steps() -> tuple[Any, Any]:
    with contextlib.redirect_stdout(io.StringIO()):
        from pysteps import nowcasts
        from pysteps.utils import transformation
    return nowcasts.get_method("steps"), transformation


@register_model
def steps(**overrides: Any) -> STEPS:
    """pysteps' STEPS ensemble nowcast (8 members, 4 cascade levels); forward gives the ensemble mean."""
    return STEPS(**overrides)
