"""The package layers of docs/design.md, read from the source with ast: every import between the packages of
convlstm is one that the design page's table allows, Lightning and the plotting libraries stay where they belong,
and only the ``python -m convlstm`` entry imports the CLI. Imports inside functions count as much as those at the top
of a file. The table of allowed imports is read from the design page itself, so the two cannot drift apart."""

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "convlstm"
DESIGN = ROOT / "docs" / "design.md"
#: the row of the package root (``convlstm/__init__.py``) in the design table
PACKAGE_ROOT = "convlstm"
#: third-party packages -> the packages that may import them.
CONFINED = {
    "lightning": {"tasks", "experiment", "cli"},
    "pytorch_lightning": set(),
    "matplotlib": {"report"},
    "imageio": {"report"},
}


def read_design_table(text: str) -> dict[str, set[str]]:
    """package -> the packages it may import, from the ``| package | holds | may import |`` table of the design page.

    A row names its packages in backticks in the first cell and what they may import in backticks in the last
    ("nothing" for none); the middle cell is free text.
    """
    lines = text.splitlines()
    header = next(
        (i for i, line in enumerate(lines) if re.match(r"\|\s*package\s*\|.*\|\s*may import\s*\|", line)), None
    )
    if header is None:
        raise ValueError("the design page has no '| package | holds | may import |' table")
    table: dict[str, set[str]] = {}
    for line in lines[header + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        packages, allowed = re.findall(r"`([^`]+)`", cells[0]), re.findall(r"`([^`]+)`", cells[-1])
        if not packages or (not allowed and cells[-1] != "nothing"):
            raise ValueError(f"design table row {line!r}: expected `package` names first and `names` or 'nothing' last")
        for package in packages:
            if package in table:
                raise ValueError(f"design table: {package!r} has two rows")
            table[package] = set(allowed)
    return table


MAY_IMPORT = read_design_table(DESIGN.read_text(encoding="utf-8"))


def _module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _packages() -> set[str]:
    """The names below ``convlstm``: its subpackages and top-level modules (``units``)."""
    found = {p.name for p in SOURCE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    return found | {p.stem for p in SOURCE.glob("*.py") if p.stem not in ("__init__", "__main__")}


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, relative ones resolved.

    ``from convlstm import cli`` is an import of ``convlstm.cli``; ``from convlstm import create_model`` (a name of
    the package root) and ``import convlstm`` are imports of ``convlstm``, the root.
    """
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
            if module != PACKAGE_ROOT:
                yield node.lineno, module
            for alias in node.names:  # `from convlstm import cli` imports the subpackage cli
                yield node.lineno, f"{module}.{alias.name}"


def _files() -> list[Path]:
    return sorted(SOURCE.rglob("*.py"))


def _owner(path: Path) -> str:
    relative = path.relative_to(SOURCE)
    if len(relative.parts) > 1:
        return relative.parts[0]
    return PACKAGE_ROOT if relative.stem == "__init__" else relative.stem


def _target(module: str, packages: set[str]) -> str | None:
    """The row an import of ``module`` falls under: a package, the root (a name of the root), or None (not ours)."""
    parts = module.split(".")
    if parts[0] != PACKAGE_ROOT:
        return None
    return parts[1] if len(parts) > 1 and parts[1] in packages else PACKAGE_ROOT


def test_every_package_has_exactly_one_row_in_the_design_table() -> None:
    found = {PACKAGE_ROOT, "__main__"} | _packages()
    assert found - set(MAY_IMPORT) == set(), "give each new package its row in the table of docs/design.md"
    assert set(MAY_IMPORT) - found == set(), "the table of docs/design.md names packages that do not exist"
    unknown = {name for allowed in MAY_IMPORT.values() for name in allowed} - set(MAY_IMPORT)
    assert unknown == set()


def test_the_table_points_one_way() -> None:
    """No cycle, and a package that may import the root may import everything the root does (the root's imports
    come with it)."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(package: str) -> None:
        if package in order:
            return
        assert package not in visiting, f"the design table has a cycle through {package}"
        visiting.add(package)
        for name in sorted(MAY_IMPORT[package]):
            visit(name)
        order.append(package)

    for package in sorted(MAY_IMPORT):
        visit(package)
    for package, allowed in MAY_IMPORT.items():
        if PACKAGE_ROOT in allowed:
            assert MAY_IMPORT[PACKAGE_ROOT] <= allowed, f"{package} may import the root but not all it imports"
    assert MAY_IMPORT["layers"] == {"utils", "units"}  # the table was read, not an empty page
    assert [p for p, allowed in MAY_IMPORT.items() if "cli" in allowed] == ["__main__"]


def _violations() -> list[str]:
    packages = _packages()
    found: list[str] = []
    for path in _files():
        owner = _owner(path)
        where = path.relative_to(SOURCE.parent)
        for line, module in _imports(path):
            top = module.split(".")[0]
            if top in CONFINED and owner not in CONFINED[top]:
                found.append(f"{where}:{line} imports {top}, which only {sorted(CONFINED[top])} may")
            target = _target(module, packages)
            if target is None or target == owner or owner not in MAY_IMPORT or target in MAY_IMPORT[owner]:
                continue
            allowed = sorted(MAY_IMPORT[owner])
            what = "the package root convlstm" if target == PACKAGE_ROOT else f"convlstm.{target}"
            found.append(f"{where}:{line} imports {what}: {owner} may import {allowed}")
    return list(dict.fromkeys(found))  # `from a.b import c` is seen as a.b and a.b.c: one breach, named once


def test_imports_between_packages_are_those_of_the_design_table() -> None:
    assert _violations() == []


def test_the_checker_sees_an_upward_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test above would pass on a checker that finds nothing: plant each kind of breach and see it named."""
    fake = tmp_path / "convlstm"
    for name in ("layers", "tasks", "models", "report", "cli"):
        (fake / name).mkdir(parents=True)
        (fake / name / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("from convlstm.models import create_model\n__version__ = '0'\n")
    (fake / "layers" / "bad.py").write_text("def f():\n    from convlstm.models import create_model\n")
    (fake / "models" / "plots.py").write_text("import matplotlib.pyplot as plt\n")
    (fake / "tasks" / "shell.py").write_text("from convlstm import cli\nfrom ..models import base\n")
    (fake / "report" / "html.py").write_text("def f():\n    from convlstm import __version__\n")
    (fake / "report" / "whole.py").write_text("import convlstm\nfrom convlstm import report\n")
    monkeypatch.setattr(f"{__name__}.SOURCE", fake)
    found = "\n".join(_violations())
    assert "layers/bad.py:2 imports convlstm.models" in found
    assert "models/plots.py:1 imports matplotlib" in found
    assert "tasks/shell.py:1 imports convlstm.cli" in found
    assert "tasks/shell.py:2" not in found  # tasks may import models, by a relative import too
    assert "report/html.py:2 imports the package root convlstm" in found  # a name of the root is the root
    assert "report/whole.py:1 imports the package root convlstm" in found
    assert "report/whole.py:2" not in found  # its own package, named through the root
    assert "convlstm/__init__.py" not in found  # the root may import models
    assert len(found.splitlines()) == 5


def test_the_table_reader_refuses_a_table_it_cannot_read() -> None:
    good = "| package | holds | may import |\n| --- | --- | --- |\n| `a`, `b` | x | nothing |\n| `c` | y | `a` |\n"
    assert read_design_table(good) == {"a": set(), "b": set(), "c": {"a"}}
    with pytest.raises(ValueError, match="has no"):
        read_design_table("no table here")
    with pytest.raises(ValueError, match="'nothing' last"):
        read_design_table(good + "| `d` | z | everything above |\n")
    with pytest.raises(ValueError, match="'a' has two rows"):
        read_design_table(good + "| `a` | z | nothing |\n")
