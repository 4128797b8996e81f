"""benchmarks/radar_nowcast.py on two tiny FMI events written in FMI's format: every method runs, the tables print,
the JSON holds scores with sample sizes and intervals, and an untrained model scores as pysteps' extrapolation."""

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from convlstm.experiment.recipe import recipe_source
from convlstm.models import create_model
from tests.benchmarks.scripts import assert_refused_keeping_out, run_benchmark
from tests.data.formats.test_radar_archive import FMI, T0, event, fmi_codes, write_fmi

pytest.importorskip("pysteps")

SHAPE = (48, 48)
FRAMES = 17  # 4 context + 12 target frames: two start times per event


def write_events(root: Path) -> dict[str, Any]:
    """Two FMI events a day apart (a cell drifting east, a corner without coverage), the recipe's test events."""
    from datetime import timedelta

    starts = {"fmi_a": T0, "fmi_b": T0 + timedelta(days=1)}
    for start in starts.values():
        for k in range(FRAMES):
            write_fmi(root, start + k * timedelta(minutes=5), fmi_codes(k, SHAPE))
    return {name: event("fmi", start, FRAMES) for name, start in starts.items()}


def write_recipe(tmp_path: Path) -> Path:
    recipe = yaml.safe_load(recipe_source("radar_nowcast")[0])
    events = write_events(tmp_path / "data")
    recipe["data"]["args"].update(
        archives={"fmi": FMI},
        events=events,
        splits={"train": [], "val": [], "test": list(events)},
        cache_dir=None,
    )
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_every_method_is_scored_with_intervals_and_an_untrained_model_equals_extrapolation(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path)
    tiny = {"base_channels": 4, "depth": 1, "default_horizon": 12}
    create_model("extrapolation_nowcast", **tiny).save_pretrained(tmp_path / "model")
    create_model("extrapolation_nowcast_ensemble", **tiny).save_pretrained(tmp_path / "ensemble")
    out, gif = tmp_path / "out", tmp_path / "animation.gif"
    done = run_benchmark(
        "radar_nowcast.py",
        *("--root", str(tmp_path / "data"), "--recipe", str(recipe), "--out", str(out)),
        *("--model", str(tmp_path / "model"), "--ensemble-model", str(tmp_path / "ensemble")),
        *("--members", "3", "--cascade-levels", "3", "--bootstrap", "20", "--steps-every", "2"),
        *("--fss-km", "1", "4", "16", "--gif", str(gif), "--gif-size", "24"),
        *("--save-stats", str(tmp_path / "stats.pkl"), "--figures", str(tmp_path / "figures"), "--match-members"),
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "pooled: 4 start times" in done.stdout and "ours - extrap." in done.stdout
    assert "CRPS - STEPS" in done.stdout and "seconds per forecast" in done.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["events"]["fmi_a"]["scored_start_times"] == 2
    assert results["learned_members_matched"] and results["ours_match_tile"] == 0
    assert results["events"]["fmi_a"]["ensemble_start_times"] == 1
    pooled = results["deterministic"]["pooled"]
    assert pooled["start_times"] == 4
    assert set(pooled["methods"]) == {"persistence", "extrapolation", "sprog", "ours"}
    ours, extrapolation = pooled["methods"]["ours"], pooled["methods"]["extrapolation"]
    assert len(ours["csi"]["value"]) == 4 and len(ours["fss"]["value"]) == 2 and len(ours["fss"]["value"][0]) == 3
    low, high = ours["mae"]["interval"]
    assert low <= ours["mae"]["value"] <= high
    # Untrained, the learned nowcast is pysteps' extrapolation (float32 aside).
    assert ours["mae"]["value"] == pytest.approx(extrapolation["mae"]["value"], rel=1e-4)
    assert ours["csi"]["value"] == pytest.approx(extrapolation["csi"]["value"], abs=1e-3)
    assert ours["csi"]["minus_extrapolation"]["value"] == pytest.approx([0.0] * 4, abs=1e-3)
    ensembles = results["ensemble"]["pooled"]
    assert ensembles["start_times"] == 2 and {"steps", "ours_ens", "ours"} <= set(ensembles["methods"])
    assert ensembles["methods"]["ours"]["crps"]["value"] > 0  # a single forecast's CRPS: its MAE
    for method in ("steps", "ours_ens"):  # rank histograms of 3 members, reliability at 1 and 5 mm/h in 10 bins
        spread = ensembles["methods"][method]
        assert len(spread["rank_histogram"]["value"]) == 4
        assert sum(spread["rank_histogram"]["value"]) == pytest.approx(1.0)
        assert len(spread["reliability_frequency"]["value"]) == 2
        assert len(spread["reliability_pixels"]["value"][0]) == 10
    assert "ours" not in ensembles["methods"] or "rank_histogram" not in ensembles["methods"]["ours"]
    assert "rank histogram" in done.stdout and "reliability at 1 mm/h" in done.stdout
    for figure in ("rank_histograms", "reliability_1", "reliability_5"):
        assert (tmp_path / "figures" / f"real_radar_{figure}.png").stat().st_size > 1000
    assert len(results["by_lead_time"]["pooled"]["ours"]["mae"]) == 12
    assert all(results["seconds_per_forecast"][m] > 0 for m in ("persistence", "steps", "ours_ens"))
    assert gif.is_file() and gif.stat().st_size < 300_000

    # A second run scores only the first start time of each event (the ensembles' one), takes STEPS' sums from the
    # first run and computes the rest again.
    again = run_benchmark(
        "radar_nowcast.py",
        *("--root", str(tmp_path / "data"), "--recipe", str(recipe), "--out", str(tmp_path / "again")),
        *("--model", str(tmp_path / "model"), "--methods", "extrapolation", "ours", "steps", "--starts", "0"),
        *("--members", "3", "--cascade-levels", "3", "--bootstrap", "20", "--steps-every", "2"),
        *("--fss-km", "1", "4", "16", "--reuse-stats", str(tmp_path / "stats.pkl"), "--reuse-only", "steps"),
        timeout=600,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    second = json.loads((tmp_path / "again" / "results.json").read_text())
    assert (
        second["deterministic"]["pooled"]["start_times"] == 2 and second["events"]["fmi_a"]["planned_start_times"] == 1
    )
    steps_crps = ensembles["methods"]["steps"]["crps"]["value"]
    again_ensembles = second["ensemble"]["pooled"]["methods"]
    assert again_ensembles["steps"]["crps"]["value"] == pytest.approx(steps_crps, rel=1e-12)
    assert again_ensembles["ours"]["crps"] == ensembles["methods"]["ours"]["crps"]

    # Every start time an ensemble start: the second ones' records, kept without a CRPS, are scored again, and the
    # log says which records came from the earlier run.
    third = run_benchmark(
        "radar_nowcast.py",
        *("--root", str(tmp_path / "data"), "--recipe", str(recipe), "--out", str(tmp_path / "third")),
        *("--model", str(tmp_path / "model"), "--methods", "extrapolation", "--steps-every", "1"),
        *("--fss-km", "1", "4", "16", "--bootstrap", "0", "--reuse-stats", str(tmp_path / "stats.pkl")),
        timeout=600,
    )
    assert third.returncode == 0, third.stderr[-3000:]
    first_start, second_start = (line for line in third.stdout.splitlines() if "fmi_a start" in line)
    assert "(earlier run)" in first_start and "(earlier run)" not in second_start
    assert json.loads((tmp_path / "third" / "results.json").read_text())["ensemble"]["pooled"]["start_times"] == 4


def test_a_used_out_folder_is_refused(tmp_path: Path) -> None:
    assert_refused_keeping_out(
        "radar_nowcast.py", tmp_path / "out", ["--root", str(tmp_path), "--model", str(tmp_path)], "is not empty"
    )
