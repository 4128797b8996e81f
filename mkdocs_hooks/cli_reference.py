"""An mkdocs hook: the per-command reference of docs/reference/cli.md, generated from the ``convlstm`` parser.

The page holds the marker ``<!-- cli-reference -->``; at build time it is replaced by one section per command
(usage, description, a table of its arguments, and for ``fit`` the recipe keys), so the reference cannot drift
from ``convlstm COMMAND --help``.
"""

import argparse
import sys
from pathlib import Path
from typing import Any

MARKER = "<!-- cli-reference -->"
PAGE = "reference/cli.md"
# argparse wraps usage lines to the terminal; a fixed width (the page's code column) keeps them the same anywhere.
USAGE_WIDTH = 80


def subcommands(parser: argparse.ArgumentParser) -> dict[str, tuple[str, argparse.ArgumentParser]]:
    """Command name -> (its one-line help, its parser), in the order ``convlstm --help`` lists them."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            return {name: (helps.get(name, ""), sub) for name, sub in action.choices.items()}
    raise ValueError(f"parser {parser.prog!r} has no subcommands")


def _text(text: str) -> str:
    """Help text as Markdown that shows it as written: ``<name>`` is not an HTML tag."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cell(text: str) -> str:
    return _text(text).replace("|", "\\|").replace("\n", " ")


def _argument(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest}`"
    if action.nargs == 0:
        return ", ".join(f"`{option}`" for option in action.option_strings)
    metavar = action.metavar or action.dest.upper()
    shown = " ".join(metavar) if isinstance(metavar, tuple) else metavar
    if action.nargs in ("+", "*"):
        shown = f"{shown} ..."
    return ", ".join(f"`{option} {shown}`" for option in action.option_strings)


def _meaning(action: argparse.Action) -> str:
    parts = [action.help or ""]
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        parts.append("one of " + ", ".join(f"`{choice}`" for choice in action.choices))
    if action.required and action.option_strings:
        parts.append("required")
    return _cell("; ".join(part for part in parts if part))


def _usage(parser: argparse.ArgumentParser) -> str:
    formatter = argparse.HelpFormatter(parser.prog, width=USAGE_WIDTH)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return formatter.format_help().strip().removeprefix("usage: ")


def _table(actions: list[argparse.Action]) -> list[str]:
    rows = ["| argument | meaning |", "|---|---|"]
    rows += [f"| {_argument(action)} | {_meaning(action)} |" for action in actions]
    return rows


def command_reference(parser: argparse.ArgumentParser) -> str:
    """Markdown: one section per command, with its usage and a table of its arguments."""
    general = [action for action in parser._actions if action.option_strings]
    lines = [
        "## Options of every command",
        "",
        f"`{parser.prog} [OPTIONS] COMMAND ...`: the options before the command are",
        "",
        *_table(general),
        "",
        "Each command's own arguments follow, as `convlstm COMMAND --help` prints them.",
        "",
    ]
    for name, (summary, sub) in subcommands(parser).items():
        lines += [f"### `convlstm {name}` {{#convlstm-{name}}}", "", _text(summary[:1].upper() + summary[1:]) + "."]
        if sub.description:
            lines += ["", _text(sub.description)]
        lines += ["", "```text", _usage(sub), "```", ""]
        for group in sub._action_groups:
            actions = [action for action in group._group_actions if not isinstance(action, argparse._HelpAction)]
            if not actions:
                continue
            if group.title not in ("positional arguments", "options", "optional arguments"):
                about = f": {_text(group.description)}." if group.description else ""
                lines += [f"**{_text(group.title or '')}**{about}", ""]
            lines += [*_table(actions), ""]
        if sub.epilog:
            lines += ['??? note "Recipe keys"', "", "    ```text"]
            lines += [f"    {line}" if line.strip() else "" for line in sub.epilog.strip().splitlines()]
            lines += ["    ```", ""]
    return "\n".join(lines)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """mkdocs' hook: fills the marker of the CLI page."""
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"{PAGE} must hold the marker {MARKER!r}, where the command reference goes")
    # The checkout's sources, not an installed copy of another checkout.
    src = str(Path(config["config_file_path"]).resolve().parent / "src")
    if src not in sys.path:
        sys.path.insert(0, src)
    from convlstm.cli.main import build_parser

    return markdown.replace(MARKER, command_reference(build_parser()))
