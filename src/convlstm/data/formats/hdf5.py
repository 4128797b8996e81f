"""Sequences stored in HDF5 datasets (h5py), in any axis layout, read lazily window by window.

# SEVIR VIL: uint8 (N, 384, 384, 49), time last
data = HDF5Sequences("SEVIR_VIL_STORMEVENTS_2018_0101_0630.h5", dataset="vil", layout="NHWT",
                     context_frames=13, target_frames=12, stride=12, value_scale=1 / 255)
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import h5py

from convlstm.data.core.layout import LazyFileArray, layout_recordings
from convlstm.data.core.splits import RecordingSplit, Splitter, select_split
from convlstm.data.core.windows import NanPolicy, Recording, Transform, WindowDataset, WindowOptions, build_recordings
from convlstm.utils.deprecation import renamed_keywords


def _open_dataset(path: Path, key: str) -> h5py.Dataset:
    # The dataset keeps its file open; LazyFileArray reopens it in each DataLoader worker.
    return h5py.File(path, "r")[key]


def hdf5_recordings(path: str | os.PathLike[str], dataset: str, layout: str) -> list[Recording]:
    """The recordings of one HDF5 dataset stored as `layout` (one per index along N, if any), read lazily."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"HDF5 file not found: {path}")
    try:
        file = h5py.File(path, "r")
    except OSError as err:  # h5py's message ("file signature not found") does not name the file
        raise ValueError(f"{path}: not a readable HDF5 file ({err})") from None
    with file:
        node = file.get(dataset)
        if not isinstance(node, h5py.Dataset):
            found: list[str] = []
            file.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) else None)
            raise ValueError(f"{path}: no dataset {dataset!r}; it holds datasets {found}")
    source = LazyFileArray(path, functools.partial(_open_dataset, key=dataset))
    return layout_recordings(source, layout, name=f"{path}:{dataset}")


class HDF5Sequences(WindowDataset):
    """Windows over the recordings of an HDF5 dataset in one or more files.

    The window arguments (``context_frames``, ``target_frames``, ``stride``, ``transform``, ``nan_policy``,
    ``value_scale``, ``skip_invalid``) are the fields of [`WindowOptions`][convlstm.data.WindowOptions], which
    documents them.

    Args:
        root: a file or a list of files holding the same dataset (their recordings are concatenated).
        dataset: the dataset's name inside the file, e.g. "vil".
        layout: axis letters of the stored array, e.g. "NHWT" for SEVIR (see convlstm.data.core.layout).
        split: "train" (the default), "val", "test" (keys of split_by's fractions) or "all".
        split_by: how recordings are split; default RecordingSplit() (whole recordings, seeded).
    """

    @renamed_keywords(path="root")
    def __init__(
        self,
        root: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        split: str = "train",
        *,
        dataset: str,
        layout: str,
        context_frames: int,
        target_frames: int,
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
        recordings = build_recordings(paths, lambda p: hdf5_recordings(p, dataset, layout), skip_invalid=skip_invalid)
        super().__init__(select_split(recordings, split, split_by or RecordingSplit()), window)
