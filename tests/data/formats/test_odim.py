"""ODIM HDF5 composites in (checked against pysteps' importer) and CF netCDF forecasts out (read by xarray and
pysteps), on small files the tests write."""

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pyproj
import pytest
import torch
import xarray as xr
from pysteps.io.importers import import_odim_hdf5
from pysteps.io.nowcast_importers import import_netcdf_pysteps
from pysteps.utils.conversion import to_rainrate

from convlstm.data import sources
from convlstm.data.formats.forecast_netcdf import write_forecast_netcdf
from convlstm.data.formats.odim import ODIMSequences, read_odim_field, read_odim_grid
from convlstm.units import rain_rate_to_pixel

PROJDEF = "+proj=stere +lat_0=90 +lon_0=10 +lat_ts=60 +ellps=WGS84 +units=m"
X1, Y2, PIXEL = 100_000.0, -3_000_000.0, 1000.0
HEIGHT, WIDTH = 12, 16
GAIN, OFFSET, NODATA, UNDETECT = 0.5, -32.0, 255, 0


def _raw(t: int) -> np.ndarray:
    """uint8 reflectivity codes: an echo drifting one pixel east per frame, undetect around it, a nodata corner."""
    rng = np.random.default_rng(t)
    raw = np.full((HEIGHT, WIDTH), UNDETECT, dtype=np.uint8)
    raw[3:9, 2 + t : 8 + t] = rng.integers(80, 200, size=(6, 6))  # 8 to 68 dBZ
    raw[:2, -3:] = NODATA
    return raw


def write_odim(
    path: Path, t: int, *, minute: int, quantity: str = "DBZH", kept_at_root: tuple[str, ...] | None = None
) -> None:
    """One composite; ``kept_at_root`` names the only grid attributes left in the root ``where``, the others go to
    ``dataset1/where`` as some products have them (None: all at the root)."""
    proj = pyproj.Proj(PROJDEF)
    x2, y1 = X1 + WIDTH * PIXEL, Y2 - HEIGHT * PIXEL
    corners = {"LL": (X1, y1), "UL": (X1, Y2), "UR": (x2, Y2), "LR": (x2, y1)}
    grid: dict[str, Any] = {"projdef": np.bytes_(PROJDEF), "xsize": WIDTH, "ysize": HEIGHT}
    grid.update({"xscale": PIXEL, "yscale": PIXEL})
    for name, (x, y) in corners.items():
        lon, lat = proj(x, y, inverse=True)
        grid[f"{name}_lon"], grid[f"{name}_lat"] = lon, lat
    with h5py.File(path, "w") as f:
        f.attrs["Conventions"] = np.bytes_("ODIM_H5/V2_2")
        what = f.create_group("what")
        what.attrs.update({"object": np.bytes_("COMP"), "date": np.bytes_("20261204")})
        what.attrs["time"] = np.bytes_(f"12{minute:02d}00")
        root_keys = set(grid) if kept_at_root is None else set(kept_at_root)
        f.create_group("where").attrs.update({k: v for k, v in grid.items() if k in root_keys})
        dataset = f.create_group("dataset1")
        if kept_at_root is not None:
            dataset.create_group("where").attrs.update({k: v for k, v in grid.items() if k not in root_keys})
        data = dataset.create_group("data1")
        data.create_dataset("data", data=_raw(t))
        data_what = data.create_group("what")
        data_what.attrs.update({"quantity": np.bytes_(quantity), "gain": GAIN, "offset": OFFSET})
        data_what.attrs.update({"nodata": float(NODATA), "undetect": float(UNDETECT)})


@pytest.fixture
def odim_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "odim"
    folder.mkdir()
    for t in range(6):  # written out of order: the reader sorts by nominal time
        write_odim(folder / f"comp_{5 - t}.h5", t, minute=5 * t)
    return folder


def test_fields_match_pysteps_odim_importer(odim_folder: Path) -> None:
    path = odim_folder / "comp_2.h5"
    ours = read_odim_field(path)  # Marshall-Palmer, pysteps' default
    dbz, _, metadata = import_odim_hdf5(str(path), qty="DBZH")
    theirs, _ = to_rainrate(dbz, metadata, zr_a=200.0, zr_b=1.6)
    raw = _raw(3)
    echo = (raw != UNDETECT) & (raw != NODATA)
    # Both evaluate 10^(dBZ/16) / 200^(1/1.6) in float64; they differ in operation order only.
    np.testing.assert_allclose(ours[echo], theirs[echo], rtol=1e-12)
    assert np.isnan(ours[raw == NODATA]).all() and np.isnan(theirs[raw == NODATA]).all()
    assert (ours[raw == UNDETECT] == 0).all()  # pysteps keeps -30 dBZ there: a trace below any threshold
    assert (theirs[raw == UNDETECT] < 0.01).all()
    grid = read_odim_grid(path)
    assert grid is not None
    # The corners go through pyproj and back: centimetres of rounding on a 1 km grid.
    assert grid.x[0] - PIXEL / 2 == pytest.approx(metadata["x1"], abs=0.01)
    assert grid.y[0] + PIXEL / 2 == pytest.approx(metadata["y2"], abs=0.01)
    np.testing.assert_allclose(np.diff(grid.x), PIXEL, rtol=1e-12)
    np.testing.assert_allclose(np.diff(grid.y), -PIXEL, rtol=1e-12)


@pytest.mark.parametrize("kept_at_root", [("projdef",), ()], ids=["projdef-at-root", "nothing-at-root"])
def test_the_grid_is_found_in_dataset1_where(tmp_path: Path, kept_at_root: tuple[str, ...]) -> None:
    """Some products keep the scales and corners in /dataset1/where, where pysteps looks for the scales too."""
    write_odim(tmp_path / "root.h5", 0, minute=0)
    write_odim(tmp_path / "dataset1.h5", 0, minute=0, kept_at_root=kept_at_root)
    expected, found = read_odim_grid(tmp_path / "root.h5"), read_odim_grid(tmp_path / "dataset1.h5")
    assert expected is not None and found is not None
    assert found.projdef == expected.projdef
    np.testing.assert_array_equal(found.x, expected.x)
    np.testing.assert_array_equal(found.y, expected.y)


def test_sequences_are_windowed_in_time_order_in_mm_per_hour(odim_folder: Path) -> None:
    data = ODIMSequences(odim_folder, context_frames=2, target_frames=2, split="all")
    assert len(data) == 3
    item = data[1]
    assert item["context"].shape == (2, 1, HEIGHT, WIDTH)
    expected = read_odim_field(odim_folder / "comp_4.h5")  # the file of frame t = 1 (minute 5)
    valid = ~np.isnan(expected)
    np.testing.assert_allclose(item["context"][0, 0].numpy()[valid], expected[valid], rtol=1e-6)  # float32 copy
    assert (item["context_mask"][0, 0].numpy() == valid).all()
    coords = data.coords(1)
    assert coords.time[0] == np.datetime64("2026-12-04T12:05:00")
    pixels = ODIMSequences(odim_folder, context_frames=2, target_frames=2, split="all", units="pixel")
    np.testing.assert_allclose(
        pixels[1]["context"][0, 0].numpy()[valid], rain_rate_to_pixel(expected[valid], "hko7"), rtol=1e-5
    )
    assert sources.SOURCES["odim"] == "ODIMSequences"
    built = sources.make_dataset(
        "odim", "all", context_frames=2, target_frames=2, seed=0, args={"root": str(odim_folder)}
    )
    assert len(built) == 3  # type: ignore[arg-type]


def test_a_missing_file_cuts_the_series_and_bad_input_is_named(odim_folder: Path, tmp_path: Path) -> None:
    (odim_folder / "comp_2.h5").unlink()  # the composite of minute 15
    data = ODIMSequences(odim_folder, context_frames=1, target_frames=1, split="all")
    assert len(data) == 3  # windows within [0, 5, 10] and [20, 25]: 2 + 1, none across the gap
    with pytest.raises(ValueError, match="no dataset of quantity 'RATE'; found \\['DBZH'\\]"):
        read_odim_field(odim_folder / "comp_0.h5", quantity="RATE")
    with pytest.raises(FileNotFoundError, match="is not a folder of ODIM HDF5 files"):
        ODIMSequences(tmp_path / "nowhere", context_frames=1, target_frames=1)
    with pytest.raises(ValueError, match=r"units must be one of \['mm/h', 'pixel'\], got 'dBZ'"):
        ODIMSequences(odim_folder, context_frames=1, target_frames=1, units="dBZ")  # type: ignore[arg-type]


def test_forecasts_written_as_netcdf_read_back_in_xarray_and_pysteps(odim_folder: Path, tmp_path: Path) -> None:
    data = ODIMSequences(odim_folder, context_frames=2, target_frames=3, split="all")
    coords = data.coords(0)
    assert data.grid is not None
    forecast = torch.rand(3, HEIGHT, WIDTH, dtype=torch.float64) * 20
    forecast[0, 0, 0] = float("nan")
    path = write_forecast_netcdf(
        tmp_path / "forecast.nc",
        forecast,
        init_time=coords.time[1],
        timestep=np.timedelta64(5, "m"),
        x=data.grid.x,
        y=data.grid.y,
        projdef=data.grid.projdef,
    )
    opened = xr.open_dataset(path, decode_timedelta=True)
    assert opened.attrs["Conventions"] == "CF-1.7"
    assert list(opened["time"].values) == list(coords.time[2:])  # valid times of the three targets
    assert list(opened["lead_time"].values) == [np.timedelta64(m, "m") for m in (5, 10, 15)]
    assert opened["x"].attrs["standard_name"] == "projection_x_coordinate"
    assert opened["precip_intensity"].attrs["grid_mapping"] == "polar_stereographic"
    stored = opened["precip_intensity"].values
    # float32 storage of float64 values: relative rounding below 6e-8.
    np.testing.assert_allclose(stored, forecast.numpy(), rtol=1e-7, equal_nan=True)
    opened.close()
    precip, metadata = import_netcdf_pysteps(str(path), onerror="raise")
    np.testing.assert_allclose(precip, forecast.numpy(), rtol=1e-7, equal_nan=True)
    assert list(metadata["leadtimes"]) == [5.0, 10.0, 15.0]
    assert metadata["xpixelsize"] == pytest.approx(PIXEL) and metadata["x1"] == pytest.approx(X1, abs=0.01)
    assert "+proj=stere" in metadata["projection"]
    ensemble = write_forecast_netcdf(
        tmp_path / "ensemble.nc",
        np.ones((4, 3, HEIGHT, WIDTH)),
        init_time=coords.time[1],
        timestep=np.timedelta64(5, "m"),
    )
    with xr.open_dataset(ensemble) as members:
        assert members["precip_intensity"].dims == ("ens_number", "time", "y", "x")
    with pytest.raises(ValueError, match=r"x must have shape \(16,\)"):
        write_forecast_netcdf(
            tmp_path / "bad.nc",
            forecast,
            init_time=coords.time[1],
            timestep=np.timedelta64(5, "m"),
            x=np.zeros(3),
            y=data.grid.y,
        )
