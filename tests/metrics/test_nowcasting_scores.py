"""Nowcasting scores (HKO-7) against hand-written numpy contingency counts and balanced errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from convlstm.metrics import (
    HKO_THRESHOLDS,
    ContingencyTable,
    balanced_mae,
    balanced_mse,
    balanced_weights,
    pixel_to_rain_rate,
    rain_rate_to_pixel,
)

T = 3


def _rain(seed: int, shape: tuple[int, ...] = (4, T, 1, 12, 10)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # Log-normal-ish rain with exact threshold values sprinkled in, to exercise the >= convention.
    target = np.exp(rng.normal(0.0, 1.8, shape)) * (rng.uniform(size=shape) > 0.3)
    pred = np.exp(rng.normal(0.0, 1.8, shape)) * (rng.uniform(size=shape) > 0.3)
    for arr in (target, pred):
        flat = arr.reshape(-1)
        idx = rng.choice(flat.size, size=60, replace=False)
        flat[idx] = rng.choice(np.array(HKO_THRESHOLDS), size=60)
    return pred, target


def _numpy_counts(pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None, threshold: float) -> np.ndarray:
    valid = np.ones(target.shape, bool) if mask is None else np.broadcast_to(mask, target.shape)
    counts = np.zeros((4, target.shape[1]), np.int64)
    for t in range(target.shape[1]):
        f, o, m = pred[:, t] >= threshold, target[:, t] >= threshold, valid[:, t]
        counts[:, t] = [(f & o & m).sum(), (f & ~o & m).sum(), (~f & o & m).sum(), (~f & ~o & m).sum()]
    return counts


def _numpy_scores(counts: np.ndarray) -> dict[str, np.ndarray]:
    a, b, c, d = counts.astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "pod": a / (a + c),
            "far": b / (a + b),
            "csi": a / (a + b + c),
            "hss": 2 * (a * d - b * c) / ((a + c) * (c + d) + (a + b) * (b + d)),
        }


@pytest.mark.parametrize("use_mask", [False, True])
def test_contingency_counts_and_scores_match_numpy(use_mask: bool) -> None:
    pred, target = _rain(0)
    mask = np.random.default_rng(1).uniform(size=(1, 1, 1, 12, 10)) > 0.25 if use_mask else None
    table = ContingencyTable(thresholds=HKO_THRESHOLDS, lead_times=T)
    mask_t = None if mask is None else torch.from_numpy(mask)
    table.update(torch.from_numpy(pred[:1]), torch.from_numpy(target[:1]), mask=mask_t)
    table.update(torch.from_numpy(pred[1:]), torch.from_numpy(target[1:]), mask=mask_t)
    got = table.compute()
    for k, threshold in enumerate(HKO_THRESHOLDS):
        counts = _numpy_counts(pred, target, mask, threshold)
        np.testing.assert_array_equal(table.counts[:, k].numpy(), counts)
        label = f"{threshold:g}"
        for name, values in _numpy_scores(counts).items():
            np.testing.assert_allclose(got[f"{name}@{label}_by_lead_time"].numpy(), values, rtol=1e-12)
            np.testing.assert_allclose(got[f"{name}@{label}"].item(), np.nanmean(values), rtol=1e-12)
    np.testing.assert_array_equal(table.hits.numpy(), table.counts[0].numpy())
    np.testing.assert_array_equal(table.correct_negatives.numpy(), table.counts[3].numpy())


def test_event_is_value_at_or_above_threshold() -> None:
    # Exactly 2 mm/h everywhere is an event at 2 (HKO-7), though pysteps' strict > would count none.
    field = torch.full((1, T, 1, 4, 4), 2.0)
    table = ContingencyTable(thresholds=(2, 2.0001), lead_times=T)
    table.update(field, field)
    assert table.hits[0].tolist() == [16] * T
    assert table.hits[1].tolist() == [0] * T
    assert table.correct_negatives[1].tolist() == [16] * T
    assert table.compute()["csi@2"].item() == 1.0


def test_empty_denominators_give_nan_and_averages_skip_them() -> None:
    target = torch.zeros(1, T, 1, 4, 4)
    pred = torch.zeros(1, T, 1, 4, 4)
    target[0, 0, 0, 0, 0] = 40.0  # one observed event at lead time 0 only, not forecast
    pred[0, 1, 0, 0, 0] = 40.0  # one false alarm at lead time 1 only
    table = ContingencyTable(thresholds=(30,), lead_times=T)
    table.update(pred, target)
    got = table.compute()
    nan = np.nan
    np.testing.assert_array_equal(got["pod@30_by_lead_time"].numpy(), [0.0, nan, nan])  # NaN compares equal here
    np.testing.assert_array_equal(got["far@30_by_lead_time"].numpy(), [nan, 1.0, nan])
    np.testing.assert_array_equal(got["csi@30_by_lead_time"].numpy(), [0.0, 0.0, nan])
    # Averages skip the NaN lead times.
    assert got["pod@30"].item() == 0.0
    assert got["far@30"].item() == 1.0
    # All pixels events and all forecast: HSS's denominator is zero.
    everything = torch.full((1, T, 1, 2, 2), 50.0)
    full = ContingencyTable(thresholds=(30,), lead_times=T)
    full.update(everything, everything)
    assert torch.isnan(full.compute()["hss@30_by_lead_time"]).all()
    assert math.isnan(full.compute()["hss@30"].item())
    assert full.compute()["csi@30"].item() == 1.0


def test_tables_merge_and_add() -> None:
    pred, target = _rain(2)
    p, t = torch.from_numpy(pred), torch.from_numpy(target)
    whole = ContingencyTable(lead_times=T)
    whole.update(p, t)
    first, second = ContingencyTable(lead_times=T), ContingencyTable(lead_times=T)
    first.update(p[:2], t[:2])
    second.update(p[2:], t[2:])
    added = first + second
    assert torch.equal(added.counts, whole.counts)
    assert not torch.equal(first.counts, whole.counts)  # + leaves its operands alone
    assert torch.equal(first.merge(second).counts, whole.counts)
    with pytest.raises(ValueError, match="cannot merge"):
        first.merge(ContingencyTable(thresholds=(0.5,), lead_times=T))
    whole.reset()
    assert int(whole.counts.sum()) == 0


def test_score_names() -> None:
    table = ContingencyTable(thresholds=(0.5, 2, 5, 10, 30), lead_times=T)
    table.update(*(torch.from_numpy(x) for x in _rain(3)))
    keys = set(table.compute())
    for name in ("pod", "far", "csi", "hss"):
        for label in ("0.5", "2", "5", "10", "30"):
            assert {f"{name}@{label}", f"{name}@{label}_by_lead_time"} <= keys
    assert len(keys) == 4 * 5 * 2


def test_contingency_validates_inputs() -> None:
    x = torch.rand(2, T, 1, 4, 4)
    with pytest.raises(ValueError, match="lead times"):
        ContingencyTable(lead_times=T + 1).update(x, x)
    with pytest.raises(ValueError, match=r"pred \(2, 3, 1, 4, 4\) and target \(2, 3, 1, 4, 5\)"):
        ContingencyTable(lead_times=T).update(x, torch.rand(2, T, 1, 4, 5))
    with pytest.raises(ValueError, match="does not broadcast"):
        ContingencyTable(lead_times=T).update(x, x, mask=torch.ones(5, 5, dtype=torch.bool))
    nan = x.clone()
    nan[1, 2, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="target contains NaN"):
        ContingencyTable(lead_times=T).update(x, nan)
    with pytest.raises(ValueError, match="distinct"):
        ContingencyTable(thresholds=(2, 2.0), lead_times=T)
    with pytest.raises(ValueError, match="lead_times"):
        ContingencyTable(lead_times=0)


def test_balanced_weights_follow_hko_bins() -> None:
    rain = torch.tensor([0.0, 1.99, 2.0, 4.9, 5.0, 9.99, 10.0, 29.9, 30.0, 100.0])
    assert balanced_weights(rain).tolist() == [1, 1, 2, 2, 5, 5, 10, 10, 30, 30]
    with pytest.raises(ValueError, match="weights needs"):
        balanced_weights(rain, thresholds=(1.0,), weights=(1.0,))


def _numpy_weights(rain: np.ndarray) -> np.ndarray:
    conditions = [rain < 2, rain < 5, rain < 10, rain < 30]
    return np.select(conditions, [1.0, 2.0, 5.0, 10.0], default=30.0)


@pytest.mark.parametrize("use_mask", [False, True])
def test_balanced_errors_match_numpy(use_mask: bool) -> None:
    rng = np.random.default_rng(4)
    shape = (3, T, 1, 8, 8)
    target_px, pred_px = rng.uniform(0, 1, shape), rng.uniform(0, 1, shape)
    rain = pixel_to_rain_rate(torch.from_numpy(target_px)).numpy()
    mask = rng.uniform(size=(3, T, 1, 8, 8)) > 0.3 if use_mask else np.ones(shape, bool)
    weights = _numpy_weights(rain) * mask
    sq = (weights * (pred_px - target_px) ** 2).reshape(3, T, -1).sum(-1)
    ab = (weights * np.abs(pred_px - target_px)).reshape(3, T, -1).sum(-1)
    kwargs = {"rain_rate": torch.from_numpy(rain), "mask": torch.from_numpy(mask) if use_mask else None}
    p, t = torch.from_numpy(pred_px), torch.from_numpy(target_px)
    for fn, expected in ((balanced_mse, sq), (balanced_mae, ab)):
        np.testing.assert_allclose(fn(p, t, reduction="none", **kwargs).numpy(), expected, rtol=1e-12)
        np.testing.assert_allclose(fn(p, t, reduction="lead_time", **kwargs).numpy(), expected.mean(0), rtol=1e-12)
        np.testing.assert_allclose(fn(p, t, **kwargs).item(), expected.mean(), rtol=1e-12)


def test_balanced_error_weights_default_to_target_in_mm_per_hour() -> None:
    pred, target = _rain(5)
    expected = (_numpy_weights(target) * (pred - target) ** 2).reshape(4, T, -1).sum(-1).mean()
    np.testing.assert_allclose(balanced_mse(torch.from_numpy(pred), torch.from_numpy(target)).item(), expected)


def test_pixel_rain_rate_conversion_follows_z_r_relation() -> None:
    pixel = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    dbz = 70 * pixel.numpy() - 10
    z = 10 ** (dbz / 10)
    expected = (z / 58.53) ** (1 / 1.56)  # Z = a R^b
    np.testing.assert_allclose(pixel_to_rain_rate(pixel).numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(rain_rate_to_pixel(pixel_to_rain_rate(pixel)).numpy(), pixel.numpy(), rtol=1e-12)
    marshall_palmer = pixel_to_rain_rate(pixel, relation=(200.0, 1.6)).numpy()
    np.testing.assert_allclose(marshall_palmer, (z / 200.0) ** (1 / 1.6), rtol=1e-12)
