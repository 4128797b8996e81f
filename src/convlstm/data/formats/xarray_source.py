"""Gridded fields from netCDF or zarr archives through xarray, read lazily window by window.

Chosen variables become channels; the time, y (lat) and x (lon) dimensions become T, H, W. Files are opened
without dask (chunks=None, cache=False): xarray's lazy backend arrays read only the time slice of each
window, so archives larger than memory work. A store chunked along time decodes whole chunks: with
``chunk_cache=N`` each process keeps its last N decoded time chunks, so that consecutive windows in the same
chunks (the order of [`ChunkAwareSampler`][convlstm.data.ChunkAwareSampler]) decode each chunk once.

A zarr store can also be read from an fsspec URL (``s3://``, ``gs://``, ``https://``, ...) with
``storage_options`` (credentials, an endpoint, ``anon``); only the chunks a window needs are fetched, through the
same chunk cache. ``https://`` needs aiohttp, ``s3://`` s3fs (both in the ``remote`` extra), ``gs://`` gcsfs.

Each window's coordinates are kept, so a prediction can be written back as an xarray.Dataset with a lead-time dimension:

    data = XarraySequences("era5.zarr", variables=["t2m", "tp"], context_frames=12, target_frames=6)
    prediction = model(data[i]["context"][None])[0]                     # (6, 2, H, W)
    data.coords(i).to_dataset(prediction).to_netcdf("forecast.nc")      # dims (lead_time, lat, lon)
"""

from __future__ import annotations

import functools
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from convlstm.data.core.splits import Splitter, TimeBlockSplit, select_split
from convlstm.data.core.windows import NanPolicy, Recording, Transform, WindowDataset, WindowOptions
from convlstm.utils.checks import check_int
from convlstm.utils.deprecation import renamed_keywords

logger = logging.getLogger(__name__)


#: fsspec protocol -> the package that implements it (named when it is missing)
REMOTE_PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "http": "aiohttp", "https": "aiohttp"}

Location = str | os.PathLike[str]


def is_url(location: Location) -> bool:
    """Whether ``location`` is an fsspec URL of another filesystem than the local one ("s3://bucket/store.zarr")."""
    text = os.fspath(location)
    return "://" in text and text.split("://", 1)[0].lower() not in ("file", "local")


def open_lazy(
    path: Location, engine: str | None = None, storage_options: Mapping[str, Any] | None = None
) -> xr.Dataset:
    """Open a netCDF file or zarr store lazily and without dask; zarr is recognised by a .zarr suffix or its
    metadata files.

    ``path`` may also be an fsspec URL (``s3://``, ``gs://``, ``https://``, ...) of a zarr store, opened with
    ``storage_options`` (passed to the filesystem: ``{"anon": True}``, ``{"endpoint_url": ...}``, credentials).
    Only the store's metadata is read here; data chunks are fetched when a slice is read.

    Raises:
        FileNotFoundError: nothing at ``path``.
        ImportError: the filesystem package of the URL's protocol (s3fs, gcsfs, aiohttp) is not installed.
        ValueError: xarray cannot open it, or ``storage_options`` come with a local path.
    """
    if storage_options is not None and not isinstance(storage_options, Mapping):
        raise ValueError(f"storage_options must be a mapping, got {type(storage_options).__name__} {storage_options!r}")
    if is_url(path):
        return _open_url(os.fspath(path), engine, dict(storage_options or {}))
    if storage_options:
        raise ValueError(
            f"storage_options apply to fsspec URLs (s3://, gs://, https://), not to the local path {path}: "
            f"leave them out, or give a URL; got {dict(storage_options)}"
        )
    path = Path(path.split("://", 1)[1] if isinstance(path, str) and "://" in path else path)
    if not path.exists():
        raise FileNotFoundError(f"xarray source not found: {path}")
    if engine is None and (path.suffix == ".zarr" or any((path / m).exists() for m in ("zarr.json", ".zgroup"))):
        engine = "zarr"
    try:
        return xr.open_dataset(path, engine=engine, chunks=None, cache=False)
    except (ValueError, OSError) as error:
        raise ValueError(f"{path}: xarray could not open it ({error})") from error


def _open_url(url: str, engine: str | None, storage_options: dict[str, Any]) -> xr.Dataset:
    protocol = url.split("://", 1)[0].lower()
    if engine not in (None, "zarr"):
        raise ValueError(f"{url}: a URL is read as a zarr store (engine 'zarr' or None), got engine={engine!r}")
    import fsspec  # a dependency of torch, so always there; the protocol's own package may not be

    try:
        fsspec.get_filesystem_class(protocol)
    except ImportError as error:
        package = REMOTE_PACKAGES.get(protocol, f"the fsspec implementation of {protocol}://")
        raise ImportError(
            f"{url}: reading {protocol}:// URLs needs {package}, which is not installed: pip install {package} "
            f"(s3fs and aiohttp come with pip install 'convlstm[remote]') ({error})"
        ) from error
    except ValueError as error:
        raise ValueError(f"{url}: fsspec knows no protocol {protocol!r} ({error})") from None
    try:
        return xr.open_dataset(url, engine="zarr", chunks=None, cache=False, storage_options=storage_options)
    except FileNotFoundError as error:  # zarr's "no group found" is one too
        raise FileNotFoundError(f"xarray source not found: no zarr store at {url} ({error})") from error
    except (ValueError, OSError) as error:
        raise ValueError(f"{url}: xarray could not open it as a zarr store ({error})") from error


def _given(dataset: xr.Dataset) -> xr.Dataset:
    return dataset


class XarrayFrames:
    """Variables of an xarray Dataset as (T, C, H, W) frames; indexing a time slice reads only that slice.

    Args:
        open_dataset: returns the dataset; called again in each DataLoader worker process (file handles must
            not be shared across processes).
        variables: the variables, in channel order; each must have exactly the dims (time, y, x).
        dims: names of the (time, y, x) dimensions.
        source: the file, for error messages.
        chunk_cache: decoded time chunks to keep per process (0: none; each read then reads just its slice).
            Only for stores chunked along time (`time_chunk` not None); each cached chunk holds
            time_chunk x C x H x W values.

    Attributes:
        time_chunk: frames per chunk along time on disk (the largest over the variables), or None when the
            storage is not chunked along time (a contiguous netCDF variable, an in-memory dataset).
    """

    def __init__(
        self,
        open_dataset: Callable[[], xr.Dataset],
        variables: Sequence[str],
        dims: tuple[str, str, str],
        source: str,
        *,
        chunk_cache: int = 0,
    ) -> None:
        check_int("chunk_cache", chunk_cache, 0)
        self.open_dataset, self.variables, self.dims = open_dataset, list(variables), dims
        self.chunk_cache = chunk_cache
        self._dataset: xr.Dataset | None = None
        self._pid: int | None = None
        self._chunks: OrderedDict[int, np.ndarray] = OrderedDict()
        dataset = self.dataset
        for name in self.variables:
            if name not in dataset.data_vars:
                raise ValueError(f"{source}: no variable {name!r}; it has {list(dataset.data_vars)}")
            if set(dataset[name].dims) != set(dims):
                raise ValueError(
                    f"{source}: variable {name!r} has dims {dataset[name].dims}, expected exactly {dims}; "
                    "select the other dims first (dataset.sel / isel) and pass the dataset"
                )
        self.shape = (dataset.sizes[dims[0]], len(self.variables), dataset.sizes[dims[1]], dataset.sizes[dims[2]])
        self.time_chunk = time_chunk_of(dataset, self.variables, dims[0])

    @property
    def dataset(self) -> xr.Dataset:
        """The open dataset of this process (opened again after a fork: file handles are not shared)."""
        if self._dataset is None or self._pid != os.getpid():
            self._dataset, self._pid = self.open_dataset(), os.getpid()
            self._chunks.clear()
        return self._dataset

    def __getitem__(self, time: slice) -> np.ndarray:
        if self.chunk_cache and self.time_chunk is not None:
            start, stop, step = time.indices(self.shape[0])
            if step == 1 and stop > start:
                return self._read_through_cache(start, stop, self.time_chunk)
        return self._read(time)

    def _read(self, time: slice) -> np.ndarray:
        dataset = self.dataset
        fields = [dataset[name].isel({self.dims[0]: time}).transpose(*self.dims).values for name in self.variables]
        if len(fields) == 1:
            return fields[0][:, None]  # (t, 1, H, W) without a copy: the reader copies once (WindowDataset does)
        return np.stack(fields, axis=1)  # (t, C, H, W)

    def _read_through_cache(self, start: int, stop: int, chunk: int) -> np.ndarray:
        """Frames [start, stop) assembled from whole decoded time chunks, the last ``chunk_cache`` of them kept."""
        parts = []
        for k in range(start // chunk, (stop - 1) // chunk + 1):
            frames = self._chunks.get(k)
            if frames is None:
                frames = self._read(slice(k * chunk, min((k + 1) * chunk, self.shape[0])))
                self._chunks[k] = frames
                while len(self._chunks) > self.chunk_cache:
                    self._chunks.popitem(last=False)
            else:
                self._chunks.move_to_end(k)
            parts.append(frames[max(start, k * chunk) - k * chunk : min(stop, (k + 1) * chunk) - k * chunk])
        return np.concatenate(parts)  # a copy: the cached chunks stay as they are

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_dataset": None, "_pid": None, "_chunks": OrderedDict()}


def time_chunk_of(dataset: xr.Dataset, variables: Sequence[str], time_dim: str) -> int | None:
    """Frames per chunk along ``time_dim`` on disk, the largest over ``variables``; None when none of them is
    chunked along time (as the backend reports it in each variable's encoding)."""
    sizes = []
    for name in variables:
        variable = dataset[name]
        encoding = variable.encoding
        preferred = encoding.get("preferred_chunks") or {}
        if time_dim in preferred:
            sizes.append(int(preferred[time_dim]))
            continue
        chunks = encoding.get("chunks") or encoding.get("chunksizes")
        if chunks is not None and len(chunks) == variable.ndim:
            sizes.append(int(chunks[variable.dims.index(time_dim)]))
    return max(sizes) if sizes else None


@dataclass
class WindowCoords:
    """The coordinates of one window: what is needed to write its prediction back with them.

    Attributes:
        time: time coordinate of the window's context_frames + target_frames frames.
        y, x: coordinates of the H and W axes.
        context_frames: frames of the window that are input.
        variables: channel names.
        dims: names of the (time, y, x) dimensions.
    """

    time: np.ndarray
    y: np.ndarray
    x: np.ndarray
    context_frames: int
    variables: list[str]
    dims: tuple[str, str, str]

    def to_dataset(self, prediction: Tensor | np.ndarray) -> xr.Dataset:
        """A prediction (T_out, C, H, W) as a Dataset with dims (lead_time, y, x), one variable per channel.

        lead_time = valid time - init time (the last context frame's time); valid_time is kept as a coordinate
        along lead_time and init_time as a scalar coordinate.
        """
        values = prediction.detach().cpu().numpy() if isinstance(prediction, Tensor) else np.asarray(prediction)
        t_out = len(self.time) - self.context_frames
        expected = (t_out, len(self.variables), len(self.y), len(self.x))
        if values.shape != expected:
            raise ValueError(f"prediction must have shape (T_out, C, H, W) = {expected}, got {values.shape}")
        init_time, valid_time = self.time[self.context_frames - 1], self.time[self.context_frames :]
        _, y_dim, x_dim = self.dims
        dims = ("lead_time", y_dim, x_dim)
        return xr.Dataset(
            {name: (dims, values[:, c]) for c, name in enumerate(self.variables)},
            coords={
                "lead_time": valid_time - init_time,
                "valid_time": ("lead_time", valid_time),
                "init_time": init_time,
                y_dim: self.y,
                x_dim: self.x,
            },
        )


def regular_runs(time: np.ndarray, *, source: str = "time coordinate") -> list[tuple[int, int]]:
    """[start, stop) runs of a time coordinate with its most common step; a gap or irregular step cuts a run."""
    if len(time) < 2:
        return [(0, len(time))]
    steps = np.diff(time)
    if (steps <= steps[0] - steps[0]).any():
        raise ValueError(f"{source}: the time coordinate must increase strictly, got steps {steps[:5]} ...")
    values, counts = np.unique(steps, return_counts=True)
    cuts = (np.flatnonzero(steps != values[counts.argmax()]) + 1).tolist()
    return list(zip([0, *cuts], [*cuts, len(time)], strict=True))


def recordings_between_gaps(name: str, frames: Any, times: np.ndarray) -> list[Recording]:
    """One recording per gap-free run of ``times`` (see `regular_runs`; a warning counts the gaps), each
    slicing ``frames`` lazily."""
    runs = regular_runs(times, source=name)
    if len(runs) > 1:
        logger.warning("%s: the time series has %d gaps; cut into %d recordings", name, len(runs) - 1, len(runs))
    whole = Recording(name=name, frames=frames, source=name)
    return [whole if len(runs) == 1 else whole.segment(a, b) for a, b in runs]


class XarraySequences(WindowDataset):
    """Windows over variables of a netCDF file or zarr store (or an open xarray Dataset).

    A time coordinate with gaps (missing steps) is cut at the gaps into separate recordings (logged), so no
    window spans a gap. The window arguments (``context_frames``, ``target_frames``, ``stride``, ``transform``,
    ``nan_policy``, ``skip_invalid``) are the fields of [`WindowOptions`][convlstm.data.WindowOptions], which
    documents them.

    Args:
        root: path of a netCDF file or zarr store, an fsspec URL of a zarr store ("s3://bucket/era5.zarr",
            "https://host/era5.zarr"), or an xarray.Dataset (already selected / subset).
        variables: the variables to read, in channel order.
        split: "train" (the default), "val", "test" (keys of split_by's fractions) or "all".
        split_by: default TimeBlockSplit() (chronological: first 80 % train, then 10 % val, 10 % test).
        time_dim: name of the time dimension (T).
        y_dim: name of the y dimension (H).
        x_dim: name of the x dimension (W).
        engine: xarray engine to open a path with (default: zarr for zarr stores, else xarray's choice).
        chunk_cache: decoded time chunks each process keeps (see `XarrayFrames`; 0: none). Pair it with
            [`ChunkAwareSampler`][convlstm.data.ChunkAwareSampler], which visits the windows chunk by chunk.
        storage_options: options of the fsspec filesystem of a URL ``root`` (``{"anon": True}``,
            ``{"endpoint_url": ...}``, credentials); see `open_lazy`.

    Attributes:
        time_chunk: frames per chunk along time on disk, or None (see `XarrayFrames`).
    """

    @renamed_keywords(source="root")
    def __init__(
        self,
        root: str | os.PathLike[str] | xr.Dataset,
        split: str = "train",
        *,
        variables: Sequence[str],
        context_frames: int,
        target_frames: int,
        split_by: Splitter | None = None,
        time_dim: str = "time",
        y_dim: str = "lat",
        x_dim: str = "lon",
        engine: str | None = None,
        stride: int = 1,
        transform: Transform | None = None,
        nan_policy: NanPolicy = "raise",
        skip_invalid: bool = False,
        chunk_cache: int = 0,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        window = WindowOptions(
            context_frames=context_frames,
            target_frames=target_frames,
            stride=stride,
            transform=transform,
            nan_policy=nan_policy,
            skip_invalid=skip_invalid,
        )
        if isinstance(root, xr.Dataset):
            if storage_options:
                raise ValueError(f"storage_options apply to a URL root, not to a given dataset: {storage_options}")
            opener, name = functools.partial(_given, root), "dataset"
        else:
            # The options travel with the opener, which each DataLoader worker calls again.
            opener, name = functools.partial(open_lazy, root, engine, storage_options), str(root)
        if not variables:
            raise ValueError(f"{name}: variables must name at least one variable")
        self.dims = (time_dim, y_dim, x_dim)
        self.variables = list(variables)
        frames = XarrayFrames(opener, variables, self.dims, name, chunk_cache=chunk_cache)
        self.time_chunk = frames.time_chunk
        dataset = frames.dataset
        self._time, self._y, self._x = (np.asarray(dataset[d].values) for d in self.dims)
        super().__init__(
            select_split(recordings_between_gaps(name, frames, self._time), split, split_by or TimeBlockSplit()), window
        )

    def coords(self, index: int) -> WindowCoords:
        """The time / y / x coordinates of window `index` (see WindowCoords.to_dataset)."""
        rec, start = self.locate(index)
        first = rec.start + start
        return WindowCoords(
            time=self._time[first : first + self.window_frames],
            y=self._y,
            x=self._x,
            context_frames=self.context_frames,
            variables=self.variables,
            dims=self.dims,
        )


def last_window(
    source: str | os.PathLike[str],
    variables: Sequence[str],
    *,
    context_frames: int,
    horizon: int,
    time_dim: str = "time",
    y_dim: str = "lat",
    x_dim: str = "lon",
    engine: str | None = None,
) -> tuple[Tensor, WindowCoords]:
    """The last ``context_frames`` frames without a time gap, to forecast from, and their coordinates.

    Args:
        source: a netCDF file or zarr store.
        variables: the variables, in channel order.
        context_frames: frames the model reads.
        horizon: steps ahead; the returned coordinates extend the time axis by ``horizon`` regular steps.
        time_dim, y_dim, x_dim: dimension names.
        engine: the xarray engine (default: zarr for a zarr store, else xarray's choice).

    Returns:
        The context (T_in, C, H, W) as float32 and its [`WindowCoords`][convlstm.data.WindowCoords].

    Raises:
        ValueError: fewer than 2 time steps, no gap-free stretch of ``context_frames``, or NaN in the context.
    """
    order = (time_dim, y_dim, x_dim)
    frames = XarrayFrames(functools.partial(open_lazy, source, engine), variables, order, str(source))
    try:
        return _read_last_window(frames, str(source), context_frames, horizon)
    finally:
        frames.dataset.close()


def _read_last_window(
    frames: XarrayFrames, source: str, context_frames: int, horizon: int
) -> tuple[Tensor, WindowCoords]:
    order = frames.dims
    time, y, x = (np.asarray(frames.dataset[d].values) for d in order)
    if len(time) < 2:
        raise ValueError(f"{source}: needs at least 2 time steps to tell the step, got {len(time)}")
    start, stop = regular_runs(time, source=str(source))[-1]
    if stop - start < context_frames:
        raise ValueError(
            f"{source}: the model reads context_frames={context_frames} consecutive frames, but the last "
            f"stretch without a gap in {order[0]} has {stop - start}"
        )
    steps = np.diff(time)
    values, counts = np.unique(steps, return_counts=True)
    step = values[counts.argmax()]
    context = torch.from_numpy(np.asarray(frames[slice(stop - context_frames, stop)], dtype=np.float32))
    if not torch.isfinite(context).all():
        raise ValueError(f"{source}: the last {context_frames} frames of {frames.variables} hold NaN or inf")
    ahead = time[stop - 1] + step * np.arange(1, horizon + 1)
    coords = WindowCoords(
        time=np.concatenate([time[stop - context_frames : stop], ahead]),
        y=y,
        x=x,
        context_frames=context_frames,
        variables=list(frames.variables),
        dims=order,
    )
    return context, coords
