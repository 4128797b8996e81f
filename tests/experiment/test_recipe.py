import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pytest

from convlstm.experiment import RecipeError, list_recipes, load_recipe, recipe_from_dict, recipe_help
from convlstm.experiment.recipe import read_arguments

RECIPES = list_recipes()


def test_the_packaged_recipes_are_found() -> None:
    assert "demo" in RECIPES and len(RECIPES) >= 10


@pytest.mark.parametrize("name", RECIPES)
def test_every_shipped_recipe_loads_by_name(name: str) -> None:
    recipe = load_recipe(name)
    assert recipe.name and recipe.data.source and recipe.model.name


def test_a_recipe_file_loads_by_path_too(tmp_path: Path) -> None:
    from convlstm.experiment.recipe import recipe_source

    path = tmp_path / "mine.yaml"
    path.write_text(recipe_source("demo")[0])
    assert load_recipe(path) == load_recipe("demo")
    with pytest.raises(FileNotFoundError, match="packaged recipes"):
        load_recipe("no_such_recipe")
    with pytest.raises(FileNotFoundError, match=r"missing\.yaml"):
        load_recipe(tmp_path / "missing.yaml")


def test_recipes_cover_every_application() -> None:
    sources = {load_recipe(p).data.source for p in RECIPES}
    assert {"moving_mnist", "bouncing_balls", "radar", "shapes", "anomalies", "kitti_hickle", "video"} <= sources


def test_overrides_are_parsed_as_yaml(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("name: x\ndata: {source: moving_mnist}\nmodel: {name: persistence}\n")
    recipe = load_recipe(path, ["trainer.max_epochs=3", "model.args.hidden_channels=[8, 8]", "trainer.precision=null"])
    assert recipe.trainer.max_epochs == 3
    assert recipe.model.args == {"hidden_channels": [8, 8]}
    assert recipe.trainer.precision is None


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ({"name": "x", "data": {"source": "s"}}, r"recipe.model is required"),
        (
            {"name": "x", "data": {"source": "s", "batch": 3}, "model": {"name": "m"}},
            r"recipe.data: unknown keys \['batch'\]",
        ),
        (
            {"name": "x", "data": {"source": "s", "batch_size": "8"}, "model": {"name": "m"}},
            r"recipe.data.batch_size must be int, got '8'",
        ),
        (
            {"name": "x", "data": {"source": "s"}, "model": {"name": "m"}, "task": {"kind": "magic"}},
            r"recipe.task.kind must be one of",
        ),
        (
            {"name": "x", "data": {"source": "s"}, "model": {"name": "m"}, "trainer": {"max_minutes": True}},
            "max_minutes must be float or null",
        ),
        (
            {"name": "x", "data": {"source": "s"}, "model": {"name": "m"}, "trainer": {"val_check_interval": 0}},
            r"^recipe.trainer.val_check_interval must be an int >= 1, got 0; null: after every epoch$",
        ),
        (
            {"name": "x", "data": {"source": "s"}, "model": {"name": "m"}, "trainer": {"save_top_k": -2}},
            r"^recipe.trainer.save_top_k must be an int >= -1, got -2$",
        ),
        (
            {"name": "x", "data": {"source": "s"}, "model": {"name": "m"}, "trainer": {"max_minutes": 0}},
            r"^recipe.trainer.max_minutes must be in \(0.0, 1000000000.0\], got 0.0; null: no time limit$",
        ),
        (
            {"name": "x", "data": {"source": "s"}, "model": {"name": "m"}, "seed": 2**32},
            r"^recipe.seed must be an int in \[0, 4294967295\], got 4294967296$",
        ),
        (
            {"name": "x", "data": {"source": "s"}, "model": {"name": "m"}, "evaluate": {"extra_metrics": ["ssim2"]}},
            r"recipe.evaluate.extra_metrics must be distinct names from .*bce_per_sequence.*got \['ssim2'\]",
        ),
        (
            {"name": "x", "data": {"source": "s"}, "model": {"name": "m"}, "evaluate": {"extra_metrics": ["b_mse"]}},
            r"b_mse and b_mae need evaluate.rain_thresholds",
        ),
    ],
)
def test_bad_recipes_name_the_key(raw: dict, match: str) -> None:
    with pytest.raises(RecipeError, match=match):
        recipe_from_dict(raw)


def test_bad_files_and_overrides(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"recipe .*missing\.yaml not found"):
        load_recipe(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(RecipeError, match="is not valid YAML"):
        load_recipe(bad)
    code = tmp_path / "code.yaml"
    code.write_text("name: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(RecipeError, match="is not valid YAML"):  # safe_load refuses Python objects
        load_recipe(code)
    good = tmp_path / "good.yaml"
    good.write_text("name: x\ndata: {source: s}\nmodel: {name: m}\n")
    with pytest.raises(RecipeError, match=r"an override must look like section\.key=value"):
        load_recipe(good, ["trainer.max_epochs"])


def test_help_explains_every_key() -> None:
    text = recipe_help()
    for key in (
        "data.source",
        "data.batch_size",
        "model.name",
        "task.kind",
        "trainer.max_minutes",
        "trainer.val_check_interval",
        "evaluate.baselines",
    ):
        assert key in text


def test_numbers_without_a_dot_are_floats_where_a_float_is_expected(tmp_path: Path) -> None:
    # YAML 1.1 (PyYAML) reads 1e-3, 1E-3, 5e+2 and -.5 as strings; the recipe's types read them as numbers.
    path = tmp_path / "r.yaml"
    path.write_text("name: x\ndata: {source: s}\nmodel: {name: m}\n")
    overrides = ["trainer.gradient_clip_val=1E-3", "trainer.max_minutes=5e-1", "evaluate.rain_thresholds=[5e+2, -.5]"]
    recipe = load_recipe(path, overrides)
    assert recipe.trainer.gradient_clip_val == 0.001 and isinstance(recipe.trainer.gradient_clip_val, float)
    assert recipe.trainer.max_minutes == 0.5
    assert recipe.evaluate.rain_thresholds == [500.0, -0.5]
    with pytest.raises(RecipeError, match=r"recipe.trainer.gradient_clip_val must be float or null, got '1e-3x'"):
        recipe_from_dict(
            {"name": "x", "data": {"source": "s"}, "model": {"name": "m"}, "trainer": {"gradient_clip_val": "1e-3x"}}
        )


def _receiver(
    name: str,
    lr: float,
    clip: float | None = None,
    limit: int | float = 1,
    weights: Sequence[float] = (),
    pair: tuple[float, float] = (0.0, 1.0),
    mode: Literal["a", "b"] = "a",
    path: str | os.PathLike[str] = ".",
    anything: Any = None,
    plain=None,
    **rest: Any,
) -> None:
    """A parameter of every kind a recipe feeds."""


def _model_class(*, scale: float = 1.0, hidden: int | Sequence[int] = 8) -> None:
    """What the keyword arguments of :func:`_builder` go to."""


def _builder(*, depth: int = 1, **overrides: Any) -> None:
    """A builder that passes its overrides on to :func:`_model_class`."""


def test_arguments_are_read_as_the_receiver_declares() -> None:
    args = {
        "name": "1e-3",  # a string parameter keeps a string
        "lr": "1e-3",
        "clip": "5e+2",
        "limit": "1E-3",
        "weights": [1, "-.5", 2.5],
        "pair": ["1e-1", 1],
        "mode": "b",
        "path": "1e-3",
        "anything": "1e-3",
        "plain": "1e-3",
        "other": "1e-3",  # taken by **rest
    }
    read = read_arguments(_receiver, args, "task.args")
    assert read == {**args, "lr": 0.001, "clip": 500.0, "limit": 0.001, "weights": [1.0, -0.5, 2.5], "pair": [0.1, 1.0]}
    assert all(type(v) is float for v in (read["lr"], read["clip"], read["limit"], *read["weights"], *read["pair"]))
    assert read_arguments(_receiver, {"limit": 3}, "task.args") == {"limit": 3}  # an int stays an int where one fits
    forwarded = read_arguments(
        _builder, {"depth": 2, "scale": "1e-1", "hidden": [4, 4]}, "model.args", kwargs_to=_model_class
    )
    assert forwarded == {"depth": 2, "scale": 0.1, "hidden": [4, 4]}
    assert read_arguments(_builder, {"scale": "1e-1"}, "model.args") == {"scale": "1e-1"}  # nowhere to look


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ({"lr": "fast"}, r"task.args.lr must be float, got 'fast'"),
        ({"lr": True}, r"task.args.lr must be float, got True"),
        ({"clip": "fast"}, r"task.args.clip must be float or null, got 'fast'"),
        ({"weights": [1, "x"]}, r"task.args.weights\[1\] must be float, got 'x'"),
        ({"weights": "1e-3"}, r"task.args.weights must be a list of float, got '1e-3'"),
        ({"pair": [1, 2, 3]}, r"task.args.pair must be a list of \[float, float\], got \[1, 2, 3\]"),
        ({"mode": "c"}, r"task.args.mode must be one of \['a', 'b'\], got 'c'"),
        ({"name": 3}, r"task.args.name must be str, got 3"),
    ],
)
def test_arguments_of_the_wrong_type_name_the_key_the_value_and_the_type(args: dict, match: str) -> None:
    with pytest.raises(RecipeError, match=match):
        read_arguments(_receiver, args, "task.args")
