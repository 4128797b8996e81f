"""PredNet's KITTI files: X_{split}.hkl frames and sources_{split}.hkl recording names (Lotter et al. 2016).

X_{split}.hkl holds uint8 frames (N, 128, 160, 3), channel last, all drives of the split one after the other;
sources_{split}.hkl holds one recording name per frame. Each run of consecutive frames with the same source is
one recording, so windows never mix two drives.

    data = KittiHickle("kitti_data", split="train", context_frames=10, target_frames=0)  # PredNet's nt = 10
"""

from __future__ import annotations

import functools
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import h5py
import hickle
import numpy as np

from convlstm.data.core.layout import LayoutArray, LazyFileArray
from convlstm.data.core.windows import NanPolicy, Recording, Transform, WindowDataset, WindowOptions

# Where hickle keeps a top-level array: "data" since hickle 4, "data_0" in the hickle 2 / 3 files PredNet made.
_ARRAY_KEYS = ("data", "data_0")


def _open_dataset(path: Path, key: str) -> h5py.Dataset:
    return h5py.File(path, "r")[key]


def _frames(path: Path) -> Any:
    """The frame array of a hickle file: read lazily through h5py when stored as one dataset, else loaded."""
    if not path.is_file():
        raise FileNotFoundError(f"hickle file not found: {path}")
    with h5py.File(path, "r") as file:
        key = next((k for k in _ARRAY_KEYS if isinstance(file.get(k), h5py.Dataset)), None)
    return LazyFileArray(path, functools.partial(_open_dataset, key=key)) if key else np.asarray(hickle.load(path))


def _sources(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"hickle file not found: {path}")
    return [s.decode() if isinstance(s, bytes) else str(s) for s in hickle.load(path)]


def source_runs(sources: list[str]) -> list[tuple[str, int, int]]:
    """(name, start, stop) of each run of equal consecutive names; a name seen again later gets "#2", "#3", ..."""
    runs: list[tuple[str, int, int]] = []
    seen: dict[str, int] = {}
    start = 0
    for i in range(1, len(sources) + 1):
        if i == len(sources) or sources[i] != sources[start]:
            name = sources[start]
            seen[name] = seen.get(name, 0) + 1
            runs.append((name if seen[name] == 1 else f"{name}#{seen[name]}", start, i))
            start = i
    return runs


class KittiHickle(WindowDataset):
    """Windows over the drives of PredNet's KITTI hickle files, never crossing from one drive to the next.

    Frames are scaled from uint8 to [0, 1] (value_scale 1/255), as PredNet does. The window arguments
    (``context_frames``, ``target_frames``, ``stride``, ``transform``, ``nan_policy`` (only float frames can hold
    NaN), ``skip_invalid``) are the fields of [`WindowOptions`][convlstm.data.WindowOptions], which documents them.

    Args:
        root: folder with X_{split}.hkl and sources_{split}.hkl.
        split: which pair of files: "train" (the default), "val" or "test" (the files are the split).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        *,
        context_frames: int,
        target_frames: int,
        stride: int = 1,
        transform: Transform | None = None,
        nan_policy: NanPolicy = "raise",
        skip_invalid: bool = False,
    ) -> None:
        window = WindowOptions(
            context_frames=context_frames,
            target_frames=target_frames,
            stride=stride,
            transform=transform,
            nan_policy=nan_policy,
            skip_invalid=skip_invalid,
        )
        frames_path, sources_path = Path(root) / f"X_{split}.hkl", Path(root) / f"sources_{split}.hkl"
        frames, sources = _frames(frames_path), _sources(sources_path)
        if len(frames.shape) != 4:
            raise ValueError(f"{frames_path}: expected frames (N, H, W, C), got shape {tuple(frames.shape)}")
        if len(sources) != frames.shape[0]:
            raise ValueError(
                f"{sources_path}: expected one source name per frame of {frames_path} ({frames.shape[0]} frames), "
                f"got {len(sources)} names"
            )
        all_frames = LayoutArray(frames, "THWC", name=str(frames_path))
        recordings = [
            Recording(name=name, frames=all_frames, source=str(frames_path), start=start, stop=stop)
            for name, start, stop in source_runs(sources)
        ]
        super().__init__(recordings, replace(window, value_scale=1 / 255 if frames.dtype == np.uint8 else 1.0))
