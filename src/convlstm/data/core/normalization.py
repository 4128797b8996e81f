"""Per-channel normalization fitted on the training split only, saved with the model as a plain dict.

norm = Normalization.fit(train_dataset, kind="standard")   # reads every training frame once
train_dataset.transform = norm                             # items' context / target normalized
json.dump(norm.to_dict(), file)                            # ... Normalization.from_dict(json.load(file))
prediction = norm.invert(model_output)                     # back to data units
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np
import torch
from torch import Tensor

from convlstm.data.core.windows import WindowDataset
from convlstm.utils.checks import check_choice

logger = logging.getLogger(__name__)

Kind = Literal["standard", "minmax"]
Values = TypeVar("Values", Tensor, np.ndarray)


class _ChannelStats:
    """Streaming per-channel count, mean, sum of squared deviations (Chan et al.), min and max, in float64."""

    def __init__(self, channels: int) -> None:
        self.count = np.zeros(channels)
        self.mean = np.zeros(channels)
        self.m2 = np.zeros(channels)
        self.min = np.full(channels, np.inf)
        self.max = np.full(channels, -np.inf)

    def update(self, values: np.ndarray, valid: np.ndarray) -> None:
        """values, valid: (..., C, H, W); only values where valid is True count."""
        for c in range(values.shape[-3]):
            x = values[..., c, :, :][valid[..., c, :, :]].astype(np.float64)
            if x.size == 0:
                continue
            n, mean = x.size, x.mean()
            delta = mean - self.mean[c]
            total = self.count[c] + n
            self.m2[c] += ((x - mean) ** 2).sum() + delta**2 * self.count[c] * n / total
            self.mean[c] += delta * n / total
            self.count[c] = total
            self.min[c] = min(self.min[c], x.min())
            self.max[c] = max(self.max[c], x.max())


def _chunks(source: WindowDataset | Iterable[np.ndarray | Tensor]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(values, valid) chunks of shape (..., C, H, W) from a WindowDataset or an iterable of arrays."""
    if isinstance(source, WindowDataset):
        for values, mask in source.iter_frames():
            valid = np.isfinite(values) if mask is None else np.broadcast_to(mask > 0, values.shape)
            yield values, valid
        return
    for chunk in source:
        values = chunk.detach().cpu().numpy() if isinstance(chunk, Tensor) else np.asarray(chunk)
        yield values, np.isfinite(values)


@dataclass
class Normalization:
    """Per-channel affine normalization x -> (x - center) / scale over the channel axis -3 of (..., C, H, W).

    Attributes:
        kind: "standard" (center = mean, scale = std) or "minmax" (center = min, scale = max - min, so the
            training data maps to [0, 1]).
        center: one value per channel.
        scale: one positive value per channel.
    """

    kind: Kind
    center: list[float]
    scale: list[float]

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, ("standard", "minmax"))
        if len(self.center) != len(self.scale) or not all(s > 0 for s in self.scale):
            raise ValueError(
                f"center and scale need one value per channel and scale > 0, got {self.center}, {self.scale}"
            )

    @classmethod
    def fit(cls, source: WindowDataset | Iterable[np.ndarray | Tensor], kind: Kind = "standard") -> Normalization:
        """Statistics of every value of `source`: a (training) WindowDataset, whose frames are read once each
        (masked and NaN values left out), or an iterable of (..., C, H, W) arrays (NaN left out).

        A constant channel gets scale 1 (a warning is logged) rather than a division by zero.
        """
        stats: _ChannelStats | None = None
        for values, valid in _chunks(source):
            if values.ndim < 3:
                raise ValueError(f"expected chunks of shape (..., C, H, W), got shape {values.shape}")
            stats = stats or _ChannelStats(values.shape[-3])
            stats.update(values, valid)
        if stats is None or not stats.count.all():
            raise ValueError("cannot fit normalization: no valid values in some channel (empty or all-NaN data)")
        if kind == "standard":
            center, scale = stats.mean, np.sqrt(stats.m2 / stats.count)
        else:
            center, scale = stats.min, stats.max - stats.min
        if (scale <= 0).any():
            logger.warning(
                "channels %s are constant; their normalization scale is set to 1", np.flatnonzero(scale <= 0)
            )
            scale = np.where(scale > 0, scale, 1.0)
        return cls(kind, [float(v) for v in center], [float(v) for v in scale])

    def _broadcast(self, like: Values) -> tuple[Values, Values]:
        if like.ndim < 3 or like.shape[-3] != len(self.center):
            raise ValueError(f"expected (..., {len(self.center)}, H, W), got shape {tuple(like.shape)}")
        center, scale = np.asarray(self.center)[:, None, None], np.asarray(self.scale)[:, None, None]
        if isinstance(like, Tensor):
            return (
                torch.as_tensor(center, dtype=like.dtype, device=like.device),
                torch.as_tensor(scale, dtype=like.dtype, device=like.device),
            )
        return center.astype(like.dtype), scale.astype(like.dtype)

    def apply(self, x: Values) -> Values:
        """Normalize (..., C, H, W) values."""
        center, scale = self._broadcast(x)
        return (x - center) / scale

    def invert(self, x: Values) -> Values:
        """Map normalized (..., C, H, W) values (e.g. predictions) back to data units."""
        center, scale = self._broadcast(x)
        return x * scale + center

    def __call__(self, item: dict[str, Tensor]) -> dict[str, Tensor]:
        """Normalize an item's "context" and "target" (masks untouched); usable as a dataset transform."""
        return {key: self.apply(value) if key in ("context", "target") else value for key, value in item.items()}

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable form, to save with a model."""
        return {"kind": self.kind, "center": list(self.center), "scale": list(self.scale)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Normalization:
        """Inverse of to_dict."""
        return cls(data["kind"], [float(v) for v in data["center"]], [float(v) for v in data["scale"]])
