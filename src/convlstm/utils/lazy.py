"""Packages whose public names are imported on first use (a user of one name should not wait for, or need, the
third-party modules behind all the others)."""

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, sources: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package``, whose name ``n`` lives in its submodule
    ``sources[n]``: the first access imports that submodule and keeps the value in the package. A source with a
    leading dot is a sibling package, as in a relative import: ``".models"`` is ``from ..models import n``."""

    def __getattr__(name: str) -> Any:
        if name not in sources:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{sources[name]}", package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(sources)

    return __getattr__, __dir__
