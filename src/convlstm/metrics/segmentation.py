"""Segmentation scores of label sequences: IoU and Dice per class from a confusion matrix accumulated over a set."""

from __future__ import annotations

import torch
from torch import Tensor

from convlstm.metrics._checks import check_lead_times, check_tensor, nan_ratio
from convlstm.utils.checks import check_int

__all__ = ["ConfusionMatrix", "dice_from_confusion", "iou_from_confusion"]


def iou_from_confusion(matrix: Tensor) -> Tensor:
    """Intersection over union per class, TP / (TP + FP + FN).

    Args:
        matrix: Confusion matrix (..., K, K), rows = true class, columns = predicted class.

    Returns:
        (..., K) float64; NaN for a class that is neither present nor predicted.
    """
    m = matrix.to(torch.float64)
    true_positive = m.diagonal(dim1=-2, dim2=-1)
    return nan_ratio(true_positive, m.sum(-1) + m.sum(-2) - true_positive)


def dice_from_confusion(matrix: Tensor) -> Tensor:
    """Dice (F1) per class, 2 TP / (2 TP + FP + FN); arguments and NaN rule as
    [`iou_from_confusion`][convlstm.metrics.iou_from_confusion]."""
    m = matrix.to(torch.float64)
    true_positive = m.diagonal(dim1=-2, dim2=-1)
    return nan_ratio(2.0 * true_positive, m.sum(-1) + m.sum(-2))


class ConfusionMatrix:
    """Confusion matrix of label sequences, one per lead time, accumulated over a set.

    Scores pool the whole set (not a mean of per-batch scores). A class that is neither present nor predicted
    has NaN IoU and Dice and is left out of the class means; with ``ignore_index``, pixels whose true label is
    ``ignore_index`` are dropped, and if ``ignore_index`` names a class (0 <= ignore_index < num_classes) that class
    is also left out of the means (its scores stay in the per-class vectors).

    Under data-parallel evaluation, sum [`matrix`][convlstm.metrics.ConfusionMatrix.matrix] across processes or
    [`merge`][convlstm.metrics.ConfusionMatrix.merge] gathered matrices.

    Args:
        num_classes: Number of classes K.
        lead_times: Number of frames T per sequence.
        ignore_index: Optional true label to skip (e.g. 255 for "void").

    Examples:
        >>> cm = ConfusionMatrix(num_classes=3, lead_times=10)
        >>> cm.update(logits, labels)  # (B, 10, 3, H, W) logits or (B, 10, H, W) labels; labels (B, 10, H, W)
        >>> cm.compute()["miou"]
    """

    def __init__(self, *, num_classes: int, lead_times: int, ignore_index: int | None = None) -> None:
        check_int("num_classes", num_classes, 2)
        if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, int)):
            raise ValueError(f"ignore_index must be an int or None, got {ignore_index!r}")
        self.num_classes = num_classes
        self.lead_times = check_lead_times(lead_times)
        self.ignore_index = ignore_index
        # (T, K, K): rows = true class, columns = predicted class.
        self.matrix = torch.zeros(self.lead_times, num_classes, num_classes, dtype=torch.int64)

    def reset(self) -> None:
        """Zero the matrix."""
        self.matrix.zero_()

    def _labels_from(self, pred: Tensor, target: Tensor) -> Tensor:
        """Validate and return predicted labels (B, T, H, W) from labels or logits."""
        check_tensor(pred, "pred")
        check_tensor(target, "target")
        if target.ndim < 3 or target.is_floating_point() or target.dtype == torch.bool:
            raise ValueError(
                f"target must hold integer labels of shape (B, T, *spatial), got dtype {target.dtype} and shape "
                f"{tuple(target.shape)}"
            )
        if target.shape[1] != self.lead_times:
            raise ValueError(
                f"target has {target.shape[1]} lead times (dim 1 of {tuple(target.shape)}), expected {self.lead_times}"
            )
        if pred.is_floating_point():
            expected = (*target.shape[:2], self.num_classes, *target.shape[2:])
            if pred.shape != expected:
                raise ValueError(
                    f"pred logits must have shape (B, T, K, *spatial) = {expected} for target {tuple(target.shape)}, "
                    f"got {tuple(pred.shape)}"
                )
            if bool(torch.isnan(pred).any()):
                raise ValueError("pred contains NaN")
            return pred.argmax(2)
        if pred.shape != target.shape:
            raise ValueError(
                f"pred labels must have target's shape, got pred {tuple(pred.shape)} and target {tuple(target.shape)}"
            )
        if pred.numel() and (int(pred.min()) < 0 or int(pred.max()) >= self.num_classes):
            raise ValueError(
                f"pred labels must lie in [0, {self.num_classes}), got [{int(pred.min())}, {int(pred.max())}]"
            )
        return pred

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add one batch.

        Args:
            pred: Predicted labels (B, T, *spatial), integer, or logits (B, T, K, *spatial), floating.
            target: True labels (B, T, *spatial), integer in [0, K) or ``ignore_index``.
        """
        from torchmetrics.functional.classification import (
            multiclass_confusion_matrix,
        )  # lazy: torchmetrics imports matplotlib

        labels = self._labels_from(pred, target)
        counted = target if self.ignore_index is None else target[target != self.ignore_index]
        if counted.numel() and (int(counted.min()) < 0 or int(counted.max()) >= self.num_classes):
            raise ValueError(
                f"target labels must lie in [0, {self.num_classes}) or equal ignore_index={self.ignore_index}, got "
                f"values in [{int(counted.min())}, {int(counted.max())}]"
            )
        per_lead_time = [
            multiclass_confusion_matrix(
                labels[:, t], target[:, t], self.num_classes, ignore_index=self.ignore_index, validate_args=False
            )
            for t in range(self.lead_times)
        ]
        self.matrix += torch.stack(per_lead_time).cpu().to(torch.int64)

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another matrix (same classes, lead times and ignore_index) to this one and return self."""
        if not isinstance(other, ConfusionMatrix):
            raise ValueError(f"other must be a ConfusionMatrix, got {type(other).__name__}")
        mine = (self.num_classes, self.lead_times, self.ignore_index)
        theirs = (other.num_classes, other.lead_times, other.ignore_index)
        if mine != theirs:
            raise ValueError(
                f"cannot merge a matrix with (num_classes, lead_times, ignore_index) = {theirs} into one with {mine}"
            )
        self.matrix += other.matrix
        return self

    def _class_mean(self, per_class: Tensor) -> Tensor:
        """NaN-skipping mean over the last (class) dimension, leaving out a class-valued ignore_index."""
        if self.ignore_index is not None and 0 <= self.ignore_index < self.num_classes:
            keep = torch.ones(self.num_classes, dtype=torch.bool)
            keep[self.ignore_index] = False
            per_class = per_class[..., keep]
        return torch.nanmean(per_class, dim=-1)

    def compute(self) -> dict[str, Tensor]:
        """Scores by name (float64).

        Returns:
            ``"iou_per_class"`` and ``"dice_per_class"`` (K,), ``"miou"`` and ``"mean_dice"`` (0-d), pooled over
            all lead times; ``"miou_by_lead_time"`` and ``"mean_dice_by_lead_time"`` (T,), and
            ``"iou_per_class_by_lead_time"`` and ``"dice_per_class_by_lead_time"`` (T, K).
        """
        pooled = self.matrix.sum(0)
        iou, dice = iou_from_confusion(pooled), dice_from_confusion(pooled)
        iou_t, dice_t = iou_from_confusion(self.matrix), dice_from_confusion(self.matrix)
        return {
            "iou_per_class": iou,
            "dice_per_class": dice,
            "miou": self._class_mean(iou),
            "mean_dice": self._class_mean(dice),
            "iou_per_class_by_lead_time": iou_t,
            "dice_per_class_by_lead_time": dice_t,
            "miou_by_lead_time": self._class_mean(iou_t),
            "mean_dice_by_lead_time": self._class_mean(dice_t),
        }
