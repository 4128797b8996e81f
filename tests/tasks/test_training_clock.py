"""TrainingClock: minutes of training at every validation, validation excluded, counted on across a resume."""

import csv
import itertools
import time
from pathlib import Path

import lightning as L
import pytest
import torch

from convlstm.tasks import ForecastingTask, make_trainer
from convlstm.tasks.callbacks import TrainingClock
from tests.tasks.tiny import TinyForecaster, loader, static_sequences

VALIDATION_PAUSE_S = 1.0


class SlowValidation(L.Callback):
    """Makes every validation take VALIDATION_PAUSE_S longer, which the clock must not count."""

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            time.sleep(VALIDATION_PAUSE_S)


def _fit(tmp_path: Path, steps: int, resume: Path | None = None, slow: bool = False) -> L.Trainer:
    torch.manual_seed(0)
    trainer = make_trainer(
        root_dir=tmp_path,
        name="run",
        max_steps=steps,
        val_check_interval=2,
        check_val_every_n_epoch=None,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[SlowValidation()] if slow else [],
    )
    trainer.fit(
        ForecastingTask(TinyForecaster(hidden=3)),
        loader(static_sequences(8, seed=0), shuffle=True),
        loader(static_sequences(2, seed=1)),
        ckpt_path=resume,
        weights_only=False,
    )
    return trainer


def _logged_minutes(run: Path) -> list[float]:
    with (run / "metrics.csv").open(newline="") as f:
        return [float(row["time/train_minutes"]) for row in csv.DictReader(f) if row.get("time/train_minutes")]


def test_minutes_grow_at_every_validation_and_leave_validation_out(tmp_path: Path) -> None:
    trainer = _fit(tmp_path, steps=6, slow=True)
    minutes = _logged_minutes(tmp_path / "run" / "version_0")
    assert len(minutes) == 3  # validations after steps 2, 4 and 6
    assert minutes[0] > 0 and all(b > a for a, b in itertools.pairwise(minutes))
    # Between two validations lie two tiny training steps and one validation that slept a second: the clock must
    # have counted the steps only.
    assert max(b - a for a, b in itertools.pairwise(minutes)) * 60 < VALIDATION_PAUSE_S / 2
    clock = next(c for c in trainer.callbacks if isinstance(c, TrainingClock))
    assert clock.minutes == pytest.approx(
        minutes[-1], rel=1e-5
    )  # no training after the last validation (logged in float32)


def test_a_resumed_run_counts_on_from_its_checkpoint(tmp_path: Path) -> None:
    _fit(tmp_path, steps=4)
    before = _logged_minutes(tmp_path / "run" / "version_0")
    last = next((tmp_path / "run" / "version_0" / "checkpoints").glob("last.ckpt"))
    _fit(tmp_path, steps=8, resume=last)
    after = _logged_minutes(tmp_path / "run" / "version_1")
    assert after and after[0] > before[-1]
    restored = TrainingClock()
    restored.load_state_dict(TrainingClock().state_dict() | {"minutes": 2.5})
    assert restored.minutes == 2.5
