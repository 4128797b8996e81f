"""The exact CRPS of an ensemble against its definition, ties included, and where pysteps' differs."""

import itertools

import numpy as np
import pytest
import torch
from pysteps.verification.probscores import CRPS

from convlstm.metrics.crps import crps_ensemble
from convlstm.metrics.field_scores import EnsembleScores


def _crps_by_integration(members: np.ndarray, y: float) -> float:
    """The definition, integral of (F(x) - H(x - y))^2 dx, exact for a step function F: summed between the sorted
    members and the observation, where both functions are constant."""
    points = np.sort(np.append(members, y))
    total = 0.0
    for left, right in itertools.pairwise(points):
        inside = (left + right) / 2
        forecast = np.mean(members <= inside)
        observed = float(inside >= y)
        total += (forecast - observed) ** 2 * (right - left)
    return total


def _fair_by_pairs(members: np.ndarray, y: float) -> float:
    m = len(members)
    pairs = np.abs(members[:, None] - members[None, :]).sum()
    return float(np.abs(members - y).mean() - pairs / (2 * m * (m - 1)))


def test_the_example_with_ties_that_pysteps_gets_wrong() -> None:
    members = torch.tensor([[0.0, 0.0, 0.0, 1.0, 2.0]], dtype=torch.float64)
    assert crps_ensemble(members, torch.zeros(1, dtype=torch.float64)).item() == pytest.approx(0.2, abs=1e-15)
    assert _crps_by_integration(members[0].numpy(), 0.0) == pytest.approx(0.2)
    pysteps = CRPS(members.numpy().reshape(5, 1), np.zeros(1))
    assert pysteps == pytest.approx(0.04, abs=1e-12)  # the bias this module avoids


@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_equals_the_definition_on_integer_ensembles_with_ties(size: int) -> None:
    rng = np.random.default_rng(size)
    members = rng.integers(0, 3, size=(50, size)).astype(np.float64)  # many ties among members and observations
    observed = rng.integers(0, 3, size=50).astype(np.float64)
    ours = crps_ensemble(torch.from_numpy(members), torch.from_numpy(observed)).numpy()
    expected = [_crps_by_integration(m, y) for m, y in zip(members, observed, strict=True)]
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)
    if size >= 2:
        fair = crps_ensemble(torch.from_numpy(members), torch.from_numpy(observed), fair=True).numpy()
        np.testing.assert_allclose(fair, [_fair_by_pairs(m, y) for m, y in zip(members, observed, strict=True)])


def test_fair_crps_of_two_members_and_its_expectation() -> None:
    # M = 2: (|x1 - y| + |x2 - y| - |x1 - x2|) / 2, zero when y lies between the members.
    members = torch.tensor([[1.0, 3.0], [1.0, 3.0]])
    assert crps_ensemble(members, torch.tensor([2.0, 4.0]), fair=True).tolist() == pytest.approx([0.0, 1.0])
    # Members drawn from the truth's own distribution score the same on average whatever their number when fair,
    # while the empirical CRPS favours larger ensembles.
    gen = torch.Generator().manual_seed(0)
    truth = torch.randn(200_000, generator=gen, dtype=torch.float64)
    small = torch.randn(200_000, 2, generator=gen, dtype=torch.float64)
    large = torch.randn(200_000, 16, generator=gen, dtype=torch.float64)
    fair_small, fair_large = (crps_ensemble(m, truth, fair=True).mean().item() for m in (small, large))
    assert fair_small == pytest.approx(fair_large, rel=0.01)  # standard errors ~0.2 % of the mean
    assert crps_ensemble(small, truth).mean().item() > 1.2 * crps_ensemble(large, truth).mean().item()


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match=r"members must be \(B, M, \*rest\)"):
        crps_ensemble(torch.zeros(2, 3), torch.zeros(3))
    with pytest.raises(ValueError, match="fair CRPS needs at least 2 members, got 1"):
        crps_ensemble(torch.zeros(2, 1), torch.zeros(2), fair=True)


def test_ensemble_scores_report_the_exact_and_the_fair_crps() -> None:
    # One 2x2 field, one lead time: dry everywhere observed, three of five members dry (the tie pysteps drops).
    members = torch.zeros(1, 5, 1, 1, 2, 2, dtype=torch.float64)
    members[0, 3], members[0, 4] = 1.0, 2.0
    scores = EnsembleScores(members=5, lead_times=1)
    scores.update(members, torch.zeros(1, 1, 1, 2, 2, dtype=torch.float64))
    out = scores.compute()
    assert out["crps"].item() == pytest.approx(0.2)
    assert out["crps_fair"].item() == pytest.approx(0.6 - 20 / 40)
