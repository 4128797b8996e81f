"""The supervised mode: a network labels every pixel of every frame (e.g. the ConvLSTM U-Net on moving shapes)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from convlstm.metrics import ConfusionMatrix
from convlstm.tasks.base import TaskBase
from convlstm.tasks.losses import segmentation_loss
from convlstm.tasks.optim import OptimizationConfig
from convlstm.utils.checks import check_float, check_int

__all__ = ["SegmentationTask"]


class SegmentationTask(TaskBase):
    """Trains ``model(frames) -> logits`` (B, T, K, H, W) (or ``(logits, state)``) with cross-entropy + soft Dice on
    every frame, and scores mIoU and mean Dice from a confusion matrix pooled over the evaluation set.

    Batches are dicts with "context" (B, T, C, H, W) frames and "labels" (B, T, H, W) int64 class indices for the
    same frames.

    Logged: ``train/loss``; ``val/loss`` and ``test/loss`` (averaged over the epoch and the processes); at the end
    of each evaluation epoch ``<stage>/miou``, ``<stage>/mean_dice`` (pooled over all frames), ``<stage>/iou/<k>``
    and ``<stage>/dice/<k>`` per class k, and, with ``log_per_lead_time``, ``<stage>/miou@t<k>`` and
    ``<stage>/mean_dice@t<k>`` per frame index.

    Args:
        model: The network, e.g. [`ConvLSTMUNet`][convlstm.models.ConvLSTMUNet] with ``head="segmentation"``.
        num_classes: K.
        ce_weight: Weight of the cross-entropy term.
        dice_weight: Weight of the soft Dice term.
        ignore_index: Label skipped by the loss and the scores (e.g. 255 for "void").
        class_weights: Optional per-class weights of the cross-entropy, K values.
        dice_smooth: Smoothing of the soft Dice.
        log_per_lead_time: Also log mIoU and mean Dice per frame index.
        optimization: The optimizer, learning rate and schedule
            ([`OptimizationConfig`][convlstm.tasks.OptimizationConfig]); Adam at 1e-3 by default.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        num_classes: int,
        ce_weight: float = 1.0,
        dice_weight: float = 1.0,
        ignore_index: int | None = None,
        class_weights: Sequence[float] | None = None,
        dice_smooth: float = 1.0,
        log_per_lead_time: bool = True,
        optimization: OptimizationConfig = OptimizationConfig(lr=1e-3),
    ) -> None:
        super().__init__(model)
        check_int("num_classes", num_classes, minimum=2)
        check_float("ce_weight", ce_weight, 0.0, math.inf)
        check_float("dice_weight", dice_weight, 0.0, math.inf)
        if ce_weight + dice_weight == 0:
            raise ValueError(f"ce_weight and dice_weight must not both be 0, got {ce_weight}, {dice_weight}")
        if class_weights is not None and len(class_weights) != num_classes:
            raise ValueError(f"class_weights needs {num_classes} values, got {len(class_weights)}")
        self.save_hyperparameters(ignore=["model", "optimization"])
        self.record_optimization(optimization)
        self.record_model()
        self.class_weights = None if class_weights is None else torch.tensor([float(w) for w in class_weights])
        self.confusion: dict[str, ConfusionMatrix | None] = {"val": None, "test": None}

    def forward(self, frames: Tensor) -> Tensor:
        """Logits (B, T, K, H, W) of the wrapped model."""
        out = self.model(frames)
        logits = out[0] if isinstance(out, tuple) else out
        if not isinstance(logits, Tensor) or logits.ndim < 4 or logits.shape[2] != self.hparams["num_classes"]:
            shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
            raise ValueError(f"the model must return logits (B, T, K={self.hparams['num_classes']}, ...), got {shape}")
        return logits

    def _unpack(self, batch: Any) -> tuple[Tensor, Tensor]:
        if not isinstance(batch, Mapping) or "context" not in batch or "labels" not in batch:
            got = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
            raise ValueError(f"a segmentation batch must be a dict with 'context' and 'labels', got {got}")
        return batch["context"], batch["labels"]

    def _loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        hp = self.hparams
        return segmentation_loss(
            logits,
            labels,
            ce_weight=hp["ce_weight"],
            dice_weight=hp["dice_weight"],
            ignore_index=hp["ignore_index"],
            class_weights=self.class_weights,
            dice_smooth=hp["dice_smooth"],
        )

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        frames, labels = self._unpack(batch)
        loss = self._loss(self(frames), labels)
        self.log("train/loss", loss, prog_bar=True, batch_size=frames.shape[0])
        return loss

    def _evaluation_step(self, stage: str, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        frames, labels = self._unpack(batch)
        logits = self(frames)
        loss = self._loss(logits, labels)
        self.log(f"{stage}/loss", loss, prog_bar=stage == "val", sync_dist=True, batch_size=frames.shape[0])
        matrix = self.confusion[stage]
        if matrix is None:
            matrix = ConfusionMatrix(
                num_classes=self.hparams["num_classes"],
                lead_times=labels.shape[1],
                ignore_index=self.hparams["ignore_index"],
            )
            self.confusion[stage] = matrix
        matrix.update(logits.detach().float(), labels)
        return {"loss": loss, "logits": logits.detach()}

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Tensor]:
        return self._evaluation_step("val", batch)

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Tensor]:
        return self._evaluation_step("test", batch)

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Predicted labels (B, T, H, W)."""
        frames = batch if isinstance(batch, Tensor) else self._unpack_frames(batch)
        return self(frames).argmax(2)

    @staticmethod
    def _unpack_frames(batch: Any) -> Tensor:
        if isinstance(batch, Mapping) and "context" in batch:
            return batch["context"]
        raise ValueError(f"a prediction batch must be a tensor or a dict with 'context', got {type(batch).__name__}")

    def on_validation_epoch_start(self) -> None:
        self.confusion["val"] = None

    def on_test_epoch_start(self) -> None:
        self.confusion["test"] = None

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_scores("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch_scores("test")

    def _log_epoch_scores(self, stage: str) -> None:
        matrix = self.confusion[stage]
        if matrix is None:
            return
        matrix.matrix = self.sum_across_processes(matrix.matrix)
        scores = matrix.compute()
        self.log_scores(
            stage,
            {k: v for k, v in scores.items() if not k.endswith("per_class_by_lead_time")},
            per_lead_time=self.hparams["log_per_lead_time"],
        )
        for k, (iou, dice) in enumerate(zip(scores["iou_per_class"], scores["dice_per_class"], strict=True)):
            self.log(f"{stage}/iou/{k}", float(iou), sync_dist=False)
            self.log(f"{stage}/dice/{k}", float(dice), sync_dist=False)
