from pathlib import Path

import hickle
import numpy as np
import pytest
import torch

from convlstm.data.core.layout import LayoutArray, LazyFileArray
from convlstm.data.formats.hickle_kitti import KittiHickle, source_runs


def write_kitti(root: Path, split: str, sources: list[str], size: tuple[int, int] = (128, 160)) -> np.ndarray:
    """PredNet-style files; frame i has every pixel of channel c equal to 10 * i + c."""
    n = len(sources)
    frames = (10 * np.arange(n)[:, None, None, None] + np.arange(3)).astype(np.uint8)
    frames = np.broadcast_to(frames, (n, *size, 3)).copy()  # (N, H, W, 3)
    hickle.dump(frames, root / f"X_{split}.hkl", mode="w")
    hickle.dump(sources, root / f"sources_{split}.hkl", mode="w")
    return frames


def frame_ids(item: dict[str, torch.Tensor]) -> list[int]:
    frames = torch.cat([item["context"], item["target"]])
    return [round(v * 255 / 10) for v in frames[:, 0, 0, 0].tolist()]


def test_windows_never_cross_recordings(tmp_path: Path) -> None:
    sources = ["city-drive_0001"] * 6 + ["road-drive_0002"] * 4
    write_kitti(tmp_path, "train", sources)
    ds = KittiHickle(tmp_path, split="train", context_frames=2, target_frames=1)
    windows = [frame_ids(ds[i]) for i in range(len(ds))]
    assert len(windows) == (6 - 3 + 1) + (4 - 3 + 1)
    for window in windows:
        assert len({sources[f] for f in window}) == 1  # one drive per window
        assert window == list(range(window[0], window[0] + 3))
    assert [r.name for r in ds.recordings] == ["city-drive_0001", "road-drive_0002"]


def test_frames_are_channels_first_scaled_and_lazy(tmp_path: Path) -> None:
    frames = write_kitti(tmp_path, "val", ["a"] * 5)
    ds = KittiHickle(tmp_path, split="val", context_frames=3, target_frames=2)
    item = ds[0]
    assert item["context"].shape == (3, 3, 128, 160)
    expected = torch.from_numpy(frames[:3]).permute(0, 3, 1, 2).float() / 255
    assert torch.allclose(item["context"], expected)
    array = ds.recordings[0].frames
    assert isinstance(array, LayoutArray) and isinstance(array.source, LazyFileArray)


def test_repeated_source_names_are_separate_recordings() -> None:
    runs = source_runs(["a", "a", "b", "a", "a", "a"])
    assert runs == [("a", 0, 2), ("b", 2, 3), ("a#2", 3, 6)]


def test_missing_and_inconsistent_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"X_test\.hkl"):
        KittiHickle(tmp_path, split="test", context_frames=2, target_frames=1)
    write_kitti(tmp_path, "train", ["a"] * 4, size=(8, 10))
    hickle.dump(["a"] * 3, tmp_path / "sources_train.hkl", mode="w")
    with pytest.raises(ValueError, match=r"sources_train\.hkl.*4 frames.*3 names"):
        KittiHickle(tmp_path, split="train", context_frames=2, target_frames=1)
    hickle.dump(np.zeros((4, 8, 10), dtype=np.uint8), tmp_path / "X_train.hkl", mode="w")
    with pytest.raises(ValueError, match=r"X_train\.hkl.*\(N, H, W, C\)"):
        KittiHickle(tmp_path, split="train", context_frames=2, target_frames=1)


def test_too_short_drive_is_named(tmp_path: Path) -> None:
    write_kitti(tmp_path, "train", ["long"] * 6 + ["tiny"] * 2, size=(8, 10))
    with pytest.raises(ValueError, match=r"'tiny'.*2 frames"):
        KittiHickle(tmp_path, split="train", context_frames=2, target_frames=1)
    ds = KittiHickle(tmp_path, split="train", context_frames=2, target_frames=1, skip_invalid=True)
    assert [r.name for r in ds.recordings] == ["long"]
