"""The package layers of docs/design.md, read from the source with ast: every import between the subpackages of
convlstm points down, Lightning and the plotting libraries stay where they belong, and only the console entry
imports the CLI. Imports inside functions count as much as those at the top of a file."""

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "convlstm"

FOUNDATION = {"utils", "units"}
#: subpackage -> the subpackages it may import (besides itself). A name missing here fails the test: a new
#: subpackage needs its place in the layers (and in docs/design.md).
MAY_IMPORT: dict[str, set[str]] = {
    "utils": set(),
    "units": set(),
    "recipes": set(),
    "layers": FOUNDATION,
    # Keras weights become layers; the pysteps plugin runs any model, and its ensembles, in pysteps' interface.
    "interop": FOUNDATION | {"layers", "models", "inference"},
    "accel": FOUNDATION | {"layers"},
    "models": FOUNDATION | {"layers"},
    "baselines": FOUNDATION | {"layers", "models"},
    "data": FOUNDATION,
    "metrics": FOUNDATION,
    "report": FOUNDATION | {"metrics"},
    "inference": FOUNDATION | {"layers", "models", "baselines"},
    "tasks": FOUNDATION | {"layers", "models", "baselines", "data", "metrics", "accel"},
    "experiment": FOUNDATION
    | {"layers", "models", "baselines", "data", "metrics", "report", "inference", "tasks", "recipes", "accel"},
    "cli": FOUNDATION | {"experiment"},
}
#: third-party packages -> the subpackages that may import them.
CONFINED = {
    "lightning": {"tasks", "experiment", "cli"},
    "pytorch_lightning": set(),
    "matplotlib": {"report"},
    "imageio": {"report"},
}
#: the only modules that may import convlstm.cli: the ``python -m convlstm`` entry (the console script is
#: declared in pyproject.toml and imports nothing).
CLI_ENTRIES = {"__main__"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, relative ones resolved."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            yield node.lineno, module
            for alias in node.names:  # `from convlstm import cli` imports the subpackage cli
                yield node.lineno, f"{module}.{alias.name}"


def _files() -> list[Path]:
    return sorted(SOURCE.rglob("*.py"))


def _subpackage(path: Path) -> str:
    relative = path.relative_to(SOURCE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def test_every_subpackage_has_a_place_in_the_layers() -> None:
    found = {p.name for p in SOURCE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    found |= {p.stem for p in SOURCE.glob("*.py") if p.stem not in ("__init__", "__main__")}
    assert found <= set(MAY_IMPORT), f"place {sorted(found - set(MAY_IMPORT))} in MAY_IMPORT and docs/design.md"


def _violations() -> list[str]:
    found: list[str] = []
    for path in _files():
        owner = _subpackage(path)
        where = path.relative_to(SOURCE.parent)
        for line, module in _imports(path):
            parts = module.split(".")
            if parts[0] in CONFINED and owner not in CONFINED[parts[0]]:
                found.append(f"{where}:{line} imports {parts[0]}, which only {sorted(CONFINED[parts[0]])} may")
            if parts[0] != "convlstm" or len(parts) < 2:
                continue
            target = parts[1]
            if target == "cli" and owner != "cli" and owner not in CLI_ENTRIES:
                found.append(f"{where}:{line} imports convlstm.cli (only {sorted(CLI_ENTRIES)} may)")
            elif owner in MAY_IMPORT and target != owner and target in MAY_IMPORT and target not in MAY_IMPORT[owner]:
                allowed = sorted(MAY_IMPORT[owner])
                found.append(f"{where}:{line} imports convlstm.{target}: {owner} may import {allowed}")
    return list(dict.fromkeys(found))  # `from a.b import c` is seen as a.b and a.b.c: one breach, named once


def test_imports_between_subpackages_point_down() -> None:
    assert _violations() == []


def test_the_checker_sees_an_upward_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test above would pass on a checker that finds nothing: plant each kind of breach and see it named."""
    fake = tmp_path / "convlstm"
    for name in ("layers", "tasks", "models"):
        (fake / name).mkdir(parents=True)
        (fake / name / "__init__.py").write_text("")
    (fake / "layers" / "bad.py").write_text("def f():\n    from convlstm.models import create_model\n")
    (fake / "models" / "plots.py").write_text("import matplotlib.pyplot as plt\n")
    (fake / "tasks" / "shell.py").write_text("from convlstm import cli\nfrom ..models import base\n")
    monkeypatch.setattr(f"{__name__}.SOURCE", fake)
    found = "\n".join(_violations())
    assert "layers/bad.py:2 imports convlstm.models" in found
    assert "models/plots.py:1 imports matplotlib" in found
    assert "tasks/shell.py:1 imports convlstm.cli" in found
    assert "tasks/shell.py:2" not in found  # tasks may import models, by a relative import too
    assert len(found.splitlines()) == 3
