"""Per-lead-time scores of a forecast sequence against its target.

Every function takes ``pred`` and ``target`` of shape (B, T, C, *spatial), T being the lead time, and a
``reduction``: ``"none"`` gives one value per sequence and lead time (B, T), ``"lead_time"`` averages over the
sequences (T,), and ``"mean"`` (the default) gives the headline number, a 0-d tensor: the average over sequences of
each sequence's score, a sequence's score being the mean of its frames' scores (the sum for
[`bce_per_sequence`][convlstm.metrics.bce_per_sequence], following Shi et al. 2015).

Masks and weights: every function takes an optional ``mask`` (bool, broadcastable to target's shape, True where a
pixel counts, e.g. where radars cover it) and ``weight`` (one importance weight per sequence, (B,)). A frame's
score uses its valid pixels only: per-pixel scores average over them, per-frame scores sum over them, and what a
hidden pixel holds (NaN included) changes nothing. A frame without a valid pixel has no score: NaN under
``"none"``, left out of the averages, and a lead time where no frame has a score is NaN under ``"lead_time"`` and
skipped by ``"mean"``. The averages over sequences are weighted means, sum(w * score) / sum(w) over the frames
that have a score, so that scores of patches drawn in favour of rain (with their importance weights) estimate
those of uniformly drawn ones; integer weights equal repeating sequences. Without a mask and weights the numbers
are the plain ones.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor

from convlstm.metrics._checks import (
    Reduction,
    check_pair,
    compute_dtype,
    frame_mean,
    masked_frame_mean,
    masked_frame_sum,
    reduce_frames,
)
from convlstm.utils.checks import check_positive

__all__ = [
    "CORRELATION_EPS",
    "SSIM_KERNEL_SIZE",
    "SSIM_SIGMA",
    "bce_per_sequence",
    "correlation",
    "mae_per_frame",
    "mae_per_pixel",
    "mse_per_frame",
    "mse_per_pixel",
    "psnr",
    "ssim",
]

CORRELATION_EPS = 1e-12
SSIM_KERNEL_SIZE = 11
SSIM_SIGMA = 1.5


def _pair(pred: Tensor, target: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
    """pred and target in the compute dtype, hidden pixels set to 0, and the valid mask (target's shape) or None."""
    valid = check_pair(pred, target, mask=mask)
    dtype = compute_dtype(pred)
    p, t = pred.to(dtype), target.to(dtype)
    if valid is not None:
        # A hidden pixel may hold anything, NaN included; zeroed, it cannot leak into a sum through 0 * NaN.
        p, t = p.where(valid, 0.0), t.where(valid, 0.0)
    return p, t, valid


def _difference(pred: Tensor, target: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
    p, t, valid = _pair(pred, target, mask)
    return p - t, valid


def mse_per_pixel(
    pred: Tensor,
    target: Tensor,
    *,
    mask: Tensor | None = None,
    weight: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """Mean squared error averaged over a frame's (valid) pixels (C x spatial).

    Args:
        pred: Prediction, (B, T, C, *spatial).
        target: Ground truth, same shape.
        mask: Optional bool mask broadcastable to target's shape, True where a pixel counts: a frame's mean runs
            over its valid pixels only (NaN for a frame without one, left out of the averages).
        weight: Optional importance weight per sequence, (B,): weighted means over sequences (not with "none").
        reduction: ``"mean"`` (0-d), ``"lead_time"`` (T,) or ``"none"`` (B, T).
    """
    diff, valid = _difference(pred, target, mask)
    return reduce_frames(masked_frame_mean(diff.square(), valid), reduction, weight=weight)


def mae_per_pixel(
    pred: Tensor,
    target: Tensor,
    *,
    mask: Tensor | None = None,
    weight: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """Mean absolute error averaged over a frame's (valid) pixels; arguments as
    [`mse_per_pixel`][convlstm.metrics.mse_per_pixel]."""
    diff, valid = _difference(pred, target, mask)
    return reduce_frames(masked_frame_mean(diff.abs(), valid), reduction, weight=weight)


def mse_per_frame(
    pred: Tensor,
    target: Tensor,
    *,
    mask: Tensor | None = None,
    weight: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """Squared error summed over a frame's pixels, then averaged over frames and sequences (OpenSTL's "MSE").

    Equals [`mse_per_pixel`][convlstm.metrics.mse_per_pixel] times the number of pixels in a frame (C x H x W). With a
    ``mask`` the sum runs over the frame's valid pixels only, so a frame half hidden sums half as many errors (NaN for a
    frame without a valid pixel, left out of the averages); arguments as
    [`mse_per_pixel`][convlstm.metrics.mse_per_pixel].
    """
    diff, valid = _difference(pred, target, mask)
    return reduce_frames(masked_frame_sum(diff.square(), valid), reduction, weight=weight)


def mae_per_frame(
    pred: Tensor,
    target: Tensor,
    *,
    mask: Tensor | None = None,
    weight: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """Absolute error summed over a frame's (valid) pixels, then averaged (OpenSTL's "MAE"); as
    [`mse_per_frame`][convlstm.metrics.mse_per_frame]."""
    diff, valid = _difference(pred, target, mask)
    return reduce_frames(masked_frame_sum(diff.abs(), valid), reduction, weight=weight)


def psnr(
    pred: Tensor,
    target: Tensor,
    *,
    mask: Tensor | None = None,
    weight: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """Peak signal-to-noise ratio in dB per frame, peak 1, after clipping both tensors to [0, 1].

    A frame predicted exactly has an infinite PSNR, and so has any average that includes it. With a ``mask``, a
    frame's PSNR is -10 log10 of its squared error averaged over its valid pixels (NaN without one).

    Args:
        pred: Prediction in [0, 1], (B, T, C, *spatial).
        target: Ground truth in [0, 1], same shape.
        mask: Optional bool mask broadcastable to target's shape, True where a pixel counts.
        weight: Optional importance weight per sequence, (B,): weighted means over sequences (not with "none").
        reduction: ``"mean"`` (0-d), ``"lead_time"`` (T,) or ``"none"`` (B, T).
    """
    if mask is not None:
        p, t, valid = _pair(pred, target, mask)
        frame_mse = masked_frame_mean((p.clamp(0.0, 1.0) - t.clamp(0.0, 1.0)).square(), valid)
        return reduce_frames(-10.0 * torch.log10(frame_mse), reduction, weight=weight)
    from torchmetrics.functional.image import peak_signal_noise_ratio  # lazy: torchmetrics imports matplotlib

    check_pair(pred, target)
    dtype = compute_dtype(pred)
    frame_dims = tuple(range(2, pred.ndim))
    values = peak_signal_noise_ratio(
        pred.to(dtype).clamp(0.0, 1.0),
        target.to(dtype).clamp(0.0, 1.0),
        data_range=1.0,
        reduction="none",
        dim=frame_dims,
    )
    return reduce_frames(values, reduction, weight=weight)


def _check_ssim_arguments(pred: Tensor, data_range: float) -> None:
    if pred.ndim != 5:
        raise ValueError(f"ssim needs pred and target of shape (B, T, C, H, W), got {tuple(pred.shape)}")
    if min(pred.shape[-2:]) < SSIM_KERNEL_SIZE:
        raise ValueError(
            f"ssim needs frames of at least {SSIM_KERNEL_SIZE}x{SSIM_KERNEL_SIZE} pixels, got shape {tuple(pred.shape)}"
        )
    check_positive("data_range", data_range)


def _gaussian_window(channels: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """SSIM's 11x11 Gaussian window (sigma 1.5, summing to 1), one per channel: (C, 1, 11, 11)."""
    offsets = torch.arange(SSIM_KERNEL_SIZE, dtype=dtype, device=device) - SSIM_KERNEL_SIZE // 2
    gauss = torch.exp(-((offsets / SSIM_SIGMA) ** 2) / 2)
    gauss = gauss / gauss.sum()
    return torch.outer(gauss, gauss).expand(channels, 1, -1, -1)


def _masked_ssim_map(p: Tensor, t: Tensor, valid: Tensor, data_range: float) -> Tensor:
    """The SSIM map of (N, C, H, W) frames over the window's valid pixels only: (N, C, H - 10, W - 10).

    Each local mean, variance and covariance is the Gaussian-weighted one over the valid pixels of the window,
    renormalised by their total weight (a normalised convolution), so hidden pixels never enter; with every pixel
    valid it is the plain map. Centres that are hidden come out as anything; the caller leaves them out.
    """
    m = valid.to(p.dtype)
    channels = p.shape[1]
    stacked = torch.cat([m, m * p, m * t, m * p * p, m * t * t, m * p * t])  # (6N, C, H, W)
    window = _gaussian_window(channels, p.dtype, p.device)
    # No padding: the map exists where the window lies inside the frame, as in the reference implementation.
    total, sum_p, sum_t, sum_pp, sum_tt, sum_pt = F.conv2d(stacked, window, groups=channels).split(p.shape[0])
    total = total.clamp_min(torch.finfo(p.dtype).tiny)  # 0 only at hidden centres, which are dropped
    mu_p, mu_t = sum_p / total, sum_t / total
    var_p = (sum_pp / total - mu_p.square()).clamp_min(0.0)
    var_t = (sum_tt / total - mu_t.square()).clamp_min(0.0)
    cov = sum_pt / total - mu_p * mu_t
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    return ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p.square() + mu_t.square() + c1) * (var_p + var_t + c2))


def ssim(
    pred: Tensor,
    target: Tensor,
    *,
    data_range: float = 1.0,
    mask: Tensor | None = None,
    weight: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """Structural similarity per frame (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03).

    A frame's SSIM is the mean of its SSIM map over channels and the pixels at least 5 away from the border
    (scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``;
    OpenSTL instead uses scikit-image's 7x7 uniform window with sample covariance).

    With a ``mask``, the local statistics of the map are taken over the valid pixels of each window (Gaussian
    weights renormalised over them), and the frame's SSIM is the mean of the map over its valid pixels at least 5
    away from the border (NaN without one): hidden pixels enter neither.

    Args:
        pred: Prediction, (B, T, C, H, W) with H, W >= 11.
        target: Ground truth, same shape.
        data_range: Maximum minus minimum of the data; always given explicitly, never inferred from the data.
        mask: Optional bool mask broadcastable to target's shape, True where a pixel counts.
        weight: Optional importance weight per sequence, (B,): weighted means over sequences (not with "none").
        reduction: ``"mean"`` (0-d), ``"lead_time"`` (T,) or ``"none"`` (B, T).
    """
    border = SSIM_KERNEL_SIZE // 2
    if mask is not None:
        p, t, valid = _pair(pred, target, mask)
        _check_ssim_arguments(p, data_range)
        frames = cast(Tensor, valid).flatten(0, 1)  # (B*T, C, H, W); not None, a mask was given
        ssim_map = _masked_ssim_map(p.flatten(0, 1), t.flatten(0, 1), frames, float(data_range))
        inside = frames[..., border:-border, border:-border]
        values = masked_frame_mean(ssim_map.unflatten(0, pred.shape[:2]), inside.unflatten(0, pred.shape[:2]))
        return reduce_frames(values, reduction, weight=weight)
    # lazy: torchmetrics imports matplotlib
    from torchmetrics.functional.image import structural_similarity_index_measure

    check_pair(pred, target)
    _check_ssim_arguments(pred, data_range)
    dtype = compute_dtype(pred)
    _, ssim_map = cast(
        tuple[Tensor, Tensor],
        structural_similarity_index_measure(
            pred.to(dtype).flatten(0, 1),  # (B*T, C, H, W)
            target.to(dtype).flatten(0, 1),
            data_range=float(data_range),
            reduction="none",
            return_full_image=True,
        ),
    )
    # torchmetrics averages a map computed over reflect-padded borders; the reference (Wang et al.'s code,
    # scikit-image) averages only where the window lies inside the frame.
    interior = ssim_map[..., border:-border, border:-border]  # (B*T, C, H - 10, W - 10)
    return reduce_frames(frame_mean(interior.unflatten(0, pred.shape[:2])), reduction, weight=weight)


def bce_per_sequence(
    pred: Tensor,
    target: Tensor,
    *,
    eps: float = 1e-7,
    mask: Tensor | None = None,
    weight: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """Shi et al.'s cross-entropy: per-pixel binary cross-entropy summed over all predicted frames of a sequence.

    ``"mean"`` sums each sequence's frames and averages over sequences (the score of Shi et al. 2015's Moving
    MNIST table); ``"lead_time"`` gives each lead time's frame sum averaged over sequences (its sum over T is the
    ``"mean"`` value); ``"none"`` gives each frame's sum, (B, T). With a ``mask`` the sums run over valid pixels
    only (a frame without one has none, NaN, and ``"mean"`` sums the lead times that have a value).

    Args:
        pred: Predicted probabilities in [0, 1], (B, T, C, *spatial); clamped to [eps, 1 - eps] against log(0).
        target: Target intensities in [0, 1] (binary or soft), same shape.
        eps: Clamping margin for the probabilities.
        mask: Optional bool mask broadcastable to target's shape, True where a pixel counts; hidden pixels need
            not lie in [0, 1].
        weight: Optional importance weight per sequence, (B,): weighted means over sequences (not with "none").
        reduction: ``"mean"`` (0-d), ``"lead_time"`` (T,) or ``"none"`` (B, T).
    """
    p, t, valid = _pair(pred, target, mask)
    for x, name in ((p, "pred"), (t, "target")):  # hidden pixels hold 0 here
        if bool((x < 0).any()) or bool((x > 1).any()):
            low, high = float(x.min()), float(x.max())
            raise ValueError(f"bce_per_sequence needs {name} in [0, 1] (probabilities), got values in [{low}, {high}]")
    p = p.clamp(eps, 1.0 - eps)
    entropy = -(t * torch.log(p) + (1.0 - t) * torch.log1p(-p))
    return reduce_frames(masked_frame_sum(entropy, valid), reduction, over_time="sum", weight=weight)


def correlation(
    pred: Tensor,
    target: Tensor,
    *,
    mask: Tensor | None = None,
    weight: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """Shi et al.'s correlation per frame: sum(P*T) / (sqrt(sum P^2 * sum T^2) + 1e-12), then averaged.

    With a ``mask`` the sums run over a frame's valid pixels (NaN for a frame without one); arguments as
    [`mse_per_pixel`][convlstm.metrics.mse_per_pixel].
    """
    p, t, valid = _pair(pred, target, mask)
    denominator = torch.sqrt(masked_frame_sum(p.square(), valid) * masked_frame_sum(t.square(), valid))
    return reduce_frames(masked_frame_sum(p * t, valid) / (denominator + CORRELATION_EPS), reduction, weight=weight)
