"""Persistence ("last frame"): the forecast that every learned model must beat."""

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from convlstm.models.base import ForecastingModel, config_from_arguments
from convlstm.models.registry import register_model
from convlstm.utils.checks import check_int


@dataclass
class PersistenceConfig:
    in_channels: int | None = None
    default_horizon: int = 10


class Persistence(ForecastingModel):
    """Repeats the last context frame ``horizon`` times. It has no parameters; its config still saves and loads.

    Args:
        in_channels: channels the context must have, or None to accept any.
        default_horizon: frames predicted when forward gets no horizon.

    Shape:
        context: (B, T_in, C, H, W) -> predictions (B, horizon, C, H, W).
    """

    family = "persistence"
    config_class = PersistenceConfig

    def __init__(self, in_channels: int | None = None, *, default_horizon: int = 10) -> None:
        super().__init__()
        check_baseline_arguments(in_channels, default_horizon)
        self.config = config_from_arguments(PersistenceConfig, locals())
        self.in_channels = in_channels
        self.default_horizon = default_horizon

    def forward(
        self,
        context: Tensor,
        horizon: int | None = None,
        targets: Tensor | None = None,
        teacher_forcing: Tensor | None = None,
    ) -> Tensor:
        """Returns (B, horizon, C, H, W) copies of ``context[:, -1]``; a teacher-forcing mask is validated and
        ignored (the true frames are never fed to anything)."""
        horizon, _ = self.check_forecast_arguments(
            context, horizon, targets, teacher_forcing, channels=context_channels(context, self.in_channels)
        )
        return context[:, -1:].repeat(1, horizon, *([1] * (context.ndim - 2)))


def check_baseline_arguments(in_channels: int | None, default_horizon: int) -> None:
    """The constructor checks every baseline shares: in_channels (None for any) and default_horizon."""
    if in_channels is not None and (not isinstance(in_channels, int) or isinstance(in_channels, bool)):
        raise ValueError(f"in_channels must be an int or None, got {in_channels!r}")
    if in_channels is not None and in_channels < 1:
        raise ValueError(f"in_channels must be >= 1 (or None for any), got {in_channels!r}")
    check_int("default_horizon", default_horizon, 1)


def context_channels(context: Any, in_channels: int | None) -> int:
    """The channel count a baseline checks ``context`` against: its own when it has one, else the context's."""
    if in_channels is not None:
        return in_channels
    return int(context.shape[2]) if isinstance(context, Tensor) and context.ndim == 5 else 1


@register_model
def persistence(**overrides: Any) -> Persistence:
    """The last context frame, repeated: the baseline every forecaster must beat."""
    return Persistence(**overrides)
