"""Static figures as PNG: scores by lead time, strips of frames, training curves (matplotlib, Agg canvas).

Figures are drawn on `matplotlib.figure.Figure` objects with an explicit Agg canvas, never through pyplot, so
they neither depend on nor change the user's matplotlib backend. Every PNG is written atomically.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from convlstm.report._arrays import as_frames, to_numpy
from convlstm.report.colormaps import RAIN_COLORS, RAIN_LEVELS, frames_to_rgb, is_rain_cmap
from convlstm.report.directions import ARROWS, metric_direction
from convlstm.utils.atomic import atomic_write_with
from convlstm.utils.checks import check_int

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_frame_strip", "plot_scores_by_lead_time", "plot_training_curve"]

_BY_LEAD_TIME = "_by_lead_time"
_STAGE_PREFIXES = ("train/", "val/", "valid/", "validation/", "test/")


def _new_figure(width: float, height: float, dpi: int) -> Figure:
    """A constrained-layout figure on its own Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save_png(fig: Figure, path: str | os.PathLike[str], dpi: int) -> Path:
    target = Path(path)
    atomic_write_with(target, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, metadata={"Software": None}))
    return target


# --- scores by lead time -------------------------------------------------------------------------------------------


def _curves(
    results: Mapping[str, Mapping[str, Any]], metrics: Sequence[str] | None
) -> list[tuple[str, dict[str, np.ndarray]]]:
    """[(metric name without the suffix, {method: (T,) values})] in the order asked for or first seen."""
    if not isinstance(results, Mapping) or not results:
        raise ValueError(f"results must be a non-empty dict {{method: {{metric: value}}}}, got {results!r:.80}")
    vectors: dict[str, dict[str, np.ndarray]] = {}
    for method, scores in results.items():
        if not isinstance(scores, Mapping):
            raise ValueError(f"results[{method!r}] must be a dict {{metric: value}}, got {type(scores).__name__}")
        for key, value in scores.items():
            if isinstance(key, str) and key.endswith(_BY_LEAD_TIME):
                array = to_numpy(value, f"results[{method!r}][{key!r}]")
                vectors.setdefault(key.removesuffix(_BY_LEAD_TIME), {})[method] = array
    if metrics is None:
        names = [name for name, lines in vectors.items() if all(a.ndim == 1 and a.size > 0 for a in lines.values())]
        if not names:
            raise ValueError(
                "results hold no by-lead-time vector (a (T,) value under '<name>_by_lead_time'); keys of the first "
                f"method: {sorted(next(iter(results.values())))}"
            )
    else:
        if isinstance(metrics, str) or not metrics:
            raise ValueError(f"metrics must be a non-empty list of metric names, got {metrics!r}")
        names = [name.removesuffix(_BY_LEAD_TIME) for name in metrics]
        for name in names:
            if name not in vectors:
                raise ValueError(
                    f"metrics asks for {name!r}, which no method has per lead time; have {sorted(vectors)}"
                )
            for method, array in vectors[name].items():
                if array.ndim != 1 or array.size == 0:
                    raise ValueError(
                        f"results[{method!r}][{name + _BY_LEAD_TIME!r}] must have shape (T,), got {array.shape}"
                    )
    return [(name, vectors[name]) for name in names]


def plot_scores_by_lead_time(
    results: Mapping[str, Mapping[str, Any]],
    path: str | os.PathLike[str],
    *,
    metrics: Sequence[str] | None = None,
    ncols: int = 4,
    title: str | None = None,
    dpi: int = 100,
) -> Path:
    """One small panel per score against lead time 1..T, one line per method (as Shi et al.'s CSI figures).

    Args:
        results: ``{method: {metric: value}}``, e.g. ``{"ConvLSTM": metrics.compute(), "persistence": ...}``.
            Values are numbers or (T,) tensors / arrays / lists; a panel is drawn for every ``"<name>_by_lead_time"``
            vector; other keys and (T, K) values are ignored. NaN values (a score undefined at a lead time, e.g.
            CSI without events) leave a gap.
        path: Where the PNG goes (written atomically).
        metrics: Names to draw, in this order, with or without the ``"_by_lead_time"`` suffix; default all.
        ncols: Panels per row.
        title: Optional figure title.
        dpi: Resolution; 100 keeps a four-panel figure near 70 KB.

    Returns:
        ``path`` as a `Path`.

    Examples:
        >>> plot_scores_by_lead_time({"ConvLSTM": scores, "persistence": base}, "out/scores.png", metrics=["csi@0.5"])
    """
    curves = _curves(results, metrics)
    ncols = min(check_int("ncols", ncols), len(curves))
    nrows = math.ceil(len(curves) / ncols)
    methods = list(results)
    fig = _new_figure(3.0 * ncols, 2.3 * nrows + 0.4 + (0.3 if title else 0.0), dpi)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    colors = [f"C{k % 10}" for k in range(len(methods))]
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    for ax, (name, lines) in zip(axes, curves, strict=False):
        for k, method in enumerate(methods):
            if method in lines:
                values = lines[method]
                ax.plot(np.arange(1, values.size + 1), values, marker="o", markersize=3, color=colors[k], label=method)
        direction = metric_direction(name)
        ax.set_title(f"{name} {ARROWS[direction]}" if direction else name, fontsize=10)
        ax.set_xlabel("lead time", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in axes[len(curves) :]:
        ax.set_visible(False)
    handles = [Line2D([], [], marker="o", markersize=3, color=c) for c in colors]
    fig.legend(handles, methods, loc="outside lower center", ncols=min(len(methods), 6), frameon=False, fontsize=9)
    if title:
        fig.suptitle(title)
    return _save_png(fig, path, dpi)


# --- frames ------------------------------------------------------------------------------------------------------


def plot_frame_strip(
    frames: Any,
    path: str | os.PathLike[str],
    *,
    rows: int | None = None,
    titles: Sequence[str] | None = None,
    cmap: str | None = None,
    title: str | None = None,
    panel_inches: float = 1.1,
    dpi: int = 100,
) -> Path:
    """A strip or grid of frames, or several labelled rows of frames, as a PNG.

    Args:
        frames: One sequence (T, C, H, W) (tensor, array or nested list), or a dict ``{row label: (T, C, H, W)}``
            of labelled rows (e.g. ``{"input": x, "truth": y, "ConvLSTM": p}``); rows may differ in T.
        path: Where the PNG goes (written atomically).
        rows: For one sequence, wrap it into this many rows (row-major); not allowed with a dict.
        titles: Titles above the frames: one per frame for one sequence, one per column for a dict.
        cmap: ``None`` (grayscale for C = 1, RGB for C = 3, values in [0, 1]), ``"rain"`` (radar pixels in [0, 1]
            coloured by rain rate with the HKO-7 thresholds; adds a mm/h legend), ``"rain_mm_h"`` (frames already
            in mm/h) or a matplotlib colormap name (adds a colour bar); see `convlstm.report.colormaps`.
        title: Optional figure title.
        panel_inches: Width of one frame in inches.
        dpi: Resolution.

    Returns:
        ``path`` as a `Path`.
    """
    if isinstance(frames, Mapping):
        if rows is not None:
            raise ValueError(f"rows wraps one sequence into a grid; got rows={rows!r} with a dict of rows")
        if not frames:
            raise ValueError("frames must not be an empty dict")
        labels: list[str] | None = [str(label) for label in frames]
        sequences = [as_frames(value, f"frames[{label!r}]") for label, value in frames.items()]
        pictures = [
            frames_to_rgb(seq, cmap, name=f"frames[{label!r}]") for seq, label in zip(sequences, frames, strict=True)
        ]
        ncols = max(len(p) for p in pictures)
        grid: list[list[np.ndarray | None]] = [[*p, *[None] * (ncols - len(p))] for p in pictures]
        expected_titles, what = ncols, "columns"
    else:
        sequence = as_frames(frames, "frames")
        labels = None
        steps = len(sequence)
        nrows = 1 if rows is None else check_int("rows", rows)
        if nrows > steps:
            raise ValueError(f"rows must be at most the number of frames {steps}, got {rows}")
        ncols = math.ceil(steps / nrows)
        cells: list[np.ndarray | None] = [*frames_to_rgb(sequence, cmap), *[None] * (nrows * ncols - steps)]
        grid = [cells[r * ncols : (r + 1) * ncols] for r in range(nrows)]
        expected_titles, what = steps, "frames"
    if titles is not None and (isinstance(titles, str) or len(titles) != expected_titles):
        got = repr(titles) if isinstance(titles, str) else f"{len(titles)} titles"
        raise ValueError(f"titles must hold one title per {what[:-1]} ({expected_titles} {what}), got {got}")

    nrows = len(grid)
    height, width = next(cell for cell in grid[0] if cell is not None).shape[:2]
    fig_width = ncols * panel_inches + (1.0 if labels else 0.1) + (1.0 if cmap is not None else 0.0)
    fig_height = nrows * panel_inches * height / width + (0.25 if titles is not None else 0.05) + (0.35 if title else 0)
    fig = _new_figure(fig_width, fig_height + 0.1, dpi)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    fig.get_layout_engine().set(w_pad=0.02, wspace=0.01, hspace=0.01)  # type: ignore[call-arg, union-attr]
    for r, row in enumerate(grid):
        for c, cell in enumerate(row):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if cell is None:
                ax.set_axis_off()
                continue
            ax.imshow(cell, interpolation="nearest")
            index = r * ncols + c if labels is None else c
            if titles is not None and (labels is None or r == 0) and index < len(titles):
                ax.set_title(str(titles[index]), fontsize=8)
        if labels is not None:
            axes[r, 0].set_ylabel(labels[r], rotation=0, ha="right", va="center", fontsize=9)
    if cmap is not None:
        _add_colorbar(fig, axes, cmap)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save_png(fig, path, dpi)


def _add_colorbar(fig: Figure, axes: Any, cmap: str) -> None:
    import matplotlib
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import BoundaryNorm, ListedColormap, Normalize

    if is_rain_cmap(cmap):
        palette = ListedColormap(np.asarray(RAIN_COLORS) / 255.0)
        bounds = [0.0, *RAIN_LEVELS, 2 * RAIN_LEVELS[-1]]
        mappable = ScalarMappable(BoundaryNorm(bounds, palette.N), palette)
        bar = fig.colorbar(mappable, ax=axes, ticks=list(RAIN_LEVELS), spacing="uniform", shrink=0.9)
        bar.set_ticklabels([f"{level:g}" for level in RAIN_LEVELS])
        bar.set_label("rain rate (mm/h)", fontsize=8)
    else:
        mappable = ScalarMappable(Normalize(0.0, 1.0), matplotlib.colormaps[cmap])
        bar = fig.colorbar(mappable, ax=axes, shrink=0.9)
    bar.ax.tick_params(labelsize=7)


# --- training curves -----------------------------------------------------------------------------------------------


def _float_or_nan(value: Any) -> float:
    if value is None or value == "":
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _read_columns(source: str | os.PathLike[str] | Mapping[str, Sequence[Any]]) -> dict[str, np.ndarray]:
    """Numeric columns of a Lightning ``metrics.csv`` (empty cells -> NaN) or of a dict of equal-length lists."""
    if isinstance(source, Mapping):
        raw: dict[str, list[Any]] = {str(k): list(v) for k, v in source.items()}
        lengths = {len(v) for v in raw.values()}
        if len(lengths) > 1:
            raise ValueError(f"source columns must have equal lengths, got { ({k: len(v) for k, v in raw.items()}) }")
    else:
        file = Path(source)
        if not file.is_file():
            raise FileNotFoundError(f"source: training log {str(file)!r} does not exist")
        with file.open(newline="") as f:
            reader = csv.DictReader(f)
            raw = {name: [] for name in reader.fieldnames or []}
            for line in reader:
                for name in raw:
                    raw[name].append(line.get(name))
    columns = {name: np.array([_float_or_nan(v) for v in values], dtype=np.float64) for name, values in raw.items()}
    # Drop columns that hold no number at all (text columns, never-logged metrics).
    return {name: values for name, values in columns.items() if np.isfinite(values).any()}


def _panel_of(name: str) -> str:
    """Stage prefix and Lightning's _step/_epoch suffix removed: train/loss_step and val/loss share panel "loss"."""
    for prefix in _STAGE_PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    return name.removesuffix("_step").removesuffix("_epoch")


def plot_training_curve(
    source: str | os.PathLike[str] | Mapping[str, Sequence[Any]],
    path: str | os.PathLike[str],
    *,
    x: str = "step",
    metrics: Sequence[str] | None = None,
    logy: bool | None = None,
    title: str | None = None,
    dpi: int = 100,
) -> Path:
    """Losses (or other logged values) against step or epoch, from Lightning's CSV logger.

    Series that share a name after the stage prefix (``train/``, ``val/``, ``test/``) and Lightning's ``_step`` /
    ``_epoch`` suffix share a panel, so ``train/loss`` and ``val/loss`` are drawn together.

    Args:
        source: Path of a ``metrics.csv`` (columns such as ``step``, ``epoch``, ``train/loss``, ``val/loss``; empty
            cells are skipped), or a dict ``{column: values}`` of equal-length lists (``None`` / NaN = missing).
        path: Where the PNG goes (written atomically).
        x: The column on the x axis (``"step"`` or ``"epoch"``); values logged several times at one x (per-step
            losses against epoch) are averaged.
        metrics: Columns to draw; default every column with ``loss`` in its name, or every other column if none.
        logy: Logarithmic y axis; default: when a panel is positive and spans more than a factor 30.
        title: Optional figure title.
        dpi: Resolution.

    Returns:
        ``path`` as a `Path`.
    """
    columns = _read_columns(source)
    if x not in columns:
        raise ValueError(f"x={x!r} is not a numeric column of the training log; columns: {sorted(columns)}")
    if metrics is None:
        others = [name for name in columns if name not in (x, "step", "epoch")]
        names = [name for name in others if "loss" in name.lower()] or others
        if not names:
            raise ValueError(f"the training log has no column to plot besides step/epoch; columns: {sorted(columns)}")
    else:
        names = list(metrics)
        missing = [name for name in names if name not in columns]
        if isinstance(metrics, str) or not names or missing:
            raise ValueError(
                f"metrics must name numeric columns of the training log {sorted(columns)}, got {metrics!r}"
            )
    panels: dict[str, list[str]] = {}
    for name in names:
        panels.setdefault(_panel_of(name), []).append(name)

    from matplotlib.ticker import MaxNLocator

    ncols = min(len(panels), 3)
    nrows = math.ceil(len(panels) / ncols)
    fig = _new_figure(4.2 * ncols, 3.0 * nrows + (0.3 if title else 0.0), dpi)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (panel, members) in zip(axes, panels.items(), strict=False):
        drawn: list[np.ndarray] = []
        for name in members:
            keep = np.isfinite(columns[x]) & np.isfinite(columns[name])
            xs, ys = columns[x][keep], columns[name][keep]
            if np.unique(xs).size < xs.size:  # e.g. per-step values against epoch: one mean per x value
                xs, groups = np.unique(xs, return_inverse=True)
                ys = np.bincount(groups, weights=ys) / np.bincount(groups)
            if ys.size:
                sparse = ys.size <= 50
                ax.plot(xs, ys, marker="o" if sparse else None, markersize=3, linewidth=1.2, label=name)
                drawn.append(ys)
        values = np.concatenate(drawn) if drawn else np.empty(0)
        use_log = (
            logy if logy is not None else bool(values.size and values.min() > 0 and values.max() > 30 * values.min())
        )
        if use_log:
            ax.set_yscale("log")
        if np.all(columns[x][np.isfinite(columns[x])] % 1 == 0):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(panel, fontsize=10)
        ax.set_xlabel(x, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=8, frameon=False)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    return _save_png(fig, path, dpi)
