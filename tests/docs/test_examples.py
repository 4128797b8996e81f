"""The examples of README.md and of the documentation pages run as written.

Convention: a fenced block runs in the tests when the line just above its opening fence is ``<!-- runnable -->``
(an HTML comment, invisible on GitHub and on the site). Blocks without the marker are shown, not run (commands that
need the user's files, or minutes of training).

- ```python blocks of one page run in order in one namespace, like the cells of a notebook, so a later block may
  use what an earlier one defined. They run in a fresh temporary directory with ``KERAS_BACKEND=torch``, and each
  must finish in seconds.
- ```bash blocks may hold only ``convlstm ...`` commands (with ``\\`` continuations), comments and blank lines.
  In CI each command is checked without training: its arguments are parsed by the real parser, and for
  ``convlstm fit`` the recipe is loaded with the command's overrides (an unknown key or a wrong type fails). Under
  ``-m slow`` the commands run too, through ``convlstm.cli.main.main``, in a temporary directory (recipes are named
  as the package ships them: ``-c demo``); ``convlstm fit`` then gets ``TINY_FIT`` appended (two
  optimizer steps on a handful of sequences), so the run checks the data layout and the pipeline, not the minutes
  of training.
"""

import os
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- runnable -->"
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])

TINY_FIT = [
    "-o", "trainer.max_steps=2",
    "-o", "trainer.max_epochs=null",
    "-o", "trainer.max_minutes=null",
    "-o", "trainer.enable_progress_bar=false",
    "-o", "data.train_sequences=4",
    "-o", "data.val_sequences=2",
    "-o", "data.test_sequences=2",
    "-o", "data.batch_size=2",
    "-o", "data.num_workers=0",
    "-o", "evaluate.num_sequences=2",
]  # fmt: skip

FENCE = re.compile(r"^(?P<marker><!-- runnable -->\n)?```(?P<lang>[\w-]*)[^\n]*\n(?P<code>.*?)^```\s*$", re.M | re.S)


def runnable_blocks(text: str) -> list[tuple[str, str, int]]:
    """(language, code, line number) of every block marked runnable, in page order."""
    blocks = []
    for match in FENCE.finditer(text):
        if match.group("marker"):
            line = text.count("\n", 0, match.start("code")) + 1
            blocks.append((match.group("lang"), match.group("code"), line))
    return blocks


def convlstm_commands(code: str) -> list[list[str]]:
    """The ``convlstm`` command lines of a bash block, as argument lists (without the program name)."""
    commands = []
    for line in code.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if words[0] != "convlstm":
            raise ValueError(f"a runnable bash block may hold only convlstm commands, got {line!r}")
        commands.append(words[1:])
    return commands


def _sized_for_ci(argv: list[str]) -> list[str]:
    if argv[:1] == ["fit"]:
        return [*argv, *TINY_FIT]
    if argv[:1] == ["demo"]:
        return [*argv, "--minutes", "0.05"]
    return argv


PAGES_WITH_EXAMPLES = [page for page in PAGES if runnable_blocks(page.read_text(encoding="utf-8"))]


def check_command(argv: list[str]) -> None:
    """Parses a ``convlstm`` command line as the program would, and loads a ``fit``'s recipe with its overrides."""
    from convlstm.cli import main as program

    args = program.build_parser().parse_args(argv)  # exits (SystemExit) on an unknown flag
    if args.command == "fit":
        program.load_recipe(args.config, args.override)


def run_page(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, run_commands: bool) -> None:
    from convlstm.cli.main import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(os.environ, "KERAS_BACKEND", "torch")
    namespace: dict[str, object] = {"__name__": "docs_example"}
    for lang, code, line in runnable_blocks(page.read_text(encoding="utf-8")):
        where = f"{page.relative_to(ROOT)}:{line}"
        if lang == "python":
            exec(compile("\n" * (line - 1) + code, str(page), "exec"), namespace)
        elif lang == "bash":
            for argv in convlstm_commands(code):
                if run_commands:
                    assert main(_sized_for_ci(argv)) == 0, f"{where}: convlstm {shlex.join(argv)} failed"
                else:
                    check_command(argv)
        else:
            raise ValueError(f"{where}: runnable blocks are python or bash, got {lang!r}")


@pytest.mark.parametrize("page", PAGES_WITH_EXAMPLES, ids=lambda page: str(page.relative_to(ROOT)))
def test_page_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_page(page, tmp_path, monkeypatch, run_commands=False)


PAGES_WITH_COMMANDS = [
    page for page in PAGES_WITH_EXAMPLES if any(lang == "bash" for lang, _, _ in runnable_blocks(page.read_text()))
]


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES_WITH_COMMANDS, ids=lambda page: str(page.relative_to(ROOT)))
def test_page_commands_run_end_to_end(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_page(page, tmp_path, monkeypatch, run_commands=True)


def test_a_wrong_command_is_caught_without_training(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        check_command(["fit", "-c", "demo", "--no-such-flag"])
    with pytest.raises(ValueError, match="no_such_key"):
        check_command(["fit", "-c", "demo", "-o", "trainer.no_such_key=1"])
    check_command(["evaluate", "--run-dir", str(tmp_path)])  # parsed only: the run need not exist


def test_the_readme_and_the_tutorials_have_runnable_examples() -> None:
    names = {str(page.relative_to(ROOT)) for page in PAGES_WITH_EXAMPLES}
    assert "README.md" in names
    assert sum(name.startswith("docs/tutorials/") for name in names) >= 5


def test_only_marked_blocks_are_collected() -> None:
    page = (
        f"```python\nnot_run()\n```\n\n{MARKER}\n```python\nrun()\n```\n\n"
        f"{MARKER}\n```bash\nconvlstm list-models\n```\n"
    )
    blocks = runnable_blocks(page)
    assert [(lang, code) for lang, code, _ in blocks] == [("python", "run()\n"), ("bash", "convlstm list-models\n")]
    assert blocks[0][2] == 7  # the code's first line in the page, so tracebacks point at it
    with pytest.raises(ValueError, match="only convlstm commands"):
        convlstm_commands("rm -rf runs\n")
    continued = "convlstm fit -c a.yaml \\\n  -o x=1  # comment\n"
    assert convlstm_commands(continued) == [["fit", "-c", "a.yaml", "-o", "x=1"]]
