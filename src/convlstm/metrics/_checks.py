"""Input validation and reductions shared by the metric modules."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Reduction = Literal["mean", "lead_time", "none"]
_REDUCTIONS = ("mean", "lead_time", "none")


def check_no_nan(x: Tensor, name: str) -> None:
    """Raise ValueError if ``x`` holds a NaN."""
    if x.is_floating_point() and bool(torch.isnan(x).any()):
        raise ValueError(f"{name} contains NaN ({int(torch.isnan(x).sum())} of {x.numel()} values)")


def check_tensor(x: object, name: str) -> Tensor:
    """Return ``x`` if it is a tensor, else raise ValueError naming it."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def check_pair(pred: Tensor, target: Tensor, *, min_ndim: int = 3, layout: str = "(B, T, C, *spatial)") -> None:
    """Check that ``pred`` and ``target`` are floating tensors of one shape, at least ``min_ndim``-D, without NaN."""
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
        check_no_nan(x, name)


def check_like(x: Tensor | None, reference: Tensor, name: str) -> None:
    """Check that an optional floating companion tensor (e.g. a rain rate) matches ``target``'s shape, without NaN."""
    if x is None:
        return
    check_tensor(x, name)
    if x.shape != reference.shape:
        raise ValueError(f"{name} must have target's shape {tuple(reference.shape)}, got {tuple(x.shape)}")
    check_no_nan(x, name)


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
    if isinstance(lead_times, bool) or not isinstance(lead_times, int) or lead_times < 1:
        raise ValueError(f"lead_times must be a positive int, got {lead_times!r}")
    return lead_times


def check_reduction(reduction: str) -> None:
    """Raise ValueError if ``reduction`` is not one of the supported names."""
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype metrics are computed in: at least float32 (half precision inputs are upcast)."""
    return torch.promote_types(x.dtype, torch.float32)


def frame_sum(x: Tensor) -> Tensor:
    """Sum over every dimension after (B, T): (B, T, ...) -> (B, T)."""
    return x.flatten(2).sum(2)


def frame_mean(x: Tensor) -> Tensor:
    """Mean over every dimension after (B, T): (B, T, ...) -> (B, T)."""
    return x.flatten(2).mean(2)


def reduce_frames(values: Tensor, reduction: Reduction, *, over_time: Literal["mean", "sum"] = "mean") -> Tensor:
    """Reduce per-frame scores of shape (B, T).

    Args:
        values: One score per sequence and lead time, (B, T).
        reduction: ``"none"`` returns (B, T); ``"lead_time"`` averages over sequences, (T,); ``"mean"`` reduces
            each sequence over its lead times (``over_time``) and averages over sequences, a 0-d tensor.
        over_time: How one sequence's frames combine under ``"mean"``: ``"mean"`` for per-frame scores,
            ``"sum"`` for per-sequence totals (Shi et al.'s cross-entropy).
    """
    check_reduction(reduction)
    if reduction == "none":
        return values
    per_lead_time = values.mean(0)
    if reduction == "lead_time":
        return per_lead_time
    return per_lead_time.sum() if over_time == "sum" else per_lead_time.mean()


def nan_ratio(numerator: Tensor, denominator: Tensor) -> Tensor:
    """numerator / denominator, NaN where the denominator is zero (no 0/0 warnings, no inf)."""
    nonzero = denominator != 0
    return torch.where(nonzero, numerator / torch.where(nonzero, denominator, 1.0), torch.nan)
