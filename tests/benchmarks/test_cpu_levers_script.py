"""benchmarks/cpu_levers.py: channels-last, compiled gates and threads against workers, side by side in one run."""

import json
from pathlib import Path

from tests.benchmarks.scripts import run_benchmark


def test_prints_the_table_and_saves_every_lever(tmp_path: Path) -> None:
    results = tmp_path / "levers.json"
    done = run_benchmark(
        "cpu_levers.py", "--quick", "--steps", "2", "--warmup", "1", "--json", str(results), timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    saved = json.loads(results.read_text())
    rows = {row["name"]: row for row in saved["levers"]}
    cores = saved["cores"]
    pipelines = {f"threads {cores}, workers 0", f"threads {cores}, workers 1"}
    if cores > 1:
        pipelines.add(f"threads {cores - 1}, workers 1")
    assert set(rows) == {"baseline", "channels_last", "compiled gates"} | pipelines
    assert "lever" in done.stdout and "vs baseline" in done.stdout
    for name, row in rows.items():
        if row["per_s"] is None:
            assert row["failed"], name
            assert f"{name}  failed: {row['failed']}" in done.stdout
        else:
            assert row["per_s"] > 0 and row["failed"] is None, name
            assert f"{row['per_s']:.2f}" in done.stdout
    assert rows["baseline"]["per_s"] is not None and rows["baseline"]["vs_baseline"] == 1.0
    compiled = rows["compiled gates"]
    if compiled["per_s"] is not None:
        assert compiled["compile_s"] is not None
        assert (
            abs(compiled["compile_s"] - (compiled["extra"]["first_step_s"] - compiled["extra"]["median_step_s"])) < 1e-9
        )


def test_bad_arguments_are_refused() -> None:
    for args, message in [(("--steps", "0"), "--steps must be >= 1"), (("--warmup", "0"), "--warmup must be >= 1")]:
        done = run_benchmark("cpu_levers.py", *args, timeout=120)
        assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]
