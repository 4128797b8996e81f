"""Generation speed of the built-in data generators on ONE core (torch.set_num_threads(1), process pinned to one CPU).

The headline number is Moving MNIST training sequences (20 frames of 64x64, two digits, read as dataset items:
float32 "context" and "target" tensors) per second, against the target of 1,000 sequences/s. The other generators
are timed the same way, for information.

With --archive-gb SIZE it first times windows read from a chunked zarr archive of SIZE GB that it writes to disk
(one float32 variable, 256 x 256 frames, chunks of 16 frames; 20-frame windows, 10 in and 10 out), in windows per
second, in batches of 8: plain xarray indexing in a shuffled order (``ds["field"].isel(time=...).values``, no dask,
stacked with torch.stack), then XarraySequences through a DataLoader with 0 and 2 workers, shuffled as usual and in
ChunkAwareSampler's order with a chunk cache. These rows are not pinned to one core (the workers need their own);
the main process and each worker use one torch thread.

Usage:
    python benchmarks/data.py [--sequences N] [--all] [--json FILE]
        [--archive-gb SIZE [--archive-dir DIR] [--windows N] [--skip-generators]]
"""

import argparse
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch.utils.data import DataLoader, Sampler

from _timing import write_json_atomic
from convlstm.data.core.sampling import ChunkAwareSampler
from convlstm.data.core.workers import init_worker
from convlstm.data.formats.xarray_source import XarraySequences
from convlstm.data.synthetic.anomalies import AnomalySequences
from convlstm.data.synthetic.bouncing_balls import BouncingBalls
from convlstm.data.synthetic.moving_mnist import MovingMNIST
from convlstm.data.synthetic.radar import SyntheticRadar
from convlstm.data.synthetic.shapes import MovingShapesSegmentation

TARGET_PER_S = 1_000.0
ARCHIVE_FRAME = 256  # H = W of the archive's frames
ARCHIVE_CHUNK = 16  # frames per time chunk
CONTEXT, TARGET = 10, 10
BATCH = 8


def write_archive(path: Path, gigabytes: float, seed: int = 0) -> int:
    """Writes a zarr store of about ``gigabytes`` GB (float32 "field", time x 256 x 256, chunks of 16 frames) in
    blocks, never holding more than one block in memory; returns the number of frames."""
    frame_bytes = ARCHIVE_FRAME * ARCHIVE_FRAME * 4
    frames = max(4 * ARCHIVE_CHUNK, int(gigabytes * 1e9 / frame_bytes) // ARCHIVE_CHUNK * ARCHIVE_CHUNK)
    rng = np.random.default_rng(seed)
    block = 16 * ARCHIVE_CHUNK
    for first in range(0, frames, block):
        count = min(block, frames - first)
        # Noise rounded to steps of 1/64, as packed geophysical fields are: compresses about 2x, as they do.
        values = np.round(rng.standard_normal((count, ARCHIVE_FRAME, ARCHIVE_FRAME), dtype=np.float32) * 64) / 64
        times = pd.date_range("2000-01-01", periods=frames, freq="h")[first : first + count]
        data = xr.Dataset(
            {"field": (("time", "lat", "lon"), values)},
            coords={
                "time": times,
                "lat": np.arange(ARCHIVE_FRAME, dtype=np.float32),
                "lon": np.arange(ARCHIVE_FRAME, dtype=np.float32),
            },
        )
        if first == 0:
            encoding = {"field": {"chunks": (ARCHIVE_CHUNK, ARCHIVE_FRAME, ARCHIVE_FRAME)}}
            data.to_zarr(path, mode="w", encoding=encoding, consolidated=True)
        else:
            data.to_zarr(path, append_dim="time", consolidated=True)
    return frames


def windows_per_second(read: Callable[[], Iterable[object]], count: int) -> float:
    """Windows per wall-clock second to read ``count`` windows through ``read()`` (one pass)."""
    wall = time.perf_counter()
    for _ in read():
        pass
    return count / (time.perf_counter() - wall)


class Prefix(Sampler[int]):
    """The first ``count`` indices of an order, as a sampler (so that every row reads the same number of windows)."""

    def __init__(self, order: Iterable[int], count: int) -> None:
        self.order = list(order)[:count]

    def __iter__(self) -> Iterator[int]:
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)


def archive_rows(gigabytes: float, windows: int, directory: str | None, passes: int = 2) -> dict[str, object]:
    """Times the archive rows (see the module docstring), the best of ``passes``; returns their numbers."""
    # One torch thread here, as in each worker (init_worker): on a busy machine the main process's OpenMP threads
    # would otherwise spin in every batch's torch.stack.
    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="convlstm-archive-", dir=directory))
    path = root / "archive.zarr"
    try:
        started = time.perf_counter()
        frames = write_archive(path, gigabytes)
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e9
        print(
            f"\nChunked zarr archive: {frames} frames of {ARCHIVE_FRAME}x{ARCHIVE_FRAME} float32 "
            f"({frames * ARCHIVE_FRAME**2 * 4 / 1e9:.2f} GB of values, {size:.2f} GB on disk, chunks of "
            f"{ARCHIVE_CHUNK} frames), written in {time.perf_counter() - started:.0f} s; windows of "
            f"{CONTEXT} + {TARGET} frames; {windows} windows per row, best of {passes} passes; "
            f"{os.cpu_count()} CPUs, not pinned"
        )
        data = XarraySequences(
            path,
            variables=["field"],
            split="all",
            context_frames=CONTEXT,
            target_frames=TARGET,
            y_dim="lat",
            x_dim="lon",
        )
        cached = XarraySequences(
            path,
            variables=["field"],
            split="all",
            context_frames=CONTEXT,
            target_frames=TARGET,
            y_dim="lat",
            x_dim="lon",
            chunk_cache=2,
        )
        count = min(windows, len(data))
        shuffled = Prefix(torch.randperm(len(data), generator=torch.Generator().manual_seed(0)).tolist(), count)
        opened = xr.open_dataset(path, engine="zarr", chunks=None, cache=False)  # lazy, no dask

        def plain() -> Iterable[object]:
            # The same batches of 8 as the DataLoader rows make, stacked the same way.
            starts = list(shuffled)
            for first in range(0, len(starts), BATCH):
                windows = [
                    torch.from_numpy(opened["field"].isel(time=slice(s, s + CONTEXT + TARGET)).values)
                    for s in starts[first : first + BATCH]
                ]
                yield torch.stack(windows)

        def loader(dataset: XarraySequences, sampler: Sampler[int], workers: int) -> Callable[[], Iterable[object]]:
            return lambda: DataLoader(
                dataset, batch_size=BATCH, sampler=sampler, num_workers=workers, worker_init_fn=init_worker
            )

        chunked = Prefix(ChunkAwareSampler(cached, seed=0), count)
        rows = {
            "plain xarray isel, shuffled": (plain, count),
            "XarraySequences, shuffled, 0 workers": (loader(data, shuffled, 0), count),
            "XarraySequences, shuffled, 2 workers": (loader(data, shuffled, 2), count),
            "XarraySequences + chunk cache, ChunkAwareSampler, 0 workers": (
                loader(cached, chunked, 0),
                count,
            ),
            "XarraySequences + chunk cache, ChunkAwareSampler, 2 workers": (
                loader(cached, chunked, 2),
                count,
            ),
        }
        results: dict[str, object] = {"archive_gb": size, "frames": frames, "windows": count, "passes": passes}
        # Rows take turns, pass after pass, and each keeps its best: load from other jobs slows single passes.
        rates = {name: 0.0 for name in rows}
        for _ in range(passes):
            for name, (read, n) in rows.items():
                rates[name] = max(rates[name], windows_per_second(read, n))
        reference = rates["plain xarray isel, shuffled"]
        for name, rate in rates.items():
            results[name] = rate
            print(f"  {name:<62} {rate:8.1f} windows/s  {rate / reference:5.2f}x")
        return results
    finally:
        shutil.rmtree(root, ignore_errors=True)


def pin_to_one_core() -> str:
    """Restrict this process to one CPU and torch to one thread; returns a description."""
    torch.set_num_threads(1)
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"CPU {cpu}, 1 torch thread"
    return "1 torch thread (no CPU pinning on this platform)"


def items_per_second(make: Callable[[int], object], count: int) -> tuple[float, float]:
    """Reads items 0..count-1 (after one warm-up item); returns items per wall-clock second and per CPU second.

    On a machine shared with other jobs the CPU-second rate is the one that does not depend on the load.
    """
    make(count)  # warm-up: caches, lazy imports
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(count):
        make(i)
    return count / (time.perf_counter() - wall), count / (time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=3000, help="Moving MNIST sequences to time")
    parser.add_argument("--all", action="store_true", help="also time the other generators (fewer sequences)")
    parser.add_argument("--json", help="write the results to this JSON file")
    parser.add_argument("--archive-gb", type=float, default=None, help="time windows from a zarr archive this big")
    parser.add_argument("--archive-dir", default=None, help="where to write it (default: the temporary directory)")
    parser.add_argument("--windows", type=int, default=400, help="windows read per archive row")
    parser.add_argument("--passes", type=int, default=2, help="passes over each archive row (the best is kept)")
    parser.add_argument("--skip-generators", action="store_true", help="only the archive rows")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    archive = (
        None if args.archive_gb is None else archive_rows(args.archive_gb, args.windows, args.archive_dir, args.passes)
    )
    if args.skip_generators:
        if args.json:
            write_json_atomic(args.json, {"archive": archive})
        return
    where = pin_to_one_core()
    mnist = MovingMNIST(split="train", num_sequences=args.sequences + 1)
    rate, cpu_rate = items_per_second(mnist.__getitem__, args.sequences)
    results: dict[str, object] = {
        "moving_mnist_train_per_s": rate,
        "moving_mnist_train_per_cpu_s": cpu_rate,
        "ratio_to_1000": rate / TARGET_PER_S,
        "where": where,
        "archive": archive,
    }
    print(f"Moving MNIST train sequences (20 x 64 x 64, 2 digits), {where}")
    print(f"  {rate:,.0f} sequences/s   ratio to the 1,000/s target: {rate / TARGET_PER_S:.2f}x")
    print(f"  ({cpu_rate:,.0f} sequences per CPU second, {cpu_rate / TARGET_PER_S:.2f}x, independent of other load)")

    if args.all:
        others = {
            "bouncing_balls (20 x 30 x 30, 3 balls)": (BouncingBalls(num_sequences=501), 500),
            "moving_shapes (16 x 64 x 64)": (MovingShapesSegmentation(num_sequences=201), 200),
            "anomalies, balls (20 x 30 x 30)": (AnomalySequences(split="test", num_sequences=201), 200),
            "synthetic_radar (20 x 100 x 100)": (SyntheticRadar(num_sequences=41), 40),
        }
        for name, (dataset, count) in others.items():
            other, other_cpu = items_per_second(dataset.__getitem__, count)
            results[name] = {"per_s": other, "per_cpu_s": other_cpu}
            print(f"  {name}: {other:,.1f} sequences/s ({other_cpu:,.1f} per CPU second)")
    if args.json:
        write_json_atomic(args.json, results)


if __name__ == "__main__":
    main()
