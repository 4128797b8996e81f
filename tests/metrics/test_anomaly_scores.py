"""Anomaly scores: ROC-AUC against a hand-written rank statistic, regularity against numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convlstm.metrics import cumulative_regularity, frame_auroc, regularity_score


def _rank_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Probability that an anomalous frame outscores a normal one, ties counting half (Mann-Whitney U)."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (pos.size * neg.size))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_matches_rank_statistic_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.uniform(size=(5, 40)) < 0.3
    scores = np.round(rng.normal(size=(5, 40)) + 0.8 * labels, 1)  # rounding makes ties
    got = frame_auroc(torch.from_numpy(scores), torch.from_numpy(labels))
    np.testing.assert_allclose(got.item(), _rank_auc(scores.ravel(), labels.ravel().astype(int)), rtol=1e-6)


def test_auroc_of_raw_psnr_values_with_normal_high() -> None:
    # PSNRs of 30-45 dB: a sigmoid would map them all to 1.0; the ranking must survive.
    rng = np.random.default_rng(3)
    labels = rng.uniform(size=200) < 0.25
    psnr = 38 + rng.normal(size=200) * 3 - 4 * labels
    expected = _rank_auc(-psnr, labels.astype(int))
    got = frame_auroc(torch.from_numpy(psnr).float(), torch.from_numpy(labels), higher_is_anomalous=False)
    np.testing.assert_allclose(got.item(), expected, rtol=1e-6)
    assert 0.7 < expected < 1.0


def test_auroc_perfect_and_inverted() -> None:
    labels = torch.tensor([0, 0, 1, 1, 0, 1])
    scores = torch.tensor([0.1, 0.2, 0.9, 0.8, 0.3, 0.7])
    assert frame_auroc(scores, labels).item() == 1.0
    assert frame_auroc(scores, labels, higher_is_anomalous=False).item() == 0.0


def test_auroc_validates_inputs() -> None:
    with pytest.raises(ValueError, match="both normal and anomalous"):
        frame_auroc(torch.rand(10), torch.zeros(10))
    with pytest.raises(ValueError, match=r"scores \(10,\) and labels \(9,\)"):
        frame_auroc(torch.rand(10), torch.zeros(9))
    with pytest.raises(ValueError, match="binary"):
        frame_auroc(torch.rand(4), torch.tensor([0, 1, 2, 1]))
    with pytest.raises(ValueError, match="scores contains NaN"):
        frame_auroc(torch.tensor([0.1, float("nan")]), torch.tensor([0, 1]))


def test_regularity_is_min_max_normalised_per_video() -> None:
    rng = np.random.default_rng(4)
    psnr = rng.uniform(20, 40, 30)
    videos = np.repeat([7, 2, 9], 10)
    rng.shuffle(videos)
    expected = np.empty_like(psnr)
    for v in np.unique(videos):
        sel = videos == v
        expected[sel] = (psnr[sel] - psnr[sel].min()) / (psnr[sel].max() - psnr[sel].min())
    got = regularity_score(torch.from_numpy(psnr), torch.from_numpy(videos))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)
    for v in np.unique(videos):
        assert got[torch.from_numpy(videos == v)].min().item() == 0.0
        assert got[torch.from_numpy(videos == v)].max().item() == 1.0


def test_regularity_of_one_video_and_constant_video() -> None:
    psnr = torch.tensor([[30.0, 35.0, 40.0]])
    assert regularity_score(psnr).tolist() == [[0.0, 0.5, 1.0]]
    assert regularity_score(torch.full((4,), 33.0)).tolist() == [1.0] * 4


def test_regularity_validates_inputs() -> None:
    with pytest.raises(ValueError, match="psnr contains inf"):
        regularity_score(torch.tensor([30.0, float("inf")]))
    with pytest.raises(ValueError, match="psnr contains NaN"):
        regularity_score(torch.tensor([30.0, float("nan")]))
    with pytest.raises(ValueError, match="video_ids must have psnr's shape"):
        regularity_score(torch.rand(5), torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ValueError, match="integer"):
        regularity_score(torch.rand(4), torch.zeros(4))


def test_cumulative_regularity_is_the_running_minimum_over_the_cap() -> None:
    rng = np.random.default_rng(0)
    psnr = rng.uniform(10, 40, size=(3, 9))
    got = cumulative_regularity(torch.from_numpy(psnr), max_psnr=50.0).numpy()
    for row, values in zip(got, psnr, strict=True):
        expected = [min(values[: t + 1]) / 50.0 for t in range(len(values))]
        np.testing.assert_allclose(row, expected, rtol=1e-12)


def test_cumulative_regularity_validates_inputs() -> None:
    with pytest.raises(ValueError, match=r"psnr must be a floating \(N, T\) tensor, got shape \(4,\)"):
        cumulative_regularity(torch.ones(4), max_psnr=100.0)
    with pytest.raises(ValueError, match=r"psnr must be capped at max_psnr=30\.0"):
        cumulative_regularity(torch.full((1, 3), 31.0), max_psnr=30.0)
    with pytest.raises(ValueError, match="NaN"):
        cumulative_regularity(torch.tensor([[1.0, float("nan")]]), max_psnr=100.0)
