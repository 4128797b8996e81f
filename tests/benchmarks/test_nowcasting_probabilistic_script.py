"""benchmarks/nowcasting_probabilistic.py at a tiny size: each network trains for one step and is saved, then the
scoring call writes every score, the figures and the tables."""

import json
from pathlib import Path

import pytest

from tests.benchmarks.scripts import run_benchmark

pytest.importorskip("pysteps", reason="the study needs pysteps: pip install -e '.[nowcast]'")
NETWORKS = ["ConvLSTM", "ConvGRU", "TrajGRU", "exceedance", "extrapolation + ConvLSTM", "learned ensemble"]


def test_tiny_study_trains_scores_and_draws(tmp_path: Path) -> None:
    weights, out, figures = tmp_path / "weights", tmp_path / "results.json", tmp_path / "figures"
    trained = run_benchmark(
        "nowcasting_probabilistic.py", "--train", *NETWORKS, "--steps", "1", "--weights", str(weights), timeout=600
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert all((weights / name / "model.safetensors").is_file() for name in NETWORKS)
    scored = run_benchmark(
        "nowcasting_probabilistic.py", "--evaluate", "--weights", str(weights), "--test", "4", "--members", "2",
        "--out", str(out), "--figures", str(figures), timeout=600,
    )  # fmt: skip
    assert scored.returncode == 0, scored.stderr[-3000:]
    results = json.loads(out.read_text())
    assert set(results["deterministic"]) == {
        "ConvLSTM", "ConvGRU", "TrajGRU", "extrapolation + ConvLSTM", "optical flow", "persistence",
    }  # fmt: skip
    assert set(results["probabilistic"]) == {
        "ConvLSTM exceedance", "STEPS", "ConvLSTM ensemble", "learned ensemble", "optical flow, thresholded",
    }  # fmt: skip
    for scores in results["deterministic"].values():
        assert all(0 <= scores[f"csi@{t}"] <= 1 for t in ("0.5", "2", "5", "10", "30"))
    assert results["deterministic"]["optical flow"]["csi@0.5"] > 0  # pysteps' flow finds the rain
    for scores in results["probabilistic"].values():
        assert all(0 <= scores[f"brier@{t}"] <= 1 for t in ("0.5", "2", "5", "10", "30"))
    for scores in results["ensemble"].values():
        assert len(scores["rank_histogram"]) == 3 and sum(scores["rank_histogram"]) == pytest.approx(1.0)
        assert scores["crps"] >= 0
    assert set(results["seconds_per_training_step"]) == set(NETWORKS)
    assert sorted(p.name for p in figures.iterdir()) == [
        "nowcasting_rank_histograms.png", "nowcasting_reliability_0.5.png", "nowcasting_reliability_2.png",
    ]  # fmt: skip
    assert "| method | CSI@0.5 |" in scored.stdout and "seconds per training step" in scored.stdout
