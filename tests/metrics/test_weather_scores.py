"""WeatherBench's latitude-weighted scores against hand computations and the ACC against its definition."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from convlstm.metrics import WeatherScores, latitude_weights

LAT = np.array([60.0, 30.0, 0.0, -30.0])


def test_latitude_weights_by_hand() -> None:
    # cos 0 = 1, cos 60 = 1/2: mean 3/4, so the weights are 4/3 and 2/3.
    np.testing.assert_allclose(latitude_weights([0.0, 60.0]), [4 / 3, 2 / 3], rtol=1e-12)
    # cos(+-30) = sqrt(3)/2, cos 90 = 0: mean sqrt(3)/3, so 1.5, 1.5 and 0.
    np.testing.assert_allclose(latitude_weights(np.array([-30.0, 30.0, 90.0])), [1.5, 1.5, 0.0], atol=1e-12)
    assert latitude_weights(torch.tensor([10.0, 20.0, 45.0])).mean() == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("latitudes", "match"),
    [([[0.0, 1.0]], "one value per grid row"), ([0.0, 91.0], r"\[-90, 90\]"), ([90.0, -90.0], "at a pole")],
)
def test_bad_latitudes_are_named(latitudes: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        latitude_weights(latitudes)


def test_rmse_mae_bias_by_hand() -> None:
    """An error of 1 K on the equator row and 0 at 60 N: weights 4/3 and 2/3, so the weighted mean of e^2 is
    (4/3) / (4/3 + 2/3) = 2/3."""
    forecast = np.zeros((1, 1, 1, 2, 3))
    forecast[..., 1, :] = -1.0  # row 1 is the equator
    scores = WeatherScores([60.0, 0.0], variables=["t2m"], lead_times=1)
    scores.update(forecast, np.zeros_like(forecast))
    result = scores.compute()
    assert result["rmse"][0, 0] == pytest.approx(math.sqrt(2 / 3))
    assert result["mae"][0, 0] == pytest.approx(2 / 3)
    assert result["bias"][0, 0] == pytest.approx(-2 / 3)
    assert "acc" not in result


def _fields(seed: int, shape: tuple[int, ...] = (3, 2, 2, 4, 5)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    climatology = 280 + rng.normal(size=shape[2:])[None, None]  # one field per variable, as a time mean
    observed = climatology + rng.normal(size=shape)
    forecast = observed + rng.normal(scale=0.7, size=shape) + 0.3
    return forecast, observed, np.broadcast_to(climatology, shape)


def _acc_by_definition(f: np.ndarray, o: np.ndarray, c: np.ndarray, lat: np.ndarray) -> float:
    """WeatherBench's compute_weighted_acc, written out: anomalies, centred by their plain means, weighted sums."""
    weights = np.cos(np.deg2rad(lat)) / np.cos(np.deg2rad(lat)).mean()
    w = weights[None, :, None]  # (B, H, W) of one lead time and variable
    fa, oa = f - c, o - c
    fa, oa = fa - fa.mean(), oa - oa.mean()
    return float((w * fa * oa).sum() / np.sqrt((w * fa**2).sum() * (w * oa**2).sum()))


def test_every_score_matches_numpy_per_lead_time_and_variable_and_batches_add_up() -> None:
    forecast, observed, climatology = _fields(0)
    whole = WeatherScores(LAT, variables=["t2m", "z@500"], lead_times=2)
    whole.update(forecast, observed, climatology=climatology)
    batched = WeatherScores(LAT, variables=["t2m", "z@500"], lead_times=2)
    for b in range(3):
        batched.update(torch.from_numpy(forecast[b : b + 1]), observed[b : b + 1], climatology=climatology[b : b + 1])
    result, parts = whole.compute(), batched.compute()
    weights = np.cos(np.deg2rad(LAT))[None, :, None]
    for k in range(2):
        for c in range(2):
            f, o, clim = forecast[:, k, c], observed[:, k, c], climatology[:, k, c]
            e = f - o
            w = np.broadcast_to(weights, e.shape)
            assert result["rmse"][k, c] == pytest.approx(np.sqrt((w * e**2).sum() / w.sum()), rel=1e-12)
            assert result["mae"][k, c] == pytest.approx((w * np.abs(e)).sum() / w.sum(), rel=1e-12)
            assert result["bias"][k, c] == pytest.approx((w * e).sum() / w.sum(), rel=1e-12)
            assert result["acc"][k, c] == pytest.approx(_acc_by_definition(f, o, clim, LAT), rel=1e-10)
    for name in result:
        np.testing.assert_allclose(parts[name], result[name], rtol=1e-12)
    assert 0.5 < result["acc"].min() < 1.0  # noisy forecasts of anomalies they share: positive, imperfect


def test_without_latitude_weights_every_cell_counts_alike() -> None:
    forecast, observed, _ = _fields(4)
    scores = WeatherScores(LAT, variables=["a", "b"], lead_times=2, latitude_weighted=False)
    scores.update(forecast, observed)
    error = forecast - observed
    np.testing.assert_allclose(scores.compute()["rmse"], np.sqrt((error**2).mean(axis=(0, 3, 4))), rtol=1e-12)
    np.testing.assert_allclose(scores.compute()["mae"], np.abs(error).mean(axis=(0, 3, 4)), rtol=1e-12)


def test_acc_is_one_for_the_truth_and_minus_one_for_flipped_anomalies() -> None:
    _, observed, climatology = _fields(1)
    for forecast, expected in ((observed, 1.0), (2 * climatology - observed, -1.0)):
        scores = WeatherScores(LAT, variables=["a", "b"], lead_times=2)
        scores.update(forecast, observed, climatology=climatology)
        np.testing.assert_allclose(scores.compute()["acc"], expected, atol=1e-12)


def test_a_masked_cell_counts_nowhere() -> None:
    forecast, observed, climatology = _fields(2)
    mask = np.ones(forecast.shape, dtype=bool)
    mask[:, :, :, 0, :] = False  # the 60 N row out
    spoiled = forecast.copy()
    spoiled[:, :, :, 0, :] = np.nan
    masked = WeatherScores(LAT, variables=["a", "b"], lead_times=2)
    masked.update(spoiled, observed, climatology=climatology, mask=mask)
    rows = WeatherScores(LAT[1:], variables=["a", "b"], lead_times=2)
    rows.update(forecast[..., 1:, :], observed[..., 1:, :], climatology=climatology[..., 1:, :])
    # The weights were normalised over all four rows, but every score is a ratio of weighted sums: the same.
    for name, values in rows.compute().items():
        np.testing.assert_allclose(masked.compute()[name], values, rtol=1e-10)


def test_bad_input_is_named() -> None:
    forecast, observed, climatology = _fields(3)
    scores = WeatherScores(LAT, variables=["a", "b"], lead_times=2)
    with pytest.raises(ValueError, match="lead times, variables, latitudes"):
        scores.update(forecast[:, :1], observed[:, :1])
    with pytest.raises(ValueError, match="NaN"):
        scores.update(np.full_like(forecast, np.nan), observed)
    with pytest.raises(ValueError, match="does not broadcast"):
        scores.update(forecast, observed, climatology=climatology[..., :2])
    scores.update(forecast, observed, climatology=climatology)
    with pytest.raises(ValueError, match="every batch"):
        scores.update(forecast, observed)
    with pytest.raises(ValueError, match="lead_times"):
        WeatherScores(LAT, variables=["a"], lead_times=0)
