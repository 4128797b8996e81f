"""One record per task kind: everything a recipe's ``task.kind`` decides, in one table.

`convlstm fit` trains the kind's training system ([`build_task`][convlstm.experiment.build_task] and
[`build_trainer`][convlstm.experiment.build_trainer] read the record), `convlstm test` scores the best checkpoint
with it (or with what the record wraps it in) and `convlstm evaluate` scores the trained model and the kind's
baselines with the kind's evaluator. The kinds a recipe can name are [`TaskKind`][convlstm.experiment.TaskKind]'s
values, which the recipe reader knows without importing Lightning; every one of them has its record here (a test
checks it).
"""

import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from convlstm.experiment import scoring
from convlstm.experiment.recipe import TaskKind
from convlstm.tasks import AnomalyTask, ForecastingTask, PredNetTask, SegmentationTask, TaskBase, TBPTTForecastingTask

__all__ = ["TASK_KINDS", "TaskKindSpec", "task_kind"]


@dataclass(frozen=True)
class TaskKindSpec:
    """What the pipeline does for one task kind.

    Attributes:
        training_system: The LightningModule that `convlstm fit` trains around the recipe's model, with
            ``task.args``.
        evaluator: What `convlstm evaluate` scores with: ``evaluator(model, baselines, dataset, recipe)`` (the
            trained model, the baselines by name, the test sequences, the recipe) returns the scores of each method
            and the test sequences to animate.
        default_baselines: The registered baselines `convlstm evaluate` scores beside the model when neither the
            command nor the recipe's ``evaluate.baselines`` names any.
        clips_own_gradients: The training system steps its optimizer itself and clips its gradients before each
            step: it gets the recipe's ``trainer.gradient_clip_val`` and the Trainer clips nothing (Lightning refuses
            its own clipping under manual optimisation).
        test_system: What `convlstm test` scores with, made from the loaded best checkpoint; None scores with the
            training system itself.
    """

    training_system: type[TaskBase]
    evaluator: scoring.Evaluator
    default_baselines: tuple[str, ...] = ()
    clips_own_gradients: bool = False
    test_system: Callable[[TaskBase], TaskBase] | None = None


def _frames_scored_by_prediction_error(trained: TaskBase) -> TaskBase:
    """The anomaly kind's test: the trained forecaster scores every frame by its next-frame prediction error
    (test/auroc, test/psnr); the first frames, which no prediction covers, are left out."""
    return AnomalyTask(trained.model, first_frames="exclude")


TASK_KINDS: Mapping[TaskKind, TaskKindSpec] = MappingProxyType(
    {
        "forecasting": TaskKindSpec(
            training_system=ForecastingTask, evaluator=scoring.score_forecasts, default_baselines=("persistence",)
        ),
        "tbptt": TaskKindSpec(
            training_system=TBPTTForecastingTask,
            evaluator=scoring.score_forecasts,
            default_baselines=("persistence",),
            clips_own_gradients=True,
        ),
        "segmentation": TaskKindSpec(training_system=SegmentationTask, evaluator=scoring.score_segmentation),
        "prednet": TaskKindSpec(training_system=PredNetTask, evaluator=scoring.score_prednet),
        # Anomaly detection trains a forecaster on normal sequences; its test and evaluation score frames by
        # prediction error.
        "anomaly": TaskKindSpec(
            training_system=ForecastingTask,
            evaluator=scoring.score_anomalies,
            default_baselines=("persistence",),
            test_system=_frames_scored_by_prediction_error,
        ),
    }
)
"""The record of every task kind a recipe can name."""


def task_kind(kind: str) -> TaskKindSpec:
    """The record of ``kind``.

    Raises:
        ValueError: no such kind; the message lists the kinds.
    """
    spec = TASK_KINDS.get(typing.cast(TaskKind, kind))
    if spec is None:
        raise ValueError(f"task.kind must be one of {list(TASK_KINDS)}, got {kind!r}")
    return spec
