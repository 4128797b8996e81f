import pytest
import torch

from convlstm.models import create_model
from convlstm.models.encoder_forecaster import EncoderForecaster
from convlstm.models.motion_cues import cue_channels, matching_costs


@pytest.mark.parametrize(("dy", "dx"), [(0, 0), (1, -2), (-2, 2), (2, 1)])
def test_the_cheapest_displacement_is_the_motion(dy: int, dx: int) -> None:
    torch.manual_seed(0)
    previous = torch.rand(2, 1, 20, 20)
    current = torch.roll(previous, shifts=(dy, dx), dims=(-2, -1))  # moved by (dy, dx)
    costs = matching_costs(previous, current, radius=2)
    assert costs.shape == (2, cue_channels(2), 20, 20)
    inner = costs[..., 5:-5, 5:-5]  # away from the wrapped border
    expected = (dy + 2) * 5 + (dx + 2)  # row-major over (dy, dx)
    assert (inner.argmin(dim=1) == expected).all()
    assert inner.amin(dim=1).max() < 1e-4


def test_empty_frames_give_zero_cues_not_nans() -> None:
    costs = matching_costs(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8), radius=1)
    assert costs.shape == (1, 9, 8, 8) and torch.equal(costs, torch.zeros_like(costs))


@pytest.mark.parametrize(("head", "split"), [("pixels", 3), ("advection", 3), ("advection", 1)])
def test_encoding_in_chunks_carries_the_last_frame_for_the_cues(head: str, split: int) -> None:
    torch.manual_seed(0)
    activation = "none" if head == "advection" else "sigmoid"
    model = create_model("encoder_forecaster_tiny", head=head, output_activation=activation, motion_radius=1)
    assert isinstance(model, EncoderForecaster)
    context = torch.rand(2, 5, 1, 16, 16)
    whole = model.forecast(model.encode(context), 3)
    chunks = model.forecast(model.encode(context[:, split:], model.encode(context[:, :split])), 3)
    torch.testing.assert_close(whole, chunks)
    assert model.encoder.cells[0].in_channels == 4 + cue_channels(1)
