from pathlib import Path

import pytest
import torch

from convlstm.models import create_model, from_pretrained
from convlstm.models.advection_head import AdvectionHead, backtrack
from convlstm.models.encoder_forecaster import EncoderForecaster


def _advecting(**overrides: object) -> EncoderForecaster:
    model = create_model("encoder_forecaster_tiny", head="advection", output_activation="none", **overrides)
    assert isinstance(model, EncoderForecaster)
    return model


def test_backtrack_by_whole_pixels_is_a_shift_with_zeros_flowing_in() -> None:
    frames = torch.rand(2, 3, 6, 7)
    displacement = torch.zeros(2, 2, 6, 7)
    displacement[:, 0], displacement[:, 1] = 2.0, -1.0  # 2 px right, 1 px up
    moved = backtrack(frames, displacement)
    expected = torch.zeros_like(frames)
    expected[..., :5, 2:] = frames[..., 1:, :5]
    torch.testing.assert_close(moved, expected)


def test_backtrack_by_half_a_pixel_averages_the_neighbours() -> None:
    frames = torch.rand(1, 1, 4, 5)
    displacement = torch.zeros(1, 2, 4, 5)
    displacement[:, 0] = 0.5
    moved = backtrack(frames, displacement)
    torch.testing.assert_close(moved[..., 1:], (frames[..., 1:] + frames[..., :-1]) / 2)


def test_fresh_model_adds_no_change_so_without_motion_it_forecasts_persistence() -> None:
    model = _advecting()
    assert isinstance(model.head, AdvectionHead)
    with torch.no_grad():
        model.head.velocity.weight.zero_()
    context = torch.rand(3, 4, 1, 16, 16)
    forecast = model(context, horizon=6)
    torch.testing.assert_close(forecast, context[:, -1:].expand(-1, 6, -1, -1, -1), atol=1e-6, rtol=0)


def test_a_constant_velocity_moves_the_last_frame_by_lead_time_times_velocity() -> None:
    head = AdvectionHead(hidden_channels=4, in_channels=1, patch_size=2)
    with torch.no_grad():
        head.velocity.weight.zero_()
        head.velocity.bias.copy_(torch.tensor([1.0, 0.0]))  # 1 px per frame to the right
    last = torch.rand(2, 1, 8, 8)
    frames = head(torch.randn(2, 3, 4, 4, 4), last)
    for lead in (1, 2, 3):
        expected = torch.zeros_like(last)
        expected[..., lead:] = last[..., :-lead]
        torch.testing.assert_close(frames[:, lead - 1], expected, atol=1e-5, rtol=0)


def test_velocity_and_change_learn_from_the_loss() -> None:
    model = _advecting()
    context = torch.rand(2, 4, 1, 16, 16)
    target = torch.roll(context[:, -1:], shifts=1, dims=-1).expand(-1, 5, -1, -1, -1)
    torch.nn.functional.mse_loss(model(context), target).backward()
    head = model.head
    assert isinstance(head, AdvectionHead)
    for conv in (head.velocity, head.change):
        assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def test_chunked_encoding_and_a_saved_model_forecast_alike(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _advecting()
    with torch.no_grad():
        for p in model.head.parameters():
            p.normal_(0, 0.1)
    context = torch.rand(2, 5, 1, 16, 16)
    whole = model.forecast(model.encode(context), 4)
    chunks = model.forecast(model.encode(context[:, 2:], model.encode(context[:, :2])), 4)
    torch.testing.assert_close(whole, chunks)
    loaded = from_pretrained(model.save_pretrained(tmp_path / "model"))
    torch.testing.assert_close(loaded(context, horizon=4), whole)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"head": "flow"}, "head must be one of"),
        ({"head": "advection"}, "output_activation='none'"),
        ({"head": "advection", "output_activation": "none", "initial_mean": 0.1}, "starts from the last frame"),
    ],
)
def test_bad_head_arguments(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        create_model("encoder_forecaster_tiny", **overrides)


def test_state_without_the_last_frame_is_rejected() -> None:
    model = _advecting()
    state = model.encode(torch.rand(1, 3, 1, 16, 16))
    with pytest.raises(ValueError, match=r"3 entries \(one per layer, then the last frame\)"):
        model.forecast(state[:-1], 2)
