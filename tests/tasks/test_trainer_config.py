"""TrainerConfig: the Trainer's settings checked once and taken whole by make_trainer, with make_trainer's keyword
shorthand for the same settings (and for any other Lightning argument)."""

import dataclasses
from typing import Any

import pytest
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from convlstm.tasks import TrainerConfig, make_trainer
from convlstm.tasks.callbacks import NonFiniteLossGuard
from convlstm.tasks.trainer import TRAINER_FIELDS

QUIET = TrainerConfig(accelerator="cpu", precision="32-true", loggers=False, enable_progress_bar=False, seed=None)


def test_the_config_reaches_the_trainer_whole() -> None:
    config = dataclasses.replace(
        QUIET,
        max_steps=7,
        gradient_clip_val=0.5,
        gradient_clip_algorithm="value",
        accumulate_grad_batches=2,
        monitor="val/mse",
        monitor_mode="max",
        save_top_k=3,
        early_stopping_patience=4,
        nonfinite="stop",
        lightning={"limit_val_batches": 2},
    )
    trainer = make_trainer(config)
    assert (trainer.max_steps, trainer.gradient_clip_val, trainer.gradient_clip_algorithm) == (7, 0.5, "value")
    assert trainer.accumulate_grad_batches == 2 and trainer.limit_val_batches == 2
    (best,) = [c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)]
    assert (best.monitor, best.mode, best.save_top_k) == ("val/mse", "max", 3)
    (stop,) = [c for c in trainer.callbacks if isinstance(c, EarlyStopping)]
    assert (stop.monitor, stop.patience) == ("val/mse", 4)
    (guard,) = [c for c in trainer.callbacks if isinstance(c, NonFiniteLossGuard)]
    assert guard.action == "stop"


def test_keywords_replace_fields_and_pass_the_rest_to_lightning() -> None:
    trainer = make_trainer(QUIET, max_steps=3, checkpoints=False, early_stopping_patience=None, limit_train_batches=5)
    assert trainer.max_steps == 3 and trainer.limit_train_batches == 5
    assert not [c for c in trainer.callbacks if isinstance(c, ModelCheckpoint | EarlyStopping)]
    alone = make_trainer(**{**{name: getattr(QUIET, name) for name in TRAINER_FIELDS}, "max_steps": 3})
    assert alone.max_steps == 3  # the shorthand without a config: the same Trainer


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"gradient_clip_val": 0.0}, r"^gradient_clip_val must be a finite number > 0, got 0.0$"),
        ({"gradient_clip_algorithm": "max"}, r"^gradient_clip_algorithm must be one of \['norm', 'value'\]"),
        ({"accumulate_grad_batches": 0}, r"^accumulate_grad_batches must be an int >= 1, got 0$"),
        ({"monitor_mode": "lowest"}, r"^monitor_mode must be one of"),
        ({"save_top_k": -2}, r"^save_top_k must be an int >= -1, got -2$"),
        ({"checkpoint_every_minutes": -1.0}, r"^checkpoint_every_minutes must be a finite number > 0"),
        ({"early_stopping_patience": -1}, r"^early_stopping_patience must be an int >= 0, got -1$"),
        ({"nonfinite": "ignore"}, r"^nonfinite must be one of \['skip', 'stop', 'off'\]"),
        ({"image_every_n_epochs": 0}, r"^image_every_n_epochs must be an int >= 1"),
        ({"lightning": {"max_steps": 3}}, r"^lightning: \['max_steps'\] are settings of TrainerConfig itself"),
    ],
)
def test_a_bad_setting_is_named(settings: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TrainerConfig(**settings)
    with pytest.raises(ValueError, match=match):  # the same check through the keyword shorthand
        make_trainer(QUIET, **settings)


def test_make_trainer_takes_nothing_else_for_a_config() -> None:
    with pytest.raises(ValueError, match=r"^config must be a TrainerConfig, got dict"):
        make_trainer({"max_steps": 3})  # type: ignore[arg-type]
    assert "lightning" not in TRAINER_FIELDS and set(TRAINER_FIELDS) < {f.name for f in dataclasses.fields(QUIET)}
