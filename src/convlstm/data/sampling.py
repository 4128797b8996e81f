"""Window orders for archives read from disk: chunk by chunk, and split across distributed ranks without overlap."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from convlstm.data.windows import WindowDataset


class ChunkAwareSampler(DistributedSampler[int]):
    """Visits the windows of a :class:`~convlstm.data.windows.WindowDataset` chunk by chunk, and gives each
    distributed rank its own contiguous share of that order.

    Windows are grouped by the time chunk on disk that their first frame falls in. With ``shuffle`` the groups are
    visited in a random order and the windows inside a group in a random order too (both fixed by seed and epoch),
    so consecutive windows, and the consecutive batches a DataLoader worker reads, reuse the chunks a
    ``chunk_cache`` keeps decoded (see :class:`~convlstm.data.xarray_source.XarraySequences`) instead of decoding
    a chunk per window as a uniform shuffle would.

    Across ranks (``num_replicas`` > 1) the order is cut into ``num_replicas`` contiguous blocks, one per rank (not
    interleaved as torch's DistributedSampler does, which would send neighbouring windows to different ranks): no
    window is read by two ranks. With ``drop_last=False`` the order is first padded with its own first windows to a
    multiple of ``num_replicas`` so that every rank takes as many steps (the padding is the only repetition, fewer
    than ``num_replicas`` windows); with ``drop_last=True`` the remainder is left out instead. Call
    :meth:`set_epoch` before each epoch for a new order (Lightning does). It is a ``DistributedSampler``, so
    Lightning's DDP keeps it as it is instead of wrapping it in a distributed sampler that would reshuffle it.

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
        if isinstance(chunk_frames, bool) or not isinstance(chunk_frames, int) or chunk_frames < 1:
            raise ValueError(f"chunk_frames must be an int >= 1, got {chunk_frames!r}")
        distributed = dist.is_available() and dist.is_initialized()
        num_replicas = (dist.get_world_size() if distributed else 1) if num_replicas is None else num_replicas
        rank = (dist.get_rank() if distributed else 0) if rank is None else rank
        if not isinstance(num_replicas, int) or num_replicas < 1 or not isinstance(rank, int):
            raise ValueError(f"num_replicas must be an int >= 1 and rank an int, got {num_replicas!r}, {rank!r}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must lie in [0, num_replicas={num_replicas}), got {rank}")
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
