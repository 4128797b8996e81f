import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from xarray.backends import netCDF4_, zarr

from convlstm.data.core.splits import TimeBlockSplit
from convlstm.data.formats.xarray_source import XarraySequences, regular_runs

HOURS = 30


def weather(times: Any = None) -> xr.Dataset:
    """Hourly t2m (time, lat, lon) and tp stored as (lat, lon, time), on a 4 x 5 grid."""
    times = pd.date_range("2021-06-01", periods=HOURS, freq="h") if times is None else times
    rng = np.random.default_rng(0)
    t2m = rng.normal(290, 5, (len(times), 4, 5)).astype(np.float32)
    tp = rng.random((4, 5, len(times))).astype(np.float32)
    return xr.Dataset(
        {"t2m": (("time", "lat", "lon"), t2m), "tp": (("lat", "lon", "time"), tp)},
        coords={"time": times, "lat": np.linspace(50, 53, 4), "lon": np.linspace(0, 4, 5)},
    )


@pytest.fixture(params=["nc", "zarr"])
def archive(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    path = tmp_path / f"era.{request.param}"
    if request.param == "nc":
        weather().to_netcdf(path)
    else:
        weather().to_zarr(path, zarr_format=2, consolidated=True)
    return path


def test_variables_become_channels(archive: Path) -> None:
    ds = XarraySequences(archive, variables=["t2m", "tp"], split="all", context_frames=4, target_frames=2)
    assert len(ds) == HOURS - 6 + 1
    item = ds[5]
    assert item["context"].shape == (4, 2, 4, 5)
    source = weather()
    np.testing.assert_allclose(item["context"][:, 0].numpy(), source.t2m.values[5:9])
    np.testing.assert_allclose(item["target"][:, 1].numpy(), source.tp.transpose("time", "lat", "lon").values[9:11])


def test_reading_one_window_reads_only_its_frames(archive: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shapes: list[tuple[int, ...]] = []
    wrapper = netCDF4_.NetCDF4ArrayWrapper if archive.suffix == ".nc" else zarr.ZarrArrayWrapper
    original = wrapper.__getitem__

    def spy(self: Any, key: Any) -> Any:
        result = original(self, key)
        shapes.append(np.shape(result))
        return result

    monkeypatch.setattr(wrapper, "__getitem__", spy)
    ds = XarraySequences(archive, variables=["t2m", "tp"], split="all", context_frames=3, target_frames=2)
    shapes.clear()  # coordinates are read when opening
    ds[10]
    field_reads = [s for s in shapes if len(s) == 3]
    assert len(field_reads) == 2  # one read per variable
    assert all(HOURS not in s and 5 in s for s in field_reads)  # 5 time steps, never the whole record
    frames = ds.recordings[0].frames
    assert not frames.dataset["t2m"].variable._in_memory  # the dataset stays lazy


def test_coordinates_and_writing_predictions_back(archive: Path) -> None:
    ds = XarraySequences(archive, variables=["t2m", "tp"], split="all", context_frames=3, target_frames=2)
    coords = ds.coords(4)
    times = pd.date_range("2021-06-01", periods=HOURS, freq="h").values
    np.testing.assert_array_equal(coords.time, times[4:9])
    prediction = torch.randn(2, 2, 4, 5)
    out = coords.to_dataset(prediction)
    assert out["t2m"].dims == ("lead_time", "lat", "lon")
    np.testing.assert_array_equal(out["lead_time"].values, np.array([1, 2], dtype="timedelta64[h]"))
    assert out["init_time"].values == times[6]
    np.testing.assert_array_equal(out["valid_time"].values, times[7:9])
    np.testing.assert_array_equal(out["tp"].values, prediction[:, 1].numpy())
    np.testing.assert_array_equal(out["lat"].values, weather().lat.values)
    with pytest.raises(ValueError, match="prediction must have shape"):
        coords.to_dataset(torch.zeros(3, 2, 4, 5))


def test_default_split_is_chronological() -> None:
    spans = {}
    for split in ("train", "val", "test"):
        ds = XarraySequences(weather(), variables=["t2m"], split=split, context_frames=2, target_frames=1)
        times = np.concatenate([ds.coords(i).time for i in range(len(ds))])
        spans[split] = (times.min(), times.max())
    assert spans["train"][1] < spans["val"][0] <= spans["val"][1] < spans["test"][0]


def test_time_blocks_share_no_time_step() -> None:
    by = TimeBlockSplit(block_frames=3, seed=1)
    seen = {}
    for split in ("train", "val", "test"):
        ds = XarraySequences(weather(), variables=["t2m"], split=split, split_by=by, context_frames=2, target_frames=1)
        seen[split] = {t for i in range(len(ds)) for t in ds.coords(i).time.tolist()}
    assert not seen["train"] & seen["val"] and not seen["train"] & seen["test"] and not seen["val"] & seen["test"]


def test_gaps_in_time_cut_recordings(caplog: pytest.LogCaptureFixture) -> None:
    times = pd.date_range("2021-06-01", periods=HOURS, freq="h").delete(slice(12, 14))  # two missing hours
    assert regular_runs(times.values) == [(0, 12), (12, HOURS - 2)]
    with caplog.at_level(logging.WARNING):
        ds = XarraySequences(weather(times), variables=["t2m"], split="all", context_frames=3, target_frames=1)
    assert "1 gaps" in caplog.text
    for i in range(len(ds)):
        assert np.all(np.diff(ds.coords(i).time) == np.timedelta64(1, "h"))


def test_custom_dimension_names_and_dataset_input() -> None:
    source = weather().rename({"time": "valid_time", "lat": "y", "lon": "x"})
    ds = XarraySequences(
        source, variables=["tp"], split="all", time_dim="valid_time", y_dim="y", x_dim="x", context_frames=2,
        target_frames=1,
    )  # fmt: skip
    np.testing.assert_array_equal(ds[0]["context"][1, 0].numpy(), source.tp.values[:, :, 1])


def test_errors(tmp_path: Path, archive: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"absent\.nc"):
        XarraySequences(tmp_path / "absent.nc", variables=["t2m"], context_frames=2, target_frames=1)
    with pytest.raises(ValueError, match=r"era\..*no variable 'u10'"):
        XarraySequences(archive, variables=["u10"], context_frames=2, target_frames=1)
    levels = weather().expand_dims(level=[500, 850]).transpose("time", "level", "lat", "lon")
    with pytest.raises(ValueError, match=r"'t2m' has dims.*level"):
        XarraySequences(levels, variables=["t2m"], context_frames=2, target_frames=1)
    with_nan = weather()
    with_nan["t2m"][7, 1, 1] = np.nan
    ds = XarraySequences(with_nan, variables=["t2m"], split="all", context_frames=2, target_frames=1)
    with pytest.raises(ValueError, match="NaN"):
        ds[6]
    masked = XarraySequences(
        with_nan, variables=["t2m"], split="all", context_frames=2, target_frames=1, nan_policy="mask"
    )
    assert masked[6]["context_mask"][1, 0, 1, 1] == 0
