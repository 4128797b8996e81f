"""Truncated back-propagation through time (TBPTT) for one-step next-frame training on long sequences.

A model with ``one_step(frames, state) -> (predictions, state)`` (prediction t is the forecast of frame t + 1, as
[`NextFramePredictor`][convlstm.models.NextFramePredictor] and the ConvLSTM U-Net forecaster) reads a long sequence in
chunks of ``chunk`` frames. Each chunk starts from the state the previous one ended with, detached, and its loss is
back-propagated before the next chunk runs, so the autograd graph, and with it the memory of a training step,
covers one chunk whatever the sequence length. The forward values are those of one call over the whole sequence;
only gradients through more than ``chunk`` steps are cut.

For memory that grows more slowly inside a chunk as well, combine with activation checkpointing in the recurrent
layers (``ConvLSTM(..., checkpoint_every=k)``, or ``model.rnn.checkpoint_every = k``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal, Protocol, TypeVar, cast

import torch
from lightning.pytorch.core.optimizer import LightningOptimizer
from torch import Tensor, nn

from convlstm.tasks.base import TaskBase, frames_of
from convlstm.tasks.losses import bce_loss, mae_loss, mse_loss
from convlstm.tasks.optim import OptimizationConfig
from convlstm.utils.checks import check_choice, check_int, check_positive

__all__ = [
    "TBPTT_LOSSES",
    "ChunkLoss",
    "OneStepModel",
    "TBPTTForecastingTask",
    "detach_state",
    "tbptt_chunks",
    "tbptt_one_step_loss",
]

logger = logging.getLogger(__name__)

LossFn = Callable[[Tensor, Tensor], Tensor]
TBPTTLossName = Literal["mse", "mae", "bce"]
#: Per-pixel mean losses by name: means over equal-sized frames, so chunk losses recombine exactly.
TBPTT_LOSSES: dict[str, LossFn] = {"mse": mse_loss, "mae": mae_loss, "bce": bce_loss}
UpdateMode = Literal["per_sequence", "per_chunk"]

S = TypeVar("S")


class OneStepModel(Protocol):
    """A model that predicts frame t + 1 at every step t and carries a recurrent state between calls."""

    def one_step(self, frames: Tensor, state: Any = None) -> tuple[Tensor, Any]: ...


def detach_state(state: S) -> S:
    """``state`` with every tensor detached from the graph: tensors inside lists, tuples and dicts, None as is."""
    detached: Any
    if isinstance(state, Tensor):
        detached = state.detach()
    elif isinstance(state, list | tuple):
        items = [detach_state(s) for s in state]
        detached = type(state)(*items) if hasattr(state, "_fields") else type(state)(items)  # a namedtuple or not
    elif isinstance(state, dict):
        detached = {key: detach_state(value) for key, value in state.items()}
    else:
        detached = state
    return detached


@dataclasses.dataclass
class ChunkLoss:
    """One chunk of a truncated pass.

    Attributes:
        loss: ``loss_fn`` of the chunk's predictions against the frames they forecast (attached to the graph).
        weight: The chunk's share of the sequence's predicted frames; ``sum(weight * loss)`` over the chunks is the
            loss of the whole sequence.
        start: Index of the chunk's first input frame; it predicts frames ``start + 1 .. stop``.
        stop: One past the index of the chunk's last input frame.
        state: The model's state after the chunk (attached to the graph; the next chunk starts from it detached).
    """

    loss: Tensor
    weight: float
    start: int
    stop: int
    state: Any


def _check_arguments(model: Any, frames: Tensor, chunk: int) -> None:
    if not callable(getattr(model, "one_step", None)):
        raise ValueError(
            f"model must have a method one_step(frames, state) -> (predictions, state), got {type(model).__name__}"
        )
    if not isinstance(frames, Tensor) or frames.ndim < 3:
        got = tuple(frames.shape) if isinstance(frames, Tensor) else type(frames).__name__
        raise ValueError(f"frames must be a tensor (B, T, C, *spatial), got {got}")
    if frames.shape[1] < 2:
        raise ValueError(
            f"frames must have at least 2 time steps in dim 1 (one to read, one to predict), got {tuple(frames.shape)}"
        )
    check_int("chunk", chunk)  # frames per truncated pass


def tbptt_chunks(
    model: OneStepModel, frames: Tensor, *, chunk: int, loss_fn: LossFn = mse_loss, state: Any = None
) -> Iterator[ChunkLoss]:
    """Runs ``model.one_step`` over a sequence in chunks of ``chunk`` input frames, cutting the graph between chunks.

    Frames 0 .. T-2 are read, frames 1 .. T-1 predicted. Each chunk starts from the detached state of the one
    before (the first from ``state``), so a gradient taken from a chunk's loss reaches that chunk's frames and
    parameters only through that chunk's steps. Consume the chunks in order; back-propagate (or drop) each chunk's
    loss before asking for the next one to keep one chunk's graph in memory.

    Args:
        model: Has ``one_step(frames, state) -> (predictions, state)``.
        frames: (B, T, C, *spatial), T >= 2.
        chunk: Input frames per chunk (the truncation length); the last chunk may be shorter.
        loss_fn: ``loss_fn(predictions, targets)``; a mean over frames of equal weight (as the per-pixel MSE,
            MAE and BCE) makes ``sum(weight * loss)`` equal the loss of the whole sequence.
        state: The state to start from (None: the model's zeros).

    Yields:
        `ChunkLoss` per chunk, first to last.
    """
    _check_arguments(model, frames, chunk)  # here, not at the first next(): a bad argument fails at the call
    return _chunks(model, frames, chunk, loss_fn, state)


def _chunks(model: OneStepModel, frames: Tensor, chunk: int, loss_fn: LossFn, state: Any) -> Iterator[ChunkLoss]:
    inputs = frames.shape[1] - 1
    for start in range(0, inputs, chunk):
        stop = min(start + chunk, inputs)
        predictions, state = model.one_step(frames[:, start:stop], None if state is None else detach_state(state))
        loss = loss_fn(predictions, frames[:, start + 1 : stop + 1])
        yield ChunkLoss(loss=loss, weight=(stop - start) / inputs, start=start, stop=stop, state=state)


def tbptt_one_step_loss(
    model: OneStepModel,
    frames: Tensor,
    *,
    chunk: int,
    loss_fn: LossFn = mse_loss,
    state: Any = None,
    backward: bool = True,
) -> Tensor:
    """The one-step loss of a whole sequence, with gradients truncated every ``chunk`` frames.

    With ``backward=True`` each chunk's share (``weight * loss``) is back-propagated as soon as it is computed, so
    the parameters' ``.grad`` accumulate the truncated gradient of the whole-sequence loss while memory holds one
    chunk's graph; the loss comes back detached. With ``backward=False`` nothing is back-propagated and the loss
    comes back attached to every chunk's graph (for evaluation under ``torch.no_grad()``, or a custom backward).

    Args:
        model: As `tbptt_chunks`.
        frames: As `tbptt_chunks`.
        chunk: As `tbptt_chunks`.
        loss_fn: As `tbptt_chunks`.
        state: As `tbptt_chunks`.
        backward: Back-propagate chunk by chunk.

    Returns:
        The loss of the whole sequence (0-d); its value equals ``loss_fn(model.one_step(frames[:, :-1])[0],
        frames[:, 1:])`` for a loss_fn that is a mean over frames.

    Examples:
        >>> optimizer.zero_grad()
        >>> loss = tbptt_one_step_loss(model, frames, chunk=25)   # frames (B, 400, C, H, W)
        >>> optimizer.step()
    """
    total: Tensor | None = None
    for part in tbptt_chunks(model, frames, chunk=chunk, loss_fn=loss_fn, state=state):
        share = part.loss * part.weight
        if backward and share.requires_grad:
            share.backward()
            share = share.detach()
        total = share if total is None else total + share
    if total is None:
        raise AssertionError("unreachable: a sequence of >= 2 frames has a chunk")
    return total


class TBPTTForecastingTask(TaskBase):
    """One-step next-frame training on long sequences with truncated back-propagation through time.

    Every batch is a whole sequence (B, T, C, H, W) (or a dict whose "context" and "target" are joined along time);
    the model reads frames 0 .. T-2 and predicts frames 1 .. T-1 in chunks of ``chunk`` frames (see
    `tbptt_chunks`). The task optimises manually:

    - ``update="per_sequence"`` (the default): each chunk's share of the loss is back-propagated as it is computed,
      gradients accumulate over the chunks, and the optimizer steps once per batch. The step uses the truncated
      gradient of the whole-sequence loss, so runs compare with untruncated training step for step, and schedules
      and ``max_steps`` count batches.
    - ``update="per_chunk"``: the optimizer steps after every chunk (the classic TBPTT of Williams and Peng, and
      Lightning 1.x's ``truncated_bptt_steps``): T / chunk updates per batch, each from one chunk's loss. The
      state carried into a chunk was computed with the weights before the last update. ``max_steps`` and the
      schedules count chunks; "cosine" and "onecycle" schedules then need ``total_steps``.

    Gradient clipping happens here (``gradient_clip_val``), before each optimizer step: build the Trainer with
    ``gradient_clip_val=None`` (``TrainerConfig(gradient_clip_val=None)``), as Lightning refuses its own clipping
    under manual optimisation; ``accumulate_grad_batches`` must stay 1.

    Logged: ``train/loss`` (the whole-sequence one-step loss of the batch, from the chunks' forward passes),
    ``val/loss`` and ``test/loss`` (the same without gradients).

    Args:
        model: A module with ``one_step(frames, state) -> (predictions, state)``.
        chunk: Frames per truncated pass (e.g. 25 for sequences of hundreds of frames).
        loss: ``"mse"``, ``"mae"`` or ``"bce"`` (per pixel, see `convlstm.tasks.losses`).
        update: ``"per_sequence"`` or ``"per_chunk"`` (see above).
        gradient_clip_val: Clip the gradient norm to this before each step; None for no clipping.
        optimization: The optimizer, learning rate and schedule
            ([`OptimizationConfig`][convlstm.tasks.OptimizationConfig]; Adam at 5e-4 by default).

    Examples:
        >>> model = create_model("next_frame_convlstm")
        >>> model.rnn.checkpoint_every = 5   # optional: activation checkpointing inside each chunk
        >>> task = TBPTTForecastingTask(model, chunk=25)
        >>> trainer = make_trainer(TrainerConfig(max_steps=10_000, gradient_clip_val=None))
        >>> trainer.fit(task, train_loader, val_loader)
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        chunk: int = 25,
        loss: TBPTTLossName = "mse",
        update: UpdateMode = "per_sequence",
        gradient_clip_val: float | None = 1.0,
        optimization: OptimizationConfig = OptimizationConfig(),
    ) -> None:
        super().__init__(model)
        if not callable(getattr(model, "one_step", None)):
            raise ValueError(
                f"model must have a method one_step(frames, state) -> (predictions, state), got {type(model).__name__}"
            )
        check_int("chunk", chunk)  # frames per truncated pass
        check_choice("loss", loss, TBPTT_LOSSES)
        check_choice("update", update, ("per_sequence", "per_chunk"))
        if gradient_clip_val is not None:
            check_positive("gradient_clip_val", gradient_clip_val)
        self.automatic_optimization = False
        self.save_hyperparameters(ignore=["model", "optimization"])
        self.record_optimization(optimization)
        schedule = self.optimization.lr_schedule
        if update == "per_chunk" and schedule in ("cosine", "onecycle") and self.optimization.total_steps is None:
            raise ValueError(
                f"lr_schedule={schedule!r} with update='per_chunk' needs total_steps (optimizer steps, one per "
                "chunk): the Trainer's estimate counts batches"
            )
        self.record_model()
        self.loss_fn = TBPTT_LOSSES[loss]

    @property
    def one_step_model(self) -> OneStepModel:
        """The wrapped model, seen through its ``one_step`` method."""
        return cast(OneStepModel, self.model)

    def forward(self, frames: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """The wrapped model's ``one_step``: predictions (B, T, C, H, W) of frames 1 .. T and the state."""
        return self.one_step_model.one_step(frames, state)

    def _frames(self, batch: Any) -> Tensor:
        frames = frames_of(batch)
        if frames.ndim < 4 or frames.shape[1] < 2:
            raise ValueError(f"a batch must hold sequences (B, T >= 2, C, *spatial), got {tuple(frames.shape)}")
        return frames

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        frames = self._frames(batch)
        per_chunk = self.hparams["update"] == "per_chunk"
        optimizer = self._optimizer()
        total = frames.new_zeros((), dtype=torch.float32)
        if not per_chunk:
            optimizer.zero_grad()
        for part in tbptt_chunks(self.one_step_model, frames, chunk=self.hparams["chunk"], loss_fn=self.loss_fn):
            if per_chunk:
                optimizer.zero_grad()
                self.manual_backward(part.loss)
                self._optimizer_step()
            else:
                self.manual_backward(part.loss * part.weight)
            total += part.loss.detach().float() * part.weight
        if not per_chunk:
            self._optimizer_step()
        self.log("train/loss", total, prog_bar=True, batch_size=frames.shape[0])
        return total

    def _optimizer(self) -> LightningOptimizer:
        optimizer = self.optimizers()
        return optimizer[0] if isinstance(optimizer, list) else optimizer

    def _optimizer_step(self) -> None:
        optimizer = self._optimizer()
        clip = self.hparams["gradient_clip_val"]
        if clip is not None:
            self.clip_gradients(optimizer.optimizer, gradient_clip_val=clip, gradient_clip_algorithm="norm")
        optimizer.step()
        if self._scheduler_interval() == "step":
            self._scheduler().step()

    def _scheduler(self) -> Any:
        scheduler = self.lr_schedulers()
        return scheduler[0] if isinstance(scheduler, list) else scheduler

    def _scheduler_interval(self) -> str | None:
        configs = self.trainer.lr_scheduler_configs
        return configs[0].interval if configs else None

    def on_train_epoch_end(self) -> None:
        if self._scheduler_interval() == "epoch":
            self._scheduler().step()

    def _evaluation_step(self, stage: str, batch: Any) -> Tensor:
        frames = self._frames(batch)
        loss = tbptt_one_step_loss(
            self.one_step_model,
            frames,
            chunk=self.hparams["chunk"],
            loss_fn=self.loss_fn,
            backward=False,
        )
        self.log(f"{stage}/loss", loss, prog_bar=stage == "val", sync_dist=True, batch_size=frames.shape[0])
        return loss

    def validation_step(self, batch: Mapping[str, Any] | Tensor, batch_idx: int) -> Tensor:
        return self._evaluation_step("val", batch)

    def test_step(self, batch: Mapping[str, Any] | Tensor, batch_idx: int) -> Tensor:
        return self._evaluation_step("test", batch)
