"""One self-contained HTML report: run information, a metrics table, figures and animations embedded as data URIs.

The page loads nothing from outside (images are base64 data URIs, CSS is inline, a Content-Security-Policy forbids
any other source) and has no JavaScript, so it can be mailed, archived or opened offline. Every string that comes
from data (title, names, captions, notes, table cells) is HTML-escaped.
"""

from __future__ import annotations

import base64
import math
import os
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from convlstm.report._arrays import to_numpy
from convlstm.report.directions import ARROWS, Direction, metric_direction
from convlstm.utils.atomic import atomic_write_text
from convlstm.utils.checks import check_choice

__all__ = ["write_report"]

Media = str | os.PathLike[str] | tuple[str | os.PathLike[str], str]

_MIME = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}

_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #222;
       background: #fafafa; margin: 0; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 28px 40px; background: #fff; }
h1 { font-size: 1.6em; margin: 0 0 0.6em; }
h2 { font-size: 1.2em; margin: 1.6em 0 0.5em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
table { border-collapse: collapse; margin: 0.4em 0 0.8em; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ddd; padding: 4px 10px; text-align: left; }
thead th { background: #f2f2f2; }
table.metrics td { text-align: right; }
table.kv th { background: #f7f7f7; font-weight: 600; }
td.best { background: #eef6ee; }
.hint { color: #666; font-size: 0.9em; margin: 0.2em 0; }
figure { margin: 1em 0 1.6em; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figure img.animation { image-rendering: pixelated; }
figcaption { color: #444; font-size: 0.92em; margin-top: 0.3em; }
.notes p { margin: 0.4em 0; white-space: pre-wrap; }
footer { color: #888; font-size: 0.85em; margin-top: 2.5em; }
"""
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _scalar(value: Any, name: str) -> float | None:
    """The number in ``value`` (int, float, 0-d or one-element tensor / array), or None for vectors and the like."""
    if isinstance(value, str | bytes) or value is None:
        return None
    try:
        array = to_numpy(value, name)
    except ValueError:
        return None
    return float(array.reshape(())) if array.size == 1 else None


def _decimals(values: Sequence[float]) -> int:
    """Decimals that give the largest finite magnitude of a row four significant digits (0 to 6)."""
    finite = [abs(v) for v in values if math.isfinite(v)]
    largest = max(finite, default=0.0)
    if largest == 0.0:
        return 3
    return int(min(6, max(0, 3 - math.floor(math.log10(largest)))))


def _format(value: float, decimals: int) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "\N{INFINITY}" if value > 0 else "-\N{INFINITY}"
    return f"{value:.{decimals}f}"


def _format_cell(value: Any) -> str:
    """A table cell's text: ints as they are, other numbers with up to six significant digits, the rest via str()."""
    number = None if isinstance(value, bool) else _scalar(value, "cell")
    if number is None:
        return str(value)
    if isinstance(value, int | np.integer):
        return str(int(value))
    return f"{number:.6g}"


def _best(values: dict[str, float], direction: Direction | None) -> set[str]:
    """Methods with the best finite value of a row (all of them on a tie); empty when unknown or < 2 values."""
    finite = {method: v for method, v in values.items() if math.isfinite(v)}
    if direction is None or len(finite) < 2:
        return set()
    target = min(finite.values()) if direction == "lower" else max(finite.values())
    return {method for method, v in finite.items() if v == target}


def _metrics_table(metrics: Mapping[str, Mapping[str, Any]], directions: Mapping[str, str]) -> str:
    if not isinstance(metrics, Mapping):
        raise ValueError(f"metrics must be a dict {{method: {{metric: value}}}}, got {type(metrics).__name__}")
    methods = list(metrics)
    rows: dict[str, dict[str, float]] = {}
    for method, scores in metrics.items():
        if not isinstance(scores, Mapping):
            raise ValueError(f"metrics[{method!r}] must be a dict {{metric: value}}, got {type(scores).__name__}")
        for name, value in scores.items():
            number = _scalar(value, f"metrics[{method!r}][{name!r}]")
            if number is not None:
                rows.setdefault(str(name), {})[method] = number
    if not rows:
        return ""
    head = "".join(f"<th>{escape(str(m))}</th>" for m in methods)
    body = []
    for name, values in rows.items():
        given = directions.get(name)
        if given is not None:  # None: the score's own direction
            check_choice(f"directions[{name!r}]", given, ("lower", "higher"))
        direction: Direction | None = given if given is not None else metric_direction(name)  # type: ignore[assignment]
        best = _best(values, direction)
        decimals = _decimals(list(values.values()))
        arrow = f" {ARROWS[direction]}" if direction else ""
        hint = f' title="{direction} is better"' if direction else ""
        cells = []
        for method in methods:
            if method not in values:
                cells.append('<td class="missing">\N{EN DASH}</td>')
            elif method in best:
                cells.append(f'<td class="best"><strong>{_format(values[method], decimals)}</strong></td>')
            else:
                cells.append(f"<td>{_format(values[method], decimals)}</td>")
        body.append(f'<tr><th scope="row"{hint}>{escape(name)}{arrow}</th>{"".join(cells)}</tr>')
    return (
        '<section id="metrics"><h2>Metrics</h2>\n'
        f'<p class="hint">{ARROWS["lower"]} lower is better, {ARROWS["higher"]} higher is better; '
        "the best value of each row is in bold.</p>\n"
        f'<table class="metrics"><thead><tr><th>metric</th>{head}</tr></thead>\n<tbody>\n'
        + "\n".join(body)
        + "\n</tbody></table></section>"
    )


def _key_value_table(info: Mapping[str, Any]) -> str:
    rows = "".join(f"<tr><th>{escape(str(k))}</th><td>{escape(_format_cell(v))}</td></tr>" for k, v in info.items())
    return f'<section id="run"><h2>Run</h2>\n<table class="kv"><tbody>{rows}</tbody></table></section>'


def _record_table(caption: str, records: Sequence[Mapping[str, Any]]) -> str:
    if isinstance(records, Mapping | str) or not all(isinstance(r, Mapping) for r in records):
        raise ValueError(f"tables[{caption!r}] must be a list of rows {{column: value}}, got {records!r:.80}")
    columns: list[str] = []
    for record in records:
        columns += [str(k) for k in record if str(k) not in columns]
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(_format_cell(r[c])) if c in r else chr(0x2013)}</td>" for c in columns) + "</tr>"
        for r in ({str(k): v for k, v in record.items()} for record in records)
    )
    return f"<h3>{escape(caption)}</h3>\n<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _media(items: Sequence[Media], argument: str, css_class: str) -> list[str]:
    """<figure> elements with the files embedded as base64 data URIs."""
    if isinstance(items, str | os.PathLike):
        raise ValueError(f"{argument} must be a list of paths or (path, caption) pairs, got a single path {items!r}")
    blocks = []
    for k, item in enumerate(items):
        if isinstance(item, tuple):
            if len(item) != 2:
                raise ValueError(f"{argument}[{k}] must be a path or a (path, caption) pair, got {item!r}")
            file, caption = Path(item[0]), str(item[1])
        else:
            file = Path(item)
            caption = file.stem.replace("_", " ")
        mime = _MIME.get(file.suffix.lower())
        if mime is None:
            raise ValueError(f"{argument}[{k}]: {str(file)!r} must be one of {sorted(_MIME)}, got {file.suffix!r}")
        if not file.is_file():
            raise FileNotFoundError(f"{argument}[{k}]: {str(file)!r} does not exist")
        data = base64.b64encode(file.read_bytes()).decode("ascii")
        text = escape(caption)
        blocks.append(
            f'<figure><img class="{css_class}" src="data:{mime};base64,{data}" alt="{text}">'
            f"<figcaption>{text}</figcaption></figure>"
        )
    return blocks


def write_report(
    directory: str | os.PathLike[str],
    *,
    title: str,
    metrics: Mapping[str, Mapping[str, Any]] | None = None,
    figures: Sequence[Media] = (),
    animations: Sequence[Media] = (),
    tables: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    run_info: Mapping[str, Any] | None = None,
    notes: str = "",
    directions: Mapping[str, str] | None = None,
    filename: str = "report.html",
) -> Path:
    """Write one self-contained HTML page (``directory/report.html``) atomically and return its path.

    Args:
        directory: Folder of the report (created if missing).
        title: Page title and heading.
        metrics: ``{method: {metric: value}}`` (the model and each baseline); the table shows methods as columns and
            every scalar score as a row (vectors such as ``"*_by_lead_time"`` are left to the figures), the best
            value of a row in bold: lower is better for mse / mae / far / b_mse / b_mae / bce / loss, higher for
            psnr / ssim / csi / pod / hss / correlation / auroc / miou / dice (see
            [`metric_direction`][convlstm.report.metric_direction]); rows of unknown direction get no bold.
        figures: PNG (or GIF / JPEG / WebP) files, each a path or a ``(path, caption)`` pair; the default caption is
            the file name.
        animations: GIF files, same form as ``figures``; shown pixelated (no smoothing when scaled).
        tables: Further tables ``{caption: [{column: value}, ...]}`` (e.g. parameter counts, timings).
        run_info: Key/value pairs about the run (model, data, epochs, device, ...), shown first.
        notes: Free text shown at the end; blank lines separate paragraphs.
        directions: Per-metric overrides ``{metric: "lower" | "higher"}``.
        filename: Name of the HTML file inside ``directory``.

    Returns:
        The path of the HTML file.

    Examples:
        >>> write_report("runs/mnist", title="ConvLSTM on Moving MNIST", metrics={"ConvLSTM": s, "persistence": p},
        ...              figures=["runs/mnist/scores.png"], animations=[("runs/mnist/forecast.gif", "test sequence 0")])
    """
    if not isinstance(title, str) or not title.strip():
        raise ValueError(f"title must be a non-empty string, got {title!r}")
    if not isinstance(notes, str):
        raise ValueError(f"notes must be a string, got {type(notes).__name__}")
    if Path(filename).name != filename or not filename:
        raise ValueError(f"filename must be a plain file name, got {filename!r}")
    from convlstm.utils.version import __version__

    parts = [f"<h1>{escape(title)}</h1>"]
    if run_info:
        parts.append(_key_value_table(run_info))
    if metrics:
        parts.append(_metrics_table(metrics, directions or {}))
    if tables:
        parts.append(
            '<section id="tables"><h2>Tables</h2>\n'
            + "\n".join(_record_table(str(c), rows) for c, rows in tables.items())
            + "</section>"
        )
    figure_blocks = _media(figures, "figures", "figure")
    if figure_blocks:
        parts.append('<section id="figures"><h2>Figures</h2>\n' + "\n".join(figure_blocks) + "</section>")
    animation_blocks = _media(animations, "animations", "animation")
    if animation_blocks:
        parts.append('<section id="animations"><h2>Animations</h2>\n' + "\n".join(animation_blocks) + "</section>")
    paragraphs = [p.strip() for p in notes.replace("\r\n", "\n").split("\n\n") if p.strip()]
    if paragraphs:
        parts.append(
            '<section id="notes" class="notes"><h2>Notes</h2>\n'
            + "\n".join(f"<p>{escape(p)}</p>" for p in paragraphs)
            + "</section>"
        )
    parts.append(f"<footer>Written by convlstm {escape(__version__)}.</footer>")
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        + "\n".join(parts)
        + "\n</main>\n</body>\n</html>\n"
    )
    target = Path(directory) / filename
    atomic_write_text(target, page)
    return target
