import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from convlstm.data.image_folders import ImageFolderSequences, natural_key


def write_sequence(
    folder: Path, count: int, size: tuple[int, int] = (6, 8), mode: str = "L", suffix: str = ".png"
) -> None:
    """Frame i is a constant image of value 20 * i (on every channel), named frame_{i}."""
    folder.mkdir(parents=True)
    for i in range(count):
        shape = size if mode == "L" else (*size, 3)
        Image.fromarray(np.full(shape, 20 * i, dtype=np.uint8), mode=mode).save(folder / f"frame_{i}{suffix}")


def values(item: dict[str, torch.Tensor]) -> list[int]:
    frames = torch.cat([item["context"], item["target"]])
    return [round(v * 255 / 20) for v in frames.mean(dim=(1, 2, 3)).tolist()]


def test_natural_order() -> None:
    names = ["frame_10.png", "frame_2.png", "frame_1.png"]
    assert sorted(names, key=natural_key) == ["frame_1.png", "frame_2.png", "frame_10.png"]


def test_grayscale_frames_in_natural_order(tmp_path: Path) -> None:
    write_sequence(tmp_path / "seq_a", 12)
    ds = ImageFolderSequences(tmp_path, split="all", context_frames=3, target_frames=2, stride=1)
    assert len(ds) == 12 - 5 + 1
    item = ds[1]
    assert item["context"].shape == (3, 1, 6, 8)
    assert values(item) == [1, 2, 3, 4, 5]
    assert values(ds[7]) == [7, 8, 9, 10, 11]  # frame_10 after frame_9, not after frame_1


def test_rgb_jpeg(tmp_path: Path) -> None:
    write_sequence(tmp_path / "clip", 4, mode="RGB", suffix=".jpg")
    ds = ImageFolderSequences(tmp_path, split="all", context_frames=2, target_frames=2)
    item = ds[0]
    assert item["context"].shape == (2, 3, 6, 8)
    expected = torch.tensor([0, 20, 40, 60], dtype=torch.float32) / 255
    measured = torch.cat([item["context"], item["target"]]).mean(dim=(1, 2, 3))
    assert torch.allclose(measured, expected, atol=3 / 255)  # JPEG is lossy


def test_masks_from_a_parallel_tree(tmp_path: Path) -> None:
    write_sequence(tmp_path / "frames" / "s1", 5)
    mask_folder = tmp_path / "masks" / "s1"
    mask_folder.mkdir(parents=True)
    for i in range(5):
        mask = np.zeros((6, 8), dtype=np.uint8)
        mask[:, : i + 1] = 255  # frame i: its first i + 1 columns are foreground
        Image.fromarray(mask).save(mask_folder / f"frame_{i}.png")
    ds = ImageFolderSequences(
        tmp_path / "frames", mask_root=tmp_path / "masks", split="all", context_frames=3, target_frames=2
    )
    item = ds[0]
    assert item["context_mask"].shape == (3, 1, 6, 8) and item["mask"].shape == (2, 1, 6, 8)
    assert set(item["mask"].unique().tolist()) == {0.0, 1.0}
    assert item["mask"][:, 0, 0].sum(dim=1).tolist() == [4.0, 5.0]  # frames 3 and 4


def test_missing_mask_is_named(tmp_path: Path) -> None:
    write_sequence(tmp_path / "frames" / "s1", 3)
    write_sequence(tmp_path / "masks" / "s1", 2)
    with pytest.raises(FileNotFoundError, match=r"masks/s1.*frame_2"):
        ImageFolderSequences(tmp_path / "frames", mask_root=tmp_path / "masks", context_frames=2, target_frames=1)


def test_frames_of_different_sizes(tmp_path: Path) -> None:
    write_sequence(tmp_path / "s", 4)
    Image.fromarray(np.zeros((7, 8), dtype=np.uint8)).save(tmp_path / "s" / "frame_2.png")
    with pytest.raises(ValueError, match=r"frame_2\.png.*\(7, 8\).*\(6, 8\).*size="):
        ImageFolderSequences(tmp_path, split="all", context_frames=2, target_frames=1)
    ds = ImageFolderSequences(tmp_path, split="all", context_frames=2, target_frames=1, size=(4, 5))
    assert ds[1]["target"].shape == (1, 1, 4, 5)


def test_skip_invalid_sequences_are_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_sequence(tmp_path / "good", 4)
    write_sequence(tmp_path / "short", 2)
    write_sequence(tmp_path / "broken", 4)
    (tmp_path / "broken" / "frame_1.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"frame_1\.png.*not a readable image"):
        ImageFolderSequences(tmp_path, split="all", context_frames=2, target_frames=1)
    with caplog.at_level(logging.WARNING):
        ds = ImageFolderSequences(tmp_path, split="all", context_frames=2, target_frames=1, skip_invalid=True)
    assert [r.name for r in ds.recordings] == ["good"]
    assert "skipped 1 of 3 sequences" in caplog.text and "broken" in caplog.text
    assert "skipped 1 of 2 recordings" in caplog.text and "short" in caplog.text


def test_split_by_sequence(tmp_path: Path) -> None:
    for i in range(10):
        write_sequence(tmp_path / f"seq_{i}", 3, size=(2, 2))
    names = [
        {r.name for r in ImageFolderSequences(tmp_path, split=s, context_frames=2, target_frames=1).recordings}
        for s in ("train", "val", "test")
    ]
    assert [len(n) for n in names] == [8, 1, 1]
    assert len(set.union(*names)) == 10


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ImageFolderSequences(tmp_path / "nowhere", context_frames=2, target_frames=1)
