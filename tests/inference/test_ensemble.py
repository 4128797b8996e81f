"""The statistics of the input perturbation behind ensembles from any forecaster (convlstm.inference.ensemble):
a log-normal factor of mean about 1, smooth over ``correlation_pixels`` and independent beyond, one field per
member for all its frames. tests/models/test_exceedance.py checks the ensembles built from it."""

import pytest
import torch

from convlstm.inference.ensemble import perturb_context

SIGMA = 0.3


def factors(correlation_pixels: int, *, seed: int = 0, members: int = 64, size: int = 64) -> torch.Tensor:
    """The perturbation factors of ``members`` contexts of ones, 2 frames of size x size: (members, 2, size, size)."""
    context = torch.ones(members, 2, 1, size, size)
    generator = torch.Generator().manual_seed(seed)
    perturbed = perturb_context(
        context, noise_std=SIGMA, correlation_pixels=correlation_pixels, generator=generator, max_value=None
    )
    return perturbed[:, :, 0]


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).mean() / (a.std() * b.std()))


def lagged(log_factor: torch.Tensor, lag: int) -> float:
    """The correlation of the log-factor at pixels ``lag`` apart along rows."""
    return correlation(log_factor[..., :-lag], log_factor[..., lag:])


def test_factor_is_log_normal_with_mean_about_one() -> None:
    log_factor = factors(8)[:, 0].log()
    # log factor = sigma * field - sigma^2 / 2 with a zero-mean field: its mean is -sigma^2 / 2 whatever the field's
    # variance (the standard error over 64 members of 64x64 pixels in 8-pixel cells is about 0.005).
    assert float(log_factor.mean()) == pytest.approx(-(SIGMA**2) / 2, abs=0.02)
    # Bilinear upsampling narrows the unit field between grid points (variance 1 at them, 1/4 at a cell's centre).
    assert 0.5 * SIGMA < float(log_factor.std()) < SIGMA
    mean = float(log_factor.exp().mean())
    assert 0.94 < mean < 1.01  # exp(sigma^2 (v - 1) / 2) <= 1 for the local variance v <= 1


@pytest.mark.parametrize("correlation_pixels", [8, 16])
def test_factor_is_smooth_within_the_correlation_scale_and_independent_beyond(correlation_pixels: int) -> None:
    log_factor = factors(correlation_pixels)[:, 0].log()
    assert lagged(log_factor, correlation_pixels // 4) > 0.8  # neighbours move together
    assert lagged(log_factor, correlation_pixels // 2) > 0.5
    for far in (2 * correlation_pixels, 3 * correlation_pixels):
        if far < log_factor.shape[-1] - 8:
            assert abs(lagged(log_factor, far)) < 0.1  # no grid point shared: independent
    # Members are independent of each other.
    assert abs(correlation(log_factor[:-1], log_factor[1:])) < 0.1


def test_one_field_per_member_for_all_its_frames() -> None:
    perturbed = factors(8, members=4)
    assert torch.equal(perturbed[:, 0], perturbed[:, 1])
    assert not torch.equal(perturbed[0, 0], perturbed[1, 0])


def test_the_same_generator_state_gives_the_same_perturbation() -> None:
    assert torch.equal(factors(8, seed=3, members=2), factors(8, seed=3, members=2))
    assert not torch.equal(factors(8, seed=3, members=2), factors(8, seed=4, members=2))


@pytest.mark.parametrize(
    ("arguments", "match"),
    [
        ({"noise_std": -0.1}, r"^noise_std must be in \[0.0, inf\], got -0.1$"),
        ({"noise_std": float("nan")}, r"^noise_std must be in"),
        ({"correlation_pixels": 0}, r"^correlation_pixels must be an int >= 1, got 0$"),
        ({"correlation_pixels": 2.0}, r"^correlation_pixels must be an int >= 1, got float"),
    ],
)
def test_bad_perturbation_arguments_are_named(arguments: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        perturb_context(torch.ones(1, 2, 1, 8, 8), **{"noise_std": SIGMA, **arguments})  # type: ignore[arg-type]
