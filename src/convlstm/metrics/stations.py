"""Verification of gridded forecasts at weather stations: each forecast field interpolated bilinearly to the stations,
in the grid's coordinate reference system, and scored by lead time against the stations' observations (RMSE, MAE,
bias, and how many observations each took).

Observations come from METAR reports (parsed by MetPy, the ``weather`` extra) or from a CSV file of station, time
and value, with the stations' latitude and longitude in the same file or in a station list. A station outside the
grid gets no forecast (NaN) and counts nowhere; an observation counts for the valid time it lies nearest to, within
a tolerance.

    observations = read_metar("metars.txt", year=2019, month=3, stations="stations.csv")  # air temperature, K
    scores = verify_at_stations(forecasts, valid_times, lat, lon, observations)     # forecasts (N, K, H, W)
    scores.compute()["rmse"]                                                          # (K,): one per lead time

pandas is read from the ``data`` extra; MetPy and, for projected grids, pyproj from the ``weather`` extra.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from convlstm.utils.checks import check_int

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "StationScores",
    "Stations",
    "interpolate_to_points",
    "observations_at",
    "read_metar",
    "read_station_csv",
    "station_points",
    "verify_at_stations",
]

#: The columns of an observation table, as ``read_station_csv`` and ``read_metar`` return it.
COLUMNS = ("station", "time", "value", "latitude", "longitude")
_LATITUDE_NAMES = ("latitude", "lat")
_LONGITUDE_NAMES = ("longitude", "lon")
#: MetPy's name of a METAR quantity -> the field of its parsed report; temperatures come in degrees Celsius.
_METAR_FIELDS = {"air_temperature": "temperature", "dew_point_temperature": "dewpoint"}
_CELSIUS = frozenset(_METAR_FIELDS)


@dataclass(frozen=True)
class Stations:
    """Stations by identifier, with their positions.

    Attributes:
        ids: (S,) identifiers.
        latitudes: (S,) degrees north.
        longitudes: (S,) degrees east.
    """

    ids: np.ndarray
    latitudes: np.ndarray
    longitudes: np.ndarray

    @classmethod
    def from_observations(cls, observations: pd.DataFrame) -> Stations:
        """Every station of an observation table, sorted by identifier.

        Raises:
            ValueError: a station reported at two different positions.
        """
        positions = observations[["station", "latitude", "longitude"]].drop_duplicates()
        twice = positions["station"][positions["station"].duplicated()].unique().tolist()
        if twice:
            raise ValueError(f"stations {twice[:5]} appear at more than one latitude / longitude")
        positions = positions.sort_values("station")
        return cls(
            ids=positions["station"].to_numpy(dtype=str),
            latitudes=positions["latitude"].to_numpy(dtype=np.float64),
            longitudes=positions["longitude"].to_numpy(dtype=np.float64),
        )


# --------------------------------------------------------------------------------------- reading observations
def read_station_list(source: str | os.PathLike[str] | pd.DataFrame) -> pd.DataFrame:
    """A station list (CSV file or DataFrame) with columns station, latitude (or lat), longitude (or lon)."""
    import pandas as pd

    table = source.copy() if isinstance(source, pd.DataFrame) else _read_csv(source)
    table = _positions_renamed(table, str(source) if not isinstance(source, pd.DataFrame) else "stations")
    _require(table, ("station", "latitude", "longitude"), "the station list")
    table["station"] = table["station"].astype(str)
    return table[["station", "latitude", "longitude"]].drop_duplicates("station")


def read_station_csv(
    path: str | os.PathLike[str],
    *,
    stations: str | os.PathLike[str] | pd.DataFrame | None = None,
    station: str = "station",
    time: str = "time",
    value: str = "value",
) -> pd.DataFrame:
    """Observations from a CSV file with one row per station and time.

    Args:
        path: the CSV file: columns ``station``, ``time`` (ISO, UTC unless it says otherwise), ``value``, and the
            stations' ``latitude`` / ``longitude`` (or ``lat`` / ``lon``) unless ``stations`` gives them.
        stations: a station list (CSV file or DataFrame: station, latitude, longitude) for a file without positions.
        station: the name of the station column.
        time: the name of the time column.
        value: the name of the value column.

    Returns:
        A DataFrame with the columns station (str), time (datetime64, UTC), value, latitude, longitude.

    Raises:
        ValueError: a column missing, times that do not parse, or stations without a position.
    """
    table = _read_csv(path)
    _require(table, (station, time, value), str(path))
    table = table.rename(columns={station: "station", time: "time", value: "value"})
    table["station"] = table["station"].astype(str)
    return _finish(table, stations, str(path))


def read_metar(
    path: str | os.PathLike[str],
    *,
    year: int,
    month: int,
    stations: str | os.PathLike[str] | pd.DataFrame | None = None,
    variable: str = "air_temperature",
    kelvin: bool = True,
) -> pd.DataFrame:
    """Observations of one quantity from a text file of METAR reports, parsed by MetPy.

    Args:
        path: the file: one report per line (a line starting with blanks continues the report above), as
            MetPy's ``parse_metar_file`` reads them.
        year: the year of the reports (a METAR says only the day and time).
        month: their month.
        stations: the stations' positions (CSV file or DataFrame: station, latitude, longitude). None looks them
            up in MetPy's station tables, which MetPy downloads on first use.
        variable: the quantity, by MetPy's column name: "air_temperature", "dew_point_temperature",
            "wind_speed", "air_pressure_at_sea_level", ...
        kelvin: temperatures in kelvin (reanalyses' unit) rather than METAR's degrees Celsius.

    Returns:
        A DataFrame as [`read_station_csv`][convlstm.metrics.read_station_csv] returns it, reports without the
        quantity or the station's position left out.

    Raises:
        ModuleNotFoundError: MetPy is not installed (``pip install "convlstm[weather]"``).
        ValueError: no report of the file has the quantity at a known station.
    """
    try:
        import metpy.io
        from metpy.io.metar import parse_metar
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f'reading METAR reports needs MetPy: pip install "convlstm[weather]" ({error})', name="metpy"
        ) from error
    if stations is None:
        table = metpy.io.parse_metar_file(os.fspath(path), year=year, month=month).reset_index(drop=True)
        if variable not in table.columns:
            raise ValueError(f"METAR reports have no {variable!r}; MetPy's columns are {list(table.columns)}")
        table = table.rename(columns={"station_id": "station", "date_time": "time", variable: "value"})
    else:
        table = _parse_with_positions(path, year, month, read_station_list(stations), variable, parse_metar)
    if kelvin and variable in _CELSIUS:
        table["value"] = table["value"].astype(np.float64) + 273.15
    table = table.dropna(subset=["value", "latitude", "longitude", "time"])
    if table.empty:
        raise ValueError(f"{path}: no METAR report has {variable!r} at a station with a known position")
    return _finish(table, None, str(path))


def _parse_with_positions(
    path: str | os.PathLike[str], year: int, month: int, stations: pd.DataFrame, variable: str, parse: Any
) -> pd.DataFrame:
    """The reports of the file parsed one by one with the given station positions (no station tables needed)."""
    import pandas as pd
    from metpy.io.metar import ParseError
    from metpy.io.station_data import Station

    lookup = {
        row.station: Station(row.station, None, row.station, None, None, row.longitude, row.latitude, np.nan, "")
        for row in stations.itertuples()
    }
    field = _METAR_FIELDS.get(variable, variable)
    rows = []
    for report in _reports(Path(path).read_text(encoding="utf-8", errors="replace")):
        try:
            parsed = parse(report, year, month, station_metadata=lookup)
        except ParseError:
            continue  # MetPy's parse_metar_file leaves such reports out too
        if field not in parsed._fields:
            raise ValueError(f"METAR reports have no {variable!r}; a parsed report has {list(parsed._fields)}")
        rows.append(
            {
                "station": parsed.station_id,
                "time": parsed.date_time,
                "value": getattr(parsed, field),
                "latitude": parsed.latitude,
                "longitude": parsed.longitude,
            }
        )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _reports(text: str) -> list[str]:
    """The METAR reports of a file: a line starting with blanks continues the one above; short lines are left out."""
    reports: list[list[str]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if line[:1].isspace() and reports:
            reports[-1].append(line.strip())
        else:
            reports.append([line.strip()])
    return [text for text in (" ".join(parts).rstrip("=").strip() for parts in reports) if len(text) > 25]


def _read_csv(path: str | os.PathLike[str]) -> pd.DataFrame:
    import pandas as pd

    if not Path(path).is_file():
        raise FileNotFoundError(f"station file not found: {path}")
    return pd.read_csv(path)


def _require(table: pd.DataFrame, columns: Sequence[str], where: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{where}: no column {missing}; it has {list(table.columns)}")


def _positions_renamed(table: pd.DataFrame, where: str) -> pd.DataFrame:
    renames = {}
    for wanted, names in (("latitude", _LATITUDE_NAMES), ("longitude", _LONGITUDE_NAMES)):
        found = [n for n in names if n in table.columns]
        if len(found) > 1:
            raise ValueError(f"{where}: both {found} are columns; keep one")
        if found:
            renames[found[0]] = wanted
    return table.rename(columns=renames)


def _finish(table: pd.DataFrame, stations: str | os.PathLike[str] | pd.DataFrame | None, where: str) -> pd.DataFrame:
    """Positions joined from ``stations`` (or the table's own), times as naive UTC datetime64, values as floats."""
    import pandas as pd

    table = _positions_renamed(table, where)
    if stations is not None:
        if "latitude" in table.columns or "longitude" in table.columns:
            raise ValueError(f"{where}: has station positions already; leave stations= out")
        listed = read_station_list(stations)
        table = table.merge(listed, on="station", how="left")
        unknown = sorted(table.loc[table["latitude"].isna(), "station"].unique().tolist())
        if unknown:
            raise ValueError(f"{where}: stations {unknown[:5]} are not in the station list")
    _require(table, ("latitude", "longitude"), f"{where} (or give stations=)")
    try:
        times = pd.to_datetime(table["time"], utc=True)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{where}: the times do not parse as dates ({error})") from None
    table = table.assign(time=times.dt.tz_convert(None).astype("datetime64[ns]"))
    table["value"] = pd.to_numeric(table["value"], errors="coerce").astype(np.float64)
    return table[list(COLUMNS)].dropna(subset=["value"]).reset_index(drop=True)


# --------------------------------------------------------------------------------------- from grid to stations
def station_points(
    latitudes: np.ndarray, longitudes: np.ndarray, *, crs: Any = None, x: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Stations' (y, x) in the grid's coordinates.

    Args:
        latitudes: (S,) degrees north.
        longitudes: (S,) degrees east.
        crs: the grid's coordinate reference system (anything ``pyproj.CRS.from_user_input`` takes: "EPSG:27700",
            a PROJ string, a CF grid-mapping dict); None for a latitude-longitude grid.
        x: the grid's x coordinate; on a latitude-longitude grid whose longitudes pass 180 (0 to 360), station
            longitudes are taken modulo 360 to match.

    Returns:
        (station_y, station_x), each (S,).
    """
    lat = np.asarray(latitudes, dtype=np.float64)
    lon = np.asarray(longitudes, dtype=np.float64)
    if crs is None:
        if x is not None and np.nanmax(x) > 180:
            lon = np.mod(lon, 360.0)
        return lat, lon
    try:
        import pyproj
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f'a projected grid needs pyproj: pip install "convlstm[weather]" ({error})', name="pyproj"
        ) from error
    target = pyproj.CRS.from_cf(dict(crs)) if isinstance(crs, Mapping) else pyproj.CRS.from_user_input(crs)
    transformer = pyproj.Transformer.from_crs("EPSG:4326", target, always_xy=True)
    px, py = transformer.transform(lon, lat)
    return np.asarray(py, dtype=np.float64), np.asarray(px, dtype=np.float64)


def interpolate_to_points(
    fields: np.ndarray, y: np.ndarray, x: np.ndarray, points_y: np.ndarray, points_x: np.ndarray
) -> np.ndarray:
    """Bilinear interpolation of fields on a rectilinear grid at points: (..., H, W) -> (..., S).

    The grid's coordinates may increase or decrease (ERA5's latitudes run north to south); a point exactly at a
    grid point gets that grid point's value, a point outside the grid NaN.

    Args:
        fields: (..., H, W).
        y: (H,) the rows' coordinate, strictly monotonic.
        x: (W,) the columns' coordinate, strictly monotonic.
        points_y: (S,) the points' y, in the grid's coordinates (``station_points`` gives them for stations).
        points_x: (S,) the points' x.
    """
    values = np.asarray(fields, dtype=np.float64)
    if values.ndim < 2 or values.shape[-2:] != (len(y), len(x)):
        raise ValueError(f"fields must be (..., H={len(y)}, W={len(x)}) like the grid, got shape {values.shape}")
    rows, row_weight, row_inside = _fractional_index(np.asarray(y, np.float64), np.asarray(points_y, np.float64))
    cols, col_weight, col_inside = _fractional_index(np.asarray(x, np.float64), np.asarray(points_x, np.float64))
    top_left = values[..., rows, cols]
    top_right = values[..., rows, cols + 1]
    bottom_left = values[..., rows + 1, cols]
    bottom_right = values[..., rows + 1, cols + 1]
    # A weight of exactly 0 drops a neighbour altogether, so a point on a grid point or edge takes its value as it is.
    top = _blend(top_left, top_right, col_weight)
    bottom = _blend(bottom_left, bottom_right, col_weight)
    return np.where(row_inside & col_inside, _blend(top, bottom, row_weight), np.nan)


def _blend(a: np.ndarray, b: np.ndarray, weight: np.ndarray) -> np.ndarray:
    return np.where(weight == 0, a, np.where(weight == 1, b, (1 - weight) * a + weight * b))


def _fractional_index(coords: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lower index i, weight of i + 1, inside) of each point along one axis of the grid."""
    if coords.ndim != 1 or len(coords) < 2:
        raise ValueError(f"grid coordinates must be 1-D with at least 2 values, got shape {coords.shape}")
    steps = np.diff(coords)
    if not ((steps > 0).all() or (steps < 0).all()):
        raise ValueError("grid coordinates must increase or decrease strictly")
    ascending = coords if steps[0] > 0 else coords[::-1]
    position = np.interp(points, ascending, np.arange(len(coords), dtype=np.float64))
    if steps[0] < 0:
        position = len(coords) - 1 - position
    inside = (points >= ascending[0]) & (points <= ascending[-1]) & np.isfinite(points)
    lower = np.clip(np.floor(position).astype(np.int64), 0, len(coords) - 2)
    return lower, position - lower, inside


def observations_at(
    observations: pd.DataFrame, stations: Sequence[str] | np.ndarray, valid_times: np.ndarray, tolerance: str = "30min"
) -> np.ndarray:
    """Each station's observation nearest each valid time, within ``tolerance``: (*valid_times.shape, S), NaN
    where it has none."""
    import pandas as pd

    window = pd.Timedelta(tolerance).to_timedelta64()
    wanted = np.asarray(valid_times).astype("datetime64[ns]")
    out = np.full((*wanted.shape, len(stations)), np.nan)
    flat = wanted.ravel()
    by_station = {name: group for name, group in observations.groupby("station")}
    for s, station in enumerate(stations):
        group = by_station.get(station)
        if group is None:
            continue
        group = group.sort_values("time")
        times = group["time"].to_numpy(dtype="datetime64[ns]")
        values = group["value"].to_numpy(dtype=np.float64)
        after = np.clip(np.searchsorted(times, flat), 0, len(times) - 1)
        before = np.clip(after - 1, 0, len(times) - 1)
        nearest = np.where(np.abs(times[before] - flat) <= np.abs(times[after] - flat), before, after)
        close = np.abs(times[nearest] - flat) <= window
        out.reshape(-1, len(stations))[:, s] = np.where(close, values[nearest], np.nan)
    return out


class StationScores:
    """Accumulates RMSE, MAE and bias (forecast - observed) per lead time over station observations.

    Args:
        lead_times: K, the forecast steps.
    """

    def __init__(self, lead_times: int) -> None:
        self.lead_times = check_int("lead_times", lead_times, 1)
        self.sums = {name: np.zeros(lead_times) for name in ("count", "error", "abs_error", "squared_error")}

    def update(self, forecast: np.ndarray, observed: np.ndarray) -> None:
        """Adds (B, K, S) forecasts at stations and their observations; NaN in either leaves the pair out."""
        f, o = np.asarray(forecast, np.float64), np.asarray(observed, np.float64)
        if f.shape != o.shape or f.ndim != 3 or f.shape[1] != self.lead_times:
            raise ValueError(f"forecast and observed must both be (B, {self.lead_times}, S), got {f.shape}, {o.shape}")
        valid = np.isfinite(f) & np.isfinite(o)
        error = np.where(valid, f - o, 0.0)
        self.sums["count"] += valid.sum(axis=(0, 2))
        self.sums["error"] += error.sum(axis=(0, 2))
        self.sums["abs_error"] += np.abs(error).sum(axis=(0, 2))
        self.sums["squared_error"] += (error**2).sum(axis=(0, 2))

    def compute(self) -> dict[str, np.ndarray]:
        """``rmse``, ``mae``, ``bias`` and ``count`` (observations scored), each (K,); NaN where none counted."""
        s = self.sums
        with np.errstate(divide="ignore", invalid="ignore"):
            return {
                "rmse": np.sqrt(s["squared_error"] / s["count"]),
                "mae": s["abs_error"] / s["count"],
                "bias": s["error"] / s["count"],
                "count": s["count"].copy(),
            }


def verify_at_stations(
    forecasts: np.ndarray,
    valid_times: np.ndarray,
    y: np.ndarray,
    x: np.ndarray,
    observations: pd.DataFrame,
    *,
    crs: Any = None,
    tolerance: str = "30min",
    scores: StationScores | None = None,
) -> StationScores:
    """Scores gridded forecasts against station observations, per lead time.

    Args:
        forecasts: (N, K, H, W) forecasts of one variable, in the observations' units.
        valid_times: (N, K) datetime64, the valid time of each forecast field.
        y: (H,) the grid's y coordinate (latitudes on a latitude-longitude grid).
        x: (W,) the grid's x coordinate.
        observations: a table as [`read_station_csv`][convlstm.metrics.read_station_csv] or
            [`read_metar`][convlstm.metrics.read_metar] return it.
        crs: the grid's coordinate reference system for a projected grid (anything
            ``pyproj.CRS.from_user_input`` takes, or a CF grid-mapping dict); None for latitude-longitude.
        tolerance: how far an observation may lie from a valid time ("30min", "10min").
        scores: an accumulator to add to (several batches of forecasts); None starts one.

    Returns:
        The accumulator; ``.compute()`` gives RMSE, MAE, bias and count per lead time.
    """
    fields = np.asarray(forecasts)
    times = np.asarray(valid_times)
    if fields.ndim != 4 or times.shape != fields.shape[:2]:
        raise ValueError(
            f"forecasts must be (N, K, H, W) with valid_times (N, K), got {fields.shape} and {times.shape}"
        )
    stations = Stations.from_observations(observations)
    points_y, points_x = station_points(stations.latitudes, stations.longitudes, crs=crs, x=x)
    at_stations = interpolate_to_points(fields, y, x, points_y, points_x)  # (N, K, S)
    observed = observations_at(observations, stations.ids, times, tolerance)
    scores = scores if scores is not None else StationScores(fields.shape[1])
    scores.update(at_stations, observed)
    return scores
