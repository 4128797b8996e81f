"""An mkdocs hook: the table of registered models on docs/choose-a-model.md, generated from the model registry.

The page holds the marker ``<!-- model-table -->``; at build time it becomes one row per registered model (name,
family, parameters, the first paragraph of its builder's docstring), so a newly registered model shows up without
anyone editing the page.
"""

import re
import sys
from pathlib import Path
from typing import Any

MARKER = "<!-- model-table -->"
PAGE = "choose-a-model.md"


def _summary(doc: str | None) -> str:
    """The first paragraph of a docstring, on one line, reST literals as Markdown code."""
    first = (doc or "").strip().split("\n\n", 1)[0]
    text = " ".join(first.split()).replace("``", "`")
    return re.sub(r"\[`([^`]+)`\]\[[\w.]+\]", r"`\1`", text).replace("|", "\\|")


def model_table() -> str:
    """Markdown: a table of every registered model."""
    from convlstm.models import model_builder, model_family, model_summaries

    rows = ["| model | family | parameters | what it is |", "|---|---|---:|---|"]
    for summary in model_summaries():
        doc = _summary(model_builder(summary.name).__doc__)
        family = model_family(summary.name)
        rows.append(f"| `{summary.name}` | {family} | {summary.parameters:,} | {doc} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """mkdocs' hook: fills the marker of the model page."""
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"{PAGE} must hold the marker {MARKER!r}, where the model table goes")
    # The checkout's sources, not an installed copy of another checkout.
    src = str(Path(config["config_file_path"]).resolve().parent / "src")
    if src not in sys.path:
        sys.path.insert(0, src)
    import convlstm  # noqa: F401  (registers every family and builder, baselines included)

    return markdown.replace(MARKER, model_table())
