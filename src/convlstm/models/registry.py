"""One registry of models (timm style): model families (the classes a saved config names) and the named builders
of each (``@register_model`` functions), with ``create_model``, ``list_models`` and ``model_summaries``.

A family registers itself when its class is defined ([`PretrainedModel`][convlstm.models.PretrainedModel] subclasses
with a ``family``); a builder records the family of the class it returns (its return annotation). Importing
[`convlstm`][convlstm] imports every model file and the baselines, so the registry is complete whatever is imported
first.
"""

import difflib
import fnmatch
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from convlstm.utils.checks import check_choice

Builder = TypeVar("Builder", bound=Callable[..., nn.Module])

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
_BUILDER_FAMILIES: dict[str, str] = {}
_FAMILIES: dict[str, type[nn.Module]] = {}


def register_family(family: str, model_class: type[nn.Module]) -> None:
    """Records ``model_class`` as the class that a saved config of ``family`` rebuilds.

    Raises:
        ValueError: another class already holds the name.
    """
    if family in _FAMILIES and _FAMILIES[family] is not model_class:
        raise ValueError(f"model family {family!r} is defined twice")
    _FAMILIES[family] = model_class


def family_class(family: str) -> type[nn.Module]:
    """The class registered for ``family``.

    Raises:
        ValueError: no such family (the message lists the known ones).
    """
    return _FAMILIES[check_choice("model family", family, sorted(_FAMILIES))]


def list_families() -> list[str]:
    """The registered family names, sorted."""
    return sorted(_FAMILIES)


def register_model(fn: Builder) -> Builder:
    """Registers a builder under its function name; the builder takes keyword overrides of its defaults and is
    annotated with the model class it returns, whose ``family`` it records.

    Raises:
        ValueError: the name is taken, or the return annotation is not a class with a ``family``.
    """
    if fn.__name__ in _BUILDERS:
        raise ValueError(f"a model named {fn.__name__!r} is already registered")
    returned = typing.get_type_hints(fn).get("return")
    family = getattr(returned, "family", None)
    if not isinstance(family, str):
        raise ValueError(
            f"builder {fn.__name__} must be annotated with a model class that has a family, got {returned}"
        )
    _BUILDERS[fn.__name__] = fn
    _BUILDER_FAMILIES[fn.__name__] = family
    return fn


def model_family(name: str) -> str:
    """The family of the registered model ``name`` (the class its builder returns)."""
    _check_name(name)
    return _BUILDER_FAMILIES[name]


def list_models(pattern: str = "*", *, family: str | None = None) -> list[str]:
    """Registered model names matching a shell-style ``pattern`` (and of ``family`` if given), sorted."""
    return sorted(
        name
        for name in _BUILDERS
        if fnmatch.fnmatch(name, pattern) and (family is None or _BUILDER_FAMILIES[name] == family)
    )


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Builds the registered model ``name``, with constructor arguments overridden by ``overrides``."""
    _check_name(name)
    return _BUILDERS[name](**overrides)


def model_builder(name: str) -> Callable[..., nn.Module]:
    """The builder function registered as ``name``; its keyword overrides go to the class of its family.

    Raises:
        ValueError: no such model (the message suggests close names).
    """
    _check_name(name)
    return _BUILDERS[name]


@dataclass(frozen=True)
class ModelSummary:
    """A registered model: its name, its parameter count and its class name."""

    name: str
    parameters: int
    class_name: str


def model_summaries(pattern: str = "*") -> list[ModelSummary]:
    """Every registered model whose name matches the shell-style ``pattern``, with its parameter count, sorted.

    Raises:
        ValueError: no model matches.
    """
    names = list_models(pattern)
    if not names:
        raise ValueError(f"no registered model matches {pattern!r}; see convlstm.list_models() ({len(_BUILDERS)})")
    summaries = []
    for name in names:
        with torch.device("meta"):  # counts parameters without allocating the largest models' weights
            model = create_model(name)
        summaries.append(ModelSummary(name, sum(p.numel() for p in model.parameters()), type(model).__name__))
    return summaries


def _check_name(name: str) -> None:
    if name not in _BUILDERS:
        close = difflib.get_close_matches(name, _BUILDERS, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; see convlstm.list_models() ({len(_BUILDERS)})"
        raise ValueError(f"unknown model name {name!r}{hint}")
