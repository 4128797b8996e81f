import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from convlstm.data.formats.image_folders import ImageFolderSequences, natural_key
from tests.data.core.test_scene_cuts import blob_scene, two_scenes


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


def write_frames(folder: Path, video: np.ndarray) -> None:
    """(T, 3, H, W) uint8 frames as lossless PNG files frame_0.png, frame_1.png, ..."""
    folder.mkdir(parents=True)
    for i, frame in enumerate(video.transpose(0, 2, 3, 1)):
        Image.fromarray(frame).save(folder / f"frame_{i}.png")


@pytest.fixture
def cut_and_still(tmp_path: Path) -> dict[str, np.ndarray]:
    """A sequence with a scene cut at frame 10 of 22 and one of 9 frames without."""
    videos = {"cut": two_scenes(10, 12), "still": blob_scene(9, seed=3)}
    for name, video in videos.items():
        write_frames(tmp_path / name, video)
    return videos


def test_no_window_spans_a_scene_cut(
    tmp_path: Path, cut_and_still: dict[str, np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        ds = ImageFolderSequences(tmp_path, split="all", context_frames=3, target_frames=1)
    assert [r.name for r in ds.recordings] == ["cut[0:10]", "cut[10:22]", "still"]
    assert ds.scene_cuts == {"cut": [10]} and ds.dropped_windows == 3  # windows starting at 7, 8, 9 of 0..18
    assert len(ds) == 7 + 9 + 6
    for index in range(len(ds)):
        rec, start = ds.locate(index)
        start += rec.start
        assert start + 4 <= 10 or start >= 10 or rec.source.endswith("still")
        frames = (torch.cat([ds[index]["context"], ds[index]["target"]]) * 255).round().byte().numpy()
        np.testing.assert_array_equal(frames, cut_and_still[rec.source.split("/")[-1]][start : start + 4])
    assert "scene cuts: 1 in 1 of 2 sequences" in caplog.text and "3 of their 25 windows" in caplog.text


def test_without_split_at_cuts_every_window_is_kept(tmp_path: Path, cut_and_still: dict[str, np.ndarray]) -> None:
    ds = ImageFolderSequences(tmp_path, split="all", context_frames=3, target_frames=1, split_at_cuts=False)
    assert [r.name for r in ds.recordings] == ["cut", "still"]
    assert len(ds) == 19 + 6 and ds.dropped_windows == 0 and ds.scene_cuts == {}
    frames = (torch.cat([ds[8]["context"], ds[8]["target"]]) * 255).round().byte().numpy()
    np.testing.assert_array_equal(frames, cut_and_still["cut"][8:12])  # frames 8..11 span the cut


def test_a_higher_cut_threshold_keeps_the_cut(tmp_path: Path, cut_and_still: dict[str, np.ndarray]) -> None:
    ds = ImageFolderSequences(tmp_path, split="all", context_frames=3, target_frames=1, cut_threshold=0.5)
    assert len(ds) == 19 + 6 and ds.scene_cuts == {}
