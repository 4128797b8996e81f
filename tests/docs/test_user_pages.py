"""The README and the documentation pages are written for users: no notes about how the work was done, and every
results page says on one line when, on what machine and with what command its numbers were measured."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
RESULTS = sorted(page for page in (ROOT / "docs" / "results").glob("*.md") if page.name != "index.md")

# Text that belongs in commit messages or CONTRIBUTING.md, not on a page a user reads.
LAB_NOTEBOOK = {
    "the output folder of a lent machine": re.compile(r"\$OUT\b"),
    "a load average": re.compile(r"load average", re.I),
    "a lent machine": re.compile(r"\blent\b", re.I),
    "git's local excludes": re.compile(r"\.git/info/exclude"),
    "a folder of wheels for offline machines": re.compile(r"\.whl/"),
    "an issue or ticket": re.compile(r"\bissues?\b(?! *#)|\bissue *#\d+|\bticket\b", re.I),
    "the session that did the work": re.compile(r"\bthis session\b|\bsession's time\b", re.I),
    "a copy of an earlier commit": re.compile(r"previous commit", re.I),
    "a machine only the authors know": re.compile(r"this project's (\d-core )?(cpu|machine)", re.I),
    "notes for the page's editors": re.compile(r"^#+ Editing these pages", re.I | re.M),
}

MEASURED = re.compile(
    r"Measured (?P<date>20\d\d-\d\d-\d\d).*?on (a |an )?(?P<cores>\d+)-core (?P<cpu>Intel Xeon|AMD EPYC|[A-Z][\w ]+?) "
    r"CPU.*`(?P<command>[^`]+)`"
)


def notebook_text(text: str) -> list[str]:
    """What of ``text`` reads as a lab notebook, as ``line: what``."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        found += [f"{number}: {what}" for what, pattern in LAB_NOTEBOOK.items() if pattern.search(line)]
    return found


def measured_lines(text: str) -> list[re.Match[str]]:
    """The lines naming a date, a CPU with its cores and a command, as ``Measured DATE on a N-core CPU ... `cmd```."""
    return [match for line in text.splitlines() if (match := MEASURED.search(line))]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_no_lab_notebook_text(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)  # code may name anything (pysteps' issuetime)
    assert notebook_text(text) == []


@pytest.mark.parametrize("page", RESULTS, ids=lambda page: page.name)
def test_results_page_names_date_machine_and_command(page: Path) -> None:
    found = measured_lines(page.read_text(encoding="utf-8"))
    assert found, f"{page.name} has no line 'Measured YYYY-MM-DD on a N-core <CPU model> CPU ... `command`'"


def test_the_results_pages_are_all_checked() -> None:
    assert {page.stem for page in RESULTS} >= {"applications", "ablations", "speed", "real-radar", "real-video"}


def test_the_checks_can_fail() -> None:
    notebook = (
        "Copied to $OUT on the lent GPU machine, load average 12.\n"
        "The issue that asked for it; this session's time ran out.\n"
        "On this project's 2-core CPU.\n## Editing these pages\n"
    )
    assert notebook_text(notebook) == [
        "1: the output folder of a lent machine",
        "1: a load average",
        "1: a lent machine",
        "2: an issue or ticket",
        "2: the session that did the work",
        "3: a machine only the authors know",
        "4: notes for the page's editors",
    ]
    assert notebook_text("pysteps' issuetime and a fresh session of training") == []
    line = "Measured 2026-12-06 on a 2-core AMD EPYC CPU, no GPU, with `python benchmarks/cpu_precision.py`."
    (match,) = measured_lines(f"intro\n{line}\nmore")
    assert match.group("date", "cores", "cpu", "command") == (
        "2026-12-06",
        "2",
        "AMD EPYC",
        "python benchmarks/cpu_precision.py",
    )
    assert measured_lines("Measured 2026-12-06 with `make demo` on this project's CPU.") == []
