"""Scheduled sampling (Bengio et al. 2015) as OpenSTL and PredRNN run it: a probability of feeding the true frame
instead of the model's own prediction, decaying linearly with the training step, drawn per sequence and step.

OpenSTL's ConvLSTM-S recipe starts at 1.0 and subtracts 2e-5 per step until 0 at step 50,000:
``ScheduledSampling("linear", start=1.0, end=0.0, end_step=50_000)``.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
from torch import Tensor

__all__ = ["SAMPLING_KINDS", "SamplingKind", "ScheduledSampling"]

SamplingKind = Literal["linear", "none", "teacher_forcing"]
SAMPLING_KINDS: tuple[str, ...] = ("linear", "none", "teacher_forcing")


@dataclasses.dataclass(frozen=True)
class ScheduledSampling:
    """The probability of teacher forcing per training step, and the Bernoulli masks drawn from it.

    Args:
        kind: ``"linear"``: probability ``start`` at step 0 moving linearly to ``end`` at ``end_step``, then
            ``end``; ``"none"``: the model always gets its own predictions back (:meth:`mask` returns None);
            ``"teacher_forcing"``: always the true frames.
        start: Probability of feeding the true frame at step 0 (linear only).
        end: Probability from ``end_step`` on (linear only).
        end_step: Training (optimizer) step at which ``end`` is reached (linear only); 0 gives ``end`` throughout.

    Example:
        >>> schedule = ScheduledSampling("linear", start=1.0, end=0.0, end_step=50_000)
        >>> schedule.probability(25_000)
        0.5
        >>> mask = schedule.mask(25_000, batch_size=16, horizon=10)  # (16, 10) bool, True = feed the truth
    """

    kind: SamplingKind = "linear"
    start: float = 1.0
    end: float = 0.0
    end_step: int = 50_000

    def __post_init__(self) -> None:
        if self.kind not in SAMPLING_KINDS:
            raise ValueError(f"kind must be one of {SAMPLING_KINDS}, got {self.kind!r}")
        for name in ("start", "end"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
        if isinstance(self.end_step, bool) or not isinstance(self.end_step, int) or self.end_step < 0:
            raise ValueError(f"end_step must be an int >= 0, got {self.end_step!r}")

    def probability(self, step: int) -> float:
        """The probability of feeding the true frame at training step ``step`` (>= 0)."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        if self.kind == "none":
            return 0.0
        if self.kind == "teacher_forcing":
            return 1.0
        if step >= self.end_step:
            return float(self.end)
        return float(self.start + (self.end - self.start) * step / self.end_step)

    def mask(
        self,
        step: int,
        batch_size: int,
        horizon: int,
        *,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor | None:
        """A (batch_size, horizon) bool mask, True where step k + 1 is fed the true frame k; None for "none".

        Each entry is an independent Bernoulli draw with :meth:`probability` of ``step``; the last column is drawn
        too but no model uses it (there is no step after the last prediction).
        """
        if batch_size < 1 or horizon < 1:
            raise ValueError(f"batch_size and horizon must be >= 1, got {batch_size} and {horizon}")
        if self.kind == "none":
            return None
        p = self.probability(step)
        if p >= 1.0:
            return torch.ones(batch_size, horizon, dtype=torch.bool, device=device)
        return torch.rand(batch_size, horizon, device=device, generator=generator) < p
