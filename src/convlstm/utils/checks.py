"""Argument checks shared by every package: each returns the checked value (converted where said) or raises a
ValueError that names the argument, what was expected and what came. Bools are never taken for numbers."""

import math
from collections.abc import Collection, Sequence
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


def check_int(name: str, value: object, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` as an int if it is one (numpy integers too) in [minimum, maximum] (no upper bound for None)."""
    bound = f"in [{minimum}, {maximum}]" if maximum is not None else f">= {minimum}"
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an int {bound}, got {type(value).__name__} {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be an int {bound}, got {value}")
    return int(value)


def check_float(name: str, value: object, low: float, high: float, *, low_open: bool = False) -> float:
    """``value`` as a float if it is a finite number in [low, high] (or (low, high] with ``low_open``)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise ValueError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    v = float(value)
    if not math.isfinite(v) or v > high or v < low or (low_open and v == low):
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must be in {bracket}{low}, {high}], got {value}")
    return v


def check_positive(name: str, value: object) -> float:
    """``value`` as a float if it is a finite number > 0 (a rate, a length of time, a bound)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise ValueError(f"{name} must be a finite number > 0, got {type(value).__name__} {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_finite(name: str, value: object) -> float:
    """``value`` as a float if it is a finite number."""
    return check_float(name, value, -math.inf, math.inf)


def check_probability(name: str, value: object) -> float:
    """``value`` as a float if it is a probability in [0, 1) (a dropout rate: 1 would drop everything)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1), got {value!r}")
    return float(value)


def check_range(name: str, value: object, low: float, high: float) -> tuple[float, float]:
    """A (lo, hi) pair of numbers with low <= lo <= hi <= high."""
    lo, hi = _check_pair(name, value, "numbers")
    return _ordered(name, value, check_float(f"{name}[0]", lo, low, high), check_float(f"{name}[1]", hi, low, high))


def check_int_range(name: str, value: object, low: int, high: int) -> tuple[int, int]:
    """A (lo, hi) pair of ints with low <= lo <= hi <= high."""
    lo, hi = _check_pair(name, value, "ints")
    return _ordered(name, value, check_int(f"{name}[0]", lo, low, high), check_int(f"{name}[1]", hi, low, high))


def _check_pair(name: str, value: object, of: str) -> tuple[Any, Any]:
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise ValueError(f"{name} must be a (low, high) pair of {of}, got {value!r}")
    return value[0], value[1]


def _ordered(name: str, value: object, lo: T, hi: T) -> tuple[T, T]:
    if lo > hi:  # type: ignore[operator]
        raise ValueError(f"{name} must satisfy low <= high, got {value!r}")
    return lo, hi


def check_int_list(name: str, value: object, minimum: int = 1) -> list[int]:
    """A non-empty list of ints >= ``minimum``, from one int or a sequence of them."""
    values: Any = [value] if isinstance(value, int) else value
    if isinstance(values, str) or not isinstance(values, Sequence) or not values:
        raise ValueError(f"{name} must be a non-empty list of ints >= {minimum} (or one int), got {value!r}")
    for item in values:
        if isinstance(item, bool) or not isinstance(item, int) or item < minimum:
            raise ValueError(f"{name} must be a non-empty list of ints >= {minimum} (or one int), got {value!r}")
    return list(values)


def check_choice(name: str, value: T, choices: Collection[Any]) -> T:
    """``value`` if it is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value
