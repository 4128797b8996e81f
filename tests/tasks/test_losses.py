"""Each training loss against an independent computation."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from convlstm.metrics import balanced_mae, balanced_mse, bce_per_sequence
from convlstm.models.prednet import parse_layer_loss_weights, time_loss_weights
from convlstm.tasks.losses import (
    balanced_loss,
    bce_loss,
    crps_fair_loss,
    extrapolation_loss,
    forecast_loss,
    log_mse_loss,
    mae_loss,
    mse_loss,
    prednet_error_loss,
    rain_rate_of,
    segmentation_loss,
    soft_dice_loss,
)


@pytest.fixture
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 1, 5, 4, generator=g), torch.rand(2, 3, 1, 5, 4, generator=g)


def test_mse_and_mae_match_torch(pair):
    pred, target = pair
    assert torch.allclose(mse_loss(pred, target), F.mse_loss(pred, target))
    assert torch.allclose(mae_loss(pred, target), F.l1_loss(pred, target))


def test_log_mse_is_the_mse_of_log1p_of_rain_rates(pair):
    pred, target = pair
    expected = F.mse_loss(pred.log1p(), target.log1p())
    assert torch.allclose(log_mse_loss(pred, target), expected)
    assert torch.allclose(forecast_loss("log_mse", pred, target), expected)
    # An error by a factor weighs the same at 30 as at 3 mm/h nearly; in rain-rate space 10 times more.
    low, high = torch.tensor([3.0]), torch.tensor([30.0])
    assert log_mse_loss(2 * high, high) / log_mse_loss(2 * low, low) < 2.5
    negative = torch.tensor([-0.5])
    assert log_mse_loss(negative, torch.tensor([1.0])) == pytest.approx(float(torch.tensor(2.0).log()) ** 2)


def test_mask_averages_over_valid_pixels_only(pair):
    pred, target = pair
    mask = torch.zeros(2, 1, 1, 5, 4, dtype=torch.bool)
    mask[..., :2, :] = True
    full = mask.expand_as(target)
    assert torch.allclose(mse_loss(pred, target, mask=mask), F.mse_loss(pred[full], target[full]))
    assert torch.allclose(mae_loss(pred, target, mask=mask.float()), F.l1_loss(pred[full], target[full]))


def test_bce_is_shi_cross_entropy_per_pixel(pair):
    pred, target = pair
    pred = pred.clone()
    pred[0, 0, 0, 0, 0] = 0.0  # clamped, not log(0)
    expected = F.binary_cross_entropy(pred.clamp(1e-7, 1 - 1e-7), target)
    assert torch.allclose(bce_loss(pred, target), expected)
    # Shi et al.'s number: the sum over a sequence's frames and pixels, averaged over sequences.
    pixels_per_sequence = target[0].numel()
    assert torch.allclose(bce_loss(pred, target) * pixels_per_sequence, bce_per_sequence(pred, target).float())
    assert math.isfinite(float(bce_loss(pred, target)))


def _hko_weight(rate: np.ndarray) -> np.ndarray:
    weight = np.ones_like(rate)
    for edge, value in ((2, 2), (5, 5), (10, 10), (30, 30)):
        weight[rate >= edge] = value
    return weight


def test_balanced_loss_weights_by_true_rain_rate_from_pixels():
    g = torch.Generator().manual_seed(1)
    target = torch.rand(2, 4, 1, 6, 6, generator=g)
    pred = torch.rand(2, 4, 1, 6, 6, generator=g)
    p = target.double().numpy()
    rate = 10 ** ((70 * p - 10 - 10 * np.log10(58.53)) / 1.56 / 10)  # dBZ -> Z-R (HKO-7)
    assert rate.max() > 30 and rate.min() < 2  # every weight class occurs
    error = pred.double().numpy() - p
    expected = np.mean(_hko_weight(rate) * (error**2 + np.abs(error)))
    assert float(balanced_loss(pred, target)) == pytest.approx(expected, rel=1e-5)
    # The same as the metrics' B-MSE + B-MAE (summed over a frame) divided by the pixels of a frame.
    rain = rain_rate_of(target)
    metric = balanced_mse(pred, target, rain_rate=rain) + balanced_mae(pred, target, rain_rate=rain)
    assert float(balanced_loss(pred, target)) == pytest.approx(float(metric) / 36, rel=1e-5)


def test_balanced_loss_with_rain_rates_given_or_as_units():
    g = torch.Generator().manual_seed(2)
    target = torch.rand(1, 2, 1, 3, 3, generator=g) * 40  # mm/h
    pred = target + 1.0
    weights = torch.from_numpy(_hko_weight(target.numpy()))
    expected = float((weights * 2.0).mean())  # error 1: squared 1 + absolute 1
    assert float(balanced_loss(pred, target, units="mm/h")) == pytest.approx(expected, rel=1e-6)
    assert float(balanced_loss(pred, target, rain_rate=target, units="pixel")) == pytest.approx(expected, rel=1e-6)
    only_mse = balanced_loss(pred, target, units="mm/h", mae_weight=0.0)
    assert float(only_mse) == pytest.approx(expected / 2, rel=1e-6)
    mask = torch.zeros(1, 1, 1, 3, 3)
    mask[..., 0, 0] = 1
    masked = balanced_loss(pred, target, units="mm/h", mask=mask)
    assert float(masked) == pytest.approx(float(weights[0, :, 0, 0, 0].mean() * 2.0), rel=1e-6)


def test_forecast_loss_dispatch_and_errors(pair):
    pred, target = pair
    assert torch.equal(forecast_loss("mse", pred, target), mse_loss(pred, target))
    assert torch.equal(forecast_loss("mae", pred, target), mae_loss(pred, target))
    assert torch.equal(forecast_loss("bce", pred, target), bce_loss(pred, target))
    assert torch.equal(forecast_loss("balanced", pred, target), balanced_loss(pred, target))
    with pytest.raises(ValueError, match="loss must be one of"):
        forecast_loss("huber", pred, target)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="same shape"):
        mse_loss(pred, target[:, :2])
    with pytest.raises(ValueError, match="does not broadcast"):
        mse_loss(pred, target, mask=torch.ones(3, 3))
    with pytest.raises(ValueError, match="units"):
        rain_rate_of(target, "dbz")  # type: ignore[arg-type]


def _crps_fair_numpy(members: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per pixel, by the definition: mean |x_i - y| - sum over all pairs |x_i - x_j| / (2 M (M - 1))."""
    m = members.shape[1]
    error = np.abs(members - target[:, None]).mean(axis=1)
    pairs = np.abs(members[:, :, None] - members[:, None, :]).sum(axis=(1, 2))
    return error - pairs / (2 * m * (m - 1))


def test_crps_fair_matches_the_definition_with_and_without_a_mask():
    g = torch.Generator().manual_seed(3)
    members, target = torch.rand(2, 5, 3, 1, 4, 6, generator=g) * 10, torch.rand(2, 3, 1, 4, 6, generator=g) * 10
    per_pixel = _crps_fair_numpy(members.double().numpy(), target.double().numpy())
    assert float(crps_fair_loss(members, target)) == pytest.approx(per_pixel.mean(), rel=1e-5)
    mask = torch.rand(2, 1, 1, 4, 6, generator=g) > 0.4
    valid = mask.expand_as(target).numpy()
    assert float(crps_fair_loss(members, target, mask=mask)) == pytest.approx(per_pixel[valid].mean(), rel=1e-5)
    assert torch.equal(
        forecast_loss("crps_fair", members, target, mask=mask), crps_fair_loss(members, target, mask=mask)
    )


def test_crps_fair_of_two_members_is_the_distance_to_the_nearer_one_or_0_between_them():
    target = torch.tensor([0.0, 1.0, 2.0, 5.0]).view(1, 1, 1, 1, 4)
    members = torch.tensor([[1.0, 1.0, 1.0, 1.0], [3.0, 3.0, 3.0, 3.0]]).view(1, 2, 1, 1, 1, 4)
    closed_form = ((members[:, 0] - target).abs() + (members[:, 1] - target).abs() - 2.0) / 2  # |x1 - x2| = 2
    torch.testing.assert_close(closed_form.flatten(), torch.tensor([1.0, 0.0, 0.0, 2.0]))
    for k in range(4):
        assert float(crps_fair_loss(members[..., k : k + 1], target[..., k : k + 1])) == float(closed_form[..., k])


def test_crps_fair_of_a_collapsed_ensemble_is_its_error_and_its_gradient_spreads_the_members():
    target = torch.zeros(1, 1, 1, 1, 1)
    collapsed = torch.full((1, 4, 1, 1, 1, 1), 1.0, requires_grad=True)  # four copies of one forecast, 1 off
    loss = crps_fair_loss(collapsed, target)
    assert float(loss) == 1.0
    loss.backward()
    assert collapsed.grad is not None and len(set(collapsed.grad.flatten().tolist())) == 4  # pulled apart
    spread = torch.tensor([-1.5, -0.5, 0.5, 1.5]).view(1, 4, 1, 1, 1, 1)  # around the truth instead
    assert float(crps_fair_loss(spread, target)) < float(loss)


def test_crps_fair_refuses_one_member_and_mismatched_shapes():
    with pytest.raises(ValueError, match="at least 2 members"):
        crps_fair_loss(torch.rand(1, 1, 2, 1, 3, 3), torch.rand(1, 2, 1, 3, 3))
    with pytest.raises(ValueError, match=r"members must be \(B, M, T, C, \*spatial\)"):
        crps_fair_loss(torch.rand(1, 3, 2, 1, 3, 3), torch.rand(1, 3, 1, 3, 3))


def _dice_numpy(probs: np.ndarray, labels: np.ndarray, valid: np.ndarray, smooth: float, classes: list[int]) -> float:
    values = []
    for b in range(labels.shape[0]):
        for t in range(labels.shape[1]):
            for k in classes:
                v = valid[b, t]
                p = probs[b, t, k][v]
                y = (labels[b, t][v] == k).astype(np.float64)
                values.append((2 * (p * y).sum() + smooth) / (p.sum() + y.sum() + smooth))
    return 1.0 - float(np.mean(values))


def test_soft_dice_matches_a_per_frame_computation():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 3, 3, 4, 5, generator=g)
    labels = torch.randint(0, 3, (2, 3, 4, 5), generator=g)
    probs = logits.double().softmax(2).numpy()
    valid = np.ones(labels.shape, dtype=bool)
    expected = _dice_numpy(probs, labels.numpy(), valid, 1.0, [0, 1, 2])
    assert float(soft_dice_loss(logits, labels)) == pytest.approx(expected, rel=1e-5)


def test_soft_dice_ignore_index_drops_pixels_and_class():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(1, 2, 3, 4, 4, generator=g)
    labels = torch.randint(0, 3, (1, 2, 4, 4), generator=g)
    labels[0, 0, 0] = 255
    probs = logits.double().softmax(2).numpy()
    valid = labels.numpy() != 255
    expected = _dice_numpy(probs, labels.numpy(), valid, 1.0, [0, 1, 2])
    assert float(soft_dice_loss(logits, labels, ignore_index=255)) == pytest.approx(expected, rel=1e-5)
    # A class-valued ignore_index: its pixels and the class itself are left out.
    valid = labels.numpy() != 1
    expected = _dice_numpy(probs, np.where(labels.numpy() == 255, 0, labels.numpy()), valid, 1.0, [0, 2])
    relabelled = torch.where(labels == 255, 0, labels)
    assert float(soft_dice_loss(logits, relabelled, ignore_index=1)) == pytest.approx(expected, rel=1e-5)


def test_segmentation_loss_combines_cross_entropy_and_dice():
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 2, 3, 4, 4, generator=g)
    labels = torch.randint(0, 3, (2, 2, 4, 4), generator=g)
    ce = F.cross_entropy(logits.permute(0, 2, 1, 3, 4), labels)  # (B, K, T, H, W): the same pixels
    dice = soft_dice_loss(logits, labels)
    total = segmentation_loss(logits, labels, ce_weight=0.5, dice_weight=2.0)
    assert torch.allclose(total, 0.5 * ce + 2.0 * dice)
    weights = torch.tensor([1.0, 2.0, 3.0])
    weighted = segmentation_loss(logits, labels, dice_weight=0.0, class_weights=weights)
    assert torch.allclose(weighted, F.cross_entropy(logits.permute(0, 2, 1, 3, 4), labels, weight=weights))
    confident = F.one_hot(labels, 3).movedim(-1, 2).float() * 50.0
    assert float(segmentation_loss(confident, labels)) < 1e-3
    with pytest.raises(ValueError, match="labels"):
        segmentation_loss(logits, labels[:, :, :2])
    with pytest.raises(ValueError, match="integer"):
        segmentation_loss(logits, labels.float())


def test_prednet_weights_and_error_loss():
    assert parse_layer_loss_weights("L_0", 4) == (1.0, 0.0, 0.0, 0.0)
    assert parse_layer_loss_weights("L_all", 4) == pytest.approx((1.0, 0.1, 0.1, 0.1))
    assert time_loss_weights(10).tolist() == pytest.approx([0.0] + [1 / 9] * 9)
    with pytest.raises(ValueError, match="one per layer"):
        parse_layer_loss_weights([1.0, 0.5], 3)
    g = torch.Generator().manual_seed(6)
    errors = torch.rand(3, 5, 2, generator=g)
    layer_w, time_w = torch.tensor([1.0, 0.1]), time_loss_weights(5)
    expected = (
        sum(
            float(time_w[t] * layer_w[l] * errors[b, t, l])
            for b in range(3)
            for t in range(5)
            for l in range(2)  # noqa: E741
        )
        / 3
    )
    assert float(prednet_error_loss(errors, layer_w, time_w)) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="layer_weights"):
        prednet_error_loss(errors, torch.ones(3), time_w)


def test_extrapolation_loss_counts_frames_from_start():
    frames = torch.zeros(1, 4, 1, 2, 2)
    predictions = torch.zeros(1, 4, 1, 2, 2)
    predictions[:, 0] = 10.0  # before start: ignored
    predictions[:, 2:] = 1.0
    assert float(extrapolation_loss(predictions, frames, 2)) == pytest.approx(0.5)
    assert float(extrapolation_loss(predictions, frames, 1)) == pytest.approx(0.5 * 2 / 3)
    with pytest.raises(ValueError, match="start"):
        extrapolation_loss(predictions, frames, 4)
