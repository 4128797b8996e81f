"""Forecasts written as CF-compliant netCDF, in the layout pysteps writes and reads back.

One variable ``precip_intensity`` (mm/h, standard name ``lwe_precipitation_rate``) with dims (time, y, x), or
(ens_number, time, y, x) for an ensemble; ``time`` holds the valid times as seconds since the forecast reference
time (the last observed frame), with ``forecast_reference_time`` and ``lead_time`` beside it; x and y are the grid's
projected coordinates (metres, or the grid's own unit) with a grid-mapping variable when the input had them, pixel
indices otherwise. xarray opens it as it is, and
pysteps reads it with ``pysteps.io.import_netcdf_pysteps``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from torch import Tensor

from convlstm.utils.atomic import atomic_path


def _grid_mapping(projdef: str) -> tuple[str, dict[str, object]]:
    """The CF grid-mapping variable of a PROJ string: its name (the grid_mapping_name, as pysteps names it) and
    attributes (with crs_wkt)."""
    try:
        import pyproj
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("writing a projection needs pyproj (pip install 'convlstm[nowcast]')") from err
    crs = pyproj.CRS.from_user_input(projdef)
    attrs = crs.to_cf()
    name = str(attrs.get("grid_mapping_name", "crs"))
    if name == "polar_stereographic" and "latitude_of_projection_origin" not in attrs:
        # CF requires it (+90 or -90); pyproj leaves it out when the PROJ string gives a standard parallel.
        lat_0 = [part.split("=", 1)[1] for part in projdef.split() if part.startswith("+lat_0=")]
        attrs["latitude_of_projection_origin"] = _degrees(lat_0[0]) if lat_0 else 90.0
    return name, {**attrs, "proj4": projdef}


def _degrees(text: str) -> float:
    """A PROJ angle in degrees: "90", "-90", or with a hemisphere as FMI's composites write it ("90N", "60S")."""
    text = text.strip().upper()
    sign = -1.0 if text.endswith(("S", "W")) else 1.0
    return sign * float(text.rstrip("NSEW"))


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
    """Writes a rain-rate forecast (mm/h) to ``path`` atomically.

    Args:
        path: the netCDF file to write.
        forecast: (T_out, H, W) or (N, T_out, H, W) (an ensemble of N members), in mm/h; NaN where unknown.
        init_time: the forecast reference time (the time of the last observed frame).
        timestep: time between lead times (lead time k is (k + 1) * timestep).
        x: (W,) pixel-centre coordinates of the projection in ``xy_units``, or None for pixel indices.
        y: (H,) pixel-centre coordinates of the projection in ``xy_units``, row by row as the forecast's rows
            (decreasing when row 0 is north), or None for pixel indices.
        projdef: the PROJ string of the grid (needs pyproj), or None.
        institution: written as the global attribute of that name.
        xy_units: units of x and y ("m", or "km" for a grid such as KNMI's whose PROJ string is in km).
        attrs: further global attributes (title, source, history, ...), written after and over the defaults.

    Returns:
        The path written.
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
        mapping, mapping_attrs = _grid_mapping(projdef)
        data_vars[mapping] = xr.Variable((), np.int32(0), mapping_attrs)
        precip_attrs["grid_mapping"] = mapping
    data_vars["precip_intensity"] = xr.Variable(dims, values.astype(np.float32), precip_attrs)
    dataset = xr.Dataset(
        data_vars,
        coords=coords,
        attrs={"Conventions": "CF-1.7", "institution": institution, "source": "convlstm", **(attrs or {})},
    )
    encoding: dict[str, dict[str, Any]] = {
        "precip_intensity": {"_FillValue": np.float32(np.nan), "zlib": True},
        # Keep the time numbers as written (seconds since init): xarray would otherwise decode and re-encode them.
        "time": {"_FillValue": None},
        "lead_time": {"_FillValue": None},
        "x": {"_FillValue": None},
        "y": {"_FillValue": None},
    }
    target = Path(path)
    with atomic_path(target) as tmp:
        dataset.to_netcdf(str(tmp), format="NETCDF4", encoding=encoding)
    return target
