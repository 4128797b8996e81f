"""Per-lead-time scores of a forecast sequence against its target.

Every function takes ``pred`` and ``target`` of shape (B, T, C, *spatial), T being the lead time, and a
``reduction``: ``"none"`` gives one value per sequence and lead time (B, T), ``"lead_time"`` averages over the
sequences (T,), and ``"mean"`` (the default) gives the headline number, a 0-d tensor: the average over sequences of
each sequence's score, a sequence's score being the mean of its frames' scores (the sum for
:func:`bce_per_sequence`, following Shi et al. 2015).
"""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor

from convlstm.metrics._checks import Reduction, check_pair, compute_dtype, frame_mean, frame_sum, reduce_frames

__all__ = [
    "CORRELATION_EPS",
    "SSIM_KERNEL_SIZE",
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


def _difference(pred: Tensor, target: Tensor) -> Tensor:
    check_pair(pred, target)
    dtype = compute_dtype(pred)
    return pred.to(dtype) - target.to(dtype)


def mse_per_pixel(pred: Tensor, target: Tensor, *, reduction: Reduction = "mean") -> Tensor:
    """Mean squared error averaged over a frame's pixels (C x spatial).

    Args:
        pred: Prediction, (B, T, C, *spatial).
        target: Ground truth, same shape.
        reduction: ``"mean"`` (0-d), ``"lead_time"`` (T,) or ``"none"`` (B, T).
    """
    return reduce_frames(frame_mean(_difference(pred, target).square()), reduction)


def mae_per_pixel(pred: Tensor, target: Tensor, *, reduction: Reduction = "mean") -> Tensor:
    """Mean absolute error averaged over a frame's pixels; arguments as :func:`mse_per_pixel`."""
    return reduce_frames(frame_mean(_difference(pred, target).abs()), reduction)


def mse_per_frame(pred: Tensor, target: Tensor, *, reduction: Reduction = "mean") -> Tensor:
    """Squared error summed over a frame's pixels, then averaged over frames and sequences (OpenSTL's "MSE").

    Equals :func:`mse_per_pixel` times the number of pixels in a frame (C x H x W); arguments as
    :func:`mse_per_pixel`.
    """
    return reduce_frames(frame_sum(_difference(pred, target).square()), reduction)


def mae_per_frame(pred: Tensor, target: Tensor, *, reduction: Reduction = "mean") -> Tensor:
    """Absolute error summed over a frame's pixels, then averaged (OpenSTL's "MAE"); as :func:`mse_per_frame`."""
    return reduce_frames(frame_sum(_difference(pred, target).abs()), reduction)


def psnr(pred: Tensor, target: Tensor, *, reduction: Reduction = "mean") -> Tensor:
    """Peak signal-to-noise ratio in dB per frame, peak 1, after clipping both tensors to [0, 1].

    A frame predicted exactly has an infinite PSNR, and so has any average that includes it.

    Args:
        pred: Prediction in [0, 1], (B, T, C, *spatial).
        target: Ground truth in [0, 1], same shape.
        reduction: ``"mean"`` (0-d), ``"lead_time"`` (T,) or ``"none"`` (B, T).
    """
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
    return reduce_frames(values, reduction)


def ssim(pred: Tensor, target: Tensor, *, data_range: float = 1.0, reduction: Reduction = "mean") -> Tensor:
    """Structural similarity per frame (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03).

    A frame's SSIM is the mean of its SSIM map over channels and the pixels at least 5 away from the border
    (scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``;
    OpenSTL instead uses scikit-image's 7x7 uniform window with sample covariance).

    Args:
        pred: Prediction, (B, T, C, H, W) with H, W >= 11.
        target: Ground truth, same shape.
        data_range: Maximum minus minimum of the data; always given explicitly, never inferred from the data.
        reduction: ``"mean"`` (0-d), ``"lead_time"`` (T,) or ``"none"`` (B, T).
    """
    # lazy: torchmetrics imports matplotlib
    from torchmetrics.functional.image import structural_similarity_index_measure

    check_pair(pred, target)
    if pred.ndim != 5:
        raise ValueError(f"ssim needs pred and target of shape (B, T, C, H, W), got {tuple(pred.shape)}")
    if min(pred.shape[-2:]) < SSIM_KERNEL_SIZE:
        raise ValueError(
            f"ssim needs frames of at least {SSIM_KERNEL_SIZE}x{SSIM_KERNEL_SIZE} pixels, got shape {tuple(pred.shape)}"
        )
    if not data_range > 0:
        raise ValueError(f"data_range must be positive, got {data_range!r}")
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
    border = SSIM_KERNEL_SIZE // 2
    interior = ssim_map[..., border:-border, border:-border]  # (B*T, C, H - 10, W - 10)
    return reduce_frames(frame_mean(interior.unflatten(0, pred.shape[:2])), reduction)


def bce_per_sequence(pred: Tensor, target: Tensor, *, eps: float = 1e-7, reduction: Reduction = "mean") -> Tensor:
    """Shi et al.'s cross-entropy: per-pixel binary cross-entropy summed over all predicted frames of a sequence.

    ``"mean"`` sums each sequence's frames and averages over sequences (the score of Shi et al. 2015's Moving
    MNIST table); ``"lead_time"`` gives each lead time's frame sum averaged over sequences (its sum over T is the
    ``"mean"`` value); ``"none"`` gives each frame's sum, (B, T).

    Args:
        pred: Predicted probabilities in [0, 1], (B, T, C, *spatial); clamped to [eps, 1 - eps] against log(0).
        target: Target intensities in [0, 1] (binary or soft), same shape.
        eps: Clamping margin for the probabilities.
        reduction: ``"mean"`` (0-d), ``"lead_time"`` (T,) or ``"none"`` (B, T).
    """
    check_pair(pred, target)
    for x, name in ((pred, "pred"), (target, "target")):
        if bool((x < 0).any()) or bool((x > 1).any()):
            low, high = float(x.min()), float(x.max())
            raise ValueError(f"bce_per_sequence needs {name} in [0, 1] (probabilities), got values in [{low}, {high}]")
    dtype = compute_dtype(pred)
    p = pred.to(dtype).clamp(eps, 1.0 - eps)
    t = target.to(dtype)
    entropy = -(t * torch.log(p) + (1.0 - t) * torch.log1p(-p))
    return reduce_frames(frame_sum(entropy), reduction, over_time="sum")


def correlation(pred: Tensor, target: Tensor, *, reduction: Reduction = "mean") -> Tensor:
    """Shi et al.'s correlation per frame: sum(P*T) / (sqrt(sum P^2 * sum T^2) + 1e-12), then averaged.

    Arguments as :func:`mse_per_pixel`.
    """
    check_pair(pred, target)
    dtype = compute_dtype(pred)
    p, t = pred.to(dtype), target.to(dtype)
    denominator = torch.sqrt(frame_sum(p.square()) * frame_sum(t.square())) + CORRELATION_EPS
    return reduce_frames(frame_sum(p * t) / denominator, reduction)
