"""Converting report inputs (tensors, arrays, lists) to NumPy and checking their shapes."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def to_numpy(value: Any, name: str) -> np.ndarray:
    """A float64 NumPy copy of a tensor (any device or dtype), array, list or number; ``name`` is used in errors."""
    if isinstance(value, torch.Tensor):
        return value.detach().to(device="cpu", dtype=torch.float64).numpy()
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{name} must be numeric (a tensor, array, list or number), got {type(value).__name__}"
        ) from error


def as_frames(value: Any, name: str) -> np.ndarray:
    """Frames (T, C, H, W) with C = 1 or 3 as float64, finite; raises ValueError naming ``name`` otherwise."""
    frames = to_numpy(value, name)
    if frames.ndim != 4 or frames.shape[1] not in (1, 3) or min(frames.shape) < 1:
        hint = " (pick one sequence of the batch, e.g. x[0])" if frames.ndim == 5 else ""
        raise ValueError(
            f"{name} must have shape (T, C, H, W) with C = 1 or 3 and no empty dimension, got "
            f"{tuple(frames.shape)}{hint}"
        )
    if not np.isfinite(frames).all():
        raise ValueError(f"{name} contains NaN or inf")
    return frames
