"""Shared plumbing for the seeded sequence generators: argument checks, per-item random streams, item dicts.

Every generator in this package is a map-style dataset whose item ``i`` is drawn from its own random stream,
seeded by ``(seed, dataset salt, split, epoch, i)``. Item ``i`` is therefore the same whatever order items are
read in and whichever DataLoader worker reads it, and the three splits never share a stream.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from convlstm.utils.checks import check_choice, check_int

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")

Item = dict[str, Any]
Transform = Callable[[Item], Item]


def check_split(split: str) -> int:
    """Return the position of ``split`` in ("train", "val", "test"), or raise ValueError."""
    return SPLITS.index(check_choice("split", split, SPLITS))


def dataset_salt(name: str) -> int:
    """A stable 32-bit number per generator so that two generators with one seed draw different streams."""
    return zlib.crc32(name.encode())


def frames_to_item(frames: np.ndarray | Tensor, context_frames: int, target_frames: int) -> dict[str, Tensor]:
    """Split (T, C, H, W) frames along time into float32 "context" (T_in, ...) and "target" (T_out, ...)."""
    x = torch.as_tensor(frames, dtype=torch.float32)
    if x.shape[0] != context_frames + target_frames:
        raise ValueError(f"expected {context_frames} + {target_frames} frames, got {x.shape[0]}")
    return {"context": x[:context_frames], "target": x[context_frames:]}


class SeededSequences(Dataset[Item]):
    """Base of the generators: split, seed, length, transform and the per-item random stream.

    Subclasses set ``name`` and ``default_sizes`` and implement ``_make_item(rng, index)``.

    Args:
        split: "train", "val" or "test"; each split is its own, disjoint random stream.
        transform: Callable applied to the item dict before it is returned.
        seed: Base seed of the whole dataset.
        num_sequences: Number of items; None takes ``default_sizes[split]``.
    """

    name = "sequences"
    default_sizes: dict[str, int] = {"train": 1000, "val": 100, "test": 100}  # noqa: RUF012

    def __init__(self, *, split: str, transform: Transform | None, seed: int, num_sequences: int | None) -> None:
        self._split_id = check_split(split)
        self.split = split
        if transform is not None and not callable(transform):
            raise ValueError(f"transform must be callable or None, got {type(transform).__name__}")
        self.transform = transform
        self.seed = check_int("seed", seed, 0)
        size = self.default_sizes[split] if num_sequences is None else num_sequences
        self.num_sequences = check_int("num_sequences", size, 1)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw a fresh set of training sequences: item i of epoch e comes from the stream (seed, e, i).

        Only the train split changes with the epoch; val and test are fixed sets. DataLoader workers see the new
        epoch when they are started after this call (the default ``persistent_workers=False``).
        """
        if self.split != "train":
            raise ValueError(f"set_epoch only applies to split='train', this dataset has split={self.split!r}")
        self.epoch = check_int("epoch", epoch, 0)

    def rng(self, index: int) -> np.random.Generator:
        """The random stream of item ``index`` (independent of reading order and worker)."""
        return np.random.default_rng([self.seed, dataset_salt(self.name), self._split_id, self.epoch, index])

    def __len__(self) -> int:
        return self.num_sequences

    def _check_index(self, index: int) -> int:
        n = self.num_sequences
        if isinstance(index, bool) or not isinstance(index, int | np.integer):
            raise ValueError(f"index must be an int, got {type(index).__name__}")
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {type(self).__name__} of length {n}")
        return int(index) % n

    def __getitem__(self, index: int) -> Item:
        i = self._check_index(index)
        item = self._make_item(self.rng(i), i)
        return self.transform(item) if self.transform is not None else item

    def _make_item(self, rng: np.random.Generator, index: int) -> Item:
        raise NotImplementedError

    def extra_repr(self) -> str:
        """The arguments shown inside the dataset's repr (none here; sources add theirs)."""
        return ""

    def __repr__(self) -> str:
        extra = self.extra_repr()
        return (
            f"{type(self).__name__}(split={self.split!r}, num_sequences={self.num_sequences}, seed={self.seed}"
            + (f", {extra}" if extra else "")
            + ")"
        )
