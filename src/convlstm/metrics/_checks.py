"""Input validation and reductions shared by the metric modules."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from convlstm.utils.checks import check_choice, check_int

Reduction = Literal["mean", "lead_time", "none"]
_REDUCTIONS = ("mean", "lead_time", "none")


def check_no_nan(x: Tensor, name: str, valid: Tensor | None = None) -> None:
    """Raise ValueError if ``x`` holds a NaN (at a valid pixel, when a ``valid`` mask of x's shape is given)."""
    if not x.is_floating_point():
        return
    nan = torch.isnan(x)
    if valid is not None:
        nan = nan & valid
    if bool(nan.any()):
        where = "" if valid is None else " at valid pixels"
        raise ValueError(f"{name} contains NaN{where} ({int(nan.sum())} of {x.numel()} values)")


def check_tensor(x: object, name: str) -> Tensor:
    """Return ``x`` if it is a tensor, else raise ValueError naming it."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def check_pair(
    pred: Tensor,
    target: Tensor,
    *,
    min_ndim: int = 3,
    layout: str = "(B, T, C, *spatial)",
    mask: Tensor | None = None,
) -> Tensor | None:
    """Check that ``pred`` and ``target`` are floating tensors of one shape, at least ``min_ndim``-D, without NaN.

    With a ``mask`` (bool, broadcastable to target's shape, True = valid pixel), NaN is refused at valid pixels
    only (hidden pixels may hold anything) and the mask comes back broadcast to target's shape; else None.
    """
    check_tensor(pred, "pred")
    check_tensor(target, "target")
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got pred {tuple(pred.shape)} and target {tuple(target.shape)}"
        )
    if pred.ndim < min_ndim:
        raise ValueError(f"pred and target must be {layout}, got {pred.ndim}-D shape {tuple(pred.shape)}")
    for x, name in ((pred, "pred"), (target, "target")):
        if not x.is_floating_point():
            raise ValueError(f"{name} must be a floating point tensor, got dtype {x.dtype}")
    valid = expand_mask(mask, target)
    for x, name in ((pred, "pred"), (target, "target")):
        check_no_nan(x, name, valid)
    return valid


def check_like(x: Tensor | None, reference: Tensor, name: str, valid: Tensor | None = None) -> None:
    """Check that an optional floating companion tensor (e.g. a rain rate) matches ``target``'s shape, without NaN
    (at valid pixels, given a ``valid`` mask)."""
    if x is None:
        return
    check_tensor(x, name)
    if x.shape != reference.shape:
        raise ValueError(f"{name} must have target's shape {tuple(reference.shape)}, got {tuple(x.shape)}")
    check_no_nan(x, name, valid)


def expand_mask(mask: Tensor | None, reference: Tensor) -> Tensor | None:
    """Return a boolean ``mask`` broadcast to ``reference``'s shape (True = valid pixel), or None."""
    if mask is None:
        return None
    check_tensor(mask, "mask")
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor (True = valid pixel), got dtype {mask.dtype}")
    try:
        return mask.to(reference.device).broadcast_to(reference.shape)
    except RuntimeError:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to target's shape {tuple(reference.shape)}"
        ) from None


def check_lead_times(lead_times: object) -> int:
    """Return ``lead_times`` if it is a positive int, else raise ValueError."""
    return check_int("lead_times", lead_times, 1)


def check_reduction(reduction: str) -> None:
    """Raise ValueError if ``reduction`` is not one of the supported names."""
    check_choice("reduction", reduction, _REDUCTIONS)


def compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype metrics are computed in: at least float32 (half precision inputs are upcast)."""
    return torch.promote_types(x.dtype, torch.float32)


def frame_sum(x: Tensor) -> Tensor:
    """Sum over every dimension after (B, T): (B, T, ...) -> (B, T)."""
    return x.flatten(2).sum(2)


def frame_mean(x: Tensor) -> Tensor:
    """Mean over every dimension after (B, T): (B, T, ...) -> (B, T)."""
    return x.flatten(2).mean(2)


def check_weight(weight: Tensor | None, batch_size: int) -> Tensor | None:
    """Return ``weight`` as a float64 (B,) tensor of finite values >= 0, or None; ValueError naming it otherwise."""
    if weight is None:
        return None
    check_tensor(weight, "weight")
    if weight.shape != (batch_size,):
        raise ValueError(f"weight must have one value per sequence, shape ({batch_size},), got {tuple(weight.shape)}")
    if weight.is_complex() or weight.dtype == torch.bool:
        raise ValueError(f"weight must hold real numbers, got dtype {weight.dtype}")
    # float64 only on the CPU: some accelerators (MPS) have none; the weights are B numbers.
    values = weight.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(values).all()) or bool((values < 0).any()):
        raise ValueError(f"weight must be finite and >= 0, got {values.tolist()}")
    return values


def lead_time_sums(values: Tensor, weight: Tensor | None) -> tuple[Tensor, Tensor]:
    """Per lead time, the weighted sum over sequences of the frames that have a score, and the sum of their weights.

    Args:
        values: One score per sequence and lead time, (B, T); NaN marks a frame without a score (no valid pixel).
        weight: One weight per sequence, (B,) (as `check_weight` returns it), or None for weight 1.

    Returns:
        (sums, counts), each (T,), in the dtype of ``values``; without NaN and weights, counts are B.
    """
    counted = ~torch.isnan(values)
    if weight is None and bool(counted.all()):
        return values.sum(0), torch.full_like(values[0], values.shape[0])
    w = torch.ones_like(values) if weight is None else weight.to(values).unsqueeze(1).expand_as(values)
    w = torch.where(counted, w, 0.0)
    # where, not a product: a frame of weight 0 may score inf (a perfect PSNR) and 0 * inf is NaN.
    return torch.where(w > 0, values * w, 0.0).sum(0), w.sum(0)


def over_lead_times(per_lead_time: Tensor, over_time: Literal["mean", "sum"] = "mean") -> Tensor:
    """One number from per-lead-time scores (T,): their mean (or sum), skipping lead times without a score (NaN);
    NaN when no lead time has one."""
    missing = torch.isnan(per_lead_time)
    if not bool(missing.any()):
        return per_lead_time.sum() if over_time == "sum" else per_lead_time.mean()
    if bool(missing.all()):
        return per_lead_time.new_tensor(torch.nan)
    return per_lead_time.nansum() if over_time == "sum" else per_lead_time.nanmean()


def reduce_frames(
    values: Tensor,
    reduction: Reduction,
    *,
    over_time: Literal["mean", "sum"] = "mean",
    weight: Tensor | None = None,
) -> Tensor:
    """Reduce per-frame scores of shape (B, T).

    Args:
        values: One score per sequence and lead time, (B, T); NaN marks a frame without a score (every pixel masked),
            which no average counts.
        reduction: ``"none"`` returns (B, T); ``"lead_time"`` averages over sequences, (T,); ``"mean"`` reduces
            each sequence over its lead times (``over_time``) and averages over sequences, a 0-d tensor.
        over_time: How one sequence's frames combine under ``"mean"``: ``"mean"`` for per-frame scores,
            ``"sum"`` for per-sequence totals (Shi et al.'s cross-entropy).
        weight: Optional importance weight per sequence, (B,): the averages over sequences become weighted means
            (sum of w * score over the sum of w, over the frames that have a score). Not for ``"none"``.

    A lead time where no frame has a score is NaN in ``"lead_time"``; ``"mean"`` skips such lead times (NaN when
    every lead time is one).
    """
    check_reduction(reduction)
    weights = check_weight(weight, values.shape[0])
    if reduction == "none":
        if weights is not None:
            raise ValueError("weight applies to averages over sequences: reduction 'mean' or 'lead_time', got 'none'")
        return values
    if weights is None and not bool(torch.isnan(values).any()):
        per_lead_time = values.mean(0)
    else:
        per_lead_time = nan_ratio(*lead_time_sums(values, weights))
    if reduction == "lead_time":
        return per_lead_time
    return over_lead_times(per_lead_time, over_time)


def valid_count(valid: Tensor, dtype: torch.dtype) -> Tensor:
    """The number of valid pixels of each frame: (B, T, ...) bool -> (B, T) in ``dtype``."""
    return valid.flatten(2).sum(2).to(dtype)


def masked_frame_sum(x: Tensor, valid: Tensor | None) -> Tensor:
    """Sum over each frame's valid pixels (every pixel without a mask), NaN for a frame without one: -> (B, T)."""
    if valid is None:
        return frame_sum(x)
    total = frame_sum(x.where(valid, 0.0))
    return torch.where(valid_count(valid, total.dtype) > 0, total, torch.nan)


def masked_frame_mean(x: Tensor, valid: Tensor | None) -> Tensor:
    """Mean over each frame's valid pixels (every pixel without a mask), NaN for a frame without one: -> (B, T)."""
    if valid is None:
        return frame_mean(x)
    total = frame_sum(x.where(valid, 0.0))
    return nan_ratio(total, valid_count(valid, total.dtype))


def nan_ratio(numerator: Tensor, denominator: Tensor) -> Tensor:
    """numerator / denominator, NaN where the denominator is zero (no 0/0 warnings, no inf)."""
    nonzero = denominator != 0
    return torch.where(nonzero, numerator / torch.where(nonzero, denominator, 1.0), torch.nan)
