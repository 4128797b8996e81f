from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from convlstm.metrics.nowcasting import rain_rate_to_pixel
from convlstm.report import first_frame_png, write_comparison_gif
from convlstm.report.colormaps import RAIN_COLORS

RED, GREEN, BLUE, YELLOW = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)


def solid(steps, rgb, size=16):
    """(T, 3, size, size) frames of one pure colour; the GIF palette keeps pure colours exactly."""
    return torch.tensor(rgb, dtype=torch.float32).div(255).view(1, 3, 1, 1).expand(steps, 3, size, size).clone()


def count(frame, rgb):
    return int((frame == np.array(rgb, dtype=np.uint8)).all(axis=-1).sum())


def moving_squares(steps, size=64):
    frames = torch.zeros(steps, 1, size, size)
    for t in range(steps):
        frames[t, 0, 10 + t : 22 + t, 4 + 2 * t : 16 + 2 * t] = 1.0
        frames[t, 0, 40 - t : 50 - t, 30 + t : 40 + t] = 0.6
    return frames


@pytest.fixture(scope="module")
def solid_gif(tmp_path_factory):
    """Context red, truth green, two predictions blue and yellow; 3 context and 4 lead frames of 16 x 16."""
    path = tmp_path_factory.mktemp("gif") / "solid.gif"
    predictions = {"ConvLSTM": solid(4, BLUE), "persistence": solid(4, YELLOW)}
    write_comparison_gif(solid(3, RED), solid(4, GREEN), predictions, path, fps=5, scale=3)
    return path


def test_gif_frames_follow_context_then_lead_times(solid_gif):
    frames = iio.imread(solid_gif, index=None, mode="RGB")
    assert frames.shape[0] == 3 + 4
    panel = (16 * 3) ** 2
    for t, frame in enumerate(frames):
        # The input panel always shows a context frame (the last one during the forecast).
        assert count(frame, RED) == panel
        forecast_shown = t >= 3
        assert count(frame, GREEN) == panel * forecast_shown
        assert count(frame, BLUE) == panel * forecast_shown
        assert count(frame, YELLOW) == panel * forecast_shown
    assert len({frame.tobytes() for frame in frames}) == len(frames)  # the counter changes every frame


def test_gif_timing_and_loop(solid_gif):
    durations = [iio.immeta(solid_gif, index=k)["duration"] for k in range(7)]
    assert durations[:-1] == [200] * 6
    assert durations[-1] == 200 + 1000  # the last frame is held for hold_last_s
    assert iio.immeta(solid_gif, index=0)["loop"] == 0


def test_mnist_sized_gif_is_small_and_upscaled_by_default(tmp_path):
    frames = moving_squares(20)
    predictions = {"ConvLSTM": frames[10:] * 0.9, "persistence": frames[9:10].expand(10, -1, -1, -1)}
    path = write_comparison_gif(frames[:10], frames[10:], predictions, tmp_path / "out" / "forecast.gif")
    assert [p.name for p in path.parent.iterdir()] == ["forecast.gif"]
    assert path.stat().st_size < 1_000_000
    gif = iio.imread(path, index=None, mode="RGB")
    assert gif.shape[0] == 20
    # Four panels of 64 x 64 upscaled 2x (the default for 64 px), plus margins, titles and the footer.
    assert 4 * 128 < gif.shape[2] < 4 * 128 + 120
    assert 128 < gif.shape[1] < 128 + 120


def test_values_are_clipped(tmp_path):
    context = solid(2, RED) * 3.0 - 1.0  # channels far outside [0, 1]
    path = write_comparison_gif(context, solid(2, GREEN), {"m": solid(2, BLUE)}, tmp_path / "c.gif", scale=1)
    assert count(iio.imread(path, index=0, mode="RGB"), RED) == 16 * 16


def test_rain_colormap(tmp_path):
    heavy = rain_rate_to_pixel(torch.full((2, 1, 20, 20), 40.0)).float()
    dry = torch.zeros(2, 1, 20, 20)
    path = write_comparison_gif(heavy, dry, {"m": heavy}, tmp_path / "r.gif", cmap="rain", scale=2)
    last = iio.imread(path, index=None, mode="RGB")[-1]
    assert count(last, RAIN_COLORS[5]) == 2 * 40 * 40  # input (held) and prediction panels


def test_first_frame_png(solid_gif, tmp_path):
    gif = iio.imread(solid_gif, index=None, mode="RGB")
    last = first_frame_png(solid_gif, tmp_path / "still" / "last.png")
    first = first_frame_png(solid_gif, tmp_path / "still" / "first.png", frame=0)
    assert sorted(p.name for p in (tmp_path / "still").iterdir()) == ["first.png", "last.png"]
    np.testing.assert_array_equal(iio.imread(last)[..., :3], gif[-1])
    np.testing.assert_array_equal(iio.imread(first)[..., :3], gif[0])
    with pytest.raises(ValueError, match="frame"):
        first_frame_png(solid_gif, tmp_path / "x.png", frame=7)
    with pytest.raises(FileNotFoundError, match=r"nothing\.gif"):
        first_frame_png(tmp_path / "nothing.gif", tmp_path / "x.png")


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((solid(2, RED), solid(3, GREEN), {"m": solid(2, BLUE)}), {}, r"predictions\['m'\]"),
        ((solid(2, RED, size=8), solid(2, GREEN), {"m": solid(2, BLUE)}), {}, "context and truth"),
        ((solid(2, RED), solid(2, GREEN), {}), {}, "non-empty"),
        ((solid(2, RED), solid(2, GREEN), {"m": solid(2, BLUE)}), {"fps": 0}, "fps"),
        ((solid(2, RED), solid(2, GREEN), {"m": solid(2, BLUE)}), {"scale": 0}, "scale"),
        ((solid(2, RED), solid(2, GREEN), {"m": solid(2, BLUE)}), {"cmap": "rain"}, "one-channel"),
        ((solid(2, RED)[None], solid(2, GREEN), {"m": solid(2, BLUE)}), {}, "context"),
        ((solid(2, RED), solid(2, GREEN) * torch.nan, {"m": solid(2, BLUE)}), {}, "truth contains NaN"),
    ],
)
def test_errors(tmp_path, args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        write_comparison_gif(*args, tmp_path / "x.gif", **kwargs)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("size", "scale"), [(20, 3), (64, 2), (100, 2), (160, 1)])
def test_default_scale_makes_panels_about_128_px(tmp_path, size, scale):
    path = write_comparison_gif(
        solid(1, RED, size), solid(1, GREEN, size), {"m": solid(1, BLUE, size)}, tmp_path / "s.gif"
    )
    assert count(iio.imread(path, index=0, mode="RGB"), RED) == (size * scale) ** 2


def test_gif_without_truth_has_one_panel_less(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    context, prediction = rng.random((3, 1, 48, 48)), rng.random((2, 1, 48, 48))
    with_truth = write_comparison_gif(context, prediction, {"model": prediction}, tmp_path / "a.gif", scale=2)
    without = write_comparison_gif(context, None, {"model": prediction}, tmp_path / "b.gif", scale=2)
    wide, narrow = iio.imread(with_truth, index=0), iio.imread(without, index=0)
    assert narrow.shape[0] == wide.shape[0] and narrow.shape[1] < wide.shape[1]
    assert len(iio.imread(without, index=None)) == 5


@pytest.mark.parametrize(
    ("arguments", "match"),
    [
        ({"fps": 0}, r"^fps must be a finite number > 0, got 0$"),
        ({"hold_last_s": -1.0}, r"^hold_last_s must be in \[0.0, inf\], got -1.0$"),
        ({"scale": 0}, r"^scale must be an int >= 1, got 0$"),
    ],
)
def test_bad_timing_and_scale_are_named(tmp_path, arguments, match):
    with pytest.raises(ValueError, match=match):
        write_comparison_gif(solid(2, RED), solid(2, GREEN), {"m": solid(2, BLUE)}, tmp_path / "x.gif", **arguments)
    assert not (tmp_path / "x.gif").exists()
