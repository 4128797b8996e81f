from pathlib import Path

import pytest

from convlstm.experiment import RecipeError, list_recipes, load_recipe, recipe_from_dict, recipe_help

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
            r"recipe.trainer.val_check_interval must be >= 1 training steps, or null; got 0",
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
