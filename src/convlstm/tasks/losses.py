"""Training losses: forecasting (MSE, MAE, Shi's BCE, HKO-7 balanced; the fair CRPS of an ensemble), segmentation
(cross-entropy + soft Dice) and PredNet's (weighted layer errors, extrapolation MAE).

Every forecasting loss here is a mean over pixels (B, T, C, *spatial), so its scale does not depend on the frame
size or the horizon; the paper-scale scores (summed over a frame, or over a sequence for Shi's BCE) are logged as
metrics by the tasks. Training losses check shapes but not values: a NaN in the data gives a NaN loss, which
[`convlstm.tasks.NonFiniteLossGuard`][convlstm.tasks.NonFiniteLossGuard] reports (checking values here would cost a
device sync per step).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from convlstm.metrics import balanced_weights, pixel_to_rain_rate
from convlstm.metrics.crps import crps_ensemble
from convlstm.models.prednet import weighted_prednet_error
from convlstm.units import ZR_RELATIONS
from convlstm.utils.checks import check_int

__all__ = [
    "ENSEMBLE_LOSSES",
    "FORECAST_LOSSES",
    "ForecastLossName",
    "RainUnits",
    "balanced_loss",
    "bce_loss",
    "crps_fair_loss",
    "decoupling_loss",
    "differential_divergence",
    "exceedance_loss",
    "extrapolation_loss",
    "forecast_loss",
    "fractions_loss",
    "log_mse_loss",
    "mae_loss",
    "mse_loss",
    "prednet_error_loss",
    "rain_rate_of",
    "segmentation_loss",
    "soft_dice_loss",
]

ForecastLossName = Literal["mse", "mae", "log_mse", "bce", "balanced", "crps_fair"]
FORECAST_LOSSES: tuple[str, ...] = ("mse", "mae", "log_mse", "bce", "balanced", "crps_fair")
#: The losses that score an ensemble (B, M, T, C, *spatial) rather than one forecast.
ENSEMBLE_LOSSES: tuple[str, ...] = ("crps_fair",)
RainUnits = Literal["pixel", "mm/h"]
#: HKO-7's Z-R relation (a, b), the default of the rain-rate losses.
HKO7_ZR = ZR_RELATIONS["hko7"]


def _check_pair(pred: Tensor, target: Tensor) -> None:
    if not isinstance(pred, Tensor) or not isinstance(target, Tensor):
        raise ValueError(f"pred and target must be tensors, got {type(pred).__name__} and {type(target).__name__}")
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got pred {tuple(pred.shape)} and target {tuple(target.shape)}"
        )


def _valid_weight(mask: Tensor | None, target: Tensor) -> Tensor | None:
    """A float mask (1 = counted pixel) broadcast to target's shape, or None."""
    if mask is None:
        return None
    try:
        return mask.to(device=target.device, dtype=torch.float32).broadcast_to(target.shape)
    except RuntimeError:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to target's shape {tuple(target.shape)}"
        ) from None


def _masked_mean(values: Tensor, weight: Tensor | None) -> Tensor:
    """Mean of ``values`` over the pixels where ``weight`` is nonzero (all pixels without a mask)."""
    if weight is None:
        return values.mean()
    return (values * weight).sum() / weight.sum().clamp_min(1.0)


def mse_loss(pred: Tensor, target: Tensor, *, mask: Tensor | None = None) -> Tensor:
    """Mean squared error over the (valid) pixels.

    Args:
        pred: Prediction, (B, T, C, *spatial).
        target: Ground truth, same shape.
        mask: Optional valid-pixel mask (bool or 0/1 float) broadcastable to target's shape.
    """
    _check_pair(pred, target)
    return _masked_mean((pred.float() - target.float()).square(), _valid_weight(mask, target))


def mae_loss(pred: Tensor, target: Tensor, *, mask: Tensor | None = None) -> Tensor:
    """Mean absolute error over the (valid) pixels; arguments as [`mse_loss`][convlstm.tasks.mse_loss]."""
    _check_pair(pred, target)
    return _masked_mean((pred.float() - target.float()).abs(), _valid_weight(mask, target))


def log_mse_loss(pred: Tensor, target: Tensor, *, mask: Tensor | None = None) -> Tensor:
    """Mean squared error of log(1 + x) over the (valid) pixels, for frames that are rain rates (mm/h, >= 0).

    In rain-rate space a squared (or absolute) error is dominated by the few pixels of heavy rain; in log(1 + R) an
    error by a factor counts about the same at 1 and at 30 mm/h, so drizzle and the edges of rain areas, where the
    0.5-5 mm/h thresholds are decided, weigh as much as the cores. Negative predictions count as 0 (log1p of a
    negative value is not defined below -1); arguments as [`mse_loss`][convlstm.tasks.mse_loss].
    """
    _check_pair(pred, target)
    error = pred.float().clamp_min(0.0).log1p() - target.float().clamp_min(0.0).log1p()
    return _masked_mean(error.square(), _valid_weight(mask, target))


#: Width, in log(1 + mm/h), of the sigmoid that stands for "reaches the threshold" in
#: [`fractions_loss`][convlstm.tasks.fractions_loss]: at 1 mm/h a forecast of 0.8 mm/h counts as a quarter of an
#: event and 1.2 mm/h as three quarters.
FRACTIONS_SOFTNESS = 0.1


def fractions_loss(
    pred: Tensor,
    target: Tensor,
    *,
    thresholds: Sequence[float],
    window: int,
    mask: Tensor | None = None,
    matched: bool = False,
) -> Tensor:
    """1 - FSS (Roberts & Lean 2008) of rain-rate fields at one neighbourhood size, averaged over ``thresholds``: a
    loss that asks for the right share of rain in every ``window`` x ``window`` square rather than at every pixel.

    A per-pixel loss cannot tell a forecast that keeps scattered showers, each a little misplaced, from one that
    smears them into drizzle below the threshold; this one can: the squares where the showers were lose their
    events. The forecast's events are soft, sigmoid((log(1 + x) - log(1 + threshold)) / ``FRACTIONS_SOFTNESS``), so
    that the loss has a gradient; the truth's are exact (x >= threshold). Per threshold, sum (F - O)^2 over sum
    (F^2 + O^2) of the fractions of every frame of the batch (as FSS sums them before the ratio), in [0, 1];
    a threshold no frame reaches adds 0. Invalid pixels count as no event, and only squares centred on valid
    pixels are summed (the benchmark's FSS); outside the frame is no event.

    With ``matched``, the forecast's events are those a probability-matched forecast would have: in each field its n
    largest values, n the number of the truth's events there, so that the loss judges only where the forecast puts
    its rain, not how much (probability matching takes the amounts from elsewhere). The soft step is then centred
    halfway between the forecast's n-th and (n + 1)-th largest log(1 + x) in the field (where the truth has no
    event, 0.5 above the largest).

    Args:
        pred: forecast rain rates (mm/h), (B, T, C, H, W).
        target: true rain rates, the same shape.
        thresholds: event thresholds in mm/h.
        window: side of the squares in pixels.
        mask: optional valid-pixel mask (bool or 0/1 float) broadcastable to target's shape.
        matched: rank the forecast's events as probability matching does (above) instead of thresholding its values.
    """
    _check_pair(pred, target)
    if pred.ndim < 4:
        raise ValueError(f"pred must be fields (B, T, C, H, W), got shape {tuple(pred.shape)}")
    check_int("window", window)
    if not thresholds or any(not 0 < float(t) < float("inf") for t in thresholds):
        raise ValueError(f"thresholds must be positive rain rates in mm/h, got {thresholds!r}")
    weight = _valid_weight(mask, target)
    valid = torch.ones_like(target, dtype=torch.float32) if weight is None else weight
    forecast = pred.float().clamp_min(0.0).log1p()
    truth = target.float()
    pad = (window // 2, (window - 1) // 2, window // 2, (window - 1) // 2)  # scipy's uniform_filter's squares

    def fractions(events: Tensor) -> Tensor:  # (..., H, W) -> the share of events in the square around each pixel
        flat = (events * valid).flatten(0, -3).unsqueeze(1)
        return F.avg_pool2d(F.pad(flat, pad), window, stride=1).view(events.shape)

    ratios = []
    for threshold in thresholds:
        observed = (truth >= threshold).float() * valid
        level = _matched_level(forecast, observed, valid) if matched else math.log1p(float(threshold))
        soft = torch.sigmoid((forecast - level) / FRACTIONS_SOFTNESS)
        f, o = fractions(soft), fractions(observed)
        error = ((f - o).square() * valid).sum()
        scale = ((f.square() + o.square()) * valid).sum()
        ratios.append(error / scale.clamp_min(1e-6))
    return torch.stack(ratios).mean()


def _matched_level(forecast: Tensor, observed: Tensor, valid: Tensor) -> Tensor:
    """Per field (..., H, W) -> (..., 1, 1): halfway between the n-th and (n + 1)-th largest valid ``forecast``
    values, n the field's count of ``observed`` events; above every value where n is 0, below every one where n is
    all the valid pixels."""
    values = forecast.masked_fill(valid == 0, -math.inf).flatten(-2)
    ranked = values.sort(dim=-1, descending=True).values
    count = observed.flatten(-2).sum(-1, keepdim=True).long()
    last = ranked.shape[-1] - 1
    above = ranked.gather(-1, (count - 1).clamp(0, last))
    below = ranked.gather(-1, count.clamp(0, last))
    above = torch.where(count > 0, above, ranked[..., :1] + 10 * FRACTIONS_SOFTNESS)
    below = torch.where(torch.isfinite(below) & (count <= last), below, above - 10 * FRACTIONS_SOFTNESS)
    return ((above + below) / 2).unsqueeze(-1)


def bce_loss(pred: Tensor, target: Tensor, *, mask: Tensor | None = None, eps: float = 1e-7) -> Tensor:
    """Shi et al.'s per-pixel binary cross-entropy, averaged over the (valid) pixels.

    ``pred`` holds probabilities (the model's output, e.g. after a sigmoid) and is clamped to [eps, 1 - eps] against
    log(0); a pixel predicted outside that range gets no gradient. ``target`` holds intensities in [0, 1].
    Shi et al. 2015 report the sum over a sequence's pixels and frames: that is this value times T x C x H x W
    (logged by the tasks as ``bce_per_sequence``).
    """
    _check_pair(pred, target)
    p = pred.float().clamp(eps, 1.0 - eps)
    t = target.float()
    entropy = -(t * torch.log(p) + (1.0 - t) * torch.log1p(-p))
    return _masked_mean(entropy, _valid_weight(mask, target))


def rain_rate_of(frames: Tensor, units: RainUnits = "pixel", *, zr: tuple[float, float] = HKO7_ZR) -> Tensor:
    """Rain rate in mm/h of frames: radar pixels in [0, 1] through dBZ = 70 p - 10 and Z = a R^b, or the frames
    themselves when they already are rain rates (``units="mm/h"``)."""
    if units == "mm/h":
        return frames.float()
    if units == "pixel":
        return pixel_to_rain_rate(frames.float(), relation=zr)
    raise ValueError(f"units must be 'pixel' or 'mm/h', got {units!r}")


def balanced_loss(
    pred: Tensor,
    target: Tensor,
    *,
    rain_rate: Tensor | None = None,
    mask: Tensor | None = None,
    units: RainUnits = "pixel",
    zr: tuple[float, float] = HKO7_ZR,
    mse_weight: float = 1.0,
    mae_weight: float = 1.0,
) -> Tensor:
    """HKO-7's balanced loss: ``mse_weight * B-MSE + mae_weight * B-MAE``, per pixel.

    Each pixel's squared and absolute errors (on the values given, e.g. radar pixels) are weighted by the true rain
    rate: 1 below 2 mm/h, 2 in [2, 5), 5 in [5, 10), 10 in [10, 30), 30 above (Shi et al. 2017). The result is
    (B-MSE + B-MAE) of [`convlstm.metrics`][convlstm.metrics] divided by the pixels of a frame (C x H x W), or, with a
    mask, the weighted errors summed over valid pixels divided by their number.

    Args:
        pred: Prediction, (B, T, C, *spatial).
        target: Ground truth, same shape.
        rain_rate: True rain rate in mm/h (target's shape) that sets the weights; by default computed from
            ``target`` with ``units`` and ``zr``.
        mask: Optional valid-pixel mask (bool or 0/1 float) broadcastable to target's shape.
        units: ``"pixel"`` (radar pixels in [0, 1]) or ``"mm/h"`` (target already is a rain rate).
        zr: Z-R relation (a, b): HKO-7's (58.53, 1.56) by default, Marshall-Palmer is (200, 1.6).
        mse_weight: Weight of the balanced squared error.
        mae_weight: Weight of the balanced absolute error.
    """
    _check_pair(pred, target)
    if rain_rate is None:
        rain_rate = rain_rate_of(target, units, zr=zr)
    elif rain_rate.shape != target.shape:
        raise ValueError(f"rain_rate must have target's shape {tuple(target.shape)}, got {tuple(rain_rate.shape)}")
    error = pred.float() - target.float()
    weighted = balanced_weights(rain_rate.float()) * (mse_weight * error.square() + mae_weight * error.abs())
    return _masked_mean(weighted, _valid_weight(mask, target))


def crps_fair_loss(members: Tensor, target: Tensor, *, mask: Tensor | None = None) -> Tensor:
    """The fair CRPS of an ensemble (Ferro 2014; [`crps_ensemble`][convlstm.metrics.crps_ensemble] with ``fair=True``),
    averaged over the (valid) pixels.

    At every pixel, with members x_1 ... x_M and truth y, mean_i |x_i - y| - sum_{i, j} |x_i - x_j| / (2 M (M - 1)):
    the CRPS that M members drawn from the forecast distribution score on average, whatever M. Unlike the CRPS of
    the members' empirical distribution (which divides the pair sum by 2 M^2), it does not reward an ensemble for
    being too narrow, so a model trained on it learns members that spread as the truth does.

    Args:
        members: (B, M, T, C, *spatial), M >= 2.
        target: (B, T, C, *spatial).
        mask: Optional valid-pixel mask (bool or 0/1 float) broadcastable to target's shape.

    Shape:
        members (B, M, T, C, *spatial), target (B, T, C, *spatial) -> scalar.
    """
    if not isinstance(members, Tensor) or not isinstance(target, Tensor):
        raise ValueError(f"members and target must be tensors, got {type(members).__name__}, {type(target).__name__}")
    if members.ndim != target.ndim + 1 or members.shape[:1] + members.shape[2:] != target.shape:
        raise ValueError(
            f"members must be (B, M, T, C, *spatial) for a target (B, T, C, *spatial), got members "
            f"{tuple(members.shape)} and target {tuple(target.shape)}"
        )
    if members.shape[1] < 2:
        raise ValueError(f"the fair CRPS needs at least 2 members, got members of shape {tuple(members.shape)}")
    per_pixel = crps_ensemble(members.float(), target.float(), fair=True)
    return _masked_mean(per_pixel, _valid_weight(mask, target))


def forecast_loss(
    name: ForecastLossName,
    pred: Tensor,
    target: Tensor,
    *,
    mask: Tensor | None = None,
    rain_rate: Tensor | None = None,
    units: RainUnits = "pixel",
    zr: tuple[float, float] = HKO7_ZR,
    balanced_mse_weight: float = 1.0,
    balanced_mae_weight: float = 1.0,
) -> Tensor:
    """The forecasting loss ``name`` ("mse", "mae", "log_mse", "bce", "balanced" or "crps_fair") of pred against
    target.

    ``rain_rate``, ``units``, ``zr`` and the balanced weights are used by "balanced" only. For "crps_fair"
    ``pred`` is an ensemble (B, M, T, C, *spatial) (see [`crps_fair_loss`][convlstm.tasks.crps_fair_loss]).
    """
    if name == "mse":
        return mse_loss(pred, target, mask=mask)
    if name == "mae":
        return mae_loss(pred, target, mask=mask)
    if name == "log_mse":
        return log_mse_loss(pred, target, mask=mask)
    if name == "bce":
        return bce_loss(pred, target, mask=mask)
    if name == "balanced":
        return balanced_loss(
            pred,
            target,
            rain_rate=rain_rate,
            mask=mask,
            units=units,
            zr=zr,
            mse_weight=balanced_mse_weight,
            mae_weight=balanced_mae_weight,
        )
    if name == "crps_fair":
        return crps_fair_loss(pred, target, mask=mask)
    raise ValueError(f"loss must be one of {FORECAST_LOSSES}, got {name!r}")


def exceedance_loss(
    logits: Tensor,
    target: Tensor,
    *,
    thresholds: Sequence[float],
    mask: Tensor | None = None,
    units: RainUnits = "pixel",
    zr: tuple[float, float] = HKO7_ZR,
    threshold_weights: Sequence[float] | None = None,
) -> Tensor:
    """Per-threshold binary cross-entropy of exceedance logits, as categorical nowcasters train.

    Channel k of ``logits`` scores the event "true rain rate >= thresholds[k]" (the convention of the contingency
    scores); the loss is the mean over pixels of each threshold's cross-entropy, averaged over thresholds with
    ``threshold_weights`` (equal by default). Each threshold is its own binary problem, so the probabilities need
    not be ordered across thresholds; a trained model makes them nearly so.

    Args:
        logits: (B, T, K, *spatial), one channel per threshold.
        target: (B, T, 1, *spatial) true frames in ``units``.
        thresholds: K rain rates in mm/h.
        mask: optional valid-pixel mask broadcastable to target's shape.
        units / zr: how target becomes a rain rate (see `rain_rate_of`).
        threshold_weights: K non-negative weights, or None for equal ones.
    """
    if not isinstance(logits, Tensor) or not isinstance(target, Tensor):
        raise ValueError(f"logits and target must be tensors, got {type(logits).__name__}, {type(target).__name__}")
    k = len(thresholds)
    if k == 0:
        raise ValueError("thresholds must hold at least one rain rate, got none")
    expected = (*target.shape[:2], k, *target.shape[3:])
    if target.ndim < 4 or target.shape[2] != 1 or tuple(logits.shape) != expected:
        raise ValueError(
            f"logits must be (B, T, K={k}, *spatial) and target (B, T, 1, *spatial) alike, got logits "
            f"{tuple(logits.shape)} and target {tuple(target.shape)}"
        )
    weights = torch.ones(k) if threshold_weights is None else torch.as_tensor(threshold_weights, dtype=torch.float32)
    if weights.shape != (k,) or bool((weights < 0).any()) or not float(weights.sum()) > 0:
        raise ValueError(f"threshold_weights must be {k} non-negative numbers, not all 0, got {threshold_weights!r}")
    rain = rain_rate_of(target, units, zr=zr)  # (B, T, 1, *spatial)
    events = torch.cat([(rain >= float(t)).float() for t in thresholds], dim=2)
    entropy = F.binary_cross_entropy_with_logits(logits.float(), events, reduction="none")
    weight = _valid_weight(mask, target)
    per_threshold = torch.stack([_masked_mean(entropy[:, :, i : i + 1], weight) for i in range(k)])
    weights = weights.to(per_threshold.device)
    return (per_threshold * weights).sum() / weights.sum()


def _check_segmentation(logits: Tensor, labels: Tensor) -> None:
    if logits.ndim < 4 or labels.shape != logits.shape[:2] + logits.shape[3:]:
        raise ValueError(
            f"logits must be (B, T, K, *spatial) and labels (B, T, *spatial) with matching sizes, got logits "
            f"{tuple(logits.shape)} and labels {tuple(labels.shape)}"
        )
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor of class indices, got dtype {labels.dtype}")


def soft_dice_loss(logits: Tensor, labels: Tensor, *, ignore_index: int | None = None, smooth: float = 1.0) -> Tensor:
    """1 - soft Dice, computed on every frame and class, averaged over classes, frames and sequences.

    For a frame and class k: Dice = (2 sum(p_k y_k) + smooth) / (sum p_k + sum y_k + smooth), with p the softmax
    probabilities and y the one-hot labels, sums over the frame's pixels. Pixels labelled ``ignore_index`` count
    nowhere; if ``ignore_index`` names a class, that class is also left out of the mean.

    Args:
        logits: (B, T, K, *spatial) unnormalised class scores.
        labels: (B, T, *spatial) int64 class indices in [0, K) or ``ignore_index``.
        ignore_index: Optional label to skip.
        smooth: Added to numerator and denominator; a class absent from both prediction and truth scores 1.
    """
    _check_segmentation(logits, labels)
    num_classes = logits.shape[2]
    probs = logits.float().softmax(dim=2)  # (B, T, K, *spatial)
    valid = torch.ones_like(labels, dtype=torch.bool) if ignore_index is None else labels != ignore_index
    safe = torch.where(valid, labels, torch.zeros_like(labels))
    one_hot = F.one_hot(safe, num_classes).movedim(-1, 2).to(probs.dtype)  # (B, T, K, *spatial)
    weight = valid.unsqueeze(2).to(probs.dtype)
    probs, one_hot = probs * weight, one_hot * weight
    spatial = tuple(range(3, logits.ndim))
    intersection = (probs * one_hot).sum(spatial)  # (B, T, K)
    total = probs.sum(spatial) + one_hot.sum(spatial)
    dice = (2.0 * intersection + smooth) / (total + smooth)
    if ignore_index is not None and 0 <= ignore_index < num_classes:
        keep = torch.arange(num_classes, device=dice.device) != ignore_index
        dice = dice[..., keep]
    return 1.0 - dice.mean()


def segmentation_loss(
    logits: Tensor,
    labels: Tensor,
    *,
    ce_weight: float = 1.0,
    dice_weight: float = 1.0,
    ignore_index: int | None = None,
    class_weights: Tensor | None = None,
    dice_smooth: float = 1.0,
) -> Tensor:
    """``ce_weight`` x cross-entropy (mean over valid pixels of all frames) + ``dice_weight`` x soft Dice loss.

    Args:
        logits: (B, T, K, *spatial).
        labels: (B, T, *spatial) int64.
        ce_weight: Weight of the cross-entropy term.
        dice_weight: Weight of [`soft_dice_loss`][convlstm.tasks.soft_dice_loss].
        ignore_index: Label skipped by both terms.
        class_weights: Optional (K,) per-class weights of the cross-entropy (torch's ``weight``).
        dice_smooth: ``smooth`` of the Dice term.
    """
    _check_segmentation(logits, labels)
    loss = logits.new_zeros((), dtype=torch.float32)
    if ce_weight:
        weight = None if class_weights is None else class_weights.to(device=logits.device, dtype=torch.float32)
        ce = F.cross_entropy(
            logits.float().flatten(0, 1),  # (B*T, K, *spatial)
            labels.flatten(0, 1),
            weight=weight,
            ignore_index=-100 if ignore_index is None else ignore_index,
        )
        loss = loss + ce_weight * ce
    if dice_weight:
        loss = loss + dice_weight * soft_dice_loss(logits, labels, ignore_index=ignore_index, smooth=dice_smooth)
    return loss


def prednet_error_loss(errors: Tensor, layer_weights: Tensor, time_weights: Tensor) -> Tensor:
    """PredNet's training loss: the batch mean of `weighted_prednet_error`.

    Args:
        errors: (B, T, L) mean error of each layer at each step (PredNet's ``output_mode="error"``).
        layer_weights: (L,).
        time_weights: (T,).
    """
    return weighted_prednet_error(errors, layer_weights, time_weights).mean()


def extrapolation_loss(predictions: Tensor, frames: Tensor, start: int) -> Tensor:
    """PredNet's extrapolation fine-tuning loss: 0.5 x mean absolute error on the frames from ``start`` on.

    Args:
        predictions: (B, T, C, *spatial); PredNet's prediction at t is its guess of frame t.
        frames: (B, T, C, *spatial) the true frames.
        start: ``extrap_start_time``, 1 <= start < T.
    """
    _check_pair(predictions, frames)
    check_int("start", start, 1, frames.shape[1] - 1)  # frames 1 .. T-1 can be extrapolated
    return 0.5 * (predictions[:, start:].float() - frames[:, start:].float()).abs().mean()


def decoupling_loss(delta_c: Tensor, delta_m: Tensor) -> Tensor:
    """PredRNN-V2's decoupling loss: the mean absolute cosine similarity between the increments of the temporal and
    the spatiotemporal memory, per sample, step, layer and channel, over the pixels.

    Pushing it to 0 makes the two memories learn different things (Wang et al. 2022, eq. 6); OpenSTL weights it by
    ``decouple_beta`` (0.1) in the training loss.

    Args:
        delta_c: (..., H, W) adapted increments of c
            ([`forward_with_increments`][convlstm.models.PredRNNv2.forward_with_increments]).
        delta_m: the same shape, of m.
    """
    if delta_c.shape != delta_m.shape or delta_c.ndim < 3:
        raise ValueError(
            f"delta_c and delta_m must have one shape (..., H, W), got {tuple(delta_c.shape)} and "
            f"{tuple(delta_m.shape)}"
        )
    return F.cosine_similarity(delta_c.flatten(-2).float(), delta_m.flatten(-2).float(), dim=-1).abs().mean()


def differential_divergence(pred: Tensor, target: Tensor, *, tau: float = 0.1, eps: float = 1e-12) -> Tensor:
    """TAU's differential divergence regularisation (Tan et al. 2023): how far the forecast's frame-to-frame changes
    are from the truth's, as distributions over the pixels.

    For each sample and pair of consecutive frames, the change Δ = x_{t+1} - x_t is turned into a distribution
    p = softmax(Δ / tau) over its C H W elements, for the forecast (p) and the truth (q); the result is the mean
    over samples, pairs and elements of p log(p / (q + eps) + eps), as OpenSTL computes it (a KL divergence
    divided by the number of elements). OpenSTL weights it by ``alpha`` (0.1) beside the MSE; it returns 0 for
    horizons of 2 frames or fewer, and so does this.

    Args:
        pred: (B, T, C, *spatial) forecast.
        target: the same shape, the true frames.
        tau: the softmax's temperature (TAU: 0.1).
        eps: keeps the ratio and the logarithm finite.
    """
    _check_pair(pred, target)
    if pred.ndim < 3:
        raise ValueError(f"pred must have shape (B, T, ...), got {tuple(pred.shape)}")
    if pred.shape[1] <= 2:
        return pred.new_zeros(())
    p = F.softmax((pred[:, 1:] - pred[:, :-1]).flatten(2).float() / tau, dim=-1)  # (B, T - 1, C H W)
    q = F.softmax((target[:, 1:] - target[:, :-1]).flatten(2).float() / tau, dim=-1)
    return (p * torch.log(p / (q + eps) + eps)).mean()
