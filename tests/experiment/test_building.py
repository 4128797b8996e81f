"""Recipe -> model, task and data: fine-tuning from a saved model's weights (model.init_from), and the free
argument sections read as the types their receivers declare."""

import dataclasses
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from convlstm.data.sources import SOURCES, source_class
from convlstm.experiment import (
    TASK_KINDS,
    Recipe,
    RecipeError,
    build_dataset,
    build_model,
    build_task,
    load_recipe,
    recipe_from_dict,
)
from convlstm.experiment.recipe import read_arguments
from convlstm.models import create_model, family_class, list_models, model_builder, model_family


def _recipe(name: str, init_from: Path, **args: object) -> dict:
    return {"name": "x", "data": {"source": "s"}, "model": {"name": name, "args": args, "init_from": str(init_from)}}


def test_init_from_copies_every_weight(tmp_path: Path) -> None:
    torch.manual_seed(1)
    saved = create_model("encoder_forecaster_tiny", hidden_channels=[4, 4])
    saved.save_pretrained(tmp_path / "model")
    torch.manual_seed(2)  # a fresh initialisation differs: the copy must replace it
    recipe = recipe_from_dict(_recipe("encoder_forecaster_tiny", tmp_path / "model", hidden_channels=[4, 4]))
    model = build_model(recipe)
    expected = saved.state_dict()
    assert expected.keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected[key]), key


def test_init_from_refuses_another_network(tmp_path: Path) -> None:
    create_model("encoder_forecaster_tiny", hidden_channels=[4, 4]).save_pretrained(tmp_path / "model")
    recipe = recipe_from_dict(_recipe("encoder_forecaster_tiny", tmp_path / "model", hidden_channels=[4, 8]))
    with pytest.raises(RecipeError, match=r"model.init_from .*model holds a EncoderForecaster that does not fit"):
        build_model(recipe)
    with pytest.raises(RecipeError, match="does not fit the recipe's FCLSTM"):
        build_model(recipe_from_dict(_recipe("fc_lstm_tiny", tmp_path / "model")))
    with pytest.raises(FileNotFoundError, match=r"missing. not found: neither a directory written by save_pretrained"):
        build_model(recipe_from_dict(_recipe("fc_lstm_tiny", tmp_path / "missing")))


def test_numbers_yaml_reads_as_strings_reach_the_task_model_and_data_as_floats() -> None:
    # YAML 1.1 reads 1e-3 as a string; each receiver's signature says a float is meant.
    recipe = load_recipe("demo", ["task.args.lr=1e-3", "model.args.initial_mean=5e-1", "data.args.speed=25E-2"])
    model = build_model(recipe)
    assert model.config.initial_mean == 0.5
    task = build_task(recipe, model)
    assert task.optimization.lr == 0.001 and isinstance(task.optimization.lr, float)
    assert build_dataset(recipe, "train").speed == 0.25


def test_flat_optimisation_settings_replace_those_of_the_tasks_own_config() -> None:
    recipe = load_recipe(
        "segmentation",
        ["task.args.lr_schedule=multistep", "task.args.lr_milestones=[3, 8]", "task.args.weight_decay=1e-4"],
    )
    task = build_task(recipe, build_model(recipe))
    assert task.optimization == dataclasses.replace(
        inspect.signature(type(task)).parameters["optimization"].default,  # the task's default learning rate kept
        lr_schedule="multistep",
        lr_milestones=(3, 8),
        weight_decay=1e-4,
    )
    unordered = load_recipe("segmentation", ["task.args.lr_milestones=[8, 3]"])
    model = build_model(unordered)
    with pytest.raises(ValueError, match=r"^lr_milestones must be increasing epochs >= 1, got \(8, 3\)$"):
        build_task(unordered, model)


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("task.args.lr=fast", r"^task.args.lr must be float, got 'fast'$"),
        ("model.args.initial_mean=1e-3x", r"^model.args.initial_mean must be float or null, got '1e-3x'$"),
        ("data.args.speed=[1]", r"^data.args.speed must be float, got \[1\]$"),
    ],
)
def test_a_value_that_is_not_the_declared_type_names_the_key(override: str, match: str) -> None:
    with pytest.raises(RecipeError, match=match):
        _build_everything(load_recipe("demo", [override]))


def _build_everything(recipe: Recipe) -> None:
    build_task(recipe, build_model(recipe))
    build_dataset(recipe, "train")


def _defaults(receiver: Callable[..., Any]) -> dict[str, Any]:
    return {n: p.default for n, p in inspect.signature(receiver).parameters.items() if p.default is not p.empty}


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_every_source_reads_its_own_defaults(source: str) -> None:
    cls = source_class(source)
    read_arguments(cls, _defaults(cls), "data.args")  # the annotations resolve and agree with the defaults


@pytest.mark.parametrize("kind", sorted(TASK_KINDS))
def test_every_task_reads_its_own_defaults(kind: str) -> None:
    cls = TASK_KINDS[kind].training_system
    read_arguments(cls, _defaults(cls), "task.args")


@pytest.mark.parametrize("name", list_models())
def test_every_model_reads_its_own_defaults(name: str) -> None:
    cls = family_class(model_family(name))
    read_arguments(model_builder(name), _defaults(cls), "model.args", kwargs_to=cls)
