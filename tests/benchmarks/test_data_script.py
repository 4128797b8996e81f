"""benchmarks/data.py at a tiny size: the Moving MNIST rate and the rows of a small zarr archive, printed and written
as JSON."""

import json
from pathlib import Path

import pytest

from tests.benchmarks.scripts import run_benchmark

pytest.importorskip("zarr", reason="the archive rows need zarr: pip install -e '.[data]'")


def test_tiny_run_times_the_generator_and_the_archive_rows(tmp_path: Path) -> None:
    out = tmp_path / "data.json"
    args = ["--sequences", "20", "--json", str(out), "--archive-gb", "0.012", "--windows", "8", "--passes", "1"]
    done = run_benchmark("data.py", *args, "--archive-dir", str(tmp_path), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Moving MNIST train sequences (20 x 64 x 64, 2 digits)" in done.stdout
    results = json.loads(out.read_text())
    assert results["moving_mnist_train_per_s"] > 0
    assert results["ratio_to_1000"] == pytest.approx(results["moving_mnist_train_per_s"] / 1000)
    archive = results["archive"]
    assert archive["windows"] == 8 and archive["passes"] == 1
    assert archive["frames"] >= 20  # at least one window of 10 + 10 frames
    rows = [key for key in archive if "XarraySequences" in key or "xarray" in key]
    assert len(rows) == 5 and all(archive[row] > 0 for row in rows)  # windows per second, each way of reading
