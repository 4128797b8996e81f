"""benchmarks/cpu_precision.py: float32 against bfloat16 autocast on the CPU, speed and quality, in one run."""

import json
import sys
from pathlib import Path

from tests.benchmarks.scripts import BENCHMARKS, run_benchmark


def test_prints_the_machine_the_speed_table_and_the_quality_check(tmp_path: Path) -> None:
    results = tmp_path / "precision.json"
    done = run_benchmark(
        "cpu_precision.py",
        *("--shapes", "small", "--batch", "1", "--repeats", "1"),
        *("--quality-steps", "2", "--seeds", "0", "1", "--held-out", "4", "--json", str(results)),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    saved = json.loads(results.read_text())
    found = saved["machine"]
    assert set(found["features"]) == {"amx_bf16", "avx512_bf16"}
    assert f"trainer.precision=auto picks {found['auto']}: {found['auto_reason']}" in done.stdout
    assert f"torch {found['torch']}" in done.stdout
    (row,) = saved["speed"]
    assert row["shape"] == "small" and row["batch"] == 1
    for kind in ("train", "inference"):
        rates = row[kind]
        assert rates["float32_per_s"] > 0 and rates["bfloat16_per_s"] > 0
        assert abs(rates["ratio"] - rates["bfloat16_per_s"] / rates["float32_per_s"]) < 1e-9
        assert f"{rates['ratio']:.2f}x" in done.stdout
    quality = saved["quality"]
    for precision in ("32-true", "bf16-mixed"):
        assert len(quality[precision]["losses"]) == 2 and quality[precision]["spread"] is not None
        assert f"{quality[precision]['mean']:.5f}" in done.stdout
    assert quality["within_noise"] in (True, False) and "2 standard errors" in done.stdout


def test_times_both_precisions_for_each_run_of_a_study(tmp_path: Path) -> None:
    results = tmp_path / "precision.json"
    done = run_benchmark(
        "cpu_precision.py",
        *("--shapes", "--quality-steps", "0", "--studies", "segmentation", "--repeats", "1", "--json", str(results)),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    saved = json.loads(results.read_text())
    assert saved["speed"] == [] and "quality" not in saved
    rows = saved["runs"]
    assert [(r["study"], r["run"]) for r in rows] == [
        ("segmentation", "ConvLSTM U-Net"),
        ("segmentation", "U-Net without recurrence"),
    ]
    for row in rows:
        assert row["float32_s"] > 0 and row["bfloat16_s"] > 0
        assert abs(row["speedup"] - row["float32_s"] / row["bfloat16_s"]) < 1e-9
        assert f"{row['speedup']:.2f}x" in done.stdout


def test_bad_arguments_are_refused() -> None:
    for args, message in [
        (("--repeats", "0"), "--repeats must be >= 1"),
        (("--held-out", "0"), "--held-out must be >= 1"),
        (("--quality-steps", "-1"), "--quality-steps must be >= 0"),
    ]:
        done = run_benchmark("cpu_precision.py", *args, timeout=120)
        assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]


def test_only_runs_that_train_a_network_of_their_own_are_timed() -> None:
    sys.path.insert(0, str(BENCHMARKS))
    from cpu_precision import runs_to_time
    from quality import STUDIES

    timed = [(study.name, run.label) for study, run in runs_to_time(STUDIES)]
    assert ("prednet", "PredNet") in timed and ("bouncing_balls", "ConvLSTM encoder-forecaster") in timed
    # Not PredNet's fine-tuning (the same network again) nor the anomaly study (it scores the bouncing-balls model).
    assert not any("fine-tuned" in label for _, label in timed) and "anomaly" not in {name for name, _ in timed}
    assert len(timed) == sum(len(s.runs) for s in STUDIES) - 2
