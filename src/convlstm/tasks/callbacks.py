"""Training-engine pieces: atomic checkpoint writes, a guard against non-finite losses, a clock of training time,
and prediction images in TensorBoard."""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, cast

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor

from convlstm.utils.atomic import atomic_path
from convlstm.utils.checks import check_choice, check_int

__all__ = [
    "AtomicCheckpointIO",
    "LastCheckpoint",
    "NonFiniteLossGuard",
    "PredictionImageLogger",
    "RandomStateCheckpoint",
    "TrainingClock",
    "ValidateAtStepLimit",
    "prediction_grid",
]

logger = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file beside its target, fsyncs it, renames it over the target with
    ``os.replace`` and fsyncs the directory: a reader (or a run resumed after a crash) sees the old checkpoint or
    the new one, never a partial file.

    Lightning's own ``TorchCheckpointIO`` (2.6) serialises into memory and commits through an fsspec transaction,
    which writes a temporary file in the system temp directory and moves it without fsync: not atomic when that
    directory is on another file system (a copy), and not durable. Remote paths (``s3://``...) keep Lightning's
    behaviour. Pass it as ``Trainer(plugins=[AtomicCheckpointIO()])``; [`make_trainer`][convlstm.tasks.make_trainer]
    does.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        target = Path(path)
        with atomic_path(target) as tmp:
            torch.save(checkpoint, tmp)
        _fsync_directory(target.parent)
        logger.debug("saved checkpoint %s", target)

    def remove_checkpoint(self, path: Any) -> None:
        fs = get_filesystem(path)
        if fs.exists(path):
            fs.rm(path, recursive=True)


def _fsync_directory(directory: Path) -> None:
    """Makes a rename in ``directory`` durable (POSIX); a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class NonFiniteLossGuard(L.Callback):
    """Stops a NaN or infinite loss (or gradient) from reaching the weights.

    Before each optimizer step it checks the loss of the step and the norm of every gradient. When one is not
    finite, it drops the gradients (``param.grad = None``), so the optimizer leaves every weight as it was, and
    then either skips the step (``action="skip"``, with a warning naming the step, the batch and the loss) or
    stops the run (``action="stop"``, or after ``max_consecutive`` skipped steps in a row) with an error message.
    Since no bad update is ever applied, the weights saved by checkpoints after that (including ``last.ckpt``)
    are the last good ones. Under DDP all processes see the same all-reduced gradients and decide alike.

    Args:
        action: ``"skip"`` or ``"stop"``.
        max_consecutive: Skipped steps in a row after which the run stops anyway.

    Attributes:
        skipped_steps: Steps skipped so far (saved in checkpoints).
        stopped_reason: The message given when it stopped the run, else None.
    """

    def __init__(self, action: Literal["skip", "stop"] = "skip", max_consecutive: int = 10) -> None:
        check_choice("action", action, ("skip", "stop"))
        check_int("max_consecutive", max_consecutive)
        self.action = action
        self.max_consecutive = max_consecutive
        self.skipped_steps = 0
        self.consecutive = 0
        self.stopped_reason: str | None = None
        self._loss: float | None = None
        self._batch_idx = -1

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._batch_idx = batch_idx
        self._loss = None

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: Tensor) -> None:
        self._loss = float(loss.detach().float().sum())

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        # One device sync for all gradients: the sum of norms is finite only if every gradient is.
        grad_norm = float(torch.stack([g.detach().float().norm() for g in grads]).sum()) if grads else 0.0
        loss_ok = self._loss is None or math.isfinite(self._loss)
        if loss_ok and math.isfinite(grad_norm):
            self.consecutive = 0
            return
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad = None
        self.skipped_steps += 1
        self.consecutive += 1
        what = "loss" if not loss_ok else "gradient"
        message = (
            f"non-finite {what} at global step {trainer.global_step} (epoch {trainer.current_epoch}, batch "
            f"{self._batch_idx}): loss = {self._loss}, sum of gradient norms = {grad_norm}"
        )
        if self.action == "stop" or self.consecutive >= self.max_consecutive:
            if self.action == "skip":
                message += f"; {self.consecutive} such steps in a row"
            self.stopped_reason = (
                message + "; the update was not applied and training stops, so the checkpoints keep the last "
                "good weights"
            )
            logger.error(self.stopped_reason)
            trainer.should_stop = True
        else:
            logger.warning("%s; skipping this optimizer step (%d skipped so far)", message, self.skipped_steps)

    def state_dict(self) -> dict[str, Any]:
        return {"skipped_steps": self.skipped_steps}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped_steps = int(state_dict.get("skipped_steps", 0))


class RandomStateCheckpoint(L.Callback):
    """Saves the states of the random generators (Python, numpy, torch and CUDA) in every checkpoint and restores
    them when a run resumes from it.

    Lightning saves the weights, the optimizer and the loop counters, but not the generators, so without this a
    resumed run draws other random numbers than the run that never stopped: other scheduled-sampling masks, other
    dropout masks, other random crops made in the main process. With it (and data whose order depends only on the
    seed and the epoch, as [`SequenceDataModule`][convlstm.tasks.SequenceDataModule] gives) a run killed and resumed
    ends with the same weights as one that never stopped. The states are plain tensors and numbers, readable with
    ``torch.load(weights_only=True)``. Under DDP the checkpoint holds rank 0's states.
    """

    def state_dict(self) -> dict[str, Any]:
        legacy = np.random.get_state()  # noqa: NPY002 - the global generator third-party code draws from
        _, keys, position, has_gauss, cached = cast(tuple[str, np.ndarray, int, int, float], legacy)
        version, internal, gauss = random.getstate()
        state: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "numpy": {
                "keys": torch.from_numpy(keys.astype(np.int64)),
                "pos": int(position),
                "has_gauss": int(has_gauss),
                "cached_gaussian": float(cached),
            },
            "python": {"version": version, "internal": list(internal), "gauss": gauss},
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        torch.set_rng_state(state_dict["torch"])
        saved = state_dict["numpy"]
        keys = saved["keys"].numpy().astype(np.uint32)
        np.random.set_state(("MT19937", keys, saved["pos"], saved["has_gauss"], saved["cached_gaussian"]))  # noqa: NPY002
        python = state_dict["python"]
        random.setstate((python["version"], tuple(python["internal"]), python["gauss"]))
        cuda = state_dict.get("cuda")
        if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        logger.debug("restored the random generators' states from the checkpoint")


class LastCheckpoint(Checkpoint):
    """Writes ``last.ckpt`` beside a ModelCheckpoint's files after every validation while fitting, so that a run
    resumes from its latest validated state.

    Lightning's own ``save_last`` (2.6) rewrites ``last.ckpt`` only when the monitored score enters the top k: a
    run whose validation loss stalls would, after a crash, resume from long ago. A run without validation gets
    ``last.ckpt`` when it ends at an epoch boundary; one stopped mid-epoch without validation keeps the previous
    one (saving then would record the unfinished epoch as finished, see `ValidateAtStepLimit`).

    It is a `Checkpoint`, so Lightning runs it after the other callbacks
    (EarlyStopping's counters are saved up to date).

    Args:
        model_checkpoint: the ModelCheckpoint whose directory (resolved by Lightning) receives ``last.ckpt``.
    """

    def __init__(self, model_checkpoint: ModelCheckpoint) -> None:
        self.model_checkpoint = model_checkpoint
        self._saved_step = -1

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        self._save(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._saved_step == trainer.global_step:
            return
        if trainer.fit_loop.epoch_loop.batch_progress.current.completed < trainer.num_training_batches:
            logger.warning(
                "training stopped mid-epoch at step %d without validating: last.ckpt keeps the state of step %s",
                trainer.global_step,
                self._saved_step if self._saved_step >= 0 else "(none)",
            )
            return
        self._save(trainer)

    def _save(self, trainer: L.Trainer) -> None:
        directory = self.model_checkpoint.dirpath
        if directory is None:
            raise ValueError("LastCheckpoint needs a ModelCheckpoint whose directory Lightning has resolved")
        # The full checkpoint (optimizer, loops, callbacks): it is what --resume continues from.
        trainer.save_checkpoint(os.path.join(directory, "last.ckpt"), weights_only=False)
        self._saved_step = trainer.global_step


class TrainingClock(L.Callback):
    """Logs ``time/train_minutes`` at every validation of a fit: the wall-clock minutes spent training so far,
    validation and checkpoint writing excluded, counted on across resumes (the count is in the checkpoint). It is
    the x-axis of quality against training time. The clock runs from a training batch's start to the next
    validation or the end of training, and stops only after the device has finished the queued work, so that GPU
    time spent on training is not booked to validation."""

    def __init__(self) -> None:
        self.minutes = 0.0
        self._since: float | None = None

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._since is None:
            self._since = time.perf_counter()

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop(pl_module)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            pl_module.log("time/train_minutes", self.minutes, on_step=False, on_epoch=True)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop(pl_module)

    def _stop(self, pl_module: L.LightningModule) -> None:
        if self._since is None:
            return
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        self.minutes += (time.perf_counter() - self._since) / 60
        self._since = None

    def elapsed_minutes(self) -> float:
        """The minutes of training so far, the running stretch included (not yet synchronised with the device)."""
        running = 0.0 if self._since is None else (time.perf_counter() - self._since) / 60
        return self.minutes + running

    def state_dict(self) -> dict[str, Any]:
        # A checkpoint written between two training steps (StepCheckpoint) falls inside a running stretch.
        return {"minutes": self.elapsed_minutes()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.minutes = float(state_dict["minutes"])


class ValidateAtStepLimit(L.Callback):
    """Makes a run that ``max_steps`` ends mid-epoch validate and checkpoint at its last step, inside the epoch.

    Lightning (2.6) otherwise ends the epoch early, counts it as finished (stepping epoch-based LR schedules) and
    only then writes ``last.ckpt``; a run resumed from that checkpoint skips the rest of the epoch. Asking the
    Trainer to stop at the last step instead makes it validate and checkpoint there, as a stop by ``max_time``
    does, so that resuming (with a larger ``max_steps``) goes on with the next batch of the same epoch.
    """

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if 0 < trainer.max_steps <= trainer.global_step:
            trainer.should_stop = True


def _to_rgb(frames: Tensor) -> Tensor:
    """(N, C, H, W) -> (N, 3, H, W): one channel repeated, three kept, otherwise the first channel."""
    if frames.shape[1] == 3:
        return frames
    return frames[:, :1].expand(-1, 3, -1, -1)


def prediction_grid(
    context: Tensor, target: Tensor, prediction: Tensor, *, padding: int = 1, pad_value: float = 1.0
) -> Tensor:
    """An image (3, H_grid, W_grid) in [0, 1]: for each sequence three rows, its context frames, its true future
    and the prediction, frames side by side, separated by ``padding`` pixels of ``pad_value``.

    Values are clipped to [0, 1] when they lie there already give or take, else min-max scaled over the grid.

    Args:
        context: (N, T_in, C, H, W).
        target: (N, T_out, C, H, W).
        prediction: (N, T_out, C, H, W).
    """
    if context.ndim != 5 or target.shape != prediction.shape or context.shape[2:] != target.shape[2:]:
        raise ValueError(
            f"context (N, T_in, C, H, W), target and prediction (N, T_out, C, H, W) must agree, got "
            f"{tuple(context.shape)}, {tuple(target.shape)} and {tuple(prediction.shape)}"
        )
    sequences = [context.detach().float().cpu(), target.detach().float().cpu(), prediction.detach().float().cpu()]
    low = min(float(s.min()) for s in sequences)
    high = max(float(s.max()) for s in sequences)
    if low < -0.05 or high > 1.05:
        sequences = [(s - low) / max(high - low, 1e-12) for s in sequences]
    sequences = [s.clamp(0.0, 1.0) for s in sequences]
    n, _, _, h, w = context.shape
    columns = max(context.shape[1], target.shape[1])
    rows = 3 * n
    grid = torch.full((3, rows * (h + padding) + padding, columns * (w + padding) + padding), pad_value)
    for i in range(n):
        for r, seq in enumerate(sequences):
            row = 3 * i + r
            for t, frame in enumerate(_to_rgb(seq[i])):
                y, x = padding + row * (h + padding), padding + t * (w + padding)
                grid[:, y : y + h, x : x + w] = frame
    return grid


class PredictionImageLogger(L.Callback):
    """Every ``every_n_epochs`` validation epochs, adds a grid of context | truth | prediction for the first
    ``num_sequences`` validation sequences to TensorBoard (tag ``val/predictions``).

    Works with any task whose ``validation_step`` returns a dict with "predictions" (B, T_out, C, H, W) for a
    batch with "context" and "target" ([`ForecastingTask`][convlstm.tasks.ForecastingTask]). Without a
    TensorBoardLogger, or for other batches, it does nothing (and says so in a debug message).

    Args:
        every_n_epochs: Validation epochs between two images.
        num_sequences: Sequences shown.
    """

    def __init__(self, every_n_epochs: int = 1, num_sequences: int = 4) -> None:
        check_int("every_n_epochs", every_n_epochs)
        check_int("num_sequences", num_sequences)
        self.every_n_epochs = every_n_epochs
        self.num_sequences = num_sequences
        self._sample: tuple[Tensor, Tensor, Tensor] | None = None
        self._epochs_seen = 0

    def _tensorboard(self, trainer: L.Trainer) -> TensorBoardLogger | None:
        for candidate in trainer.loggers:
            if isinstance(candidate, TensorBoardLogger):
                return candidate
        return None

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._sample = None

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.sanity_checking or batch_idx != 0 or dataloader_idx != 0 or not trainer.is_global_zero:
            return
        if not (isinstance(outputs, Mapping) and isinstance(batch, Mapping) and "predictions" in outputs):
            logger.debug("PredictionImageLogger: no 'predictions' in the validation outputs; no image")
            return
        if "context" not in batch or "target" not in batch:
            logger.debug("PredictionImageLogger: the batch has no 'context'/'target'; no image")
            return
        if outputs["predictions"].shape != batch["target"].shape:
            # PredNet predicts every frame of the sequence, not a target after a context: no such grid.
            logger.debug("PredictionImageLogger: predictions do not have the target's shape; no image")
            return
        n = self.num_sequences
        self._sample = (batch["context"][:n], batch["target"][:n], outputs["predictions"][:n])

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self._epochs_seen += 1
        if (self._epochs_seen - 1) % self.every_n_epochs != 0 or self._sample is None:
            return
        tensorboard = self._tensorboard(trainer)
        if tensorboard is None:
            logger.debug("PredictionImageLogger: no TensorBoardLogger attached; no image")
            return
        context, target, prediction = self._sample
        if context.ndim != 5:
            logger.debug("PredictionImageLogger: frames are not (B, T, C, H, W); no image")
            return
        grid = prediction_grid(context, target, prediction)
        tensorboard.experiment.add_image("val/predictions", grid, global_step=trainer.global_step)
        self._sample = None
