"""Test-wide settings."""

from pathlib import Path

import pytest
import torch

# The tests use tiny tensors, where a second intra-op thread costs more in synchronisation than it saves, and
# CI machines have 2 cores: one thread per test process keeps the suite fast and its timings steady.
torch.set_num_threads(1)

TESTS = Path(__file__).resolve().parent

#: Test files that run a script, a build, another process or a training run end to end (seconds each): `make test`
#: and CI run them, `make test-fast` skips them (marker e2e).
END_TO_END = {
    "benchmarks/test_cpu_levers_script.py",
    "benchmarks/test_cpu_precision_script.py",
    "benchmarks/test_data_script.py",
    "benchmarks/test_gpu_script.py",
    "benchmarks/test_learned_motion_script.py",
    "benchmarks/test_nowcast_speed_script.py",
    "benchmarks/test_memory_script.py",
    "benchmarks/test_nowcasting_probabilistic_script.py",
    "benchmarks/test_quality_script.py",
    "benchmarks/test_quality_vs_minutes_script.py",
    "benchmarks/test_radar_nowcast_script.py",
    "benchmarks/test_reanalysis_script.py",
    "benchmarks/test_real_video_script.py",
    "docs/test_site.py",
    "experiment/test_export_predict.py",
    "experiment/test_recipes_run.py",
    "inference/test_export.py",
    "robustness/test_crash_resume.py",
    "tasks/test_ddp.py",
    "test_packaging.py",
}


if missing := sorted(f for f in END_TO_END if not (TESTS / f).is_file()):
    raise RuntimeError(f"tests/conftest.py END_TO_END names files that do not exist: {missing}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.relative_to(TESTS).as_posix() in END_TO_END:
            item.add_marker(pytest.mark.e2e)
