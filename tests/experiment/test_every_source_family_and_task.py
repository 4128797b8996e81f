"""Every registered data source, every model family and every task kind a recipe can name, each through a recipe
and the same code as `convlstm fit` and `convlstm evaluate`: two training steps, then scores on the test split.

File sources read small files that the test writes in their real formats. The coverage checks at the bottom fail
when a source, family or task kind is added without a case here.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import hickle
import imageio_ffmpeg
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from PIL import Image

from convlstm.cli.main import main
from convlstm.data.sources import SOURCES
from convlstm.experiment import TASK_KINDS
from convlstm.models import family_class, list_families, model_family
from tests.data.formats.test_mlcast import write_mlcast_case
from tests.data.formats.test_odim import write_odim
from tests.data.formats.test_radar_archive import write_radar_archive

RECORDINGS = 10  # an 80 / 10 / 10 split by recording leaves one for validation and one for the test
FRAMES = 4  # per recording: one window of 2 context + 2 target frames
SIZE = 16


def _numpy(folder: Path) -> dict[str, Any]:
    frames = np.random.default_rng(0).random((RECORDINGS, FRAMES, 1, SIZE, SIZE), dtype=np.float32)
    np.save(folder / "frames.npy", frames)
    return {"root": str(folder / "frames.npy"), "layout": "NTCHW"}


def _hdf5(folder: Path) -> dict[str, Any]:
    with h5py.File(folder / "frames.h5", "w") as file:
        file["frames"] = np.random.default_rng(1).random((RECORDINGS, FRAMES, SIZE, SIZE, 1), dtype=np.float32)
    return {"root": str(folder / "frames.h5"), "dataset": "frames", "layout": "NTHWC"}


def _moving_mnist_file(folder: Path) -> dict[str, Any]:
    """The official layout: uint8 (T, N, H, W), time first."""
    frames = np.random.default_rng(2).integers(0, 256, (FRAMES, RECORDINGS, SIZE, SIZE), dtype=np.uint8)
    np.save(folder / "mnist_test_seq.npy", frames)
    return {"root": str(folder / "mnist_test_seq.npy")}


def _kitti_hickle(folder: Path) -> dict[str, Any]:
    rng = np.random.default_rng(3)
    for split in ("train", "val", "test"):
        hickle.dump(rng.integers(0, 255, (8, SIZE, SIZE, 3), dtype=np.uint8), folder / f"X_{split}.hkl", mode="w")
        hickle.dump(["drive_a"] * 4 + ["drive_b"] * 4, folder / f"sources_{split}.hkl", mode="w")
    return {"root": str(folder)}


def _image_folders(folder: Path) -> dict[str, Any]:
    for index in range(RECORDINGS):
        recording = folder / "frames" / f"recording_{index}"
        recording.mkdir(parents=True)
        for t in range(FRAMES):
            Image.fromarray(np.full((SIZE, SIZE), 20 * t + index, dtype=np.uint8)).save(recording / f"{t:03d}.png")
    return {"root": str(folder / "frames"), "mode": "L"}


def _video(folder: Path) -> dict[str, Any]:
    for index in range(RECORDINGS):
        writer = imageio_ffmpeg.write_frames(str(folder / f"clip{index}.mp4"), (SIZE, SIZE), pix_fmt_in="gray")
        writer.send(None)
        for t in range(FRAMES):
            writer.send(np.full((SIZE, SIZE), 20 * t + index, dtype=np.uint8).tobytes())
        writer.close()
    return {"root": str(folder), "grayscale": True}


def _xarray(folder: Path) -> dict[str, Any]:
    times = 40  # a chronological 80 / 10 / 10 split: 4 frames, one window, for validation and for the test
    field_ = np.random.default_rng(4).random((times, SIZE, SIZE), dtype=np.float32)
    xr.Dataset(
        {"t2m": (("time", "lat", "lon"), field_)},
        coords={
            "time": pd.date_range("2024-01-01", periods=times, freq="h"),
            "lat": np.arange(SIZE),
            "lon": np.arange(SIZE),
        },
    ).to_netcdf(folder / "weather.nc")
    return {"root": str(folder / "weather.nc"), "variables": ["t2m"]}


def _reanalysis(folder: Path) -> dict[str, Any]:
    """t2m and z on two pressure levels; two of them as channels, plus local solar time (masked out of the loss)."""
    times, levels = 40, [500.0, 850.0]  # chronological 80 / 10 / 10: one window for validation and for the test
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


def _odim(folder: Path) -> dict[str, Any]:
    for t in range(40):  # one composite a minute; a chronological 80 / 10 / 10 split as for xarray
        write_odim(folder / f"comp_{t:02d}.h5", t % 8, minute=t)
    return {"root": str(folder)}


def _generated(args: dict[str, Any]) -> Callable[[Path], dict[str, Any]]:
    return lambda folder: args


TINY_NEXT_FRAME = ("next_frame_tiny", {"encoder_channels": [4], "hidden_channels": [4]})


@dataclass
class Case:
    source: str
    data_args: Callable[[Path], dict[str, Any]]
    model: tuple[str, dict[str, Any]] = TINY_NEXT_FRAME
    kind: str = "forecasting"
    task_args: dict[str, Any] = field(default_factory=dict)
    frames: tuple[int, int] = (2, 2)
    baselines: list[str] = field(default_factory=lambda: ["persistence"])
    score: str = "mse_per_frame"


#: Families a recipe cannot train, and why (docs/design.md says so too).
NOT_FROM_A_RECIPE = {
    "exceedance_forecaster": "predicts a probability per rain threshold, not frames: benchmarks/"
    "nowcasting_probabilistic.py trains it with tasks.losses.exceedance_loss",
}

CASES = [
    Case(  # MIM's peepholes are per pixel: one frame size, the model's
        "moving_mnist",
        _generated({"num_digits": 1, "image_size": 32}),
        model=("mim_tiny", {"height": 32, "width": 32, "hidden_channels": 4, "default_horizon": 2}),
    ),
    Case(  # OpenSTL's PredRNN protocol: scheduled sampling of the forecast's inputs
        "moving_mnist_file",
        _moving_mnist_file,
        model=("predrnn_tiny", {"hidden_channels": 4, "default_horizon": 2}),
        task_args={"sampling": "linear", "sampling_end_step": 2},
    ),
    Case(
        "bouncing_balls",
        _generated({"resolution": SIZE}),
        model=("predrnnpp_tiny", {"hidden_channels": 4, "default_horizon": 2}),
    ),
    Case(
        "radar",
        _generated({"image_size": SIZE}),
        model=("fc_lstm_tiny", {"hidden_sizes": [8], "default_horizon": 2}),
        frames=(3, 2),  # optical flow reads 3 frames
        baselines=["persistence", "optical_flow", "steps"],
    ),
    Case(
        "shapes",
        _generated({"num_classes": 2, "image_size": 32}),
        model=("convlstm_unet", {"num_classes": 3, "base_channels": 4, "norm_groups": 2}),
        kind="segmentation",
        task_args={"num_classes": 3},
        frames=(4, 0),
        baselines=[],
        score="miou",
    ),
    Case(
        "anomalies", _generated({"source": "balls", "image_size": SIZE}), kind="anomaly", frames=(4, 2), score="auroc"
    ),
    Case(
        "numpy",
        _numpy,
        model=("convlstm_unet_forecaster", {"base_channels": 4, "norm_groups": 2, "default_horizon": 2}),
        kind="tbptt",
        task_args={"chunk": 2},
    ),
    Case("hdf5", _hdf5, model=("trajgru_radar_small", {"default_horizon": 2})),
    Case(
        "kitti_hickle",
        _kitti_hickle,
        model=("prednet_tiny", {}),
        kind="prednet",
        frames=(2, 2),
        baselines=[],
    ),
    Case(  # SimVP reads its whole context at once: exactly context_frames of them
        "image_folders", _image_folders, model=("tau_tiny", {"context_frames": 2, "default_horizon": 2})
    ),
    Case(  # PredRNN-V2's: reverse scheduled sampling (context frames too) and the decoupling loss
        "video",
        _video,
        model=("predrnnv2_tiny", {"hidden_channels": 4, "default_horizon": 2}),
        task_args={"sampling": "reverse", "reverse_start_step": 0, "reverse_end_step": 2, "decouple_beta": 0.1},
    ),
    Case("xarray", _xarray),
    Case("odim", _odim),
    Case(  # FMI PGM files read by pysteps, patches drawn in favour of rain, pysteps' extrapolation corrected
        "radar_archive",
        write_radar_archive,
        model=("extrapolation_nowcast", {"base_channels": 4, "depth": 1, "motion_frames": 2, "default_horizon": 2}),
    ),
    Case("mlcast", write_mlcast_case),  # an mlcast-convention zarr store, split by time ranges
    Case(  # 2 variables + 2 time channels: an encoder-forecaster, which feeds nothing back, forecasting the change
        "reanalysis",
        _reanalysis,
        model=(
            "encoder_forecaster_tiny",
            {"in_channels": 4, "hidden_channels": [4], "default_horizon": 2, "head": "advection"}
            | {"output_activation": "none"},
        ),
    ),
]


def _recipe(case: Case, folder: Path) -> dict[str, Any]:
    context, target = case.frames
    name, model_args = case.model
    return {
        "name": case.source,
        "data": {
            "source": case.source,
            "args": case.data_args(folder),
            "context_frames": context,
            "target_frames": target,
            "batch_size": 2,
            "train_sequences": 4,
            "val_sequences": 2,
            "test_sequences": 2,
        },
        "model": {"name": name, "args": model_args},
        "task": {"kind": case.kind, "args": case.task_args},
        "trainer": {
            "max_steps": 2,
            "limit_val_batches": 1,
            "accelerator": "cpu",
            "enable_progress_bar": False,
            "early_stopping_patience": None,
            "log_every_n_steps": 1,
        },
        "evaluate": {"baselines": case.baselines, "animations": 0},
    }


@pytest.mark.parametrize("case", CASES, ids=[case.source for case in CASES])
def test_a_recipe_fits_and_evaluates(case: Case, tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(_recipe(case, tmp_path)))
    run = tmp_path / "run"
    assert main(["fit", "-c", str(recipe), "--run-dir", str(run)]) == 0
    assert (run / "model" / "config.json").is_file()
    assert main(["evaluate", "--run-dir", str(run)]) == 0
    methods = json.loads((run / "metrics.json").read_text())["methods"]
    assert set(methods) == {case.model[0], *case.baselines} | ({"copy_last_frame"} if case.kind == "prednet" else set())
    for scores in methods.values():
        assert case.score in scores
    if case.kind == "anomaly":  # `convlstm test` scores an anomaly run with AnomalyTask
        assert main(["test", "--run-dir", str(run)]) == 0
        assert "test/psnr" in json.loads((run / "test_metrics.json").read_text())


def test_every_source_family_and_task_kind_has_a_case() -> None:
    assert sorted(case.source for case in CASES) == sorted(SOURCES)
    trained = {model_family(case.model[0]) for case in CASES}
    baselines = {model_family(name) for case in CASES for name in case.baselines}
    shipped = {f for f in list_families() if family_class(f).__module__.startswith("convlstm.")}  # not tests' own
    assert trained | baselines | set(NOT_FROM_A_RECIPE) == shipped
    assert {case.kind for case in CASES} == set(TASK_KINDS)
