"""Radar units (HKO-7 conventions): rain rate in mm/h <-> reflectivity in dBZ <-> pixel values in [0, 1].

Pixels p map to dBZ = 70 p - 10; the Z-R relation Z = a R^b gives dBZ = 10 log10(a) + 10 b log10(R)
(HKO-7: a = 58.53, b = 1.56; Marshall-Palmer: a = 200, b = 1.6). Every function takes numpy arrays, tensors or
floats. Data generators, metrics, losses and reports all use these, so they cannot disagree.
"""

from __future__ import annotations

import math
from typing import Any, TypeVar, cast

import numpy as np
import torch
from torch import Tensor

ZR_RELATIONS: dict[str, tuple[float, float]] = {"hko7": (58.53, 1.56), "marshall_palmer": (200.0, 1.6)}

ArrayT = TypeVar("ArrayT", np.ndarray, Tensor, float)


# --- unit conversions --------------------------------------------------------------------------------------------


def zr_coefficients(relation: str | tuple[float, float]) -> tuple[float, float]:
    """(a, b) of Z = a R^b for "hko7", "marshall_palmer" or an explicit (a, b) pair."""
    if isinstance(relation, str):
        if relation not in ZR_RELATIONS:
            raise ValueError(f"relation must be one of {tuple(ZR_RELATIONS)} or an (a, b) pair, got {relation!r}")
        return ZR_RELATIONS[relation]
    if len(relation) != 2 or min(relation) <= 0:
        raise ValueError(f"relation must be a pair (a, b) of positive numbers, got {relation!r}")
    return float(relation[0]), float(relation[1])


def _log10(x: Any) -> Any:
    if isinstance(x, Tensor):
        return torch.log10(x)
    with np.errstate(divide="ignore"):
        return np.log10(x)


def _check_not_negative(x: Any, name: str) -> None:
    bad = bool((x < 0).any()) if isinstance(x, Tensor | np.ndarray) else x < 0
    if bad:
        raise ValueError(f"{name} must be >= 0 (0 is dry), got negative values")


def rain_rate_to_dbz(rain_rate: ArrayT, relation: str | tuple[float, float] = "hko7") -> ArrayT:
    """Reflectivity dBZ = 10 log10(a) + 10 b log10(R) of rain rates R in mm/h (0 mm/h gives -inf)."""
    a, b = zr_coefficients(relation)
    _check_not_negative(rain_rate, "rain_rate")
    return cast(ArrayT, 10.0 * math.log10(a) + 10.0 * b * _log10(rain_rate))


def dbz_to_rain_rate(dbz: ArrayT, relation: str | tuple[float, float] = "hko7") -> ArrayT:
    """Rain rate R = 10^((dBZ - 10 log10 a) / (10 b)) in mm/h."""
    a, b = zr_coefficients(relation)
    return cast(ArrayT, 10.0 ** ((dbz - 10.0 * math.log10(a)) / (10.0 * b)))


def dbz_to_pixel(dbz: ArrayT, clip: bool = True) -> ArrayT:
    """Pixel value p = (dBZ + 10) / 70, clipped to [0, 1] unless ``clip`` is False."""
    p = (dbz + 10.0) / 70.0
    if not clip:
        return cast(ArrayT, p)
    if isinstance(p, Tensor):
        return cast(ArrayT, p.clamp(0.0, 1.0))
    return cast(ArrayT, np.clip(p, 0.0, 1.0))


def pixel_to_dbz(pixel: ArrayT) -> ArrayT:
    """Reflectivity dBZ = 70 p - 10 of pixel values p."""
    return cast(ArrayT, 70.0 * pixel - 10.0)


def rain_rate_to_pixel(rain_rate: ArrayT, relation: str | tuple[float, float] = "hko7", clip: bool = True) -> ArrayT:
    """Pixel values of rain rates in mm/h (dry pixels give 0)."""
    return dbz_to_pixel(rain_rate_to_dbz(rain_rate, relation), clip=clip)


def pixel_to_rain_rate(pixel: ArrayT, relation: str | tuple[float, float] = "hko7") -> ArrayT:
    """Rain rates in mm/h of pixel values (p = 0 is -10 dBZ, about 0.015 mm/h with HKO-7's Z-R)."""
    return dbz_to_rain_rate(pixel_to_dbz(pixel), relation)
