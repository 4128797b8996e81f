"""`convlstm export` (safetensors, ONNX, torch.export) and `convlstm predict` on netCDF / zarr input, on a fake run
directory holding an untrained tiny model: recipe.yaml + model/ (config.json, model.safetensors)."""

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
import yaml

from convlstm.cli.main import main
from convlstm.models import create_model, from_pretrained

CONTEXT, TARGET = 3, 2
TIMES = 60  # the chronological test block (10 %) holds 6 frames: one window of CONTEXT + TARGET


def weather(times: int = TIMES, *, start: str = "2024-01-01") -> xr.Dataset:
    """Hourly t2m and tp on an 8 x 8 lat / lon grid, tp stored (lat, lon, time) as files often have it."""
    rng = np.random.default_rng(0)
    return xr.Dataset(
        {
            "t2m": (("time", "lat", "lon"), rng.random((times, 8, 8), dtype=np.float32), {"units": "K"}),
            "tp": (("lat", "lon", "time"), rng.random((8, 8, times), dtype=np.float32), {"units": "mm"}),
        },
        coords={
            "time": pd.date_range(start, periods=times, freq="h"),
            "lat": np.linspace(40.0, 47.0, 8),
            "lon": np.linspace(-3.0, 4.0, 8),
        },
    )


def make_run(root: Path, model_name: str, model_args: dict[str, Any], data: dict[str, Any]) -> Path:
    """A run directory as `convlstm fit` leaves it, with an untrained model."""
    run = root / "run"
    recipe = {
        "name": "tiny",
        "data": {"context_frames": CONTEXT, "target_frames": TARGET, **data},
        "model": {"name": model_name, "args": model_args},
    }
    (run / "model").mkdir(parents=True)
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    torch.manual_seed(0)
    create_model(model_name, **model_args).save_pretrained(run / "model")
    return run


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    path = tmp_path / "weather.nc"
    weather().to_netcdf(path)
    return path


@pytest.fixture
def run(tmp_path: Path, archive: Path) -> Path:
    data = {"source": "xarray", "args": {"root": str(archive), "variables": ["t2m", "tp"]}}
    return make_run(tmp_path, "encoder_forecaster_tiny", {"in_channels": 2, "hidden_channels": [4, 4]}, data)


def frames_of(dataset: xr.Dataset, variables: list[str]) -> torch.Tensor:
    """(T, C, H, W) from a Dataset, read independently of the library."""
    return torch.from_numpy(np.stack([dataset[v].transpose("time", "lat", "lon").values for v in variables], axis=1))


def test_export_writes_every_format_with_the_data_frame_size(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from convlstm.inference import check_export, load_exported

    out = tmp_path / "exported"
    assert main(["export", "--run-dir", str(run), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    for name in ("model.safetensors", "config.json", "model.onnx", "model.pt2"):
        assert (out / name).is_file()
        assert f"wrote {out / name}" in printed
    assert not list(out.glob(".*.tmp"))
    model = from_pretrained(out)
    context = torch.rand(2, CONTEXT, 2, 8, 8)
    for name in ("model.onnx", "model.pt2"):
        loaded = load_exported(out / name)
        # The recipe's frame counts, and (C, H, W) read from its netCDF data (2 variables on 8 x 8).
        assert (loaded.context_frames, loaded.horizon, loaded.frame_shape) == (CONTEXT, TARGET, (2, 8, 8))
        assert check_export(loaded, model, context, horizon=TARGET) <= 1e-4


def test_export_writes_only_the_formats_asked_for(run: Path, tmp_path: Path) -> None:
    from convlstm.inference import load_exported

    out = tmp_path / "exported"
    shape = ["--frame-shape", "2", "16", "16"]
    assert main(["export", "--run-dir", str(run), "--output", str(out), "--format", "onnx", *shape]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx"]
    assert load_exported(out / "model.onnx").frame_shape == (2, 16, 16)


def test_export_skips_what_cannot_be_traced_unless_asked_for(
    tmp_path: Path, archive: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = {"source": "xarray", "args": {"root": str(archive), "variables": ["t2m"]}}
    flow = make_run(tmp_path, "optical_flow", {}, data)
    out = tmp_path / "exported"
    assert main(["export", "--run-dir", str(flow), "--output", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert main(["export", "--run-dir", str(flow), "--output", str(out), "--format", "torch"]) == 2
    assert "pysteps on numpy" in capsys.readouterr().err


def test_export_says_how_to_give_the_frame_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = {"source": "numpy", "args": {"root": str(tmp_path / "missing")}}
    broken = make_run(tmp_path, "next_frame_tiny", {}, data)
    assert main(["export", "--run-dir", str(broken), "--output", str(tmp_path / "x"), "--format", "onnx"]) == 2
    assert "--frame-shape C H W" in capsys.readouterr().err


def test_predict_netcdf_forecasts_from_the_last_frames(run: Path, archive: Path, tmp_path: Path) -> None:
    out = tmp_path / "forecast"
    args = ["--input", str(archive), "--output", str(out), "--variables", "t2m", "tp"]
    assert main(["predict", "--run-dir", str(run), *args]) == 0
    source = weather()
    with xr.open_dataset(out / "predictions.nc") as forecast:
        assert set(forecast.data_vars) == {"t2m", "tp"}
        assert forecast.t2m.dims == ("lead_time", "lat", "lon") and forecast.sizes["lead_time"] == TARGET
        np.testing.assert_array_equal(forecast.lat.values, source.lat.values)
        np.testing.assert_array_equal(forecast.lon.values, source.lon.values)
        last = source.time.values[-1]
        assert forecast.init_time.values == last
        hour = np.timedelta64(1, "h")
        np.testing.assert_array_equal(forecast.lead_time.values, [hour, 2 * hour])
        np.testing.assert_array_equal(forecast.valid_time.values, [last + hour, last + 2 * hour])
        assert forecast.tp.attrs["units"] == "mm"
        got = torch.from_numpy(np.stack([forecast[v].values for v in ("t2m", "tp")], axis=1))
    with torch.no_grad():
        want = from_pretrained(run / "model")(frames_of(source, ["t2m", "tp"])[-CONTEXT:][None], horizon=TARGET)[0]
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def test_predict_zarr_every_window_with_the_recipe_variables(run: Path, tmp_path: Path) -> None:
    store = tmp_path / "weather.zarr"
    source = weather(times=8)
    source.to_zarr(store, zarr_format=2, consolidated=True)
    out = tmp_path / "hindcasts"
    assert (
        main(["predict", "--run-dir", str(run), "--input", str(store), "--output", str(out), "--windows", "all"]) == 0
    )
    windows = 8 - (CONTEXT + TARGET) + 1
    with xr.open_dataset(out / "predictions.nc") as forecast:
        assert forecast.t2m.dims == ("init_time", "lead_time", "lat", "lon")
        assert forecast.sizes["init_time"] == windows
        np.testing.assert_array_equal(
            forecast.init_time.values, source.time.values[CONTEXT - 1 : CONTEXT - 1 + windows]
        )
        second = torch.from_numpy(np.stack([forecast[v].values[1] for v in ("t2m", "tp")], axis=1))
    with torch.no_grad():
        frames = frames_of(source, ["t2m", "tp"])[1 : 1 + CONTEXT]
        want = from_pretrained(run / "model")(frames[None], horizon=TARGET)[0]
    torch.testing.assert_close(second, want, atol=1e-6, rtol=0)


def test_predict_gridded_input_errors(
    run: Path, archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A gap two hours before the end: the last stretch without a gap is shorter than the context.
    gappy = weather(times=10).isel(time=[0, 1, 2, 3, 4, 5, 6, 8, 9])
    gappy.to_netcdf(tmp_path / "gappy.nc")
    args = ["predict", "--run-dir", str(run), "--output", str(tmp_path / "out")]
    assert main([*args, "--input", str(tmp_path / "gappy.nc")]) == 2
    assert "context_frames=3 consecutive frames" in capsys.readouterr().err
    assert main([*args, "--input", str(archive), "--variables", "rain"]) == 2
    assert "no variable 'rain'" in capsys.readouterr().err
    assert main([*args, "--input", str(archive), "--variables", "t2m", "tp", "--y-dim", "y"]) == 2
    assert "expected exactly ('time', 'y', 'lon')" in capsys.readouterr().err
    (tmp_path / "frames.txt").write_text("1 2 3")
    assert main([*args, "--input", str(tmp_path / "frames.txt")]) == 2
    assert "a netCDF file (.nc) or a zarr store (.zarr)" in capsys.readouterr().err


def test_predict_gridded_needs_variables_when_the_recipe_has_none(
    tmp_path: Path, archive: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = make_run(tmp_path, "persistence", {}, {"source": "moving_mnist"})
    out = tmp_path / "out"
    args = ["predict", "--run-dir", str(other), "--input", str(archive), "--output", str(out)]
    assert main(args) == 2
    assert "--variables" in capsys.readouterr().err
    assert main([*args, "--variables", "tp"]) == 0
    with xr.open_dataset(out / "predictions.nc") as forecast:  # persistence: the last frame, twice
        last = weather().tp.transpose("time", "lat", "lon").values[-1]
        np.testing.assert_array_equal(forecast.tp.values, np.stack([last, last]))


def test_predict_npy_still_works(run: Path, tmp_path: Path) -> None:
    frames = np.random.default_rng(0).random((CONTEXT, 2, 8, 8), dtype=np.float32)
    np.save(tmp_path / "frames.npy", frames)
    out = tmp_path / "pred"
    assert main(["predict", "--run-dir", str(run), "--input", str(tmp_path / "frames.npy"), "--output", str(out)]) == 0
    assert np.load(out / "predictions.npy").shape == (1, TARGET, 2, 8, 8)
    assert not (out / "predictions.gif").exists()  # two channels are not an image


def test_predict_keeps_the_crs_latitude_and_longitude_of_a_projected_grid(run: Path, tmp_path: Path) -> None:
    import cf_xarray  # noqa: F401  (registers the .cf accessor)
    import pyproj

    crs = pyproj.CRS.from_epsg(3035)
    x, y = 4_000_000.0 + 1000.0 * np.arange(8), 3_000_000.0 - 1000.0 * np.arange(8)
    lon, lat = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(*np.meshgrid(x, y))
    source = (
        weather()
        .rename(lat="y", lon="x")
        .assign_coords(
            x=("x", x, {"standard_name": "projection_x_coordinate", "units": "m"}),
            y=("y", y, {"standard_name": "projection_y_coordinate", "units": "m"}),
            lat=(("y", "x"), lat, {"standard_name": "latitude", "units": "degrees_north"}),
            lon=(("y", "x"), lon, {"standard_name": "longitude", "units": "degrees_east"}),
        )
    )
    source["crs"] = ((), np.int32(0), crs.to_cf())
    for name in ("t2m", "tp"):
        source[name].attrs["grid_mapping"] = "crs"
    source.to_netcdf(tmp_path / "projected.nc")
    out = tmp_path / "forecast"
    args = ["--input", str(tmp_path / "projected.nc"), "--output", str(out), "--y-dim", "y", "--x-dim", "x"]
    assert main(["predict", "--run-dir", str(run), *args]) == 0
    with xr.open_dataset(out / "predictions.nc") as forecast:
        assert forecast.cf.grid_mapping_names == {"lambert_azimuthal_equal_area": ["crs"]}
        assert pyproj.CRS.from_wkt(forecast.cf["grid_mapping"].attrs["crs_wkt"]) == crs
        np.testing.assert_array_equal(forecast["t2m"].cf["latitude"].values, lat)
        np.testing.assert_array_equal(forecast["tp"].cf["longitude"].values, lon)
