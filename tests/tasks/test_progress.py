"""The progress bar's epoch label: a total where the run has a number of epochs, else the limit that stops it."""

import datetime

import pytest

from convlstm.tasks import make_trainer
from convlstm.tasks.progress import epoch_description, make_progress_bar


@pytest.mark.parametrize(
    ("max_epochs", "max_steps", "max_minutes", "expected"),
    [
        (10, -1, None, "Epoch 3/9"),
        (-1, -1, 4.0, "Epoch 3 (stops at 4 min)"),  # Lightning's max_epochs for a time-limited run
        (None, 200, None, "Epoch 3 (stops at 200 steps)"),
        (-1, 200, 0.5, "Epoch 3 (stops at 0.5 min or 200 steps)"),
        (-1, -1, None, "Epoch 3"),
    ],
)
def test_epoch_description(max_epochs: int | None, max_steps: int, max_minutes: float | None, expected: str) -> None:
    assert epoch_description(3, max_epochs, max_steps, max_minutes) == expected


def test_a_time_limited_trainer_labels_epochs_without_a_negative_total(tmp_path: str) -> None:
    trainer = make_trainer(root_dir=tmp_path, max_time=datetime.timedelta(minutes=4), loggers=False, checkpoints=False)
    bar = trainer.progress_bar_callback
    assert bar is not None and type(bar) is type(make_progress_bar(4.0))
    if hasattr(bar, "_get_train_description"):  # the rich bar (rich installed, as with the train extra)
        bar._trainer = trainer
        assert bar._get_train_description(15).strip() == "Epoch 15 (stops at 4 min)"
