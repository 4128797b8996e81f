"""The README stays a short front page: under 10 KB, its links resolve, and its headline results are the results
page's (so one cannot drift from the other). Its examples run in test_examples.py."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def table_rows(text: str, header: str) -> list[str]:
    """The rows of the Markdown table whose header line starts with ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def test_readme_is_under_10_kb() -> None:
    assert README.stat().st_size < 10_000


def test_readme_starts_with_the_two_setup_commands() -> None:
    first_block = re.search(r"```(\w*)\n(.*?)```", README.read_text(), flags=re.S)
    assert first_block is not None
    assert first_block.group(1) == "bash"
    assert [line.split()[:2] for line in first_block.group(2).splitlines()] == [["make", "demo"], ["make", "test"]]


def test_readme_links_and_images_resolve() -> None:
    text = README.read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [target for target in targets if "://" not in target]
    assert len(local) >= 5
    missing = [target for target in local if not (ROOT / target).exists()]
    assert missing == []
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(images) == 1
    assert (ROOT / images[0]).stat().st_size < 300_000


def test_headline_results_match_the_results_page() -> None:
    header = "| application | ours | reference | measured | command |"
    readme_rows = table_rows(README.read_text(), header)
    assert len(readme_rows) >= 5
    assert all(re.search(r"\| 20\d\d-\d\d-\d\d \|", row) for row in readme_rows)  # each row has its date
    assert readme_rows == table_rows((ROOT / "docs" / "results" / "index.md").read_text(), header)


def test_docs_images_are_small() -> None:
    sizes = {path.name: path.stat().st_size for path in (ROOT / "docs" / "images").iterdir()}
    assert sizes
    assert {name: size for name, size in sizes.items() if size >= 300_000} == {}
