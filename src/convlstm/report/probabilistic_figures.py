"""Figures of probabilistic scores: reliability diagrams and rank histograms (matplotlib, Agg canvas, atomic PNG)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from convlstm.report.figures import _new_figure, _save_png


def plot_reliability_diagram(
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    dpi: int = 100,
) -> Path:
    """Observed frequency against forecast probability, one line per method, with the diagonal of reliability.

    Args:
        curves: ``{method: {"forecast_probability": [...], "observed_frequency": [...]}}`` per probability bin, as
            [`convlstm.metrics.ProbabilityScores.reliability`][convlstm.metrics.ProbabilityScores.reliability] returns
            (NaN bins are skipped).
        path: where the PNG goes (written atomically).
        title: optional title (the threshold, say).
        dpi: resolution.

    Returns:
        ``path`` as a `Path`.
    """
    if not isinstance(curves, Mapping) or not curves:
        raise ValueError(f"curves must be a non-empty dict {{method: reliability}}, got {curves!r:.80}")
    fig = _new_figure(4.2, 4.0, dpi)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="reliable")
    for k, (method, curve) in enumerate(curves.items()):
        try:
            x = np.asarray(curve["forecast_probability"], dtype=float)
            y = np.asarray(curve["observed_frequency"], dtype=float)
        except (KeyError, TypeError, ValueError):
            raise ValueError(
                f"curves[{method!r}] must hold 'forecast_probability' and 'observed_frequency' lists"
            ) from None
        if x.shape != y.shape:
            raise ValueError(f"curves[{method!r}]: {x.shape[0]} probabilities but {y.shape[0]} frequencies")
        keep = np.isfinite(x) & np.isfinite(y)
        ax.plot(x[keep], y[keep], marker="o", markersize=3, color=f"C{k % 10}", label=method)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="forecast probability", ylabel="observed frequency")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left")
    return _save_png(fig, path, dpi)


def plot_rank_histograms(
    histograms: Mapping[str, Sequence[float]],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    dpi: int = 100,
) -> Path:
    """One bar chart per ensemble of the observation's rank among the members, with the flat line of a
    well-dispersed ensemble.

    Args:
        histograms: ``{method: frequencies}`` of N + 1 ranks each, as
            [`convlstm.metrics.EnsembleScores.rank_histogram`][convlstm.metrics.EnsembleScores.rank_histogram] returns.
        path: where the PNG goes (written atomically).
        title: optional figure title.
        dpi: resolution.

    Returns:
        ``path`` as a `Path`.
    """
    if not isinstance(histograms, Mapping) or not histograms:
        raise ValueError(f"histograms must be a non-empty dict {{method: frequencies}}, got {histograms!r:.80}")
    fig = _new_figure(3.2 * len(histograms), 2.8, dpi)
    axes: Any = fig.subplots(1, len(histograms), squeeze=False)[0]
    for ax, (method, values) in zip(axes, histograms.items(), strict=True):
        freq = np.asarray(values, dtype=float)
        if freq.ndim != 1 or freq.size < 2:
            raise ValueError(f"histograms[{method!r}] must list N + 1 >= 2 frequencies, got shape {freq.shape}")
        ax.bar(np.arange(freq.size), freq, color="C0")
        ax.axhline(1.0 / freq.size, color="0.4", linestyle="--", linewidth=1)
        ax.set(title=method, xlabel="rank of the observation", ylabel="frequency")
    if title:
        fig.suptitle(title)
    return _save_png(fig, path, dpi)
