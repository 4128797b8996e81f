"""Masks and importance weights in the per-lead-time forecast scores, the accumulator and the contingency table.

For every score: an all-valid mask gives the unmasked value; a mask that hides pixels gives what a brute-force
computation on the visible pixels gives, whatever the hidden pixels hold; integer weights equal repeating sequences.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from convlstm.metrics import (
    FORECAST_METRICS,
    HKO_THRESHOLDS,
    ContingencyTable,
    ForecastMetrics,
    balanced_mae,
    balanced_mse,
    balanced_weights,
    bce_per_sequence,
    correlation,
    mae_per_frame,
    mae_per_pixel,
    mse_per_frame,
    mse_per_pixel,
    psnr,
    ssim,
)

B, T, C, H, W = 3, 3, 2, 14, 13
EPS = 1e-7  # bce_per_sequence's clamping margin


def _data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """pred and target in [0, 1] and a (B, T, 1, H, W) mask: a hidden block, scattered hidden pixels, and frame
    (1, 2) hidden whole."""
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(B, T, C, H, W, generator=g, dtype=torch.float64)
    pred = (target + 0.3 * torch.randn(target.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    mask = torch.rand(B, T, 1, H, W, generator=g) > 0.2
    mask[..., :4, :5] = False
    mask[1, 2] = False
    return pred, target, mask


def _garbage(x: torch.Tensor, mask: torch.Tensor, seed: int = 1) -> torch.Tensor:
    """``x`` with wild values (NaN, infinities aside: huge, negative, > 1) written into every hidden pixel."""
    g = torch.Generator().manual_seed(seed)
    junk = 50 * torch.randn(x.shape, generator=g, dtype=x.dtype)
    junk.view(-1)[::7] = float("nan")
    return torch.where(mask.expand_as(x), x, junk)


# --- brute-force references: one frame at a time, on its visible pixels only ---------------------------------


def _gaussian() -> np.ndarray:
    offsets = np.arange(11) - 5
    g = np.exp(-((offsets / 1.5) ** 2) / 2)
    g /= g.sum()
    return np.outer(g, g)


def _ssim_frame(p: np.ndarray, t: np.ndarray, v: np.ndarray, data_range: float = 1.0) -> float:
    """Mean over channels and visible centres 5 or more from the border of SSIM computed over each window's visible
    pixels (Gaussian weights renormalised over them)."""
    window, c1, c2 = _gaussian(), (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for c in range(p.shape[0]):
        for i in range(5, p.shape[1] - 5):
            for j in range(5, p.shape[2] - 5):
                if not v[c, i, j]:
                    continue
                w = window * v[c, i - 5 : i + 6, j - 5 : j + 6]
                w = w / w.sum()
                x, y = p[c, i - 5 : i + 6, j - 5 : j + 6], t[c, i - 5 : i + 6, j - 5 : j + 6]
                mx, my = (w * x).sum(), (w * y).sum()
                vx, vy = max((w * x * x).sum() - mx**2, 0.0), max((w * y * y).sum() - my**2, 0.0)
                cov = (w * x * y).sum() - mx * my
                values.append(((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(values)) if values else np.nan


def _frame_scores(name: str, p: np.ndarray, t: np.ndarray, v: np.ndarray) -> float:
    """One frame's score (C, H, W) on its visible pixels ``v``; NaN for a frame without one."""
    if not v.any():
        return np.nan
    if name == "ssim":
        return _ssim_frame(p, t, v)
    pv, tv = p[v], t[v]
    if name == "mse_per_pixel":
        return float(np.mean((pv - tv) ** 2))
    if name == "mae_per_pixel":
        return float(np.mean(np.abs(pv - tv)))
    if name == "mse_per_frame":
        return float(np.sum((pv - tv) ** 2))
    if name == "mae_per_frame":
        return float(np.sum(np.abs(pv - tv)))
    if name == "psnr":
        return float(-10 * np.log10(np.mean((np.clip(pv, 0, 1) - np.clip(tv, 0, 1)) ** 2)))
    if name == "correlation":
        return float(np.sum(pv * tv) / (np.sqrt(np.sum(pv**2) * np.sum(tv**2)) + 1e-12))
    if name == "bce_per_sequence":
        q = np.clip(pv, EPS, 1 - EPS)
        return float(np.sum(-(tv * np.log(q) + (1 - tv) * np.log(1 - q))))
    rain = tv  # b_mse / b_mae with rain_rate = target
    weights = balanced_weights(torch.from_numpy(rain)).numpy()
    return float(np.sum(weights * np.abs(pv - tv) ** (2 if name == "b_mse" else 1)))


def _reference(name: str, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    p, t, v = pred.numpy(), target.numpy(), mask.expand_as(target).numpy()
    return np.array(
        [[_frame_scores(name, p[b, k], t[b, k], v[b, k]) for k in range(p.shape[1])] for b in range(p.shape[0])]
    )


SCORES: dict[str, Callable[..., torch.Tensor]] = {
    "mse_per_pixel": mse_per_pixel,
    "mae_per_pixel": mae_per_pixel,
    "mse_per_frame": mse_per_frame,
    "mae_per_frame": mae_per_frame,
    "psnr": psnr,
    "ssim": ssim,
    "correlation": correlation,
    "bce_per_sequence": bce_per_sequence,
    "b_mse": balanced_mse,
    "b_mae": balanced_mae,
}


# The balanced errors took a mask already; an all-valid one leaves them as they were.
@pytest.mark.parametrize("name", [name for name in SCORES if not name.startswith("b_")])
def test_an_all_valid_mask_gives_the_unmasked_value(name: str) -> None:
    pred, target, _ = _data()
    fn = SCORES[name]
    everywhere = torch.ones(B, T, 1, H, W, dtype=torch.bool)
    # torchmetrics' PSNR keeps float32 constants; the masked PSNR is computed in float64.
    rtol = 1e-6 if name == "psnr" else 1e-10
    for reduction in ("none", "lead_time", "mean"):
        torch.testing.assert_close(
            fn(pred, target, mask=everywhere, reduction=reduction),
            fn(pred, target, reduction=reduction),
            rtol=rtol,
            atol=0,
        )


@pytest.mark.parametrize("name", list(SCORES))
def test_a_mask_scores_the_visible_pixels_only_whatever_the_hidden_ones_hold(name: str) -> None:
    pred, target, mask = _data()
    fn = SCORES[name]
    expected = _reference(name, pred, target, mask)  # (B, T), NaN for frame (1, 2)
    got = fn(pred, target, mask=mask, reduction="none")
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-9)
    # Averages over sequences leave out the frame without a visible pixel.
    by_lead_time = np.nanmean(expected, axis=0)
    np.testing.assert_allclose(fn(pred, target, mask=mask, reduction="lead_time").numpy(), by_lead_time, rtol=1e-9)
    headline = by_lead_time.sum() if name == "bce_per_sequence" else by_lead_time.mean()
    np.testing.assert_allclose(fn(pred, target, mask=mask).item(), headline, rtol=1e-9)
    # Garbage (NaN, huge values, values outside [0, 1]) in the hidden pixels of either tensor changes nothing.
    for reduction in ("none", "lead_time", "mean"):
        clean = fn(pred, target, mask=mask, reduction=reduction)
        dirty = fn(_garbage(pred, mask), _garbage(target, mask, seed=2), mask=mask, reduction=reduction)
        torch.testing.assert_close(dirty, clean, rtol=0, atol=0, equal_nan=True)


def test_a_lead_time_without_a_visible_pixel_is_nan_and_the_headline_skips_it() -> None:
    pred, target, mask = _data()
    mask[:, 1] = False
    per_lead_time = mse_per_pixel(pred, target, mask=mask, reduction="lead_time")
    assert torch.isnan(per_lead_time[1]) and not torch.isnan(per_lead_time[[0, 2]]).any()
    torch.testing.assert_close(mse_per_pixel(pred, target, mask=mask), per_lead_time[[0, 2]].mean())
    assert torch.isnan(mse_per_pixel(pred, target, mask=torch.zeros_like(mask)))


@pytest.mark.parametrize("name", list(SCORES))
def test_integer_weights_equal_repeated_sequences(name: str) -> None:
    pred, target, mask = _data(seed=3)
    fn = SCORES[name]
    counts = torch.tensor([2, 0, 3])
    repeated = {k: x.repeat_interleave(counts, dim=0) for k, x in (("pred", pred), ("target", target), ("mask", mask))}
    for reduction in ("lead_time", "mean"):
        for m, rm in ((None, None), (mask, repeated["mask"])):
            weighted = fn(pred, target, mask=m, weight=counts.double(), reduction=reduction)
            expected = fn(repeated["pred"], repeated["target"], mask=rm, reduction=reduction)
            torch.testing.assert_close(weighted, expected, rtol=1e-9, atol=1e-12)
    # Equal weights of any size are no weights.
    torch.testing.assert_close(fn(pred, target, weight=torch.full((B,), 0.25)), fn(pred, target), rtol=1e-12, atol=0)


def test_weights_are_checked() -> None:
    pred, target, _ = _data()
    with pytest.raises(ValueError, match=r"weight must have one value per sequence, shape \(3,\), got \(2,\)"):
        mse_per_pixel(pred, target, weight=torch.ones(2))
    with pytest.raises(ValueError, match="weight must be finite and >= 0"):
        mse_per_pixel(pred, target, weight=torch.tensor([1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match="weight must be finite and >= 0"):
        mse_per_pixel(pred, target, weight=torch.tensor([1.0, float("nan"), 1.0]))
    with pytest.raises(ValueError, match="reduction 'mean' or 'lead_time', got 'none'"):
        mse_per_pixel(pred, target, weight=torch.ones(B), reduction="none")
    with pytest.raises(ValueError, match=r"weight must be a torch\.Tensor"):
        mse_per_pixel(pred, target, weight=[1.0, 1.0, 1.0])  # type: ignore[arg-type]


def test_nan_at_a_visible_pixel_is_still_refused() -> None:
    pred, target, mask = _data()
    pred[0, 0, 0, 10, 10] = float("nan")
    mask[0, 0, 0, 10, 10] = True
    with pytest.raises(ValueError, match="pred contains NaN at valid pixels"):
        mse_per_pixel(pred, target, mask=mask)


# --- the accumulator ---------------------------------------------------------------------------------------


def _accumulate(pred, target, mask=None, weight=None, parts=(slice(0, 1), slice(1, 3))) -> dict[str, torch.Tensor]:
    metrics = ForecastMetrics(lead_times=T, metrics=FORECAST_METRICS)
    for part in parts:
        metrics.update(
            pred[part],
            target[part],
            rain_rate=target[part],
            mask=None if mask is None else mask[part],
            weight=None if weight is None else weight[part],
        )
    return metrics.compute()


def test_accumulator_with_an_all_valid_mask_gives_the_unmasked_values() -> None:
    pred, target, _ = _data()
    plain = _accumulate(pred, target)
    everywhere = _accumulate(pred, target, torch.ones(B, T, 1, H, W, dtype=torch.bool))
    for key, value in plain.items():
        torch.testing.assert_close(everywhere[key], value, rtol=1e-6 if key.startswith("psnr") else 1e-10, atol=0)


@pytest.mark.filterwarnings("ignore:Mean of empty slice:RuntimeWarning")  # numpy's nanmean of lead time 2
def test_accumulator_scores_visible_pixels_only_and_skips_empty_frames() -> None:
    pred, target, mask = _data()
    mask[:, 1] = False  # no visible pixel at lead time 2
    got = _accumulate(pred, target, mask)
    for name in FORECAST_METRICS:
        by_lead_time = np.nanmean(_reference(name, pred, target, mask), 0)
        np.testing.assert_allclose(got[f"{name}_by_lead_time"].numpy(), by_lead_time, rtol=1e-9, err_msg=name)
        headline = np.nansum(by_lead_time) if name == "bce_per_sequence" else np.nanmean(by_lead_time)
        np.testing.assert_allclose(got[name].item(), headline, rtol=1e-9, err_msg=name)
    dirty = _accumulate(_garbage(pred, mask), _garbage(target, mask, seed=2), mask)
    for key, value in got.items():
        torch.testing.assert_close(dirty[key], value, rtol=0, atol=0, equal_nan=True, msg=key)


def test_accumulator_weights_equal_repeated_sequences() -> None:
    pred, target, mask = _data(seed=4)
    counts = torch.tensor([3, 1, 2])
    weighted = _accumulate(pred, target, mask, counts.double())
    repeated = _accumulate(*(x.repeat_interleave(counts, dim=0) for x in (pred, target, mask)), parts=(slice(0, 6),))
    for key, value in repeated.items():
        torch.testing.assert_close(weighted[key], value, rtol=1e-9, atol=1e-12, msg=key)


# --- the contingency table ---------------------------------------------------------------------------------


def _rain(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    pred = torch.exp(1.5 * torch.randn(B, T, 1, H, W, generator=g, dtype=torch.float64))
    target = torch.exp(1.5 * torch.randn(B, T, 1, H, W, generator=g, dtype=torch.float64))
    mask = torch.rand(B, T, 1, H, W, generator=g) > 0.3
    mask[..., :, :4] = False
    return pred, target, mask


def _table(pred, target, mask=None, weight=None) -> ContingencyTable:
    table = ContingencyTable(thresholds=HKO_THRESHOLDS, lead_times=T)
    table.update(pred, target, mask=mask, weight=weight)
    return table


def test_contingency_table_masks_and_weights() -> None:
    pred, target, mask = _rain(5)
    plain = _table(pred, target)
    assert torch.equal(_table(pred, target, torch.ones_like(mask)).counts, plain.counts)
    # Hidden pixels are in no cell, whatever they hold.
    masked = _table(pred, target, mask)
    v = mask.numpy()
    for k, thr in enumerate(HKO_THRESHOLDS):
        f, o = (pred.numpy() >= thr) & v, (target.numpy() >= thr) & v
        expected = [(f & o), (f & ~o & v), (~f & o & v), (~f & ~o & v)]
        for cell, cells in enumerate(expected):
            np.testing.assert_array_equal(masked.counts[cell, k].numpy(), cells.sum((0, 2, 3, 4)))
    assert torch.equal(_table(_garbage(pred, mask), _garbage(target, mask, seed=2), mask).counts, masked.counts)
    # A sequence of weight w counts w times.
    counts = torch.tensor([2, 0, 3])
    weighted = _table(pred, target, mask, counts.double())
    repeated = _table(*(x.repeat_interleave(counts, dim=0) for x in (pred, target, mask)))
    assert torch.equal(weighted.counts, repeated.counts)
    for key, value in repeated.compute().items():
        torch.testing.assert_close(weighted.compute()[key], value, rtol=0, atol=0, equal_nan=True)
