"""Keeping old keyword names working for a release, with a DeprecationWarning that names the new one."""

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def renamed_keywords(**renames: str) -> Callable[[F], F]:
    """Decorates a function (or ``__init__``) whose keyword ``old`` was renamed ``new`` (``old="new"``): a call with
    the old name warns and passes the value on under the new one; a call with both raises TypeError.
    ``inspect.signature`` shows the new signature."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{fn.__qualname__}() got both {old!r} (deprecated) and {new!r}")
                    warnings.warn(
                        f"{fn.__qualname__}(): the argument {old!r} is deprecated; use {new!r}",
                        DeprecationWarning,
                        stacklevel=2,
                    )
                    kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def deprecated_aliases(module: str, **aliases: tuple[Any, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for ``module`` that answers each old name (``old=(object, new name)``) with
    the object and a DeprecationWarning naming the new one, and raises AttributeError for any other name."""

    def __getattr__(name: str) -> Any:
        if name in aliases:
            value, new = aliases[name]
            warnings.warn(f"{module}.{name} is deprecated; use {new}", DeprecationWarning, stacklevel=2)
            return value
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
