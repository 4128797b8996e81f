"""Per-clip transforms: one resize, crop, flip or rotation applied alike to every frame and mask of an item.

Each transform takes an item dict (as returned by the datasets) or a bare (T, C, H, W) tensor. In an item, every
4-D tensor ("context", "target", "context_mask", "mask") gets the same spatial operation, so frames and masks
stay aligned; masks are resized with nearest-neighbour sampling so they stay binary.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import get_worker_info

Clip = TypeVar("Clip", Tensor, dict[str, Tensor])


def _pair(size: int | Sequence[int], name: str) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(f"{name} must be a positive int or (height, width), got {size!r}")
    return int(pair[0]), int(pair[1])


def _apply(clip: Clip, fn: Callable[[str, Tensor], Tensor]) -> Clip:
    """Apply fn(key, tensor) to a bare clip (key "context") or to every 4-D tensor of an item."""
    if isinstance(clip, Tensor):
        return fn("context", clip)
    return {key: fn(key, value) if value.ndim == 4 else value for key, value in clip.items()}


def _spatial_size(clip: Tensor | dict[str, Tensor]) -> tuple[int, int]:
    tensors = {"clip": clip} if isinstance(clip, Tensor) else {k: v for k, v in clip.items() if v.ndim == 4}
    sizes = {key: (int(t.shape[-2]), int(t.shape[-1])) for key, t in tensors.items()}
    if not sizes or len(set(sizes.values())) != 1:
        raise ValueError(f"expected (T, C, H, W) clips of one spatial size, got sizes {sizes}")
    return next(iter(sizes.values()))


class Compose:
    """Apply transforms one after the other."""

    def __init__(self, transforms: Sequence[Callable[[Any], Any]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, clip: Clip) -> Clip:
        for transform in self.transforms:
            clip = transform(clip)
        return clip


class Resize:
    """Resize every frame to `size` (bilinear with antialiasing; masks nearest).

    Args:
        size: output (height, width), or one int for square frames.
    """

    def __init__(self, size: int | Sequence[int]) -> None:
        self.size = _pair(size, "size")

    def _resize(self, key: str, clip: Tensor) -> Tensor:
        if tuple(clip.shape[-2:]) == self.size:
            return clip
        if "mask" in key:
            return F.interpolate(clip, size=self.size, mode="nearest")
        return F.interpolate(clip, size=self.size, mode="bilinear", align_corners=False, antialias=True)

    def __call__(self, clip: Clip) -> Clip:
        return _apply(clip, self._resize)


class CenterCrop:
    """Crop the central `size` window of every frame (for evaluation).

    Args:
        size: crop (height, width), or one int; must fit inside the frames.
    """

    def __init__(self, size: int | Sequence[int]) -> None:
        self.size = _pair(size, "size")

    def _offsets(self, height: int, width: int) -> tuple[int, int]:
        return (height - self.size[0]) // 2, (width - self.size[1]) // 2

    def __call__(self, clip: Clip) -> Clip:
        height, width = _spatial_size(clip)
        if self.size[0] > height or self.size[1] > width:
            raise ValueError(f"crop size {self.size} is larger than the frames ({height}, {width})")
        top, left = self._offsets(height, width)
        crop_h, crop_w = self.size
        return _apply(clip, lambda _, t: t[..., top : top + crop_h, left : left + crop_w])


class RandomCrop(CenterCrop):
    """Crop a random `size` window, the same for every frame and mask of a clip (for training).

    Reproducible: the crop positions come from a generator seeded with `seed` in the main process, and with
    `seed` combined with the worker's seed inside a DataLoader worker (so workers differ, and a seeded
    DataLoader gives the same crops every run).

    Args:
        size: crop (height, width), or one int.
        seed: seed of the crop positions.
    """

    def __init__(self, size: int | Sequence[int], seed: int = 0) -> None:
        super().__init__(size)
        self.seed = seed
        self._generator: torch.Generator | None = None
        self._generator_key: int | None = None

    def _offsets(self, height: int, width: int) -> tuple[int, int]:
        worker = get_worker_info()
        key = None if worker is None else worker.seed
        if self._generator is None or key != self._generator_key:
            seed = self.seed if key is None else hash((self.seed, key)) % 2**63
            self._generator = torch.Generator().manual_seed(seed)
            self._generator_key = key
        top = int(torch.randint(height - self.size[0] + 1, (1,), generator=self._generator))
        left = int(torch.randint(width - self.size[1] + 1, (1,), generator=self._generator))
        return top, left

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_generator": None, "_generator_key": None}


def flip_rotate(clip: Clip, rotations: int, flip: bool) -> Clip:
    """Rotates every frame and mask by ``rotations`` quarter turns (counter-clockwise) and then, with ``flip``,
    mirrors it left to right: the eight symmetries of a square, alike for every 4-D tensor of an item.

    An odd number of quarter turns swaps height and width: for batches of one size, use it on square frames only.
    """
    if isinstance(rotations, bool) or not isinstance(rotations, int):
        raise ValueError(f"rotations must be an int (quarter turns), got {type(rotations).__name__} {rotations!r}")

    def turn(_: str, tensor: Tensor) -> Tensor:
        turned = torch.rot90(tensor, rotations % 4, dims=(-2, -1))
        return turned.flip(-1) if flip else turned

    return _apply(clip, turn)


def random_flip_rotate(item: dict[str, Tensor], rng: np.random.Generator) -> dict[str, Tensor]:
    """[`flip_rotate`][convlstm.data.flip_rotate] of an item by one of the symmetries drawn from ``rng``: any of the
    eight for square frames, and for others the four that keep height and width (half turns, with or without a
    mirror)."""
    height, width = item["context"].shape[-2:]
    turns = int(rng.integers(4)) if height == width else 2 * int(rng.integers(2))
    return flip_rotate(item, turns, bool(rng.integers(2)))
