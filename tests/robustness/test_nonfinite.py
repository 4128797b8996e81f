"""Training that goes wrong: a model whose loss (or gradient) turns NaN after k good steps. NonFiniteLossGuard
detects it, skips the step or stops the run with a message that says what happened, and the last checkpoint
holds the weights of the last good step: finite, loadable, and equal to those of a run that stopped before the
first bad step.

tests/tasks/test_forecasting_task.py already covers NaN *data* in both modes; here the model breaks, gradients
alone can break, the skip mode gives up after max_consecutive bad steps, and the command line reports it.
"""

import logging
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from torch import Tensor

from convlstm.cli.main import main
from convlstm.tasks import ForecastingTask, NonFiniteLossGuard, OptimizationConfig, load_task, make_trainer
from tests.tasks.tiny import TinyForecaster, loader, static_sequences

GOOD_STEPS = 3


class _NanGradient(torch.autograd.Function):
    """The identity forward; NaN gradients backward (a finite loss with a broken gradient)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return grad * float("nan")


class BreaksAfter(TinyForecaster):
    """TinyForecaster whose training predictions (or only their gradients) turn NaN after ``good`` steps."""

    def __init__(self, good: int, *, gradient_only: bool = False) -> None:
        super().__init__(hidden=3)
        self.good, self.gradient_only, self.calls = good, gradient_only, 0

    def forward(self, context: Tensor, horizon: int | None = None, *args: Any, **kwargs: Any) -> Tensor:
        prediction = super().forward(context, horizon, *args, **kwargs)
        if not self.training:
            return prediction
        self.calls += 1
        if self.calls <= self.good:
            return prediction
        return _NanGradient.apply(prediction) if self.gradient_only else prediction * float("nan")


def _fit(model: TinyForecaster, root: Path, *, max_steps: int, action: str, **guard: Any) -> tuple[Any, Any]:
    torch.manual_seed(0)
    model.load_state_dict(TinyForecaster(hidden=3).state_dict())  # the same start for every run
    task = ForecastingTask(model, optimization=OptimizationConfig(lr=1e-2))
    guard_callback = NonFiniteLossGuard(action=action, **guard)  # type: ignore[arg-type]
    trainer = make_trainer(
        root_dir=root,
        checkpoint_dir=root / "checkpoints",
        max_steps=max_steps,
        nonfinite="off",
        callbacks=[guard_callback],
        loggers=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        early_stopping_patience=None,
        seed=0,
        val_check_interval=1,  # validate (and write last.ckpt) after every step
    )
    trainer.fit(task, loader(static_sequences(8, seed=0)), loader(static_sequences(4, seed=1)))
    return trainer, guard_callback


@pytest.fixture(scope="module")
def good_weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Tensor]:
    """The weights after GOOD_STEPS steps of a model that never breaks."""
    trainer, _ = _fit(TinyForecaster(hidden=3), tmp_path_factory.mktemp("good"), max_steps=GOOD_STEPS, action="skip")
    return {k: v.clone() for k, v in trainer.lightning_module.state_dict().items()}


def _assert_last_checkpoint_is(root: Path, expected: dict[str, Tensor]) -> None:
    last = root / "checkpoints" / "last.ckpt"
    state = torch.load(last, weights_only=True)["state_dict"]
    assert all(bool(torch.isfinite(v).all()) for v in state.values())
    assert state.keys() == expected.keys()
    for name, value in expected.items():
        assert torch.equal(state[name], value), name
    rebuilt = load_task(last)
    assert all(torch.equal(rebuilt.state_dict()[k], v) for k, v in expected.items())


def test_stop_mode_stops_at_the_first_bad_step_and_keeps_the_good_weights(
    tmp_path: Path, good_weights: dict[str, Tensor], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="convlstm.tasks.callbacks"):
        trainer, guard = _fit(BreaksAfter(GOOD_STEPS), tmp_path, max_steps=20, action="stop")
    assert trainer.global_step == GOOD_STEPS + 1  # the bad step is counted, never applied
    assert guard.stopped_reason is not None
    assert f"non-finite loss at global step {GOOD_STEPS}" in guard.stopped_reason
    assert "training stops" in guard.stopped_reason and "last good weights" in guard.stopped_reason
    assert guard.stopped_reason in caplog.text
    _assert_last_checkpoint_is(tmp_path, good_weights)


def test_skip_mode_skips_every_bad_step_and_keeps_the_good_weights(
    tmp_path: Path, good_weights: dict[str, Tensor], caplog: pytest.LogCaptureFixture
) -> None:
    bad = 4
    with caplog.at_level(logging.WARNING, logger="convlstm.tasks.callbacks"):
        trainer, guard = _fit(BreaksAfter(GOOD_STEPS), tmp_path, max_steps=GOOD_STEPS + bad, action="skip")
    assert trainer.global_step == GOOD_STEPS + bad and guard.skipped_steps == bad
    assert guard.stopped_reason is None
    warnings = [r.getMessage() for r in caplog.records if "skipping this optimizer step" in r.getMessage()]
    assert len(warnings) == bad
    assert warnings[0].startswith(f"non-finite loss at global step {GOOD_STEPS} (epoch ")
    _assert_last_checkpoint_is(tmp_path, good_weights)


def test_skip_mode_gives_up_after_max_consecutive_bad_steps(tmp_path: Path, good_weights: dict[str, Tensor]) -> None:
    trainer, guard = _fit(BreaksAfter(GOOD_STEPS), tmp_path, max_steps=50, action="skip", max_consecutive=3)
    assert trainer.global_step == GOOD_STEPS + 3
    assert guard.stopped_reason is not None and "3 such steps in a row" in guard.stopped_reason
    _assert_last_checkpoint_is(tmp_path, good_weights)


def test_a_nan_gradient_with_a_finite_loss_is_caught(tmp_path: Path, good_weights: dict[str, Tensor]) -> None:
    _, guard = _fit(BreaksAfter(GOOD_STEPS, gradient_only=True), tmp_path, max_steps=20, action="stop")
    assert guard.stopped_reason is not None
    assert f"non-finite gradient at global step {GOOD_STEPS}" in guard.stopped_reason
    assert "loss = nan" not in guard.stopped_reason  # the loss itself was finite
    _assert_last_checkpoint_is(tmp_path, good_weights)


def test_without_the_guard_the_weights_are_lost(tmp_path: Path) -> None:
    """What the guard prevents: the same model unguarded ends with NaN weights."""
    torch.manual_seed(0)
    task = ForecastingTask(BreaksAfter(GOOD_STEPS), optimization=OptimizationConfig(lr=1e-2))
    trainer = L.Trainer(
        max_steps=GOOD_STEPS + 1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(task, loader(static_sequences(8, seed=0)))
    assert not all(bool(torch.isfinite(p).all()) for p in task.parameters())


def test_the_guard_state_survives_a_resume(tmp_path: Path) -> None:
    _, guard = _fit(BreaksAfter(1), tmp_path, max_steps=3, action="skip")
    assert guard.skipped_steps == 2
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["callbacks"]
    assert any(state == {"skipped_steps": 2} for state in saved.values())


def test_nan_in_the_data_stops_the_command_with_the_file_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frames = np.random.default_rng(0).random((10, 4, 1, 8, 8), dtype=np.float32)
    frames[:, 2, 0, 4, 4] = np.nan  # in every recording, so in whichever split is read first
    np.save(tmp_path / "frames.npy", frames)
    recipe = {
        "name": "nan",
        "data": {
            "source": "numpy",
            "args": {"root": str(tmp_path / "frames.npy"), "layout": "NTCHW"},
            "context_frames": 2,
            "target_frames": 1,
            "batch_size": 4,
        },
        "model": {"name": "next_frame_tiny", "args": {"encoder_channels": [4, 4], "hidden_channels": [4]}},
        "trainer": {"max_steps": 8, "accelerator": "cpu", "enable_progress_bar": False},
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["fit", "-c", str(tmp_path / "recipe.yaml"), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "frames.npy[" in err and "NaN or infinite values" in err and "nan_policy='mask'" in err
    assert not list((tmp_path / "run").rglob("*.ckpt"))
