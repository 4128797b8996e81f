"""A stateful accumulator of per-lead-time forecast scores over a test set."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from convlstm.metrics import forecast, nowcasting
from convlstm.metrics._checks import (
    check_lead_times,
    check_pair,
    check_weight,
    compute_dtype,
    lead_time_sums,
    nan_ratio,
    over_lead_times,
)
from convlstm.utils.checks import check_positive

__all__ = ["BALANCED_METRICS", "DEFAULT_FORECAST_METRICS", "FORECAST_METRICS", "ForecastMetrics"]

# Scores computed from (pred, target) alone (with a mask); the balanced ones also take rain_rate.
_PLAIN: dict[str, Callable[..., Tensor]] = {
    "mse_per_pixel": forecast.mse_per_pixel,
    "mae_per_pixel": forecast.mae_per_pixel,
    "mse_per_frame": forecast.mse_per_frame,
    "mae_per_frame": forecast.mae_per_frame,
    "psnr": forecast.psnr,
    "ssim": forecast.ssim,
    "correlation": forecast.correlation,
    "bce_per_sequence": forecast.bce_per_sequence,
}
_BALANCED: dict[str, Callable[..., Tensor]] = {"b_mse": nowcasting.balanced_mse, "b_mae": nowcasting.balanced_mae}
FORECAST_METRICS: tuple[str, ...] = (*_PLAIN, *_BALANCED)
"""Names of every score [`ForecastMetrics`][convlstm.metrics.ForecastMetrics] can compute."""
BALANCED_METRICS: tuple[str, ...] = tuple(_BALANCED)
DEFAULT_FORECAST_METRICS: tuple[str, ...] = (
    "mse_per_pixel",
    "mae_per_pixel",
    "mse_per_frame",
    "mae_per_frame",
    "psnr",
    "ssim",
    "correlation",
)
"""The scores [`ForecastMetrics`][convlstm.metrics.ForecastMetrics] computes when given no names."""
# Scores whose sequence value is the sum of its frames rather than their mean.
_SUMMED_OVER_TIME = frozenset({"bce_per_sequence"})


class ForecastMetrics:
    """Accumulates forecast scores per lead time over batches; the result equals one call on the whole set.

    Every score is a per-frame value averaged over sequences, so the accumulator keeps, per score and lead time,
    the sum over sequences (float64, on the CPU) and how many sequences it summed
    ([`counts`][convlstm.metrics.ForecastMetrics.counts]).

    Masks and weights: [`update`][convlstm.metrics.ForecastMetrics.update] takes an optional valid-pixel ``mask`` and
        per-sequence importance
    ``weight``, and every score respects both (see `convlstm.metrics.forecast`): a frame's score uses its
    valid pixels only (per-pixel scores average over them, per-frame scores sum over them), a frame without a valid
    pixel counts nowhere, and the average over sequences is the weighted mean sum(w * score) / sum(w). So
    [`counts`][convlstm.metrics.ForecastMetrics.counts] holds, per score and lead time, the summed weights of the frames
    that had a score (the number of sequences without masks and weights), and a lead time where none had one is NaN (the
    headline skips it).

    Args:
        lead_times: Number of predicted frames T.
        metrics: Names from [`FORECAST_METRICS`][convlstm.metrics.FORECAST_METRICS]: ``mse_per_pixel``,
            ``mae_per_pixel``, ``mse_per_frame``, ``mae_per_frame``, ``psnr``, ``ssim``, ``correlation``,
            ``bce_per_sequence`` (needs values in [0, 1]), ``b_mse``, ``b_mae`` (HKO-7 balanced errors). Defaults to
            [`DEFAULT_FORECAST_METRICS`][convlstm.metrics.DEFAULT_FORECAST_METRICS].
        data_range: SSIM's data range.

    Under data-parallel evaluation, sum [`sums`][convlstm.metrics.ForecastMetrics.sums],
    [`counts`][convlstm.metrics.ForecastMetrics.counts] and
    [`num_sequences`][convlstm.metrics.ForecastMetrics.num_sequences] across processes or
    [`merge`][convlstm.metrics.ForecastMetrics.merge] gathered accumulators.

    Examples:
        >>> metrics = ForecastMetrics(lead_times=10)
        >>> for pred, target in batches:  # (B, 10, C, H, W)
        ...     metrics.update(pred, target)
        >>> metrics.compute()["mse_per_frame"], metrics.compute()["ssim_by_lead_time"]
    """

    def __init__(
        self,
        *,
        lead_times: int,
        metrics: Sequence[str] = DEFAULT_FORECAST_METRICS,
        data_range: float = 1.0,
    ) -> None:
        if isinstance(metrics, str):
            raise ValueError(f"metrics must be a sequence of names, got the string {metrics!r}")
        unknown = [name for name in metrics if name not in FORECAST_METRICS]
        if unknown or not metrics or len(set(metrics)) != len(metrics):
            raise ValueError(f"metrics must be distinct names from {FORECAST_METRICS}, got {tuple(metrics)}")
        check_positive("data_range", data_range)
        self.lead_times = check_lead_times(lead_times)
        self.metrics = tuple(metrics)
        self.data_range = float(data_range)
        # (metrics, T): per lead time, the (weighted) sum over sequences of each frame score, and the summed weights
        # of the frames that had a score (a masked frame may have none).
        self.sums = torch.zeros(len(self.metrics), self.lead_times, dtype=torch.float64)
        self.counts = torch.zeros(len(self.metrics), self.lead_times, dtype=torch.float64)
        self.num_sequences = 0

    def reset(self) -> None:
        """Forget all batches."""
        self.sums.zero_()
        self.counts.zero_()
        self.num_sequences = 0

    def update(
        self,
        pred: Tensor,
        target: Tensor,
        *,
        rain_rate: Tensor | None = None,
        mask: Tensor | None = None,
        weight: Tensor | None = None,
    ) -> None:
        """Add one batch.

        Args:
            pred: Prediction, (B, T, C, *spatial).
            target: Ground truth, same shape.
            rain_rate: True rain rate (mm/h) for the balanced weights of ``b_mse`` / ``b_mae``; defaults to target.
            mask: Bool valid-pixel mask, broadcastable to target's shape (True where a pixel counts); every score
                leaves the other pixels out, whatever they hold.
            weight: Importance weight of each sequence, (B,), finite and >= 0: averages over sequences are
                weighted means (integer weights count a sequence that many times).
        """
        check_pair(pred, target, mask=mask)
        if pred.shape[1] != self.lead_times:
            raise ValueError(
                f"pred has {pred.shape[1]} lead times (dim 1 of {tuple(pred.shape)}), expected {self.lead_times}"
            )
        uses_balanced = any(name in _BALANCED for name in self.metrics)
        if not uses_balanced and rain_rate is not None:
            raise ValueError(f"rain_rate is only used by {BALANCED_METRICS}, none of which is in metrics")
        weights = check_weight(weight, pred.shape[0])
        pred, target = pred.detach(), target.detach()
        rain_rate = rain_rate.detach() if isinstance(rain_rate, Tensor) else rain_rate
        dtype = compute_dtype(pred)
        sums, counts = [], []
        for name in self.metrics:
            if name in _BALANCED:
                values = _BALANCED[name](pred, target, rain_rate=rain_rate, mask=mask, reduction="none")
            elif name == "ssim":
                values = forecast.ssim(pred, target, data_range=self.data_range, mask=mask, reduction="none")
            else:
                values = _PLAIN[name](pred, target, mask=mask, reduction="none")
            total, count = lead_time_sums(values.to(dtype), weights)  # (T,) each
            sums.append(total)
            counts.append(count)
        # float64 only on the CPU: some accelerators (MPS) have none.
        self.sums += torch.stack(sums).cpu().to(torch.float64)
        self.counts += torch.stack(counts).cpu().to(torch.float64)
        self.num_sequences += pred.shape[0]

    def merge(self, other: ForecastMetrics) -> ForecastMetrics:
        """Add another accumulator (same lead times, metrics and data range) to this one and return self."""
        if not isinstance(other, ForecastMetrics):
            raise ValueError(f"other must be a ForecastMetrics, got {type(other).__name__}")
        mine = (self.lead_times, self.metrics, self.data_range)
        theirs = (other.lead_times, other.metrics, other.data_range)
        if mine != theirs:
            raise ValueError(f"cannot merge (lead_times, metrics, data_range) = {theirs} into {mine}")
        self.sums += other.sums
        self.counts += other.counts
        self.num_sequences += other.num_sequences
        return self

    def compute(self) -> dict[str, Tensor]:
        """Scores by name: ``"<name>"`` (0-d) and ``"<name>_by_lead_time"`` (T,), float64.

        The 0-d value is the mean over lead times, or the sum for ``bce_per_sequence`` (a per-sequence total). A
        lead time where no frame had a valid pixel is NaN, and the 0-d value skips it (NaN if every lead time is).
        """
        if self.num_sequences == 0:
            raise ValueError("compute() needs at least one sequence; call update() first")
        per_lead_time = nan_ratio(self.sums, self.counts)
        results: dict[str, Tensor] = {}
        for name, values in zip(self.metrics, per_lead_time, strict=True):
            results[name] = over_lead_times(values, "sum" if name in _SUMMED_OVER_TIME else "mean")
            results[f"{name}_by_lead_time"] = values
        return results
