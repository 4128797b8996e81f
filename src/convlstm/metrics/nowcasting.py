"""Precipitation nowcasting scores (HKO-7 protocol, Shi et al. 2017).

Rain rates are in mm/h. Radar pixels p in [0, 1] map to reflectivity dBZ = 70 p - 10 and to rain rate through the
Z-R relation Z = a R^b (HKO-7: a = 58.53, b = 1.56); see [`pixel_to_rain_rate`][convlstm.metrics.pixel_to_rain_rate].
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor

from convlstm.metrics._checks import (
    Reduction,
    check_lead_times,
    check_like,
    check_pair,
    check_weight,
    compute_dtype,
    masked_frame_sum,
    nan_ratio,
    reduce_frames,
)
from convlstm.units import pixel_to_rain_rate, rain_rate_to_pixel

__all__ = [
    "BALANCE_THRESHOLDS",
    "BALANCE_WEIGHTS",
    "HKO_THRESHOLDS",
    "ContingencyTable",
    "balanced_mae",
    "balanced_mse",
    "balanced_weights",
    "pixel_to_rain_rate",
    "rain_rate_to_pixel",
    "threshold_label",
]

HKO_THRESHOLDS: tuple[float, ...] = (0.5, 2.0, 5.0, 10.0, 30.0)
"""Rain-rate thresholds in mm/h of the HKO-7 benchmark, at which contingency scores are reported."""
BALANCE_THRESHOLDS: tuple[float, ...] = (2.0, 5.0, 10.0, 30.0)
BALANCE_WEIGHTS: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 30.0)
_SCORES = ("pod", "far", "csi", "hss")


def threshold_label(threshold: float) -> str:
    """The name suffix of a threshold: 0.5 -> "0.5", 30.0 -> "30" (as in "csi@30")."""
    return f"{threshold:g}"


def balanced_weights(
    rain_rate: Tensor,
    *,
    thresholds: Sequence[float] = BALANCE_THRESHOLDS,
    weights: Sequence[float] = BALANCE_WEIGHTS,
) -> Tensor:
    """HKO-7 balancing weights by true rain rate: 1 below 2 mm/h, 2 in [2, 5), 5 in [5, 10), 10 in [10, 30), 30 above.

    Args:
        rain_rate: True rain rate in mm/h, any shape.
        thresholds: Increasing bin edges; a value equal to an edge falls in the bin above it.
        weights: One weight per bin, ``len(thresholds) + 1`` of them.

    Returns:
        The weight of every element, shape and floating dtype of ``rain_rate``.
    """
    if len(weights) != len(thresholds) + 1:
        raise ValueError(f"weights needs len(thresholds) + 1 = {len(thresholds) + 1} values, got {len(weights)}")
    if any(high <= low for low, high in itertools.pairwise(thresholds)):
        raise ValueError(f"thresholds must be strictly increasing, got {tuple(thresholds)}")
    dtype = compute_dtype(rain_rate) if rain_rate.is_floating_point() else torch.float32
    edges = torch.tensor(thresholds, dtype=dtype, device=rain_rate.device)
    table = torch.tensor(weights, dtype=dtype, device=rain_rate.device)
    # right=True counts the edges <= value, so a value on an edge takes the upper bin's weight.
    return table[torch.bucketize(rain_rate.to(dtype), edges, right=True)]


def _balanced_error(
    pred: Tensor,
    target: Tensor,
    power: int,
    rain_rate: Tensor | None,
    mask: Tensor | None,
    weight: Tensor | None,
    reduction: Reduction,
) -> Tensor:
    valid = check_pair(pred, target, mask=mask)
    check_like(rain_rate, target, "rain_rate", valid)
    dtype = compute_dtype(pred)
    rain = target if rain_rate is None else rain_rate
    p, t = pred.to(dtype), target.to(dtype)
    if valid is not None:
        # Hidden pixels may hold anything, NaN included: zeroed, they cannot leak into a sum through 0 * NaN.
        p, t, rain = p.where(valid, 0.0), t.where(valid, 0.0), rain.where(valid, 0.0)
    error = balanced_weights(rain).to(dtype) * (p - t).abs().pow(power)
    return reduce_frames(masked_frame_sum(error, valid), reduction, weight=weight)


def balanced_mse(
    pred: Tensor,
    target: Tensor,
    *,
    rain_rate: Tensor | None = None,
    mask: Tensor | None = None,
    weight: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """B-MSE: squared error weighted by [`balanced_weights`][convlstm.metrics.balanced_weights], summed over a frame,
    averaged over frames.

    HKO-7 computes the error on pixel values and the weights from the true rain rate: pass
    ``rain_rate=pixel_to_rain_rate(target)`` in that case.

    Args:
        pred: Prediction, (B, T, C, *spatial).
        target: Ground truth, same shape.
        rain_rate: True rain rate in mm/h that sets the weights, target's shape; defaults to ``target`` itself
            (pred and target already in mm/h).
        mask: Optional bool mask broadcastable to target's shape, True where a pixel counts: the frame sum runs
            over valid pixels only, and a frame without one has no value (NaN, left out of the averages).
        weight: Optional importance weight per sequence, (B,): weighted means over sequences (not with "none").
        reduction: ``"mean"`` (0-d, averaged over sequences and lead times), ``"lead_time"`` (T,) or
            ``"none"`` (B, T).
    """
    return _balanced_error(pred, target, 2, rain_rate, mask, weight, reduction)


def balanced_mae(
    pred: Tensor,
    target: Tensor,
    *,
    rain_rate: Tensor | None = None,
    mask: Tensor | None = None,
    weight: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """B-MAE: absolute error weighted like [`balanced_mse`][convlstm.metrics.balanced_mse]; same arguments."""
    return _balanced_error(pred, target, 1, rain_rate, mask, weight, reduction)


class ContingencyTable:
    """Hits, false alarms, misses and correct negatives over a test set, per threshold and lead time.

    An event is a value >= threshold (HKO-7's convention; pysteps counts value > threshold). Counts are summed
    over all sequences, channels and pixels seen by [`update`][convlstm.metrics.ContingencyTable.update]; scores come
    from the summed counts of each lead time, and the averaged scores are the mean over lead times of the per-lead-time
    scores.

    With a ``mask``, only valid pixels are counted (in no cell otherwise, whatever they hold); with a ``weight``
    per sequence, a sequence's pixels count ``weight`` times (weighted counts, so that counts over patches drawn
    in favour of rain estimate those over uniform ones). [`counts`][convlstm.metrics.ContingencyTable.counts] are
    float64 for that reason; without weights they hold whole numbers.

    A score whose denominator is zero is NaN: POD with no observed event, FAR with no forecast event, CSI with
    neither, HSS when every counted pixel is a hit or every one a correct negative (and all four with no pixel).
    Averages over lead times skip NaNs and are NaN only when every lead time is.

    Under data-parallel evaluation, sum [`counts`][convlstm.metrics.ContingencyTable.counts] across processes (e.g.
    ``all_reduce``) or [`merge`][convlstm.metrics.ContingencyTable.merge] gathered tables.

    Args:
        thresholds: Event thresholds, in the units of the values given to
            [`update`][convlstm.metrics.ContingencyTable.update] (mm/h for HKO-7).
        lead_times: Number of predicted frames T.

    Examples:
        >>> table = ContingencyTable(thresholds=(0.5, 2, 5, 10, 30), lead_times=20)
        >>> table.update(pred_rain, true_rain, mask=valid)  # (B, 20, C, H, W) each
        >>> table.compute()["csi@0.5"]
    """

    def __init__(self, *, thresholds: Sequence[float] = HKO_THRESHOLDS, lead_times: int) -> None:
        self.thresholds = tuple(float(t) for t in thresholds)
        if not self.thresholds:
            raise ValueError("thresholds must hold at least one value, got none")
        if any(math.isnan(t) for t in self.thresholds):
            raise ValueError(f"thresholds must not contain NaN, got {self.thresholds}")
        if len({threshold_label(t) for t in self.thresholds}) != len(self.thresholds):
            raise ValueError(f"thresholds must be distinct, got {self.thresholds}")
        self.lead_times = check_lead_times(lead_times)
        # (4, thresholds, T): hits a, false alarms b, misses c, correct negatives d; float64 for weighted counts
        # (whole numbers are exact in it up to 2**53).
        self.counts = torch.zeros(4, len(self.thresholds), self.lead_times, dtype=torch.float64)

    @property
    def hits(self) -> Tensor:
        """a: forecast event and observed event, (thresholds, T)."""
        return self.counts[0]

    @property
    def false_alarms(self) -> Tensor:
        """b: forecast event, no observed event, (thresholds, T)."""
        return self.counts[1]

    @property
    def misses(self) -> Tensor:
        """c: observed event not forecast, (thresholds, T)."""
        return self.counts[2]

    @property
    def correct_negatives(self) -> Tensor:
        """d: neither forecast nor observed, (thresholds, T)."""
        return self.counts[3]

    def reset(self) -> None:
        """Zero all counts."""
        self.counts.zero_()

    def update(self, pred: Tensor, target: Tensor, *, mask: Tensor | None = None, weight: Tensor | None = None) -> None:
        """Add one batch to the counts.

        Args:
            pred: Forecast values, (B, T, C, *spatial).
            target: Observed values, same shape.
            mask: Optional bool mask broadcastable to target's shape, True where a pixel counts.
            weight: Optional importance weight per sequence, (B,), finite and >= 0: each of the sequence's pixels
                adds ``weight`` to its cell instead of 1.
        """
        valid = check_pair(pred, target, mask=mask)
        if pred.shape[1] != self.lead_times:
            raise ValueError(
                f"pred has {pred.shape[1]} lead times (dim 1 of {tuple(pred.shape)}), table has {self.lead_times}"
            )
        weights = check_weight(weight, pred.shape[0])
        per_threshold = []
        for threshold in self.thresholds:
            forecast, observed = pred >= threshold, target >= threshold
            cells = [forecast & observed, forecast & ~observed, ~forecast & observed, ~forecast & ~observed]
            if valid is not None:
                cells = [cell & valid for cell in cells]
            per_frame = torch.stack([cell.flatten(2).sum(2) for cell in cells]).cpu()  # (4, B, T)
            if weights is None:
                per_threshold.append(per_frame.sum(1))  # (4, T)
            else:
                per_threshold.append((per_frame.to(torch.float64) * weights[:, None]).sum(1))
        self.counts += torch.stack(per_threshold, dim=1)  # (4, thresholds, T)

    def merge(self, other: ContingencyTable) -> ContingencyTable:
        """Add another table's counts to this one (same thresholds and lead times) and return self."""
        if not isinstance(other, ContingencyTable):
            raise ValueError(f"other must be a ContingencyTable, got {type(other).__name__}")
        if other.thresholds != self.thresholds or other.lead_times != self.lead_times:
            raise ValueError(
                f"cannot merge a table with thresholds {other.thresholds} and {other.lead_times} lead times into one "
                f"with thresholds {self.thresholds} and {self.lead_times} lead times"
            )
        self.counts += other.counts
        return self

    def __add__(self, other: ContingencyTable) -> ContingencyTable:
        result = ContingencyTable(thresholds=self.thresholds, lead_times=self.lead_times)
        result.counts = self.counts.clone()
        return result.merge(other)

    def scores(self) -> dict[str, Tensor]:
        """POD, FAR, CSI and HSS per threshold and lead time: {"pod": (thresholds, T), ...} in float64."""
        a, b, c, d = self.counts.to(torch.float64).unbind(0)  # float64 already, unless set from outside
        return {
            "pod": nan_ratio(a, a + c),
            "far": nan_ratio(b, a + b),
            "csi": nan_ratio(a, a + b + c),
            "hss": nan_ratio(2.0 * (a * d - b * c), (a + c) * (c + d) + (a + b) * (b + d)),
        }

    def compute(self) -> dict[str, Tensor]:
        """Scores by name: ``"csi@0.5"`` (0-d, mean over lead times) and ``"csi@0.5_by_lead_time"`` (T,), ..."""
        results: dict[str, Tensor] = {}
        for name, values in self.scores().items():
            for k, threshold in enumerate(self.thresholds):
                key = f"{name}@{threshold_label(threshold)}"
                results[key] = torch.nanmean(values[k])
                results[f"{key}_by_lead_time"] = values[k]
        return results
