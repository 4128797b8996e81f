"""Bad arguments of the training systems, callbacks and schedules are refused before anything trains, with a
message that names the argument and what it must be."""

from collections.abc import Callable

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from convlstm.tasks import (
    ForecastingTask,
    NonFiniteLossGuard,
    PredictionImageLogger,
    PredNetTask,
    ScheduledSampling,
    SegmentationTask,
)
from convlstm.tasks.losses import extrapolation_loss
from convlstm.tasks.step_checkpoint import StepCheckpoint
from tests.tasks.tiny import TinyForecaster, TinyPredNet, TinySegmenter

CASES: list[tuple[str, Callable[[], object], str]] = [
    ("guard action", lambda: NonFiniteLossGuard(action="ignore"), r"^action must be one of \['skip', 'stop'\]"),  # type: ignore[arg-type]
    ("guard patience", lambda: NonFiniteLossGuard(max_consecutive=0), r"^max_consecutive must be an int >= 1, got 0$"),
    ("image period", lambda: PredictionImageLogger(every_n_epochs=0), r"^every_n_epochs must be an int >= 1, got 0$"),
    ("image count", lambda: PredictionImageLogger(num_sequences=1.5), r"^num_sequences must be an int >= 1"),  # type: ignore[arg-type]
    ("step minutes", lambda: StepCheckpoint(ModelCheckpoint(), every_minutes=0), r"^every_minutes must be a finite"),
    ("sampling kind", lambda: ScheduledSampling("cosine"), r"^kind must be one of"),  # type: ignore[arg-type]
    ("sampling start", lambda: ScheduledSampling("linear", start=1.5), r"^start must be in \[0.0, 1.0\], got 1.5$"),
    ("sampling step", lambda: ScheduledSampling("linear").probability(-1), r"^step must be an int >= 0, got -1$"),
    ("mask size", lambda: ScheduledSampling("linear").mask(0, 2, 0), r"^horizon must be an int >= 1, got 0$"),
    ("units", lambda: ForecastingTask(TinyForecaster(), units="dBZ"), r"^units must be one of \['pixel', 'mm/h'\]"),  # type: ignore[arg-type]
    ("horizon", lambda: ForecastingTask(TinyForecaster(), predict_horizon=0), r"^predict_horizon must be an int >= 1"),
    ("classes", lambda: SegmentationTask(TinySegmenter(), num_classes=1), r"^num_classes must be an int >= 2, got 1$"),
    (
        "weights",
        lambda: SegmentationTask(TinySegmenter(), num_classes=2, ce_weight=0.0, dice_weight=0),
        r"^ce_weight and dice_weight must not both be 0",
    ),
    (
        "extrapolation",
        lambda: PredNetTask(TinyPredNet(), extrap_start_time=0),
        r"^extrap_start_time must be an int >= 1",
    ),
    (
        "extrapolated frames",
        lambda: extrapolation_loss(torch.zeros(1, 3, 1, 4, 4), torch.zeros(1, 3, 1, 4, 4), 3),
        r"^start must be an int in \[1, 2\], got 3$",
    ),
]


@pytest.mark.parametrize(("make", "match"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_a_bad_argument_is_named(make: Callable[[], object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()
