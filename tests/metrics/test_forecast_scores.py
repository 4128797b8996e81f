"""Forecast scores against independent numpy / scikit-image computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from convlstm.metrics import (
    bce_per_sequence,
    correlation,
    mae_per_frame,
    mae_per_pixel,
    mse_per_frame,
    mse_per_pixel,
    psnr,
    ssim,
)


def _pair(shape: tuple[int, ...], seed: int = 0, low: float = 0.0, high: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(low, high, shape), rng.uniform(0.0, 1.0, shape)


def _check_reductions(
    fn, pred: np.ndarray, target: np.ndarray, per_frame: np.ndarray, headline: float, rtol: float = 1e-10
) -> None:
    p, t = torch.from_numpy(pred), torch.from_numpy(target)
    np.testing.assert_allclose(fn(p, t, reduction="none").numpy(), per_frame, rtol=rtol)
    np.testing.assert_allclose(fn(p, t, reduction="lead_time").numpy(), per_frame.mean(0), rtol=rtol)
    got = fn(p, t)
    assert got.ndim == 0
    np.testing.assert_allclose(got.item(), headline, rtol=rtol)


@pytest.mark.parametrize("shape", [(3, 4, 2, 8, 6), (2, 5, 1, 7)])
def test_error_scores_match_numpy(shape: tuple[int, ...]) -> None:
    pred, target = _pair(shape, low=-0.3, high=1.2)
    flat = (pred - target).reshape(shape[0], shape[1], -1)
    for fn, per_frame in [
        (mse_per_pixel, (flat**2).mean(-1)),
        (mae_per_pixel, np.abs(flat).mean(-1)),
        (mse_per_frame, (flat**2).sum(-1)),
        (mae_per_frame, np.abs(flat).sum(-1)),
    ]:
        _check_reductions(fn, pred, target, per_frame, per_frame.mean())


def test_per_frame_is_per_pixel_times_frame_size() -> None:
    # OpenSTL's reported MSE is the per-pixel MSE times the 64 x 64 pixels of a Moving MNIST frame.
    pred, target = _pair((2, 3, 1, 64, 64), seed=1)
    p, t = torch.from_numpy(pred), torch.from_numpy(target)
    np.testing.assert_allclose(mse_per_frame(p, t).item(), 4096 * mse_per_pixel(p, t).item(), rtol=1e-12)
    np.testing.assert_allclose(mae_per_frame(p, t).item(), 4096 * mae_per_pixel(p, t).item(), rtol=1e-12)


def test_psnr_clips_and_uses_peak_one() -> None:
    pred, target = _pair((3, 4, 1, 8, 8), seed=2, low=-0.5, high=1.5)
    clipped = np.clip(pred, 0.0, 1.0)
    frame_mse = ((clipped - target) ** 2).reshape(3, 4, -1).mean(-1)
    per_frame = 10.0 * np.log10(1.0 / frame_mse)
    # torchmetrics keeps some float32 constants, hence the looser tolerance.
    _check_reductions(psnr, pred, target, per_frame, per_frame.mean(), rtol=1e-6)


def test_psnr_is_mean_of_frames_not_of_pooled_error() -> None:
    target = np.zeros((1, 2, 1, 4, 4))
    pred = target.copy()
    pred[0, 0] = 0.1
    pred[0, 1] = 0.3
    expected = np.mean([10 * np.log10(1 / 0.01), 10 * np.log10(1 / 0.09)])
    np.testing.assert_allclose(psnr(torch.from_numpy(pred), torch.from_numpy(target)).item(), expected, rtol=1e-6)


def _skimage_ssim(pred: np.ndarray, target: np.ndarray, data_range: float) -> np.ndarray:
    out = np.empty(pred.shape[:2])
    for b in range(pred.shape[0]):
        for t in range(pred.shape[1]):
            out[b, t] = structural_similarity(
                target[b, t],
                pred[b, t],
                data_range=data_range,
                channel_axis=0,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
            )
    return out


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_matches_scikit_image(channels: int) -> None:
    rng = np.random.default_rng(3)
    target = rng.uniform(0, 1, (2, 3, channels, 24, 20))
    pred = np.clip(target + rng.normal(0, 0.15, target.shape), 0, 1)
    expected = _skimage_ssim(pred, target, 1.0)
    got = ssim(torch.from_numpy(pred), torch.from_numpy(target), reduction="none").numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_allclose(
        ssim(torch.from_numpy(pred), torch.from_numpy(target), reduction="lead_time").numpy(),
        expected.mean(0),
        atol=1e-6,
    )


def test_ssim_uses_the_given_data_range() -> None:
    rng = np.random.default_rng(4)
    target = rng.uniform(0, 255, (1, 2, 1, 16, 16))
    pred = np.clip(target + rng.normal(0, 20, target.shape), 0, 255)
    expected = _skimage_ssim(pred, target, 255.0)
    got = ssim(torch.from_numpy(pred), torch.from_numpy(target), data_range=255.0, reduction="none").numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert ssim(torch.from_numpy(target), torch.from_numpy(target), data_range=255.0).item() == pytest.approx(1.0)


def test_bce_is_summed_over_frames_and_averaged_over_sequences() -> None:
    rng = np.random.default_rng(5)
    shape = (3, 4, 1, 6, 6)
    target = (rng.uniform(0, 1, shape) > 0.7).astype(np.float64)
    pred = rng.uniform(0, 1, shape)
    pred[0, 0, 0, 0, :3] = [0.0, 1.0, 0.5]  # exact 0 and 1 must not give inf
    eps = 1e-7
    p = np.clip(pred, eps, 1 - eps)
    per_frame = (-(target * np.log(p) + (1 - target) * np.log(1 - p))).reshape(3, 4, -1).sum(-1)
    p_t, t_t = torch.from_numpy(pred), torch.from_numpy(target)
    np.testing.assert_allclose(bce_per_sequence(p_t, t_t, reduction="none").numpy(), per_frame, rtol=1e-9)
    by_lead = bce_per_sequence(p_t, t_t, reduction="lead_time").numpy()
    np.testing.assert_allclose(by_lead, per_frame.mean(0), rtol=1e-9)
    headline = bce_per_sequence(p_t, t_t).item()
    np.testing.assert_allclose(headline, per_frame.sum(1).mean(), rtol=1e-9)
    assert np.isfinite(headline)


def test_bce_rejects_values_outside_unit_interval() -> None:
    target = torch.zeros(1, 2, 1, 4, 4)
    with pytest.raises(ValueError, match=r"pred in \[0, 1\]"):
        bce_per_sequence(target + 1.5, target)
    with pytest.raises(ValueError, match=r"target in \[0, 1\]"):
        bce_per_sequence(target, target - 1)


def test_correlation_matches_shi_formula() -> None:
    pred, target = _pair((2, 3, 1, 5, 5), seed=6)
    pred[1, 2] = 0.0  # an empty frame scores 0, not NaN
    prod = (pred * target).reshape(2, 3, -1).sum(-1)
    norms = np.sqrt((pred**2).reshape(2, 3, -1).sum(-1) * (target**2).reshape(2, 3, -1).sum(-1))
    per_frame = prod / (norms + 1e-12)
    _check_reductions(correlation, pred, target, per_frame, per_frame.mean())
    assert per_frame[1, 2] == 0.0


@pytest.mark.parametrize("fn", [mse_per_pixel, mae_per_frame, psnr, ssim, correlation, bce_per_sequence])
def test_shape_mismatch_names_both_shapes(fn) -> None:
    with pytest.raises(ValueError, match=r"pred \(2, 3, 1, 16, 16\) and target \(2, 4, 1, 16, 16\)"):
        fn(torch.rand(2, 3, 1, 16, 16), torch.rand(2, 4, 1, 16, 16))


@pytest.mark.parametrize("fn", [mse_per_pixel, mae_per_frame, psnr, ssim, correlation, bce_per_sequence])
@pytest.mark.parametrize("which", ["pred", "target"])
def test_nan_is_rejected(fn, which: str) -> None:
    pred, target = torch.rand(2, 3, 1, 16, 16), torch.rand(2, 3, 1, 16, 16)
    (pred if which == "pred" else target)[0, 1, 0, 2, 3] = float("nan")
    with pytest.raises(ValueError, match=f"{which} contains NaN"):
        fn(pred, target)


def test_bad_arguments_are_rejected() -> None:
    x = torch.rand(2, 3, 1, 16, 16)
    with pytest.raises(ValueError, match="reduction must be one of"):
        mse_per_pixel(x, x, reduction="sum")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\(B, T, C, \*spatial\)"):
        mse_per_pixel(x[0, 0, 0], x[0, 0, 0])
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(x[..., :8, :8], x[..., :8, :8])
    with pytest.raises(ValueError, match="data_range must be a finite number > 0, got"):
        ssim(x, x, data_range=0.0)
    with pytest.raises(ValueError, match="floating point"):
        mse_per_pixel(x, (x * 10).long())
    with pytest.raises(ValueError, match=r"must be a torch\.Tensor"):
        mse_per_pixel(x.numpy(), x)  # type: ignore[arg-type]


def test_half_precision_is_upcast() -> None:
    pred, target = _pair((1, 2, 1, 32, 32), seed=7)
    expected = mse_per_frame(torch.from_numpy(pred).half().double(), torch.from_numpy(target).half().double())
    got = mse_per_frame(torch.from_numpy(pred).half(), torch.from_numpy(target).half())
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.item(), expected.item(), rtol=1e-5)
