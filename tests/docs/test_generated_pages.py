"""The parts of the site generated at build time by mkdocs_hooks/: the per-command CLI reference from the parser,
and the model table from the registry. tests/docs/test_site.py checks the same on the built pages."""

import argparse
import importlib.util
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

import convlstm
from convlstm.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]


def hook(name: str) -> ModuleType:
    """A hook module, loaded from its file as mkdocs loads it."""
    spec = importlib.util.spec_from_file_location(f"hook_{name}", ROOT / "mkdocs_hooks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def page(src_uri: str) -> SimpleNamespace:
    return SimpleNamespace(file=SimpleNamespace(src_uri=src_uri))


CONFIG = {"config_file_path": str(ROOT / "mkdocs.yml")}


def test_every_command_and_option_is_in_the_cli_reference() -> None:
    cli = hook("cli_reference")
    parser = build_parser()
    markdown = cli.command_reference(parser)
    commands = cli.subcommands(parser)
    assert set(commands) >= {"fit", "evaluate", "predict", "nowcast", "export", "list-models", "demo", "test"}
    for name, (_, sub) in commands.items():
        assert f"### `convlstm {name}` {{#convlstm-{name}}}" in markdown
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            for option in action.option_strings or [action.metavar or action.dest]:
                assert f"`{option}" in markdown, f"convlstm {name}: {option} is missing from the reference"
    assert "recipe keys" in markdown  # fit's epilog: every key a recipe takes


def test_the_cli_page_holds_the_marker_and_the_hook_fills_it() -> None:
    cli = hook("cli_reference")
    text = (ROOT / "docs" / cli.PAGE).read_text(encoding="utf-8")
    assert text.count(cli.MARKER) == 1
    filled = cli.on_page_markdown(text, page(cli.PAGE), CONFIG, None)
    assert cli.MARKER not in filled
    assert "#convlstm-nowcast" in filled
    assert cli.on_page_markdown("other", page("index.md"), CONFIG, None) == "other"
    with pytest.raises(ValueError, match="marker"):
        cli.on_page_markdown("# no marker", page(cli.PAGE), CONFIG, None)


def test_the_cli_reference_notices_a_new_option() -> None:
    cli = hook("cli_reference")
    parser = build_parser()
    _, fit = cli.subcommands(parser)["fit"]
    fit.add_argument("--brand-new", choices=["a", "b"], help="something new")
    assert "| `--brand-new BRAND_NEW` | something new; one of `a`, `b` |" in cli.command_reference(parser)


def test_every_registered_model_is_in_the_model_table() -> None:
    table = hook("model_table").model_table()
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    names = [row.split("`")[1] for row in rows]
    assert names == sorted(convlstm.list_models())
    for required in ("shi2017_hko7_trajgru", "trajgru_radar_small", "steps", "extrapolation_nowcast"):
        assert required in names
    assert all(row.count(" | ") == 3 and not row.endswith("|  |") for row in rows)  # a description in every row


def test_the_model_page_holds_the_marker_and_the_hook_fills_it() -> None:
    models = hook("model_table")
    text = (ROOT / "docs" / models.PAGE).read_text(encoding="utf-8")
    assert text.count(models.MARKER) == 1
    filled = models.on_page_markdown(text, page(models.PAGE), CONFIG, None)
    assert models.MARKER not in filled
    assert "| `trajgru_radar_small` | trajgru_forecaster |" in filled
    with pytest.raises(ValueError, match="marker"):
        models.on_page_markdown("# no marker", page(models.PAGE), CONFIG, None)
