"""output="residual": an untrained forecaster copies the last frame exactly, and training moves it from there."""

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from convlstm.models import create_model, from_pretrained
from convlstm.models.base import Forecaster
from convlstm.models.frame_output import add_change, check_frame_output
from convlstm.models.prednet import PredNet


def next_frame(channels: int, **kw: object) -> Forecaster:
    return create_model("next_frame_tiny", **{"in_channels": channels, "output": "residual", **kw})  # type: ignore[return-value]


def unet(channels: int, **kw: object) -> Forecaster:
    args = {"in_channels": channels, "base_channels": 4, "norm_groups": 2, "output": "residual", **kw}
    return create_model("convlstm_unet_forecaster", **args)  # type: ignore[return-value]


def prednet(channels: int, **kw: object) -> Forecaster:
    return create_model("prednet_tiny", **{"stack_sizes": (channels, 4, 8), "output": "residual", **kw})  # type: ignore[return-value]


BUILDERS: dict[str, Callable[..., Forecaster]] = {"next_frame": next_frame, "unet": unet, "prednet": prednet}


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("family", list(BUILDERS))
def test_untrained_residual_forecast_is_the_last_frame_repeated(family: str, channels: int) -> None:
    torch.manual_seed(0)
    model = BUILDERS[family](channels)
    context = torch.rand(2, 5, channels, 16, 16)
    for horizon in (1, 4):
        forecast = model(context, horizon=horizon)
        # Exact: the change is a convolution with zero weights and bias, and frames in [0, 1] pass the clamp as is.
        assert torch.equal(forecast, context[:, -1:].expand(-1, horizon, -1, -1, -1))


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("family", ["next_frame", "unet"])
def test_untrained_residual_one_step_predicts_each_frame_by_itself(family: str, channels: int) -> None:
    model = BUILDERS[family](channels)
    frames = torch.rand(2, 5, channels, 16, 16)
    predictions, _ = model.one_step(frames)  # type: ignore[operator]
    assert torch.equal(predictions, frames)


@pytest.mark.parametrize("channels", [1, 3])
def test_untrained_residual_prednet_predicts_the_previous_frame_and_extrapolates_the_last(channels: int) -> None:
    model = prednet(channels)
    assert isinstance(model, PredNet)
    frames = torch.rand(2, 6, channels, 16, 16)
    predictions, _ = model.run(frames, output_mode="prediction")
    assert torch.equal(predictions[:, 1:], frames[:, :-1])
    start = 3
    extrapolated, _ = model.run(frames, output_mode="prediction", extrap_start_time=start)
    assert torch.equal(extrapolated[:, start:], frames[:, start - 1 : start].expand(-1, 6 - start, -1, -1, -1))


def test_prednet_teacher_forced_step_builds_on_the_true_frame() -> None:
    model = prednet(1)
    context, targets = torch.rand(2, 4, 1, 16, 16), torch.rand(2, 3, 1, 16, 16)
    forced = torch.tensor([[True, False, False], [False, False, False]])
    forecast = model(context, horizon=3, targets=targets, teacher_forcing=forced)
    # Sequence 0 was given its true first future frame, so it repeats that one from then on; sequence 1 the context's.
    assert torch.equal(forecast[0, 1:], targets[0, :1].expand(2, -1, -1, -1))
    assert torch.equal(forecast[1], context[1, -1:].expand(3, -1, -1, -1))


@pytest.mark.parametrize("family", list(BUILDERS))
def test_saved_residual_model_round_trips_its_output(family: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = BUILDERS[family](3)
    with torch.no_grad():  # move off the copy so that the weights, too, have to come back
        for parameter in model.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    loaded = from_pretrained(model.save_pretrained(tmp_path / family))
    assert loaded.config.output == "residual"
    context = torch.rand(1, 4, 3, 16, 16)
    assert torch.equal(loaded(context, horizon=2), model(context, horizon=2))


@pytest.mark.parametrize("family", list(BUILDERS))
def test_frame_output_stays_the_default(family: str) -> None:
    name = {"next_frame": "next_frame_tiny", "unet": "convlstm_unet_forecaster", "prednet": "prednet_tiny"}[family]
    model = create_model(name)
    assert isinstance(model, Forecaster)
    assert model.config.output == "frame"


@pytest.mark.parametrize("family", list(BUILDERS))
def test_unknown_output_is_refused_by_name(family: str) -> None:
    with pytest.raises(ValueError, match=r"output must be one of \['frame', 'residual'\], got 'warp'"):
        BUILDERS[family](1, output="warp")


def test_check_frame_output_accepts_both() -> None:
    for output in ("frame", "residual"):
        check_frame_output(output)


def test_add_change_clamps_only_when_bounded() -> None:
    last, change = torch.tensor([0.2, 0.9]), torch.tensor([-0.5, 0.5])
    assert torch.equal(add_change(last, change, bounded=True), torch.tensor([0.0, 1.0]))
    assert torch.allclose(add_change(last, change, bounded=False), torch.tensor([-0.3, 1.4]))


def brightening(batch: int, steps: int, generator: torch.Generator) -> Tensor:
    """Random textures that brighten by 0.05 per frame: copying the last frame is always 0.05 off."""
    base = 0.5 * torch.rand(batch, 1, 1, 16, 16, generator=generator)
    return base + 0.05 * torch.arange(steps).view(1, steps, 1, 1, 1)


@pytest.mark.parametrize("family", list(BUILDERS))
def test_training_learns_change_beyond_the_copy(family: str) -> None:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = BUILDERS[family](1, output_activation="linear") if family != "prednet" else BUILDERS[family](1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(60):
        frames = brightening(4, 6, generator)
        loss = F.mse_loss(model(frames[:, :4], horizon=2), frames[:, 4:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    frames = brightening(8, 6, generator)
    with torch.no_grad():
        model_mse = F.mse_loss(model(frames[:, :4], horizon=2), frames[:, 4:]).item()
    copy_mse = F.mse_loss(frames[:, 3:4].expand(-1, 2, -1, -1, -1), frames[:, 4:]).item()
    # Copying is off by 0.05 and 0.10 (MSE 0.00625); a model that learned the brightening is well below half that.
    assert model_mse < 0.5 * copy_mse
