"""pysteps' STEPS ensemble as a baseline: shapes, reproducibility, spread, and the echo it moves."""

import torch

from convlstm.baselines import STEPS
from convlstm.models import create_model


def _moving_echo(frames: int, size: int = 32) -> torch.Tensor:
    """Radar pixels: a textured echo drifting one pixel right per frame."""
    gen = torch.Generator().manual_seed(0)
    texture = 0.4 + 0.3 * torch.rand(10, 10, generator=gen, dtype=torch.float64)
    seq = torch.zeros(1, frames, 1, size, size, dtype=torch.float64)
    for t in range(frames):
        seq[0, t, 0, 10:20, 6 + t : 16 + t] = texture
    return seq


def test_members_spread_around_the_advected_echo_and_repeat_with_the_seed() -> None:
    model = create_model("steps", members=4, default_horizon=3)
    assert isinstance(model, STEPS)
    frames = _moving_echo(7)
    context, future = frames[:, :4], frames[:, 4:]
    members = model.ensemble(context)
    assert members.shape == (1, 4, 3, 1, 32, 32) and members.dtype == torch.float64
    assert torch.isfinite(members).all() and members.min() >= 0 and members.max() <= 1
    assert not torch.equal(members[:, 0], members[:, 1])  # stochastic members
    torch.testing.assert_close(model.ensemble(context), members, rtol=0, atol=0)
    torch.testing.assert_close(model(context), members.mean(dim=1))
    # The echo moves on: the mean forecast of the first lead time overlaps the true echo better than the last frame.
    wet_true, wet_mean = future[0, 0, 0] > 0.2, model(context)[0, 0, 0] > 0.2
    wet_last = context[0, -1, 0] > 0.2
    overlap = (wet_mean & wet_true).sum() / (wet_mean | wet_true).sum()
    persistence = (wet_last & wet_true).sum() / (wet_last | wet_true).sum()
    assert overlap > persistence
