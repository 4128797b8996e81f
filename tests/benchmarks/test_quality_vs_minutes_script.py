"""benchmarks/quality_vs_minutes.py at a tiny size: trains for a few seconds, validating every 5 steps, then prints
MSE per frame against minutes and writes its JSON file and figure."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.benchmarks.scripts import ROOT, assert_refused_keeping_out, run_benchmark

TINY = [
    "-o", "data.train_sequences=64",
    "-o", "data.val_sequences=4",
    "-o", "data.test_sequences=4",
    "-o", "data.num_workers=0",
    "-o", "trainer.val_check_interval=5",
    "-o", "trainer.enable_progress_bar=false",
    "-o", "model.args={hidden_channels: [4]}",
]  # fmt: skip


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return run_benchmark("quality_vs_minutes.py", *args, timeout=300)


def test_tiny_run_prints_the_curve_and_writes_results(tmp_path: Path) -> None:
    out = tmp_path / "minutes"
    done = _run("--minutes", "0.15", "--out", str(out), *TINY)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "quality_vs_minutes.json").read_text())
    curve = results["curve"]
    assert len(curve) >= 2
    steps = [point["step"] for point in curve]
    # trainer.val_check_interval counts steps; the last point is where the minutes ran out, on a slow machine early
    assert steps[0] == 5 and all(step % 5 == 0 for step in steps[:-1]) and steps == sorted(set(steps)), steps
    minutes = [point["minutes"] for point in curve]
    assert minutes == sorted(minutes) and 0 < minutes[-1] < 0.15  # training time only, within the budget
    assert set(results["test"]) == {"openstl_convlstm_s", "persistence"}
    assert all(scores["mse_per_frame"] > 0 for scores in results["test"].values())
    assert (out / "quality_vs_minutes.png").stat().st_size > 0
    assert "| *OpenSTL ConvLSTM-S, 200 epochs (V100)* | *29.8* |" in done.stdout
    # "published" holds what a paper reports (OpenSTL's 29.80), not runs of unknown provenance
    assert results["published"] == {"OpenSTL ConvLSTM-S, 200 epochs (V100)": 29.8}
    assert "H200" not in done.stdout
    assert f"| {minutes[0]:.2f} | 5 | {curve[0]['mse_per_frame']:.1f} |" in done.stdout


@pytest.mark.parametrize(("args", "message"), [(["--minutes", "0"], "--minutes must be > 0"), ([], "is not empty")])
def test_bad_arguments_are_refused(tmp_path: Path, args: list[str], message: str) -> None:
    assert_refused_keeping_out("quality_vs_minutes.py", tmp_path / "minutes", args, message)


def test_the_gpu_session_script_runs_its_quality_part_and_brings_the_results_out(tmp_path: Path) -> None:
    # The script is what a GPU machine runs; here its quality part runs at the tiny size, to keep it working.
    out = tmp_path / "session"
    # The script calls python3, as the GPU image names it: here that must be the interpreter running the tests.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "OUT": str(out), "MINUTES": "0.1", "OMP_NUM_THREADS": "1", "PATH": path}
    script = ROOT / "benchmarks" / "gpu_session.sh"
    done = subprocess.run(
        ["bash", str(script), "quality", *TINY], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == [
        "mnist_log.txt",
        "nvidia_smi_quality.txt",
        "quality_vs_minutes.json",
        "quality_vs_minutes.png",
    ]
    assert json.loads((out / "quality_vs_minutes.json").read_text())["curve"]
    wrong = subprocess.run(["bash", str(script), "speeed"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert wrong.returncode == 2 and "expected speed or quality" in wrong.stderr
