"""A forecast of an mlcast archive is a store in the archive's convention: the validator finds nothing wrong with it
but what no forecast can have (three years of data; for an ensemble, dims other than (time, y, x)); it keeps the
archive's variable, units, grid, CRS and latitude / longitude, which cf_xarray finds and pyproj reproduces; and the
mlcast source reads it back as the forecast."""

from pathlib import Path
from typing import Any

import cf_xarray  # noqa: F401  (registers the .cf accessor)
import numpy as np
import pyproj
import pytest
import xarray as xr

from convlstm.data.formats.mlcast import MlcastSequences, rain_conversion
from convlstm.data.formats.mlcast_forecast import mlcast_forecast_dataset, write_mlcast_forecast
from tests.data.formats.test_mlcast import TIMES, VARIABLES, write_mlcast_store

STEP = np.timedelta64(5, "m")
INIT = np.datetime64(TIMES[-1].to_datetime64(), "ns")


def rain_forecast(leads: int, size: int, members: int | None = None, seed: int = 1) -> np.ndarray:
    """Rain rates (mm/h): 0 on a third of the pixels, NaN in the first two rows (no coverage), else up to 30."""
    rng = np.random.default_rng(seed)
    shape = (leads, size, size) if members is None else (members, leads, size, size)
    values = (30 * rng.random(shape) ** 2).astype(np.float32)
    values[rng.random(shape) < 1 / 3] = 0.0
    values[..., :2, :] = np.nan
    return values


def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlcast_dataset_validator.checks.global_attributes import mlcast_metadata

    def no_network(*_: Any) -> bool:  # the validator asks GitHub whether mlcast_created_with exists
        raise mlcast_metadata.RequestException("tests do not reach the network")

    monkeypatch.setattr(mlcast_metadata, "github_repo_exists", no_network)


def failures(store: Path) -> set[str]:
    from mlcast_dataset_validator.specs.source_data import radar_precipitation

    with xr.open_zarr(store) as opened:
        report, _ = radar_precipitation.validate_dataset(opened)
    return {r.requirement for r in report.results if r.status == "FAIL"}


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 256 x 256 archive (the convention's smallest) that the validator accepts (test_mlcast.py)."""
    return write_mlcast_store(tmp_path_factory.mktemp("archive") / "radar.zarr", size=256)


def test_the_validator_fails_a_forecast_store_only_on_what_no_forecast_can_have(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    offline(monkeypatch)
    forecast = rain_forecast(3, 256)
    out = write_mlcast_forecast(tmp_path / "forecast.zarr", archive, forecast, init_time=INIT, timestep=STEP)
    assert failures(out) == {"Minimum 3-year coverage"}
    members = write_mlcast_forecast(
        tmp_path / "members.zarr", archive, rain_forecast(3, 256, members=2), init_time=INIT, timestep=STEP
    )
    # The checks assume dims (time, y, x): the member dimension fails the dim order, counts as a spatial one smaller
    # than 256 pixels, and as a dimension after time that is cut into chunks.
    expected = {"Dimension order for rr", "256×256 pixel support", "Spatial chunking for rr"}
    assert failures(members) == {"Minimum 3-year coverage", *expected}
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary folder, renamed


def test_the_forecast_store_keeps_the_archive_grid_crs_and_variable_and_reads_back(
    archive: Path, tmp_path: Path
) -> None:
    forecast = rain_forecast(3, 256)
    attrs = {"title": "a forecast", "history": "2026-01-01 made"}
    with xr.open_zarr(archive) as opened:  # an archive that says how it was made
        described = opened.assign_attrs(history="2025-01-01 archived")
        out = write_mlcast_forecast(
            tmp_path / "forecast.zarr", described, forecast, init_time=INIT, timestep=STEP, attrs=attrs
        )
    with xr.open_zarr(archive) as source, xr.open_zarr(out) as written:
        rr = written["rr"]
        assert rr.dims == ("time", "y", "x") and rr.dtype == np.float32
        for key in ("standard_name", "units", "long_name", "grid_mapping"):
            assert rr.attrs[key] == source["rr"].attrs[key]
        assert rr.encoding["chunks"] == (1, 256, 256)
        np.testing.assert_array_equal(rr.values, forecast)  # rainfall_flux in kg m-2 h-1 is mm/h
        # The forecast's time axis: valid times, lead times, the reference time.
        np.testing.assert_array_equal(written["time"].values, INIT + STEP * np.arange(1, 4))
        assert written["forecast_reference_time"].values == INIT
        assert written["lead_time"].attrs["standard_name"] == "forecast_period"
        np.testing.assert_array_equal(written["lead_time"].values.astype("timedelta64[s]"), STEP * np.arange(1, 4))
        # The archive's grid, latitude / longitude and CRS, found by their CF attributes.
        for name in ("x", "y", "lat", "lon"):
            np.testing.assert_array_equal(written[name].values, source[name].values)
            assert written[name].attrs == source[name].attrs
        assert written.cf.grid_mapping_names == {"lambert_azimuthal_equal_area": ["crs"]}
        crs = pyproj.CRS.from_wkt(written.cf["grid_mapping"].attrs["crs_wkt"])
        assert crs == pyproj.CRS.from_epsg(3035)
        lat, lon = written["rr"].cf["latitude"], written["rr"].cf["longitude"]
        to_latlon = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
        row, col = 100, 37
        x, y = float(written["x"][col]), float(written["y"][row])
        np.testing.assert_allclose(to_latlon.transform(x, y), (lon[row, col], lat[row, col]), atol=1e-9)
        # The archive's global attributes, but for its time axis; the caller's over them.
        assert written.attrs["license"] == source.attrs["license"] == "CC-BY-4.0"
        assert written.attrs["mlcast_dataset_identifier"] == source.attrs["mlcast_dataset_identifier"]
        assert "consistent_timestep_start" not in written.attrs and "missing_times" not in written.variables
        assert written.attrs["title"] == "a forecast"
        assert written.attrs["history"] == "2026-01-01 made\n2025-01-01 archived"
    data = MlcastSequences(out, "all", context_frames=1, target_frames=2)
    item = data[0]
    read = np.concatenate([item["context"][:, 0].numpy(), item["target"][:, 0].numpy()])
    valid = np.isfinite(forecast)
    np.testing.assert_array_equal(read[valid], forecast[valid])
    np.testing.assert_array_equal(item["context_mask"][0, 0].numpy(), valid[0])


@pytest.mark.parametrize("name", list(VARIABLES))
def test_a_forecast_is_written_in_the_archives_units(name: str, tmp_path: Path) -> None:
    archive = write_mlcast_store(tmp_path / "radar.zarr", variables=[name])
    forecast = rain_forecast(2, 16)
    out = write_mlcast_forecast(tmp_path / "forecast.zarr", archive, forecast, init_time=INIT, timestep=STEP)
    with xr.open_zarr(archive) as source, xr.open_zarr(out) as written:
        assert written[name].attrs["units"] == source[name].attrs["units"] == VARIABLES[name][1]
        periods = np.full(2, STEP)  # an amount without a fixed period is the rain of one time step
        back = rain_conversion(written[name], name).to_rain_rate(written[name].values, periods)
        # Dry pixels of a reflectivity get the archive's lowest value (log of 0 has none), and its rain rate back.
        lowest = np.nanmin(source[name].isel(time=-1).values)[None]
        floor = rain_conversion(source[name], name).to_rain_rate(lowest, periods[:1])[0]
    valid = np.isfinite(forecast)
    assert np.array_equal(np.isfinite(back), valid)
    if VARIABLES[name][0] == "equivalent_reflectivity_factor":
        assert 0 < floor < 0.2
        np.testing.assert_allclose(back[valid], np.maximum(forecast[valid], floor), rtol=1e-5)
    else:
        np.testing.assert_allclose(back[valid], forecast[valid], rtol=1e-6)


def test_bad_forecasts_are_refused(archive: Path, tmp_path: Path) -> None:
    with xr.open_zarr(archive) as source:
        with pytest.raises(ValueError, match=r"forecast must be floating rain rates \(K, 256, 256\)"):
            mlcast_forecast_dataset(source, np.zeros((3, 16, 16), np.float32), init_time=INIT, timestep=STEP)
        with pytest.raises(ValueError, match="timestep must be positive"):
            mlcast_forecast_dataset(source, rain_forecast(1, 256), init_time=INIT, timestep=np.timedelta64(0, "m"))
    with pytest.raises(ValueError, match=r"must end in \.nc, \.nc4, \.netcdf \(netCDF\) or \.zarr"):
        write_mlcast_forecast(tmp_path / "forecast.h5", archive, rain_forecast(1, 256), init_time=INIT, timestep=STEP)
