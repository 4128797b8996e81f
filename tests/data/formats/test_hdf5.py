import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from convlstm.data.core.layout import LayoutArray
from convlstm.data.core.splits import RecordingSplit
from convlstm.data.formats.hdf5 import HDF5Sequences


@pytest.fixture
def sevir_like(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A SEVIR-shaped file: dataset "vil", uint8 (N=5, H=12, W=12, T=9), time last."""
    vil = np.random.default_rng(0).integers(0, 256, (5, 12, 12, 9), dtype=np.uint8)
    path = tmp_path / "SEVIR_VIL_TEST.h5"
    with h5py.File(path, "w") as file:
        file.create_dataset("vil", data=vil, chunks=(1, 12, 12, 1))
        file.create_dataset("id", data=np.arange(5))
    return path, vil


def test_time_last_layout(sevir_like: tuple[Path, np.ndarray]) -> None:
    path, vil = sevir_like
    ds = HDF5Sequences(path, dataset="vil", layout="NHWT", split="all", context_frames=4, target_frames=3, stride=2)
    assert len(ds) == 5 * 2  # starts 0 and 2 in each 9-frame event
    item = ds[3]  # event 1, frames 2..8
    expected = np.moveaxis(vil[1, :, :, 2:9], -1, 0)[:, None].astype(np.float32)
    np.testing.assert_array_equal(torch.cat([item["context"], item["target"]]).numpy(), expected)


def test_reads_lazily(sevir_like: tuple[Path, np.ndarray]) -> None:
    path, _ = sevir_like
    ds = HDF5Sequences(path, dataset="vil", layout="NHWT", split="all", context_frames=2, target_frames=1)
    frames = ds.recordings[0].frames
    assert isinstance(frames, LayoutArray)
    assert isinstance(frames.source._open(), h5py.Dataset)  # not an in-memory copy


def test_pickled_dataset_reopens_the_file(sevir_like: tuple[Path, np.ndarray]) -> None:
    path, _ = sevir_like
    ds = HDF5Sequences(path, dataset="vil", layout="NHWT", split="all", context_frames=2, target_frames=1)
    first = ds[7]
    clone = pickle.loads(pickle.dumps(ds))  # what a spawned DataLoader worker receives
    assert torch.equal(clone[7]["context"], first["context"])


def test_split_by_event(sevir_like: tuple[Path, np.ndarray]) -> None:
    path, _ = sevir_like
    by = RecordingSplit({"train": 0.6, "val": 0.2, "test": 0.2}, seed=0)
    names = []
    for split in ("train", "val", "test"):
        ds = HDF5Sequences(
            path, dataset="vil", layout="NHWT", split=split, split_by=by, context_frames=2, target_frames=1
        )
        names.append({r.name for r in ds.recordings})
    assert [len(n) for n in names] == [3, 1, 1]
    assert len(set.union(*names)) == 5


def test_errors_name_the_file(sevir_like: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    path, _ = sevir_like
    with pytest.raises(ValueError, match=r"SEVIR_VIL_TEST\.h5.*no dataset 'ir069'.*vil"):
        HDF5Sequences(path, dataset="ir069", layout="NHWT", context_frames=2, target_frames=1)
    with pytest.raises(ValueError, match=r"SEVIR_VIL_TEST\.h5.*3 axes.*4 dimensions"):
        HDF5Sequences(path, dataset="vil", layout="HWT", context_frames=2, target_frames=1)
    with pytest.raises(FileNotFoundError, match=r"nothing\.h5"):
        HDF5Sequences(tmp_path / "nothing.h5", dataset="vil", layout="NHWT", context_frames=2, target_frames=1)
    with pytest.raises(ValueError, match=r"SEVIR_VIL_TEST\.h5:vil\[0\].*9 frames.*12"):
        HDF5Sequences(path, dataset="vil", layout="NHWT", split="all", context_frames=6, target_frames=6)


def test_nan_in_float_data(tmp_path: Path) -> None:
    field = np.zeros((2, 6, 4, 4), dtype=np.float32)  # (N, T, H, W)
    field[1, 3, 0, 0] = np.nan
    with h5py.File(tmp_path / "f.h5", "w") as file:
        file["x"] = field
    ds = HDF5Sequences(tmp_path / "f.h5", dataset="x", layout="NTHW", split="all", context_frames=2, target_frames=2)
    with pytest.raises(ValueError, match=r"f\.h5:x\[1\].*NaN.*\[0, 4\)"):
        ds[3]
