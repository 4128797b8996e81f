"""The metrics page's table names every score the accumulators compute, with the direction the report uses."""

import re
from pathlib import Path

import pytest
import torch

from convlstm.metrics import FORECAST_METRICS, ConfusionMatrix, ContingencyTable, ForecastMetrics
from convlstm.report import metric_direction

PAGE = Path(__file__).resolve().parents[2] / "docs" / "explanation" / "metrics.md"
HEADER = "| score | measures | better |"


def table(text: str) -> dict[str, str]:
    """Score name (threshold and window placeholders removed) -> the 'better' column's first word."""
    lines = text.splitlines()
    start = lines.index(HEADER)
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        names, _, better = (cell.strip() for cell in line.strip("|").split("|"))
        for name in re.findall(r"`([^`]+)`", names):
            rows[base_name(name)] = better.split()[0]
    return rows


def base_name(key: str) -> str:
    """``csi@0.5_by_lead_time`` -> ``csi``; ``fss@t_Npx`` -> ``fss``."""
    return key.split("@", 1)[0].removesuffix("_by_lead_time")


def computed_keys() -> set[str]:
    """The base names of every key the deterministic, contingency and segmentation accumulators return."""
    generator = torch.Generator().manual_seed(0)
    pred, target = torch.rand(2, 3, 1, 16, 16, generator=generator), torch.rand(2, 3, 1, 16, 16, generator=generator)
    forecast = ForecastMetrics(lead_times=3, metrics=FORECAST_METRICS)
    forecast.update(pred, target)
    contingency = ContingencyTable(thresholds=(0.5,), lead_times=3)
    contingency.update(pred, target)
    segmentation = ConfusionMatrix(num_classes=2, lead_times=3)
    segmentation.update(torch.randn(2, 3, 2, 8, 8, generator=generator), torch.randint(0, 2, (2, 3, 8, 8)))
    keys = [*forecast.compute(), *contingency.compute(), *segmentation.compute()]
    return {base_name(key) for key in keys}


def field_score_keys() -> set[str]:
    """The keys of the field and ensemble scores (pysteps)."""
    pytest.importorskip("pysteps", reason="the field scores need pysteps: pip install -e '.[nowcast]'")
    from convlstm.metrics.field_scores import DeterministicFieldScores, EnsembleScores

    generator = torch.Generator().manual_seed(0)
    rain = 4 * torch.rand(2, 3, 1, 16, 16, generator=generator)
    deterministic = DeterministicFieldScores(thresholds=(1.0,), lead_times=3)
    deterministic.update(rain, rain.flip(-1))
    ensemble = EnsembleScores(members=2, lead_times=3)
    ensemble.update(torch.stack([rain, rain.flip(-2)], dim=1), rain)
    return {base_name(key) for key in [*deterministic.compute(), *ensemble.compute()]}


def test_every_computed_score_is_in_the_table() -> None:
    rows = table(PAGE.read_text(encoding="utf-8"))
    missing = sorted(computed_keys() - set(rows))
    assert missing == [], f"scores the accumulators return that {PAGE.name}'s table does not explain: {missing}"


def test_every_field_score_is_in_the_table() -> None:
    rows = table(PAGE.read_text(encoding="utf-8"))
    missing = sorted(field_score_keys() - set(rows))
    assert missing == [], f"field scores that {PAGE.name}'s table does not explain: {missing}"


def test_the_table_agrees_with_the_report_arrows() -> None:
    rows = table(PAGE.read_text(encoding="utf-8"))
    assert set(rows.values()) == {"lower", "higher"}
    known = {name: metric_direction(name) for name in rows if metric_direction(name) is not None}
    assert len(known) >= 15
    assert {name: rows[name] for name in known} == known


def test_the_table_parser_reads_names_and_directions() -> None:
    text = f"{HEADER}\n|---|---|---|\n| `b_mse`, `b_mae` | x | lower |\n| `csi@t` | y | higher (1 perfect) |\n\nmore"
    assert table(text) == {"b_mse": "lower", "b_mae": "lower", "csi": "higher"}
