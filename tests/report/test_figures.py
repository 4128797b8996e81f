import csv
import math

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from convlstm.metrics.nowcasting import rain_rate_to_pixel
from convlstm.report import metric_direction, plot_frame_strip, plot_scores_by_lead_time, plot_training_curve
from convlstm.report.colormaps import RAIN_COLORS, frames_to_rgb

# matplotlib's default cycle: first and second method.
BLUE = np.array([0x1F, 0x77, 0xB4])
ORANGE = np.array([0xFF, 0x7F, 0x0E])


def read_png(path):
    image = iio.imread(path)
    assert image.dtype == np.uint8 and image.ndim == 3
    return image[..., :3]


def has_color(image, rgb, tolerance=8):
    return bool((np.abs(image.astype(int) - rgb).max(axis=-1) <= tolerance).any())


def only_file(directory):
    """The directory holds exactly one file: no temporary file was left behind."""
    files = sorted(p.name for p in directory.iterdir())
    assert len(files) == 1, files
    return directory / files[0]


def scores(k, lead_times=10):
    return {
        "mse_per_frame": torch.tensor(30.0 + k),
        "mse_per_frame_by_lead_time": torch.linspace(10, 50, lead_times) * (k + 1),
        "ssim_by_lead_time": np.linspace(0.9, 0.6, lead_times) / (k + 1),
        "csi@0.5_by_lead_time": [0.8 - 0.05 * t - 0.1 * k for t in range(lead_times)],
        "csi@30_by_lead_time": torch.tensor([0.2, math.nan, *[0.1] * (lead_times - 2)], dtype=torch.float64),
        "iou_per_class_by_lead_time": torch.rand(lead_times, 3),  # (T, K): not a curve
    }


# --- scores by lead time ---------------------------------------------------------------------------------------------


def test_scores_png_is_valid_small_and_written_atomically(tmp_path):
    out = tmp_path / "figs"
    path = plot_scores_by_lead_time({"ConvLSTM": scores(0), "persistence": scores(1)}, out / "scores.png")
    assert path == out / "scores.png"
    assert only_file(out) == path
    image = read_png(path)
    assert image.shape[0] > 200 and image.shape[1] > 600
    assert path.stat().st_size < 200_000
    assert has_color(image, BLUE) and has_color(image, ORANGE)


def test_one_line_per_method(tmp_path):
    path = plot_scores_by_lead_time({"ConvLSTM": scores(0)}, tmp_path / "one.png", metrics=["ssim"])
    image = read_png(path)
    assert has_color(image, BLUE)
    assert not has_color(image, ORANGE, tolerance=30)


def test_one_panel_per_requested_metric(tmp_path):
    results = {"a": scores(0), "b": scores(1)}
    one = read_png(plot_scores_by_lead_time(results, tmp_path / "1.png", metrics=["csi@0.5_by_lead_time"]))
    three = read_png(
        plot_scores_by_lead_time(results, tmp_path / "3.png", metrics=["mse_per_frame", "ssim", "csi@0.5"])
    )
    wrapped = read_png(plot_scores_by_lead_time(results, tmp_path / "w.png", metrics=["ssim", "csi@0.5"], ncols=1))
    assert three.shape[1] > 2.5 * one.shape[1]
    assert wrapped.shape[0] > 1.7 * one.shape[0]
    assert abs(wrapped.shape[1] - one.shape[1]) < 5


def test_scores_errors(tmp_path):
    with pytest.raises(ValueError, match="by-lead-time"):
        plot_scores_by_lead_time({"a": {"mse_per_frame": 1.0}}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="'psnr'"):
        plot_scores_by_lead_time({"a": scores(0)}, tmp_path / "x.png", metrics=["psnr"])
    with pytest.raises(ValueError, match=r"shape \(T,\)"):
        plot_scores_by_lead_time({"a": scores(0)}, tmp_path / "x.png", metrics=["iou_per_class"])
    with pytest.raises(ValueError, match="results"):
        plot_scores_by_lead_time({}, tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"results\['a'\]"):
        plot_scores_by_lead_time({"a": [1, 2]}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="ncols"):
        plot_scores_by_lead_time({"a": scores(0)}, tmp_path / "x.png", ncols=0)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_no_temporary_file(tmp_path):
    (tmp_path / "taken.png").mkdir()  # the target is a directory: the final rename fails
    with pytest.raises(IsADirectoryError):
        plot_scores_by_lead_time({"a": scores(0)}, tmp_path / "taken.png", metrics=["ssim"])
    assert [p.name for p in tmp_path.iterdir()] == ["taken.png"]
    assert list((tmp_path / "taken.png").iterdir()) == []


@pytest.mark.parametrize(
    ("name", "direction"),
    [
        ("mse_per_frame", "lower"),
        ("mae_per_pixel_by_lead_time", "lower"),
        ("far@0.5", "lower"),
        ("b_mse", "lower"),
        ("bce_per_sequence", "lower"),
        ("val/loss", "lower"),
        ("psnr", "higher"),
        ("ssim_by_lead_time", "higher"),
        ("csi@30", "higher"),
        ("pod@2", "higher"),
        ("hss@0.5", "higher"),
        ("correlation", "higher"),
        ("frame_auroc", "higher"),
        ("miou", "higher"),
        ("mean_dice", "higher"),
        ("fss@1_16km", "higher"),
        ("roc_auc", "higher"),
        ("brier@0.5", "lower"),
        ("crps", "lower"),
        ("fps", None),
        ("params", None),
    ],
)
def test_metric_direction(name, direction):
    assert metric_direction(name) == direction


# --- frames ------------------------------------------------------------------------------------------------------


def blob_frames(steps=6, channels=1, size=24):
    yy, xx = np.mgrid[:size, :size]
    frames = np.zeros((steps, channels, size, size))
    for t in range(steps):
        frames[t, :] = np.clip(1.0 - np.hypot(yy - 8 - t, xx - 6 - 2 * t) / 10, 0, 1)
    return frames


def test_grayscale_strip_is_gray_and_rows_wrap(tmp_path):
    frames = torch.from_numpy(blob_frames(6))
    strip = read_png(plot_frame_strip(frames, tmp_path / "strip.png"))
    grid = read_png(plot_frame_strip(frames, tmp_path / "grid.png", rows=2, titles=[f"t{t}" for t in range(6)]))
    for image in (strip, grid):
        assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()
    assert strip.shape[1] / strip.shape[0] > 4  # one row of six
    assert grid.shape[1] / grid.shape[0] < strip.shape[1] / strip.shape[0] / 2  # two rows of three


def test_rgb_and_labelled_rows(tmp_path):
    rgb = np.zeros((3, 3, 16, 16))
    rgb[:, 1] = 1.0  # pure green frames
    path = plot_frame_strip({"input": rgb, "truth <row>": blob_frames(2, channels=3, size=16)}, tmp_path / "rows.png")
    image = read_png(path)
    assert has_color(image, np.array([0, 255, 0]), tolerance=2)
    assert path.stat().st_size < 200_000


def test_rain_colormap_classes_follow_hko7_thresholds():
    rates = torch.tensor([0.4, 0.6, 1.9, 2.1, 6.0, 11.0, 31.0])
    pixels = rain_rate_to_pixel(rates).numpy().reshape(1, 1, 1, -1)
    got = frames_to_rgb(pixels, "rain")[0, 0]
    expected = np.array([RAIN_COLORS[k] for k in (0, 1, 1, 2, 3, 4, 5)], dtype=np.uint8)
    np.testing.assert_array_equal(got, expected)
    # Already in mm/h: a value equal to a threshold counts as an event (HKO-7 uses >=).
    mm_h = np.array([0.0, 0.5, 2.0, 5.0, 10.0, 30.0]).reshape(1, 1, 1, -1)
    np.testing.assert_array_equal(frames_to_rgb(mm_h, "rain_mm_h")[0, 0], np.array(RAIN_COLORS, dtype=np.uint8))


def test_rain_strip_shows_heavy_rain_and_a_legend(tmp_path):
    frames = rain_rate_to_pixel(torch.full((2, 1, 12, 12), 50.0)).float()
    image = read_png(plot_frame_strip(frames, tmp_path / "rain.png", cmap="rain"))
    assert has_color(image, np.array(RAIN_COLORS[5]), tolerance=2)
    assert has_color(image, np.array(RAIN_COLORS[3]), tolerance=2)  # only in the legend: no frame pixel is green


def test_named_colormap(tmp_path):
    image = read_png(plot_frame_strip(blob_frames(2), tmp_path / "v.png", cmap="viridis"))
    assert not (image[..., 0] == image[..., 2]).all()


@pytest.mark.parametrize(
    ("frames", "kwargs", "match"),
    [
        (np.zeros((2, 1, 8, 8)), {"titles": ["a"]}, "titles"),
        (np.zeros((2, 1, 8, 8)), {"rows": 3}, "rows"),
        ({"a": np.zeros((2, 1, 8, 8))}, {"rows": 1}, "rows"),
        (np.zeros((1, 2, 1, 8, 8)), {}, r"x\[0\]"),
        (np.zeros((2, 2, 8, 8)), {}, "C = 1 or 3"),
        (np.full((2, 1, 8, 8), np.nan), {}, "NaN"),
        (np.zeros((2, 3, 8, 8)), {"cmap": "rain"}, "one-channel"),
        (np.zeros((2, 1, 8, 8)), {"cmap": "no_such_map"}, "cmap"),
        ({}, {}, "empty"),
    ],
)
def test_frame_strip_errors(tmp_path, frames, kwargs, match):
    with pytest.raises(ValueError, match=match):
        plot_frame_strip(frames, tmp_path / "x.png", **kwargs)


# --- training curves -----------------------------------------------------------------------------------------------


def write_lightning_csv(path, epochs=3, steps_per_epoch=10):
    """Rows as Lightning's CSVLogger writes them: per-step training rows, then one validation row per epoch."""
    fields = ["epoch", "step", "train/loss_step", "val/loss", "val/csi@0.5", "train/loss_epoch"]
    rows, step = [], 0
    for epoch in range(epochs):
        for _ in range(steps_per_epoch):
            rows.append({"epoch": epoch, "step": step, "train/loss_step": 2.0 * math.exp(-step / 10)})
            step += 1
        rows.append(
            {"epoch": epoch, "step": step - 1, "val/loss": 1.5 * math.exp(-step / 10), "val/csi@0.5": 0.2 * epoch}
        )
        rows.append({"epoch": epoch, "step": step - 1, "train/loss_epoch": 1.8 * math.exp(-step / 10)})
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_training_curve_from_lightning_csv(tmp_path):
    log = write_lightning_csv(tmp_path / "metrics.csv")
    out = tmp_path / "out"
    losses = read_png(plot_training_curve(log, out / "loss.png"))
    both = read_png(plot_training_curve(log, out / "both.png", x="epoch", metrics=["val/loss", "val/csi@0.5"]))
    assert sorted(p.name for p in out.iterdir()) == ["both.png", "loss.png"]
    assert has_color(losses, BLUE) and has_color(losses, ORANGE)  # train/loss_step and train/loss_epoch or val/loss
    assert both.shape[1] > 1.7 * losses.shape[1]  # loss and csi@0.5 get a panel each


def test_training_curve_from_dict(tmp_path):
    data = {"step": [0, 1, 2, 3], "train/loss": [1.0, 0.5, None, 0.25], "val/loss": [None, 0.7, None, 0.4]}
    image = read_png(plot_training_curve(data, tmp_path / "d.png", logy=True))
    assert has_color(image, BLUE) and has_color(image, ORANGE)


def test_training_curve_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.csv"):
        plot_training_curve(tmp_path / "missing.csv", tmp_path / "x.png")
    log = write_lightning_csv(tmp_path / "metrics.csv", epochs=1)
    with pytest.raises(ValueError, match="'time'"):
        plot_training_curve(log, tmp_path / "x.png", x="time")
    with pytest.raises(ValueError, match="metrics"):
        plot_training_curve(log, tmp_path / "x.png", metrics=["val/psnr"])
    with pytest.raises(ValueError, match="equal lengths"):
        plot_training_curve({"step": [0, 1], "loss": [1.0]}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="no column"):
        plot_training_curve({"step": [0, 1], "epoch": [0, 0]}, tmp_path / "x.png")
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]
