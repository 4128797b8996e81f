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
    # bfloat16 is measured where this CPU computes it in hardware, the CPUs where "auto" picks it; elsewhere
    # test_emulated_bfloat16_is_not_measured_unless_asked_for covers the run.
    hardware = saved["hardware_bf16"]
    assert saved["bf16_measured"] is hardware and (found["auto"] == "bf16-mixed") is hardware
    (row,) = saved["speed"]
    assert row["shape"] == "small" and row["batch"] == 1
    for kind in ("train", "inference"):
        rates = row[kind]
        assert rates["float32_per_s"] > 0
        if hardware:
            assert rates["bfloat16_per_s"] > 0
            assert abs(rates["ratio"] - rates["bfloat16_per_s"] / rates["float32_per_s"]) < 1e-9
            assert f"{rates['ratio']:.2f}x" in done.stdout
    quality = saved["quality"]
    for precision in ("32-true", "bf16-mixed") if hardware else ("32-true",):
        assert len(quality[precision]["losses"]) == 2 and quality[precision]["spread"] is not None
        assert f"{quality[precision]['mean']:.5f}" in done.stdout
    if hardware:
        assert quality["within_noise"] in (True, False) and "2 standard errors" in done.stdout


def test_emulated_bfloat16_is_not_measured_unless_asked_for(tmp_path: Path) -> None:
    # Capping oneDNN below the bfloat16 instructions makes any CPU one that would emulate bfloat16.
    results = tmp_path / "precision.json"
    done = run_benchmark(
        "cpu_precision.py",
        *("--shapes", "small", "--batch", "1", "--repeats", "1"),
        *("--quality-steps", "1", "--seeds", "0", "--held-out", "2", "--json", str(results)),
        timeout=300,
        env={"ONEDNN_MAX_CPU_ISA": "AVX2"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    saved = json.loads(results.read_text())
    found = saved["machine"]
    assert saved["hardware_bf16"] is False and saved["bf16_measured"] is False and found["auto"] == "32-true"
    assert "environment: ONEDNN_MAX_CPU_ISA=AVX2" in done.stdout
    assert f"bfloat16 not measured: {found['auto_reason']} (--bf16 always measures it emulated)" in done.stdout
    (row,) = saved["speed"]
    for kind in ("train", "inference"):
        assert row[kind]["float32_per_s"] > 0 and row[kind]["bfloat16_per_s"] is None and row[kind]["ratio"] is None
    quality = saved["quality"]
    assert "bf16-mixed" not in quality and len(quality["32-true"]["losses"]) == 1
    assert quality["gap"] is None and quality["within_noise"] is None
    assert f"{quality['32-true']['mean']:.5f}" in done.stdout and "bf16-mixed not measured" in done.stdout


def test_times_both_precisions_for_each_run_of_a_study(tmp_path: Path) -> None:
    results = tmp_path / "precision.json"
    done = run_benchmark(
        "cpu_precision.py",
        *("--shapes", "--quality-steps", "0", "--studies", "segmentation", "--repeats", "1"),
        *("--bf16", "always", "--json", str(results)),  # emulated too: two small models take seconds
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
        (("--bf16", "never"), "argument --bf16: invalid choice"),
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
