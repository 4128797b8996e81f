"""load_task finds the class a checkpoint names among the subclasses of TaskBase: the package's systems and any other
that is imported, with no table to keep in step."""

import gc
from pathlib import Path
from typing import Any

import pytest
import torch

from convlstm.tasks import ForecastingTask, SegmentationTask, load_task
from convlstm.tasks.base import task_class
from tests.tasks.tiny import TinyForecaster


class HalvedForecasting(ForecastingTask):
    """A system of a user's own: ForecastingTask whose forward halves the forecast."""

    def forward(self, context: torch.Tensor, horizon: int | None = None) -> torch.Tensor:
        return super().forward(context, horizon) / 2


def _save(system: ForecastingTask, path: Path, **hparams: Any) -> Path:
    torch.save({"hyper_parameters": {**system.hparams, **hparams}, "state_dict": system.state_dict()}, path)
    return path


def test_a_subclass_of_ones_own_is_rebuilt_from_its_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    task = HalvedForecasting(TinyForecaster(hidden=3), loss="mae")
    assert task.hparams["task"] == "HalvedForecasting"
    rebuilt = load_task(_save(task, tmp_path / "own.ckpt"))
    assert type(rebuilt) is HalvedForecasting and rebuilt.hparams["loss"] == "mae"
    context = torch.rand(2, 3, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(context, 2), task.eval()(context, 2))


def test_every_system_of_the_package_is_found_by_name() -> None:
    assert task_class("ForecastingTask") is ForecastingTask and task_class("SegmentationTask") is SegmentationTask


def test_a_name_that_is_no_task_or_several_is_refused(tmp_path: Path) -> None:
    path = _save(ForecastingTask(TinyForecaster()), tmp_path / "odd.ckpt", task="Forecaster")
    with pytest.raises(ValueError, match=r"odd.ckpt records task 'Forecaster'; known tasks: \[.*'ForecastingTask'"):
        load_task(path)
    twin = type("HalvedForecasting", (ForecastingTask,), {"__module__": "elsewhere"})
    with pytest.raises(ValueError, match=r"names several classes: \['elsewhere.HalvedForecasting', 'tests.tasks"):
        task_class("HalvedForecasting")
    del twin
    gc.collect()  # the twin leaves TaskBase's subclasses
    assert task_class("HalvedForecasting") is HalvedForecasting
