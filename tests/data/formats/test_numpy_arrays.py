import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from convlstm.data.core.layout import LayoutArray, LazyFileArray
from convlstm.data.core.splits import RecordingSplit
from convlstm.data.formats.numpy_arrays import NumpySequences


@pytest.fixture
def mnist_like(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A file shaped like mnist_test_seq.npy: uint8 (T=20, N=4, 8, 8), time first."""
    data = np.random.default_rng(0).integers(0, 256, (20, 4, 8, 8), dtype=np.uint8)
    path = tmp_path / "mnist_test_seq.npy"
    np.save(path, data)
    return path, data


def test_time_first_file_gives_tchw_items(mnist_like: tuple[Path, np.ndarray]) -> None:
    path, data = mnist_like
    ds = NumpySequences(path, layout="TNHW", split="all", context_frames=10, target_frames=10, value_scale=1 / 255)
    assert len(ds) == 4  # one 20-frame window per sequence
    item = ds[2]
    assert item["context"].shape == (10, 1, 8, 8)
    expected = torch.from_numpy(data[:, 2].astype(np.float32) / 255)  # sequence 2, all 20 frames
    assert torch.allclose(torch.cat([item["context"], item["target"]])[:, 0], expected)


def test_npy_is_memory_mapped(mnist_like: tuple[Path, np.ndarray]) -> None:
    path, _ = mnist_like
    ds = NumpySequences(path, layout="TNHW", split="all", context_frames=5, target_frames=5)
    frames = ds.recordings[0].frames
    assert isinstance(frames, LayoutArray) and isinstance(frames.source, LazyFileArray)
    assert isinstance(frames.source._open(), np.memmap)


def test_splits_partition_sequences(mnist_like: tuple[Path, np.ndarray]) -> None:
    path, _ = mnist_like
    by = RecordingSplit({"train": 0.5, "val": 0.25, "test": 0.25})
    names = []
    for split in ("train", "val", "test"):
        ds = NumpySequences(path, layout="TNHW", split=split, split_by=by, context_frames=5, target_frames=5)
        names.append({r.name for r in ds.recordings})
    assert [len(n) for n in names] == [2, 1, 1]
    assert len(set.union(*names)) == 4


def test_npz_with_key_and_channels_last(tmp_path: Path) -> None:
    clips = np.random.default_rng(1).random((3, 6, 5, 4, 2)).astype(np.float32)  # (N, T, H, W, C)
    path = tmp_path / "clips.npz"
    np.savez(path, clips=clips, labels=np.arange(3))
    ds = NumpySequences(path, key="clips", layout="NTHWC", split="all", context_frames=4, target_frames=2)
    item = ds[len(ds) - 1]
    np.testing.assert_array_equal(item["context"].numpy(), np.moveaxis(clips[2, :4], -1, 1))
    with pytest.raises(ValueError, match=r"clips\.npz.*key="):
        NumpySequences(path, layout="NTHWC", split="all", context_frames=4, target_frames=2)
    with pytest.raises(ValueError, match="no array 'frames'"):
        NumpySequences(path, key="frames", layout="NTHWC", split="all", context_frames=4, target_frames=2)


def test_bad_files(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((4, 5, 5)))
    with pytest.raises(FileNotFoundError, match=r"missing\.npy"):
        NumpySequences(tmp_path / "missing.npy", layout="THW", context_frames=1, target_frames=1)
    with pytest.raises(ValueError, match=r"x\.npy.*4 axes.*3 dimensions"):
        NumpySequences(tmp_path / "x.npy", layout="NTHW", context_frames=1, target_frames=1)
    (tmp_path / "x.txt").write_text("1 2 3")
    with pytest.raises(ValueError, match=r"\.npy or \.npz"):
        NumpySequences(tmp_path / "x.txt", layout="THW", context_frames=1, target_frames=1)
    with pytest.raises(ValueError, match=r"x\.npy.*too few frames.*4 frames"):
        NumpySequences(tmp_path / "x.npy", layout="THW", split="all", context_frames=4, target_frames=1)


def test_nan_is_reported_with_the_file(tmp_path: Path) -> None:
    data = np.ones((6, 4, 4), dtype=np.float32)
    data[5, 1, 1] = np.nan
    np.save(tmp_path / "field.npy", data)
    ds = NumpySequences(tmp_path / "field.npy", layout="THW", split="all", context_frames=2, target_frames=2)
    with pytest.raises(ValueError, match=r"field\.npy.*NaN"):
        ds[2]
    masked = NumpySequences(
        tmp_path / "field.npy", layout="THW", split="all", context_frames=2, target_frames=2, nan_policy="mask"
    )
    assert masked[2]["mask"][1, 0, 1, 1] == 0


def test_skip_invalid_files_are_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    np.save(tmp_path / "good.npy", np.zeros((6, 4, 4)))
    np.save(tmp_path / "bad.npy", np.zeros((6, 4)))
    paths = [tmp_path / "good.npy", tmp_path / "bad.npy", tmp_path / "gone.npy"]
    with caplog.at_level(logging.WARNING):
        ds = NumpySequences(paths, layout="THW", split="all", context_frames=2, target_frames=1, skip_invalid=True)
    assert [r.name for r in ds.recordings] == [str(tmp_path / "good.npy")]
    assert "skipped 2 of 3 files" in caplog.text
    assert "bad.npy" in caplog.text and "gone.npy" in caplog.text
