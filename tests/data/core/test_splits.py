import numpy as np
import pytest
import torch

from convlstm.data.core.splits import (
    RecordingSplit,
    TimeBlockSplit,
    build_split,
    select_split,
    split_counts,
    split_indices,
)
from convlstm.data.core.windows import Recording, WindowDataset


def frame_index_recording(name: str, length: int, offset: int = 0) -> Recording:
    """Every pixel of frame t holds offset + t, so items reveal which frames they read."""
    values = (offset + np.arange(length, dtype=np.float32))[:, None, None, None]
    return Recording(name, np.broadcast_to(values, (length, 1, 2, 2)).copy())


def frames_read(data: WindowDataset) -> set[int]:
    seen: set[int] = set()
    for i in range(len(data)):
        item = data[i]
        seen |= {int(v) for v in torch.cat([item["context"], item["target"]]).unique()}
    return seen


@pytest.mark.parametrize("n", [0, 1, 3, 10, 17, 1000])
def test_split_counts_add_up_and_follow_fractions(n: int) -> None:
    fractions = {"train": 0.7, "val": 0.2, "test": 0.1}
    counts = split_counts(n, fractions)
    assert sum(counts.values()) == n
    for name, fraction in fractions.items():
        assert abs(counts[name] - n * fraction) < 1


def test_split_indices_partition_and_are_seeded() -> None:
    parts = split_indices(50, seed=3)
    assert sorted(i for idx in parts.values() for i in idx) == list(range(50))
    assert parts == split_indices(50, seed=3)
    assert parts != split_indices(50, seed=4)


def test_bad_fractions() -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        split_counts(10, {"train": 0.5, "val": 0.2})


def test_recording_split_is_disjoint_and_complete() -> None:
    recordings = [frame_index_recording(f"r{i}", 5) for i in range(20)]
    by = RecordingSplit(seed=1)
    names = {split: [r.name for r in select_split(recordings, split, by)] for split in ("train", "val", "test")}
    assert sorted(name for part in names.values() for name in part) == sorted(r.name for r in recordings)
    assert (len(names["train"]), len(names["val"]), len(names["test"])) == (16, 2, 2)
    assert select_split(recordings, "all", by) == recordings


def test_unknown_and_empty_splits() -> None:
    recordings = [frame_index_recording("only", 5)]
    with pytest.raises(ValueError, match="'validation'"):
        select_split(recordings, "validation", RecordingSplit())
    with pytest.raises(ValueError, match="'test' is empty"):
        select_split(recordings, "test", RecordingSplit())


@pytest.mark.parametrize(
    "by",
    [
        TimeBlockSplit(),
        TimeBlockSplit(gap_frames=4),
        TimeBlockSplit(block_frames=10, seed=0),
        TimeBlockSplit(block_frames=12, gap_frames=3, seed=5),
    ],
)
def test_time_blocks_no_frame_shared_across_splits(by: TimeBlockSplit) -> None:
    recording = frame_index_recording("series", 120)
    seen = {}
    for split in ("train", "val", "test"):
        # skip_invalid: a block shortened by the gap may be too short for a window
        segments = select_split([recording], split, by)
        data = WindowDataset(segments, context_frames=3, target_frames=2, skip_invalid=True)
        seen[split] = frames_read(data)
    assert not seen["train"] & seen["val"]
    assert not seen["train"] & seen["test"]
    assert not seen["val"] & seen["test"]
    # frames of different splits are at least gap_frames + 1 apart
    for a, b in [("train", "val"), ("train", "test"), ("val", "test")]:
        distance = min(abs(i - j) for i in seen[a] for j in seen[b])
        assert distance >= by.gap_frames + 1


def test_chronological_time_split_order() -> None:
    blocks = TimeBlockSplit(gap_frames=2).blocks(100)
    assert blocks == {"train": [(0, 80)], "val": [(82, 90)], "test": [(92, 100)]}


def test_block_time_split_fractions() -> None:
    blocks = TimeBlockSplit(block_frames=10, seed=2).blocks(200)
    frames = {name: sum(b - a for a, b in ranges) for name, ranges in blocks.items()}
    assert frames == {"train": 160, "val": 20, "test": 20}
    assert len(blocks["train"]) > 1  # shuffled, not one chronological block


def test_time_split_across_several_recordings() -> None:
    recordings = [frame_index_recording("a", 50), frame_index_recording("b", 50, offset=1000)]
    test_segments = select_split(recordings, "test", TimeBlockSplit())
    assert [seg.name for seg in test_segments] == ["a[45:50]", "b[45:50]"]


def test_build_split_only_builds_the_chosen_candidates() -> None:
    built: list[str] = []

    def build(name: str) -> list[Recording]:
        built.append(name)
        return [frame_index_recording(name, 5)]

    candidates = [f"video{i}" for i in range(10)]
    test = build_split(candidates, build, "test", RecordingSplit(), skip_invalid=False)
    assert built == [rec.name for rec in test]
    assert len(built) == 1
    assert [r.name for r in test] == [candidates[i] for i in split_indices(10)["test"]]
