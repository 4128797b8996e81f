"""Archives read lazily from disk: time chunks detected and cached, windows visited chunk by chunk and split across
ranks without overlap, DataLoader workers limited to one compute thread."""

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from torch.utils.data import DataLoader, Dataset
from xarray.backends import zarr as zarr_backend

from convlstm.data import ChunkAwareSampler, XarraySequences, init_worker

STEPS, CHUNK = 40, 8


def _weather() -> xr.Dataset:
    times = pd.date_range("2022-01-01", periods=STEPS, freq="h")
    rng = np.random.default_rng(0)
    return xr.Dataset(
        {name: (("time", "lat", "lon"), rng.random((STEPS, 3, 4), dtype=np.float32)) for name in ("t2m", "tp")},
        coords={"time": times, "lat": np.arange(3.0), "lon": np.arange(4.0)},
    )


def _write(tmp_path: Path, kind: str) -> Path:
    data = _weather()
    if kind == "zarr":
        path = tmp_path / "era.zarr"
        data.to_zarr(path, encoding={v: {"chunks": (CHUNK, 3, 4)} for v in data.data_vars}, zarr_format=2)
    elif kind == "nc_chunked":
        path = tmp_path / "era.nc"
        data.to_netcdf(path, encoding={v: {"chunksizes": (CHUNK, 3, 4)} for v in data.data_vars})
    else:
        path = tmp_path / "era_contiguous.nc"
        data.to_netcdf(path)
    return path


def _windows(path: Path, **kwargs: Any) -> XarraySequences:
    return XarraySequences(path, variables=["t2m", "tp"], split="all", context_frames=3, target_frames=2, **kwargs)


@pytest.mark.parametrize(("kind", "chunk"), [("zarr", CHUNK), ("nc_chunked", CHUNK), ("nc_contiguous", None)])
def test_time_chunk_is_read_from_the_storage(tmp_path: Path, kind: str, chunk: int | None) -> None:
    assert _windows(_write(tmp_path, kind)).time_chunk == chunk


@pytest.mark.parametrize("kind", ["zarr", "nc_chunked"])
def test_chunk_cache_gives_the_same_windows(tmp_path: Path, kind: str) -> None:
    path = _write(tmp_path, kind)
    plain, cached = _windows(path), _windows(path, chunk_cache=2)
    for index in ChunkAwareSampler(cached, seed=3):
        want, got = plain[index], cached[index]
        for key in want:
            assert torch.equal(got[key], want[key]), (index, key)


def test_chunk_aware_order_decodes_each_chunk_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a cache of two chunks (a window spans at most two), visiting the windows chunk by chunk reads each
    chunk of each variable once; a uniform shuffle reads about one chunk pair per window."""
    path = _write(tmp_path, "zarr")
    reads: list[Any] = []
    original = zarr_backend.ZarrArrayWrapper.__getitem__

    def counting(self: Any, key: Any) -> Any:
        reads.append(key)
        return original(self, key)

    monkeypatch.setattr(zarr_backend.ZarrArrayWrapper, "__getitem__", counting)
    data = _windows(path, chunk_cache=2)
    sampler = ChunkAwareSampler(data, seed=0)
    assert sampler.chunk_frames == CHUNK
    reads.clear()
    for index in sampler:
        data[index]
    # Groups are visited in random order, so a window that spills into the next chunk may decode it early and
    # that chunk again later (at most once per group boundary): reads <= 2 x chunks per variable.
    chunks = STEPS // CHUNK
    assert len(reads) <= 2 * 2 * chunks
    reads.clear()
    shuffled = torch.randperm(len(data), generator=torch.Generator().manual_seed(0)).tolist()
    for index in shuffled:
        data[index]
    assert len(reads) > 2 * 2 * chunks


def test_windows_of_a_group_share_their_first_chunk(tmp_path: Path) -> None:
    data = _windows(_write(tmp_path, "zarr"))
    order = ChunkAwareSampler(data, seed=1).order()
    first_chunks = [data.locate(i)[1] // CHUNK for i in order]
    # Each chunk's windows come together: the chunk changes once per group.
    changes = sum(a != b for a, b in itertools.pairwise(first_chunks))
    assert changes == len(set(first_chunks)) - 1
    assert sorted(order) == list(range(len(data)))


@pytest.mark.parametrize("drop_last", [False, True])
def test_ranks_share_the_windows_without_overlap(tmp_path: Path, drop_last: bool) -> None:
    data = _windows(_write(tmp_path, "zarr"))
    total = len(data)  # 36 windows
    shares = [list(ChunkAwareSampler(data, seed=5, num_replicas=5, rank=r, drop_last=drop_last)) for r in range(5)]
    assert len({len(s) for s in shares}) == 1  # every rank takes as many steps
    everything = [i for s in shares for i in s]
    if drop_last:
        assert len(everything) == len(set(everything)) == total - total % 5
    else:
        assert set(everything) == set(range(total))
        assert len(everything) - len(set(everything)) == (-total) % 5  # only the padding repeats
    # A new epoch, a new order, still split the same way.
    sampler = ChunkAwareSampler(data, seed=5, num_replicas=5, rank=0)
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_sampler_arguments_are_checked(tmp_path: Path) -> None:
    path = _write(tmp_path, "zarr")
    data = _windows(path)
    with pytest.raises(ValueError, match=r"rank \(of num_replicas=2\) must be an int in \[0, 1\], got 2"):
        ChunkAwareSampler(data, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="chunk_frames must be an int >= 1, got 0"):
        ChunkAwareSampler(data, chunk_frames=0)
    with pytest.raises(ValueError, match="chunk_cache must be an int >= 0"):
        _windows(path, chunk_cache=-1)


class _Threads(Dataset[int]):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> int:
        return torch.get_num_threads()


def test_workers_run_one_compute_thread_and_read_the_archive(tmp_path: Path) -> None:
    threads = DataLoader(_Threads(), batch_size=1, num_workers=2, worker_init_fn=init_worker)
    assert [int(t) for t in threads] == [1, 1, 1, 1]
    data = _windows(_write(tmp_path, "zarr"), chunk_cache=2)
    sampler = ChunkAwareSampler(data, seed=2)
    loader = DataLoader(data, batch_size=4, sampler=sampler, num_workers=2, worker_init_fn=init_worker)
    order = list(sampler)
    seen = torch.cat([batch["context"] for batch in loader])
    want = torch.stack([data[i]["context"] for i in order])
    assert torch.equal(seen, want)
