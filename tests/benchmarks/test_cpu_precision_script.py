"""benchmarks/cpu_precision.py: one training step per quality.py model, float32 against bfloat16 autocast."""

import json
import sys
from pathlib import Path

from tests.benchmarks.scripts import BENCHMARKS, run_benchmark


def test_times_both_precisions_for_each_run_of_a_study(tmp_path: Path) -> None:
    results = tmp_path / "precision.json"
    done = run_benchmark(
        "cpu_precision.py", "--only", "segmentation", "--repeats", "1", "--json", str(results), timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    saved = json.loads(results.read_text())
    rows = saved["runs"]
    assert [(r["study"], r["run"]) for r in rows] == [
        ("segmentation", "ConvLSTM U-Net"),
        ("segmentation", "U-Net without recurrence"),
    ]
    for row in rows:
        assert row["float32_s"] > 0 and row["bfloat16_s"] > 0
        assert abs(row["speedup"] - row["float32_s"] / row["bfloat16_s"]) < 1e-9
        assert f"{row['speedup']:.2f}x" in done.stdout
    assert f"bfloat16 in hardware (AMX): {saved['hardware_bf16']}" in done.stdout


def test_bad_repeats_are_refused() -> None:
    done = run_benchmark("cpu_precision.py", "--repeats", "0", timeout=120)
    assert done.returncode == 2 and "--repeats must be >= 1" in done.stderr


def test_only_runs_that_train_a_network_of_their_own_are_timed() -> None:
    sys.path.insert(0, str(BENCHMARKS))
    from cpu_precision import runs_to_time
    from quality import STUDIES

    timed = [(study.name, run.label) for study, run in runs_to_time(STUDIES)]
    assert ("prednet", "PredNet") in timed and ("bouncing_balls", "ConvLSTM encoder-forecaster") in timed
    # Not PredNet's fine-tuning (the same network again) nor the anomaly study (it scores the bouncing-balls model).
    assert not any("fine-tuned" in label for _, label in timed) and "anomaly" not in {name for name, _ in timed}
    assert len(timed) == sum(len(s.runs) for s in STUDIES) - 2
