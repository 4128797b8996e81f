"""Sequences stored in numpy .npy / .npz files, in any axis layout.

    # the official Moving MNIST test file: uint8 (20, 10000, 64, 64), time first
    data = NumpySequences("mnist_test_seq.npy", layout="TNHW", split="all", context_frames=10, target_frames=10,
                          value_scale=1 / 255)

.npy files are memory-mapped (mmap_mode="r"), so only the frames of the windows read are loaded; .npz members
are compressed zip entries and are loaded whole.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from convlstm.data.core.layout import LazyFileArray, layout_recordings
from convlstm.data.core.splits import RecordingSplit, Splitter, select_split
from convlstm.data.core.windows import NanPolicy, Recording, Transform, WindowDataset, WindowOptions, build_recordings
from convlstm.utils.deprecation import renamed_keywords


def _open_npy(path: Path) -> np.ndarray:
    return np.load(path, mmap_mode="r")


def _load_npz_member(path: Path, key: str | None) -> np.ndarray:
    with np.load(path) as archive:
        keys = list(archive.keys())
        if key is None and len(keys) != 1:
            raise ValueError(f"{path}: holds arrays {keys}; pass key= to choose one")
        if key is not None and key not in keys:
            raise ValueError(f"{path}: has no array {key!r}; it holds {keys}")
        return np.asarray(archive[key or keys[0]])


def numpy_recordings(path: str | os.PathLike[str], layout: str, key: str | None = None) -> list[Recording]:
    """The recordings of one .npy / .npz file stored as `layout` (one per index along N, if any)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"numpy file not found: {path}")
    source: Any
    if path.suffix not in (".npy", ".npz"):
        raise ValueError(f"{path}: expected a .npy or .npz file, got suffix {path.suffix!r}")
    try:
        source = LazyFileArray(path, _open_npy) if path.suffix == ".npy" else _load_npz_member(path, key)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        if str(path) in str(err):  # our own message already names the file
            raise
        # numpy's messages (a truncated header, pickled objects refused, ...) do not name the file.
        raise ValueError(f"{path}: not a readable numpy {path.suffix} array file ({err})") from None
    return layout_recordings(source, layout, name=str(path) if key is None else f"{path}:{key}")


class NumpySequences(WindowDataset):
    """Windows over the recordings of one or more .npy / .npz files.

    The window arguments (``context_frames``, ``target_frames``, ``stride``, ``transform``, ``nan_policy``,
    ``value_scale``, ``skip_invalid``) are the fields of [`WindowOptions`][convlstm.data.WindowOptions], which
    documents them.

    Args:
        root: a file or a list of files (their recordings are concatenated).
        layout: axis letters of the stored arrays, e.g. "NTHW", "TNHW", "NTHWC" (see convlstm.data.core.layout).
        key: which array of a .npz file (needed when it holds several).
        split: "train" (the default), "val", "test" (keys of split_by's fractions) or "all".
        split_by: how recordings are split; default RecordingSplit() (whole recordings, seeded).
    """

    @renamed_keywords(path="root")
    def __init__(
        self,
        root: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        split: str = "train",
        *,
        layout: str,
        context_frames: int,
        target_frames: int,
        key: str | None = None,
        split_by: Splitter | None = None,
        stride: int = 1,
        transform: Transform | None = None,
        nan_policy: NanPolicy = "raise",
        value_scale: float = 1.0,
        skip_invalid: bool = False,
    ) -> None:
        window = WindowOptions(
            context_frames=context_frames,
            target_frames=target_frames,
            stride=stride,
            transform=transform,
            nan_policy=nan_policy,
            value_scale=value_scale,
            skip_invalid=skip_invalid,
        )
        paths = [os.fspath(root)] if isinstance(root, str | os.PathLike) else [os.fspath(p) for p in root]
        recordings = build_recordings(paths, lambda p: numpy_recordings(p, layout, key), skip_invalid=skip_invalid)
        super().__init__(select_split(recordings, split, split_by or RecordingSplit()), window)
