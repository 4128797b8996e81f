"""Malformed recipes and arguments for the `convlstm` command: wrong YAML types for every known key, unknown keys,
broken YAML, bad overrides and values that a type cannot rule out. Each ends with exit code 2 and a one-line
error that names the problem, before any training starts; none ends in a traceback."""

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convlstm.cli.main import main
from convlstm.experiment import Recipe, RecipeError, RunDir, load_recipe, recipe_from_dict
from convlstm.experiment.recipe import recipe_source

FUZZ = settings(max_examples=50, deadline=5000, suppress_health_check=[HealthCheck.too_slow], derandomize=True)

DEMO = yaml.safe_load(recipe_source("demo")[0])
TINY = [
    "trainer.max_steps=1",
    "trainer.max_minutes=null",
    "trainer.enable_progress_bar=false",
    "data.train_sequences=4",
    "data.val_sequences=4",
    "data.batch_size=4",
    "data.context_frames=2",
    "data.target_frames=1",
    "model.args.hidden_channels=[4]",
    "model.args.default_horizon=1",
]


def _matches(value: Any, hint: Any) -> bool:
    """An independent reading of the recipe's type hints: does ``value`` fit ``hint``?"""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, option) for option in typing.get_args(hint))
    if origin is Literal:
        return value in typing.get_args(hint)
    if origin is list:
        return isinstance(value, list) and all(_matches(v, typing.get_args(hint)[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is Any:
        return True
    return isinstance(value, hint)


def _leaf_keys() -> list[tuple[str, Any]]:
    """("section.key", type hint) for every leaf of a recipe, and ("key", hint) for the top-level values."""
    keys = []
    hints = typing.get_type_hints(Recipe)
    for section in dataclasses.fields(Recipe):
        hint = hints[section.name]
        if dataclasses.is_dataclass(hint):
            section_hints = typing.get_type_hints(hint)
            keys += [(f"{section.name}.{f.name}", section_hints[f.name]) for f in dataclasses.fields(hint)]
        else:
            keys.append((section.name, hint))
    return keys


KEYS = _leaf_keys()
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.lists(st.one_of(st.integers(), st.text(max_size=3)), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def _with(raw: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    recipe = yaml.safe_load(yaml.safe_dump(raw))
    node = recipe
    *path, last = key.split(".")
    for part in path:
        node = node.setdefault(part, {})
    node[last] = value
    return recipe


@FUZZ
@given(key_and_hint=st.sampled_from(KEYS), value=VALUES)
def test_wrong_types_for_known_keys_are_refused(key_and_hint: tuple[str, Any], value: Any) -> None:
    key, hint = key_and_hint
    if _matches(value, hint):
        return  # a value of the right type: the next tests cover values a type cannot rule out
    with pytest.raises(RecipeError) as error:
        recipe_from_dict(_with(DEMO, key, value), origin="recipe.yaml")
    assert key.split(".")[-1] in str(error.value)


@FUZZ
@given(
    where=st.sampled_from(["", "data.", "model.", "task.", "trainer.", "evaluate."]),
    name=st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12),
    value=VALUES,
)
def test_unknown_keys_are_refused(where: str, name: str, value: Any) -> None:
    section = DEMO if not where else DEMO.get(where[:-1], {})
    known = {f.name for f in dataclasses.fields(Recipe)} if not where else set(section) | _section_fields(where[:-1])
    if name in known:
        return
    with pytest.raises(RecipeError, match=f"unknown keys \\['{name}'\\]"):
        recipe_from_dict(_with(DEMO, where + name, value))


def _section_fields(section: str) -> set[str]:
    hint = typing.get_type_hints(Recipe)[section]
    return {f.name for f in dataclasses.fields(hint)}


@FUZZ
@given(text=st.one_of(st.text(max_size=60), st.binary(max_size=60).map(lambda b: b.decode("latin-1"))))
def test_any_text_is_a_recipe_or_a_recipe_error(text: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("recipe") / "recipe.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    try:
        load_recipe(path)
    except RecipeError as error:
        _assert_mentions(error, str(path))


@FUZZ
@given(override=st.text(max_size=30))
def test_any_override_is_applied_or_refused(override: str) -> None:
    try:
        load_recipe("demo", [override])
    except RecipeError as error:
        _assert_mentions(error, "override")


def _assert_mentions(error: Exception, text: str) -> None:
    assert text in str(error), str(error)


def test_undecodable_recipe_files_name_themselves(tmp_path: Path) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(RecipeError, match=r"recipe.yaml is not valid YAML"):
        load_recipe(path)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.batch_size=0", "batch_size must be an int >= 1, got 0"),
        ("data.eval_batch_size=0", "eval_batch_size must be an int >= 1, got 0"),
        ("data.num_workers=-1", "num_workers must be an int >= 0, got -1"),
        ("data.context_frames=-1", "context_frames must be an int >= 1"),
        ("data.source=nope", "data source must be one of"),
        ("data.args.foo=1", "data.args ['foo'] are not arguments of BouncingBalls"),
        ("model.name=nope", "unknown model name 'nope'"),
        ("model.args.foo=1", "model.args"),
        ("model.args.kernel_size=0", "kernel_size must be an int >= 1"),
        ("model.args.hidden_channels=[]", "hidden_channels must be a non-empty list"),
        ("model.args.hidden_channels=[100000000]", "would hold"),
        ("task.kind=nope", "task.kind must be one of"),
        ("task.args.foo=1", "task.args ['foo'] are not arguments of ForecastingTask"),
        ("task.args.loss=nope", "loss must be one of"),
        ("task.args.lr=-1", "lr must be a finite number > 0"),
        ("trainer.max_epochs=-5", "max_epochs"),
        ("trainer.devices=0", "devices=0"),
        ("trainer.num_nodes=0", "num_nodes"),
        ("trainer.precision=garbage", "Precision 'garbage' is invalid"),
        ("trainer.accelerator=garbage", "invalid accelerator name"),
        ("trainer.limit_train_batches=-1", "limit_train_batches"),
        ("trainer.gradient_clip_val=-1", "gradient_clip_val must be a finite number > 0"),
        ("trainer.early_stopping_patience=-1", "early_stopping_patience must be an int >= 0"),
        ("trainer.max_minutes=-1", "max_minutes must be in (0.0, "),
        ("trainer.max_minutes=.inf", "max_minutes must be in (0.0, "),
        ("trainer.max_minutes=.nan", "max_minutes must be in (0.0, "),
        ("trainer.limit_train_batches=.nan", "limit_train_batches"),
        ("seed=-1", "seed must be an int in [0, 4294967295]"),
        ("seed=4294967296", "seed must be an int in [0, 4294967295]"),
        ("name=../elsewhere", "must be a plain directory name"),
    ],
)
def test_values_a_type_cannot_rule_out_end_in_exit_code_2(
    override: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    overrides = [part for o in [*TINY, override] for part in ("-o", o)]
    run = tmp_path / "run"
    assert main(["fit", "-c", "demo", "--run-dir", str(run), *overrides]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("convlstm fit: error: ")]
    assert len(lines) == 1 and message in lines[0], lines
    assert not (run / "checkpoints").exists()  # refused before any training


@pytest.mark.parametrize("override", ["no_equals_sign", "=1", "data.batch_size=[1, 2", "name.inner=1", "data..x=1"])
def test_bad_overrides_end_in_exit_code_2(override: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    command = ["fit", "-c", "demo", "--run-dir", str(tmp_path / "run"), "-o", override]
    assert main(command) == 2
    assert "error:" in capsys.readouterr().err


def test_commands_on_a_missing_run_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "missing")
    for command in (
        ["test", "--run-dir", missing],
        ["evaluate", "--run-dir", missing],
        ["export", "--run-dir", missing, "--output", str(tmp_path / "out")],
        ["predict", "--run-dir", missing, "--input", "x.npy", "--output", str(tmp_path / "out")],
        ["fit", "-c", str(tmp_path / "missing.yaml")],
    ):
        assert main(command) == 2
        assert "not found" in capsys.readouterr().err


@pytest.mark.parametrize(
    "contents",
    [b"", b"\x93NUMPY garbage", np.array(["a", "b"]), np.zeros((2, 3), dtype="complex64"), np.zeros((3, 4)), None],
)
def test_predict_refuses_bad_input_files(contents: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = RunDir(tmp_path / "run")
    run.create(load_recipe("demo"), resume=False)  # predict checks its input before the model
    source = tmp_path / "input.npy"
    if contents is None:
        np.save(source, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif isinstance(contents, bytes):
        source.write_bytes(contents)
    else:
        np.save(source, contents)
    command = ["predict", "--run-dir", str(run.path), "--input", str(source), "--output", str(tmp_path / "out")]
    assert main(command) == 2
    assert str(source) in capsys.readouterr().err
