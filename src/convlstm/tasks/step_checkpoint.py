"""Checkpoints between two training steps: every few minutes, and when the process is asked to stop.

Lightning writes checkpoints after validation only, so a run stopped by Ctrl-C or by a scheduler's SIGTERM loses
every step since the last validation (an epoch, or more), and a run stopped before its first validation has
nothing to resume from at all. `StepCheckpoint` closes both gaps: a stop request is honoured at the end of
the training step under way, after writing ``last.ckpt``; and a crash loses at most ``every_minutes``.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint

from convlstm.utils.checks import check_positive

__all__ = ["STOP_SIGNALS", "StepCheckpoint", "TrainingInterrupted"]

logger = logging.getLogger(__name__)

STOP_SIGNALS: dict[int, str] = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM"}
"""The signals that stop a fit after writing a checkpoint, with the words the messages use for them."""


class TrainingInterrupted(Exception):
    """A fit stopped on request (Ctrl-C, SIGTERM) after writing a checkpoint to resume from.

    Attributes:
        signal_number: the signal that asked for the stop.
        step: the optimizer steps done, all of them in ``checkpoint``.
        epoch: the epoch the stop fell in.
        checkpoint: the checkpoint written at the stop.
        resume_command: the command that continues the run, where the caller knows it (``convlstm fit`` does).
    """

    def __init__(self, signal_number: int, step: int, epoch: int, checkpoint: str) -> None:
        self.signal_number, self.step, self.epoch, self.checkpoint = signal_number, step, epoch, checkpoint
        self.resume_command: str | None = None
        super().__init__(
            f"stopped by {STOP_SIGNALS[signal_number]} at step {step} (epoch {epoch}), saved in {checkpoint}"
        )

    @property
    def exit_code(self) -> int:
        """The shell's code for a process ended by the signal (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + self.signal_number


class StepCheckpoint(Checkpoint):
    """Writes ``last.ckpt`` at the end of a training step every ``every_minutes`` and when SIGINT or SIGTERM
    arrives; after the latter it ends the fit by raising
    [`TrainingInterrupted`][convlstm.experiment.TrainingInterrupted].

    The checkpoint is taken after the step's optimizer update and learning-rate scheduler step, where Lightning
    (2.4+) resumes with the next batch and `ResumableDataLoader` with the next
    indices: a resumed run ends with the weights and optimizer state of one that never stopped. A stop request
    during validation or data loading waits for the end of the next training step; a second Ctrl-C stops at once
    without a checkpoint (Lightning's own handling). Signal handlers are installed for the duration of the fit,
    from the main thread only, and the previous ones restored after it; SIGTERM is passed on to the handler that
    was there before (Lightning's, which tells the other processes of a multi-process run).

    Under DDP rank 0's decision is broadcast at every step, so that all processes write the checkpoint (a
    collective operation) at the same step.

    Args:
        model_checkpoint: the ModelCheckpoint whose directory (resolved by Lightning) receives ``last.ckpt``.
        every_minutes: wall-clock minutes between checkpoints (any checkpoint written restarts the count); None
            writes them only on a stop request.
    """

    def __init__(self, model_checkpoint: ModelCheckpoint, every_minutes: float | None = None) -> None:
        if every_minutes is not None:  # None: after validation only
            check_positive("every_minutes", every_minutes)
        self.model_checkpoint = model_checkpoint
        self.every_s = None if every_minutes is None else every_minutes * 60
        self.stop_signal: int | None = None
        self._last_save = time.monotonic()
        self._previous: dict[int, Any] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Not on_fit_start: Lightning installs its SIGTERM handler after that hook, and would restore ours at its end.
        self._last_save = time.monotonic()
        self.stop_signal = None
        if threading.current_thread() is threading.main_thread():
            for number in STOP_SIGNALS:
                self._previous[number] = signal.signal(number, self._request_stop)

    def _request_stop(self, number: int, frame: FrameType | None) -> None:
        first = self.stop_signal is None
        self.stop_signal = number
        if number == signal.SIGINT:
            # The next Ctrl-C goes to the previous handler: KeyboardInterrupt, which Lightning turns into a quick exit.
            signal.signal(number, self._previous.get(number, signal.default_int_handler))
            if first:
                logger.warning(
                    "Ctrl-C: stopping after this training step, once the checkpoint is written "
                    "(Ctrl-C again stops at once, without one)"
                )
        else:
            previous = self._previous.get(number)
            if callable(previous):
                previous(number, frame)
            if first:
                logger.warning(
                    "%s: stopping after this training step, once its checkpoint is written", STOP_SIGNALS[number]
                )

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        due = self.every_s is not None and time.monotonic() - self._last_save >= self.every_s
        decision = (self.stop_signal or 0, due)
        if trainer.world_size > 1:
            decision = trainer.strategy.broadcast(decision, src=0)
        stop_signal, due = decision
        if not (stop_signal or due):
            return
        directory = self.model_checkpoint.dirpath
        if directory is None:
            raise ValueError("StepCheckpoint needs a ModelCheckpoint whose directory Lightning has resolved")
        path = os.path.join(directory, "last.ckpt")
        trainer.save_checkpoint(path, weights_only=False)
        if stop_signal:
            raise TrainingInterrupted(stop_signal, trainer.global_step, trainer.current_epoch, path)
        logger.debug("step %d: wrote %s", trainer.global_step, path)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        self._last_save = time.monotonic()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handlers()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore_handlers()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._restore_handlers()

    def _restore_handlers(self) -> None:
        for number, previous in self._previous.items():
            signal.signal(number, previous)
        self._previous.clear()
