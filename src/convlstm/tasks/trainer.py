"""``make_trainer``: a Lightning Trainer set up the way every convlstm run wants it, from a ``TrainerConfig``."""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, LearningRateMonitor, ModelCheckpoint, ProgressBar
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.strategies import DDPStrategy

from convlstm.accel.precision import resolve_precision
from convlstm.tasks.callbacks import (
    AtomicCheckpointIO,
    LastCheckpoint,
    NonFiniteLossGuard,
    PredictionImageLogger,
    RandomStateCheckpoint,
    TrainingClock,
    ValidateAtStepLimit,
)
from convlstm.tasks.compiled_gates import CompiledGates
from convlstm.tasks.progress import make_progress_bar
from convlstm.tasks.step_checkpoint import StepCheckpoint
from convlstm.utils.checks import check_choice, check_int, check_positive

__all__ = ["TRAINER_FIELDS", "TrainerConfig", "default_precision", "make_trainer"]

logger = logging.getLogger(__name__)


def default_precision(accelerator: str) -> str:
    """The precision of a run that names none: what "auto" picks for ``accelerator``
    ([`convlstm.accel.choose_precision`][convlstm.accel.choose_precision]), logged with its reason in one line.

    That is "bf16-mixed" (bfloat16 autocast, the recurrent cell state in float32) on a CUDA GPU that computes
    bfloat16 and on a CPU on which torch multiplies bfloat16 in hardware (AMX or avx512_bf16,
    [`convlstm.accel.cpu_bf16_feature`][convlstm.accel.cpu_bf16_feature]), else "32-true". On such CPUs the
    convolutional models train faster per step and reach the same loss within run-to-run noise
    (benchmarks/cpu_precision.py measures both); pass ``precision="32-true"`` (``trainer.precision=32-true`` in a
    recipe) to train in float32 anyway."""
    return resolve_precision("auto", accelerator)


def _device_count(devices: int | str | Sequence[int]) -> int:
    if isinstance(devices, int):
        return max(torch.cuda.device_count(), 1) if devices == -1 else devices
    if isinstance(devices, str):
        if devices.strip() in ("-1", "auto"):
            return max(torch.cuda.device_count(), 1)
        return len([d for d in devices.split(",") if d.strip()]) if "," in devices else int(devices)
    return len(devices)


def _minutes(max_time: str | datetime.timedelta | dict[str, int] | None) -> float | None:
    """``max_time`` as Lightning takes it ("DD:HH:MM:SS", a timedelta or timedelta's keywords), in minutes."""
    if max_time is None:
        return None
    if isinstance(max_time, str):
        days, hours, minutes, seconds = (int(part) for part in max_time.strip().split(":"))
        max_time = datetime.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    elif isinstance(max_time, dict):
        max_time = datetime.timedelta(**max_time)
    return max_time.total_seconds() / 60


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
    """How [`make_trainer`][convlstm.tasks.make_trainer] sets up a Lightning Trainer: where runs go, seeding, devices,
    precision, limits, clipping, checkpoints, early stopping, the non-finite guard and logging.

    Checkpoints (``<root_dir>/<name>/version_<k>/checkpoints/``, written atomically) keep the ``save_top_k`` best by
    ``monitor`` (the validation loss, never a test score) and ``last.ckpt``; EarlyStopping watches the same key
    and also stops when it turns NaN. TensorBoard and CSV logs share the run directory.

    Attributes:
        root_dir: Directory of all runs.
        name: Experiment name (a subdirectory of ``root_dir``).
        version: Run version (default: the next free ``version_<k>``).
        seed: Seeds python, numpy and torch (and the DataLoader workers) when the Trainer is made, with
            ``L.seed_everything``; build the model after that for a reproducible initialisation. None leaves the
            generators alone.
        accelerator: "auto", "cpu", "gpu", ...
        devices: Devices per node; more than one (or more than one node) trains with DDP.
        num_nodes: Nodes.
        precision: A Lightning precision, or "auto": bfloat16 where the hardware computes it natively, else
            float32 ([`convlstm.accel.choose_precision`][convlstm.accel.choose_precision], which logs why). Default
            (None): "auto" (`default_precision`); "32-true" trains in float32 anywhere.
        compile_gates: Run the ConvLSTM cells' gate arithmetic through torch.compile during the fit
            ([`CompiledGates`][convlstm.tasks.CompiledGates]). Default (None): "auto", on for CPU training where
            inductor builds it (logged with the reason in one line), else off; True or False forces it.
        max_epochs: Stop after this many epochs.
        max_steps: Stop after this many optimizer steps (-1: no limit).
        max_time: Stop after this wall time ("DD:HH:MM:SS", a timedelta or a dict), checkpointing first.
        gradient_clip_val: Clip gradients at this norm (or value), > 0; None for no clipping (and for a task that
            clips itself, as [`TBPTTForecastingTask`][convlstm.tasks.TBPTTForecastingTask]).
        gradient_clip_algorithm: "norm" or "value".
        accumulate_grad_batches: Batches per optimizer step.
        monitor: Logged key that selects checkpoints and stops early.
        monitor_mode: "min" or "max".
        save_top_k: Best checkpoints kept (-1: all).
        save_last: Also keep ``last.ckpt`` (to resume from).
        checkpoints: Write checkpoints at all (into ``<root_dir>/checkpoints`` when there are no loggers).
        checkpoint_dir: Where checkpoints go (default: the run's log directory), e.g. one place shared by the log
            versions of a resumed run.
        checkpoint_every_minutes: With ``save_last``, also write ``last.ckpt`` between two training steps every this
            many minutes (None: only after validation), and on Ctrl-C or SIGTERM, after which the fit ends with
            [`TrainingInterrupted`][convlstm.experiment.TrainingInterrupted] (`StepCheckpoint`).
        early_stopping_patience: Validation checks without improvement before stopping; None for no early stop.
        nonfinite: [`NonFiniteLossGuard`][convlstm.tasks.NonFiniteLossGuard] action, or "off". Checkpoints also
            carry the random generators' states (`RandomStateCheckpoint`), so a resumed run continues as if it had
            never stopped.
        image_every_n_epochs: [`PredictionImageLogger`][convlstm.tasks.PredictionImageLogger] period; None for no
            images.
        loggers: TensorBoard + CSV loggers (False: none); they also get the learning rate at every step and the
            minutes of training so far at every validation ("time/train_minutes", `TrainingClock`).
        enable_progress_bar: Show the progress bar.
        deterministic: Ask torch for deterministic algorithms.
        lightning: Any other ``L.Trainer`` argument (``limit_train_batches``, ``val_check_interval``,
            ``log_every_n_steps``, ``strategy``, ``plugins``, ...).

    Raises:
        ValueError: a setting out of its range, naming it, what was expected and what came.
    """

    root_dir: str | os.PathLike[str] = "runs"
    name: str = "convlstm"
    version: int | str | None = None
    seed: int | None = 0
    accelerator: str = "auto"
    devices: int | str | Sequence[int] = 1
    num_nodes: int = 1
    precision: str | None = None
    compile_gates: bool | None = None
    max_epochs: int | None = None
    max_steps: int = -1
    max_time: str | datetime.timedelta | dict[str, int] | None = None
    gradient_clip_val: float | None = 1.0
    gradient_clip_algorithm: Literal["norm", "value"] = "norm"
    accumulate_grad_batches: int = 1
    monitor: str = "val/loss"
    monitor_mode: Literal["min", "max"] = "min"
    save_top_k: int = 1
    save_last: bool = True
    checkpoints: bool = True
    checkpoint_dir: str | os.PathLike[str] | None = None
    checkpoint_every_minutes: float | None = 10.0
    early_stopping_patience: int | None = 10
    nonfinite: Literal["skip", "stop", "off"] = "skip"
    image_every_n_epochs: int | None = 1
    loggers: bool = True
    enable_progress_bar: bool = True
    deterministic: bool = False
    lightning: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.gradient_clip_val is not None:
            # A negative norm bound would flip every clipped gradient; zero would erase it.
            check_positive("gradient_clip_val", self.gradient_clip_val)
        check_choice("gradient_clip_algorithm", self.gradient_clip_algorithm, ("norm", "value"))
        check_int("accumulate_grad_batches", self.accumulate_grad_batches)
        check_choice("monitor_mode", self.monitor_mode, ("min", "max"))
        check_int("save_top_k", self.save_top_k, minimum=-1)
        if self.checkpoint_every_minutes is not None:
            check_positive("checkpoint_every_minutes", self.checkpoint_every_minutes)
        if self.early_stopping_patience is not None:
            check_int("early_stopping_patience", self.early_stopping_patience, minimum=0)
        check_choice("nonfinite", self.nonfinite, ("skip", "stop", "off"))
        if self.image_every_n_epochs is not None:
            check_int("image_every_n_epochs", self.image_every_n_epochs)
        if not isinstance(self.lightning, Mapping):
            raise ValueError(f"lightning must be a mapping of L.Trainer arguments, got {self.lightning!r}")
        clash = sorted(set(self.lightning) & set(TRAINER_FIELDS))
        if clash:
            raise ValueError(f"lightning: {clash} are settings of TrainerConfig itself; set them there")


#: The settings of `TrainerConfig`, besides ``lightning`` (what a keyword of `make_trainer` sets).
TRAINER_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TrainerConfig) if f.name != "lightning")


def make_trainer(
    config: TrainerConfig | None = None, /, *, callbacks: Sequence[Callback] = (), **settings: Any
) -> L.Trainer:
    """A Trainer with seeding, precision, loggers, checkpoint selection, early stopping, clipping and DDP, as
    ``config`` ([`TrainerConfig`][convlstm.tasks.TrainerConfig]) says.

    With more than one device (or node) the strategy is DDP: Lightning launches the processes by re-running the
    script, so build the Trainer under ``if __name__ == "__main__":``; CPU processes talk over gloo, GPUs over NCCL.

    Args:
        config: The settings (default: ``TrainerConfig()``).
        callbacks: More callbacks, besides those ``config`` asks for.
        **settings: A shorthand: each keyword that names a field of `TrainerConfig` replaces that field of
            ``config`` (``make_trainer(max_epochs=3)`` is ``make_trainer(TrainerConfig(max_epochs=3))``); any
            other keyword (and what ``lightning=`` holds) is an ``L.Trainer`` argument, added to
            ``config.lightning``.

    Examples:
        >>> trainer = make_trainer(TrainerConfig(name="mnist", max_epochs=200, gradient_clip_val=1.0))
        >>> trainer.fit(task, datamodule=data)
        >>> quick = make_trainer(max_steps=20, loggers=False, limit_val_batches=2)  # the keyword shorthand
    """
    config = TrainerConfig() if config is None else config
    if not isinstance(config, TrainerConfig):
        raise ValueError(f"config must be a TrainerConfig, got {type(config).__name__} {config!r}")
    if settings:
        given = dict(settings.pop("lightning", None) or {})  # lightning= itself: added to config.lightning too
        own = {k: v for k, v in settings.items() if k in TRAINER_FIELDS}
        lightning = {**config.lightning, **given, **{k: v for k, v in settings.items() if k not in TRAINER_FIELDS}}
        config = dataclasses.replace(config, **own, lightning=lightning)
    return _build_trainer(config, callbacks)


def _build_trainer(config: TrainerConfig, callbacks: Sequence[Callback]) -> L.Trainer:
    c = config
    trainer_kwargs = dict(c.lightning)
    if c.seed is not None:
        L.seed_everything(c.seed, workers=True)
    given = c.precision
    precision = default_precision(c.accelerator) if given is None else resolve_precision(given, c.accelerator)
    all_callbacks: list[Callback] = [*callbacks, CompiledGates(c.compile_gates)]
    run_loggers: list[Logger] = []
    if c.loggers:
        # CSV first: it creates the run directory that TensorBoard then shares (the other order makes the CSV
        # logger warn about a non-empty directory).
        csv = CSVLogger(save_dir=os.fspath(c.root_dir), name=c.name, version=c.version)
        tensorboard = TensorBoardLogger(
            save_dir=os.fspath(c.root_dir), name=c.name, version=csv.version, default_hp_metric=False
        )
        run_loggers = [csv, tensorboard]
        all_callbacks.append(LearningRateMonitor(logging_interval="step"))
        all_callbacks.append(TrainingClock())
        if c.image_every_n_epochs is not None:
            all_callbacks.append(PredictionImageLogger(every_n_epochs=c.image_every_n_epochs))
    if c.checkpoints:
        best = ModelCheckpoint(
            dirpath=None if c.checkpoint_dir is None else os.fspath(c.checkpoint_dir),
            monitor=c.monitor,
            mode=c.monitor_mode,
            save_top_k=c.save_top_k,
            save_last=False,  # LastCheckpoint writes last.ckpt after every validation, not only after a new best
            # "val/loss" would make a subdirectory: name the file "epoch=3-step=120-val_loss=0.0123.ckpt".
            filename="epoch={epoch}-step={step}-" + c.monitor.replace("/", "_") + "={" + c.monitor + ":.4g}",
            auto_insert_metric_name=False,
            save_on_train_epoch_end=False,
        )
        all_callbacks.append(best)
        if c.save_last:
            all_callbacks.append(LastCheckpoint(best))
            all_callbacks.append(StepCheckpoint(best, every_minutes=c.checkpoint_every_minutes))
        all_callbacks.append(ValidateAtStepLimit())
    if c.early_stopping_patience is not None:
        all_callbacks.append(
            # Checked after validation only: at the end of a training epoch resumed from a checkpoint written after
            # validation, the validation metrics are not there yet (Lightning would raise).
            EarlyStopping(
                monitor=c.monitor,
                mode=c.monitor_mode,
                patience=c.early_stopping_patience,
                check_finite=True,
                check_on_train_epoch_end=False,
            )
        )
    if c.nonfinite != "off":
        all_callbacks.append(NonFiniteLossGuard(action=c.nonfinite))
    # The generators' states go into every checkpoint, so that a resumed run draws what an unbroken one would.
    all_callbacks.append(RandomStateCheckpoint())
    if "strategy" not in trainer_kwargs and (_device_count(c.devices) > 1 or c.num_nodes > 1):
        trainer_kwargs["strategy"] = DDPStrategy()
    if c.enable_progress_bar and not any(isinstance(cb, ProgressBar) for cb in all_callbacks):
        all_callbacks.append(make_progress_bar(_minutes(c.max_time)))
    plugins = list(trainer_kwargs.pop("plugins", None) or [])
    plugins.append(AtomicCheckpointIO())
    return L.Trainer(
        default_root_dir=os.fspath(c.root_dir),
        accelerator=c.accelerator,
        devices=c.devices,  # type: ignore[arg-type]
        num_nodes=c.num_nodes,
        precision=precision,  # type: ignore[arg-type]
        max_epochs=c.max_epochs,
        max_steps=c.max_steps,
        max_time=c.max_time,
        gradient_clip_val=c.gradient_clip_val,
        gradient_clip_algorithm=c.gradient_clip_algorithm,
        accumulate_grad_batches=c.accumulate_grad_batches,
        logger=run_loggers if run_loggers else False,
        enable_checkpointing=any(isinstance(cb, ModelCheckpoint) for cb in all_callbacks),
        enable_progress_bar=c.enable_progress_bar,
        deterministic=c.deterministic,
        callbacks=all_callbacks,
        plugins=plugins,
        **trainer_kwargs,
    )
