"""The field's scores: our contingency scores against pysteps' det_cat_fct, FSS, Brier/reliability/ROC, CRPS and
the rank histogram on cases whose answer is known."""

import numpy as np
import pytest
import torch
from pysteps.verification.detcatscores import det_cat_fct
from pysteps.verification.probscores import CRPS
from pysteps.verification.spatialscores import fss

from convlstm.metrics import ContingencyTable
from convlstm.metrics.field_scores import (
    EnsembleScores,
    FractionsSkillScore,
    ProbabilityScores,
    exceedance_from_deterministic,
    exceedance_from_ensemble,
)

THRESHOLDS = (0.5, 2.0, 5.0, 10.0, 30.0)


def _rain(*shape: int, seed: int) -> torch.Tensor:
    """Continuous rain rates (mm/h) spanning every threshold; no value sits exactly on one."""
    gen = torch.Generator().manual_seed(seed)
    return torch.exp(torch.randn(*shape, generator=gen, dtype=torch.float64) * 1.5)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # pysteps divides 0 by 0 for an empty table
def test_contingency_scores_agree_with_pysteps_det_cat_fct() -> None:
    pred, target = _rain(3, 4, 1, 12, 10, seed=0), _rain(3, 4, 1, 12, 10, seed=1)
    table = ContingencyTable(thresholds=THRESHOLDS, lead_times=4)
    table.update(pred, target)
    ours = table.scores()
    for k, thr in enumerate(THRESHOLDS):
        for t in range(4):
            theirs = det_cat_fct(pred[:, t].numpy(), target[:, t].numpy(), thr, scores=["POD", "FAR", "CSI", "HSS"])
            for name in ("pod", "far", "csi", "hss"):
                # Both are ratios of the same integer counts in float64.
                assert ours[name][k, t].item() == pytest.approx(theirs[name.upper()], rel=1e-12, nan_ok=True)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_threshold_conventions_differ_only_on_the_threshold() -> None:
    # HKO-7 (ours) counts value >= threshold as an event; det_cat_fct counts value > threshold.
    pred = torch.full((1, 1, 1, 2, 2), 2.0, dtype=torch.float64)
    table = ContingencyTable(thresholds=(2.0,), lead_times=1)
    table.update(pred, pred)
    assert table.compute()["csi@2"].item() == 1.0
    assert np.isnan(det_cat_fct(pred.numpy(), pred.numpy(), 2.0, scores="CSI")["CSI"])


def test_fss_matches_pysteps_per_field_and_grows_with_scale_for_a_displaced_echo() -> None:
    pred, target = _rain(1, 2, 1, 20, 20, seed=2), _rain(1, 2, 1, 20, 20, seed=3)
    scores = FractionsSkillScore(thresholds=(2.0,), scales=(1, 5), lead_times=2)
    scores.update(pred, target)
    out = scores.compute()
    for t in range(2):
        expected = fss(pred[0, t, 0].numpy(), target[0, t, 0].numpy(), 2.0, 5)
        assert out["fss@2_5px_by_lead_time"][t].item() == pytest.approx(expected, rel=1e-12)
    echo = torch.zeros(1, 1, 1, 32, 32, dtype=torch.float64)
    echo[..., 10:16, 10:16] = 10.0
    moved = echo.roll(3, dims=-1)
    by_scale = FractionsSkillScore(thresholds=(5.0,), scales=(1, 3, 9), lead_times=1)
    by_scale.update(moved, echo)
    values = [by_scale.compute()[f"fss@5_{s}px"].item() for s in (1, 3, 9)]
    assert values[0] == pytest.approx(0.5) and values[0] < values[1] < values[2] < 1.0  # 3 of 6 columns overlap
    same = FractionsSkillScore(thresholds=(5.0,), scales=(3,), lead_times=1)
    same.update(echo, echo)
    assert same.compute()["fss@5_3px"].item() == 1.0


def test_brier_score_roc_and_reliability() -> None:
    target = torch.tensor([3.0, 0.0, 3.0, 0.0], dtype=torch.float64).view(1, 1, 1, 2, 2)
    probabilities = torch.tensor([0.7, 0.2, 0.7, 0.2], dtype=torch.float64).view(1, 1, 1, 2, 2)
    scores = ProbabilityScores(thresholds=(2.0,), lead_times=1)
    scores.update(probabilities, target)
    out = scores.compute()
    assert out["brier@2"].item() == pytest.approx((0.3**2 + 0.2**2) / 2, rel=1e-12)
    assert out["roc_auc@2"].item() == pytest.approx(1.0)  # every event gets a higher probability than every non-event

    # Probabilities that are calibrated by construction: the outcome is drawn with the forecast probability.
    gen = torch.Generator().manual_seed(0)
    p = torch.rand(1, 2, 1, 200, 200, generator=gen, dtype=torch.float64)
    outcome = (torch.rand(p.shape, generator=gen, dtype=torch.float64) < p).to(torch.float64) * 10.0
    calibrated = ProbabilityScores(thresholds=(5.0,), lead_times=2, n_bins=10)
    calibrated.update(p, outcome)
    diagram = calibrated.reliability(5.0)
    # ~8000 samples per bin: the observed frequency's standard error is below 0.006; 0.03 is five of them.
    np.testing.assert_allclose(diagram["observed_frequency"], diagram["forecast_probability"], atol=0.03)
    assert sum(diagram["count"]) == p.numel()
    # For a calibrated p ~ U(0, 1) the Brier score is E[p(1 - p)] = 1/6 and the ROC area 5/6 (sampling error ~0.003).
    assert calibrated.compute()["brier@5"].item() == pytest.approx(1 / 6, abs=0.01)
    assert calibrated.roc_curve(5.0)["area"] == pytest.approx(5 / 6, abs=0.02)
    # A skilful forecast's curve lies above the diagonal: POD above POFD at every probability threshold between.
    curve = calibrated.roc_curve(5.0)
    inner = [(d, f) for d, f in zip(curve["pod"], curve["pofd"], strict=True) if 0 < f < 1]
    assert inner and all(d > f for d, f in inner)


def test_probability_inputs_are_checked() -> None:
    scores = ProbabilityScores(thresholds=(2.0, 5.0), lead_times=1)
    with pytest.raises(ValueError, match=r"probabilities must be \(B, T, 2, H, W\)"):
        scores.update(torch.rand(1, 1, 1, 2, 2), torch.rand(1, 1, 1, 2, 2))
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        scores.update(torch.full((1, 1, 2, 2, 2), 1.5), torch.rand(1, 1, 1, 2, 2))
    with pytest.raises(ValueError, match="threshold must be one of"):
        scores.reliability(3.0)


def test_crps_matches_pysteps_and_is_the_mae_for_equal_members() -> None:
    ensemble, target = _rain(2, 5, 3, 1, 6, 6, seed=4), _rain(2, 3, 1, 6, 6, seed=5)
    scores = EnsembleScores(members=5, lead_times=3)
    scores.update(ensemble, target)
    out = scores.compute()
    for t in range(3):
        expected = CRPS(ensemble[:, :, t].transpose(0, 1).numpy(), target[:, t].numpy())
        assert out["crps_by_lead_time"][t].item() == pytest.approx(expected, rel=1e-12)
    one = target.unsqueeze(1).expand(2, 4, 3, 1, 6, 6) + 1.0  # four equal members, one mm/h too wet
    same = EnsembleScores(members=4, lead_times=3)
    same.update(one, target)
    assert same.compute()["crps"].item() == pytest.approx(1.0, rel=1e-9)


def test_rank_histogram_is_flat_when_observation_and_members_share_a_distribution() -> None:
    ensemble, target = _rain(4, 9, 1, 1, 50, 50, seed=6), _rain(4, 1, 1, 50, 50, seed=7)
    scores = EnsembleScores(members=9, lead_times=1, rank_threshold=None)
    scores.update(ensemble, target)
    histogram = scores.rank_histogram()
    assert len(histogram) == 10 and sum(histogram) == pytest.approx(1.0)
    # 10,000 pixels over 10 ranks: each frequency 0.1 with standard error 0.003; 0.02 is more than six of them.
    np.testing.assert_allclose(histogram, 0.1, atol=0.02)
    biased = EnsembleScores(members=9, lead_times=1, rank_threshold=None)
    biased.update(ensemble * 0.1, target)  # far too dry: the observation ranks above every member
    assert biased.rank_histogram()[-1] > 0.5


def test_values_exactly_on_a_threshold_are_events() -> None:
    """An event is value >= threshold, as in the contingency table: a member or a forecast exactly at a threshold
    counts, the float just below it does not."""
    below = torch.nextafter(torch.tensor(2.0), torch.tensor(0.0)).item()
    members = torch.tensor([0.5, 2.0, below, 5.0]).view(1, 4, 1, 1, 1, 1)
    assert exceedance_from_ensemble(members, (0.5, 2.0, 5.0, 10.0)).flatten().tolist() == [1.0, 0.5, 0.25, 0.0]
    forecast = torch.tensor([2.0, below, 5.0]).view(1, 3, 1, 1, 1)  # three lead times
    probabilities = exceedance_from_deterministic(forecast, (2.0, 5.0))  # (1, 3, 2, 1, 1)
    assert probabilities[0, :, :, 0, 0].tolist() == [[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]]
    table = ContingencyTable(thresholds=(2.0,), lead_times=3)
    table.update(forecast, forecast)
    assert table.hits[0].tolist() == [1.0, 0.0, 1.0]  # per lead time: the same events as the probabilities


def test_exceedance_probabilities_from_ensembles_and_deterministic_forecasts() -> None:
    members = torch.tensor([0.0, 1.0, 3.0, 6.0]).view(1, 4, 1, 1, 1, 1)
    probabilities = exceedance_from_ensemble(members, (0.5, 2.0, 5.0, 10.0))
    assert probabilities.flatten().tolist() == [0.75, 0.5, 0.25, 0.0]
    deterministic = exceedance_from_deterministic(torch.tensor([3.0]).view(1, 1, 1, 1, 1), (2.0, 5.0))
    assert deterministic.flatten().tolist() == [1.0, 0.0]
