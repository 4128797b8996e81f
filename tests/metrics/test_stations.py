"""Forecasts at stations: bilinear interpolation in the grid's coordinates (a station at a grid point gets the grid
value), observations from a CSV file or METAR reports the tests write, scores per lead time."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from convlstm.metrics import StationScores, interpolate_to_points, read_metar, read_station_csv, verify_at_stations
from convlstm.metrics.stations import observations_at, station_points

LAT = np.array([58.0, 57.75, 57.5, 57.25])  # north to south, as ERA5 stores it
LON = np.array([-3.0, -2.75, -2.5, -2.25, -2.0])
T0 = np.datetime64("2019-03-25T00:00", "ns")
HOUR = np.timedelta64(1, "h")


def _field(seed: int = 0) -> np.ndarray:
    return 275 + np.random.default_rng(seed).normal(size=(len(LAT), len(LON)))


def test_a_point_at_a_grid_point_gets_the_grid_value_and_a_linear_field_is_exact_between() -> None:
    field = _field()
    at_nodes = interpolate_to_points(field, LAT, LON, np.array([57.75, 58.0, 57.25]), np.array([-2.5, -3.0, -2.0]))
    np.testing.assert_array_equal(at_nodes, [field[1, 2], field[0, 0], field[3, 4]])
    # Bilinear interpolation reproduces a field linear in latitude and longitude anywhere inside the grid.
    linear = 2.0 * LAT[:, None] - 3.0 * LON[None, :] + 0.5 * LAT[:, None] * LON[None, :]
    y, x = np.array([57.3, 57.9, 57.61]), np.array([-2.9, -2.01, -2.33])
    np.testing.assert_allclose(interpolate_to_points(linear, LAT, LON, y, x), 2 * y - 3 * x + 0.5 * y * x, rtol=1e-12)
    outside = interpolate_to_points(field[None], LAT, LON, np.array([56.0, 57.5]), np.array([-2.5, -1.0]))
    assert outside.shape == (1, 2) and np.isnan(outside).all()


def test_a_projected_grid_is_interpolated_in_its_own_coordinates() -> None:
    pyproj = pytest.importorskip("pyproj")
    crs = "EPSG:27700"  # British National Grid, metres
    transformer = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    east, north = transformer.transform(-1.5, 53.0)
    x = east + 1000.0 * np.arange(-2, 3)  # the station on the middle column and row
    y = north + 1000.0 * np.arange(-1, 2)
    field = np.arange(15.0).reshape(3, 5)
    py, px = station_points(np.array([53.0]), np.array([-1.5]), crs=crs)
    assert interpolate_to_points(field, y, x, py, px)[0] == field[1, 2]
    # Half a cell east of it (in metres): half-way between two columns.
    assert interpolate_to_points(field, y, x, py, px + 500.0)[0] == pytest.approx((field[1, 2] + field[1, 3]) / 2)


def test_longitudes_of_a_0_to_360_grid() -> None:
    y, x = station_points(np.array([51.5]), np.array([-0.25]), x=np.arange(0.0, 360.0, 0.25))
    assert (y[0], x[0]) == (51.5, 359.75)


def _write_csv(tmp_path: Path, field: np.ndarray) -> Path:
    """Station A at grid point (57.75 N, 2.5 W), B between grid points, C outside the grid; hourly values."""
    rows = []
    for hour in range(3):
        time = pd.Timestamp(T0 + hour * HOUR)
        rows.append({"station": "A", "time": time.isoformat(), "value": field[1, 2] + hour})
        rows.append({"station": "B", "time": (time + pd.Timedelta("10min")).isoformat(), "value": 280.0})
        rows.append({"station": "C", "time": time.isoformat(), "value": 1.0})
    path = tmp_path / "observations.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    stations = tmp_path / "stations.csv"
    pd.DataFrame({"station": ["A", "B", "C"], "lat": [57.75, 57.6, 40.0], "lon": [-2.5, -2.1, -2.5]}).to_csv(
        stations, index=False
    )
    return path


def test_csv_observations_score_a_forecast_per_lead_time(tmp_path: Path) -> None:
    field = _field(1)
    observations = read_station_csv(_write_csv(tmp_path, field), stations=tmp_path / "stations.csv")
    assert list(observations.columns) == ["station", "time", "value", "latitude", "longitude"]
    assert observations["time"].dtype == np.dtype("datetime64[ns]")
    forecasts = np.broadcast_to(field, (1, 3, *field.shape))  # one forecast, the same field at 3 lead times
    valid = (T0 + np.arange(3) * HOUR)[None]
    result = verify_at_stations(forecasts, valid, LAT, LON, observations, tolerance="15min").compute()
    # Station A (on a grid point) observed the grid value + lead - 1; B, 10 min off, is bilinear; C counts nowhere.
    at_b = interpolate_to_points(field, LAT, LON, np.array([57.6]), np.array([-2.1]))[0]
    errors = np.array([[0.0 - k, at_b - 280.0] for k in range(3)])  # (lead, station)
    np.testing.assert_allclose(result["count"], [2, 2, 2])
    np.testing.assert_allclose(result["bias"], errors.mean(axis=1), rtol=1e-10)
    np.testing.assert_allclose(result["mae"], np.abs(errors).mean(axis=1), rtol=1e-10)
    np.testing.assert_allclose(result["rmse"], np.sqrt((errors**2).mean(axis=1)), rtol=1e-10)
    narrow = verify_at_stations(forecasts, valid, LAT, LON, observations, tolerance="5min").compute()
    np.testing.assert_allclose(narrow["count"], [1, 1, 1])  # B's reports lie 10 minutes from the hour


def test_observations_nearest_in_time_within_the_tolerance() -> None:
    observations = pd.DataFrame(
        {
            "station": ["A", "A", "A"],
            "time": np.array(["2019-03-25T00:50", "2019-03-25T01:20", "2019-03-25T03:00"], dtype="datetime64[ns]"),
            "value": [1.0, 2.0, 3.0],
        }
    )
    valid = T0 + np.array([1, 2, 3]) * HOUR
    np.testing.assert_array_equal(observations_at(observations, ["A", "B"], valid, "30min")[:, 0], [1.0, np.nan, 3.0])
    assert np.isnan(observations_at(observations, ["A", "B"], valid, "30min")[:, 1]).all()


METARS = """EGPD 250050Z 24010KT 9999 FEW030 04/01 Q1012=
EGPD 250150Z 24011KT 9999 FEW030
     05/01 Q1012=
EGQL 250050Z 27020KT 9999 BKN025 M02/M06 Q1004=
NOT A METAR AT ALL BUT LONG ENOUGH TO TRY
XXXX 250050Z 27020KT 9999 BKN025 07/03 Q1004=
"""


def test_metar_reports_become_observations_in_kelvin(tmp_path: Path) -> None:
    pytest.importorskip("metpy")
    path = tmp_path / "metars.txt"
    path.write_text(METARS)
    stations = pd.DataFrame({"station": ["EGPD", "EGQL"], "latitude": [57.75, 57.5], "longitude": [-2.5, -2.75]})
    observations = read_metar(path, year=2019, month=3, stations=stations)
    # XXXX has no position and the line of text is no report: left out. The continued report counts.
    assert observations["station"].tolist() == ["EGPD", "EGPD", "EGQL"]
    np.testing.assert_allclose(observations["value"], [277.15, 278.15, 271.15])
    times = ["2019-03-25T00:50", "2019-03-25T01:50", "2019-03-25T00:50"]
    assert observations["time"].tolist() == [pd.Timestamp(t) for t in times]
    # A forecast holding the grid values: the stations sit on grid points, so the errors are exact.
    field = np.zeros((len(LAT), len(LON)))
    field[1, 2], field[2, 1] = 277.65, 271.15  # EGPD's grid point 0.5 K warm at 01:00; EGQL's exact
    scores = StationScores(lead_times=2)
    verify_at_stations(field[None, None].repeat(2, 1), (T0 + np.array([1, 2]) * HOUR)[None], LAT, LON,
                       observations, scores=scores)  # fmt: skip
    result = scores.compute()
    np.testing.assert_allclose(result["count"], [2, 1])  # 01:00 takes the 00:50 reports; 02:00 EGPD's 01:50
    np.testing.assert_allclose(result["bias"], [0.25, -0.5])
    assert result["rmse"][0] == pytest.approx(math.sqrt(0.5**2 / 2))


def test_bad_station_files_are_named(tmp_path: Path) -> None:
    path = tmp_path / "obs.csv"
    pd.DataFrame({"station": ["A"], "time": ["2019-03-25T00:00"], "value": [1.0]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match="give stations="):
        read_station_csv(path)
    with pytest.raises(ValueError, match=r"not in the station list"):
        read_station_csv(path, stations=pd.DataFrame({"station": ["B"], "lat": [1.0], "lon": [2.0]}))
    with pytest.raises(ValueError, match=r"no column \['temperature'\]"):
        read_station_csv(path, value="temperature")
    with pytest.raises(FileNotFoundError, match="station file not found"):
        read_station_csv(tmp_path / "missing.csv")
