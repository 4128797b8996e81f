"""Scheduled sampling (Bengio et al. 2015) as OpenSTL and PredRNN run it: a probability of feeding the true frame
instead of the model's own prediction, decaying linearly with the training step, drawn per sequence and step.

OpenSTL's ConvLSTM-S recipe starts at 1.0 and subtracts 2e-5 per step until 0 at step 50,000:
``ScheduledSampling("linear", start=1.0, end=0.0, end_step=50_000)``.

PredRNN-V2's reverse scheduled sampling (Wang et al. 2022, as OpenSTL runs it) also draws a mask for the context:
early in training the model reads its own predictions for half the context frames too (it has to learn long-term
dynamics from the start), later it reads the true context; meanwhile the forecast's teacher forcing falls from 0.5
to 0. ``ScheduledSampling("reverse", reverse_start_step=25_000, reverse_end_step=50_000, reverse_decay=5_000)`` is
OpenSTL's Moving MNIST setting (r_sampling_step_1, r_sampling_step_2, r_exp_alpha).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch
from torch import Tensor

from convlstm.utils.checks import check_choice, check_float, check_int, check_positive

__all__ = ["SAMPLING_KINDS", "SamplingKind", "ScheduledSampling"]

SamplingKind = Literal["linear", "none", "teacher_forcing", "reverse"]
SAMPLING_KINDS: tuple[str, ...] = ("linear", "none", "teacher_forcing", "reverse")


@dataclasses.dataclass(frozen=True)
class ScheduledSampling:
    """The probability of teacher forcing per training step, and the Bernoulli masks drawn from it.

    Args:
        kind: ``"linear"``: probability ``start`` at step 0 moving linearly to ``end`` at ``end_step``, then
            ``end``; ``"none"``: the model always gets its own predictions back
            ([`mask`][convlstm.tasks.ScheduledSampling.mask] returns None); ``"teacher_forcing"``: always the true
            frames; ``"reverse"``: PredRNN-V2's reverse scheduled sampling, with a context mask too
            ([`context_probability`][convlstm.tasks.ScheduledSampling.context_probability],
            [`context_mask`][convlstm.tasks.ScheduledSampling.context_mask]).
        start: Probability of feeding the true frame at step 0 (linear only).
        end: Probability from ``end_step`` on (linear only).
        end_step: Training (optimizer) step at which ``end`` is reached (linear only); 0 gives ``end`` throughout.
        reverse_start_step: (reverse) until this step both probabilities are 0.5 (OpenSTL's r_sampling_step_1).
        reverse_end_step: (reverse) from this step the context is true and the forecast free-running
            (r_sampling_step_2); in between the forecast's probability falls linearly from 0.5 to 0 and the
            context's rises as 1 - 0.5 exp(-(step - reverse_start_step) / reverse_decay).
        reverse_decay: (reverse) the steps over which the context's probability closes 1 - 1/e of its gap to 1
            (r_exp_alpha).

    Examples:
        >>> schedule = ScheduledSampling("linear", start=1.0, end=0.0, end_step=50_000)
        >>> schedule.probability(25_000)
        0.5
        >>> mask = schedule.mask(25_000, batch_size=16, horizon=10)  # (16, 10) bool, True = feed the truth
    """

    kind: SamplingKind = "linear"
    start: float = 1.0
    end: float = 0.0
    end_step: int = 50_000
    reverse_start_step: int = 25_000
    reverse_end_step: int = 50_000
    reverse_decay: float = 5_000.0

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, SAMPLING_KINDS)
        check_float("start", self.start, 0.0, 1.0)  # probabilities of feeding the truth
        check_float("end", self.end, 0.0, 1.0)
        check_int("end_step", self.end_step, minimum=0)
        check_int("reverse_start_step", self.reverse_start_step, minimum=0)
        check_int("reverse_end_step", self.reverse_end_step, minimum=0)
        if self.reverse_end_step < self.reverse_start_step:
            raise ValueError(
                f"reverse_end_step must be >= reverse_start_step={self.reverse_start_step}, "
                f"got {self.reverse_end_step!r}"
            )
        check_positive("reverse_decay", self.reverse_decay)  # steps

    def probability(self, step: int) -> float:
        """The probability of feeding the true frame at training step ``step`` (>= 0)."""
        check_int("step", step, minimum=0)
        if self.kind == "none":
            return 0.0
        if self.kind == "teacher_forcing":
            return 1.0
        if self.kind == "reverse":
            first, last = self.reverse_start_step, self.reverse_end_step
            if step < first:
                return 0.5
            return 0.0 if step >= last else 0.5 - 0.5 * (step - first) / (last - first)
        if step >= self.end_step:
            return float(self.end)
        return float(self.start + (self.end - self.start) * step / self.end_step)

    def context_probability(self, step: int) -> float:
        """The probability of feeding a true context frame (after the first) at ``step``: 1.0 but for "reverse"."""
        check_int("step", step, minimum=0)
        if self.kind != "reverse":
            return 1.0
        if step < self.reverse_start_step:
            return 0.5
        if step >= self.reverse_end_step:
            return 1.0
        return 1.0 - 0.5 * math.exp(-(step - self.reverse_start_step) / self.reverse_decay)

    def context_mask(
        self,
        step: int,
        batch_size: int,
        context_frames: int,
        *,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor | None:
        """A (batch_size, context_frames - 1) bool mask, True where context frame k + 1 is fed as it is and False
        where the model's prediction of it replaces it; None unless "reverse" (the context is always true then).
        Each entry is a Bernoulli draw with
        [`context_probability`][convlstm.tasks.ScheduledSampling.context_probability] of ``step``."""
        check_int("batch_size", batch_size)
        check_int("context_frames", context_frames)
        if self.kind != "reverse":
            return None
        p = self.context_probability(step)
        if p >= 1.0:
            return torch.ones(batch_size, context_frames - 1, dtype=torch.bool, device=device)
        return torch.rand(batch_size, context_frames - 1, device=device, generator=generator) < p

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

        Each entry is an independent Bernoulli draw with [`probability`][convlstm.tasks.ScheduledSampling.probability]
        of ``step``; the last column is drawn too but no model uses it (there is no step after the last prediction).
        """
        check_int("batch_size", batch_size)
        check_int("horizon", horizon)
        if self.kind == "none":
            return None
        p = self.probability(step)
        if p >= 1.0:
            return torch.ones(batch_size, horizon, dtype=torch.bool, device=device)
        return torch.rand(batch_size, horizon, device=device, generator=generator) < p
