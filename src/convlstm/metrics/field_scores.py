"""The verification scores forecasters use, per lead time, computed by pysteps where it has them.

- [`FractionsSkillScore`][convlstm.metrics.FractionsSkillScore]: FSS at several thresholds and neighbourhood sizes
  (pysteps.verification.spatialscores).
- [`ProbabilityScores`][convlstm.metrics.ProbabilityScores]: for exceedance probabilities, the Brier score (ours:
  pysteps has none), the reliability diagram and the ROC curve with its area (pysteps.verification.probscores).
- [`EnsembleScores`][convlstm.metrics.EnsembleScores]: for ensembles, CRPS (pysteps.verification.probscores) and the
  rank histogram (pysteps.verification.ensscores).

Every accumulator takes batches of (B, T, ...) tensors in rain rate (mm/h), keeps one pysteps object per lead time
(and threshold, and scale), and returns ``"<score>"`` (the mean over lead times) and ``"<score>_by_lead_time"``.

Masks and weights: every ``update`` takes an optional ``mask`` (bool, broadcastable to the target, True where a
pixel counts, e.g. where radars cover it) and ``weight`` (one importance weight per sequence, (B,)). Hidden pixels
count nowhere, whatever they hold (NaN included): FSS takes a window's fractions over its valid pixels and sums
over windows centred on valid pixels; the Brier score averages over valid pixels; reliability, ROC, CRPS and the
rank histogram get hidden pixels as NaN, which pysteps' accumulators skip pair by pair. A weight multiplies
everything its sequence adds to an accumulator (sums and counts alike), so integer weights equal repeating the
sequence and scores over patches drawn in favour of rain, with their importance weights, estimate those over
uniform patches.

Thresholds: an event is a value >= threshold for FSS, the Brier score, reliability, ROC and the rank histogram's
dry cut-off (pysteps' convention for these scores, and HKO-7's for CSI in
[`ContingencyTable`][convlstm.metrics.ContingencyTable]); pysteps' det_cat_fct alone counts value > threshold. The two
agree unless a value sits exactly on a threshold.

pysteps is an optional dependency (the ``nowcast`` extra); it is imported when an accumulator is built.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import Tensor

from convlstm.metrics._checks import check_lead_times, check_tensor, check_weight, expand_mask
from convlstm.metrics.crps import crps_ensemble
from convlstm.metrics.nowcasting import HKO_THRESHOLDS, threshold_label
from convlstm.utils.checks import check_int, check_int_list

#: Neighbourhood sides (pixels) for FSS by default.
FSS_SCALES: tuple[int, ...] = (1, 4, 8, 16)
# The accumulated entries of pysteps' reliability diagram and ROC curve objects.
_RELIABILITY_SUMS = ("X_sum", "Y_sum", "num_idx", "sample_size")
_ROC_COUNTS = ("hits", "misses", "false_alarms", "corr_neg")


def _pysteps(module: str) -> ModuleType:
    import importlib

    try:
        return importlib.import_module(f"pysteps.verification.{module}")
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "these scores use pysteps: install the nowcast extra (pip install 'convlstm[nowcast]')"
        ) from err


def _check_thresholds(thresholds: Sequence[float]) -> tuple[float, ...]:
    values = tuple(float(t) for t in thresholds)
    if not values or any(not math.isfinite(t) for t in values):
        raise ValueError(f"thresholds must be a non-empty sequence of finite numbers, got {thresholds!r}")
    if len({threshold_label(t) for t in values}) != len(values):
        raise ValueError(f"thresholds must be distinct, got {values}")
    return values


def _fields(x: Tensor, name: str, lead_times: int, *, ndim: int) -> np.ndarray:
    """A float64 numpy copy of a (B, T, ...) tensor after checking its rank and lead times (NaN: see _refuse_nan)."""
    check_tensor(x, name)
    if x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(x.shape)}")
    if x.shape[1] != lead_times:
        raise ValueError(f"{name} has {x.shape[1]} lead times (dim 1 of {tuple(x.shape)}), expected {lead_times}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating point tensor, got dtype {x.dtype}")
    return x.detach().to("cpu", torch.float64).numpy()


def _valid(mask: Tensor | None, target: Tensor) -> np.ndarray | None:
    """The bool valid-pixel mask broadcast to target's shape, as numpy, or None."""
    valid = expand_mask(mask, target)
    return None if valid is None else valid.cpu().numpy()


def _refuse_nan(x: np.ndarray, name: str, valid: np.ndarray | None) -> None:
    """ValueError if ``x`` holds NaN at a valid pixel (anywhere without a mask; ``valid`` broadcasts to x)."""
    nan = np.isnan(x) if valid is None else np.isnan(x) & valid
    if nan.any():
        where = "" if valid is None else " at valid pixels"
        raise ValueError(f"{name} contains NaN{where} ({int(nan.sum())} of {x.size} values)")


def _weights(weight: Tensor | None, batch_size: int) -> np.ndarray | None:
    checked = check_weight(weight, batch_size)
    return None if checked is None else checked.numpy()


def _add_scaled(total: dict[str, Any], part: dict[str, Any], keys: Sequence[str], weight: float) -> None:
    """Adds ``weight`` times a scratch pysteps object's sums and counts to ``total`` (floats from then on)."""
    for key in keys:
        total[key] = total[key] + weight * np.asarray(part[key], dtype=float)


def _masked_fss_sums(
    forecast: np.ndarray, observed: np.ndarray, valid: np.ndarray, threshold: float, scale: int
) -> tuple[float, float, float]:
    """pysteps' three FSS sums (sum F^2, sum F O, sum O^2) of one (H, W) field over its valid pixels only.

    A window's fraction is its event pixels over its valid pixels, and only windows centred on a valid pixel are
    summed. Outside the frame pysteps pads with non-events (``uniform_filter(mode="constant", cval=0)``); those
    places count as valid non-events here too, so an all-valid mask gives pysteps' sums exactly. (pysteps' own
    NaN handling would count a hidden pixel as a non-event in every window around it, diluting the fractions near
    the edge of coverage.)
    """
    from scipy.ndimage import uniform_filter  # what pysteps' fss_accum uses

    events_f = ((forecast >= threshold) & valid).astype(float)
    events_o = ((observed >= threshold) & valid).astype(float)
    if scale > 1:
        covered = uniform_filter(valid.astype(float), size=scale, mode="constant", cval=1.0)
        share = np.where(valid, covered, 1.0)  # > 0 at every valid centre: the centre itself is valid
        events_f = uniform_filter(events_f, size=scale, mode="constant", cval=0.0) / share
        events_o = uniform_filter(events_o, size=scale, mode="constant", cval=0.0) / share
    f, o = events_f[valid], events_o[valid]
    return float(np.sum(f**2)), float(np.sum(f * o)), float(np.sum(o**2))


def _by_lead_time(results: dict[str, Tensor], key: str, values: Sequence[float]) -> None:
    series = torch.tensor(list(values), dtype=torch.float64)
    results[key] = torch.nanmean(series)
    results[f"{key}_by_lead_time"] = series


class FractionsSkillScore:
    """Fractions skill score (Roberts & Lean 2008) per threshold, neighbourhood size and lead time, via pysteps.

    FSS compares the fractions of event pixels (value >= threshold) in square windows of ``scale`` pixels around
    every pixel: 1 is perfect, 0 no skill; scale 1 compares pixels one by one. Sums run over every sequence,
    channel and frame of a lead time before the ratio is taken (pysteps' accumulation). With a mask, fractions
    are over each window's valid pixels and windows are centred on valid pixels; weights scale each sequence's sums.

    Args:
        thresholds: event thresholds in the units of the fields (mm/h).
        scales: window sides in pixels.
        lead_times: predicted frames T.

    Keys of [`compute`][convlstm.metrics.FractionsSkillScore.compute]: ``"fss@2_8px"`` (threshold 2, window 8) and
    ``"fss@2_8px_by_lead_time"``.
    """

    def __init__(
        self, *, thresholds: Sequence[float] = HKO_THRESHOLDS, scales: Sequence[int] = FSS_SCALES, lead_times: int
    ) -> None:
        self._spatial = _pysteps("spatialscores")
        self.thresholds = _check_thresholds(thresholds)
        self.scales = tuple(check_int_list("scales (pixels)", scales, 1))
        self.lead_times = check_lead_times(lead_times)
        self._objects = {
            (thr, scale, t): self._spatial.fss_init(thr, scale)
            for thr in self.thresholds
            for scale in self.scales
            for t in range(self.lead_times)
        }

    def update(self, pred: Tensor, target: Tensor, *, mask: Tensor | None = None, weight: Tensor | None = None) -> None:
        """Adds a batch: pred and target (B, T, C, H, W) in the units of the thresholds.

        Args:
            pred: forecast fields, (B, T, C, H, W).
            target: observed fields, same shape.
            mask: optional bool mask broadcastable to target's shape, True where a pixel counts: a window's
                fractions are taken over its valid pixels, and only windows centred on one are summed (outside the
                frame counts as no event, as in pysteps).
            weight: optional importance weight per sequence, (B,): a sequence's sums count ``weight`` times.
        """
        p, o = _fields(pred, "pred", self.lead_times, ndim=5), _fields(target, "target", self.lead_times, ndim=5)
        if p.shape != o.shape:
            raise ValueError(f"pred and target must have the same shape, got {p.shape} and {o.shape}")
        valid = _valid(mask, target)
        _refuse_nan(p, "pred", valid)
        _refuse_nan(o, "target", valid)
        weights = _weights(weight, p.shape[0])
        keys = ("sum_fct_sq", "sum_fct_obs", "sum_obs_sq")
        for (thr, scale, t), obj in self._objects.items():
            for b in range(p.shape[0]):
                for c in range(p.shape[2]):
                    if valid is None and weights is None:
                        self._spatial.fss_accum(obj, p[b, t, c], o[b, t, c])
                        continue
                    if valid is None:
                        part = self._spatial.fss_init(thr, scale)
                        self._spatial.fss_accum(part, p[b, t, c], o[b, t, c])
                    else:
                        sums = _masked_fss_sums(p[b, t, c], o[b, t, c], valid[b, t, c], thr, scale)
                        part = dict(zip(keys, sums, strict=True))
                    _add_scaled(obj, part, keys, 1.0 if weights is None else float(weights[b]))

    def compute(self) -> dict[str, Tensor]:
        """FSS by name (mean over lead times, and per lead time); NaN where neither field had an event."""
        results: dict[str, Tensor] = {}
        for thr in self.thresholds:
            for scale in self.scales:
                values = []
                for t in range(self.lead_times):
                    obj = self._objects[(thr, scale, t)]
                    denominator = obj["sum_fct_sq"] + obj["sum_obs_sq"]
                    values.append(self._spatial.fss_compute(obj) if denominator > 0 else math.nan)
                _by_lead_time(results, f"fss@{threshold_label(thr)}_{scale}px", values)
        return results


class ProbabilityScores:
    """Scores of exceedance probabilities per threshold and lead time: Brier score, reliability, ROC area.

    The forecast is a probability P(value >= threshold) per pixel; the outcome is target >= threshold.

    - Brier score (ours; pysteps has none): mean of (p - o)^2 over all pixels of a lead time; 0 is perfect.
    - Reliability diagram (pysteps reldiag): the observed frequency of events in each of ``n_bins`` bins of
      forecast probability, against the mean forecast probability of the bin; on the diagonal is reliable.
    - ROC (pysteps ROC_curve): probability of detection against probability of false detection for
      ``n_prob_thresholds`` probability thresholds in [0, 1]; its area ``roc_auc`` is 0.5 for no skill, 1 perfect.

    Args:
        thresholds: the rain-rate thresholds whose exceedance the probabilities give (one channel each).
        lead_times: predicted frames T.
        n_bins: bins of the reliability diagram.
        n_prob_thresholds: probability thresholds of the ROC curve.

    Keys of [`compute`][convlstm.metrics.ProbabilityScores.compute]: ``"brier@2"``, ``"roc_auc@2"`` (mean over lead
    times and ``_by_lead_time``); [`reliability`][convlstm.metrics.ProbabilityScores.reliability] and
    [`roc_curve`][convlstm.metrics.ProbabilityScores.roc_curve] return the curves pooled over lead times.
    """

    def __init__(
        self,
        *,
        thresholds: Sequence[float] = HKO_THRESHOLDS,
        lead_times: int,
        n_bins: int = 10,
        n_prob_thresholds: int = 11,
    ) -> None:
        self._prob = _pysteps("probscores")
        self.thresholds = _check_thresholds(thresholds)
        self.lead_times = check_lead_times(lead_times)
        self.n_bins, self.n_prob_thresholds = n_bins, n_prob_thresholds
        shape = (len(self.thresholds), self.lead_times)
        self._squared_error = np.zeros(shape)
        self._count = np.zeros(shape)
        # min_count=0: every bin is accumulated; empty bins come out NaN.
        self._reliability = [
            [self._prob.reldiag_init(thr, n_bins=n_bins, min_count=0) for _ in range(self.lead_times)]
            for thr in self.thresholds
        ]
        self._roc = [
            [self._prob.ROC_curve_init(thr, n_prob_thrs=n_prob_thresholds) for _ in range(self.lead_times)]
            for thr in self.thresholds
        ]

    def update(
        self,
        probabilities: Tensor,
        target: Tensor,
        *,
        mask: Tensor | None = None,
        weight: Tensor | None = None,
    ) -> None:
        """Adds a batch.

        Args:
            probabilities: (B, T, K, H, W) exceedance probabilities in [0, 1], one channel per threshold.
            target: (B, T, 1, H, W) observed values (mm/h).
            mask: optional bool mask broadcastable to target's shape, True where a pixel counts; the others count
                in no score (they reach pysteps' reliability and ROC accumulators as NaN, which they skip).
            weight: optional importance weight per sequence, (B,): a sequence's squared errors, pixel counts, bin
                sums and ROC counts count ``weight`` times.
        """
        p = _fields(probabilities, "probabilities", self.lead_times, ndim=5)
        o = _fields(target, "target", self.lead_times, ndim=5)
        k = len(self.thresholds)
        if p.shape[2] != k or o.shape[2] != 1 or p.shape[:2] != o.shape[:2] or p.shape[3:] != o.shape[3:]:
            raise ValueError(
                f"probabilities must be (B, T, {k}, H, W) (one channel per threshold) and target (B, T, 1, H, W), "
                f"got {p.shape} and {o.shape}"
            )
        valid = _valid(mask, target)
        _refuse_nan(p, "probabilities", valid)
        _refuse_nan(o, "target", valid)
        if valid is not None:
            p, o = np.where(valid, p, np.nan), np.where(valid, o, np.nan)  # (B, T, K, H, W), (B, T, 1, H, W)
        with np.errstate(invalid="ignore"):  # NaN, where hidden, is in [0, 1] for this check
            outside = (p < 0) | (p > 1)
        if outside.any():
            raise ValueError(f"probabilities must lie in [0, 1], got values in [{np.nanmin(p):g}, {np.nanmax(p):g}]")
        weights = _weights(weight, p.shape[0])
        for i, thr in enumerate(self.thresholds):
            for t in range(self.lead_times):
                forecast, observed = p[:, t, i], o[:, t, 0]
                if valid is None and weights is None:
                    self._squared_error[i, t] += np.square(forecast - (observed >= thr)).sum()
                    self._count[i, t] += forecast.size
                    self._prob.reldiag_accum(self._reliability[i][t], forecast, observed)
                    self._prob.ROC_curve_accum(self._roc[i][t], forecast, observed)
                    continue
                for b in range(p.shape[0]):
                    self._accumulate(i, t, forecast[b], observed[b], 1.0 if weights is None else float(weights[b]))

    def _accumulate(self, i: int, t: int, forecast: np.ndarray, observed: np.ndarray, weight: float) -> None:
        """Adds one sequence's (H, W) field of threshold i and lead time t, NaN where hidden, ``weight`` times."""
        thr = self.thresholds[i]
        counted = np.isfinite(observed)
        f, o = forecast[counted], observed[counted]
        self._squared_error[i, t] += weight * np.square(f - (o >= thr)).sum()
        self._count[i, t] += weight * f.size
        reliability = self._prob.reldiag_init(thr, n_bins=self.n_bins, min_count=0)
        self._prob.reldiag_accum(reliability, forecast, observed)
        _add_scaled(self._reliability[i][t], reliability, _RELIABILITY_SUMS, weight)
        roc = self._prob.ROC_curve_init(thr, n_prob_thrs=self.n_prob_thresholds)
        self._prob.ROC_curve_accum(roc, forecast, observed)
        _add_scaled(self._roc[i][t], roc, _ROC_COUNTS, weight)

    def compute(self) -> dict[str, Tensor]:
        """Brier score and ROC area by name (mean over lead times, and per lead time)."""
        results: dict[str, Tensor] = {}
        with np.errstate(invalid="ignore", divide="ignore"):
            for i, thr in enumerate(self.thresholds):
                label = threshold_label(thr)
                brier = np.where(self._count[i] > 0, self._squared_error[i] / np.maximum(self._count[i], 1), np.nan)
                _by_lead_time(results, f"brier@{label}", brier.tolist())
                areas = [float(self._prob.ROC_curve_compute(roc, compute_area=True)[2]) for roc in self._roc[i]]
                _by_lead_time(results, f"roc_auc@{label}", areas)
        return results

    def reliability(self, threshold: float) -> dict[str, list[float]]:
        """The reliability diagram of ``threshold`` pooled over lead times: mean forecast probability, observed
        frequency and sample count per bin (NaN for an empty bin; with weights, the count is weighted)."""
        i = self._index(threshold)
        pooled = self._prob.reldiag_init(self.thresholds[i], n_bins=self.n_bins, min_count=0)
        for obj in self._reliability[i]:
            for key in _RELIABILITY_SUMS:
                pooled[key] = pooled[key] + obj[key]
        with np.errstate(invalid="ignore", divide="ignore"):
            forecast, observed = self._prob.reldiag_compute(pooled)
        return {
            "forecast_probability": [float(v) for v in forecast],
            "observed_frequency": [float(v) for v in observed],
            "count": [float(v) for v in pooled["sample_size"]],
        }

    def roc_curve(self, threshold: float) -> dict[str, Any]:
        """The ROC curve of ``threshold`` pooled over lead times: POFD, POD and the area under it."""
        i = self._index(threshold)
        pooled = self._prob.ROC_curve_init(self.thresholds[i], n_prob_thrs=self.n_prob_thresholds)
        for obj in self._roc[i]:
            for key in _ROC_COUNTS:
                pooled[key] = pooled[key] + obj[key]
        with np.errstate(invalid="ignore", divide="ignore"):
            # pysteps returns (POFD, POD, area), whatever its docstring says (it names POD first).
            pofd, pod, area = self._prob.ROC_curve_compute(pooled, compute_area=True)
        return {"pofd": [float(v) for v in pofd], "pod": [float(v) for v in pod], "area": float(area)}

    def _index(self, threshold: float) -> int:
        for i, thr in enumerate(self.thresholds):
            if thr == float(threshold):
                return i
        raise ValueError(f"threshold must be one of {self.thresholds}, got {threshold!r}")


class EnsembleScores:
    """CRPS and the rank histogram of an ensemble forecast, per lead time.

    - CRPS: the integral of the squared difference between the ensemble's empirical distribution and the
      observation's step function, averaged over pixels, computed exactly
      ([`crps_ensemble`][convlstm.metrics.crps_ensemble]; pysteps' CRPS is biased low where the observation equals a
      member, as on dry radar pixels); in the units of the values (mm/h), 0 is perfect. For a one-member ensemble it is
      the mean absolute error. With two members or more also ``crps_fair``, the fair CRPS (Ferro 2014), which does not
      favour an ensemble for being small.
    - Rank histogram (pysteps rankhist): where the observation falls among the sorted members, over the pixels
      where the observation or any member reaches ``rank_threshold`` (pixels dry in every member and in the
      observation are skipped). Flat is well dispersed; U-shaped under-dispersed; a hump over-dispersed.

    Args:
        members: ensemble size N.
        lead_times: predicted frames T.
        rank_threshold: the dry cut-off of the rank histogram (mm/h), or None to count every pixel.

    Keys of [`compute`][convlstm.metrics.EnsembleScores.compute]: ``"crps"``, ``"crps_fair"`` (two members or more) and
    their ``"_by_lead_time"``; [`rank_histogram`][convlstm.metrics.EnsembleScores.rank_histogram] gives the histogram.
    """

    def __init__(self, *, members: int, lead_times: int, rank_threshold: float | None = 0.1) -> None:
        self._ens = _pysteps("ensscores")
        self.members = check_int("members", members, 1)
        self.lead_times = check_lead_times(lead_times)
        self.rank_threshold = rank_threshold
        # Per lead time: the (weighted) sums of the CRPS and the fair CRPS over valid pixels, and their count.
        self._crps_sums = np.zeros((self.lead_times, 3))
        self._rank = [self._ens.rankhist_init(members, rank_threshold) for _ in range(self.lead_times)]

    def update(
        self, ensemble: Tensor, target: Tensor, *, mask: Tensor | None = None, weight: Tensor | None = None
    ) -> None:
        """Adds a batch: ensemble (B, N, T, C, H, W) and target (B, T, C, H, W), in mm/h.

        Args:
            ensemble: the members, (B, N, T, C, H, W).
            target: the observation, (B, T, C, H, W).
            mask: optional bool mask broadcastable to target's shape, True where a pixel counts; the others count
                nowhere (they reach pysteps' rank histogram as NaN, which it skips).
            weight: optional importance weight per sequence, (B,): a sequence's CRPS sum, pixel count and rank
                counts count ``weight`` times.
        """
        e = check_tensor(ensemble, "ensemble")
        if e.ndim != 6 or e.shape[1] != self.members:
            raise ValueError(f"ensemble must be (B, N={self.members}, T, C, H, W), got shape {tuple(e.shape)}")
        members = _fields(e.transpose(1, 2), "ensemble", self.lead_times, ndim=6)  # (B, T, N, C, H, W)
        o = _fields(target, "target", self.lead_times, ndim=5)
        if members.shape[:2] + members.shape[3:] != o.shape:
            raise ValueError(f"ensemble {tuple(e.shape)} and target {tuple(target.shape)} must match in B, T, C, H, W")
        valid = _valid(mask, target)
        _refuse_nan(members, "ensemble", None if valid is None else valid[:, :, None])
        _refuse_nan(o, "target", valid)
        if valid is not None:
            o = np.where(valid, o, np.nan)  # pysteps skips a pixel whose observation is not finite
        weights = _weights(weight, o.shape[0])
        self._add_crps(members, o, valid, weights)
        for t in range(self.lead_times):
            forecast = np.moveaxis(members[:, t], 1, 0)  # (N, B, C, H, W)
            if weights is None:
                self._ens.rankhist_accum(self._rank[t], forecast, o[:, t])
                continue
            for b, w in enumerate(weights.tolist()):
                rank = self._ens.rankhist_init(self.members, self.rank_threshold)
                self._ens.rankhist_accum(rank, forecast[:, b], o[b, t])
                _add_scaled(self._rank[t], rank, ("n",), w)

    def _add_crps(
        self, members: np.ndarray, observed: np.ndarray, valid: np.ndarray | None, weights: np.ndarray | None
    ) -> None:
        """Adds the CRPS sums of members (B, T, N, C, H, W) against observed (B, T, C, H, W) over valid pixels."""
        x, y = torch.from_numpy(members).transpose(1, 2), torch.from_numpy(np.nan_to_num(observed))  # (B, N, T, ...)
        counted = np.ones(observed.shape) if valid is None else valid.astype(float)
        if weights is not None:
            counted = counted * weights.reshape(-1, *([1] * (counted.ndim - 1)))
        kinds = [crps_ensemble(x, y).numpy()]
        if self.members >= 2:
            kinds.append(crps_ensemble(x, y, fair=True).numpy())
        pixels = tuple(range(2, observed.ndim))
        for k, per_pixel in enumerate(kinds):
            self._crps_sums[:, k] += (np.where(counted > 0, per_pixel, 0.0) * counted).sum(axis=(0, *pixels))
        self._crps_sums[:, 2] += counted.sum(axis=(0, *pixels))

    def compute(self) -> dict[str, Tensor]:
        """CRPS (and the fair CRPS, two members or more) by lead time and their means."""
        results: dict[str, Tensor] = {}
        count = self._crps_sums[:, 2]
        for k, name in enumerate(["crps", "crps_fair"][: 1 + (self.members >= 2)]):
            values = np.where(count > 0, self._crps_sums[:, k] / np.maximum(count, 1e-300), np.nan)
            _by_lead_time(results, name, values.tolist())
        return results

    def rank_histogram(self) -> list[float]:
        """The rank histogram pooled over lead times: N + 1 frequencies summing to 1 (weighted by the sequences'
        weights)."""
        counts = np.sum([obj["n"] for obj in self._rank], axis=0)
        total = counts.sum()
        return [float(c / total) if total else math.nan for c in counts]


def exceedance_from_ensemble(ensemble: Tensor, thresholds: Sequence[float] = HKO_THRESHOLDS) -> Tensor:
    """The fraction of members at or above each threshold: (B, N, T, 1, H, W) -> (B, T, K, H, W)."""
    check_tensor(ensemble, "ensemble")
    if ensemble.ndim != 6 or ensemble.shape[3] != 1:
        raise ValueError(f"ensemble must be (B, N, T, 1, H, W), got shape {tuple(ensemble.shape)}")
    values = _check_thresholds(thresholds)
    return torch.cat([(ensemble >= thr).to(ensemble.dtype).mean(dim=1) for thr in values], dim=2)


def exceedance_from_deterministic(forecast: Tensor, thresholds: Sequence[float] = HKO_THRESHOLDS) -> Tensor:
    """A deterministic forecast as 0/1 exceedance probabilities: (B, T, 1, H, W) -> (B, T, K, H, W)."""
    check_tensor(forecast, "forecast")
    if forecast.ndim != 5 or forecast.shape[2] != 1:
        raise ValueError(f"forecast must be (B, T, 1, H, W), got shape {tuple(forecast.shape)}")
    values = _check_thresholds(thresholds)
    return torch.cat([(forecast >= thr).to(forecast.dtype) for thr in values], dim=2)


class DeterministicFieldScores:
    """The field's scores a deterministic rain forecast has: FSS at a few scales, and the Brier score and ROC area
    of its 0/1 exceedance forecast (its probabilities are 0 or 1, so the ROC is one point and its area the mean of
    POD and 1 - POFD). For ``convlstm evaluate``; keys as [`FractionsSkillScore`][convlstm.metrics.FractionsSkillScore]
    and [`ProbabilityScores`][convlstm.metrics.ProbabilityScores].

    Args:
        thresholds: rain-rate thresholds (mm/h).
        lead_times: predicted frames T.
        scales: FSS window sides in pixels.
    """

    def __init__(self, *, thresholds: Sequence[float], lead_times: int, scales: Sequence[int] = (1, 8)) -> None:
        self.thresholds = _check_thresholds(thresholds)
        self.fss = FractionsSkillScore(thresholds=self.thresholds, scales=scales, lead_times=lead_times)
        self.probability = ProbabilityScores(thresholds=self.thresholds, lead_times=lead_times, n_prob_thresholds=2)

    def update(
        self, pred_rain: Tensor, true_rain: Tensor, *, mask: Tensor | None = None, weight: Tensor | None = None
    ) -> None:
        """Adds a batch of (B, T, 1, H, W) rain rates (mm/h), with an optional bool valid-pixel ``mask``
        (broadcastable to true_rain) and importance ``weight`` per sequence, (B,), that every score respects."""
        self.fss.update(pred_rain, true_rain, mask=mask, weight=weight)
        exceedance = exceedance_from_deterministic(pred_rain, self.thresholds)
        self.probability.update(exceedance, true_rain, mask=mask, weight=weight)

    def compute(self) -> dict[str, Tensor]:
        """FSS, Brier score and ROC area by name (mean over lead times and ``_by_lead_time``)."""
        return {**self.fss.compute(), **self.probability.compute()}


def field_scores_available() -> bool:
    """Whether pysteps, which computes the field's scores, is installed."""
    import importlib.util

    return importlib.util.find_spec("pysteps") is not None
