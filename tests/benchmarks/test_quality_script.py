"""benchmarks/quality.py end to end at a tiny scale: it trains, evaluates and prints one table per study."""

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.benchmarks.scripts import BENCHMARKS, assert_refused_keeping_out, run_benchmark


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return run_benchmark("quality.py", *args, timeout=600)


def test_tiny_run_prints_tables_and_writes_results(tmp_path: Path) -> None:
    out = tmp_path / "quality"
    # --only anomaly also trains the bouncing-balls model that the anomaly study scores, in the same process; PredNet's
    # second run starts from its first, so the two processes must not start it before the first has saved its model.
    done = _run(
        "--out", str(out), "--only", "anomaly", "prednet", "--scale", "0.005", "--test-sequences", "4", "--jobs", "2",
        "--precision", "bf16-mixed",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "quality.json").read_text())
    assert list(results["studies"]) == ["bouncing_balls", "anomaly", "prednet"] and results["jobs"] == 2
    assert results["precision"] == "bf16-mixed"
    for run in ("bouncing_balls/run_0", "prednet/run_0", "prednet/run_1"):  # every run trained in that precision
        assert "precision: bf16-mixed" in (out / run / "recipe.yaml").read_text()
    anomaly = results["studies"]["anomaly"]
    scored = "ConvLSTM encoder-forecaster of the bouncing-balls study"
    assert set(anomaly) == {scored, "persistence"}
    for scores in anomaly.values():
        assert 0.0 <= scores["auroc"] <= 1.0
    assert anomaly[scored]["minutes"] > 0 and anomaly[scored]["precision"] == "bf16-mixed"
    # The anomaly study scores the bouncing-balls model itself, without training one of its own.
    weights = "run_0/model/model.safetensors"
    assert (out / "anomaly" / weights).read_bytes() == (out / "bouncing_balls" / weights).read_bytes()
    assert not (out / "anomaly/run_0/checkpoints").exists()
    prednet = results["studies"]["prednet"]
    fine_tuned = "PredNet, fine-tuned to extrapolate 5 frames"
    assert set(prednet) == {"PredNet", "copy_last_frame", fine_tuned, f"copy_last_frame (as {fine_tuned})"}
    # The fine-tuned run scores 5 extrapolated frames; the first run one-step predictions of 9.
    assert len(prednet[fine_tuned]["mse_per_pixel_by_lead_time"]) == 5
    assert len(prednet["PredNet"]["mse_per_pixel_by_lead_time"]) == 9
    assert f"| {scored} | " in done.stdout and "| *Lotter et al. (Caltech): PredNet* |" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--scale", "0"], "--scale must be positive"), (["--jobs", "0"], "--jobs must be >= 1"), ([], "is not empty")],
)
def test_bad_arguments_are_refused(tmp_path: Path, args: list[str], message: str) -> None:
    assert_refused_keeping_out("quality.py", tmp_path / "quality", args, message)


def _quality() -> ModuleType:
    sys.path.insert(0, str(BENCHMARKS))
    import quality

    return quality


def test_the_largest_step_budgets_start_first_and_chains_stay_whole() -> None:
    quality = _quality()
    work = quality.longest_first(quality.STUDIES)
    budgets = [quality.chain_steps(chain) for chain in work]
    assert budgets == sorted(budgets, reverse=True) and budgets[0] == 800 and budgets[-1] == 300
    assert work[0] == (("nowcasting", 1),)  # the advection run
    # Every run is scheduled exactly once; PredNet's fine-tuning stays behind the run it starts from, and the anomaly
    # study's scoring behind the bouncing-balls run whose model it scores (which alone counts steps in that chain).
    assert sorted(ref for chain in work for ref in chain) == sorted(
        (study.name, i) for study in quality.STUDIES for i in range(len(study.runs))
    )
    assert (("prednet", 0), ("prednet", 1)) in work
    assert (("bouncing_balls", 0), ("anomaly", 0)) in work


def test_a_study_that_scores_another_ones_model_brings_it_along() -> None:
    quality = _quality()
    assert [s.name for s in quality.with_prerequisites(["anomaly"])] == ["bouncing_balls", "anomaly"]
    assert [s.name for s in quality.with_prerequisites(["prednet", "segmentation"])] == ["segmentation", "prednet"]


@pytest.mark.parametrize("hardware", [False, True])
def test_auto_precision_is_bfloat16_only_with_hardware_bf16_and_where_it_pays(monkeypatch, hardware: bool) -> None:
    quality = _quality()
    monkeypatch.setattr(quality, "cpu_computes_bf16", lambda: hardware)
    picked = {
        (study.name, run.label): quality.training_precision(run, "auto")
        for study in quality.STUDIES
        for run in study.runs
    }
    assert picked[("moving_mnist", "FC-LSTM")] == picked[("nowcasting", "FC-LSTM")] == "32-true"
    assert picked[("moving_mnist", "ConvLSTM encoder-forecaster")] == ("bf16-mixed" if hardware else "32-true")
    assert {p for (_, label), p in picked.items() if label != "FC-LSTM"} == {"bf16-mixed" if hardware else "32-true"}
    fc_lstm = quality.study_named("nowcasting").runs[3]
    assert quality.training_precision(fc_lstm, "bf16-mixed") == "bf16-mixed"  # an explicit choice is kept
