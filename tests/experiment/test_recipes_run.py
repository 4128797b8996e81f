"""A small version of every shipped recipe runs end to end: `fit` for two steps, then `evaluate`.

Recipes on generated data run as they are, shrunk by overrides; the KITTI, video, radar and reanalysis recipes get
small files that the test writes in their formats.
"""

import json
from datetime import timedelta
from pathlib import Path

import hickle
import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from convlstm.cli.main import main

TINY = [
    "-o", "trainer.max_steps=2",
    "-o", "trainer.max_epochs=null",
    "-o", "trainer.enable_progress_bar=false",
    "-o", "data.train_sequences=4",
    "-o", "data.val_sequences=2",
    "-o", "data.test_sequences=2",
    "-o", "data.batch_size=2",
    "-o", "data.num_workers=0",
]  # fmt: skip

SMALLER = {
    "moving_mnist": ["-o", "model.args.hidden_channels=[8, 8]"],
    "moving_mnist_openstl": ["-o", "model.args.hidden_channels=[8, 8]"],
    "moving_mnist_openstl_predrnnv2": ["-o", "model.args.hidden_channels=4", "-o", "model.args.num_layers=1"],
    "moving_mnist_openstl_predrnnpp": ["-o", "model.args.hidden_channels=4", "-o", "model.args.num_layers=2"],
    "moving_mnist_openstl_mim": ["-o", "model.args.hidden_channels=4", "-o", "model.args.num_layers=2"],
    "moving_mnist_openstl_predrnn": ["-o", "model.args.hidden_channels=4", "-o", "model.args.num_layers=1"],
    "moving_mnist_openstl_e3dlstm": ["-o", "model.args.hidden_channels=4", "-o", "model.args.num_layers=2"],
    "moving_mnist_openstl_simvp": ["-o", "model.args.spatial_channels=4", "-o", "model.args.temporal_channels=8"],
    "moving_mnist_openstl_tau": ["-o", "model.args.spatial_channels=4", "-o", "model.args.temporal_channels=8"],
    "bouncing_balls": ["-o", "model.args.hidden_channels=[8, 8]"],
    "nowcasting": ["-o", "data.args.image_size=32"],
    "segmentation": ["-o", "data.args.image_size=32"],
    "anomaly": ["-o", "model.args.hidden_channels=[8, 8]"],
}


def _fit_and_evaluate(recipe: str, run: Path, extra: list[str]) -> dict:
    assert main(["fit", "-c", recipe, "--run-dir", str(run), *TINY, *extra]) == 0
    assert main(["evaluate", "--run-dir", str(run)]) == 0
    assert (run / "report.html").is_file()
    return json.loads((run / "metrics.json").read_text())["methods"]


@pytest.mark.parametrize("recipe", sorted(SMALLER))
def test_generated_data_recipes_run(recipe: str, tmp_path: Path) -> None:
    methods = _fit_and_evaluate(recipe, tmp_path / recipe, SMALLER[recipe])
    expected_score = {"segmentation": "miou", "anomaly": "auroc", "nowcasting": "csi@0.5"}.get(recipe, "mse_per_frame")
    extra = {"moving_mnist": "bce_per_sequence", "nowcasting": "b_mse"}.get(recipe)  # evaluate.extra_metrics
    for scores in methods.values():
        assert expected_score in scores
        assert extra is None or scores[extra] > 0
    if recipe == "nowcasting":
        assert set(methods) == {"shi2015_radar_convlstm", "persistence", "optical_flow"}
        # The field's scores (pysteps): FSS at 1 and 8 pixels, Brier and ROC area of the thresholded forecast.
        assert all({"fss@0.5_8px", "brier@0.5", "roc_auc@30_by_lead_time"} <= set(s) for s in methods.values())
    if recipe == "anomaly":
        assert all(0.0 <= scores["auroc_cumulative"] <= 1.0 for scores in methods.values())


def test_prednet_kitti_recipe_runs_on_hickle_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        frames = rng.integers(0, 255, size=(24, 16, 16, 3), dtype=np.uint8)
        hickle.dump(frames, tmp_path / f"X_{split}.hkl", mode="w")
        hickle.dump(["drive_a"] * 12 + ["drive_b"] * 12, tmp_path / f"sources_{split}.hkl", mode="w")
    extra = ["-o", f"data.args.root={tmp_path}", "-o", "data.context_frames=4", "-o", "model.name=prednet_tiny"]
    methods = _fit_and_evaluate("prednet_kitti", tmp_path / "run", extra)
    assert set(methods) == {"prednet_tiny", "copy_last_frame"}


def test_video_folder_recipe_runs_on_mp4_files(tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    for index in range(10):  # enough recordings for an 80/10/10 split by video
        writer = imageio_ffmpeg.write_frames(str(videos / f"clip{index}.mp4"), (32, 32), pix_fmt_in="gray")
        writer.send(None)
        for t in range(20):
            writer.send(np.full((32, 32), 10 * t + index, dtype=np.uint8).tobytes())
        writer.close()
    extra = ["-o", f"data.args.root={videos}", "-o", "data.args.size=[16, 16]", "-o", "model.name=next_frame_tiny"]
    methods = _fit_and_evaluate("video_folder", tmp_path / "run", extra)
    assert set(methods) == {"next_frame_tiny", "persistence"}


def test_prednet_video_recipe_trains_then_fine_tunes_to_extrapolate(tmp_path: Path) -> None:
    """Image folders in, next-frame scores out; then extrapolation fine-tuning from the trained weights, scored on
    frames k.. predicted from frames ..k-1 against repeating frame k-1. Frame t of recording r is a flat image of
    value 10 t + r, so copy-last-frame's errors are known in advance."""
    root = tmp_path / "frames"
    for index in range(10):  # an 80/10/10 split by recording leaves one recording for the test
        folder = root / f"recording_{index}"
        folder.mkdir(parents=True)
        for t in range(16):
            Image.fromarray(np.full((16, 16), 10 * t + index, dtype=np.uint8)).save(folder / f"{t:03d}.png")
    small = ["-o", f"data.args.root={root}", "-o", "data.context_frames=6", "-o", "model.args.stack_sizes=[1, 4]"]
    methods = _fit_and_evaluate("prednet_video", tmp_path / "run", small)
    step = 10 / 255
    assert methods["copy_last_frame"]["mse_per_pixel"] == pytest.approx(step**2, rel=1e-4)

    fine_tune = [
        *small,
        "-o", f"model.init_from={tmp_path / 'run' / 'model'}",
        "-o", "task.args.extrap_start_time=6",
        "-o", "data.target_frames=3",
    ]  # fmt: skip
    methods = _fit_and_evaluate("prednet_video", tmp_path / "fine_tuned", fine_tune)
    # Frames 6, 7, 8 against frame 5 repeated: errors of 1, 2 and 3 steps.
    expected = np.mean([(k * step) ** 2 for k in (1, 2, 3)])
    assert methods["copy_last_frame"]["mse_per_pixel"] == pytest.approx(expected, rel=1e-4)
    assert len(methods["prednet_tiny"]["mse_per_pixel_by_lead_time"]) == 3


@pytest.mark.parametrize(
    ("recipe", "model"),
    [("radar_nowcast", "extrapolation_nowcast"), ("radar_nowcast_ensemble", "extrapolation_nowcast_ensemble")],
)
def test_radar_nowcast_recipes_run_on_fmi_files(tmp_path: Path, recipe: str, model: str) -> None:
    """The real-radar recipes as shipped, its archives, events and split swapped for three small FMI events in FMI's
    format (the pysteps-data events are not in the repository); only the sizes are shrunk."""
    from tests.data.formats.test_radar_archive import FMI, T0, event, fmi_codes, write_fmi

    frames, step = 17, timedelta(minutes=5)  # 4 context + 12 target frames: two windows per event
    starts = {f"fmi_{k}": T0 + timedelta(days=k) for k in range(3)}
    for start in starts.values():
        for t in range(frames):
            write_fmi(tmp_path / "data", start + t * step, fmi_codes(t, (40, 40)))
    events = {name: event("fmi", start, frames) for name, start in starts.items()}
    args = {
        "root": str(tmp_path / "data"),
        "archives": {"fmi": FMI},
        "events": events,
        "splits": {"train": ["fmi_0"], "val": ["fmi_1"], "test": ["fmi_2"]},
        "patch_size": 32,
        "cache_dir": str(tmp_path / "cache"),
    }
    overrides = [item for key, value in args.items() for item in ("-o", f"data.args.{key}={json.dumps(value)}")]
    small = ["-o", "model.args={default_horizon: 12, base_channels: 4, depth: 1}", "-o", "trainer.max_minutes=null"]
    methods = _fit_and_evaluate(recipe, tmp_path / "run", [*overrides, *small])
    assert set(methods) == {model, "persistence", "optical_flow"}
    assert all("csi@1" in scores and "csi@10" in scores for scores in methods.values())


def test_era5_uk_recipe_runs_on_a_netcdf_month(tmp_path: Path) -> None:
    """The reanalysis recipe as shipped, its GRIB file swapped for a small netCDF month of hourly t2m in the same
    layout (the recipe's split is by dates in March 2019); only the sizes are shrunk."""
    import pandas as pd
    import xarray as xr

    times = pd.date_range("2019-03-01", "2019-03-31T23:00", freq="h")
    hours = np.arange(len(times))[:, None, None]
    t2m = 280 + 3 * np.sin(2 * np.pi * hours / 24) + np.random.default_rng(0).normal(size=(len(times), 5, 7))
    xr.Dataset(
        {"t2m": (("time", "latitude", "longitude"), t2m.astype(np.float32))},
        coords={"time": times, "latitude": np.linspace(58, 57, 5), "longitude": np.linspace(-3, -1.5, 7)},
    ).to_netcdf(tmp_path / "era5.nc")
    small = [
        "-o", f"data.args.root={tmp_path / 'era5.nc'}",
        "-o", "model.args.backbone_args.hidden_channels=[8, 8]",
        "-o", "trainer.limit_val_batches=1",
        "-o", "evaluate.num_sequences=4",
    ]  # fmt: skip
    methods = _fit_and_evaluate("era5_uk_t2m", tmp_path / "run", small)
    assert set(methods) == {"periodic_anchor", "persistence"}
    # Persistence's error on the first 4 test windows, standardised, unclipped, over the t2m channel only (the mask
    # leaves the time channels out), computed here from the file.
    from convlstm.experiment.building import build_dataset
    from convlstm.experiment.recipe import load_recipe

    recipe = load_recipe(tmp_path / "run" / "recipe.yaml")
    test = build_dataset(recipe, "test")
    errors = [(test[i]["target"][:, 0] - test[i]["context"][-1, 0]).abs().mean() for i in range(4)]
    assert methods["persistence"]["mae_per_pixel"] == pytest.approx(float(np.mean(errors)), rel=1e-5)
