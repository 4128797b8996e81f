"""benchmarks/reanalysis.py on a month of hourly 2 m temperature written by the test, whose baselines' errors are known
in advance: a daily cycle plus a warming of 0.1 K a day, so "same hour yesterday" misses by 0.1 K everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

from convlstm.experiment.recipe import recipe_source
from convlstm.models import create_model
from tests.benchmarks.scripts import assert_refused_keeping_out, run_benchmark

TIMES = pd.date_range("2019-03-01", "2019-03-31T23:00", freq="h")
LAT, LON = np.linspace(58.0, 57.0, 5), np.linspace(-3.0, -1.5, 7)


def temperature(hours: np.ndarray) -> np.ndarray:
    """K at hours since 1 March 00 UTC: 280 + 3 sin(daily) + 0.1 K a day, the same everywhere."""
    return 280 + 3 * np.sin(2 * np.pi * hours / 24) + 0.1 * hours / 24


def write_month(tmp_path: Path) -> Path:
    hours = np.arange(len(TIMES), dtype=np.float64)
    t2m = temperature(hours)[:, None, None] * np.ones((1, len(LAT), len(LON)))
    path = tmp_path / "era5.nc"
    dataset = xr.Dataset(
        {"t2m": (("time", "latitude", "longitude"), t2m, {"units": "K"})},
        coords={"time": TIMES, "latitude": LAT, "longitude": LON},
    )
    dataset.to_netcdf(path)
    return path


def write_recipe(tmp_path: Path) -> Path:
    """The packaged recipe with 12 hours of context and a plain ConvLSTM (the windows' arithmetic below counts on
    12), small."""
    recipe = yaml.safe_load(recipe_source("era5_uk_t2m")[0])
    recipe["data"]["context_frames"] = 12
    recipe["model"] = {"name": "shi2015_radar_convlstm", "args": recipe["model"]["args"]["backbone_args"]}
    recipe["model"]["args"]["hidden_channels"] = [4, 4]
    recipe["data"]["batch_size"] = 4
    recipe["trainer"].update(limit_val_batches=1, enable_progress_bar=False)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_the_baselines_score_as_computed_by_hand_and_ours_is_scored_beside_them(tmp_path: Path) -> None:
    root, recipe = write_month(tmp_path), write_recipe(tmp_path)
    model = create_model(
        "shi2015_radar_convlstm", in_channels=3, hidden_channels=[4, 4], default_horizon=24, head="advection",
        output_activation="none",
    )  # fmt: skip
    model.save_pretrained(tmp_path / "model")
    out, image = tmp_path / "out", tmp_path / "map.png"
    done = run_benchmark(
        "reanalysis.py",
        *("--recipe", str(recipe), "--root", str(root), "--model", str(tmp_path / "model")),
        *("--out", str(out), "--every", "10", "--map", str(image)),
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "RMSE by lead time, 14 start times" in done.stdout and "ours has the lowest RMSE at" in done.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["start_times"] == 14 and results["lead_times_h"] == list(np.arange(1.0, 25.0))
    scores = results["latitude_weighted"]
    # The test split's windows start at 25 March 00 UTC, every 10th: the forecasts start 11 hours later.
    starts = (np.datetime64("2019-03-25T11:00") - np.datetime64("2019-03-01T00:00")) // np.timedelta64(1, "h")
    init = starts + 10 * np.arange(14)[:, None]
    valid = init + np.arange(1, 25)[None]  # (start, lead) in hours since 1 March
    persistence = temperature(init) - temperature(valid)
    training_mean_day = 10.0  # days 0..20 at every hour: the climatology holds 280 + 3 sin + 0.1 (10 + hour / 24)
    climatology = 0.1 * (training_mean_day - valid // 24)
    for name, errors in (("persistence", persistence), ("climatology", climatology), ("yesterday", -0.1 + 0 * valid)):
        np.testing.assert_allclose(scores[name]["t2m"]["rmse"], np.sqrt((errors**2).mean(axis=0)), atol=2e-4)
        np.testing.assert_allclose(scores[name]["t2m"]["bias"], errors.mean(axis=0), atol=2e-4)
    assert len(scores["ours"]["t2m"]["acc"]) == 24 and np.isfinite(scores["ours"]["t2m"]["rmse"]).all()
    # The same everywhere: weighting by latitude changes nothing.
    np.testing.assert_allclose(results["unweighted"]["yesterday"]["t2m"]["rmse"], 0.1, atol=2e-4)
    assert 0 < image.stat().st_size < 300_000


def test_minutes_trains_the_recipe_first(tmp_path: Path) -> None:
    root, recipe = write_month(tmp_path), write_recipe(tmp_path)
    out = tmp_path / "out"
    done = run_benchmark(
        "reanalysis.py",
        *("--recipe", str(recipe), "--root", str(root), "--minutes", "0.05", "--out", str(out), "--every", "40"),
        *("--split", "train"),
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "run" / "model" / "config.json").is_file()
    results = json.loads((out / "results.json").read_text())
    assert results["training"]["stopped_by"] == "time limit" and results["split"] == "train"
    # Training windows 0, 40, ..., 440: the first forecasts 1 March, which has no day before it in the archive.
    assert results["start_times"] == 11 and "1 windows left out" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--every", "1"], "give either --model"),
        (["--model", "m", "--minutes", "1"], "give either --model"),
        (["--minutes", "0"], "--minutes must be > 0"),
    ],
)
def test_bad_arguments_leave_out_as_it_was(tmp_path: Path, args: list[str], message: str) -> None:
    assert_refused_keeping_out("reanalysis.py", tmp_path / "out", args, message)


def test_a_used_out_folder_is_refused(tmp_path: Path) -> None:
    assert_refused_keeping_out("reanalysis.py", tmp_path / "out", ["--model", "m"], "is not empty")
