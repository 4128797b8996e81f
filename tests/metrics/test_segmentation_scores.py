"""Segmentation scores against a numpy confusion matrix counted by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from convlstm.metrics import ConfusionMatrix, dice_from_confusion, iou_from_confusion

K, T = 4, 3


def _labels(seed: int, shape: tuple[int, ...] = (2, T, 6, 5)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, K, shape), rng.integers(0, K, shape)


def _numpy_confusion(pred: np.ndarray, target: np.ndarray, ignore: int | None = None) -> np.ndarray:
    matrix = np.zeros((pred.shape[1], K, K), np.int64)
    for t in range(pred.shape[1]):
        p, y = pred[:, t].ravel(), target[:, t].ravel()
        keep = np.ones(y.shape, bool) if ignore is None else y != ignore
        np.add.at(matrix[t], (y[keep], p[keep]), 1)
    return matrix


def _numpy_iou_dice(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    iou, dice = np.full(K, np.nan), np.full(K, np.nan)
    for k in range(K):
        tp = matrix[k, k]
        fp = matrix[:, k].sum() - tp
        fn = matrix[k, :].sum() - tp
        if tp + fp + fn:
            iou[k] = tp / (tp + fp + fn)
            dice[k] = 2 * tp / (2 * tp + fp + fn)
    return iou, dice


def test_label_predictions_match_numpy() -> None:
    pred, target = _labels(0)
    cm = ConfusionMatrix(num_classes=K, lead_times=T)
    cm.update(torch.from_numpy(pred[:1]), torch.from_numpy(target[:1]))
    cm.update(torch.from_numpy(pred[1:]), torch.from_numpy(target[1:]))
    expected = _numpy_confusion(pred, target)
    np.testing.assert_array_equal(cm.matrix.numpy(), expected)
    got = cm.compute()
    iou, dice = _numpy_iou_dice(expected.sum(0))
    np.testing.assert_allclose(got["iou_per_class"].numpy(), iou)
    np.testing.assert_allclose(got["dice_per_class"].numpy(), dice)
    np.testing.assert_allclose(got["miou"].item(), iou.mean())
    np.testing.assert_allclose(got["mean_dice"].item(), dice.mean())
    for t in range(T):
        iou_t, dice_t = _numpy_iou_dice(expected[t])
        np.testing.assert_allclose(got["iou_per_class_by_lead_time"][t].numpy(), iou_t)
        np.testing.assert_allclose(got["miou_by_lead_time"][t].item(), np.nanmean(iou_t))
        np.testing.assert_allclose(got["mean_dice_by_lead_time"][t].item(), np.nanmean(dice_t))


def test_logits_are_argmaxed_over_the_class_dimension() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, T, K, 6, 5))
    _, target = _labels(1)
    cm = ConfusionMatrix(num_classes=K, lead_times=T)
    cm.update(torch.from_numpy(logits).float(), torch.from_numpy(target))
    np.testing.assert_array_equal(cm.matrix.numpy(), _numpy_confusion(logits.argmax(2), target))


def test_absent_class_is_nan_and_left_out_of_the_mean() -> None:
    pred, target = _labels(2)
    pred[pred == 3] = 0
    target[target == 3] = 1
    cm = ConfusionMatrix(num_classes=K, lead_times=T)
    cm.update(torch.from_numpy(pred), torch.from_numpy(target))
    got = cm.compute()
    assert math.isnan(got["iou_per_class"][3].item())
    assert math.isnan(got["dice_per_class"][3].item())
    iou, _ = _numpy_iou_dice(_numpy_confusion(pred, target).sum(0))
    np.testing.assert_allclose(got["miou"].item(), iou[:3].mean())


def test_void_ignore_index_drops_pixels() -> None:
    pred, target = _labels(3)
    target[:, :, 0, :] = 255
    cm = ConfusionMatrix(num_classes=K, lead_times=T, ignore_index=255)
    cm.update(torch.from_numpy(pred), torch.from_numpy(target))
    expected = _numpy_confusion(pred, target, ignore=255)
    np.testing.assert_array_equal(cm.matrix.numpy(), expected)
    assert int(cm.matrix.sum()) == 2 * T * 5 * 5


def test_class_ignore_index_drops_pixels_and_class_from_means() -> None:
    pred, target = _labels(4)
    cm = ConfusionMatrix(num_classes=K, lead_times=T, ignore_index=0)
    cm.update(torch.from_numpy(pred), torch.from_numpy(target))
    expected = _numpy_confusion(pred, target, ignore=0)
    np.testing.assert_array_equal(cm.matrix.numpy(), expected)
    iou, dice = _numpy_iou_dice(expected.sum(0))
    got = cm.compute()
    np.testing.assert_allclose(got["miou"].item(), np.nanmean(iou[1:]))
    np.testing.assert_allclose(got["mean_dice"].item(), np.nanmean(dice[1:]))
    assert got["iou_per_class"].shape == (K,)


def test_functional_scores_on_a_hand_matrix() -> None:
    # rows = true, columns = predicted
    matrix = torch.tensor([[5, 1, 0], [2, 3, 0], [0, 0, 0]])
    iou, dice = iou_from_confusion(matrix), dice_from_confusion(matrix)
    assert iou[:2].tolist() == pytest.approx([5 / 8, 3 / 6])
    assert dice[:2].tolist() == pytest.approx([10 / 13, 6 / 9])
    assert math.isnan(iou[2].item())
    assert math.isnan(dice[2].item())


def test_merge_equals_one_pass() -> None:
    pred, target = _labels(5, shape=(4, T, 3, 3))
    whole = ConfusionMatrix(num_classes=K, lead_times=T)
    whole.update(torch.from_numpy(pred), torch.from_numpy(target))
    first, second = ConfusionMatrix(num_classes=K, lead_times=T), ConfusionMatrix(num_classes=K, lead_times=T)
    first.update(torch.from_numpy(pred[:3]), torch.from_numpy(target[:3]))
    second.update(torch.from_numpy(pred[3:]), torch.from_numpy(target[3:]))
    assert torch.equal(first.merge(second).matrix, whole.matrix)
    with pytest.raises(ValueError, match="cannot merge"):
        first.merge(ConfusionMatrix(num_classes=K, lead_times=T, ignore_index=255))


def test_inputs_are_validated() -> None:
    cm = ConfusionMatrix(num_classes=K, lead_times=T)
    labels = torch.zeros(2, T, 6, 5, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"\(2, 3, 4, 6, 5\)"):
        cm.update(torch.zeros(2, T, K + 1, 6, 5), labels)
    with pytest.raises(ValueError, match=r"pred \(2, 3, 6, 4\) and target \(2, 3, 6, 5\)"):
        cm.update(labels[..., :4], labels)
    with pytest.raises(ValueError, match="pred labels must lie"):
        cm.update(labels + K, labels)
    with pytest.raises(ValueError, match="target labels must lie"):
        cm.update(labels, labels - 1)
    with pytest.raises(ValueError, match="integer labels"):
        cm.update(labels, labels.float())
    nan_logits = torch.zeros(2, T, K, 6, 5)
    nan_logits[0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="pred contains NaN"):
        cm.update(nan_logits, labels)
    with pytest.raises(ValueError, match="lead times"):
        cm.update(labels[:, :2], labels[:, :2])
    with pytest.raises(ValueError, match="num_classes"):
        ConfusionMatrix(num_classes=1, lead_times=T)
    assert int(cm.matrix.sum()) == 0
