"""Forecasts of a radar archive in the mlcast convention, written as a store in the same convention.

The forecast of an archive that [`MlcastSequences`][convlstm.data.MlcastSequences] reads is written as that
archive is stored: the same variable (name, ``standard_name``, ``units``, ``long_name``, ``grid_mapping``), converted
back from mm/h into its units (see [`from_rain_rate`][convlstm.data.formats.mlcast.RainConversion.from_rain_rate]); the
archive's x and y, its 2-D latitude and longitude and its grid-mapping variable (``crs_wkt``, ``spatial_ref``, CF
attributes) copied over; one chunk per time step, zstd, consolidated metadata; and the archive's global attributes (its
licence and ``mlcast_*`` attributes, which then name the archive the forecast was made from), with ``title``, ``source``
and ``history`` saying what made the forecast.

The time axis is the forecast's: ``time`` holds the valid times (CF ``standard_name: time``), ``lead_time``
beside it the lead times in seconds (``standard_name: forecast_period``), and the scalar
``forecast_reference_time`` the time of the last observed frame, as CF describes a forecast. A forecast has no
missing times, so ``missing_times`` and ``consistent_timestep_start`` are left out. An ensemble gets a leading
``realization`` dimension (CF's standard name for the member number), one chunk per member and time step.

What the convention's validator (``mlcast-dataset-validator``, spec ``source_data/radar_precipitation``) cannot
accept in a forecast: it asks for three years of data (a forecast covers its lead times), and for dims exactly
(time, y, x) (an ensemble has four). Every other requirement holds for the forecast store when it holds for the
archive; the tests check so.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import xarray as xr
from torch import Tensor

from convlstm.data.formats.forecast_netcdf import write_forecast_dataset
from convlstm.data.formats.mlcast import CONSISTENT_START, find_rain_variable, rain_conversion
from convlstm.data.formats.xarray_source import Location, open_lazy

#: The dimension of ensemble members (CF standard_name ``realization``).
MEMBER_DIM = "realization"


def mlcast_forecast_dataset(
    source: xr.Dataset,
    forecast: Tensor | np.ndarray,
    *,
    init_time: np.datetime64,
    timestep: np.timedelta64,
    variable: str | None = None,
    zr: str | Sequence[float] | None = None,
    accumulation: str | None = None,
    attrs: Mapping[str, str] | None = None,
    where: str = "source",
) -> xr.Dataset:
    """A rain-rate forecast of the archive ``source`` as a dataset in the archive's convention.

    Args:
        source: the archive, opened (lazily; one frame is read for a reflectivity, none otherwise).
        forecast: (K, H, W) or (N, K, H, W) (an ensemble of N members) rain rates in mm/h on the archive's grid;
            NaN where unknown.
        init_time: the forecast reference time (the time of the last observed frame).
        timestep: time between lead times (lead time k is (k + 1) * timestep); an amount without a fixed
            accumulation period is written as the rain of one time step.
        variable: the archive's rain variable; default the one whose ``standard_name`` is rain.
        zr: a reflectivity's Z-R relation, as [`MlcastSequences`][convlstm.data.MlcastSequences] takes it.
        accumulation: an amount's accumulation period, as
            [`MlcastSequences`][convlstm.data.MlcastSequences] takes it.
        attrs: global attributes written over the archive's (``title``, ``source``, ...); a ``history`` goes
            before the archive's, as CF asks.
        where: the archive's name in error messages.

    Returns:
        The dataset, values as float32 in the variable's units.

    Raises:
        ValueError: a forecast that is not (K, H, W) or (N, K, H, W) on the archive's grid, a time step that is not
            positive, or an archive without a rain variable.
    """
    values = forecast.detach().cpu().numpy() if isinstance(forecast, Tensor) else np.asarray(forecast)
    name = find_rain_variable(source, variable, where=where)
    array = source[name]
    if array.ndim != 3 or array.dims[0] != "time":
        raise ValueError(f"{where}: variable {name!r} must have dims (time, y, x), got {array.dims}")
    _, y_dim, x_dim = (str(d) for d in array.dims)
    grid = array.shape[1:]
    if values.ndim not in (3, 4) or values.shape[-2:] != grid or not np.issubdtype(values.dtype, np.floating):
        raise ValueError(
            f"forecast must be floating rain rates (K, {grid[0]}, {grid[1]}) or (N, K, {grid[0]}, {grid[1]}) on the "
            f"grid of {where}, got {values.dtype} {values.shape}"
        )
    init = _time(init_time, "init_time")
    try:
        step = cast(np.timedelta64, np.asarray(timestep, dtype="timedelta64[ns]")[()])
    except (TypeError, ValueError) as err:
        raise ValueError(f"timestep must be a timedelta64, got {timestep!r}") from err
    if step <= np.timedelta64(0, "ns"):
        raise ValueError(f"timestep must be positive, got {timestep!r}")
    conversion = rain_conversion(array, name, zr=zr, accumulation=accumulation, where=where)
    dry_dbz = _lowest_value(array, init) if conversion.kind == "reflectivity" else None
    stored = conversion.from_rain_rate(values, period=step, dry_dbz=dry_dbz)

    leads = step * np.arange(1, values.shape[-3] + 1)
    coords: dict[str, Any] = {
        "time": ("time", init + leads, {"standard_name": "time", "long_name": "valid time", "axis": "T"}),
        "lead_time": (
            "time",
            (leads // np.timedelta64(1, "s")).astype(np.int64),
            {"standard_name": "forecast_period", "long_name": "lead time", "units": "seconds"},
        ),
        "forecast_reference_time": ((), init, {"standard_name": "forecast_reference_time"}),
    }
    for coord_name, coord in source.coords.items():
        if coord.dims and set(coord.dims) <= {y_dim, x_dim}:  # x, y, and latitude / longitude on (y, x)
            coords[str(coord_name)] = (coord.dims, coord.values, dict(coord.attrs))
    dims: tuple[str, ...] = ("time", y_dim, x_dim)
    if values.ndim == 4:
        dims = (MEMBER_DIM, *dims)
        members = np.arange(1, values.shape[0] + 1, dtype=np.int32)
        coords[MEMBER_DIM] = (MEMBER_DIM, members, {"standard_name": "realization", "long_name": "ensemble member"})
    data_vars: dict[str, Any] = {name: (dims, stored, dict(array.attrs))}
    mapping = array.attrs.get("grid_mapping")
    if mapping is not None and mapping in source.variables:
        data_vars[str(mapping)] = ((), np.asarray(source[mapping].values), dict(source[mapping].attrs))
    merged = {key: value for key, value in source.attrs.items() if key != CONSISTENT_START}
    merged.update(attrs or {})
    if attrs and "history" in attrs and "history" in source.attrs:  # CF: the newest line first, the archive's kept
        merged["history"] = f"{attrs['history']}\n{source.attrs['history']}"
    return xr.Dataset(data_vars, coords=coords, attrs=merged)


def write_mlcast_forecast(
    path: str | os.PathLike[str],
    source: Location | xr.Dataset,
    forecast: Tensor | np.ndarray,
    *,
    init_time: np.datetime64,
    timestep: np.timedelta64,
    variable: str | None = None,
    zr: str | Sequence[float] | None = None,
    accumulation: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    attrs: Mapping[str, str] | None = None,
) -> Path:
    """Writes a rain-rate forecast of an mlcast archive atomically as a store in the archive's convention (``path``
    ending in .zarr; a netCDF file for .nc), see
    `mlcast_forecast_dataset` for the arguments.

    Args:
        path: the store (or netCDF file) to write.
        source: the archive: a local path, an fsspec URL (with ``storage_options``) or an opened dataset.

    Returns:
        The path written.
    """
    opened = source if isinstance(source, xr.Dataset) else open_lazy(source, None, storage_options)
    try:
        dataset = mlcast_forecast_dataset(
            opened,
            forecast,
            init_time=init_time,
            timestep=timestep,
            variable=variable,
            zr=zr,
            accumulation=accumulation,
            attrs=attrs,
            where="source" if isinstance(source, xr.Dataset) else os.fspath(source),
        )
        return write_forecast_dataset(path, dataset)
    finally:
        if opened is not source:
            opened.close()


def _time(value: Any, name: str) -> np.datetime64:
    try:
        time = cast(np.datetime64, np.asarray(value, dtype="datetime64[ns]")[()])
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a datetime64, got {value!r}") from err
    if np.isnat(time):
        raise ValueError(f"{name} must be a datetime64, got {value!r}")
    return time


def _lowest_value(array: xr.DataArray, init: np.datetime64) -> float:
    """The lowest finite value of the frame at ``init`` (the last one when ``init`` is not a time of the archive):
    what the archive holds where its radars see no echo."""
    times = np.asarray(array["time"].values)
    index = int(np.searchsorted(times, init))
    index = index if index < len(times) and times[index] == init else len(times) - 1
    frame = np.asarray(array.isel(time=index).values, dtype=np.float64)
    finite = frame[np.isfinite(frame)]
    return float(finite.min()) if finite.size else float("-inf")
