"""The docstrings are written for mkdocstrings (Markdown, Google style), which renders the API reference.

Sphinx markup shows up raw there: a role (``:class:`X```) as literal text, an ``Example:`` section (griffe knows
only ``Examples:``) as nested block quotes, a reST literal block (``Usage::``) as a paragraph. These checks read
the sources, so they run without the docs extra; tests/docs/test_site.py checks the built pages with
``markup_problems``.
"""

import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "convlstm"
SPHINX_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|data|obj|exc|ref):`[^`]*`")
EXAMPLE_TITLE = re.compile(r"^\s*Example:\s*$")
LITERAL_BLOCK = re.compile(r"\S::$")


def source_problems(text: str, name: str) -> list[str]:
    """Sphinx roles, singular ``Example:`` titles and reST ``::`` blocks in a module's text, as ``name:line: ...``."""
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        for role in SPHINX_ROLE.findall(line):
            problems.append(f"{name}:{number}: Sphinx role {role}: write [`Name`][convlstm.package.Name]")
        if EXAMPLE_TITLE.match(line):
            problems.append(f"{name}:{number}: 'Example:' renders as block quotes: write 'Examples:'")
        if LITERAL_BLOCK.search(line.rstrip()) and not line.lstrip().startswith("#"):
            problems.append(f"{name}:{number}: reST literal block '::': use a fenced code block")
    return problems


def markup_problems(html: str) -> list[str]:
    """What a built page shows of markup that did not render: raw Sphinx roles, unresolved mkdocstrings links
    (``[`X`][a.b.X]`` left as text), ``>>>`` prompts outside code blocks, and the nested block quotes that an
    unparsed ``>>>`` line becomes."""
    text = re.sub(r"<pre\b.*?</pre>|<code\b.*?</code>", "", html, flags=re.DOTALL)  # code may show anything
    words = re.sub(r"<[^>]+>", "", text)
    problems = [f"raw Sphinx role {role}" for role in SPHINX_ROLE.findall(words)]
    problems += [f"unresolved link {link}" for link in re.findall(r"\]\[convlstm[\w.]*\]", text)]
    problems += ["a >>> prompt outside a code block"] * len(re.findall(r"&gt;&gt;&gt;|>>>", words))
    problems += ["nested block quotes (an unparsed >>> line)"] * len(re.findall(r"<blockquote>\s*<blockquote>", text))
    return problems


def test_docstrings_use_mkdocstrings_markup() -> None:
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        problems += source_problems(path.read_text(encoding="utf-8"), str(path.relative_to(SRC.parent)))
    assert problems == [], "\n".join(problems)


def test_the_source_check_finds_sphinx_markup() -> None:
    text = '''def f():
    """Calls :func:`~convlstm.g` and :meth:`Thing.run`, see [`h`][convlstm.h].

    Usage::

        f()

    Example:
        >>> f()
    """
'''
    problems = source_problems(text, "m.py")
    assert [p.split(": ", 1)[1].split(" ", 2)[:2] for p in problems] == [
        ["Sphinx", "role"],
        ["Sphinx", "role"],
        ["reST", "literal"],
        ["'Example:'", "renders"],
    ]
    assert [p.split(":")[1] for p in problems] == ["2", "2", "4", "8"]


def test_the_page_check_finds_unrendered_markup() -> None:
    rendered = (
        '<p>See <a href="#x"><code>ConvLSTM</code></a>.</p>'
        '<div class="highlight"><pre><code><span class="gp">&gt;&gt;&gt; </span>f()</code></pre></div>'
        "<p>In code a role may stay: <code>:class:`X`</code></p>"
    )
    assert markup_problems(rendered) == []
    raw = (
        "<p>See :class:`~convlstm.ConvLSTM` and [`f`][convlstm.f].</p>"
        "<blockquote><blockquote><blockquote><p>f()</p></blockquote></blockquote></blockquote>"
        "<p>&gt;&gt;&gt; g()</p>"
    )
    assert markup_problems(raw) == [
        "raw Sphinx role :class:`~convlstm.ConvLSTM`",
        "unresolved link ][convlstm.f]",
        "a >>> prompt outside a code block",
        "nested block quotes (an unparsed >>> line)",
    ]
