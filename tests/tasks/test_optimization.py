"""OptimizationConfig: checked once, taken whole by every training system, built into the optimizer and schedule,
and recovered from checkpoints of either layout (the config as a dict, or its fields flat as tasks wrote them
before they took it whole)."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from convlstm.models.next_frame import NextFramePredictor
from convlstm.tasks import (
    ForecastingTask,
    OptimizationConfig,
    PredNetTask,
    SegmentationTask,
    TaskBase,
    TBPTTForecastingTask,
    load_task,
)
from convlstm.tasks.optim import OPTIMIZATION_FIELDS, configure_optimization
from tests.tasks.tiny import TinyForecaster, TinyPredNet, TinySegmenter

#: One of each training system, built around a tiny model with the given config.
SYSTEMS: dict[str, Callable[[OptimizationConfig], TaskBase]] = {
    "forecasting": lambda config: ForecastingTask(TinyForecaster(), optimization=config),
    "tbptt": lambda config: TBPTTForecastingTask(
        NextFramePredictor(encoder_channels=(4,), hidden_channels=(4,), kernel_size=3), optimization=config
    ),
    "segmentation": lambda config: SegmentationTask(TinySegmenter(), num_classes=2, optimization=config),
    "prednet": lambda config: PredNetTask(TinyPredNet(), optimization=config),
}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("optimizer", "sgd"),
        ("lr", 0.0),
        ("lr", float("nan")),
        ("weight_decay", -1e-4),
        ("lr_schedule", "linear"),
        ("warmup_steps", -1),
        ("warmup_steps", 2.5),
        ("total_steps", 0),
        ("min_lr_ratio", 1.5),
        ("lr_milestones", (5, 3)),
        ("lr_milestones", 5),
        ("lr_gamma", -0.1),
    ],
)
def test_a_bad_field_is_named(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=rf"^{field}(\[\d\])? must "):
        OptimizationConfig(**{field: value})


def test_the_fields_round_trip_through_plain_values() -> None:
    config = OptimizationConfig(optimizer="adamw", lr=2e-3, lr_schedule="multistep", lr_milestones=[3, 7])  # type: ignore[arg-type]
    assert config.lr_milestones == (3, 7)  # a YAML list, kept as a tuple
    plain = config.to_dict()
    assert list(plain) == list(OPTIMIZATION_FIELDS) and plain["lr_milestones"] == [3, 7]
    assert OptimizationConfig.from_dict(plain) == config
    with pytest.raises(ValueError, match=r"task.args: \['learning_rate'\] are not optimisation settings"):
        OptimizationConfig.from_dict({"learning_rate": 1e-3}, where="task.args")


@pytest.mark.parametrize("kind", sorted(SYSTEMS))
def test_every_training_system_takes_the_config_whole_and_builds_its_optimizer(kind: str) -> None:
    config = OptimizationConfig(
        optimizer="adamw", lr=3e-3, weight_decay=0.25, lr_schedule="multistep", lr_milestones=(2,)
    )
    task = SYSTEMS[kind](config)
    assert task.optimization is config and task.hparams["optimization"] == config.to_dict()
    built = task.configure_optimizers()
    optimizer, scheduler = built["optimizer"], built["lr_scheduler"]["scheduler"]
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(3e-3)
    assert optimizer.param_groups[0]["weight_decay"] == pytest.approx(0.25)
    assert list(scheduler.milestones) == [2] and scheduler.gamma == pytest.approx(0.1)


def test_adam_without_a_schedule_has_no_scheduler() -> None:
    layer = nn.Linear(2, 2)
    built = configure_optimization(layer.parameters(), OptimizationConfig(lr=1e-2), estimated_steps=None)
    assert set(built) == {"optimizer"} and type(built["optimizer"]) is torch.optim.Adam
    with pytest.raises(ValueError, match="needs the run's length"):
        configure_optimization(
            layer.parameters(), OptimizationConfig(lr_schedule="cosine"), estimated_steps=float("inf")
        )


#: The hyperparameters a ForecastingTask checkpoint held before the tasks took an OptimizationConfig whole: the
#: optimisation settings flat among the task's own arguments (copied from a checkpoint that version wrote).
FLAT_HPARAMS: dict[str, Any] = {
    "loss": "mse",
    "units": "pixel",
    "zr_a": 58.53,
    "zr_b": 1.56,
    "balanced_mse_weight": 1.0,
    "balanced_mae_weight": 1.0,
    "sampling": "none",
    "sampling_start": 1.0,
    "sampling_end": 0.0,
    "sampling_end_step": 50000,
    "reverse_start_step": 25000,
    "reverse_end_step": 50000,
    "reverse_decay": 5000.0,
    "decouple_beta": 0.0,
    "divergence_alpha": 0.0,
    "metrics": None,
    "ssim_data_range": 1.0,
    "rain_thresholds": None,
    "log_per_lead_time": True,
    "predict_horizon": None,
    "optimizer": "adam",
    "lr": 0.002,
    "weight_decay": 0.0,
    "lr_schedule": "multistep",
    "warmup_steps": 0,
    "total_steps": None,
    "min_lr_ratio": 0.0,
    "lr_milestones": (2, 4),
    "lr_gamma": 0.5,
    "ensemble_members": None,
    "task": "ForecastingTask",
    "model_family": "tests_tiny_forecaster",
    "model_config": {"channels": 1, "hidden": 3},
}


def test_a_checkpoint_with_flat_optimisation_settings_still_loads(tmp_path: Path) -> None:
    torch.manual_seed(0)
    trained = TinyForecaster(hidden=3)
    state = {f"model.{name}": value for name, value in trained.state_dict().items()}
    path = tmp_path / "flat.ckpt"
    torch.save({"hyper_parameters": FLAT_HPARAMS, "state_dict": state, "global_step": 3}, path)

    task = load_task(path)
    assert isinstance(task, ForecastingTask)
    expected = OptimizationConfig(lr=2e-3, lr_schedule="multistep", lr_milestones=(2, 4), lr_gamma=0.5)
    assert task.optimization == expected
    assert not set(OPTIMIZATION_FIELDS) & set(task.hparams)  # the settings live in hparams["optimization"] now
    assert task.configure_optimizers()["optimizer"].param_groups[0]["lr"] == pytest.approx(2e-3)
    context = torch.rand(2, 3, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(task.model.eval()(context, 2), trained.eval()(context, 2))
