import base64
import math
import re
from html.parser import HTMLParser

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from convlstm.report import write_report


class TableRows(HTMLParser):
    """Rows of the first <table> with a given class, as lists of (text, bold) cells."""

    def __init__(self, css_class):
        super().__init__()
        self.css_class, self.inside, self.done = css_class, False, False
        self.rows, self.row, self.cell, self.bold = [], None, None, False

    def handle_starttag(self, tag, attrs):
        if tag == "table" and not self.done and ("class", self.css_class) in attrs:
            self.inside = True
        elif self.inside and tag == "tr":
            self.row = []
        elif self.inside and tag in ("td", "th"):
            self.cell, self.bold = "", False
        elif self.inside and tag == "strong":
            self.bold = True

    def handle_endtag(self, tag):
        if not self.inside:
            return
        if tag in ("td", "th"):
            self.row.append((self.cell.strip(), self.bold))
            self.cell = None
        elif tag == "tr":
            self.rows.append(self.row)
        elif tag == "table":
            self.inside, self.done = False, True

    def handle_data(self, data):
        if self.inside and self.cell is not None:
            self.cell += data


def metrics_table(page):
    """({metric row header: {method: (text, bold)}}) of the metrics table."""
    parser = TableRows("metrics")
    parser.feed(page)
    header, *body = parser.rows
    methods = [text for text, _ in header[1:]]
    return {row[0][0]: dict(zip(methods, row[1:], strict=True)) for row in body}


def bold_methods(row):
    return {method for method, (_, bold) in row.items() if bold}


@pytest.fixture
def media(tmp_path):
    """A PNG and a 3-frame GIF made without matplotlib."""
    png = tmp_path / "media" / "scores_by_lead_time.png"
    gif = tmp_path / "media" / "forecast.gif"
    png.parent.mkdir()
    rng = np.random.default_rng(0)
    iio.imwrite(png, rng.integers(0, 255, (20, 30, 3), dtype=np.uint8))
    iio.imwrite(gif, rng.integers(0, 255, (3, 16, 24, 3), dtype=np.uint8), duration=100, loop=0)
    return png, gif


SCORES = {
    "ConvLSTM": {"mse_per_frame": 29.8, "ssim": torch.tensor(0.93), "csi@0.5": 0.577, "far@0.5": 0.195, "fps": 113.0},
    "persistence": {"mse_per_frame": 285.1, "ssim": 0.71, "csi@0.5": 0.402, "far@0.5": 0.35, "fps": 9000.0},
    "optical flow": {"mse_per_frame": np.float64(150.0), "ssim": 0.80, "csi@0.5": 0.466, "far@0.5": 0.308},
}


def test_report_embeds_every_file_and_is_self_contained(tmp_path, media):
    png, gif = media
    out = tmp_path / "report"
    path = write_report(out, title="Run", metrics=SCORES, figures=[png], animations=[(gif, "test sequence 0")])
    assert path == out / "report.html"
    assert [p.name for p in out.iterdir()] == ["report.html"]  # atomic: no temporary file left behind
    page = path.read_text(encoding="utf-8")
    assert f'src="data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()}"' in page
    assert f'src="data:image/gif;base64,{base64.b64encode(gif.read_bytes()).decode()}"' in page
    assert page.count("<img ") == 2
    assert "<figcaption>scores by lead time</figcaption>" in page  # default caption from the file name
    assert "<figcaption>test sequence 0</figcaption>" in page
    # Nothing is loaded from elsewhere and nothing runs.
    assert re.findall(r'(?:src|href)="(?!data:)', page) == []
    assert "<script" not in page.lower() and "url(" not in page
    assert page.startswith("<!DOCTYPE html>")


def test_best_value_per_row_is_bold_in_both_directions(tmp_path):
    page_rows = metrics_table(write_report(tmp_path, title="t", metrics=SCORES).read_text(encoding="utf-8"))
    assert set(page_rows) == {"mse_per_frame \u2193", "ssim \u2191", "csi@0.5 \u2191", "far@0.5 \u2193", "fps"}
    for name, direction in [("mse_per_frame \u2193", min), ("far@0.5 \u2193", min), ("ssim \u2191", max)]:
        row = page_rows[name]
        plain = name.split()[0]
        values = {m: float(torch.as_tensor(SCORES[m][plain])) for m in SCORES}
        best = direction(values, key=values.get)
        assert bold_methods(row) == {best}, name
    assert bold_methods(page_rows["csi@0.5 \u2191"]) == {"ConvLSTM"}
    assert bold_methods(page_rows["fps"]) == set()  # direction unknown: nothing bold
    assert page_rows["fps"]["optical flow"] == ("\u2013", False)  # missing value


def test_ties_nan_overrides_and_vectors(tmp_path):
    metrics = {
        "a": {"mae_per_pixel": 0.1, "psnr": math.nan, "fps": 10.0, "ssim_by_lead_time": torch.rand(5)},
        "b": {"mae_per_pixel": 0.1, "psnr": 20.0, "fps": 30.0, "ssim_by_lead_time": torch.rand(5)},
        "c": {"mae_per_pixel": 0.3, "psnr": 18.0, "fps": 20.0},
    }
    page = write_report(tmp_path, title="t", metrics=metrics, directions={"fps": "higher"}).read_text()
    rows = metrics_table(page)
    assert bold_methods(rows["mae_per_pixel \u2193"]) == {"a", "b"}  # a tie: both bold
    assert bold_methods(rows["psnr \u2191"]) == {"b"}  # NaN never wins
    assert rows["psnr \u2191"]["a"] == ("nan", False)
    assert bold_methods(rows["fps \u2191"]) == {"b"}
    assert not any("by_lead_time" in name for name in rows)  # vectors belong to the figures
    with pytest.raises(ValueError, match="directions"):
        write_report(tmp_path, title="t", metrics=metrics, directions={"fps": "up"})


def test_numbers_in_a_row_share_decimals(tmp_path):
    metrics = {"a": {"mse_per_frame": 29.8, "csi": 0.5}, "b": {"mse_per_frame": 285.14, "csi": 0.41234}}
    rows = metrics_table(write_report(tmp_path, title="t", metrics=metrics).read_text())
    assert [text for text, _ in rows["mse_per_frame \u2193"].values()] == ["29.8", "285.1"]
    assert [text for text, _ in rows["csi \u2191"].values()] == ["0.5000", "0.4123"]


def test_every_string_from_data_is_escaped(tmp_path, media):
    png, gif = media
    evil = '<img src=x onerror="alert(1)">&'
    page = write_report(
        tmp_path,
        title=f"title {evil}",
        metrics={f"method {evil}": {f"mse {evil}": 1.0}, "other": {f"mse {evil}": 2.0}},
        figures=[(png, f"caption {evil}")],
        animations=[(gif, f"gif {evil}")],
        tables={f"table {evil}": [{f"column {evil}": f"cell {evil}", "n": 3}]},
        run_info={f"key {evil}": f"value {evil}", "lr": 5e-4},
        notes=f"note {evil}\n\nsecond paragraph",
    ).read_text()
    escaped = "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;"
    for prefix in ("title", "method", "mse", "caption", "gif", "table", "column", "cell", "key", "value", "note"):
        assert f"{prefix} {escaped}" in page, prefix
    assert 'onerror="alert' not in page
    assert page.count("<img ") == 2
    assert "<td>0.0005</td>" in page and "<td>3</td>" in page
    assert page.count("<p>") == 2  # two note paragraphs


def test_report_errors(tmp_path, media):
    png, _ = media
    with pytest.raises(FileNotFoundError, match=r"missing\.png"):
        write_report(tmp_path / "r", title="t", figures=[tmp_path / "missing.png"])
    with pytest.raises(ValueError, match="must be one of"):
        write_report(tmp_path / "r", title="t", figures=[png.with_suffix(".txt")])
    with pytest.raises(ValueError, match="single path"):
        write_report(tmp_path / "r", title="t", figures=str(png))
    with pytest.raises(ValueError, match="title"):
        write_report(tmp_path / "r", title="  ")
    with pytest.raises(ValueError, match=r"metrics\['a'\]"):
        write_report(tmp_path / "r", title="t", metrics={"a": 1.0})
    with pytest.raises(ValueError, match="filename"):
        write_report(tmp_path / "r", title="t", filename="../escape.html")
    assert not (tmp_path / "r").exists() or list((tmp_path / "r").iterdir()) == []


def test_rewriting_replaces_the_report(tmp_path):
    first = write_report(tmp_path, title="first").read_text()
    second = write_report(tmp_path, title="second").read_text()
    assert "<h1>first</h1>" in first and "<h1>second</h1>" in second
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]
