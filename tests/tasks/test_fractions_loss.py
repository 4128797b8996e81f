"""The fractions loss (1 - FSS of soft events) and ForecastingTask adding it to a single forecast's loss."""

import lightning as L
import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter, uniform_filter

from convlstm.models import create_model
from convlstm.tasks import ForecastingTask, fractions_loss
from convlstm.tasks.losses import FRACTIONS_SOFTNESS, log_mse_loss
from tests.tasks.tiny import QUIET_TRAINER, loader, static_sequences


def _one_minus_fss(forecast_events: np.ndarray, truth_events: np.ndarray, valid: np.ndarray, size: int) -> float:
    """The benchmark's FSS sums (benchmarks/radar_nowcast.py) of event fields: events outside valid pixels are 0,
    squares of scipy's uniform_filter (zeros beyond the frame), summed over valid centres; frames (N, H, W)."""
    error = scale = 0.0
    for f, o, v in zip(forecast_events, truth_events, valid, strict=True):
        pf = uniform_filter(f * v, size=size, mode="constant")
        po = uniform_filter(o * v, size=size, mode="constant")
        error += ((pf - po) ** 2)[v].sum()
        scale += (pf**2 + po**2)[v].sum()
    return error / scale


@pytest.mark.parametrize("window", [1, 4, 5])
def test_fractions_loss_is_one_minus_the_fss_of_soft_forecast_events(window: int) -> None:
    rng = np.random.default_rng(0)
    forecast = rng.gamma(0.5, 2.0, (2, 3, 1, 12, 10))
    truth = rng.gamma(0.5, 2.0, (2, 3, 1, 12, 10))
    valid = rng.random((2, 3, 1, 12, 10)) < 0.8
    loss = fractions_loss(
        torch.from_numpy(forecast), torch.from_numpy(truth), thresholds=[1.0, 2.0], window=window,
        mask=torch.from_numpy(valid),
    )  # fmt: skip
    expected = []
    for threshold in (1.0, 2.0):
        soft = 1 / (1 + np.exp(-(np.log1p(forecast) - np.log1p(threshold)) / FRACTIONS_SOFTNESS))
        events = [x.reshape(-1, 12, 10) for x in (soft, (truth >= threshold).astype(float), valid)]
        expected.append(_one_minus_fss(*events, window))
    assert float(loss) == pytest.approx(np.mean(expected), rel=1e-5)  # float32 sums of ~1e2 terms


def test_matched_fractions_loss_is_one_minus_the_fss_of_the_forecasts_top_ranked_pixels() -> None:
    # Log values 1 apart (10 sigmoid widths): the soft step at the matched level is hard to within 0.7 %.
    rng = np.random.default_rng(1)
    forecast = np.expm1(rng.permutation(2 * 3 * 8 * 8).reshape(2, 3, 1, 8, 8) % 64).astype(np.float64)
    truth = rng.gamma(0.5, 2.0, forecast.shape)
    valid = rng.random(forecast.shape) < 0.8
    loss = fractions_loss(
        torch.from_numpy(forecast), torch.from_numpy(truth), thresholds=[1.0, 2.0], window=3,
        mask=torch.from_numpy(valid), matched=True,
    )  # fmt: skip
    expected = []
    for threshold in (1.0, 2.0):
        observed = (truth >= threshold) & valid
        events = np.zeros_like(forecast)  # what probability matching makes events: the n largest valid values
        for index in np.ndindex(forecast.shape[:3]):
            n = int(observed[index].sum())
            ranked = np.argsort(np.where(valid[index], forecast[index], -1.0), axis=None)[::-1][:n]
            events[index].flat[ranked] = 1.0
        fields = [x.reshape(-1, 8, 8) for x in (events, observed.astype(float), valid)]
        expected.append(_one_minus_fss(*fields, 3))
    assert float(loss) == pytest.approx(np.mean(expected), abs=0.02)


def test_matched_fractions_loss_judges_where_the_rain_is_not_how_much() -> None:
    rng = np.random.default_rng(2)
    truth = torch.from_numpy(rng.gamma(0.5, 2.0, (1, 2, 1, 32, 32)))
    matched = []
    for rescaled in (truth * 0.3, truth * 3):  # the truth's ranking, other amounts
        matched.append(float(fractions_loss(rescaled, truth, thresholds=[1.0], window=4, matched=True)))
        assert matched[-1] < 0.03  # what the soft step leaves of a perfect ranking
        assert float(fractions_loss(rescaled, truth, thresholds=[1.0], window=4)) > 0.1
    shuffled = truth.flatten()[torch.randperm(truth.numel(), generator=torch.Generator().manual_seed(0))]
    misplaced = float(fractions_loss(shuffled.view_as(truth), truth, thresholds=[1.0], window=4, matched=True))
    assert misplaced > 3 * max(matched)  # the truth's amounts, in the wrong places


def test_fractions_loss_prefers_misplaced_showers_to_drizzle_where_a_pixel_loss_does_not() -> None:
    truth = torch.zeros(1, 1, 1, 64, 64)
    for row, col in ((10, 12), (30, 40), (50, 20), (20, 52)):
        truth[..., row : row + 3, col : col + 3] = 4.0  # showers of 3 x 3 pixels
    misplaced = torch.roll(truth, shifts=(3, 3), dims=(-2, -1))  # each shower 3 pixels off
    drizzle = torch.from_numpy(gaussian_filter(truth.numpy(), sigma=(0, 0, 0, 4, 4)))  # smeared below 1 mm/h
    assert float(drizzle.max()) < 1.0
    # Pixel by pixel the drizzle is the better forecast (the double penalty); over 16 x 16 squares it is no forecast.
    assert float(log_mse_loss(drizzle, truth)) < float(log_mse_loss(misplaced, truth))
    kept, smeared = (fractions_loss(x, truth, thresholds=[1.0], window=16) for x in (misplaced, drizzle))
    assert 2 * float(kept) < float(smeared)


def test_fractions_loss_has_a_gradient_that_raises_drizzle_where_showers_were_missed() -> None:
    truth = torch.zeros(1, 1, 1, 32, 32)
    truth[..., 8:11, 8:11] = 4.0
    forecast = torch.full_like(truth, 0.8).requires_grad_()  # just below 1 mm/h everywhere
    fractions_loss(forecast, truth, thresholds=[1.0], window=8).backward()
    assert forecast.grad is not None
    # Raising the forecast near the shower lowers the loss; raising it far away adds false alarms.
    assert float(forecast.grad[..., 9, 9]) < 0 < float(forecast.grad[..., 28, 28])


def test_fractions_loss_refuses_bad_arguments() -> None:
    x = torch.ones(1, 2, 1, 8, 8)
    with pytest.raises(ValueError, match="same shape"):
        fractions_loss(x, x[:, :1], thresholds=[1.0], window=4)
    with pytest.raises(ValueError, match="thresholds must be positive rain rates"):
        fractions_loss(x, x, thresholds=[0.0], window=4)
    with pytest.raises(ValueError, match="window"):
        fractions_loss(x, x, thresholds=[1.0], window=0)
    with pytest.raises(ValueError, match=r"fields \(B, T, C, H, W\)"):
        fractions_loss(x[0, 0], x[0, 0], thresholds=[1.0], window=4)


@pytest.mark.parametrize("matched", [False, True])
def test_forecasting_task_adds_the_fractions_loss_to_a_single_forecasts_loss(
    monkeypatch: pytest.MonkeyPatch, matched: bool
) -> None:
    torch.manual_seed(0)
    model = create_model("next_frame_tiny")
    task = ForecastingTask(
        model, loss="log_mse", units="mm/h", fractions_weight=0.5, fractions_window=3, fractions_thresholds=[0.5],
        fractions_matched=matched,
    )  # fmt: skip
    L.Trainer(max_steps=2, enable_checkpointing=False, **QUIET_TRAINER).fit(
        task, loader(static_sequences(4, context=3, target=3), shuffle=True)
    )
    batch = next(iter(loader(static_sequences(4, context=3, target=3, seed=1))))
    task.eval()
    logged: dict[str, float] = {}
    monkeypatch.setattr(task, "log", lambda name, value, **kwargs: logged.update({name: float(value)}))
    task.train()
    loss = task.training_step(batch, 0)
    pred = model(batch["context"], 3)
    fractions = fractions_loss(pred, batch["target"], thresholds=[0.5], window=3, matched=matched)
    other = fractions_loss(pred, batch["target"], thresholds=[0.5], window=3, matched=not matched)
    assert abs(float(fractions) - float(other)) > 1e-3  # so the check below tells which one the task added
    assert float(fractions) > 0 and logged["train/fractions"] == pytest.approx(float(fractions), rel=1e-5)
    torch.testing.assert_close(loss, log_mse_loss(pred, batch["target"]) + 0.5 * fractions)


def test_forecasting_task_refuses_the_fractions_loss_where_it_cannot_apply() -> None:
    model = create_model("next_frame_tiny")
    with pytest.raises(ValueError, match="units='mm/h'"):
        ForecastingTask(model, loss="mse", fractions_weight=1.0)
    with pytest.raises(ValueError, match=r"fractions_weight must be in \[0.0, inf\]"):
        ForecastingTask(model, units="mm/h", fractions_weight=-1.0)
    with pytest.raises(ValueError, match="fractions_thresholds must be a non-empty list"):
        ForecastingTask(model, units="mm/h", fractions_thresholds=[])
    with pytest.raises(ValueError, match="fractions_thresholds must be a non-empty list"):
        ForecastingTask(model, units="mm/h", fractions_thresholds=[1.0, -5.0])
    with pytest.raises(ValueError, match="fractions_matched"):
        ForecastingTask(model, units="mm/h", fractions_matched="yes")  # type: ignore[arg-type]
    ensemble = create_model("extrapolation_nowcast_ensemble")
    with pytest.raises(ValueError, match="scores a single forecast"):
        ForecastingTask(ensemble, loss="crps_fair", units="mm/h", ensemble_members=2, fractions_weight=1.0)
