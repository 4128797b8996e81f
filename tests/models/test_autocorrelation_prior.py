"""The autocorrelation prior of the extrapolation nowcast: S-PROG's rule (keep each scale's detail in proportion to
its lag-1 autocorrelation to the power of the lead time) as smoothing weights behind learned gates that start
closed."""

import pytest
import torch

from convlstm.models import ExtrapolationNowcast, create_model, from_pretrained
from convlstm.models.extrapolation import extrapolate
from convlstm.models.extrapolation_nowcast import (
    PRIOR_GATE_RATE,
    detail_bands,
    gaussian_blur,
    lag1_correlations,
    smooth,
)
from tests.models.test_extrapolation_nowcast import SMALL, _moving_rain, _pysteps_extrapolation

SCALES = (1.0, 2.0, 4.0, 8.0)


def _frames(steps: int, *, fresh_detail: float, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, steps, 1, size, size) rain rates whose log(1 + R) is a smooth pattern (unit standard deviation) moving
    one pixel right per frame (wrapping round) plus ``fresh_detail`` times unit pixel noise drawn anew for every
    frame; and that motion (1, 2, size, size)."""
    generator = torch.Generator().manual_seed(0)
    velocity = torch.zeros(1, 2, size, size)
    velocity[:, 0] = 1.0
    pattern = gaussian_blur(torch.randn(1, 1, size, size, generator=generator), 3.0)
    pattern = 3 + pattern / pattern.std()
    frames = [
        pattern.roll(step, dims=-1) + fresh_detail * torch.randn(1, 1, size, size, generator=generator)
        for step in range(steps)
    ]
    return torch.cat(frames).unsqueeze(0).clamp_min(0).expm1(), velocity


def test_rain_moved_along_the_motion_keeps_every_scale_and_fresh_detail_only_the_coarse_ones() -> None:
    rigid, velocity = _frames(4, fresh_detail=0.0)
    torch.testing.assert_close(lag1_correlations(rigid, velocity, SCALES), torch.ones(1, 4), rtol=0, atol=1e-5)
    noisy, _ = _frames(4, fresh_detail=1.0)
    rho = lag1_correlations(noisy, velocity, SCALES)[0]
    assert rho[0] < 0.2 and rho[-1] > 0.9, rho  # pixel noise does not survive a step; the moving pattern does
    assert bool((rho[1:] >= rho[:-1]).all()), rho  # the coarser the scale, the more of it survives
    # The same frames against a wrong motion (standing still) decorrelate the moving pattern too.
    assert lag1_correlations(noisy, torch.zeros_like(velocity), SCALES)[0, -1] < rho[-1]


def test_untrained_with_the_prior_it_is_still_pysteps_extrapolation_exactly() -> None:
    context = _moving_rain(4)
    expected = _pysteps_extrapolation(context, 6)
    for name in ("extrapolation_nowcast", "extrapolation_nowcast_ensemble"):
        model = create_model(name, autocorrelation_prior=True)
        for training in (True, False):
            model.train(training)
            with torch.no_grad():
                assert torch.equal(model(context, horizon=6), expected), (name, training)


def test_an_open_gate_smooths_each_lead_time_by_the_contexts_decorrelation() -> None:
    options = {"smoothing_scales": SCALES, "autocorrelation_prior": True, "probability_matching": False}
    model = create_model("extrapolation_nowcast", **SMALL, **options)
    with torch.no_grad():
        model.prior_gates.fill_(1 / PRIOR_GATE_RATE)
    context, _ = _frames(4, fresh_detail=1.0, size=32)
    with torch.no_grad():
        out = model(context, horizon=3)
    extrapolated, velocity = extrapolate(context, 3)
    rho = lag1_correlations(context, velocity[:, 0], SCALES)
    leads = torch.arange(1, 4).view(1, 3, 1).float()
    weights = (1 - rho.unsqueeze(1) ** leads)[..., None, None].expand(-1, -1, -1, 32, 32)
    torch.testing.assert_close(out, smooth(extrapolated, weights, detail_bands(extrapolated, SCALES)))
    detail = [(out[0, k] - gaussian_blur(out[0, k : k + 1], 1.0)).std() for k in range(3)]
    assert detail[0] > detail[1] > detail[2], detail  # the further ahead, the less fine detail is kept


def test_the_gates_get_a_gradient_from_the_first_step() -> None:
    model = create_model("extrapolation_nowcast", **SMALL, autocorrelation_prior=True).train()
    context, future = _moving_rain(4 + 3).split([4, 3], dim=1)
    (model(context, horizon=3) - future).square().mean().backward()
    assert model.prior_gates.grad is not None and bool((model.prior_gates.grad != 0).any())


def test_saved_and_loaded_with_its_gates(tmp_path: object) -> None:
    model = create_model("extrapolation_nowcast", **SMALL, autocorrelation_prior=True)
    with torch.no_grad():
        model.prior_gates.copy_(torch.linspace(0.0, 0.1, 5))
    model.save_pretrained(tmp_path)  # type: ignore[arg-type]
    loaded = from_pretrained(tmp_path)  # type: ignore[arg-type]
    assert isinstance(loaded, ExtrapolationNowcast) and loaded.config.autocorrelation_prior
    assert torch.equal(loaded.prior_gates, model.prior_gates)


def test_a_prior_without_scales_or_a_non_bool_is_refused() -> None:
    with pytest.raises(ValueError, match="autocorrelation_prior needs smoothing_scales"):
        ExtrapolationNowcast(autocorrelation_prior=True, smoothing_scales=[])
    with pytest.raises(ValueError, match="autocorrelation_prior must be True or False"):
        ExtrapolationNowcast(autocorrelation_prior=1)  # type: ignore[arg-type]
