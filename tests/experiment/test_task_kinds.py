"""The record of each task kind: every kind a recipe can name has one, and fit, test and evaluate do what it says
(a record changed here changes what the pipeline does, with no branch on the kind's name left to disagree)."""

import dataclasses
import json
import typing
from pathlib import Path

import pytest

from convlstm.cli.main import main
from convlstm.experiment import (
    TASK_KINDS,
    RunDir,
    TaskKind,
    build_model,
    build_task,
    build_trainer,
    load_recipe,
    recipe_from_dict,
    recipe_help,
    task_kind,
)
from convlstm.experiment import task_kinds as task_kinds_module
from convlstm.experiment.recipe import RecipeError
from convlstm.models import list_models
from convlstm.tasks import AnomalyTask, TaskBase

#: A packaged recipe of each kind, made small: only its model and task are built here.
RECIPES: dict[str, tuple[str, list[str]]] = {
    "forecasting": ("demo", ["model.args.hidden_channels=[4]"]),
    "tbptt": ("demo", ["task.kind=tbptt", "task.args={chunk: 3}", "model.name=next_frame_tiny", "model.args={}"]),
    "segmentation": ("segmentation", ["data.args.image_size=32"]),
    "prednet": ("prednet_video", ["model.args={stack_sizes: [1, 4]}"]),
    "anomaly": ("anomaly", []),
}


def test_every_kind_a_recipe_can_name_has_its_record() -> None:
    assert set(TASK_KINDS) == set(typing.get_args(TaskKind)) == set(RECIPES)
    for kind, spec in TASK_KINDS.items():
        assert issubclass(spec.training_system, TaskBase), kind
        assert callable(spec.evaluator), kind
        assert set(spec.default_baselines) <= set(list_models()), kind
        assert task_kind(kind) is spec


def test_an_unknown_kind_is_refused_with_the_kinds_listed() -> None:
    listed = r"\['forecasting', 'tbptt', 'segmentation', 'prednet', 'anomaly'\], got 'nope'"
    with pytest.raises(ValueError, match=rf"^task.kind must be one of {listed}$"):
        task_kind("nope")
    raw = {"name": "x", "data": {"source": "bouncing_balls"}, "model": {"name": "demo"}, "task": {"kind": "nope"}}
    with pytest.raises(RecipeError, match=rf"^recipe.task.kind must be one of {listed}$"):
        recipe_from_dict(raw)
    assert "task.kind: forecasting, tbptt, segmentation, prednet or anomaly (default 'forecasting')" in recipe_help()


@pytest.mark.parametrize("kind", sorted(RECIPES))
def test_fit_builds_the_records_training_system_and_gives_clipping_to_the_task_or_the_trainer(
    kind: str, tmp_path: Path
) -> None:
    name, overrides = RECIPES[kind]
    recipe = load_recipe(name, [*overrides, "trainer.gradient_clip_val=0.25"])
    assert recipe.task.kind == kind
    spec = TASK_KINDS[kind]
    task = build_task(recipe, build_model(recipe))
    assert type(task) is spec.training_system
    trainer = build_trainer(recipe, RunDir(tmp_path / "run"), loggers=False, checkpoints=False)
    if spec.clips_own_gradients:
        assert trainer.gradient_clip_val is None and task.hparams["gradient_clip_val"] == 0.25
    else:
        assert trainer.gradient_clip_val == 0.25 and "gradient_clip_val" not in task.hparams


TINY_RUN = [
    "-o", "trainer.max_steps=1",
    "-o", "trainer.max_minutes=null",
    "-o", "trainer.enable_progress_bar=false",
    "-o", "trainer.limit_val_batches=1",
    "-o", "data.train_sequences=4",
    "-o", "data.val_sequences=4",
    "-o", "data.test_sequences=4",
    "-o", "data.batch_size=4",
    "-o", "model.args.hidden_channels=[4]",
    "-o", "evaluate.baselines=null",
    "-o", "evaluate.animations=0",
]  # fmt: skip


def test_test_and_evaluate_do_what_the_record_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert main(["fit", "-c", "demo", "--run-dir", str(run), *TINY_RUN]) == 0
    wrapped: list[TaskBase] = []

    def score_frames(trained: TaskBase) -> TaskBase:
        wrapped.append(trained)
        return AnomalyTask(trained.model)

    changed = dataclasses.replace(
        TASK_KINDS["forecasting"], default_baselines=("persistence", "optical_flow"), test_system=score_frames
    )
    monkeypatch.setattr(task_kinds_module, "TASK_KINDS", {**TASK_KINDS, "forecasting": changed})

    assert main(["evaluate", "--run-dir", str(run)]) == 0  # the recipe names no baselines: the record's
    methods = json.loads((run / "metrics.json").read_text())["methods"]
    assert set(methods) == {"encoder_forecaster_tiny", "persistence", "optical_flow"}
    assert main(["evaluate", "--run-dir", str(run), "--baselines"]) == 0  # none, as asked
    assert set(json.loads((run / "metrics.json").read_text())["methods"]) == {"encoder_forecaster_tiny"}

    assert main(["test", "--run-dir", str(run)]) == 2  # bouncing balls have no labels: the record's test system ran
    assert "an anomaly batch must be a dict with 'context' and 'labels'" in capsys.readouterr().err
    assert len(wrapped) == 1 and type(wrapped[0]) is TASK_KINDS["forecasting"].training_system
