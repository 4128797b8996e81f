"""Ensembles from any forecaster by perturbing its input.

Why input perturbation rather than dropout kept on at inference (MC dropout): it works for every model the
registry builds, trained with or without dropout (most here have none) and for the non-learned baselines too, and
it perturbs what is actually uncertain in a nowcast, the observed intensities, instead of weights the training
never asked to vary. The perturbation is a multiplicative, spatially smooth, log-normal factor on the context
frames, exp(σ ε - σ²/2) with ε a unit Gaussian field drawn on a grid ``correlation_pixels`` coarser and upsampled
bilinearly: zeros stay zeros (dry stays dry), the mean intensity is kept, and nearby pixels move together as a
radar's calibration and attenuation errors do. One field per member holds for all its context frames.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convlstm.utils.checks import check_float, check_int


def perturb_context(
    context: Tensor,
    *,
    noise_std: float,
    correlation_pixels: int = 8,
    generator: torch.Generator | None = None,
    max_value: float | None = 1.0,
) -> Tensor:
    """One perturbed copy of ``context`` (B, T, C, H, W) (see the module docstring); clipped to ``max_value``."""
    if not isinstance(context, Tensor) or context.ndim != 5:
        got = tuple(context.shape) if isinstance(context, Tensor) else type(context).__name__
        raise ValueError(f"context must be (B, T, C, H, W), got {got}")
    check_float("noise_std", noise_std, 0.0, math.inf)
    check_int("correlation_pixels", correlation_pixels)
    batch, _, channels, height, width = context.shape
    coarse = (max(1, -(-height // correlation_pixels)) + 1, max(1, -(-width // correlation_pixels)) + 1)
    eps = torch.randn(batch, channels, *coarse, generator=generator, dtype=torch.float32)
    field = F.interpolate(eps, size=(height, width), mode="bilinear", align_corners=True)  # (B, C, H, W)
    factor = torch.exp(noise_std * field - noise_std**2 / 2).to(device=context.device, dtype=context.dtype)
    out = context * factor.unsqueeze(1)
    return out if max_value is None else out.clamp(max=max_value)


@torch.no_grad()
def ensemble_forecast(
    model: nn.Module,
    context: Tensor,
    *,
    members: int,
    horizon: int | None = None,
    noise_std: float = 0.3,
    correlation_pixels: int = 8,
    seed: int = 0,
    max_value: float | None = 1.0,
) -> Tensor:
    """An ensemble of ``members`` forecasts of ``model`` from perturbed copies of ``context``.

    Member 0 runs on the unperturbed context (the control forecast); the others on contexts perturbed by
    `perturb_context`. The model runs in eval mode; its mode is restored afterwards.

    Args:
        model: any forecaster, ``model(context, horizon) -> (B, horizon, C, H, W)``.
        context: (B, T_in, C, H, W).
        members: ensemble size N >= 1.
        horizon: frames to predict (the model's default if None).
        noise_std: σ of the log-normal factor on the frame values (0.3: most values move by less than 30 %).
        correlation_pixels: the scale of the perturbation field.
        seed: seed of the perturbations (the same seed gives the same ensemble).
        max_value: the frames' upper bound (1 for radar pixels), or None.

    Returns:
        (B, N, horizon, C, H, W).
    """
    check_int("members", members)
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        outputs = []
        for member in range(members):
            perturbed = (
                context
                if member == 0
                else perturb_context(
                    context,
                    noise_std=noise_std,
                    correlation_pixels=correlation_pixels,
                    generator=generator,
                    max_value=max_value,
                )
            )
            outputs.append(model(perturbed, horizon))
    finally:
        model.train(was_training)
    return torch.stack(outputs, dim=1)
