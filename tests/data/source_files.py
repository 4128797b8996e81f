"""Small files in the real format of every file source, written into a folder, with the ``data.args`` a recipe gives
that source. The test of the sources' conventions and the test that runs every source through a recipe share them.

Each writer makes RECORDINGS recordings of FRAMES frames (one window of 2 context + 2 target frames each), so that an
80 / 10 / 10 split by recording leaves one for validation and one for the test; time series make 40 frames, which a
chronological 80 / 10 / 10 split leaves one window each for validation and the test.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import hickle
import imageio_ffmpeg
import numpy as np
import pandas as pd
import xarray as xr
from PIL import Image

from tests.data.formats.test_mlcast import write_mlcast_case
from tests.data.formats.test_odim import write_odim
from tests.data.formats.test_radar_archive import write_radar_archive

RECORDINGS = 10
FRAMES = 4
SIZE = 16


def write_numpy(folder: Path) -> dict[str, Any]:
    frames = np.random.default_rng(0).random((RECORDINGS, FRAMES, 1, SIZE, SIZE), dtype=np.float32)
    np.save(folder / "frames.npy", frames)
    return {"root": str(folder / "frames.npy"), "layout": "NTCHW"}


def write_hdf5(folder: Path) -> dict[str, Any]:
    with h5py.File(folder / "frames.h5", "w") as file:
        file["frames"] = np.random.default_rng(1).random((RECORDINGS, FRAMES, SIZE, SIZE, 1), dtype=np.float32)
    return {"root": str(folder / "frames.h5"), "dataset": "frames", "layout": "NTHWC"}


def write_moving_mnist_file(folder: Path) -> dict[str, Any]:
    """The official layout: uint8 (T, N, H, W), time first."""
    frames = np.random.default_rng(2).integers(0, 256, (FRAMES, RECORDINGS, SIZE, SIZE), dtype=np.uint8)
    np.save(folder / "mnist_test_seq.npy", frames)
    return {"root": str(folder / "mnist_test_seq.npy")}


def write_kitti_hickle(folder: Path) -> dict[str, Any]:
    rng = np.random.default_rng(3)
    for split in ("train", "val", "test"):
        hickle.dump(rng.integers(0, 255, (8, SIZE, SIZE, 3), dtype=np.uint8), folder / f"X_{split}.hkl", mode="w")
        hickle.dump(["drive_a"] * 4 + ["drive_b"] * 4, folder / f"sources_{split}.hkl", mode="w")
    return {"root": str(folder)}


def write_image_folders(folder: Path) -> dict[str, Any]:
    for index in range(RECORDINGS):
        recording = folder / "frames" / f"recording_{index}"
        recording.mkdir(parents=True)
        for t in range(FRAMES):
            Image.fromarray(np.full((SIZE, SIZE), 20 * t + index, dtype=np.uint8)).save(recording / f"{t:03d}.png")
    return {"root": str(folder / "frames"), "mode": "L"}


def write_video(folder: Path) -> dict[str, Any]:
    for index in range(RECORDINGS):
        writer = imageio_ffmpeg.write_frames(str(folder / f"clip{index}.mp4"), (SIZE, SIZE), pix_fmt_in="gray")
        writer.send(None)
        for t in range(FRAMES):
            writer.send(np.full((SIZE, SIZE), 20 * t + index, dtype=np.uint8).tobytes())
        writer.close()
    return {"root": str(folder), "grayscale": True}


def write_xarray(folder: Path) -> dict[str, Any]:
    times = 40
    field = np.random.default_rng(4).random((times, SIZE, SIZE), dtype=np.float32)
    xr.Dataset(
        {"t2m": (("time", "lat", "lon"), field)},
        coords={
            "time": pd.date_range("2024-01-01", periods=times, freq="h"),
            "lat": np.arange(SIZE),
            "lon": np.arange(SIZE),
        },
    ).to_netcdf(folder / "weather.nc")
    return {"root": str(folder / "weather.nc"), "variables": ["t2m"]}


def write_reanalysis(folder: Path) -> dict[str, Any]:
    """t2m and z on two pressure levels; two of them as channels, plus local solar time (masked out of the loss)."""
    times, levels = 40, [500.0, 850.0]
    rng = np.random.default_rng(5)
    t2m = 280 + rng.normal(size=(times, SIZE, SIZE))
    z = 5e4 + rng.normal(size=(times, 2, SIZE, SIZE))
    xr.Dataset(
        {
            "t2m": (("time", "latitude", "longitude"), t2m.astype(np.float32)),
            "z": (("time", "level", "latitude", "longitude"), z.astype(np.float32)),
        },
        coords={
            "time": pd.date_range("2024-01-01", periods=times, freq="h"),
            "level": levels,
            "latitude": np.linspace(60, 45, SIZE),
            "longitude": np.linspace(-10, 5, SIZE),
        },
    ).to_netcdf(folder / "era5.nc")
    return {"root": str(folder / "era5.nc"), "variables": ["t2m", "z@500"], "time_features": ["local_time_of_day"]}


def write_odim_series(folder: Path) -> dict[str, Any]:
    for t in range(40):  # one composite a minute
        write_odim(folder / f"comp_{t:02d}.h5", t % 8, minute=t)
    return {"root": str(folder)}


#: file source name (a key of SOURCES) -> the writer of its files, returning the recipe's data.args
FILE_WRITERS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "numpy": write_numpy,
    "hdf5": write_hdf5,
    "moving_mnist_file": write_moving_mnist_file,
    "kitti_hickle": write_kitti_hickle,
    "image_folders": write_image_folders,
    "video": write_video,
    "xarray": write_xarray,
    "reanalysis": write_reanalysis,
    "odim": write_odim_series,
    "radar_archive": write_radar_archive,
    "mlcast": write_mlcast_case,
}

#: generator name (a key of SOURCES) -> small data.args
GENERATOR_ARGS: dict[str, dict[str, Any]] = {
    "moving_mnist": {"num_digits": 1, "image_size": 32},
    "bouncing_balls": {"resolution": SIZE},
    "radar": {"image_size": SIZE},
    "shapes": {"num_classes": 2, "image_size": 32},
    "anomalies": {"source": "balls", "image_size": SIZE},
}
