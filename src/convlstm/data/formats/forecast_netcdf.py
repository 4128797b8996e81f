"""Forecasts written as CF-compliant netCDF (or a zarr store), in the layout pysteps writes and reads back.

One variable ``precip_intensity`` (mm/h, standard name ``lwe_precipitation_rate``) with dims (time, y, x), or
(ens_number, time, y, x) for an ensemble; ``time`` holds the valid times as seconds since the forecast reference time
(the last observed frame), with ``forecast_reference_time`` and ``lead_time`` beside it; x and y are the grid's
projected coordinates (metres, or the grid's own unit) when the input had them, pixel indices otherwise. With a
projection the file also holds its CF grid-mapping variable (with ``crs_wkt``; see
[`convlstm.data.formats.grid_mapping`][convlstm.data.formats.grid_mapping]), named by the ``grid_mapping`` attribute of
``precip_intensity``, and the 2-D latitude and longitude of every pixel. xarray opens it as it is (cf_xarray finds the
grid mapping, latitude and longitude by their CF attributes), and pysteps reads it with
``pysteps.io.import_netcdf_pysteps``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from torch import Tensor

from convlstm.data.formats.grid_mapping import LATITUDE_ATTRS, LONGITUDE_ATTRS, grid_mapping, latitude_longitude
from convlstm.utils.atomic import atomic_directory, atomic_path

#: Suffixes written as netCDF; ".zarr" is written as a zarr store.
NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf")


def write_forecast_netcdf(
    path: str | os.PathLike[str],
    forecast: Tensor | np.ndarray,
    *,
    init_time: np.datetime64,
    timestep: np.timedelta64,
    x: np.ndarray | None = None,
    y: np.ndarray | None = None,
    projdef: str | None = None,
    institution: str = "",
    xy_units: str = "m",
    attrs: Mapping[str, str] | None = None,
) -> Path:
    """Writes a rain-rate forecast (mm/h) to ``path`` atomically, as netCDF, or as a zarr store when ``path`` ends in
    ".zarr" (see `write_forecast_dataset`); the arguments are
    those of `forecast_dataset`.

    Returns:
        The path written.
    """
    dataset = forecast_dataset(
        forecast,
        init_time=init_time,
        timestep=timestep,
        x=x,
        y=y,
        projdef=projdef,
        institution=institution,
        xy_units=xy_units,
        attrs=attrs,
    )
    return write_forecast_dataset(path, dataset)


def forecast_dataset(
    forecast: Tensor | np.ndarray,
    *,
    init_time: np.datetime64,
    timestep: np.timedelta64,
    x: np.ndarray | None = None,
    y: np.ndarray | None = None,
    projdef: str | None = None,
    institution: str = "",
    xy_units: str = "m",
    attrs: Mapping[str, str] | None = None,
) -> xr.Dataset:
    """A rain-rate forecast (mm/h) as a CF dataset in pysteps' layout.

    Args:
        forecast: (T_out, H, W) or (N, T_out, H, W) (an ensemble of N members), in mm/h; NaN where unknown.
        init_time: the forecast reference time (the time of the last observed frame).
        timestep: time between lead times (lead time k is (k + 1) * timestep).
        x: (W,) pixel-centre coordinates of the projection in ``xy_units``, or None for pixel indices.
        y: (H,) pixel-centre coordinates of the projection in ``xy_units``, row by row as the forecast's rows
            (decreasing when row 0 is north), or None for pixel indices.
        projdef: the grid's CRS as a PROJ string, a WKT string or an EPSG code (needs pyproj), or None. Its x and
            y are in the CRS's units.
        institution: written as the global attribute of that name.
        xy_units: units of x and y ("m", or "km" for a grid such as KNMI's whose PROJ string is in km).
        attrs: further global attributes (title, source, history, ...), written after and over the defaults.

    Returns:
        The dataset, values as float32; with ``projdef`` also the grid-mapping variable and the coordinates
        ``lat`` and ``lon`` (y, x).
    """
    values = forecast.detach().cpu().numpy() if isinstance(forecast, Tensor) else np.asarray(forecast)
    if values.ndim not in (3, 4) or not np.issubdtype(values.dtype, np.floating):
        raise ValueError(
            f"forecast must be a floating array (T_out, H, W) or (N, T_out, H, W), got {values.dtype} {values.shape}"
        )
    steps, height, width = values.shape[-3:]
    try:
        init = np.asarray(init_time, dtype="datetime64[s]")[()]
        step = np.asarray(timestep, dtype="timedelta64[s]")[()]
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"init_time must be a datetime64 and timestep a timedelta64, got {init_time!r}, {timestep!r}"
        ) from err
    if step <= np.timedelta64(0, "s"):
        raise ValueError(f"timestep must be positive, got {timestep!r}")
    for name, coord, size in (("x", x, width), ("y", y, height)):
        if coord is not None and np.shape(coord) != (size,):
            raise ValueError(
                f"{name} must have shape ({size},) to match the forecast {values.shape}, got {np.shape(coord)}"
            )
    if projdef is not None and (x is None or y is None):
        raise ValueError("projdef needs the x and y coordinates of the grid")
    lead_seconds = (np.arange(1, steps + 1) * step.astype(np.int64)).astype(np.int64)
    init_text = str(init).replace("T", " ")
    dims = ("time", "y", "x") if values.ndim == 3 else ("ens_number", "time", "y", "x")
    # lwe_precipitation_rate (canonical units m s-1; mm h-1 converts): a radar rate is that of all precipitation,
    # snow included, as a depth of liquid water per time. rainfall_rate would claim liquid only, which a Z-R
    # relation cannot tell; rainfall_flux and precipitation_flux are mass fluxes (kg m-2 s-1), not mm h-1.
    precip_attrs: dict[str, object] = {
        "standard_name": "lwe_precipitation_rate",
        "long_name": "instantaneous precipitation rate",
        "units": "mm h-1",
    }
    coords: dict[str, xr.Variable] = {
        "time": xr.Variable(
            "time",
            lead_seconds,
            {
                "standard_name": "time",
                "long_name": "valid time",
                "units": f"seconds since {init_text}",
                "calendar": "proleptic_gregorian",
            },
        ),
        "lead_time": xr.Variable(
            "time", lead_seconds, {"standard_name": "forecast_period", "long_name": "lead time", "units": "seconds"}
        ),
        "forecast_reference_time": xr.Variable(
            (), 0, {"standard_name": "forecast_reference_time", "units": f"seconds since {init_text}"}
        ),
    }
    spatial = {"x": (x, "projection_x_coordinate", "x"), "y": (y, "projection_y_coordinate", "y")}
    for name, (coord, standard, axis) in spatial.items():
        if coord is None:
            size = width if name == "x" else height
            coords[name] = xr.Variable(
                name,
                np.arange(size, dtype=np.float64),
                {"long_name": f"{name} pixel index", "units": "1", "axis": axis.upper()},
            )
        else:
            coords[name] = xr.Variable(
                name,
                np.asarray(coord, dtype=np.float64),
                {"standard_name": standard, "units": xy_units, "axis": axis.upper()},
            )
    data_vars: dict[str, xr.Variable] = {}
    if values.ndim == 4:
        coords["ens_number"] = xr.Variable(
            "ens_number", np.arange(1, values.shape[0] + 1), {"long_name": "ensemble member", "units": "1"}
        )
    if projdef is not None:
        assert x is not None and y is not None
        mapping, mapping_attrs = grid_mapping(projdef)
        data_vars[mapping] = xr.Variable((), np.int32(0), mapping_attrs)
        precip_attrs["grid_mapping"] = mapping
        lat, lon = latitude_longitude(projdef, np.asarray(x), np.asarray(y))
        coords["lat"] = xr.Variable(("y", "x"), lat, LATITUDE_ATTRS)
        coords["lon"] = xr.Variable(("y", "x"), lon, LONGITUDE_ATTRS)
    data_vars["precip_intensity"] = xr.Variable(dims, values.astype(np.float32), precip_attrs)
    return xr.Dataset(
        data_vars,
        coords=coords,
        attrs={"Conventions": "CF-1.7", "institution": institution, "source": "convlstm", **(attrs or {})},
    )


def write_forecast_dataset(path: str | os.PathLike[str], dataset: xr.Dataset) -> Path:
    """Writes a forecast dataset atomically: as netCDF4 (``path`` ending in .nc, .nc4 or .netcdf; data compressed
    with zlib), or as a zarr store (``path`` ending in .zarr: zarr format 2 with consolidated metadata, one chunk
    per field, compressed with zstd, as the mlcast convention stores archives).

    Coordinates keep their values as they are (no fill value is added), so that times written as numbers since
    the reference time stay so. A reader sees the old file or store, or the new one, never a partial one.

    Raises:
        ValueError: another suffix.
    """
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in (*NETCDF_SUFFIXES, ".zarr"):
        raise ValueError(
            f"the forecast file must end in {', '.join(NETCDF_SUFFIXES)} (netCDF) or .zarr (a zarr store), got {target}"
        )
    fields = [name for name, variable in dataset.data_vars.items() if variable.ndim >= 2]
    encoding: dict[str, dict[str, Any]] = {
        str(name): {"_FillValue": None} for name in dataset.variables if name not in dataset.data_vars
    }
    if suffix == ".zarr":
        for name in fields:
            variable = dataset[name]
            chunks = (1,) * (variable.ndim - 2) + variable.shape[-2:]  # one chunk per field, as the convention asks
            encoding[str(name)] = {"_FillValue": np.float32(np.nan), "chunks": chunks, **_zstd()}
        with atomic_directory(target) as tmp:
            dataset.to_zarr(tmp, mode="w", zarr_format=2, consolidated=True, encoding=encoding)
    else:
        for name in fields:
            encoding[str(name)] = {"_FillValue": np.float32(np.nan), "zlib": True}
        with atomic_path(target) as tmp:
            dataset.to_netcdf(str(tmp), format="NETCDF4", encoding=encoding)
    return target


def _zstd() -> dict[str, Any]:
    """The encoding of zstd compression in zarr format 2, as the installed zarr names it."""
    import numcodecs
    import zarr

    if int(zarr.__version__.split(".")[0]) >= 3:
        return {"compressors": [numcodecs.Zstd()]}
    return {"compressor": numcodecs.Zstd()}  # pragma: no cover - zarr 2
