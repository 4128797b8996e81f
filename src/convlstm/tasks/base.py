"""What the training systems share: the model kept apart from the system and recorded in the hyperparameters,
rebuilding a task from a Lightning checkpoint without unpickling code, optimisation, and metric logging."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
import pickle
from collections.abc import Mapping
from typing import Any, Self

import lightning as L
import torch
from torch import Tensor, nn

from convlstm.models.base import PretrainedModel, model_from_config
from convlstm.tasks.optim import OptimizationConfig, as_optimization, configure_optimization, split_optimization

__all__ = ["TaskBase", "frames_of", "load_task", "model_identity", "read_checkpoint", "task_class"]

logger = logging.getLogger(__name__)


def model_identity(model: nn.Module) -> tuple[str | None, dict[str, Any] | None]:
    """(family, config as a dict) of a [`PretrainedModel`][convlstm.models.PretrainedModel], or (None, None) for any
    other module."""
    if isinstance(model, PretrainedModel) and dataclasses.is_dataclass(getattr(model, "config", None)):
        return model.family, dataclasses.asdict(model.config)
    return None, None


def frames_of(batch: Any, *, with_target: bool = True) -> Tensor:
    """The frames (B, T, C, H, W) of a batch: a tensor itself, or a dict's "context" followed by its "target"."""
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, Mapping) and "context" in batch:
        context = batch["context"]
        target = batch.get("target") if with_target else None
        if isinstance(target, Tensor) and target.ndim == context.ndim and target.shape[1] > 0:
            return torch.cat([context, target.to(context.dtype)], dim=1)
        return context
    raise ValueError(f"a batch must be a tensor or a dict with 'context', got {type(batch).__name__}")


class TaskBase(L.LightningModule):
    """A LightningModule around a separate model (``self.model``), with shared optimisation and checkpoint loading.

    Subclasses call ``self.save_hyperparameters(ignore=["model", "optimization"])`` in their ``__init__``, then
    [`record_optimization`][convlstm.tasks.TaskBase.record_optimization] if they train (it keeps their
    [`OptimizationConfig`][convlstm.tasks.OptimizationConfig]) and
    [`record_model`][convlstm.tasks.TaskBase.record_model], which adds ``model_family`` and ``model_config`` to the
    hyperparameters so that a checkpoint can rebuild the model
    ([`from_checkpoint`][convlstm.tasks.TaskBase.from_checkpoint]).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model

    def record_optimization(self, optimization: OptimizationConfig | Mapping[str, Any]) -> None:
        """Keeps ``optimization`` as ``self.optimization`` (what
        [`configure_optimizers`][convlstm.tasks.TaskBase.configure_optimizers] builds) and adds it to the
        hyperparameters as a dict (``hparams["optimization"]``: checkpoints hold plain values only). A mapping of its
        fields, as Lightning's own ``load_from_checkpoint`` passes it back, is taken too."""
        self.optimization = as_optimization(optimization)
        self.save_hyperparameters({**self.hparams, "optimization": self.optimization.to_dict()})

    def record_model(self) -> None:
        """Adds the task's class name (``task``) and the model's ``model_family`` and ``model_config`` to the
        hyperparameters (checkpoint and loggers)."""
        family, config = model_identity(self.model)
        extra = {"task": type(self).__name__, "model_family": family, "model_config": config}
        self.save_hyperparameters({**self.hparams, **extra})

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike[str],
        *,
        model: nn.Module | None = None,
        map_location: str | torch.device = "cpu",
    ) -> Self:
        """Rebuilds the task and its model from a Lightning checkpoint, read with ``torch.load(weights_only=True)``.

        Args:
            path: A ``.ckpt`` file written by the Trainer.
            model: The model to load the weights into; by default rebuilt from the recorded ``model_family`` and
                ``model_config`` (only possible for a [`PretrainedModel`][convlstm.models.PretrainedModel]).
            map_location: Where the tensors go.
        """
        return cls._from_checkpoint_dict(_read_checkpoint(path, map_location), path, model, map_location)

    @classmethod
    def _from_checkpoint_dict(
        cls,
        checkpoint: dict[str, Any],
        path: str | os.PathLike[str],
        model: nn.Module | None,
        map_location: str | torch.device,
    ) -> Self:
        hparams = dict(checkpoint.get("hyper_parameters") or {})
        if model is None:
            family, config = hparams.get("model_family"), hparams.get("model_config")
            if family is None or config is None:
                raise ValueError(
                    f"{path} records no model_family/model_config (the model was not a PretrainedModel): "
                    f"pass model= to from_checkpoint"
                )
            model = model_from_config(family, config)
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "model"}
        arguments = {k: v for k, v in _upgraded(hparams).items() if k in accepted}
        if "optimization" in arguments:
            arguments["optimization"] = as_optimization(arguments["optimization"])
        task = cls(model=model, **arguments)
        state = checkpoint.get("state_dict")
        if not isinstance(state, Mapping):
            raise ValueError(f"{path} holds no state_dict")
        task.load_state_dict(state)
        return task.to(map_location)

    # --- optimisation ----------------------------------------------------------------------------------------

    def configure_optimizers(self) -> Any:
        """The optimizer and schedule of the task's [`OptimizationConfig`][convlstm.tasks.OptimizationConfig]."""
        config: OptimizationConfig | None = getattr(self, "optimization", None)
        if config is None:
            raise ValueError(f"{type(self).__name__} trains nothing: it has no optimization (record_optimization)")
        estimated: float | None = None
        if config.lr_schedule in ("cosine", "onecycle") and config.total_steps is None:
            estimated = float(self.trainer.estimated_stepping_batches)
        return configure_optimization(self.model.parameters(), config, estimated_steps=estimated)

    # --- distributed evaluation ------------------------------------------------------------------------------

    def sum_across_processes(self, value: Tensor) -> Tensor:
        """The elementwise sum of ``value`` over all processes (itself when running in one process), on the CPU."""
        trainer = self._trainer
        if trainer is None or trainer.world_size <= 1:
            return value
        gathered = self.all_gather(value.to(self.device))  # (world_size, *value.shape)
        if not isinstance(gathered, Tensor):
            raise ValueError(f"all_gather of a tensor returned {type(gathered).__name__}")
        return gathered.sum(0).to(device="cpu", dtype=value.dtype)

    def log_scores(self, prefix: str, scores: Mapping[str, Tensor], *, per_lead_time: bool) -> None:
        """Logs ``"<prefix>/<name>"`` for every 0-d score and, with ``per_lead_time``, ``"<prefix>/<name>@t<k>"``
        (k from 1) for every ``"<name>_by_lead_time"`` vector; values are the same on every process."""
        for name, value in scores.items():
            if name.endswith("_by_lead_time"):
                if per_lead_time and value.ndim == 1:
                    base = name.removesuffix("_by_lead_time")
                    for k, v in enumerate(value.tolist(), start=1):
                        self.log(f"{prefix}/{base}@t{k}", float(v), sync_dist=False)
            elif value.ndim == 0:
                self.log(f"{prefix}/{name}", float(value), sync_dist=False)


def _upgraded(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """A checkpoint's hyperparameters in today's layout: those written before the tasks took an
    [`OptimizationConfig`][convlstm.tasks.OptimizationConfig] whole hold its fields flat (``lr``, ``lr_schedule``,
    ...), which become the ``optimization`` dict."""
    settings, rest = split_optimization(hparams)
    if settings and "optimization" not in hparams:
        rest["optimization"] = settings
    return rest


def read_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The dict of a Lightning checkpoint, read with ``torch.load(weights_only=True)`` (no pickled code runs).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is truncated, corrupt, not a checkpoint, or holds objects other than tensors and
            plain containers (the message names the file).
    """
    return _read_checkpoint(path, map_location)


def _read_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device) -> dict[str, Any]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        refused = next((line for line in lines if "Unsupported global" in line), None)
        if refused is not None:
            raise ValueError(
                f"{path} holds pickled objects other than tensors and plain containers, which could run code when "
                f"loaded: refused ({refused.split('. Please')[0]})"
            ) from None
        # torch's message says why on the line after "WeightsUnpickler error:" ("Unsupported operand 110", ...).
        marker = next((i for i, line in enumerate(lines) if line.startswith("WeightsUnpickler error")), None)
        detail = lines[marker + 1] if marker is not None and marker + 1 < len(lines) else lines[0] if lines else ""
        raise ValueError(
            f"{path} could not be read as a Lightning checkpoint (truncated, corrupt or not a torch file): {detail}"
        ) from None
    except Exception as err:  # RuntimeError, OSError, EOFError... for a truncated, corrupt or foreign file
        raise ValueError(
            f"{path} could not be read as a Lightning checkpoint (truncated, corrupt or not a torch file): {err}"
        ) from None
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path} is not a Lightning checkpoint (a dict), got {type(checkpoint).__name__}")
    return checkpoint


def load_task(path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu") -> TaskBase:
    """Rebuilds whichever task wrote the checkpoint, model included: the subclass of
    [`TaskBase`][convlstm.tasks.TaskBase] whose class name it records as ``task`` (this package's systems, or one of
    your own that is imported).

    Raises:
        ValueError: the checkpoint names no such class, or more than one class has that name.
    """
    checkpoint = _read_checkpoint(path, map_location)
    name = (checkpoint.get("hyper_parameters") or {}).get("task")
    return task_class(name, where=str(path))._from_checkpoint_dict(checkpoint, path, None, map_location)


def task_class(name: object, *, where: str = "a checkpoint") -> type[TaskBase]:
    """The subclass of [`TaskBase`][convlstm.tasks.TaskBase] called ``name`` (as checkpoints record it).

    Raises:
        ValueError: no such class, or several of that name (in different modules); the message lists the names.
    """
    import convlstm.tasks  # noqa: F401  # defines every training system of the package

    found: dict[str, list[type[TaskBase]]] = {}
    pending: list[type[TaskBase]] = [TaskBase]
    while pending:
        for subclass in pending.pop().__subclasses__():
            found.setdefault(subclass.__name__, []).append(subclass)
            pending.append(subclass)
    classes = list(dict.fromkeys(found.get(name, []) if isinstance(name, str) else []))
    if not classes:
        raise ValueError(f"{where} records task {name!r}; known tasks: {sorted(found)}")
    if len(classes) > 1:
        modules = sorted(f"{c.__module__}.{c.__qualname__}" for c in classes)
        raise ValueError(f"{where} records task {name!r}, which names several classes: {modules}")
    return classes[0]
