"""Optimizers and learning-rate schedules shared by the tasks (what ``configure_optimizers`` returns)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import nn

from convlstm.utils.checks import check_choice, check_float, check_int, check_positive

__all__ = [
    "LR_SCHEDULES",
    "OPTIMIZATION_FIELDS",
    "OPTIMIZERS",
    "LRSchedule",
    "OptimizationConfig",
    "OptimizerName",
    "WarmupCosine",
    "as_optimization",
    "configure_optimization",
    "split_optimization",
]

OptimizerName = Literal["adam", "adamw"]
LRSchedule = Literal["constant", "cosine", "onecycle", "multistep"]
OPTIMIZERS: tuple[str, ...] = ("adam", "adamw")
LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine", "onecycle", "multistep")


@dataclasses.dataclass
class WarmupCosine:
    """Learning-rate factor of step s: linear warm-up from 1 / warmup_steps to 1, then a cosine down to
    ``min_ratio`` at ``total_steps`` (and ``min_ratio`` after). A plain object, so LambdaLR saves its fields."""

    warmup_steps: int
    total_steps: int
    min_ratio: float = 0.0

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = min((step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1), 1.0)
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclasses.dataclass(frozen=True)
class OptimizationConfig:
    """How a training system optimises: the optimizer, its learning rate and the schedule. Every task takes one
    whole (``optimization=``); a recipe gives its fields flat among ``task.args`` (``task.args.lr: 1e-3``).

    Attributes:
        optimizer: ``"adam"`` (weight decay as an L2 term in the gradient; as the ConvLSTM papers and OpenSTL) or
            ``"adamw"`` (decoupled decay).
        lr: Peak learning rate; 5e-4 by default, OpenSTL's ConvLSTM value (segmentation and PredNet default to
            1e-3; lower it with larger models or bf16).
        weight_decay: Weight decay (L2 for Adam, decoupled for AdamW), >= 0.
        lr_schedule: ``"constant"`` (after an optional linear warm-up), ``"cosine"`` (linear warm-up over
            ``warmup_steps``, cosine down to ``min_lr_ratio * lr`` at the last step), ``"onecycle"`` (torch's
            OneCycleLR with max_lr = lr, warm-up fraction ``warmup_steps / total`` or 0.3 without warm-up) or
            ``"multistep"`` (multiply by ``lr_gamma`` at each epoch in ``lr_milestones``, as PredNet's 1e-3 ->
            1e-4 after epoch 75).
        warmup_steps: Optimizer steps of linear warm-up ("constant", "cosine", "onecycle").
        total_steps: Optimizer steps of the whole run for "cosine" and "onecycle"; None: the Trainer's estimate.
        min_lr_ratio: Final learning rate of "cosine" as a fraction of ``lr``, in [0, 1].
        lr_milestones: Increasing epochs (>= 1) at which "multistep" multiplies the learning rate by ``lr_gamma``.
        lr_gamma: Factor of "multistep", > 0.

    Raises:
        ValueError: a field out of its range, naming the field, what was expected and what came.

    Examples:
        >>> ForecastingTask(model, optimization=OptimizationConfig(lr=1e-3, lr_schedule="cosine", warmup_steps=500))
    """

    optimizer: OptimizerName = "adam"
    lr: float = 5e-4
    weight_decay: float = 0.0
    lr_schedule: LRSchedule = "constant"
    warmup_steps: int = 0
    total_steps: int | None = None
    min_lr_ratio: float = 0.0
    lr_milestones: tuple[int, ...] = ()
    lr_gamma: float = 0.1

    def __post_init__(self) -> None:
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        check_positive("lr", self.lr)
        check_float("weight_decay", self.weight_decay, 0.0, math.inf)
        check_int("warmup_steps", self.warmup_steps, minimum=0)
        if self.total_steps is not None:
            check_int("total_steps", self.total_steps)
        check_float("min_lr_ratio", self.min_lr_ratio, 0.0, 1.0)
        milestones = self.lr_milestones
        if isinstance(milestones, str | bytes) or not isinstance(milestones, Sequence):
            raise ValueError(f"lr_milestones must be a sequence of increasing epochs >= 1, got {milestones!r}")
        for index, epoch in enumerate(milestones):
            check_int(f"lr_milestones[{index}]", epoch)
        if list(milestones) != sorted(milestones):
            raise ValueError(f"lr_milestones must be increasing epochs >= 1, got {tuple(milestones)}")
        object.__setattr__(self, "lr_milestones", tuple(int(m) for m in milestones))  # a YAML list, kept hashable
        check_positive("lr_gamma", self.lr_gamma)

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain values (the milestones a list), as a checkpoint's hyperparameters store them."""
        return {**dataclasses.asdict(self), "lr_milestones": list(self.lr_milestones)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, where: str = "optimization") -> OptimizationConfig:
        """The config of ``values`` (as `to_dict` gives them, or a recipe's flat ``task.args``); a key that is not a
        field is a ValueError that names it and ``where`` it came from."""
        unknown = sorted(set(values) - set(OPTIMIZATION_FIELDS))
        if unknown:
            raise ValueError(
                f"{where}: {unknown} are not optimisation settings; expected some of {list(OPTIMIZATION_FIELDS)}"
            )
        return cls(**values)


#: The fields of `OptimizationConfig`, in order: what a recipe's ``task.args`` and old checkpoints give flat.
OPTIMIZATION_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(OptimizationConfig))


def as_optimization(value: OptimizationConfig | Mapping[str, Any]) -> OptimizationConfig:
    """``value`` if it is an `OptimizationConfig`; a mapping of its fields (a checkpoint's hyperparameters, which
    Lightning's own ``load_from_checkpoint`` passes back as they are) becomes one."""
    if isinstance(value, OptimizationConfig):
        return value
    if isinstance(value, Mapping):
        return OptimizationConfig.from_dict(value)
    raise ValueError(f"optimization must be an OptimizationConfig, got {type(value).__name__} {value!r}")


def split_optimization(arguments: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the optimisation settings, the rest) of flat task arguments: a recipe's ``task.args``, or the
    hyperparameters of a checkpoint written before tasks took an `OptimizationConfig` whole."""
    settings = {k: v for k, v in arguments.items() if k in OPTIMIZATION_FIELDS}
    return settings, {k: v for k, v in arguments.items() if k not in OPTIMIZATION_FIELDS}


def configure_optimization(
    parameters: Iterable[nn.Parameter], config: OptimizationConfig, *, estimated_steps: float | None
) -> dict[str, Any]:
    """Builds the optimizer and schedule of ``config`` in Lightning's ``configure_optimizers`` format.

    Args:
        parameters: The parameters to train.
        config: The optimizer, learning rate and schedule.
        estimated_steps: The trainer's ``estimated_stepping_batches`` (may be inf without max_steps/max_epochs):
            the length of a "cosine" or "onecycle" schedule without ``total_steps``.
    """
    params = [p for p in parameters if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    lr, lr_schedule, warmup_steps = config.lr, config.lr_schedule, config.warmup_steps
    opt_class = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    opt = opt_class(params, lr=lr, weight_decay=config.weight_decay)
    if lr_schedule == "constant" and warmup_steps == 0:
        return {"optimizer": opt}
    if lr_schedule == "multistep":
        scheduler: Any = torch.optim.lr_scheduler.MultiStepLR(
            opt, milestones=list(config.lr_milestones), gamma=config.lr_gamma
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
    if lr_schedule == "constant":
        factor = WarmupCosine(warmup_steps=warmup_steps, total_steps=warmup_steps, min_ratio=1.0)
        scheduler = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
    steps = config.total_steps
    if steps is None:
        if estimated_steps is None or not math.isfinite(estimated_steps):
            raise ValueError(
                f"lr_schedule={lr_schedule!r} needs the run's length: pass total_steps, or give the Trainer "
                f"max_steps or max_epochs (estimated steps: {estimated_steps})"
            )
        steps = int(estimated_steps)
    steps = max(steps, 1)
    if lr_schedule == "cosine":
        factor = WarmupCosine(warmup_steps=warmup_steps, total_steps=steps, min_ratio=config.min_lr_ratio)
        scheduler = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    else:
        pct_start = min(warmup_steps / steps, 1.0) if warmup_steps else 0.3
        # OneCycleLR steps once per optimizer step and refuses step total_steps + 1: leave one step of slack.
        scheduler = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps + 1, pct_start=pct_start)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
