"""The reanalysis source on small archives the tests write: netCDF and zarr, and one real GRIB file written by
ecCodes. Channels from variables and levels, training-split statistics, time channels, longitude wrap, padding,
gaps and time-range splits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from convlstm.data import ReanalysisSequences
from convlstm.data.formats.reanalysis import parse_channel, time_feature_fields

LAT = np.array([52.0, 51.75, 51.5])  # north to south, as ERA5 and cfgrib give it
LON = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
SPLITS = {
    "train": ["2019-03-01", "2019-03-02"],
    "val": ["2019-03-02", "2019-03-02T12:00"],
    "test": ["2019-03-02T12:00", None],
}
HOURS = 48


def era(times: Any = None, *, lon: np.ndarray = LON) -> xr.Dataset:
    """t2m = 280 + t / 10 + row + column / 10 (K); z on two levels = level * 10 + t + row (m2/s2)."""
    times = pd.date_range("2019-03-01", periods=HOURS, freq="h") if times is None else times
    t = np.arange(len(times), dtype=np.float32)[:, None, None]
    rows = np.arange(len(LAT), dtype=np.float32)[None, :, None]
    cols = np.arange(len(lon), dtype=np.float32)[None, None, :]
    t2m = 280 + t / 10 + rows + cols / 10
    levels = np.array([500.0, 850.0])
    z = levels[None, :, None, None] * 10 + (t + rows)[:, None] + 0 * cols[:, None]
    return xr.Dataset(
        {
            "t2m": (("time", "latitude", "longitude"), t2m.astype(np.float32)),
            "z": (("time", "isobaricInhPa", "latitude", "longitude"), z.astype(np.float32)),
        },
        coords={"time": times, "isobaricInhPa": levels, "latitude": LAT, "longitude": lon},
    )


@pytest.fixture(params=["nc", "zarr"])
def archive(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    path = tmp_path / f"era.{request.param}"
    if request.param == "nc":
        era().to_netcdf(path)
    else:
        era().to_zarr(path, zarr_format=2, consolidated=True)
    return path


def _dataset(root: Any, split: str = "train", **kwargs: Any) -> ReanalysisSequences:
    options = {"variables": ["t2m", "z@850"], "context_frames": 3, "target_frames": 2, "splits": SPLITS, **kwargs}
    return ReanalysisSequences(root, split, **options)


def test_variables_and_levels_become_channels_in_data_units_after_to_fields(archive: Path) -> None:
    data = _dataset(archive, "test")
    source = era()
    assert data.channels == data.variables == ["t2m", "z@850"]
    item = data[4]  # test starts at hour 36: window 4 starts at hour 40
    assert item["context"].shape == (3, 2, 3, 5) and "mask" not in item
    fields = data.to_fields(torch.cat([item["context"], item["target"]]))
    np.testing.assert_allclose(fields[:, 0].numpy(), source.t2m.values[40:45], rtol=1e-6)
    np.testing.assert_allclose(fields[:, 1].numpy(), source.z.sel(isobaricInhPa=850).values[40:45], rtol=1e-6)
    assert data.window_times(4)[0] == np.datetime64("2019-03-02T16:00")
    assert [c.name for c in map(parse_channel, ["t2m", "z@500", "u@0.5"])] == ["t2m", "z@500", "u@0.5"]
    assert parse_channel("z@500").level == 500.0


def test_statistics_come_from_the_training_split_only(archive: Path, tmp_path: Path) -> None:
    source = era()
    train_t2m = source.t2m.values[:24].astype(np.float64)
    train_z = source.z.sel(isobaricInhPa=850).values[:24].astype(np.float64)
    statistics = tmp_path / "stats" / "era.json"
    test = _dataset(archive, "test", statistics=str(statistics))
    assert test.normalization is not None
    np.testing.assert_allclose(test.normalization.center, [train_t2m.mean(), train_z.mean()], rtol=1e-9)
    np.testing.assert_allclose(test.normalization.scale, [train_t2m.std(), train_z.std()], rtol=1e-6)
    # The test items are standardised by the training statistics: the test's later hours sit above the mean.
    item = test[0]
    expected = (source.t2m.values[36:39] - train_t2m.mean()) / train_t2m.std()
    np.testing.assert_allclose(item["context"][:, 0].numpy(), expected, rtol=1e-5)
    saved = json.loads(statistics.read_text())
    assert saved["variables"] == ["t2m", "z@850"] and saved["normalization"]["center"] == test.normalization.center
    # Read back for another split, and refused for other variables.
    assert _dataset(archive, "val", statistics=str(statistics)).normalization == test.normalization
    with pytest.raises(ValueError, match="were computed for"):
        _dataset(archive, "val", statistics=str(statistics), variables=["t2m"])
    raw = _dataset(archive, "test", normalize=False)
    assert raw.normalization is None
    np.testing.assert_allclose(raw[0]["context"][:, 0].numpy(), source.t2m.values[36:39])


def test_time_channels_are_inputs_the_mask_leaves_out(archive: Path) -> None:
    data = _dataset(archive, "train", time_features=["time_of_day", "local_time_of_day", "day_of_year"])
    assert data.channels[2:] == [
        "time_of_day_sin", "time_of_day_cos", "local_time_of_day_sin", "local_time_of_day_cos",
        "day_of_year_sin", "day_of_year_cos",
    ]  # fmt: skip
    item = data[6]  # 06:00 UTC on 1 March
    context = item["context"].numpy()
    np.testing.assert_allclose(context[0, 2:4], [[[1.0]], [[0.0]]] * np.ones((2, 3, 5)), atol=1e-6)  # a quarter day
    # Solar time: 4 minutes per degree east; at 1 degree east it is 06:04.
    angle = 2 * np.pi * (360 + 4 * LON) / 1440
    np.testing.assert_allclose(context[0, 4], np.broadcast_to(np.sin(angle), (3, 5)), atol=1e-6)
    day = 2 * np.pi * (59 + 0.25) / 365.25  # 1 March 2019 is day 60, 59 days after 1 January
    np.testing.assert_allclose(context[0, 6], np.sin(day), atol=1e-6)
    assert item["mask"].shape == item["target"].shape
    np.testing.assert_array_equal(item["mask"][:, :2].numpy(), 1.0)
    np.testing.assert_array_equal(item["mask"][:, 2:].numpy(), 0.0)
    with pytest.raises(ValueError, match="time_features"):
        _dataset(archive, time_features=["hour"])


def test_time_features_of_a_known_time() -> None:
    times = np.array(["2019-03-01T18:00"], dtype="datetime64[ns]")
    fields = time_feature_fields(times, ["time_of_day"], None, (2, 2))
    np.testing.assert_allclose(fields[0, :, 0, 0], [-1.0, 0.0], atol=1e-6)  # three quarters of a day


def test_longitudes_wrap_around_a_global_grid(tmp_path: Path) -> None:
    lon = np.arange(0.0, 360.0, 45.0)  # 8 columns around the globe
    path = tmp_path / "global.nc"
    era(lon=lon).to_netcdf(path)
    data = _dataset(path, "train", variables=["t2m"], wrap_longitude=2, pad_to_multiple=4, normalize=False)
    item = data[0]
    assert item["context"].shape == (3, 1, 4, 12)  # 3 rows + 1 padded; 2 + 8 + 2 columns
    context = item["context"][0, 0].numpy()
    np.testing.assert_array_equal(context[:3, :2], context[:3, 8:10])  # left pad = the east edge
    np.testing.assert_array_equal(context[:3, 10:], context[:3, 2:4])  # right pad = the west edge
    np.testing.assert_array_equal(context[3], context[2])  # the bottom row repeats the last
    assert "mask" not in item  # padded cells are true values, copies of the grid's: they count
    np.testing.assert_array_equal(data.to_fields(item["context"])[0, 0].numpy(), era(lon=lon).t2m.values[0])
    with pytest.raises(ValueError, match="needs a longitude dimension"):
        _dataset(tmp_path / "global.nc", variables=["t2m"], wrap_longitude=1, y_dim="longitude", x_dim="latitude")
    era().to_netcdf(tmp_path / "regional.nc")
    with pytest.raises(ValueError, match="global grid"):
        _dataset(tmp_path / "regional.nc", variables=["t2m"], wrap_longitude=1)


def test_padding_to_a_multiple_repeats_the_edges_and_to_fields_cuts_it_off(archive: Path) -> None:
    data = _dataset(archive, "train", pad_to_multiple=2, time_features=["time_of_day"])
    item = data[0]
    assert item["target"].shape == (2, 4, 4, 6)
    target = item["target"].numpy()
    np.testing.assert_array_equal(target[:, :, 3], target[:, :, 2])
    np.testing.assert_array_equal(target[:, :, :, 5], target[:, :, :, 4])
    np.testing.assert_array_equal(item["mask"][:, :2].numpy(), 1.0)  # padded cells too: only time channels are out
    fields = data.to_fields(item["target"])
    assert fields.shape == (2, 2, 3, 5)
    np.testing.assert_allclose(fields[:, 0].numpy(), era().t2m.values[3:5], rtol=1e-6)


def test_no_window_spans_a_gap_and_splits_keep_to_their_times(tmp_path: Path) -> None:
    times = pd.date_range("2019-03-01", periods=HOURS, freq="h").delete([10, 30])  # two missing hours
    path = tmp_path / "gaps.nc"
    era(times).to_netcdf(path)
    windows = {}
    for split in ("train", "val", "test"):
        data = _dataset(path, split)
        start, end = (np.datetime64(t) if t else None for t in SPLITS[split])
        for i in range(len(data)):
            stamps = data.window_times(i)
            assert (np.diff(stamps) == np.timedelta64(1, "h")).all(), stamps
            assert stamps[0] >= start and (end is None or stamps[-1] < end)
        windows[split] = len(data)
    # train 00-23 UTC without 10: runs of 10 and 13 hours (6 + 9 windows of 5); val 24-35 without 30: 6 and 5 (2 + 1);
    # test 36-47: 12 hours (8 windows).
    assert windows == {"train": 15, "val": 3, "test": 8}


def test_several_files_are_recordings_of_their_own(tmp_path: Path) -> None:
    source = era()
    source.isel(time=slice(24, None)).to_netcdf(tmp_path / "era_2.nc")
    source.isel(time=slice(None, 24)).to_netcdf(tmp_path / "era_1.nc")
    data = _dataset(str(tmp_path / "era_*.nc"), "all", splits=None)
    assert [f.name for f in data.files] == ["era_1.nc", "era_2.nc"]
    assert len(data) == 2 * (24 - 5 + 1)  # no window across the two files
    fields, times = data.fields()
    np.testing.assert_allclose(fields[:, 0], source.t2m.values, rtol=1e-6)
    assert (times == source.time.values).all()
    part, part_times = data.fields("2019-03-01T20:00", "2019-03-02T02:00")  # across the two files
    np.testing.assert_allclose(part[:, 0], source.t2m.values[20:26], rtol=1e-6)
    assert (part_times == source.time.values[20:26]).all()
    chunks = list(data.iter_fields(chunk_frames=10))
    assert [len(c[1]) for c in chunks] == [10, 10, 4, 10, 10, 4]
    listed = _dataset([str(tmp_path / "era_2.nc"), str(tmp_path / "era_1.nc")], "all", splits=None)
    assert len(listed) == len(data)
    source.isel(time=slice(20, 30)).to_netcdf(tmp_path / "era_3.nc")
    with pytest.raises(ValueError, match="overlap in time"):
        _dataset(str(tmp_path / "era_*.nc"), "all", splits=None)


def test_coordinates_write_a_forecast_back(archive: Path) -> None:
    data = _dataset(archive, "test")
    forecast = data.coords(0).to_dataset(data.to_fields(data[0]["target"]))
    assert set(forecast.data_vars) == {"t2m", "z@850"} and forecast.sizes["lead_time"] == 2
    assert forecast["valid_time"].values[0] == np.datetime64("2019-03-02T15:00")
    np.testing.assert_allclose(forecast["t2m"].values, era().t2m.values[39:41], rtol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"variables": ["t2"]}, r"no variable 't2'"),
        ({"variables": ["z"]}, r"name a level as z@<level>"),
        ({"variables": ["z@300"]}, r"no level 300 along 'isobaricInhPa'"),
        ({"variables": ["t2m@500"]}, r"asks for a level"),
        ({"variables": ["t2m", "t2m"]}, "distinct"),
        ({"variables": ["z @ 500"]}, "a variable at a level"),
        ({"split": "all", "splits": {"fit": ["2019-03-01", None]}}, r"takes its statistics from split 'train'"),
        ({"x_dim": "lng"}, r"no dimension 'lng'"),
        ({"context_frames": 30}, r"no stretch of 32 consecutive frames"),
        ({"statistics": "x.json", "normalize": False}, "needs normalize=True"),
    ],
)
def test_bad_arguments_are_named(archive: Path, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _dataset(archive, **kwargs)


def test_a_split_not_in_splits_is_refused(archive: Path) -> None:
    with pytest.raises(ValueError, match=r"split must be one of \['all', 'train', 'val', 'test'\], got 'holdout'"):
        _dataset(archive, "holdout")


def write_grib(path: Path, hours: int) -> np.ndarray:
    """Hourly 2 m temperature on the 3 x 5 grid as GRIB 2 messages written by ecCodes; returns the values written."""
    eccodes = pytest.importorskip("eccodes")
    values = np.stack([era().t2m.values[t] for t in range(hours)]).astype(np.float64)
    with open(path, "wb") as out:
        for t in range(hours):
            handle = eccodes.codes_grib_new_from_samples("regular_ll_sfc_grib2")
            for key, value in (("Ni", len(LON)), ("Nj", len(LAT)), ("bitsPerValue", 24)):
                eccodes.codes_set_long(handle, key, value)
            for key, value in (
                ("latitudeOfFirstGridPointInDegrees", LAT[0]),
                ("latitudeOfLastGridPointInDegrees", LAT[-1]),
                ("longitudeOfFirstGridPointInDegrees", LON[0]),
                ("longitudeOfLastGridPointInDegrees", LON[-1]),
                ("iDirectionIncrementInDegrees", 0.25),
                ("jDirectionIncrementInDegrees", 0.25),
            ):
                eccodes.codes_set(handle, key, float(value))
            eccodes.codes_set_long(handle, "dataDate", 20190301 + t // 24)
            eccodes.codes_set_long(handle, "dataTime", (t % 24) * 100)
            eccodes.codes_set_string(handle, "shortName", "2t")
            eccodes.codes_set_values(handle, values[t].ravel())
            eccodes.codes_write(handle, out)
            eccodes.codes_release(handle)
    return values


def test_a_real_grib_file_written_by_eccodes(tmp_path: Path) -> None:
    pytest.importorskip("cfgrib", reason="reading GRIB needs cfgrib (pip install 'convlstm[weather]')")
    path = tmp_path / "era5.grib"
    written = write_grib(path, HOURS)
    data = _dataset(path, "test", variables=["t2m"], time_features=["time_of_day"])
    assert data.dims == ("time", "latitude", "longitude")
    np.testing.assert_array_equal(data.y, LAT)
    fields = data.to_fields(data[0]["context"]).numpy()
    # 24-bit packing of values spanning 9 K keeps them to about 1e-6 K.
    np.testing.assert_allclose(fields[:, 0], written[36:39], atol=1e-4)
    assert not list(tmp_path.glob("*.idx"))  # cfgrib wrote no index file beside the data
