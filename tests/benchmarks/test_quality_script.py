"""benchmarks/quality.py end to end at a tiny scale: it trains, evaluates and prints one table per study."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.benchmarks.scripts import BENCHMARKS, assert_refused_keeping_out, run_benchmark


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return run_benchmark("quality.py", *args, timeout=600)


def test_tiny_run_prints_tables_and_writes_results(tmp_path: Path) -> None:
    out = tmp_path / "quality"
    # The anomaly study's overrides hold YAML mappings ({...}); prednet's second run starts from its first, so the
    # two processes must not start it before the first has saved its model.
    done = _run(
        "--out", str(out), "--only", "anomaly", "prednet", "--scale", "0.005", "--test-sequences", "4", "--jobs", "2"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "quality.json").read_text())
    assert list(results["studies"]) == ["anomaly", "prednet"] and results["jobs"] == 2
    anomaly = results["studies"]["anomaly"]
    assert set(anomaly) == {"ConvLSTM encoder-forecaster", "persistence"}
    for scores in anomaly.values():
        assert 0.0 <= scores["auroc"] <= 1.0
    assert anomaly["ConvLSTM encoder-forecaster"]["minutes"] > 0
    prednet = results["studies"]["prednet"]
    fine_tuned = "PredNet, fine-tuned to extrapolate 5 frames"
    assert set(prednet) == {"PredNet", "copy_last_frame", fine_tuned, f"copy_last_frame (as {fine_tuned})"}
    # The fine-tuned run scores 5 extrapolated frames; the first run one-step predictions of 9.
    assert len(prednet[fine_tuned]["mse_per_pixel_by_lead_time"]) == 5
    assert len(prednet["PredNet"]["mse_per_pixel_by_lead_time"]) == 9
    assert "| ConvLSTM encoder-forecaster | " in done.stdout and "| *Lotter et al. (Caltech): PredNet* |" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--scale", "0"], "--scale must be positive"), (["--jobs", "0"], "--jobs must be >= 1"), ([], "is not empty")],
)
def test_bad_arguments_are_refused(tmp_path: Path, args: list[str], message: str) -> None:
    assert_refused_keeping_out("quality.py", tmp_path / "quality", args, message)


def test_the_largest_step_budgets_start_first_and_chains_stay_whole() -> None:
    sys.path.insert(0, str(BENCHMARKS))
    from quality import STUDIES, chain_steps, longest_first

    work = longest_first(STUDIES)
    budgets = [chain_steps(study, chain) for study, chain in work]
    assert budgets == sorted(budgets, reverse=True) and budgets[0] == 800 and budgets[-1] == 300
    assert work[0][0].name == "nowcasting" and work[0][1] == (1,)  # the advection run
    # Every run is scheduled exactly once, and PredNet's fine-tuning stays behind the run it starts from.
    assert sorted((study.name, i) for study, chain in work for i in chain) == sorted(
        (study.name, i) for study in STUDIES for i in range(len(study.runs))
    )
    assert ("prednet", (0, 1)) in [(study.name, chain) for study, chain in work]
