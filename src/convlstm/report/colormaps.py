"""Turning frames into RGB pictures: grayscale, RGB, the HKO-7 rain-rate palette or any matplotlib colormap.

Colormap names understood everywhere in [`convlstm.report`][convlstm.report] (the ``cmap`` argument):

- ``None``: grayscale for one channel, RGB for three; values in [0, 1], clipped.
- ``"rain"``: one-channel radar pixels in [0, 1] (HKO-7: dBZ = 70 p - 10, Z = 58.53 R^1.56), converted to rain rate
  and coloured by the HKO-7 thresholds 0.5, 2, 5, 10 and 30 mm/h (events are rate >= threshold).
- ``"rain_mm_h"``: the same palette for one-channel frames already in mm/h.
- any other string: a matplotlib colormap name (``"viridis"``, ...) applied to one channel in [0, 1], clipped.
"""

from __future__ import annotations

import numpy as np
import torch

from convlstm.metrics.nowcasting import HKO_THRESHOLDS, pixel_to_rain_rate

__all__ = ["RAIN_COLORS", "RAIN_LEVELS", "frames_to_rgb", "is_rain_cmap"]

RAIN_LEVELS: tuple[float, ...] = HKO_THRESHOLDS  # mm/h
# One colour per class: below 0.5 mm/h (dry), then [0.5, 2), [2, 5), [5, 10), [10, 30) and >= 30 mm/h.
RAIN_COLORS: tuple[tuple[int, int, int], ...] = (
    (255, 255, 255),
    (166, 216, 240),
    (59, 139, 217),
    (44, 160, 44),
    (245, 196, 0),
    (214, 39, 40),
)
_RAIN_CMAPS = ("rain", "rain_mm_h")


def is_rain_cmap(cmap: str | None) -> bool:
    """Whether ``cmap`` names the rain-rate palette."""
    return cmap in _RAIN_CMAPS


def rain_rate(frames: np.ndarray, cmap: str) -> np.ndarray:
    """Rain rate in mm/h of frames given as radar pixels (``"rain"``) or already in mm/h (``"rain_mm_h"``)."""
    if cmap == "rain":
        return pixel_to_rain_rate(torch.from_numpy(np.clip(frames, 0.0, 1.0))).numpy()
    return frames


def frames_to_rgb(frames: np.ndarray, cmap: str | None, *, name: str = "frames") -> np.ndarray:
    """Colour frames (T, C, H, W) float into pictures (T, H, W, 3) uint8; see the module docstring for ``cmap``."""
    channels = frames.shape[1]
    if cmap is not None and channels != 1:
        raise ValueError(f"cmap={cmap!r} needs one-channel frames, but {name} has {channels} channels")
    if is_rain_cmap(cmap):
        assert cmap is not None
        classes = np.digitize(rain_rate(frames[:, 0], cmap), RAIN_LEVELS)  # 0 = dry ... 5 = >= 30 mm/h
        return np.asarray(RAIN_COLORS, dtype=np.uint8)[classes]
    values = np.clip(frames, 0.0, 1.0)
    if cmap is None:
        rgb = np.repeat(values, 3, axis=1) if channels == 1 else values
        return np.round(rgb.transpose(0, 2, 3, 1) * 255.0).astype(np.uint8)
    import matplotlib

    try:
        colormap = matplotlib.colormaps[cmap]
    except KeyError as error:
        raise ValueError(
            f"cmap must be None, 'rain', 'rain_mm_h' or a matplotlib colormap name, got {cmap!r}"
        ) from error
    rgba = colormap(values[:, 0], bytes=True)  # (T, H, W, 4) uint8
    return np.ascontiguousarray(rgba[..., :3])
