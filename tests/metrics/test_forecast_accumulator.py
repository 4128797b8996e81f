"""ForecastMetrics: batches accumulate to the one-batch result and to the functional scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convlstm.metrics import FORECAST_METRICS, ForecastMetrics, balanced_mse, bce_per_sequence, mse_per_frame, ssim

T = 4


def _data(seed: int = 0, batch: int = 7) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(batch, T, 1, 16, 16, generator=g, dtype=torch.float64)
    pred = (target + 0.2 * torch.randn(target.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    rain_rate = 40 * torch.rand(target.shape, generator=g, dtype=torch.float64)
    mask = torch.rand(1, 1, 1, 16, 16, generator=g) > 0.2
    return pred, target, rain_rate, mask


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-10, atol=1e-12, msg=key)


def test_batches_equal_one_batch_for_every_metric() -> None:
    pred, target, rain_rate, mask = _data()
    whole = ForecastMetrics(lead_times=T, metrics=FORECAST_METRICS)
    whole.update(pred, target, rain_rate=rain_rate, mask=mask)
    pieces = ForecastMetrics(lead_times=T, metrics=FORECAST_METRICS)
    for part in (slice(0, 2), slice(2, 3), slice(3, 7)):  # unequal batch sizes
        pieces.update(pred[part], target[part], rain_rate=rain_rate[part], mask=mask)
    assert pieces.num_sequences == whole.num_sequences == 7
    _assert_same(pieces.compute(), whole.compute())


def test_results_equal_the_functional_scores() -> None:
    pred, target, rain_rate, mask = _data(seed=1)
    metrics = ForecastMetrics(lead_times=T, metrics=FORECAST_METRICS, data_range=1.0)
    metrics.update(pred[:3], target[:3], rain_rate=rain_rate[:3], mask=mask)
    metrics.update(pred[3:], target[3:], rain_rate=rain_rate[3:], mask=mask)
    got = metrics.compute()
    for name, fn in [("mse_per_frame", mse_per_frame), ("ssim", ssim), ("bce_per_sequence", bce_per_sequence)]:
        # Every score respects the mask the balanced ones need.
        torch.testing.assert_close(got[name], fn(pred, target, mask=mask).double(), rtol=1e-9, atol=0)
        by_lead_time = fn(pred, target, mask=mask, reduction="lead_time").double()
        torch.testing.assert_close(got[f"{name}_by_lead_time"], by_lead_time)
    expected_b_mse = balanced_mse(pred, target, rain_rate=rain_rate, mask=mask)
    torch.testing.assert_close(got["b_mse"], expected_b_mse, rtol=1e-9, atol=0)


def test_headline_is_mean_over_lead_times_except_bce_which_is_a_sum() -> None:
    pred, target, _, _ = _data(seed=2)
    metrics = ForecastMetrics(lead_times=T, metrics=("mse_per_pixel", "psnr", "bce_per_sequence"))
    metrics.update(pred, target)
    got = metrics.compute()
    assert set(got) == {
        "mse_per_pixel",
        "mse_per_pixel_by_lead_time",
        "psnr",
        "psnr_by_lead_time",
        "bce_per_sequence",
        "bce_per_sequence_by_lead_time",
    }
    for name in ("mse_per_pixel", "psnr"):
        assert got[name].ndim == 0
        assert got[f"{name}_by_lead_time"].shape == (T,)
        torch.testing.assert_close(got[name], got[f"{name}_by_lead_time"].mean())
    torch.testing.assert_close(got["bce_per_sequence"], got["bce_per_sequence_by_lead_time"].sum())
    # Lead times differ, so the vector is not one value repeated.
    assert not torch.allclose(got["psnr_by_lead_time"], got["psnr_by_lead_time"][0].expand(T))


def test_merge_equals_single_accumulator_and_reset_forgets() -> None:
    pred, target, _, _ = _data(seed=3)
    whole = ForecastMetrics(lead_times=T)
    whole.update(pred, target)
    first, second = ForecastMetrics(lead_times=T), ForecastMetrics(lead_times=T)
    first.update(pred[:4], target[:4])
    second.update(pred[4:], target[4:])
    _assert_same(first.merge(second).compute(), whole.compute())
    whole.reset()
    with pytest.raises(ValueError, match="call update"):
        whole.compute()
    with pytest.raises(ValueError, match="cannot merge"):
        first.merge(ForecastMetrics(lead_times=T + 1))


def test_update_validates_its_inputs() -> None:
    pred, target, rain_rate, mask = _data(seed=4)
    metrics = ForecastMetrics(lead_times=T + 1)
    with pytest.raises(ValueError, match="lead times"):
        metrics.update(pred, target)
    metrics = ForecastMetrics(lead_times=T)
    with pytest.raises(ValueError, match=r"pred \(7, 4, 1, 16, 16\) and target \(7, 4, 1, 16, 15\)"):
        metrics.update(pred, target[..., :15])
    bad = pred.clone()
    bad[0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="pred contains NaN"):
        metrics.update(bad, target)
    with pytest.raises(ValueError, match="only used by"):
        metrics.update(pred, target, rain_rate=rain_rate)
    balanced = ForecastMetrics(lead_times=T, metrics=("b_mae",))
    with pytest.raises(ValueError, match="rain_rate must have target's shape"):
        balanced.update(pred, target, rain_rate=rain_rate[:1])
    with pytest.raises(ValueError, match="mask must be a bool tensor"):
        balanced.update(pred, target, mask=mask.float())
    assert metrics.num_sequences == 0
    assert balanced.num_sequences == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lead_times": 0}, "lead_times"),
        ({"lead_times": T, "metrics": ("mse",)}, "metrics must be distinct names"),
        ({"lead_times": T, "metrics": ("psnr", "psnr")}, "metrics must be distinct names"),
        ({"lead_times": T, "metrics": "psnr"}, "sequence of names"),
        ({"lead_times": T, "data_range": -1.0}, "data_range"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ForecastMetrics(**kwargs)


def test_float32_batches_match_float64_reference() -> None:
    pred, target, _, _ = _data(seed=5)
    metrics = ForecastMetrics(lead_times=T, metrics=("mse_per_frame", "correlation"))
    for part in (slice(0, 3), slice(3, 7)):
        metrics.update(pred[part].float(), target[part].float())
    diff = (pred - target).numpy()
    expected = (diff**2).reshape(7, T, -1).sum(-1).mean(0)
    np.testing.assert_allclose(metrics.compute()["mse_per_frame_by_lead_time"].numpy(), expected, rtol=1e-5)


def test_update_does_not_keep_the_autograd_graph() -> None:
    pred, target, _, _ = _data(seed=6)
    pred.requires_grad_(True)
    metrics = ForecastMetrics(lead_times=T)
    metrics.update(pred * 1.0, target)
    assert not metrics.sums.requires_grad
    assert metrics.compute()["mse_per_frame"].grad_fn is None
