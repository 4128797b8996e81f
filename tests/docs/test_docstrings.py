"""Every public name has a docstring: the API reference of the site is generated from them.

Public means listed in a package's ``__all__``; for a class, also every method and property it defines itself
whose name does not start with an underscore. Constants cannot carry ``__doc__``, so for them the docstring is the
string literal under the assignment, found by griffe (the library mkdocstrings reads the sources with).
"""

import importlib
import inspect
from types import ModuleType

import pytest

PACKAGES = [
    "convlstm",
    "convlstm.layers",
    "convlstm.models",
    "convlstm.baselines",
    "convlstm.data",
    "convlstm.metrics",
    "convlstm.tasks",
    "convlstm.inference",
    "convlstm.interop",
    "convlstm.accel",
    "convlstm.report",
    "convlstm.experiment",
]


def _has_doc(obj: object) -> bool:
    return bool((getattr(obj, "__doc__", None) or "").strip())


def _method_doc(cls: type, name: str) -> bool:
    """An override of a documented method of a base class counts as documented (the reference shows the base's)."""
    return any(_has_doc(vars(base).get(name)) for base in cls.__mro__ if name in vars(base))


def _own_public_members(cls: type) -> list[str]:
    members = []
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(member, staticmethod | classmethod):
            member = member.__func__
        if inspect.isfunction(member) or isinstance(member, property):
            members.append(name)
    return members


def _is_documented_value(name: str) -> bool:
    return name == "__version__"


def missing_docstrings(module: ModuleType) -> list[str]:
    """Names under ``module.__all__`` (and their classes' own public methods) without a docstring; constants are
    returned with a ``constant:`` prefix for the griffe check."""
    missing = []
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isclass(obj):
            if not _has_doc(obj) or obj.__doc__ == type.__doc__:
                missing.append(name)
            missing += [f"{name}.{member}" for member in _own_public_members(obj) if not _method_doc(obj, member)]
        elif inspect.isroutine(obj) or inspect.ismodule(obj):
            if not _has_doc(obj):
                missing.append(name)
        elif not _is_documented_value(name):
            missing.append(f"constant:{name}")
    return missing


@pytest.mark.parametrize("package", PACKAGES)
def test_public_functions_and_classes_have_docstrings(package: str) -> None:
    module = importlib.import_module(package)
    missing = [name for name in missing_docstrings(module) if not name.startswith("constant:")]
    assert missing == [], f"{package}: public names without a docstring: {missing}"


@pytest.mark.parametrize("package", PACKAGES)
def test_public_constants_have_docstrings(package: str) -> None:
    griffe = pytest.importorskip("griffe", reason="griffe comes with the docs extra: pip install -e '.[docs]'")
    module = importlib.import_module(package)
    constants = [name.removeprefix("constant:") for name in missing_docstrings(module) if name.startswith("constant:")]
    if not constants:
        return
    loaded = griffe.load(package, search_paths=[str(importlib.import_module("convlstm").__path__[0] + "/..")])
    missing = []
    for name in constants:
        member = loaded[name]
        target = member.final_target if member.is_alias else member
        if target.docstring is None or not target.docstring.value.strip():
            missing.append(name)
    assert missing == [], f"{package}: public constants without a docstring (a string literal under them): {missing}"


def test_the_check_finds_a_missing_docstring() -> None:
    """The check can fail: a module whose public function and method lack docstrings is reported."""
    module = ModuleType("fake")

    def documented() -> None:
        """Has one."""

    def bare() -> None:
        pass

    class Thing:
        """A class."""

        def method(self) -> None:
            pass

    module.documented, module.bare, module.Thing = documented, bare, Thing  # type: ignore[attr-defined]
    module.__all__ = ["documented", "bare", "Thing"]  # type: ignore[attr-defined]
    assert missing_docstrings(module) == ["bare", "Thing.method"]
