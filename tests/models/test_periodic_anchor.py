"""The periodic anchor: untrained it is "the same hour one period earlier" exactly; its persisting departure and
correction move it; it refuses contexts that do not reach one period back."""

import math

import pytest
import torch

from convlstm.models import PeriodicAnchor, create_model

PERIOD = 6
SMALL = {"backbone_args": {"hidden_channels": [4, 4], "default_horizon": PERIOD}, "period": PERIOD}


def _daily(steps: int, *, drift: float = 0.0) -> torch.Tensor:
    """(2, steps, 1, 8, 8): a cycle of PERIOD steps, different in every pixel, plus ``drift`` per step."""
    t = torch.arange(steps, dtype=torch.float32).view(1, steps, 1, 1, 1)
    phase = torch.linspace(0, 1, 64).view(1, 1, 1, 8, 8)
    batch = torch.tensor([1.0, 2.0]).view(2, 1, 1, 1, 1)
    return batch * torch.sin(2 * math.pi * t / PERIOD + phase) + drift * t


def test_untrained_it_is_the_field_one_period_back_plus_a_fading_departure() -> None:
    model = create_model("periodic_anchor", **SMALL)
    context = torch.randn(2, PERIOD + 3, 1, 8, 8)
    forecast = model(context, 4)
    last = context.shape[1] - 1
    anchor = context[:, last + 1 - PERIOD : last + 5 - PERIOD]
    departure = context[:, last] - context[:, last - PERIOD]
    for k in range(4):  # e-folding over half a period
        expected = anchor[:, k] + math.exp(-(k + 1) / (PERIOD / 2)) * departure
        torch.testing.assert_close(forecast[:, k], expected, rtol=0, atol=1e-6)
    with torch.no_grad():
        model.persistence.zero_()
    assert torch.equal(model(context, 4), anchor)  # no departure: the anchor, bit for bit
    assert model(context).shape == (2, PERIOD, 1, 8, 8)  # the backbone's default horizon, at most one period


def test_the_persisting_departure_makes_the_first_lead_persistence_with_the_cycle() -> None:
    model = create_model("periodic_anchor", **SMALL)
    context = torch.randn(1, PERIOD + 1, 1, 8, 8)
    with torch.no_grad():
        model.persistence[0] = 1.0
        first = model(context, 1)[:, 0]
    last, yesterday = context[:, -1], context[:, 0]
    # X_{t+1-P} + (X_t - X_{t-P}): the last field plus the change the anchor made over the same hour.
    torch.testing.assert_close(first, context[:, 1] + last - yesterday, rtol=0, atol=1e-6)


def test_training_learns_a_drift_the_anchor_misses() -> None:
    torch.manual_seed(0)
    sequence = _daily(PERIOD + 1 + 3, drift=0.3)
    context, future = sequence[:, : PERIOD + 1], sequence[:, PERIOD + 1 :]
    model = create_model("periodic_anchor", **SMALL).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = (model(context, 3) - future).square().mean()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    # The anchor is 0.3 x PERIOD too low at every lead; the fading departure (0.3 x PERIOD) makes up part of it.
    missed = [0.3 * PERIOD * (1 - math.exp(-k / (PERIOD / 2))) for k in (1, 2, 3)]
    assert losses[0] == pytest.approx(sum(m**2 for m in missed) / 3, rel=1e-4)
    assert losses[-1] < 0.1 * losses[0], losses


def test_contexts_short_of_one_period_and_long_horizons_are_refused() -> None:
    model = create_model("periodic_anchor", **SMALL)
    with pytest.raises(ValueError, match=r"at least period \+ 1 = 7 frames"):
        model(torch.randn(1, PERIOD, 1, 8, 8), 2)
    with pytest.raises(ValueError, match="horizon must be at most period=6"):
        model(torch.randn(1, PERIOD + 1, 1, 8, 8), PERIOD + 1)
    with pytest.raises(ValueError, match="context must have 1 channels"):
        model(torch.randn(1, PERIOD + 1, 2, 8, 8), 2)
    with pytest.raises(ValueError, match="backbone must name a forecaster"):
        PeriodicAnchor("convlstm_unet", {})
    with pytest.raises(ValueError, match="period must be an int >= 1"):
        PeriodicAnchor(period=0)


def test_the_backbone_reads_only_its_last_frames() -> None:
    model = create_model("periodic_anchor", **SMALL, backbone_frames=2)
    seen = []
    model.backbone.register_forward_pre_hook(lambda _, args: seen.append(args[0].shape[1]))
    model(torch.randn(1, PERIOD + 4, 1, 8, 8), 3)
    assert seen == [2]
