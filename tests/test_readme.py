"""The README's Python examples run as written (except the loader one-liners, which need the user's files)."""

import os
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
NEEDS_USER_FILES = "sevir.h5"


@pytest.mark.parametrize(
    "code", [b for b in BLOCKS if NEEDS_USER_FILES not in b], ids=lambda code: code.split("\n")[0][:40]
)
def test_readme_example_runs(code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(os.environ, "KERAS_BACKEND", "torch")
    exec(compile(code, str(README), "exec"), {"__name__": "readme_example"})


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 3
