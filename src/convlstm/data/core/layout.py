"""Axis layouts: read arrays stored in any axis order as the library's (T, C, H, W) recordings.

A layout string names the axes of a stored array with the letters N (recordings), T (time), C (channels),
H and W, e.g. "NHWT" for SEVIR's (N, 384, 384, 49) or "TNHW" for Moving MNIST's (20, 10000, 64, 64).
T, H and W are required; without C the data has one channel; without N the array is one recording.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from convlstm.data.core.windows import Recording

AXES = "NTCHW"


def parse_layout(layout: str, ndim: int | None = None, *, source: str = "array") -> str:
    """Check a layout string and return it in upper case.

    Args:
        layout: axis letters from "NTCHW", each at most once, including T, H and W.
        ndim: when given, the number of dimensions of the array the layout describes.
        source: what the layout describes, for error messages (a file name).

    Raises:
        ValueError: the layout has unknown or repeated letters, lacks T, H or W, or does not match ndim.
    """
    if not isinstance(layout, str):
        raise ValueError(f"layout for {source} must be a string of axis letters from {AXES!r}, got {layout!r}")
    upper = layout.upper()
    unknown = sorted(set(upper) - set(AXES))
    if unknown or len(set(upper)) != len(upper) or not set("THW") <= set(upper):
        raise ValueError(
            f"layout={layout!r} for {source}: expected distinct letters from {AXES!r} including T, H and W"
            + (f", got unknown letters {unknown}" if unknown else "")
        )
    if ndim is not None and len(upper) != ndim:
        raise ValueError(f"layout={layout!r} for {source}: names {len(upper)} axes but the array has {ndim} dimensions")
    return upper


def to_tchw(array: np.ndarray, layout: str, *, source: str = "array") -> np.ndarray:
    """Reorder one recording stored as `layout` (no N axis) to (T, C, H, W); adds C = 1 when the layout has no C.

    This is the one place where channel-last ("THWC") and other stored orders become the library's layout.
    """
    layout = parse_layout(layout, array.ndim, source=source)
    if "N" in layout:
        raise ValueError(f"layout={layout!r} for {source}: to_tchw takes one recording, without an N axis")
    if "C" not in layout:
        array = array[..., None]
        layout += "C"
    return np.transpose(array, [layout.index(axis) for axis in "TCHW"])


class LazyFileArray:
    """An array inside a file, opened on first use in each process.

    h5py handles and numpy memmaps must not be shared across DataLoader worker processes (fork or pickle), so
    this keeps only the path and an opener and reopens the file when the process id changes.

    Args:
        path: the file.
        opener: a picklable function (module level or functools.partial) that opens the file and returns an
            object with `.shape` and numpy-style `__getitem__` that reads only what is indexed.
    """

    def __init__(self, path: str | Path, opener: Callable[[Path], Any]) -> None:
        self.path = Path(path)
        self.opener = opener
        self._array: Any = None
        self._pid: int | None = None
        opened = self._open()
        self.shape: tuple[int, ...] = tuple(int(n) for n in opened.shape)
        self.dtype = np.dtype(opened.dtype)

    def _open(self) -> Any:
        if self._array is None or self._pid != os.getpid():
            self._array = self.opener(self.path)
            self._pid = os.getpid()
        return self._array

    def __getitem__(self, index: Any) -> np.ndarray:
        return np.asarray(self._open()[index])

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_array": None, "_pid": None}


class LayoutArray:
    """One recording, seen as (T, C, H, W), inside a lazily indexed array stored in another axis order.

    Indexing with a time slice reads only those frames from the source (an h5py dataset, a memmap, ...).

    Args:
        source: an object with `.shape` and numpy-style `__getitem__` (tuple of ints and slices).
        layout: the source's axis letters (see the module docstring).
        recording: which recording along N; required when the layout has N, not allowed otherwise.
        name: the file or variable, for error messages.
    """

    def __init__(self, source: Any, layout: str, recording: int | None = None, *, name: str = "array") -> None:
        self.source = source
        self.layout = parse_layout(layout, len(source.shape), source=name)
        if ("N" in self.layout) != (recording is not None):
            raise ValueError(f"{name}: recording index is needed exactly when layout={self.layout!r} has an N axis")
        self.recording = recording
        dims = dict(zip(self.layout, source.shape, strict=True))
        self.shape = (dims["T"], dims.get("C", 1), dims["H"], dims["W"])

    def __getitem__(self, time: slice) -> np.ndarray:
        index = tuple(self.recording if axis == "N" else time if axis == "T" else slice(None) for axis in self.layout)
        return to_tchw(np.asarray(self.source[index]), self.layout.replace("N", ""))

    def __len__(self) -> int:
        return self.shape[0]


def layout_recordings(source: Any, layout: str, *, name: str) -> list[Recording]:
    """The recordings of a lazily indexed array stored as `layout`: one per index along N, or one without N.

    Args:
        source: an object with `.shape` and numpy-style `__getitem__` (array, memmap, LazyFileArray, ...).
        layout: the source's axis letters.
        name: the file (and key) it comes from; recordings are named "name[n]".
    """
    layout = parse_layout(layout, len(source.shape), source=name)
    if "N" not in layout:
        return [Recording(name=name, frames=LayoutArray(source, layout, name=name), source=name)]
    count = source.shape[layout.index("N")]
    return [
        Recording(name=f"{name}[{n}]", frames=LayoutArray(source, layout, n, name=name), source=name)
        for n in range(count)
    ]
