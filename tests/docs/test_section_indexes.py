"""Every page of a section of the site is linked from the section's index page, so a reader who lands on the index
finds all of it (the nav lists the pages too, but the index is where each gets its one-line description)."""

import posixpath
import re
from collections.abc import Callable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(([^)\s#]+\.md)(?:#[^)]*)?\)")


def nav_sections(nav: list) -> dict[str, list[str]]:
    """Section title -> its pages (nested ones included), the index first, from the nav of mkdocs.yml."""

    def pages(entries: list) -> list[str]:
        found = []
        for entry in entries:
            value = next(iter(entry.values())) if isinstance(entry, dict) else entry
            found += pages(value) if isinstance(value, list) else [value]
        return found

    return {
        title: pages(value)
        for entry in nav
        if isinstance(entry, dict)
        for title, value in entry.items()
        if isinstance(value, list)
    }


def linked_pages(index: str, text: str) -> set[str]:
    """The pages (paths relative to docs/) that the Markdown ``text`` of the page ``index`` links to."""
    folder = posixpath.dirname(index)
    return {posixpath.normpath(posixpath.join(folder, target)) for target in LINK.findall(text)}


def unlinked(sections: dict[str, list[str]], read: Callable[[str], str]) -> dict[str, list[str]]:
    """Section -> the pages its index (the first page) does not link to."""
    missing = {}
    for title, pages in sections.items():
        index, rest = pages[0], pages[1:]
        links = linked_pages(index, read(index))
        if absent := [page for page in rest if page not in links]:
            missing[title] = absent
    return missing


def test_every_section_index_links_its_pages() -> None:
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)
    sections = nav_sections(config["nav"])
    assert set(sections) >= {"Tutorials", "How-to guides", "Explanation", "Reference", "Results"}
    assert all(pages[0].endswith("index.md") for pages in sections.values())
    assert unlinked(sections, lambda page: (ROOT / "docs" / page).read_text(encoding="utf-8")) == {}


def test_the_check_finds_an_unlinked_page() -> None:
    nav = [
        {"Home": "index.md"},
        {"Guides": ["guides/index.md", {"A": "guides/a.md"}, {"More": [{"B": "guides/deep/b.md"}]}, {"D": "d.md"}]},
    ]
    sections = nav_sections(nav)
    assert sections == {"Guides": ["guides/index.md", "guides/a.md", "guides/deep/b.md", "d.md"]}
    index = "| [A](a.md) | ... |\nSee [the design](../d.md#top)."
    assert unlinked(sections, lambda page: index) == {"Guides": ["guides/deep/b.md"]}
