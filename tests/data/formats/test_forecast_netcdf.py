"""A forecast written as netCDF or zarr carries its grid: cf_xarray finds the grid mapping, latitude and longitude by
their CF attributes, the grid mapping's WKT is the source's CRS again, and every pixel's latitude and longitude are
pyproj's transform of its x and y; a zarr store is replaced whole."""

from pathlib import Path

import cf_xarray  # noqa: F401  (registers the .cf accessor)
import numpy as np
import pyproj
import pytest
import xarray as xr

from convlstm.data.formats.forecast_netcdf import write_forecast_netcdf
from convlstm.utils.atomic import remove_stale_temporaries

INIT = np.datetime64("2021-07-01T12:00", "s")
STEP = np.timedelta64(5, "m")
#: name -> (CRS definition, x (W,), y (H,)): FMI's polar stereographic PROJ string, KNMI's in km (its ellipsoid in
#: km too), and ETRS89-LAEA as WKT, as an mlcast archive gives it.
GRIDS = {
    "fmi": (
        "+proj=stere +lat_0=90 +lon_0=25 +lat_ts=60 +ellps=intl +x_0=0 +y_0=0 +units=m",
        -300_000.0 + 1000.0 * np.arange(12),
        -3_000_000.0 - 1000.0 * np.arange(10),
    ),
    "knmi": (
        "+proj=stere +lat_0=90 +lon_0=0.0 +lat_ts=60.0 +a=6378.137 +b=6356.752 +x_0=0 +y_0=0",
        0.5 + np.arange(12.0),
        -3650.5 - np.arange(10.0),
    ),
    "laea": (
        pyproj.CRS.from_epsg(3035).to_wkt(),
        4_000_000.0 + 1000.0 * np.arange(12),
        3_000_000.0 - 1000.0 * np.arange(10),
    ),
}


def forecast(members: int | None = None) -> np.ndarray:
    shape = (3, 10, 12) if members is None else (members, 3, 10, 12)
    values = np.random.default_rng(0).gamma(0.5, 2.0, shape).astype(np.float32)
    values[..., 0, :] = np.nan
    return values


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
@pytest.mark.parametrize("grid", list(GRIDS))
def test_a_written_forecast_reads_back_on_its_grid(grid: str, suffix: str, tmp_path: Path) -> None:
    projdef, x, y = GRIDS[grid]
    values = forecast()
    path = write_forecast_netcdf(
        tmp_path / f"forecast{suffix}", values, init_time=INIT, timestep=STEP, x=x, y=y, projdef=projdef
    )
    opener = xr.open_zarr if suffix == ".zarr" else xr.open_dataset
    with opener(path) as written:
        precip = written["precip_intensity"]
        np.testing.assert_array_equal(precip.values, values)
        (mapping_name,) = written.cf.grid_mapping_names
        assert precip.attrs["grid_mapping"] == written.cf.grid_mapping_names[mapping_name][0]
        mapping = written.cf["grid_mapping"]
        assert mapping.attrs["spatial_ref"] == mapping.attrs["crs_wkt"]
        crs = pyproj.CRS.from_wkt(mapping.attrs["crs_wkt"])
        assert crs == pyproj.CRS.from_user_input(projdef)
        assert written.cf["X"].name == "x" and written.cf["Y"].name == "y"
        lat, lon = precip.cf["latitude"], precip.cf["longitude"]
        assert lat.dims == lon.dims == ("y", "x") and lat.attrs["units"] == "degrees_north"
        to_latlon = pyproj.Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)
        for row, col in ((0, 0), (4, 7), (9, 11)):
            expected = to_latlon.transform(x[col], y[row])
            np.testing.assert_allclose((lon.values[row, col], lat.values[row, col]), expected, atol=1e-9)
        assert written["time"].values[0] == INIT + STEP


def test_the_grids_place_their_pixels_where_the_services_say() -> None:
    # KNMI's grid starts at 55.97 N, 0 E (its PROJ string in km, which a transform to WGS 84 by name refuses).
    from convlstm.data.formats.grid_mapping import latitude_longitude

    lat, lon = latitude_longitude(GRIDS["knmi"][0], np.array([0.0]), np.array([-3650.0]))
    np.testing.assert_allclose((lat[0, 0], lon[0, 0]), (55.9736, 0.0), atol=1e-4)


def test_an_ensemble_and_a_grid_without_projection(tmp_path: Path) -> None:
    projdef, x, y = GRIDS["fmi"]
    members = write_forecast_netcdf(
        tmp_path / "members.zarr", forecast(members=2), init_time=INIT, timestep=STEP, x=x, y=y, projdef=projdef
    )
    with xr.open_zarr(members) as written:
        assert written["precip_intensity"].dims == ("ens_number", "time", "y", "x")
        assert written["precip_intensity"].encoding["chunks"] == (1, 1, 10, 12)
    plain = write_forecast_netcdf(tmp_path / "plain.nc", forecast(), init_time=INIT, timestep=STEP)
    with xr.open_dataset(plain) as written:
        assert not written.cf.grid_mapping_names and "lat" not in written.variables
        assert written["x"].attrs["long_name"] == "x pixel index"


def test_a_store_is_replaced_whole_and_bad_paths_are_refused(tmp_path: Path) -> None:
    projdef, x, y = GRIDS["laea"]
    path = tmp_path / "forecast.zarr"
    write_forecast_netcdf(path, forecast(members=2), init_time=INIT, timestep=STEP, x=x, y=y, projdef=projdef)
    write_forecast_netcdf(path, forecast(), init_time=INIT, timestep=STEP, x=x, y=y, projdef=projdef)
    with xr.open_zarr(path) as written:
        assert written["precip_intensity"].dims == ("time", "y", "x")  # nothing of the first store is left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["forecast.zarr"]
    (tmp_path / ".forecast.zarr.abc.tmp").mkdir()  # a folder left by a killed writer
    assert remove_stale_temporaries(tmp_path) == [tmp_path / ".forecast.zarr.abc.tmp"]
    with pytest.raises(ValueError, match=r"must end in \.nc, \.nc4, \.netcdf \(netCDF\) or \.zarr"):
        write_forecast_netcdf(tmp_path / "forecast.h5", forecast(), init_time=INIT, timestep=STEP)
    with pytest.raises(ValueError, match="projdef must be a PROJ string, a WKT string or an EPSG code"):
        write_forecast_netcdf(
            tmp_path / "f.nc", forecast(), init_time=INIT, timestep=STEP, x=x, y=y, projdef="+proj=nothing"
        )
