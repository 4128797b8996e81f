"""One evaluation pass's forecast scores: the per-lead-time metrics and, with rain thresholds, the contingency
table, built at the first batch (when the horizon is known) and summed across processes by the caller."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from convlstm.metrics.forecast import SSIM_KERNEL_SIZE
from convlstm.metrics.forecast_metrics import BALANCED_METRICS, DEFAULT_FORECAST_METRICS, ForecastMetrics
from convlstm.metrics.nowcasting import ContingencyTable


class ForecastScores:
    """One evaluation pass's accumulators: [`ForecastMetrics`][convlstm.metrics.ForecastMetrics] and, optionally, a
    [`ContingencyTable`][convlstm.metrics.ContingencyTable].

    Both are built at the first batch (the horizon is known then). ``metrics=None`` takes the library's default
    scores, without SSIM when frames are smaller than its 11x11 window, plus ``default_extra``.
    """

    def __init__(
        self,
        *,
        metrics: Sequence[str] | None,
        data_range: float = 1.0,
        thresholds: Sequence[float] | None = None,
        default_extra: Sequence[str] = (),
    ) -> None:
        self.names = None if metrics is None else tuple(metrics)
        self.default_extra = tuple(default_extra)
        self.data_range = data_range
        self.thresholds = None if thresholds is None else tuple(thresholds)
        self.metrics: ForecastMetrics | None = None
        self.table: ContingencyTable | None = None

    @property
    def uses_balanced(self) -> bool:
        """Whether a balanced score (weighted by the true rain rate) is among the metrics."""
        names = self.default_extra if self.names is None else self.names
        return any(name in BALANCED_METRICS for name in names)

    def reset(self) -> None:
        """Forgets everything accumulated (the next batch builds the accumulators again)."""
        self.metrics = None
        self.table = None

    def update(
        self,
        pred: Tensor,
        target: Tensor,
        *,
        rain_rate: Tensor | None = None,
        mask: Tensor | None = None,
        rain_pred: Tensor | None = None,
        weight: Tensor | None = None,
    ) -> None:
        """Adds a batch; ``rain_rate`` (true, mm/h) feeds the balanced scores and the table, ``rain_pred``
        (predicted rain rate) the table; ``mask`` (bool, True = valid pixel) and ``weight`` (per sequence, (B,))
        every score."""
        if self.metrics is None:
            names = self.names
            if names is None:
                small = pred.ndim != 5 or min(pred.shape[-2:]) < SSIM_KERNEL_SIZE
                names = tuple(n for n in DEFAULT_FORECAST_METRICS if not (small and n == "ssim")) + self.default_extra
            self.metrics = ForecastMetrics(lead_times=pred.shape[1], metrics=names, data_range=self.data_range)
            if self.thresholds is not None:
                self.table = ContingencyTable(thresholds=self.thresholds, lead_times=pred.shape[1])
        pred, target = pred.float(), target.float()
        self.metrics.update(pred, target, rain_rate=rain_rate if self.uses_balanced else None, mask=mask, weight=weight)
        if self.table is not None:
            if rain_pred is None or rain_rate is None:
                raise ValueError("rain thresholds need the predicted and true rain rates")
            self.table.update(rain_pred, rain_rate, mask=mask, weight=weight)

    def compute(self, reduce: Callable[[Tensor], Tensor]) -> dict[str, Tensor]:
        """All scores, after summing the accumulators with ``reduce`` (identity in one process)."""
        if self.metrics is None:
            return {}
        self.metrics.sums = reduce(self.metrics.sums)
        self.metrics.counts = reduce(self.metrics.counts)
        self.metrics.num_sequences = int(reduce(torch.tensor(self.metrics.num_sequences)))
        scores = self.metrics.compute()
        if self.table is not None:
            self.table.counts = reduce(self.table.counts)
            scores.update(self.table.compute())
        return scores
