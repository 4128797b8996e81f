"""Optimizers and learning-rate schedules shared by the tasks (what ``configure_optimizers`` returns)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import torch
from torch import nn

from convlstm.utils.checks import check_choice

__all__ = ["LR_SCHEDULES", "OPTIMIZERS", "LRSchedule", "OptimizerName", "WarmupCosine", "configure_optimization"]

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


#: The constructor arguments of every task that `configure_optimization` takes.
OPTIMIZATION_ARGUMENTS = (
    "optimizer",
    "lr",
    "weight_decay",
    "lr_schedule",
    "warmup_steps",
    "total_steps",
    "min_lr_ratio",
    "lr_milestones",
    "lr_gamma",
)


def check_optimization(
    *,
    optimizer: str,
    lr: float,
    weight_decay: float,
    lr_schedule: str,
    warmup_steps: int,
    total_steps: int | None,
    min_lr_ratio: float,
    lr_milestones: Sequence[int],
    lr_gamma: float,
) -> None:
    """Validates the optimisation arguments of a task's constructor (so errors come before training starts)."""
    check_choice("optimizer", optimizer, OPTIMIZERS)
    check_choice("lr_schedule", lr_schedule, LR_SCHEDULES)
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps!r}")
    if total_steps is not None and total_steps < 1:
        raise ValueError(f"total_steps must be >= 1 or None, got {total_steps!r}")
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio must lie in [0, 1], got {min_lr_ratio!r}")
    if list(lr_milestones) != sorted(lr_milestones) or any(m < 1 for m in lr_milestones):
        raise ValueError(f"lr_milestones must be increasing epochs >= 1, got {tuple(lr_milestones)}")
    if not lr_gamma > 0:
        raise ValueError(f"lr_gamma must be > 0, got {lr_gamma!r}")


def configure_optimization(
    parameters: Iterable[nn.Parameter],
    *,
    optimizer: OptimizerName,
    lr: float,
    weight_decay: float,
    lr_schedule: LRSchedule,
    warmup_steps: int,
    total_steps: int | None,
    estimated_steps: float | None,
    min_lr_ratio: float,
    lr_milestones: Sequence[int],
    lr_gamma: float,
) -> dict[str, Any]:
    """Builds the optimizer and schedule in Lightning's ``configure_optimizers`` format.

    Args:
        parameters: The parameters to train.
        optimizer: ``"adam"`` (weight decay as an L2 term in the gradient) or ``"adamw"`` (decoupled decay).
        lr: Peak learning rate.
        weight_decay: Weight decay.
        lr_schedule: ``"constant"`` (after an optional linear warm-up), ``"cosine"`` (linear warm-up over
            ``warmup_steps``, cosine down to ``min_lr_ratio * lr`` at the last step), ``"onecycle"`` (torch's
            OneCycleLR with max_lr = lr, warm-up fraction ``warmup_steps / total`` or 0.3 without warm-up) or
            ``"multistep"`` (multiply by ``lr_gamma`` at each epoch in ``lr_milestones``, as PredNet's 1e-3 ->
            1e-4 after epoch 75).
        warmup_steps: Optimizer steps of linear warm-up ("constant", "cosine", "onecycle").
        total_steps: Optimizer steps of the whole run for "cosine" and "onecycle"; None uses ``estimated_steps``.
        estimated_steps: The trainer's ``estimated_stepping_batches`` (may be inf without max_steps/max_epochs).
        min_lr_ratio: Final learning rate of "cosine" as a fraction of ``lr``.
        lr_milestones: Epochs of "multistep".
        lr_gamma: Factor of "multistep".
    """
    params = [p for p in parameters if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    opt_class = torch.optim.AdamW if optimizer == "adamw" else torch.optim.Adam
    opt = opt_class(params, lr=lr, weight_decay=weight_decay)
    if lr_schedule == "constant" and warmup_steps == 0:
        return {"optimizer": opt}
    if lr_schedule == "multistep":
        scheduler: Any = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(lr_milestones), gamma=lr_gamma)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
    if lr_schedule == "constant":
        factor = WarmupCosine(warmup_steps=warmup_steps, total_steps=warmup_steps, min_ratio=1.0)
        scheduler = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
    steps = total_steps
    if steps is None:
        if estimated_steps is None or not math.isfinite(estimated_steps):
            raise ValueError(
                f"lr_schedule={lr_schedule!r} needs the run's length: pass total_steps, or give the Trainer "
                f"max_steps or max_epochs (estimated steps: {estimated_steps})"
            )
        steps = int(estimated_steps)
    steps = max(steps, 1)
    if lr_schedule == "cosine":
        factor = WarmupCosine(warmup_steps=warmup_steps, total_steps=steps, min_ratio=min_lr_ratio)
        scheduler = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    else:
        pct_start = min(warmup_steps / steps, 1.0) if warmup_steps else 0.3
        # OneCycleLR steps once per optimizer step and refuses step total_steps + 1: leave one step of slack.
        scheduler = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps + 1, pct_start=pct_start)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
