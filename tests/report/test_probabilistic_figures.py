"""Reliability diagrams and rank histograms are drawn as small PNGs; bad input is named."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convlstm.report.probabilistic_figures import plot_rank_histograms, plot_reliability_diagram


def test_reliability_diagram_and_rank_histograms(tmp_path: Path) -> None:
    curve = {"forecast_probability": [0.05, 0.5, float("nan"), 0.95], "observed_frequency": [0.1, 0.4, np.nan, 0.8]}
    path = plot_reliability_diagram({"model": curve, "STEPS": curve}, tmp_path / "rel.png", title="2 mm/h")
    with Image.open(path) as image:
        assert image.size == (420, 400)
    assert path.stat().st_size < 300_000
    hist = plot_rank_histograms({"a": [0.2, 0.3, 0.5], "b": [0.5, 0.0, 0.5]}, tmp_path / "rank.png")
    with Image.open(hist) as image:
        assert image.size[0] == 640
    with pytest.raises(ValueError, match="curves\\['x'\\] must hold 'forecast_probability'"):
        plot_reliability_diagram({"x": {"observed_frequency": [0.1]}}, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="must list N \\+ 1 >= 2 frequencies"):
        plot_rank_histograms({"a": [1.0]}, tmp_path / "bad.png")
