"""WeatherBench's scores of gridded forecasts, per lead time and variable: latitude-weighted RMSE, MAE and bias,
and the anomaly correlation coefficient (ACC).

On a regular latitude-longitude grid a cell near a pole covers less of the Earth than one at the equator, so each
cell counts with the weight L(j) = cos(lat_j) / mean_j cos(lat_j) (mean 1 over the grid's rows), as in Rasp et
al. (2020), "WeatherBench: a benchmark data set for data-driven weather forecasting", and its score code
(pangeo-data/WeatherBench, ``src/score.py``). For every lead time and variable, over all forecasts and cells:

- RMSE = sqrt(sum L e^2 / sum L), e = forecast - observed (the square root of the weighted mean over everything,
  as WeatherBench's code and WeatherBench 2 take it);
- MAE = sum L |e| / sum L; bias = sum L e / sum L;
- ACC = sum L f' o' / sqrt(sum L f'^2 * sum L o'^2), where f' and o' are the anomalies of forecast and
  observation from a climatology (f - c, o - c), each centred by its plain mean over everything scored
  (WeatherBench's ``fa - fa.mean()``). The climatology is the caller's: WeatherBench computes it from the training
  years; [`HourlyClimatology`][convlstm.metrics.HourlyClimatology] gives one by hour of day.

Sums are kept in float64, so a whole test set scored batch by batch equals one call on all of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from convlstm.utils.checks import check_int

__all__ = ["WEATHER_SCORES", "WeatherScores", "latitude_weights"]

WEATHER_SCORES: tuple[str, ...] = ("rmse", "mae", "bias", "acc")
"""The scores [`WeatherScores.compute`][convlstm.metrics.WeatherScores.compute] returns (``acc`` only when every
batch came with a climatology)."""


def latitude_weights(latitudes: Sequence[float] | np.ndarray | Tensor) -> np.ndarray:
    """cos(latitude), normalised to mean 1 over the given rows: WeatherBench's L(j).

    Args:
        latitudes: (H,) the latitude of each grid row, in degrees (any order).

    Returns:
        (H,) float64 weights whose mean is 1.

    Raises:
        ValueError: not one finite latitude per row in [-90, 90], or all of them at a pole (every weight 0).
    """
    lat = _as_float64(latitudes, "latitudes")
    if lat.ndim != 1 or lat.size == 0:
        raise ValueError(f"latitudes must be one value per grid row, shape (H,), got shape {lat.shape}")
    if not np.isfinite(lat).all() or (np.abs(lat) > 90).any():
        raise ValueError(f"latitudes must be finite degrees in [-90, 90], got {lat.min()} to {lat.max()}")
    weights = np.cos(np.deg2rad(lat))
    if weights.mean() <= 1e-12:
        raise ValueError(f"latitudes {lat.tolist()} all lie at a pole: every cos(latitude) weight is 0")
    return weights / weights.mean()


class WeatherScores:
    """Accumulates latitude-weighted RMSE, MAE, bias and ACC per lead time and variable over batches.

    Args:
        latitudes: (H,) latitude of each grid row in degrees (see
            [`latitude_weights`][convlstm.metrics.latitude_weights]).
        variables: the name of each channel C, in order.
        lead_times: K, the forecast steps of each batch.
        latitude_weighted: False weighs every cell alike (OpenSTL's weather scores, on data that is not on a
            latitude-longitude grid).

    Examples:
        >>> scores = WeatherScores(lat, variables=["t2m"], lead_times=24)
        >>> scores.update(forecast, observed, climatology=climatology)    # each (B, 24, 1, H, W), data units
        >>> scores.compute()["rmse"]                                        # (24, 1): per lead time, variable
    """

    def __init__(
        self,
        latitudes: Sequence[float] | np.ndarray | Tensor,
        *,
        variables: Sequence[str],
        lead_times: int,
        latitude_weighted: bool = True,
    ) -> None:
        self.weights = latitude_weights(latitudes)
        if not latitude_weighted:
            self.weights = np.ones_like(self.weights)
        if isinstance(variables, str) or not variables or not all(isinstance(v, str) for v in variables):
            raise ValueError(f"variables must be a non-empty list of channel names, got {variables!r}")
        self.variables = list(variables)
        self.lead_times = check_int("lead_times", lead_times, 1)
        self.reset()

    def reset(self) -> None:
        """Forgets every batch."""
        shape = (self.lead_times, len(self.variables))
        # The ACC's sums of the anomalies f', o' follow the error sums.
        names = ("weight", "error", "abs_error", "squared_error", "count", "f", "o", "wf", "wo", "wfo", "wff", "woo")
        self.sums = {name: np.zeros(shape) for name in names}
        self.with_climatology: bool | None = None

    def update(
        self,
        forecast: np.ndarray | Tensor,
        observed: np.ndarray | Tensor,
        *,
        climatology: np.ndarray | Tensor | None = None,
        mask: np.ndarray | Tensor | None = None,
    ) -> None:
        """Adds a batch.

        Args:
            forecast: (B, K, C, H, W) in data units.
            observed: (B, K, C, H, W), the verifying fields.
            climatology: the climatology at each forecast's valid time, broadcastable to (B, K, C, H, W); needed
                for the ACC (give it with every batch or with none).
            mask: optional, broadcastable to (B, K, C, H, W), True where a cell counts.

        Raises:
            ValueError: shapes that disagree with each other or with the latitudes, variables and lead times; NaN
                at a counted cell; a climatology given with some batches only.
        """
        f = _as_float64(forecast, "forecast")
        o = _as_float64(observed, "observed")
        expected = f"(B, {self.lead_times}, {len(self.variables)}, {len(self.weights)}, W)"
        if f.ndim != 5 or f.shape != o.shape:
            raise ValueError(f"forecast and observed must both be {expected}, got {f.shape} and {o.shape}")
        if f.shape[1:4] != (self.lead_times, len(self.variables), len(self.weights)):
            raise ValueError(f"forecast must be {expected} (lead times, variables, latitudes), got {f.shape}")
        valid = np.ones(f.shape, dtype=bool) if mask is None else _broadcast(mask, f.shape, "mask").astype(bool)
        for name, values in (("forecast", f), ("observed", o)):
            if np.isnan(values[valid]).any():
                raise ValueError(f"{name} holds NaN at {int(np.isnan(values[valid]).sum())} counted cells")
        given = climatology is not None
        if self.with_climatology is not None and given != self.with_climatology:
            raise ValueError("give a climatology with every batch (for the ACC) or with none")
        self.with_climatology = given
        w = np.where(valid, self.weights[:, None], 0.0)  # (B, K, C, H, W)
        error = np.where(valid, f - o, 0.0)
        reduce = (0, 3, 4)
        self.sums["weight"] += w.sum(axis=reduce)
        self.sums["count"] += valid.sum(axis=reduce)
        self.sums["error"] += (w * error).sum(axis=reduce)
        self.sums["abs_error"] += (w * np.abs(error)).sum(axis=reduce)
        self.sums["squared_error"] += (w * error**2).sum(axis=reduce)
        if climatology is not None:
            c = _broadcast(climatology, f.shape, "climatology")
            fa, oa = np.where(valid, f - c, 0.0), np.where(valid, o - c, 0.0)
            for name, values in (("f", fa), ("o", oa), ("wf", w * fa), ("wo", w * oa)):
                self.sums[name] += values.sum(axis=reduce)
            for name, values in (("wfo", w * fa * oa), ("wff", w * fa**2), ("woo", w * oa**2)):
                self.sums[name] += values.sum(axis=reduce)

    def compute(self) -> dict[str, np.ndarray]:
        """The scores so far, each (K, C) (lead time, variable): ``rmse``, ``mae``, ``bias`` and, when the batches
        came with a climatology, ``acc``; NaN where nothing was counted."""
        s = self.sums
        with np.errstate(divide="ignore", invalid="ignore"):
            out = {
                "rmse": np.sqrt(s["squared_error"] / s["weight"]),
                "mae": s["abs_error"] / s["weight"],
                "bias": s["error"] / s["weight"],
            }
            if self.with_climatology:
                # The anomalies centred by their plain means m_f, m_o: sum L (f' - m_f)(o' - m_o) expanded.
                m_f, m_o = s["f"] / s["count"], s["o"] / s["count"]
                covariance = s["wfo"] - m_o * s["wf"] - m_f * s["wo"] + m_f * m_o * s["weight"]
                forecast_var = s["wff"] - 2 * m_f * s["wf"] + m_f**2 * s["weight"]
                observed_var = s["woo"] - 2 * m_o * s["wo"] + m_o**2 * s["weight"]
                out["acc"] = covariance / np.sqrt(forecast_var * observed_var)
        return out

    def by_variable(self) -> dict[str, dict[str, list[float]]]:
        """The scores as plain lists, variable -> score -> one value per lead time (for JSON)."""
        scores = self.compute()
        return {
            v: {name: values[:, c].tolist() for name, values in scores.items()} for c, v in enumerate(self.variables)
        }


def _as_float64(values: Any, name: str) -> np.ndarray:
    if isinstance(values, Tensor):
        return values.detach().to("cpu", torch.float64).numpy()
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be numbers (an array or tensor), got {type(values).__name__}") from error


def _broadcast(values: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    array = values.detach().cpu().numpy() if isinstance(values, Tensor) else np.asarray(values)
    try:
        return np.broadcast_to(array, shape)
    except ValueError:
        raise ValueError(f"{name} of shape {array.shape} does not broadcast to the forecasts' {shape}") from None
