"""Window orders for archives read from disk (chunk by chunk, split across distributed ranks without overlap), and
patches drawn in favour of rain with the importance weights that keep scores over them unbiased."""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from convlstm.data.core.windows import WindowDataset
from convlstm.utils.checks import check_float, check_int


class ChunkAwareSampler(DistributedSampler[int]):
    """Visits the windows of a [`WindowDataset`][convlstm.data.WindowDataset] chunk by chunk, and gives each
    distributed rank its own contiguous share of that order.

    Windows are grouped by the time chunk on disk that their first frame falls in. With ``shuffle`` the groups are
    visited in a random order and the windows inside a group in a random order too (both fixed by seed and epoch),
    so consecutive windows, and the consecutive batches a DataLoader worker reads, reuse the chunks a
    ``chunk_cache`` keeps decoded (see [`XarraySequences`][convlstm.data.XarraySequences]) instead of decoding
    a chunk per window as a uniform shuffle would.

    Across ranks (``num_replicas`` > 1) the order is cut into ``num_replicas`` contiguous blocks, one per rank (not
    interleaved as torch's DistributedSampler does, which would send neighbouring windows to different ranks): no
    window is read by two ranks. With ``drop_last=False`` the order is first padded with its own first windows to a
    multiple of ``num_replicas`` so that every rank takes as many steps (the padding is the only repetition, fewer
    than ``num_replicas`` windows); with ``drop_last=True`` the remainder is left out instead. Call
    [`set_epoch`][convlstm.data.ChunkAwareSampler.set_epoch] before each epoch for a new order (Lightning does). It is a
    ``DistributedSampler``, so Lightning's DDP keeps it as it is instead of wrapping it in a distributed sampler that
    would reshuffle it.

    Args:
        dataset: the windows.
        chunk_frames: frames per time chunk on disk; default the dataset's ``time_chunk`` attribute (set by
            XarraySequences), else 1 (every window its own group: a plain shuffle).
        shuffle: random order of groups and of windows inside them; False visits the windows in index order.
        seed: with the epoch, fixes the order; must be the same on every rank.
        num_replicas: ranks to split the windows across (default: the torch.distributed world size, else 1).
        rank: this process's rank (default: the torch.distributed rank, else 0).
        drop_last: leave out the remainder instead of padding (see above).
    """

    def __init__(
        self,
        dataset: WindowDataset,
        *,
        chunk_frames: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = False,
    ) -> None:
        if not isinstance(dataset, WindowDataset):
            raise ValueError(f"dataset must be a WindowDataset (windows with a place in time), got {type(dataset)}")
        if chunk_frames is None:
            chunk_frames = getattr(dataset, "time_chunk", None) or 1
        chunk_frames = check_int("chunk_frames", chunk_frames, 1)
        distributed = dist.is_available() and dist.is_initialized()
        num_replicas = (dist.get_world_size() if distributed else 1) if num_replicas is None else num_replicas
        rank = (dist.get_rank() if distributed else 0) if rank is None else rank
        num_replicas = check_int("num_replicas", num_replicas, 1)
        rank = check_int(f"rank (of num_replicas={num_replicas})", rank, 0, num_replicas - 1)
        if drop_last and len(dataset) < num_replicas:
            raise ValueError(f"drop_last=True leaves no window: {len(dataset)} windows for {num_replicas} ranks")
        # DistributedSampler's own __init__ is not called: it would ask torch.distributed for the ranks even when
        # they are given. The attributes it defines are set here, with the same meanings.
        self.dataset, self.chunk_frames, self.shuffle, self.seed = dataset, chunk_frames, shuffle, seed
        self.windows = dataset
        self.num_replicas, self.rank, self.drop_last = num_replicas, rank, drop_last
        self.epoch = 0
        self.num_samples = len(self)
        self.total_size = self.num_samples * num_replicas
        self._groups = self._group_windows()

    def _group_windows(self) -> list[list[int]]:
        """Window indices grouped by (recording's frames, time chunk of the first frame), in index order."""
        groups: dict[tuple[int, int], list[int]] = {}
        for index in range(len(self.windows)):
            recording, start = self.windows.locate(index)
            key = (id(recording.frames), (recording.start + start) // self.chunk_frames)
            groups.setdefault(key, []).append(index)
        return list(groups.values())

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch: with shuffle, each epoch has its own order (the same on every rank)."""
        self.epoch = epoch

    def order(self) -> list[int]:
        """The order of all windows for the current epoch, before it is split across ranks."""
        if not self.shuffle:
            return [index for group in self._groups for index in group]
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        result: list[int] = []
        for g in torch.randperm(len(self._groups), generator=generator).tolist():
            group = self._groups[g]
            result += [group[i] for i in torch.randperm(len(group), generator=generator).tolist()]
        return result

    def __len__(self) -> int:
        total = len(self.windows)
        return total // self.num_replicas if self.drop_last else -(-total // self.num_replicas)

    def __iter__(self) -> Iterator[int]:
        order = self.order()
        share = len(self)
        if not self.drop_last:
            padding = share * self.num_replicas - len(order)
            order += (order * (padding // len(order) + 1))[:padding]
        return iter(order[self.rank * share : (self.rank + 1) * share])

    def __repr__(self) -> str:
        fields: dict[str, Any] = {
            "chunk_frames": self.chunk_frames,
            "groups": len(self._groups),
            "rank": self.rank,
            "num_replicas": self.num_replicas,
        }
        return f"ChunkAwareSampler({', '.join(f'{k}={v}' for k, v in fields.items())})"


#: The frames of a window whose rain decides where its patch is drawn (the sources' ``favour_rain_in``).
FavourRainIn = Literal["window", "context"]


@dataclass(frozen=True)
class Patch:
    """Where a patch was cut from its window, and how much it counts.

    Attributes:
        top: first row of the patch.
        left: first column of the patch.
        acceptance: its acceptance probability (see [`RainBiasedPatches`][convlstm.data.RainBiasedPatches]).
        weight: its importance weight, mean acceptance of the window / acceptance of the patch.
    """

    top: int
    left: int
    acceptance: float
    weight: float


class RainBiasedPatches:
    """Patch positions drawn in favour of rain, each with the importance weight that undoes the favour.

    A patch position is accepted with probability ``a = min_acceptance + (1 - min_acceptance) * f``, where f is the
    fraction of the patch's pixels, over every frame given (the sources give the whole window or its context frames:
    their ``favour_rain_in``), with a rain rate of at least ``threshold``. Instead of proposing uniform positions
    and rejecting some, the position is drawn directly from the distribution that rejection would give, ``q = a /
    sum(a)``: the same patches, with no loop that a dry window could keep spinning. The importance weight is
    ``uniform / q = mean(a) / a``, so the weighted mean of a score over drawn patches is an unbiased estimate of its
    mean over uniformly placed patches (the weights of one window average 1, every window counts as much as with
    uniform patches).

    Positions whose target frames have no valid pixel get acceptance 0: they hold nothing a masked loss or score
    counts, so leaving them out changes no masked sum. A window with no valid target pixel at all gets a uniform
    position, acceptance 0 and weight 1.

    Args:
        size: patch (height, width), or one int for square patches.
        threshold: rain rate (mm/h) from which a pixel counts as raining.
        min_acceptance: acceptance of a dry patch, in (0, 1]; 1 draws uniform positions.
    """

    def __init__(self, size: int | Sequence[int], *, threshold: float = 0.1, min_acceptance: float = 0.1) -> None:
        pair = (size, size) if isinstance(size, int) else tuple(size)
        if len(pair) != 2:
            raise ValueError(f"size must be a positive int or (height, width) of positive ints, got {size!r}")
        self.size = (check_int("size[0] (height)", pair[0], 1), check_int("size[1] (width)", pair[1], 1))
        self.threshold = check_float("threshold", threshold, 0.0, math.inf)
        self.min_acceptance = check_float("min_acceptance", min_acceptance, 0.0, 1.0, low_open=True)

    def acceptance(self, rain_rate: np.ndarray, target_valid: np.ndarray | None = None) -> np.ndarray:
        """The acceptance probability of every patch position of one window.

        Args:
            rain_rate: (T, C, H, W) rain rates in mm/h of the frames that decide, NaN where missing (counts as
                dry).
            target_valid: (T_out, C, H, W) bool, True where a target pixel is valid; None: all are.

        Returns:
            Acceptance probabilities as float64.

        Shape:
            (H - height + 1, W - width + 1), indexed by the patch's (top, left).
        """
        height, width = rain_rate.shape[-2:]
        if height < self.size[0] or width < self.size[1]:
            raise ValueError(f"patch size {self.size} is larger than the frames ({height}, {width})")
        with np.errstate(invalid="ignore"):  # NaN compares False: no coverage counts as dry
            raining = (rain_rate >= self.threshold).sum(axis=(0, 1))
        pixels = rain_rate.shape[0] * rain_rate.shape[1] * self.size[0] * self.size[1]
        accept = self.min_acceptance + (1.0 - self.min_acceptance) * self._box_sums(raining) / pixels
        if target_valid is not None:
            accept[self._box_sums(target_valid.sum(axis=(0, 1))) == 0] = 0.0
        return accept

    def _box_sums(self, counts: np.ndarray) -> np.ndarray:
        """Sums of ``counts`` (H, W) over every patch position, from an integral image."""
        h, w = self.size
        integral = np.zeros((counts.shape[0] + 1, counts.shape[1] + 1), dtype=np.int64)
        integral[1:, 1:] = counts.cumsum(0).cumsum(1)
        return integral[h:, w:] - integral[:-h, w:] - integral[h:, :-w] + integral[:-h, :-w]

    def draw(self, rain_rate: np.ndarray, target_valid: np.ndarray | None, rng: np.random.Generator) -> Patch:
        """One patch position of a window (arguments as in [`acceptance`][convlstm.data.RainBiasedPatches.acceptance]),
        drawn with ``rng``."""
        accept = self.acceptance(rain_rate, target_valid)
        total = accept.sum()
        if total <= 0:
            top, left = (int(rng.integers(n)) for n in accept.shape)
            return Patch(top=top, left=left, acceptance=0.0, weight=1.0)
        cumulative = np.cumsum(accept, axis=None)
        flat = min(int(np.searchsorted(cumulative, rng.random() * total, side="right")), accept.size - 1)
        while accept.flat[flat] == 0:  # only when the draw rounds up to the total: take the last accepted position
            flat -= 1
        top, left = divmod(flat, accept.shape[1])
        value = float(accept[top, left])
        return Patch(top=top, left=left, acceptance=value, weight=float(total / accept.size) / value)


def window_rng(seed: int, split: str, epoch: int, index: int) -> np.random.Generator:
    """The generator of window ``index``'s patch and augmentation: fixed by (seed, split, epoch, index), so that a
    resumed run, a worker process and the main process draw alike, and every epoch draws anew."""
    return np.random.default_rng([seed, zlib.crc32(split.encode()), epoch, index])
