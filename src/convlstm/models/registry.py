"""A registry of model builders (timm style): ``@register_model`` functions, ``create_model``, ``list_models``."""

import difflib
import fnmatch
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

Builder = TypeVar("Builder", bound=Callable[..., nn.Module])

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Builder) -> Builder:
    """Registers a builder under its function name; the builder takes keyword overrides of its defaults."""
    if fn.__name__ in _BUILDERS:
        raise ValueError(f"a model named {fn.__name__!r} is already registered")
    _BUILDERS[fn.__name__] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern``, sorted."""
    _import_all()
    return sorted(name for name in _BUILDERS if fnmatch.fnmatch(name, pattern))


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Builds the registered model ``name``, with constructor arguments overridden by ``overrides``."""
    _import_all()
    if name not in _BUILDERS:
        close = difflib.get_close_matches(name, _BUILDERS, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; see convlstm.list_models() ({len(_BUILDERS)})"
        raise ValueError(f"unknown model name {name!r}{hint}")
    return _BUILDERS[name](**overrides)


def _import_all() -> None:
    # Model files register themselves on import. Baselines sit above models (they use the forecaster interface),
    # so they are imported here at call time rather than by convlstm.models itself.
    import convlstm.baselines
    import convlstm.models  # noqa: F401
