"""Gridded fields of a reanalysis (ERA5, ERA-Interim, WeatherBench's regridded ERA5) as multi-channel windows: netCDF,
zarr or GRIB through xarray, several variables and pressure levels as channels, normalised with statistics of the
training split only.

Channels are named in the recipe: ``t2m`` is a variable with dims (time, y, x); ``z@500`` is the level 500 of a
variable with a vertical dimension (cfgrib's ``isobaricInhPa``, ``level``, ``plev``, ``pressure_level``), in that
dimension's units. Optional input channels describe the time: ``time_of_day`` (UTC), ``local_time_of_day`` (solar
time from the longitude of each column) and ``day_of_year``, each as a sine and a cosine so that midnight follows
23:00. The model sees them in its context; its target carries them too, because context and target have the same
channels, but the item's ``mask`` is 0 there, so neither the loss nor any score counts them.

Time channels suit models that feed nothing back (``encoder_forecaster``): a model that reads its own predictions
(``next_frame``, PredRNN) would read predictions of the time channels that nothing trains.

A global grid can be padded around in longitude (``wrap_longitude``: columns copied from the other edge), so that a
convolution at the date line sees the other side; ``pad_to_multiple`` pads the bottom and right edges (repeating
them) so that patch sizes divide the grid. Padded cells hold true values, copies of cells of the grid, and count in
the loss like them (so a model that feeds its predictions back is trained on every cell it reads).
``ReanalysisSequences.to_fields`` removes padding and time channels and undoes the normalisation; scores are
computed on the grid's own cells.

Splits are time ranges ``[start, end)``; the time axis is cut at every gap (a missing step), so no window spans a
gap, and several files (one per year, as WeatherBench ships them) are each a recording of their own.

A recipe:

```yaml
data:
  source: reanalysis
  args:
    root: xarray-data/era5-2mt-2019-03-uk.grib
    variables: [t2m]
    splits: {train: ["2019-03-01", "2019-03-22"], val: ["2019-03-22", "2019-03-25"], test: ["2019-03-25", null]}
    time_features: [local_time_of_day]
    pad_to_multiple: 2
```
"""

from __future__ import annotations

import functools
import glob
import importlib.util
import itertools
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from torch import Tensor

from convlstm.data.core.normalization import Normalization
from convlstm.data.core.windows import NanPolicy, Recording, Transform, WindowDataset, WindowOptions
from convlstm.data.formats.mlcast import parse_splits
from convlstm.data.formats.xarray_source import WindowCoords, XarrayFrames, open_lazy, regular_runs
from convlstm.utils.atomic import atomic_write_text
from convlstm.utils.checks import check_bool, check_choice, check_int

logger = logging.getLogger(__name__)

#: Names of the y / x / vertical dimensions found when not given (CF, cfgrib, WeatherBench, CMIP).
Y_NAMES = ("latitude", "lat", "y", "rlat")
X_NAMES = ("longitude", "lon", "x", "rlon")
LEVEL_NAMES = ("isobaricInhPa", "level", "plev", "pressure_level", "pressure", "lev")
GRIB_SUFFIXES = (".grib", ".grb", ".grib1", ".grib2", ".grb2")
#: The time channels, each two: <name>_sin and <name>_cos.
TIME_FEATURES = ("time_of_day", "local_time_of_day", "day_of_year")
_MINUTES_PER_DAY = 1440.0
_DAYS_PER_YEAR = 365.25
_CHANNEL = re.compile(r"^(?P<variable>[^@\s]+)(@(?P<level>[-+]?\d+(\.\d*)?([eE][-+]?\d+)?))?$")
Ranges = list[tuple[np.datetime64 | None, np.datetime64 | None]]


@dataclass(frozen=True)
class Channel:
    """One channel of the recipe: a variable, at a level or not.

    Attributes:
        name: as the recipe writes it ("t2m", "z@500").
        variable: the variable in the file.
        level: the value on the vertical dimension, or None for a variable without one.
    """

    name: str
    variable: str
    level: float | None


def parse_channel(text: str) -> Channel:
    """``"t2m"`` or ``"z@500"`` (variable @ level) as a ``Channel``.

    Raises:
        ValueError: not a variable name, optionally followed by @ and a number.
    """
    match = _CHANNEL.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"a channel is a variable ('t2m') or a variable at a level ('z@500'), got {text!r}")
    level = match.group("level")
    return Channel(name=text, variable=match.group("variable"), level=None if level is None else float(level))


def open_archive(
    path: str | os.PathLike[str], engine: str | None = None, storage_options: Mapping[str, Any] | None = None
) -> xr.Dataset:
    """Opens a netCDF file, zarr store (local or fsspec URL) or GRIB file lazily, without dask.

    GRIB (a .grib / .grb / .grib2 suffix, or ``engine="cfgrib"``) is read with cfgrib, which writes no index file
    beside the data (the folder may be read-only).

    Raises:
        ModuleNotFoundError: a GRIB file without cfgrib installed (``pip install "convlstm[weather]"``).
        FileNotFoundError: nothing at ``path``.
        ValueError: xarray or cfgrib cannot read it.
    """
    text = os.fspath(path)
    if engine == "cfgrib" or (engine is None and text.lower().endswith(GRIB_SUFFIXES)):
        if importlib.util.find_spec("cfgrib") is None:
            raise ModuleNotFoundError(
                f"{text}: reading GRIB needs cfgrib (and the ecCodes library, which the eccodes wheels bring): "
                'pip install "convlstm[weather]"',
                name="cfgrib",
            )
        if not Path(text).exists():
            raise FileNotFoundError(f"reanalysis file not found: {text}")
        try:
            return xr.open_dataset(text, engine="cfgrib", chunks=None, cache=False, backend_kwargs={"indexpath": ""})
        except (ValueError, OSError, EOFError) as error:
            raise ValueError(f"{text}: cfgrib could not read it as GRIB ({error})") from error
    return open_lazy(path, engine, storage_options)


def find_dim(dataset: xr.Dataset, given: str | None, candidates: Sequence[str], what: str, where: str) -> str:
    """``given`` if the dataset has that dimension, else the first of ``candidates`` it has."""
    if given is not None:
        if given not in dataset.dims:
            raise ValueError(f"{where}: no dimension {given!r} ({what}); it has {list(dataset.dims)}")
        return given
    for name in candidates:
        if name in dataset.dims:
            return name
    raise ValueError(f"{where}: found no {what} dimension among {list(candidates)} in {list(dataset.dims)}; name it")


def select_channels(
    dataset: xr.Dataset, channels: Sequence[Channel], dims: tuple[str, str, str], where: str
) -> xr.Dataset:
    """A dataset with one (time, y, x) variable per channel, named as the channel; lazy (nothing is read)."""
    selected = {}
    for channel in channels:
        if channel.variable not in dataset.data_vars:
            raise ValueError(f"{where}: no variable {channel.variable!r}; it has {list(dataset.data_vars)}")
        array = dataset[channel.variable]
        extra = [d for d in array.dims if d not in dims]
        if channel.level is None and extra:
            sizes = {d: array[d].values.tolist() if d in array.coords else array.sizes[d] for d in extra}
            raise ValueError(
                f"{where}: variable {channel.variable!r} has the dimensions {extra} besides {dims} ({sizes}); "
                f"name a level as {channel.variable}@<level>"
            )
        if channel.level is not None:
            vertical = [d for d in extra if d in LEVEL_NAMES or d in array.coords]
            if len(extra) != 1 or not vertical:
                raise ValueError(
                    f"{where}: {channel.name!r} asks for a level, but {channel.variable!r} has dimensions "
                    f"{array.dims}: expected {dims} and one vertical dimension ({list(LEVEL_NAMES)})"
                )
            levels = np.asarray(array[vertical[0]].values, dtype=np.float64)
            found = np.flatnonzero(np.isclose(levels, channel.level))
            if found.size == 0:
                raise ValueError(
                    f"{where}: {channel.variable!r} has no level {channel.level:g} along {vertical[0]!r}; it has "
                    f"{levels.tolist()}"
                )
            array = array.isel({vertical[0]: int(found[0])})
        if set(array.dims) != set(dims):
            raise ValueError(f"{where}: {channel.name!r} has dims {array.dims}, expected exactly {dims}")
        selected[channel.name] = array.drop_vars([c for c in array.coords if c not in dims])
    return xr.Dataset(selected)


def _open_channels(
    location: str | xr.Dataset,
    engine: str | None,
    storage_options: Mapping[str, Any] | None,
    channels: tuple[Channel, ...],
    dims: tuple[str, str, str],
) -> xr.Dataset:
    """What each DataLoader worker calls to open a file again (picklable: a top-level function and plain values)."""
    if isinstance(location, xr.Dataset):
        return select_channels(location, channels, dims, "dataset")
    return select_channels(open_archive(location, engine, storage_options), channels, dims, location)


def time_feature_fields(
    times: np.ndarray, features: Sequence[str], longitudes: np.ndarray | None, shape: tuple[int, int]
) -> np.ndarray:
    """(t, 2 F, H, W) float32: the sine and cosine of each feature at each of ``times``.

    ``time_of_day`` is the UTC time over a day, ``local_time_of_day`` the solar time (UTC + longitude / 15 hours,
    per column; needs ``longitudes`` (W,)), ``day_of_year`` the time over a year of 365.25 days.
    """
    stamps = np.asarray(times).astype("datetime64[m]")
    minutes = (stamps - stamps.astype("datetime64[D]")).astype(np.float64)  # since midnight UTC
    days = (stamps - stamps.astype("datetime64[Y]")).astype(np.float64) / _MINUTES_PER_DAY
    height, width = shape
    out = np.empty((len(stamps), 2 * len(features), height, width), dtype=np.float32)
    for k, feature in enumerate(features):
        if feature == "time_of_day":
            angle = 2 * np.pi * minutes[:, None] / _MINUTES_PER_DAY * np.ones(width)
        elif feature == "local_time_of_day":
            if longitudes is None:
                raise ValueError("local_time_of_day needs longitudes (a latitude-longitude grid)")
            angle = 2 * np.pi * (minutes[:, None] + 4.0 * np.asarray(longitudes)[None]) / _MINUTES_PER_DAY
        elif feature == "day_of_year":
            angle = 2 * np.pi * days[:, None] / _DAYS_PER_YEAR * np.ones(width)
        else:
            raise ValueError(f"time_features must be some of {list(TIME_FEATURES)}, got {feature!r}")
        out[:, 2 * k] = np.sin(angle)[:, None, :]  # (t, 1, W) over the rows
        out[:, 2 * k + 1] = np.cos(angle)[:, None, :]
    return out


@dataclass(frozen=True)
class Padding:
    """Cells added around each field: ``wrap`` columns on each side copied from the opposite edge (a global grid
    around in longitude), then ``bottom`` rows and ``right`` columns repeating the edge.

    Attributes:
        wrap: columns added left and right, taken from the other side.
        bottom: rows added at the bottom (edge values).
        right: columns added at the right, after the wrap (edge values).
    """

    wrap: int = 0
    bottom: int = 0
    right: int = 0

    def apply(self, x: np.ndarray) -> np.ndarray:
        """(..., H, W) -> (..., H + bottom, W + 2 wrap + right)."""
        if self.wrap:
            x = np.concatenate([x[..., -self.wrap :], x, x[..., : self.wrap]], axis=-1)
        if self.bottom or self.right:
            x = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(0, self.bottom), (0, self.right)], mode="edge")
        return x

    def crop(self, x: Any) -> Any:
        """(..., H', W') padded -> (..., H, W), the grid's own cells (an array or tensor)."""
        height, width = x.shape[-2] - self.bottom, x.shape[-1] - self.right
        return x[..., :height, self.wrap : width - self.wrap]


class ChannelFrames:
    """The frames a model reads, (T, C, H', W'): the variables normalised, the time channels, the padding.

    Args:
        raw: the variables as stored, (T, V, H, W).
        times: (T,) their times.
        normalization: per variable, or None to keep data units.
        features: the time channels (``TIME_FEATURES``).
        longitudes: (W,) for ``local_time_of_day``, else None.
        padding: what is added around each field.
    """

    def __init__(
        self,
        raw: XarrayFrames,
        times: np.ndarray,
        normalization: Normalization | None,
        features: Sequence[str],
        longitudes: np.ndarray | None,
        padding: Padding,
    ) -> None:
        self.raw, self.times, self.normalization = raw, times, normalization
        self.features, self.longitudes, self.padding = list(features), longitudes, padding
        t, v, h, w = raw.shape
        self.shape = (t, v + 2 * len(self.features), h + padding.bottom, w + 2 * padding.wrap + padding.right)

    def __getitem__(self, time: slice) -> np.ndarray:
        values = np.asarray(self.raw[time], dtype=np.float32)  # (t, V, H, W)
        if self.normalization is not None:
            values = self.normalization.apply(values)
        if self.features:
            extra = time_feature_fields(self.times[time], self.features, self.longitudes, values.shape[-2:])
            values = np.concatenate([values, extra], axis=1)
        return self.padding.apply(values)


class ChannelMask:
    """(T, C, H', W'): 1 on the variables' channels, 0 on the time channels (nothing to forecast there)."""

    def __init__(self, frames: ChannelFrames, variables: int) -> None:
        t, channels, height, width = frames.shape
        self.template = np.zeros((channels, height, width), dtype=np.float32)
        self.template[:variables] = 1.0
        self.shape = (t, channels, height, width)

    def __getitem__(self, time: slice) -> np.ndarray:
        count = len(range(*time.indices(self.shape[0])))
        return np.broadcast_to(self.template, (count, *self.template.shape))


@dataclass
class _File:
    """One file of the archive: its frames, times, gap-free runs and name."""

    location: str | xr.Dataset
    name: str
    raw: XarrayFrames
    times: np.ndarray
    runs: list[tuple[int, int]]


class ReanalysisSequences(WindowDataset):
    """Windows of reanalysis fields: variables and levels as channels, normalised by the training split's statistics.

    Items hold "context" (T_in, C, H', W') and "target" (T_out, C, H', W'), C = the variables, then two channels
    per time feature; H', W' are the grid after padding. With time features (or NaN masked), items also hold
    "context_mask" and "mask", 1 on the variables' channels and 0 on the time channels. Variables come normalised
    (per variable: (x - mean) / std of the training split), unless ``normalize=False``. The window arguments
    (``context_frames``, ``target_frames``, ``stride``, ``transform``, ``nan_policy``) are the fields of
    [`WindowOptions`][convlstm.data.WindowOptions], which documents them.

    Args:
        root: a netCDF file, zarr store (path or fsspec URL) or GRIB file; a list of them or a glob pattern
            ("era5/2m_temperature_*.nc": each file a recording, in the order of their first time); or an
            xarray.Dataset.
        split: a key of ``splits`` ("train" (the default), "val", "test"), or "all" for every time.
        variables: the channels: ``"t2m"``, ``"z@500"`` (a variable, or a variable "@" a level).
        splits: split name -> a time range [start, end) or a list of them (ISO times, null for an open end); ranges
            must not overlap. None: the times chronologically, 80 / 10 / 10.
        normalize: standardise each variable by the mean and standard deviation of the "train" split.
        statistics: a JSON file for those statistics: read when it exists (and refused when it was written for
            other variables, files or training times), else written (atomically) once computed.
        time_features: time channels to add: some of "time_of_day", "local_time_of_day", "day_of_year".
        wrap_longitude: columns to add on each side from the opposite edge; the grid must go around the globe.
        pad_to_multiple: pad the bottom rows and right columns (edge values) so that H' and W' are multiples of it.
        time_dim: the time dimension.
        y_dim: the y (latitude) dimension; default the first found of latitude, lat, y, rlat.
        x_dim: the x (longitude) dimension; default the first found of longitude, lon, x, rlon.
        engine: the xarray engine (default: cfgrib for GRIB suffixes, zarr for stores, else xarray's choice).
        storage_options: options of the fsspec filesystem of a URL ``root``.

    Attributes:
        variables: the variable channels' names, in order.
        channels: every channel's name: the variables, then "<feature>_sin", "<feature>_cos".
        normalization: the statistics of the training split (over the variable channels), or None.
        units: variable -> its units as the file says them ("K"), or "".
        times: (N,) every time of the archive, all files.
        y: (H,) the grid's y coordinate (latitudes), without padding.
        x: (W,) the grid's x coordinate (longitudes), without padding.
        dims: the names of the (time, y, x) dimensions.
        padding: what is added around each field.
        pieces: per file, the [start, stop) frame ranges of this split (windows or not).
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | list[str] | xr.Dataset,
        split: str = "train",
        *,
        variables: Sequence[str],
        context_frames: int,
        target_frames: int,
        splits: Mapping[str, Any] | None = None,
        normalize: bool = True,
        statistics: str | None = None,
        time_features: Sequence[str] = (),
        wrap_longitude: int = 0,
        pad_to_multiple: int = 1,
        time_dim: str = "time",
        y_dim: str | None = None,
        x_dim: str | None = None,
        engine: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
        stride: int = 1,
        nan_policy: NanPolicy = "raise",
        transform: Transform | None = None,
    ) -> None:
        if isinstance(variables, str) or not variables:
            raise ValueError(f"variables must be a non-empty list of channels ('t2m', 'z@500'), got {variables!r}")
        channels = tuple(parse_channel(v) for v in variables)
        if len({c.name for c in channels}) != len(channels):
            raise ValueError(f"variables must be distinct, got {list(variables)}")
        features = list(time_features)
        unknown = sorted(set(features) - set(TIME_FEATURES))
        if isinstance(time_features, str) or unknown or len(set(features)) != len(features):
            raise ValueError(f"time_features must be distinct names of {list(TIME_FEATURES)}, got {time_features!r}")
        check_bool("normalize", normalize)
        wrap = check_int("wrap_longitude", wrap_longitude, 0)
        multiple = check_int("pad_to_multiple", pad_to_multiple, 1)
        options = WindowOptions(
            context_frames=context_frames,
            target_frames=target_frames,
            stride=stride,
            transform=transform,
            nan_policy=nan_policy,
        )
        window = options.window_frames
        self.variables = [c.name for c in channels]
        self.channels = self.variables + [f"{f}_{part}" for f in features for part in ("sin", "cos")]
        self.files = self._open_files(root, channels, time_dim, y_dim, x_dim, engine, storage_options)
        first = self.files[0].raw.dataset
        self.units = {name: str(first[name].attrs.get("units", "")) for name in self.variables}
        self.dims = self.files[0].raw.dims
        self.y, self.x = np.asarray(first[self.dims[1]].values), np.asarray(first[self.dims[2]].values)
        self.times = np.concatenate([f.times for f in self.files])
        longitudes = self.x if self.dims[2] in X_NAMES[:2] else None
        if "local_time_of_day" in features and longitudes is None:
            raise ValueError(f"local_time_of_day needs a longitude dimension ({X_NAMES[:2]}), got {self.dims[2]!r}")
        if wrap:
            _check_global(self.x, self.dims[2], wrap)
        height, width = len(self.y), len(self.x) + 2 * wrap
        self.padding = Padding(wrap=wrap, bottom=-height % multiple, right=-width % multiple)
        parsed = parse_splits(splits, self.times)
        check_choice("split", split, ["all", *parsed])
        if not normalize and statistics is not None:
            raise ValueError(f"statistics={statistics!r} saves the normalisation: it needs normalize=True")
        self.normalization = self._training_statistics(parsed, statistics, root) if normalize else None
        ranges: Ranges = [(None, None)] if split == "all" else parsed[split]
        self.pieces = [_inside(f, ranges) for f in self.files]
        recordings = []
        for file, pieces in zip(self.files, self.pieces, strict=True):
            frames = ChannelFrames(file.raw, file.times, self.normalization, features, longitudes, self.padding)
            whole = Recording(
                name=file.name,
                frames=frames,
                mask=ChannelMask(frames, len(channels)) if features else None,
                source=file.name,
            )
            for a, b in pieces:
                if b - a >= window:
                    stamp = np.datetime_as_string(file.times[a], unit="m")
                    recordings.append(_renamed(whole.segment(a, b), f"{file.name}@{stamp}"))
        short = sum(1 for pieces in self.pieces for a, b in pieces if b - a < window)
        if short:
            logger.info("%d stretches of split %r are shorter than a window of %d frames", short, split, window)
        if not recordings:
            raise ValueError(
                f"split {split!r} has no stretch of {window} consecutive frames (context_frames + target_frames) "
                f"without a gap in its time ranges {_describe_ranges(ranges)}; use shorter windows or wider splits"
            )
        super().__init__(recordings, options)

    # --- opening --------------------------------------------------------------------------------------------

    def _open_files(
        self,
        root: str | os.PathLike[str] | list[str] | xr.Dataset,
        channels: tuple[Channel, ...],
        time_dim: str,
        y_dim: str | None,
        x_dim: str | None,
        engine: str | None,
        storage_options: Mapping[str, Any] | None,
    ) -> list[_File]:
        locations = _locations(root)
        files = []
        for location in locations:
            name = "dataset" if isinstance(location, xr.Dataset) else location
            dataset = location if isinstance(location, xr.Dataset) else open_archive(location, engine, storage_options)
            dims = (
                find_dim(dataset, time_dim, (), "time", name),
                find_dim(dataset, y_dim, Y_NAMES, "y (latitude)", name),
                find_dim(dataset, x_dim, X_NAMES, "x (longitude)", name),
            )
            if not isinstance(location, xr.Dataset):
                dataset.close()  # XarrayFrames opens its own, again in each DataLoader worker
            opener = functools.partial(_open_channels, location, engine, storage_options, channels, dims)
            raw = XarrayFrames(opener, [c.name for c in channels], dims, name)
            times = np.asarray(raw.dataset[dims[0]].values)
            if not np.issubdtype(times.dtype, np.datetime64):
                raise ValueError(f"{name}: the time coordinate {dims[0]!r} must hold dates, got {times.dtype}")
            runs = regular_runs(times, source=name)
            if len(runs) > 1:
                logger.warning("%s: the time axis has %d gaps; no window spans one", name, len(runs) - 1)
            files.append(_File(location, Path(name).name if name != "dataset" else name, raw, times, runs))
        files.sort(key=lambda f: f.times[0])
        for before, after in itertools.pairwise(files):
            if after.times[0] <= before.times[-1]:
                raise ValueError(f"the files {before.name} and {after.name} overlap in time: give each time once")
            same_grid = [
                np.array_equal(before.raw.dataset[d].values, after.raw.dataset[d].values) for d in before.raw.dims[1:]
            ]
            if before.raw.dims != after.raw.dims or not all(same_grid):
                raise ValueError(f"the files {before.name} and {after.name} have different grids")
        return files

    # --- normalisation --------------------------------------------------------------------------------------

    def _training_statistics(self, parsed: Mapping[str, Ranges], path: str | None, root: Any) -> Normalization:
        if "train" not in parsed:
            raise ValueError(f"normalize=True takes its statistics from split 'train', but splits has {list(parsed)}")
        key = {
            "variables": self.variables,
            "files": [f.name for f in self.files],
            "train": [[None if t is None else str(t) for t in pair] for pair in parsed["train"]],
        }
        if path is not None and Path(path).expanduser().is_file():
            saved = json.loads(Path(path).expanduser().read_text())
            if {k: saved.get(k) for k in key} != key:
                raise ValueError(
                    f"statistics {path} were computed for { ({k: saved.get(k) for k in key}) }, not for {key}; "
                    "delete the file or name another"
                )
            return Normalization.from_dict(saved["normalization"])
        chunks = (
            np.asarray(file.raw[slice(lo, min(lo + 256, b))], dtype=np.float64)
            for file in self.files
            for a, b in _inside(file, parsed["train"])
            for lo in range(a, b, 256)
        )
        try:
            normalization = Normalization.fit(chunks, kind="standard")
        except ValueError as error:
            raise ValueError(f"statistics of the training split {key['train']}: {error}") from None
        logger.info("normalisation from the training split: mean %s, std %s", normalization.center, normalization.scale)
        if path is not None:
            record = {**key, "normalization": normalization.to_dict(), "root": str(root)}
            atomic_write_text(Path(path).expanduser(), json.dumps(record, indent=2) + "\n")
        return normalization

    # --- what a forecast needs ------------------------------------------------------------------------------

    @property
    def latitudes(self) -> np.ndarray:
        """(H,) the latitude of each grid row (for latitude-weighted scores).

        Raises:
            ValueError: the y dimension is not a latitude.
        """
        if self.dims[1] not in Y_NAMES[:2]:
            raise ValueError(f"the grid's y dimension {self.dims[1]!r} is not a latitude ({Y_NAMES[:2]})")
        return self.y

    def to_fields(self, frames: Tensor | np.ndarray) -> Tensor | np.ndarray:
        """Model frames (..., C, H', W') -> fields in data units (..., V, H, W): the variables only, padding cut
        off, normalisation undone."""
        if frames.shape[-3] != len(self.channels):
            raise ValueError(
                f"expected (..., {len(self.channels)}, H, W) frames with channels {self.channels}, "
                f"got {tuple(frames.shape)}"
            )
        fields = self.padding.crop(frames[..., : len(self.variables), :, :])
        return fields if self.normalization is None else self.normalization.invert(fields)

    def window_times(self, index: int) -> np.ndarray:
        """The times of the frames of window ``index``, context then target."""
        rec, start = self.locate(index)
        frames = rec.frames
        assert isinstance(frames, ChannelFrames)
        first = rec.start + start
        return frames.times[first : first + self.window_frames]

    def coords(self, index: int) -> WindowCoords:
        """The coordinates of window ``index``, to write a forecast back: ``coords(i).to_dataset(to_fields(pred))``."""
        return WindowCoords(
            time=self.window_times(index),
            y=self.y,
            x=self.x,
            context_frames=self.context_frames,
            variables=self.variables,
            dims=self.dims,
        )

    def iter_fields(
        self, start: Any = None, end: Any = None, *, chunk_frames: int = 256
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every frame of this split with start <= time < end, once, in data units, in chunks: ((n, V, H, W)
        float32, (n,) datetime64). The training split's give a climatology; split "all" an archive to look up
        "same hour yesterday" in."""
        check_int("chunk_frames", chunk_frames)
        for file, pieces in zip(self.files, self.pieces, strict=True):
            lower = 0 if start is None else int(np.searchsorted(file.times, np.datetime64(start, "ns")))
            upper = len(file.times) if end is None else int(np.searchsorted(file.times, np.datetime64(end, "ns")))
            for a, b in pieces:
                for first in range(max(a, lower), min(b, upper), chunk_frames):
                    last = min(first + chunk_frames, b, upper)
                    yield np.asarray(file.raw[slice(first, last)], dtype=np.float32), file.times[first:last]

    def fields(self, start: Any = None, end: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """[`iter_fields`][convlstm.data.ReanalysisSequences.iter_fields] in one piece: ((N, V, H, W) float32,
        (N,) datetime64)."""
        chunks = list(self.iter_fields(start, end))
        if not chunks:
            raise ValueError(f"split has no frame between {start} and {end}")
        return np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks])


def _locations(root: Any) -> list[str | xr.Dataset]:
    if isinstance(root, xr.Dataset):
        return [root]
    if isinstance(root, list | tuple):
        if not root:
            raise ValueError("root must name at least one file")
        return [os.fspath(os.path.expanduser(r)) for r in root]
    text = os.path.expanduser(os.fspath(root))
    if glob.has_magic(text) and "://" not in text:
        found = sorted(glob.glob(text))
        if not found:
            raise FileNotFoundError(f"no file matches {text}")
        return list(found)
    return [text]


def _check_global(x: np.ndarray, dim: str, wrap: int) -> None:
    """A wrap needs a regular longitude axis that goes once around the globe."""
    if dim not in X_NAMES[:2] or len(x) < 2:
        raise ValueError(f"wrap_longitude needs a longitude dimension ({X_NAMES[:2]}), got {dim!r}")
    steps = np.diff(np.asarray(x, dtype=np.float64))
    step = float(np.median(steps))
    if not np.allclose(steps, step) or abs(abs(step) * len(x) - 360.0) > abs(step) / 2:
        raise ValueError(
            f"wrap_longitude needs a regular global grid ({len(x)} columns x step = 360 degrees), got {len(x)} "
            f"columns from {x[0]} to {x[-1]}"
        )
    if wrap > len(x):
        raise ValueError(f"wrap_longitude={wrap} is more than the grid's {len(x)} columns")


def _inside(file: _File, ranges: Ranges) -> list[tuple[int, int]]:
    """The parts of the file's gap-free runs whose times lie in one of ``ranges`` ([start, end), None open)."""
    pieces = []
    for a, b in file.runs:
        for start, end in ranges:
            lo = a if start is None else max(a, int(np.searchsorted(file.times, start, side="left")))
            hi = b if end is None else min(b, int(np.searchsorted(file.times, end, side="left")))
            if lo < hi:
                pieces.append((lo, hi))
    return sorted(pieces)


def _renamed(recording: Recording, name: str) -> Recording:
    return replace(recording, name=name)


def _describe_ranges(ranges: Ranges) -> str:
    return ", ".join(f"[{s}, {e})" for s, e in ranges)
