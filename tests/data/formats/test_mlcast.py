"""The mlcast source reads stores written here in the mlcast convention (one the validator accepts), converts
every rain standard_name to mm/h, rebuilds the time axis, and cuts it wherever a window must not reach across."""

import logging
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import pandas as pd
import pyproj
import pytest
import torch
import xarray as xr
from xarray.backends import zarr as zarr_backend

from convlstm.data.core.sampling import RainBiasedPatches
from convlstm.data.formats.mlcast import MlcastSequences, parse_splits, rain_conversion, time_runs
from convlstm.units import dbz_to_rain_rate, rain_rate_to_pixel

# The time axis: 6 hourly frames in 2020 before consistent_timestep_start, then 18 slots of 5 minutes from
# 2023-01-01 (three years later: the convention asks for 3 years), of which slot 8 is listed in missing_times and
# slot 13 is all NaN. Rows 0 and 1 are NaN in every frame (outside the radars' range).
EARLY = pd.date_range("2020-01-01", periods=6, freq="h")
CONSISTENT_START = "2023-01-01T00:00:00"
SLOTS = pd.date_range(CONSISTENT_START, periods=18, freq="5min")
MISSING_SLOT, EMPTY_SLOT = 8, 13
TIMES = EARLY.append(SLOTS.delete(MISSING_SLOT))
EMPTY = len(EARLY) + EMPTY_SLOT - 1  # index of the all-NaN frame in TIMES
#: [start, stop) of the runs a window may come from, indices into TIMES
RUNS = [(0, 6), (6, 14), (14, EMPTY), (EMPTY + 1, len(TIMES))]
#: hours each frame's amount fell over (its time step)
STEP_HOURS = np.array([1.0] * len(EARLY) + [5 / 60] * (len(TIMES) - len(EARLY)), dtype=np.float32)

#: name -> (standard_name, units, extra attributes); the names are those the validator allows for each
VARIABLES: dict[str, tuple[str, str, dict[str, str]]] = {
    "rr": ("rainfall_flux", "kg m-2 h-1", {}),
    "prate": ("precipitation_flux", "mm h-1", {}),
    "dbz": ("equivalent_reflectivity_factor", "dBZ", {}),
    "tp": ("precipitation_amount", "kg m-2", {}),
    "mm": ("rainfall_amount", "mm", {"cell_methods": "time: sum (interval: 10 minutes)"}),
}


def rain(size: int) -> np.ndarray:
    """(T, size, size) rain rates in mm/h in [0.1, 20), NaN in the first two rows and at the all-NaN frame."""
    rng = np.random.default_rng(0)
    values = (0.1 + 20 * rng.random((len(TIMES), size, size)) ** 3).astype(np.float32)
    values[:, :2] = np.nan
    values[EMPTY] = np.nan
    return values


def stored(name: str, rate: np.ndarray) -> np.ndarray:
    """What variable ``name`` holds for rain rates ``rate`` (mm/h)."""
    standard_name = VARIABLES[name][0]
    if standard_name == "equivalent_reflectivity_factor":
        return (10 * np.log10(200.0) + 16 * np.log10(rate)).astype(np.float32)  # Marshall-Palmer
    if name == "mm":
        return rate * np.float32(10 / 60)  # its cell_methods: 10-minute sums
    if standard_name.endswith("_amount"):
        return rate * STEP_HOURS[:, None, None]
    return rate


def mlcast_dataset(size: int, variables: Sequence[str] = ("rr",), units: dict[str, str] | None = None) -> xr.Dataset:
    """An mlcast-convention dataset: projected x / y at 1 km in ETRS89-LAEA, lat / lon, a crs variable, the
    global attributes the convention asks for."""
    crs = pyproj.CRS.from_epsg(3035)
    cf = crs.to_cf()
    x = 4_000_000.0 + 1000.0 * np.arange(size)
    y = 3_000_000.0 - 1000.0 * np.arange(size)
    lon, lat = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(*np.meshgrid(x, y))
    rate = rain(size)
    data_vars: dict[str, Any] = {"crs": ((), np.int32(0), {**cf, "spatial_ref": cf["crs_wkt"]})}
    for name in variables:
        standard_name, unit, extra = VARIABLES.get(name, ("air_temperature", "K", {}))
        attrs = {"standard_name": standard_name, "units": (units or {}).get(name, unit), "long_name": name, **extra}
        values = stored(name, rate) if name in VARIABLES else rate
        data_vars[name] = (("time", "y", "x"), values, {**attrs, "grid_mapping": "crs"})
    coords = {
        "time": ("time", TIMES, {"standard_name": "time"}),
        "missing_times": ("missing_times", SLOTS[[MISSING_SLOT]]),
        "y": ("y", y, {"standard_name": "projection_y_coordinate", "units": "m", "axis": "Y"}),
        "x": ("x", x, {"standard_name": "projection_x_coordinate", "units": "m", "axis": "X"}),
        "lat": (("y", "x"), lat, {"standard_name": "latitude", "units": "degrees_north"}),
        "lon": (("y", "x"), lon, {"standard_name": "longitude", "units": "degrees_east"}),
    }
    attrs = {
        "consistent_timestep_start": CONSISTENT_START,
        "license": "CC-BY-4.0",
        "mlcast_created_on": "2025-01-01T00:00:00Z",
        "mlcast_created_by": "convlstm tests <tests@example.org>",
        "mlcast_created_with": "https://github.com/mlcast-community/mlcast-dataset-xx-convlstm@v0.1.0",
        "mlcast_dataset_version": "0.1.0",
        "mlcast_dataset_validator_version": "0.4.0",
        "mlcast_dataset_identifier": "XX-convlstm-rainfall_flux",
    }
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def write_mlcast_store(
    path: Path,
    *,
    size: int = 16,
    variables: Sequence[str] = ("rr",),
    zarr_format: int = 2,
    units: dict[str, str] | None = None,
) -> Path:
    """Writes :func:`mlcast_dataset` as the convention asks: one chunk per time step, zstd, consolidated metadata."""
    dataset = mlcast_dataset(size, variables, units)
    zstd = numcodecs.Zstd() if zarr_format == 2 else __import__("zarr").codecs.ZstdCodec()
    encoding = {name: {"chunks": (1, size, size), "compressors": [zstd]} for name in variables}
    dataset.to_zarr(path, zarr_format=zarr_format, consolidated=True, mode="w", encoding=encoding)
    return path


def write_mlcast_case(folder: Path) -> dict[str, Any]:
    """A store and the data.args of a recipe that trains on 2020, validates and tests on two runs of 2023."""
    write_mlcast_store(folder / "radar.zarr")
    splits = {
        "train": ["2020-01-01", "2021-01-01"],
        "val": ["2023-01-01T00:00", "2023-01-01T00:40"],
        "test": ["2023-01-01T00:40", None],
    }
    return {"root": str(folder / "radar.zarr"), "splits": splits, "units": "pixel"}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mlcast_store(tmp_path_factory.mktemp("mlcast") / "radar.zarr")


def windows(root: Path | str, split: str = "all", **kwargs: Any) -> MlcastSequences:
    options: dict[str, Any] = {"context_frames": 2, "target_frames": 2, **kwargs}
    return MlcastSequences(root, split, **options)


def spans(data: MlcastSequences) -> list[tuple[int, int]]:
    return [(rec.start, rec.start + rec.num_frames) for rec in data.recordings]


def test_the_validator_accepts_the_store_and_it_reads_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlcast_dataset_validator.checks.global_attributes import mlcast_metadata
    from mlcast_dataset_validator.specs.source_data import radar_precipitation

    def offline(*_: Any) -> bool:  # the validator asks GitHub whether mlcast_created_with exists; tests stay offline
        raise mlcast_metadata.RequestException("tests do not reach the network")

    monkeypatch.setattr(mlcast_metadata, "github_repo_exists", offline)
    root = write_mlcast_store(tmp_path / "radar.zarr", size=256)  # the convention asks for 256 x 256 at least
    report, _ = radar_precipitation.validate_dataset(xr.open_zarr(root))
    fails = [f"{r.section} {r.requirement}: {r.detail}" for r in report.results if r.status == "FAIL"]
    assert not fails
    warned = {r.requirement for r in report.results if r.status == "WARNING"}
    # Only what an offline machine without GDAL or cartopy cannot check.
    assert warned <= {"GDAL availability", "Cartopy availability", "Creator software GitHub repository"}, warned

    data = windows(root, context_frames=3, target_frames=1)
    expected = rain(256)
    item = data[len(data) - 1]  # the last window: frames 19 to 22
    valid = np.isfinite(expected[19:22])
    np.testing.assert_allclose(item["context"][:, 0].numpy()[valid], expected[19:22][valid])
    assert spans(data) == RUNS


@pytest.mark.parametrize("name", list(VARIABLES))
def test_every_standard_name_becomes_mm_per_hour(name: str, tmp_path: Path) -> None:
    data = windows(write_mlcast_store(tmp_path / "radar.zarr", variables=[name]))
    assert data.conversion.variable == name and data.conversion.standard_name == VARIABLES[name][0]
    expected = rain(16)
    for index in (0, len(data) - 1):  # a window of hourly frames and one of 5-minute frames
        item, times = data[index], data.window_times(index)
        first = int(np.searchsorted(TIMES.values, times[0]))
        truth = expected[first : first + 4, None]
        valid = np.isfinite(truth)
        frames = torch.cat([item["context"], item["target"]]).numpy()
        np.testing.assert_allclose(frames[valid], truth[valid], rtol=1e-5)
        mask = torch.cat([item["context_mask"], item["mask"]]).numpy()
        np.testing.assert_array_equal(mask, valid)


def test_a_zr_relation_and_an_accumulation_period_can_be_given(tmp_path: Path) -> None:
    root = write_mlcast_store(tmp_path / "radar.zarr", variables=["dbz", "tp"])
    dbz = xr.open_zarr(root)["dbz"].values
    hko = windows(root, variable="dbz", zr="hko7")
    pair = windows(root, variable="dbz", zr=[58.53, 1.56])
    expected = dbz_to_rain_rate(dbz[2:4], "hko7")
    valid = np.isfinite(expected)
    for data in (hko, pair):
        np.testing.assert_allclose(data[2]["context"][:, 0].numpy()[valid], expected[valid], rtol=1e-5)
    # Amounts said to be 10-minute sums: the rate is 6 times the amount, whatever the time step.
    amounts = windows(root, variable="tp", accumulation="10min")
    tp = xr.open_zarr(root)["tp"].values[2:4]
    valid = np.isfinite(tp)
    np.testing.assert_allclose(amounts[2]["context"][:, 0].numpy()[valid], 6 * tp[valid], rtol=1e-5)


def test_rain_conversion_of_units_per_second() -> None:
    flux = xr.DataArray([1.0], attrs={"standard_name": "precipitation_flux", "units": "kg m-2 s-1"})
    conversion = rain_conversion(flux, "pr")
    np.testing.assert_allclose(conversion.to_rain_rate(np.array([1.0, np.nan])), [3600.0, np.nan])


def test_the_time_axis_is_cut_at_missing_times_empty_frames_and_changes_of_step(
    store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="convlstm.data.formats.mlcast"):
        data = windows(store)
    assert spans(data) == RUNS
    assert data.empty_frames.tolist() == [EMPTY]
    assert "1 frames are all NaN" in caplog.text
    missing = SLOTS[MISSING_SLOT]
    for index in range(len(data)):
        times = data.window_times(index)
        steps = np.diff(times)
        assert (steps == steps[0]).all()  # one time step
        assert not (times[0] < missing < times[-1])  # no gap inside
        assert TIMES[EMPTY] not in times
    # Hourly windows and 5-minute windows, never one that starts in 2020 and ends in 2023.
    assert {np.diff(data.window_times(i))[0] for i in range(len(data))} == {
        np.timedelta64(1, "h"),
        np.timedelta64(5, "m"),
    }


def test_without_the_scan_an_empty_frame_is_read_as_no_coverage(store: Path) -> None:
    data = windows(store, scan_empty_frames=False, context_frames=1, target_frames=1)
    assert spans(data) == [(0, 6), (6, 14), (14, len(TIMES))]
    index = next(i for i in range(len(data)) if data.window_times(i)[0] == TIMES[EMPTY])
    item = data[index]
    assert item["context_mask"].sum() == 0 and item["context"].abs().sum() == 0
    assert item["mask"].sum() > 0


def test_a_worker_gets_the_same_items(store: Path) -> None:
    data = windows(store, patch_size=8)
    copy = pickle.loads(pickle.dumps(data))  # as a spawned DataLoader worker receives it: it opens the store again
    for key, value in data[5].items():
        torch.testing.assert_close(copy[5][key], value, rtol=0, atol=0)


def test_nan_is_no_coverage(store: Path) -> None:
    item = windows(store)[0]
    assert item["context_mask"][:, :, :2].sum() == 0 and item["context"][:, :, :2].abs().sum() == 0
    assert item["context_mask"][:, :, 2:].min() == 1
    assert torch.isfinite(item["context"]).all()


def test_reading_a_window_reads_only_its_frames(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[tuple[int, ...]] = []
    original = zarr_backend.ZarrArrayWrapper.__getitem__

    def spy(self: Any, key: Any) -> Any:
        result = original(self, key)
        reads.append(np.shape(result))
        return result

    monkeypatch.setattr(zarr_backend.ZarrArrayWrapper, "__getitem__", spy)
    data = windows(store, scan_empty_frames=False)
    assert not [s for s in reads if len(s) == 3]  # building it read no field
    data[7]
    assert [s for s in reads if len(s) == 3] == [(4, 16, 16)]


def test_splits_are_time_ranges(store: Path) -> None:
    splits = {
        "train": ["2020-01-01", "2021-01-01"],
        "test": [["2023-01-01T00:10", "2023-01-01T00:30"], ["2023-01-01T00:45", None]],
    }
    train, test = (windows(store, split, splits=splits) for split in ("train", "test"))
    assert spans(train) == [(0, 6)]
    assert spans(test) == [(8, 12), *RUNS[2:]]  # 00:10 to 00:25, then the runs from 00:45 on
    # Chronological by default: the first 80 % of the times train, the last 10 % test.
    default = {split: windows(store, split, context_frames=1, target_frames=1) for split in ("train", "val", "test")}
    assert spans(default["train"])[-1][1] <= spans(default["val"])[0][0]
    assert spans(default["val"])[-1][1] <= spans(default["test"])[0][0]
    assert spans(default["test"])[-1][1] == len(TIMES)


def test_patches_and_pixels(store: Path) -> None:
    data = windows(store, "all", patch_size=8, units="pixel")
    item = data[3]
    assert item["context"].shape == (2, 1, 8, 8) and item["mask"].shape == (2, 1, 8, 8)
    assert item["weight"].ndim == 0 and item["origin"].shape == (2,)
    top, left = item["origin"].tolist()
    # Drawn by the context frames only (favour_rain_in), the weight is that of the context's acceptance.
    by_context = windows(store, "all", patch_size=8, rain_threshold=10.0, favour_rain_in="context")[3]
    first = int(np.searchsorted(TIMES.values, data.window_times(3)[0]))
    frames = rain(16)[first : first + 4, None]
    patches = RainBiasedPatches(8, threshold=10.0)
    accept = patches.acceptance(frames[:2], np.isfinite(frames[2:]))
    assert not np.allclose(accept, patches.acceptance(frames, np.isfinite(frames[2:])))
    row, column = by_context["origin"].tolist()
    assert float(by_context["weight"]) == pytest.approx(accept.mean() / accept[row, column], rel=1e-6)
    whole = windows(store, "all", units="pixel")[3]
    np.testing.assert_allclose(item["context"].numpy(), whole["context"][:, :, top : top + 8, left : left + 8].numpy())
    assert float(whole["context"].max()) <= 1.0
    first = int(np.searchsorted(TIMES.values, data.window_times(3)[0]))  # window 3 is the second run's first
    expected = rain_rate_to_pixel(rain(16)[first : first + 2, 2:], "hko7")
    np.testing.assert_allclose(whole["context"][:, 0, 2:].numpy(), expected, rtol=1e-5, atol=1e-6)
    # Augmented: the same patch, turned or mirrored (split "train" only).
    turned = windows(store, "train", patch_size=8, units="pixel", augment=True, context_frames=1, target_frames=1)
    plain = windows(store, "train", patch_size=8, units="pixel", context_frames=1, target_frames=1)
    symmetries = [torch.rot90(plain[0]["context"], k, (-2, -1)) for k in range(4)]
    symmetries += [s.flip(-1) for s in symmetries]
    assert any(torch.equal(turned[0]["context"], s) for s in symmetries)


def test_time_runs_before_a_consistent_time_step() -> None:
    minutes = np.array([0, 15, 30, 45, 50, 55, 60, 180, 185, 190], dtype="timedelta64[m]")
    times = np.datetime64("2020-01-01T00:00") + minutes
    runs, steps = time_runs(times, np.array([], "datetime64[ns]"), np.datetime64("2021-01-01"))
    # 15-minute steps, then 5-minute ones (45 stays with the first), a lone 2-hour step is a gap.
    assert runs == [(0, 4), (4, 7), (7, 10)]
    assert steps[0] == np.timedelta64(15, "m") and steps[5] == np.timedelta64(5, "m")


def test_time_runs_cut_unlisted_gaps_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    times = np.datetime64("2023-01-01T00:00") + np.array([0, 5, 10, 20, 25], dtype="timedelta64[m]")
    with caplog.at_level(logging.WARNING, logger="convlstm.data.formats.mlcast"):
        runs, _ = time_runs(times, np.array([], "datetime64[ns]"))
    assert runs == [(0, 3), (3, 5)]
    assert "not listed in missing_times" in caplog.text
    listed, _ = time_runs(times, np.array(["2023-01-01T00:15"], "datetime64[ns]"))
    assert listed == runs
    with pytest.raises(ValueError, match="must not hold times of the time coordinate"):
        time_runs(times, times[:1])


def test_errors(tmp_path: Path, store: Path) -> None:
    other = write_mlcast_store(tmp_path / "temperature.zarr", variables=["t2m"])
    with pytest.raises(ValueError, match=r"no variable has a standard_name of rain .* t2m \(standard_name='air_temp"):
        windows(other)
    both = write_mlcast_store(tmp_path / "both.zarr", variables=["rr", "dbz"])
    with pytest.raises(ValueError, match=r"several variables are rain: \['dbz', 'rr'\]; pass variable="):
        windows(both)
    assert windows(both, variable="dbz").conversion.standard_name == "equivalent_reflectivity_factor"
    with pytest.raises(ValueError, match="variable='nope' is not in the store"):
        windows(both, variable="nope")
    odd = write_mlcast_store(tmp_path / "odd.zarr", units={"rr": "in/h"})
    with pytest.raises(ValueError, match=r"units='in/h'\): unknown units of a rate; expected one of \['kg m-2 h-1'"):
        windows(odd)
    with pytest.raises(ValueError, match="zr applies to equivalent_reflectivity_factor only"):
        windows(store, zr="hko7")
    with pytest.raises(ValueError, match="accumulation applies to an amount"):
        windows(store, accumulation="5min")
    with pytest.raises(ValueError, match=r"splits\['test'\] and|overlap"):
        windows(store, "train", splits={"train": ["2020", "2023-06-01"], "test": ["2023", None]})
    with pytest.raises(ValueError, match=r"splits\['train'\]\[0\] must be a date"):
        windows(store, "train", splits={"train": ["soon", None]})
    with pytest.raises(ValueError, match=r"split must be one of \['all', 'train', 'val', 'test'\], got 'holdout'"):
        windows(store, "holdout")
    with pytest.raises(ValueError, match="split 'train' has no run of 8 consecutive frames"):
        windows(store, "train", splits={"train": ["2020", "2021"]}, context_frames=4, target_frames=4)
    with pytest.raises(FileNotFoundError):
        windows(tmp_path / "absent.zarr")


def test_parse_splits_reads_pairs_and_lists() -> None:
    times = np.array(TIMES)
    parsed = parse_splits({"train": ["2020-01-01", "2021-01-01"], "test": [["2023-01-01", None]]}, times)
    assert parsed["train"] == [(np.datetime64("2020-01-01", "ns"), np.datetime64("2021-01-01", "ns"))]
    assert parsed["test"] == [(np.datetime64("2023-01-01", "ns"), None)]


def test_default_splits_of_a_store_with_few_times_leave_the_others_empty() -> None:
    times = np.array(TIMES[:3])  # 80 / 10 / 10 of three times: all of them train
    assert parse_splits(None, times) == {"train": [(None, None)], "val": [], "test": []}
