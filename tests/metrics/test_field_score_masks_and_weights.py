"""Masks and importance weights in the field's scores: FSS, Brier score, reliability, ROC, CRPS, rank histogram.

For each: an all-valid mask gives the unmasked value; a mask gives what a computation on the visible pixels alone
gives (FSS: a brute-force loop over windows; the others: pysteps fed only the visible pixels), whatever the hidden
pixels hold; integer weights equal repeating sequences.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pysteps.verification import ensscores, probscores

from convlstm.metrics.field_scores import (
    DeterministicFieldScores,
    EnsembleScores,
    FractionsSkillScore,
    ProbabilityScores,
)

B, T, H, W = 3, 2, 12, 11
THRESHOLDS = (0.5, 2.0, 5.0)
SCALES = (1, 3, 4)  # an even side too: its window is placed as scipy's uniform_filter places it


def _rain(*shape: int, seed: int) -> torch.Tensor:
    """Continuous rain rates (mm/h) spanning the thresholds; no value sits exactly on one and none ties."""
    gen = torch.Generator().manual_seed(seed)
    return torch.exp(torch.randn(*shape, generator=gen, dtype=torch.float64) * 1.5)


def _mask(seed: int) -> torch.Tensor:
    """(B, T, 1, H, W): no coverage in a corner and at scattered pixels, and frame (2, 1) without coverage."""
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand(B, T, 1, H, W, generator=gen) > 0.15
    mask[..., :5, -4:] = False
    mask[2, 1] = False
    return mask


def _garbage(x: torch.Tensor, mask: torch.Tensor, *, low: float = -1e3, high: float = 1e3) -> torch.Tensor:
    """``x`` with NaN and wild values in every hidden pixel (``mask`` broadcasts to x)."""
    junk = torch.empty_like(x).uniform_(low, high, generator=torch.Generator().manual_seed(9))
    junk.view(-1)[::5] = float("nan")
    return torch.where(mask.expand_as(x), x, junk)


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], rtol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=rtol, atol=0.0, equal_nan=True, msg=key)


# --- FSS ---------------------------------------------------------------------------------------------------


def _fss(pred, target, mask=None, weight=None) -> dict[str, torch.Tensor]:
    scores = FractionsSkillScore(thresholds=THRESHOLDS, scales=SCALES, lead_times=T)
    scores.update(pred, target, mask=mask, weight=weight)
    return scores.compute()


def _fss_brute_force(pred: np.ndarray, target: np.ndarray, valid: np.ndarray, thr: float, scale: int) -> np.ndarray:
    """Per lead time: fractions of events among a window's visible pixels (outside the frame: visible, dry, as
    pysteps pads), over windows centred on visible pixels, summed over sequences before the ratio."""
    low = scale // 2  # scipy's uniform_filter places an even window one pixel further up-left
    out = []
    for t in range(pred.shape[1]):
        sums = np.zeros(3)  # F^2, F O, O^2
        for b in range(pred.shape[0]):
            f, o, v = pred[b, t, 0] >= thr, target[b, t, 0] >= thr, valid[b, t, 0]
            for i in range(H):
                for j in range(W):
                    if not v[i, j]:
                        continue
                    counted = events_f = events_o = 0
                    for di in range(-low, scale - low):
                        for dj in range(-low, scale - low):
                            y, x = i + di, j + dj
                            inside = 0 <= y < H and 0 <= x < W
                            if not inside or v[y, x]:
                                counted += 1
                                events_f += inside and f[y, x]
                                events_o += inside and o[y, x]
                    frac_f, frac_o = events_f / counted, events_o / counted
                    sums += (frac_f**2, frac_f * frac_o, frac_o**2)
        denominator = sums[0] + sums[2]
        out.append(1 - (sums[0] - 2 * sums[1] + sums[2]) / denominator if denominator > 0 else math.nan)
    return np.array(out)


def test_fss_with_an_all_valid_mask_is_pysteps_fss() -> None:
    pred, target = _rain(B, T, 1, H, W, seed=0), _rain(B, T, 1, H, W, seed=1)
    _same(_fss(pred, target, torch.ones(B, T, 1, H, W, dtype=torch.bool)), _fss(pred, target), rtol=1e-12)


def test_fss_counts_visible_pixels_only_whatever_hidden_ones_hold() -> None:
    pred, target, mask = _rain(B, T, 1, H, W, seed=2), _rain(B, T, 1, H, W, seed=3), _mask(4)
    got = _fss(pred, target, mask)
    for thr in THRESHOLDS:
        for scale in SCALES:
            expected = _fss_brute_force(pred.numpy(), target.numpy(), mask.numpy(), thr, scale)
            np.testing.assert_allclose(got[f"fss@{thr:g}_{scale}px_by_lead_time"].numpy(), expected, rtol=1e-12)
    _same(_fss(_garbage(pred, mask), _garbage(target, mask), mask), got)


def test_fss_integer_weights_equal_repeated_sequences() -> None:
    pred, target, mask = _rain(B, T, 1, H, W, seed=5), _rain(B, T, 1, H, W, seed=6), _mask(7)
    counts = torch.tensor([2, 0, 3])
    for m in (None, mask):
        weighted = _fss(pred, target, m, counts.double())
        repeated = _fss(
            *(x.repeat_interleave(counts, 0) for x in (pred, target)),
            None if m is None else m.repeat_interleave(counts, 0),
        )
        _same(weighted, repeated, rtol=1e-12)


# --- Brier score, reliability, ROC -------------------------------------------------------------------------


def _probabilities(seed: int) -> torch.Tensor:
    return torch.rand(B, T, len(THRESHOLDS), H, W, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _probability_scores(p, target, mask=None, weight=None) -> ProbabilityScores:
    scores = ProbabilityScores(thresholds=THRESHOLDS, lead_times=T, n_bins=5, n_prob_thresholds=6)
    scores.update(p, target, mask=mask, weight=weight)
    return scores


def _all_of(scores: ProbabilityScores) -> dict[str, torch.Tensor]:
    out = scores.compute()
    for thr in THRESHOLDS:
        for key, values in {**scores.reliability(thr), **scores.roc_curve(thr)}.items():
            out[f"{key}@{thr:g}"] = torch.tensor(values, dtype=torch.float64)
    return out


def test_probability_scores_with_an_all_valid_mask_are_the_unmasked_ones() -> None:
    p, target = _probabilities(0), _rain(B, T, 1, H, W, seed=1)
    everywhere = torch.ones(B, T, 1, H, W, dtype=torch.bool)
    _same(_all_of(_probability_scores(p, target, everywhere)), _all_of(_probability_scores(p, target)), rtol=1e-12)


def test_probability_scores_count_visible_pixels_only_whatever_hidden_ones_hold() -> None:
    p, target, mask = _probabilities(2), _rain(B, T, 1, H, W, seed=3), _mask(4)
    scores = _probability_scores(p, target, mask)
    got = scores.compute()
    v = mask.numpy()[:, :, 0]  # (B, T, H, W)
    for i, thr in enumerate(THRESHOLDS):
        pooled_rel = probscores.reldiag_init(thr, n_bins=5, min_count=0)
        pooled_roc = probscores.ROC_curve_init(thr, n_prob_thrs=6)
        for t in range(T):
            forecast, observed = p.numpy()[:, t, i][v[:, t]], target.numpy()[:, t, 0][v[:, t]]  # visible pixels
            brier = np.mean((forecast - (observed >= thr)) ** 2)
            assert got[f"brier@{thr:g}_by_lead_time"][t].item() == pytest.approx(brier, rel=1e-12)
            roc = probscores.ROC_curve_init(thr, n_prob_thrs=6)
            probscores.ROC_curve_accum(roc, forecast, observed)
            area = probscores.ROC_curve_compute(roc, compute_area=True)[2]
            assert got[f"roc_auc@{thr:g}_by_lead_time"][t].item() == pytest.approx(area, rel=1e-12)
            probscores.reldiag_accum(pooled_rel, forecast, observed)
            probscores.ROC_curve_accum(pooled_roc, forecast, observed)
        assert scores.reliability(thr)["count"] == pooled_rel["sample_size"].tolist()
        with np.errstate(invalid="ignore", divide="ignore"):
            expected_frequency = probscores.reldiag_compute(pooled_rel)[1]
        np.testing.assert_allclose(scores.reliability(thr)["observed_frequency"], expected_frequency, rtol=1e-12)
    dirty = _garbage(p, mask, low=-5, high=5)  # outside [0, 1] where hidden: not an error there
    _same(_all_of(_probability_scores(dirty, _garbage(target, mask), mask)), _all_of(scores))


def test_probability_scores_integer_weights_equal_repeated_sequences() -> None:
    p, target, mask = _probabilities(5), _rain(B, T, 1, H, W, seed=6), _mask(7)
    counts = torch.tensor([1, 3, 2])
    for m in (None, mask):
        weighted = _all_of(_probability_scores(p, target, m, counts.double()))
        repeated = _all_of(
            _probability_scores(
                *(x.repeat_interleave(counts, 0) for x in (p, target)),
                None if m is None else m.repeat_interleave(counts, 0),
            )
        )
        _same(weighted, repeated, rtol=1e-12)


def test_a_hidden_probability_outside_the_unit_interval_is_fine_a_visible_one_is_not() -> None:
    p, target, mask = _probabilities(8), _rain(B, T, 1, H, W, seed=9), _mask(10)
    p[0, 0, 0, 0, -1] = 1.5
    assert not mask[0, 0, 0, 0, -1]
    _probability_scores(p, target, mask)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        _probability_scores(p, target)


# --- CRPS and the rank histogram ---------------------------------------------------------------------------


def _ensemble_scores(ensemble, target, mask=None, weight=None) -> EnsembleScores:
    scores = EnsembleScores(members=4, lead_times=T, rank_threshold=None)
    scores.update(ensemble, target, mask=mask, weight=weight)
    return scores


def _ensemble_results(scores: EnsembleScores) -> dict[str, torch.Tensor]:
    return {**scores.compute(), "rank_histogram": torch.tensor(scores.rank_histogram(), dtype=torch.float64)}


def test_ensemble_scores_with_an_all_valid_mask_are_the_unmasked_ones() -> None:
    ensemble, target = _rain(B, 4, T, 1, H, W, seed=0), _rain(B, T, 1, H, W, seed=1)
    everywhere = torch.ones(B, T, 1, H, W, dtype=torch.bool)
    _same(
        _ensemble_results(_ensemble_scores(ensemble, target, everywhere)),
        _ensemble_results(_ensemble_scores(ensemble, target)),
        rtol=1e-12,
    )


def test_ensemble_scores_count_visible_pixels_only_whatever_hidden_ones_hold() -> None:
    ensemble, target, mask = _rain(B, 4, T, 1, H, W, seed=2), _rain(B, T, 1, H, W, seed=3), _mask(4)
    scores = _ensemble_scores(ensemble, target, mask)
    v = mask.numpy()[:, :, 0]
    rank = ensscores.rankhist_init(4, None)
    for t in range(T):
        members = ensemble.numpy()[:, :, t, 0].transpose(1, 0, 2, 3)[:, v[:, t]]  # (N, visible pixels)
        observed = target.numpy()[:, t, 0][v[:, t]]
        expected = probscores.CRPS(members, observed)
        assert scores.compute()["crps_by_lead_time"][t].item() == pytest.approx(expected, rel=1e-12)
        ensscores.rankhist_accum(rank, members, observed)
    np.testing.assert_allclose(scores.rank_histogram(), rank["n"] / rank["n"].sum(), rtol=1e-12)
    dirty = _ensemble_scores(_garbage(ensemble, mask.unsqueeze(1)), _garbage(target, mask), mask)
    _same(_ensemble_results(dirty), _ensemble_results(scores))


def test_ensemble_scores_integer_weights_equal_repeated_sequences() -> None:
    ensemble, target, mask = _rain(B, 4, T, 1, H, W, seed=5), _rain(B, T, 1, H, W, seed=6), _mask(7)
    counts = torch.tensor([3, 0, 1])
    for m in (None, mask):
        weighted = _ensemble_results(_ensemble_scores(ensemble, target, m, counts.double()))
        repeated = _ensemble_results(
            _ensemble_scores(
                *(x.repeat_interleave(counts, 0) for x in (ensemble, target)),
                None if m is None else m.repeat_interleave(counts, 0),
            )
        )
        _same(weighted, repeated, rtol=1e-12)


def test_deterministic_field_scores_pass_mask_and_weight_on() -> None:
    pred, target, mask = _rain(B, T, 1, H, W, seed=8), _rain(B, T, 1, H, W, seed=9), _mask(10)
    weight = torch.tensor([0.5, 2.0, 1.5])
    scores = DeterministicFieldScores(thresholds=THRESHOLDS, lead_times=T)
    scores.update(pred, target, mask=mask, weight=weight)
    dirty = DeterministicFieldScores(thresholds=THRESHOLDS, lead_times=T)
    dirty.update(_garbage(pred, mask), _garbage(target, mask), mask=mask, weight=weight)
    _same(dirty.compute(), scores.compute())
    unweighted = DeterministicFieldScores(thresholds=THRESHOLDS, lead_times=T)
    unweighted.update(pred, target, mask=mask)
    assert unweighted.compute()["brier@2"].item() != pytest.approx(scores.compute()["brier@2"].item(), rel=1e-6)
