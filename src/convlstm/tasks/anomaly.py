"""Video anomaly detection by prediction (Liu et al. 2018): a next-frame predictor trained on normal sequences
predicts each frame from the ``context_frames`` before it; a badly predicted frame is an unusual one.

Per frame t >= k (k = ``context_frames``): PSNR of the prediction of frame t made from frames t-k .. t-1 ->
regularity = the PSNR min-max normalised over the frames of the same sequence (1 = most regular) -> frame-level
ROC-AUC against the labels, with 1 - regularity as the anomaly score.

With ``score="cumulative"`` the regularity of frame t is instead the lowest PSNR of its sequence up to t, over the
PSNR cap ([`cumulative_regularity`][convlstm.metrics.cumulative_regularity]): for labels that stay 1 after an onset.

The first k frames have no prediction. With ``first_frames="fill"`` (default) they take the regularity of frame k,
the first scored frame, so every frame has a score and every label counts; with ``"exclude"`` their score is NaN
and the AUROC leaves them out.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import Tensor, nn

from convlstm.metrics import cumulative_regularity, frame_auroc, psnr, regularity_score
from convlstm.tasks.base import TaskBase, frames_of
from convlstm.utils.checks import check_choice, check_int

__all__ = ["AnomalyScore", "AnomalyTask", "FirstFrames", "next_frame_psnr", "regularity_from_psnr", "score_sequences"]

logger = logging.getLogger(__name__)

FirstFrames = Literal["fill", "exclude"]
AnomalyScore = Literal["regularity", "cumulative"]
_SCORES = ("regularity", "cumulative")


def _check_frames(frames: Tensor, context_frames: int) -> None:
    if not isinstance(frames, Tensor) or frames.ndim < 4:
        shape = tuple(frames.shape) if isinstance(frames, Tensor) else type(frames).__name__
        raise ValueError(f"frames must be (B, T, C, *spatial), got {shape}")
    check_int("context_frames", context_frames)
    if frames.shape[1] <= context_frames:
        raise ValueError(
            f"frames need more than context_frames={context_frames} frames to score any, got shape "
            f"{tuple(frames.shape)}"
        )


@torch.no_grad()
def next_frame_psnr(
    model: nn.Module,
    frames: Tensor,
    *,
    context_frames: int = 4,
    max_psnr: float = 100.0,
    chunk_size: int = 64,
) -> Tensor:
    """PSNR (dB, peak 1, frames clipped to [0, 1]) of each frame t >= context_frames predicted from the frames
    t - context_frames .. t - 1 by ``model(window, 1)``.

    Args:
        model: A forecaster called as ``model(context, horizon)`` -> (N, horizon, C, *spatial).
        frames: (B, T, C, *spatial) in [0, 1].
        context_frames: Frames k each prediction sees.
        max_psnr: Cap for exactly predicted frames (their PSNR is infinite).
        chunk_size: Windows per model call.

    Returns:
        (B, T - context_frames) PSNR of frames k .. T-1.
    """
    _check_frames(frames, context_frames)
    batch, steps = frames.shape[:2]
    k = context_frames
    windows = frames.unfold(1, k, 1)[:, : steps - k]  # (B, T-k, C, *spatial, k): window t ends before frame t+k
    windows = windows.movedim(-1, 2).flatten(0, 1)  # (B*(T-k), k, C, *spatial)
    was_training = model.training
    model.eval()
    try:
        predicted = [model(chunk, 1)[:, 0] for chunk in windows.split(chunk_size)]
    finally:
        model.train(was_training)
    prediction = torch.cat(predicted).unflatten(0, (batch, steps - k))  # (B, T-k, C, *spatial)
    values = psnr(prediction.float(), frames[:, k:].float(), reduction="none")
    return values.clamp(max=max_psnr)


def regularity_from_psnr(
    values: Tensor,
    *,
    context_frames: int,
    first_frames: FirstFrames = "fill",
    score: AnomalyScore = "regularity",
    max_psnr: float = 100.0,
) -> Tensor:
    """PSNR (B, T - k) -> regularity (B, T) with the first k frames filled or NaN: min-max normalised per sequence
    (``score="regularity"``) or the running minimum over the cap ``max_psnr`` (``"cumulative"``)."""
    _check_choices(first_frames, score)
    if score == "cumulative":
        regularity = cumulative_regularity(values, max_psnr=max_psnr)
    else:
        ids = torch.arange(values.shape[0], device=values.device).unsqueeze(1).expand_as(values)
        regularity = regularity_score(values, video_ids=ids)  # (B, T-k)
    batch = values.shape[0]
    head = regularity[:, :1] if first_frames == "fill" else torch.full_like(regularity[:, :1], torch.nan)
    return torch.cat([head.expand(batch, context_frames), regularity], dim=1)


def score_sequences(
    model: nn.Module,
    frames: Tensor,
    *,
    context_frames: int = 4,
    first_frames: FirstFrames = "fill",
    score: AnomalyScore = "regularity",
    max_psnr: float = 100.0,
    chunk_size: int = 64,
) -> Tensor:
    """Regularity (B, T) of every frame of every sequence (1 = regular), as
    [`regularity_from_psnr`][convlstm.tasks.regularity_from_psnr] gives it.

    Works outside Lightning with any next-frame forecaster; see the module docstring for the first frames.

    Examples:
        >>> regularity = score_sequences(model, frames)  # frames (B, T, C, H, W) in [0, 1]
        >>> frame_auroc(regularity, labels, higher_is_anomalous=False)
    """
    values = next_frame_psnr(model, frames, context_frames=context_frames, max_psnr=max_psnr, chunk_size=chunk_size)
    return regularity_from_psnr(
        values, context_frames=context_frames, first_frames=first_frames, score=score, max_psnr=max_psnr
    )


def _check_choices(first_frames: str, score: str) -> None:
    check_choice("first_frames", first_frames, ("fill", "exclude"))
    check_choice("score", score, _SCORES)


class AnomalyTask(TaskBase):
    """Scores sequences with a trained next-frame forecaster and reports the frame-level ROC-AUC.

    Batches are dicts with "context" and optionally "target" (joined along time into the scored sequence) and
    "labels" (B, T) with 1 for an anomalous frame, over the same frames. Use it with ``trainer.test`` (and
    ``trainer.validate``); training the forecaster is [`ForecastingTask`][convlstm.tasks.ForecastingTask]'s job.

    Logged at the end of the epoch: ``<stage>/auroc`` (frame-level, pooled over all sequences of all processes;
    skipped with a warning when the labels hold one class only) and ``<stage>/psnr`` (mean PSNR of the predicted
    frames). [`results`][convlstm.tasks.AnomalyTask.results] keeps the last epoch's ``regularity`` and ``labels`` (N, T)
    for reports.

    Args:
        model: The forecaster, called as ``model(context, 1)``.
        context_frames: Frames each prediction sees (Liu et al. use 4).
        first_frames: ``"fill"`` or ``"exclude"`` (see the module docstring).
        score: ``"regularity"`` (Liu et al.) or ``"cumulative"`` (see the module docstring).
        max_psnr: Cap on the PSNR of exactly predicted frames.
        chunk_size: Windows per model call.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        context_frames: int = 4,
        first_frames: FirstFrames = "fill",
        score: AnomalyScore = "regularity",
        max_psnr: float = 100.0,
        chunk_size: int = 64,
    ) -> None:
        super().__init__(model)
        check_int("context_frames", context_frames)
        _check_choices(first_frames, score)
        check_int("chunk_size", chunk_size)
        self.save_hyperparameters(ignore=["model"])
        self.record_model()
        self._collected: list[tuple[Tensor, Tensor]] = []
        self.results: dict[str, Tensor] = {}

    def forward(self, frames: Tensor) -> Tensor:
        """Regularity (B, T) of every frame."""
        hp = self.hparams
        return score_sequences(
            self.model,
            frames,
            context_frames=hp["context_frames"],
            first_frames=hp["first_frames"],
            score=hp["score"],
            max_psnr=hp["max_psnr"],
            chunk_size=hp["chunk_size"],
        )

    def _evaluation_step(self, stage: str, batch: Any) -> Tensor:
        if not isinstance(batch, Mapping) or "labels" not in batch:
            got = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
            raise ValueError(f"an anomaly batch must be a dict with 'context' and 'labels', got {got}")
        frames, labels = frames_of(batch), batch["labels"]
        if labels.shape != frames.shape[:2]:
            raise ValueError(
                f"labels must be (B, T) = {tuple(frames.shape[:2])}, one per frame of context + target, "
                f"got {tuple(labels.shape)}"
            )
        hp = self.hparams
        values = next_frame_psnr(
            self.model,
            frames,
            context_frames=hp["context_frames"],
            max_psnr=hp["max_psnr"],
            chunk_size=hp["chunk_size"],
        )
        self.log(f"{stage}/psnr", values.mean(), sync_dist=True, batch_size=frames.shape[0])
        regularity = regularity_from_psnr(
            values,
            context_frames=hp["context_frames"],
            first_frames=hp["first_frames"],
            score=hp["score"],
            max_psnr=hp["max_psnr"],
        )
        self._collected.append((regularity.cpu(), labels.cpu()))
        return regularity

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._evaluation_step("val", batch)

    def test_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._evaluation_step("test", batch)

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Regularity (B, T) of every frame."""
        return self(frames_of(batch))

    def configure_optimizers(self) -> Any:
        raise ValueError("AnomalyTask only scores sequences; train the forecaster with ForecastingTask")

    def on_validation_epoch_start(self) -> None:
        self._collected = []

    def on_test_epoch_start(self) -> None:
        self._collected = []

    def on_validation_epoch_end(self) -> None:
        self._log_auroc("val")

    def on_test_epoch_end(self) -> None:
        self._log_auroc("test")

    def _gather(self) -> list[tuple[Tensor, Tensor]]:
        """Every process's (regularity, labels) pairs, in rank order (processes may hold different counts)."""
        trainer = self._trainer
        if trainer is None or trainer.world_size <= 1 or not dist.is_available() or not dist.is_initialized():
            return self._collected
        everyone: list[Any] = [None] * trainer.world_size
        dist.all_gather_object(everyone, self._collected)
        return [pair for collected in everyone for pair in collected]

    def _log_auroc(self, stage: str) -> None:
        collected = self._gather()
        self._collected = []
        if not collected:
            return
        regularity = torch.cat([r for r, _ in collected])
        labels = torch.cat([lab for _, lab in collected])
        self.results = {"regularity": regularity, "labels": labels}
        scored = ~torch.isnan(regularity)
        kinds = labels[scored].unique()
        if kinds.numel() < 2:
            logger.warning("%s/auroc skipped: the scored frames hold only label(s) %s", stage, kinds.tolist())
            return
        auroc = frame_auroc(regularity[scored], labels[scored], higher_is_anomalous=False)
        self.log(f"{stage}/auroc", float(auroc), sync_dist=False)
