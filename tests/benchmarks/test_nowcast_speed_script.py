"""benchmarks/nowcast_speed.py on a tiny domain: every method runs in its own process and forecasts the shape asked
for, the table and the ratios print, the JSON holds the measurements, and a method that runs out of its memory
limit is reported as failed without stopping the others."""

import json
from pathlib import Path

import pytest

from tests.benchmarks.scripts import run_benchmark

pytest.importorskip("pysteps")

TINY = ("--sizes", "32", "--members", "2", "--leads", "2", "--threads", "1", "--cascade-levels", "3")


def test_every_method_is_timed_side_by_side(tmp_path: Path) -> None:
    results = tmp_path / "speed.json"
    done = run_benchmark("nowcast_speed.py", *TINY, "--repeats", "2", "--json", str(results), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    saved = json.loads(results.read_text())
    assert saved["settings"]["members"] == 2 and saved["settings"]["threads"] == 1
    assert saved["machine"]["pysteps"] and saved["machine"]["torch"]
    block = saved["sizes"]["32"]
    shapes = {"ours_ens": [2, 2, 32, 32], "steps": [2, 2, 32, 32], "ours": [2, 32, 32], "extrapolation": [2, 32, 32]}
    for method, shape in shapes.items():
        measured = block["methods"][method]
        assert measured["shape"] == shape and measured["finite_fraction"] == 1.0, (method, measured)
        assert len(measured["times_s"]) == 2 and min(measured["times_s"]) <= measured["median_s"]
        assert measured["first_s"] > 0 and measured["peak_rss_mib"] >= measured["before_mib"] > 0
        assert measured["torch_threads"] == 1
        assert f"{method}: " in done.stdout
    for ours, theirs in (("ours_ens", "steps"), ("ours", "extrapolation")):
        pair = f"{ours}/{theirs}"
        ratio = block["ratios"][pair]["time"]
        assert ratio == pytest.approx(block["methods"][ours]["median_s"] / block["methods"][theirs]["median_s"])
        assert f"{pair}: time {ratio:.2f}x" in done.stdout
    assert "32 x 32 pixels, 2 members, 2 lead times, 1 threads" in done.stdout


def test_precision_is_passed_on_and_a_method_past_its_memory_limit_fails_alone(tmp_path: Path) -> None:
    results = tmp_path / "speed.json"
    args = (*TINY, "--members", "3", "--repeats", "0", "--methods", "ours_ens", "--precision", "float32")
    done = run_benchmark("nowcast_speed.py", *args, "--json", str(results), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    saved = json.loads(results.read_text())
    measured = saved["sizes"]["32"]["methods"]["ours_ens"]
    assert measured["shape"] == [3, 2, 32, 32] and measured["times_s"] == []
    assert saved["settings"]["precision"] == "float32"
    starved = run_benchmark(
        "nowcast_speed.py", *TINY, "--methods", "ours_ens", "extrapolation", "--memory-limit-gib", "0.2",
        "--json", str(results), timeout=300,
    )  # fmt: skip
    assert starved.returncode == 1 and "failed: ours_ens at 32" in starved.stderr, starved.stderr[-3000:]
    methods = json.loads(results.read_text())["sizes"]["32"]["methods"]
    assert methods["ours_ens"]["error"] and "failed: " in starved.stdout
    assert "extrapolation" in methods  # the next method ran all the same


def test_bad_arguments_are_refused() -> None:
    for args, message in [
        (("--members", "1"), "--members >= 2"),
        (("--sizes", "8"), "--sizes must be >= 16"),
    ]:
        done = run_benchmark("nowcast_speed.py", *args, timeout=120)
        assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]
