"""Train / validation / test splits that never let a window see frames of two splits.

`RecordingSplit` puts whole recordings (sequences, videos) into one split each, by a seeded shuffle.
`TimeBlockSplit` cuts the time axis of every recording into blocks (one chronological block per split by
default, as weather archives are usually split by years) and turns each block into a recording of its own, so
that sliding windows, which never cross recordings, never cross splits. Optional gap frames between blocks of
different splits keep temporally correlated neighbours apart.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from convlstm.data.core.windows import Recording, build_recordings
from convlstm.utils.checks import check_choice, check_int

T = TypeVar("T")

DEFAULT_FRACTIONS: Mapping[str, float] = {"train": 0.8, "val": 0.1, "test": 0.1}

#: The split every source reads when none is named: the training split (generators have no "all").
DEFAULT_SPLIT = "train"


def _check_fractions(fractions: Mapping[str, float]) -> None:
    if not fractions or any(f < 0 for f in fractions.values()) or not math.isclose(sum(fractions.values()), 1.0):
        raise ValueError(f"split fractions must be non-negative and sum to 1, got {dict(fractions)}")


def split_counts(n: int, fractions: Mapping[str, float] = DEFAULT_FRACTIONS) -> dict[str, int]:
    """How many of n items each split gets: floor(n * fraction), leftovers to the largest remainders."""
    _check_fractions(fractions)
    exact = {name: n * f for name, f in fractions.items()}
    counts = {name: math.floor(x) for name, x in exact.items()}
    by_remainder = sorted(exact, key=lambda name: exact[name] - counts[name], reverse=True)
    for name in by_remainder[: n - sum(counts.values())]:
        counts[name] += 1
    return counts


def split_indices(n: int, fractions: Mapping[str, float] = DEFAULT_FRACTIONS, seed: int = 0) -> dict[str, list[int]]:
    """Partition range(n) into splits of the given fractions by a seeded shuffle; indices sorted per split."""
    order = np.random.default_rng(seed).permutation(n)
    result, first = {}, 0
    for name, count in split_counts(n, fractions).items():
        result[name] = sorted(int(i) for i in order[first : first + count])
        first += count
    return result


@dataclass
class RecordingSplit:
    """Whole recordings to splits by a seeded shuffle.

    Attributes:
        fractions: split name -> fraction of recordings.
        seed: seed of the shuffle.
    """

    fractions: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_FRACTIONS))
    seed: int = 0

    def select(self, recordings: Sequence[T], split: str) -> list[T]:
        """The recordings (or the files they will come from) of `split`, in their original order."""
        return [recordings[i] for i in split_indices(len(recordings), self.fractions, self.seed)[split]]


@dataclass
class TimeBlockSplit:
    """Each recording's time axis in blocks, each block to one split.

    Attributes:
        fractions: split name -> fraction of frames (chronological) or of blocks (with block_frames).
        seed: seed of the block shuffle (unused when chronological).
        block_frames: None for one contiguous block per split in the order of `fractions` (train first, test
            last); otherwise blocks of this many frames assigned to splits by a seeded shuffle.
        gap_frames: frames left out at the start of a block that follows a block of another split.

    A segment shorter than one window makes the dataset raise (naming it) unless skip_invalid=True is passed,
    which leaves it out and logs it.
    """

    fractions: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_FRACTIONS))
    seed: int = 0
    block_frames: int | None = None
    gap_frames: int = 0

    def blocks(self, num_frames: int) -> dict[str, list[tuple[int, int]]]:
        """Frame ranges [start, stop) of each split for a recording of num_frames frames."""
        if self.block_frames is not None:
            check_int("block_frames (or None)", self.block_frames, 1)
        check_int("gap_frames", self.gap_frames, 0)
        # labels[k] = split of the k-th run of frames [edges[k], edges[k + 1]).
        if self.block_frames is None:
            counts = split_counts(num_frames, self.fractions)
            labels = [name for name in counts if counts[name] > 0]
            edges = np.cumsum([0] + [counts[name] for name in labels]).tolist()
        else:
            n_blocks = math.ceil(num_frames / self.block_frames)
            owner = {i: name for name, idx in split_indices(n_blocks, self.fractions, self.seed).items() for i in idx}
            labels = [owner[i] for i in range(n_blocks)]
            edges = [min(i * self.block_frames, num_frames) for i in range(n_blocks + 1)]
        result: dict[str, list[tuple[int, int]]] = {name: [] for name in self.fractions}
        run_start = 0
        for k, label in enumerate(labels):
            if k + 1 < len(labels) and labels[k + 1] == label:
                continue  # merge neighbouring blocks of one split into one run
            start = edges[run_start] + (self.gap_frames if run_start > 0 else 0)
            if start < edges[k + 1]:
                result[label].append((start, edges[k + 1]))
            run_start = k + 1
        return result

    def select(self, recordings: Sequence[Recording], split: str) -> list[Recording]:
        """The time segments of `split` of every recording, each a recording named "name[start:stop]"."""
        return [rec.segment(start, stop) for rec in recordings for start, stop in self.blocks(rec.num_frames)[split]]


Splitter = RecordingSplit | TimeBlockSplit


def _check_split(split: str, by: Splitter) -> None:
    check_choice("split", split, ["all", *by.fractions])


def _nonempty(chosen: list[T], split: str, total: int, by: Splitter) -> list[T]:
    if not chosen:
        raise ValueError(
            f"split={split!r} is empty: {total} recordings split by {by} leave nothing for it; "
            "use more data, a larger fraction or split='all'"
        )
    return chosen


def select_split(recordings: Sequence[Recording], split: str, by: Splitter) -> list[Recording]:
    """The recordings (or segments) of `split`; split="all" keeps everything.

    Raises:
        ValueError: an unknown split name, or the split comes out empty.
    """
    _check_split(split, by)
    if split == "all":
        return list(recordings)
    return _nonempty(by.select(recordings, split), split, len(recordings), by)


def build_split(
    candidates: Sequence[str],
    build: Callable[[str], Sequence[Recording]],
    split: str,
    by: Splitter,
    *,
    skip_invalid: bool,
    what: str = "files",
) -> list[Recording]:
    """Build only the recordings of `split` when each candidate (file, folder) is one recording.

    With RecordingSplit the candidates are split before anything is read, so a split never decodes the files of
    the others and stays the same whether or not invalid candidates are skipped; with TimeBlockSplit every
    candidate is built and then cut into blocks.
    """
    _check_split(split, by)
    if isinstance(by, RecordingSplit) and split != "all":
        candidates = _nonempty(by.select(candidates, split), split, len(candidates), by)
        return build_recordings(candidates, build, skip_invalid=skip_invalid, what=what)
    return select_split(build_recordings(candidates, build, skip_invalid=skip_invalid, what=what), split, by)
