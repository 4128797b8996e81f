"""Radar archives in the mlcast convention (the zarr stores of mlcast-community/mlcast-datasets), read lazily as
rain rates, local or through an fsspec URL.

The convention (checked by the ``mlcast-dataset-validator`` package) stores one field per time step, chunked one
time step per chunk, in a variable with dims (time, y, x) and a CF ``standard_name``; the ``time`` coordinate
holds only the times that have data, the coordinate ``missing_times`` lists the times that have none, and the
global attribute ``consistent_timestep_start`` marks where a regular time step begins when earlier data came at
other steps. NaN marks pixels without radar coverage. This source:

- finds the rain variable by its ``standard_name`` and converts it to mm/h (see `rain_conversion`);
- rebuilds the time axis from ``time`` and ``missing_times`` and cuts it into recordings at every missing time,
  at every all-NaN frame, at ``consistent_timestep_start`` and wherever the time step changes, so that no window
  spans a gap or two time steps;
- gives each split the recordings' frames inside its time ranges (``splits``), chronological 80 / 10 / 10 by
  default;
- reads only the frames of the windows asked for; NaN becomes 0 with mask 0, as in
  [`RadarArchiveSequences`][convlstm.data.RadarArchiveSequences], whose items and patches these are too.

A recipe:

```yaml
data:
  source: mlcast
  args:
    root: s3://mlcast-source-datasets/radklim/v0.1.1/5_minutes.zarr
    storage_options: {anon: true, endpoint_url: https://object-store.os-api.cci2.ecmwf.int}
    splits: {train: ["2001-01-01", "2019-01-01"], val: ["2019-01-01", "2020-01-01"], test: ["2020-01-01", null]}
    patch_size: 256
```
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, cast, get_args

import numpy as np
import pandas as pd
import torch
import xarray as xr

from convlstm.data.core.sampling import FavourRainIn, RainBiasedPatches, window_rng
from convlstm.data.core.splits import DEFAULT_FRACTIONS, split_counts
from convlstm.data.core.transforms import random_flip_rotate
from convlstm.data.core.windows import Item, Recording, Transform, WindowDataset, WindowOptions
from convlstm.data.formats.xarray_source import Location, XarrayFrames, open_lazy
from convlstm.units import dbz_to_rain_rate, rain_rate_to_dbz, rain_rate_to_pixel, zr_coefficients
from convlstm.utils.checks import check_bool, check_choice, check_int

logger = logging.getLogger(__name__)

Units = Literal["mm/h", "pixel"]

RATE_NAMES = ("rainfall_flux", "precipitation_flux")
REFLECTIVITY_NAMES = ("equivalent_reflectivity_factor",)
AMOUNT_NAMES = ("precipitation_amount", "rainfall_amount")
#: The standard_names of the mlcast radar precipitation spec that this source reads.
RAIN_STANDARD_NAMES = (*RATE_NAMES, *REFLECTIVITY_NAMES, *AMOUNT_NAMES)

#: units of a rate -> factor to mm/h (1 kg of water per m² is 1 mm deep)
RATE_UNITS = {
    "kg m-2 h-1": 1.0,
    "mm h-1": 1.0,
    "mm/h": 1.0,
    "mm hr-1": 1.0,
    "mm/hr": 1.0,
    "kg m-2 s-1": 3600.0,
    "mm s-1": 3600.0,
    "mm/s": 3600.0,
}
#: units of an amount -> factor to mm
AMOUNT_UNITS = {"kg m-2": 1.0, "mm": 1.0}
REFLECTIVITY_UNITS = ("dbz",)

MISSING_TIMES = "missing_times"
CONSISTENT_START = "consistent_timestep_start"
#: Bytes of frames read at once when looking for all-NaN frames.
SCAN_BYTES = 64 * 2**20

_INTERVAL = re.compile(r"time\s*:\s*sum\b[^()]*\(\s*interval\s*:\s*([^)]+?)\s*\)", re.IGNORECASE)


@dataclass(frozen=True)
class RainConversion:
    """How one variable's values become rain rates in mm/h.

    Attributes:
        variable: the variable's name in the store.
        standard_name: its CF standard_name.
        units: its units, as the store says them.
        kind: "rate", "reflectivity" or "amount".
        factor: a rate's or amount's factor to mm/h or mm.
        zr: (a, b) of Z = a R^b, for reflectivity.
        accumulation: an amount's accumulation period; None: each frame's time step.
        description: how the values are converted, for logs and messages.
    """

    variable: str
    standard_name: str
    units: str
    kind: Literal["rate", "reflectivity", "amount"]
    factor: float = 1.0
    zr: tuple[float, float] | None = None
    accumulation: np.timedelta64 | None = None
    description: str = ""

    def to_rain_rate(self, values: np.ndarray, periods: np.ndarray | None = None) -> np.ndarray:
        """``values`` (t, ...) as float32 mm/h; ``periods`` (t,) are the frames' accumulation periods for an
        amount without a fixed one. NaN stays NaN."""
        values = np.asarray(values, dtype=np.float32)
        if self.kind == "rate":
            return values * np.float32(self.factor) if self.factor != 1.0 else values
        if self.kind == "reflectivity":
            assert self.zr is not None
            return np.asarray(dbz_to_rain_rate(values, self.zr), dtype=np.float32)
        if self.accumulation is not None:
            hours = np.full(len(values), self.accumulation / np.timedelta64(1, "h"))
        elif periods is not None:
            hours = np.asarray(periods / np.timedelta64(1, "h"), dtype=np.float64)
        else:
            raise ValueError(f"{self.variable}: an amount needs its accumulation period to become a rate")
        scale = (self.factor / hours).astype(np.float32)
        return values * scale.reshape(-1, *([1] * (values.ndim - 1)))

    def from_rain_rate(
        self, rain: np.ndarray, *, period: np.timedelta64 | None = None, dry_dbz: float | None = None
    ) -> np.ndarray:
        """Rain rates (mm/h, any shape) as float32 values of this variable, the inverse of
        [`to_rain_rate`][convlstm.data.formats.mlcast.RainConversion.to_rain_rate].

        Args:
            rain: rain rates in mm/h, >= 0; NaN stays NaN.
            period: an amount's accumulation period where the variable has no fixed one (a forecast's time step).
            dry_dbz: the reflectivity written where the rain rate is below its rate (log of 0 has none): the
                store's lowest value, so that dry stays dry when read back. Needed for a reflectivity.
        """
        rain = np.asarray(rain, dtype=np.float32)
        if self.kind == "rate":
            return rain / np.float32(self.factor) if self.factor != 1.0 else rain
        if self.kind == "reflectivity":
            if dry_dbz is None:
                raise ValueError(f"{self.variable}: reflectivity needs dry_dbz, the value written where it is dry")
            assert self.zr is not None
            with np.errstate(divide="ignore"):
                dbz = rain_rate_to_dbz(np.maximum(np.nan_to_num(rain), 0.0), self.zr)
            return np.where(np.isnan(rain), np.nan, np.maximum(dbz, dry_dbz)).astype(np.float32)
        accumulation = self.accumulation if self.accumulation is not None else period
        if accumulation is None:
            raise ValueError(f"{self.variable}: an amount needs its accumulation period to be written from a rate")
        hours = float(accumulation / np.timedelta64(1, "h"))
        return rain * np.float32(hours / self.factor)


def _duration(text: str, where: str) -> np.timedelta64:
    try:
        value = pd.Timedelta(text.strip())
    except (ValueError, TypeError):
        value = pd.NaT
    if value is pd.NaT or value <= pd.Timedelta(0):
        raise ValueError(f"{where} must be a positive duration ('5min', '1h', 'PT5M', '5 minutes'), got {text!r}")
    return np.timedelta64(value.value, "ns")


def rain_conversion(
    variable: xr.DataArray,
    name: str,
    *,
    zr: str | Sequence[float] | None = None,
    accumulation: str | None = None,
    where: str = "store",
) -> RainConversion:
    """The conversion of ``variable`` to mm/h, from its ``standard_name`` and ``units`` attributes.

    - rainfall_flux / precipitation_flux in kg m-2 h-1, mm h-1 or mm/h are mm/h already (1 kg/m² of water is 1 mm
      deep); per second (kg m-2 s-1) they are multiplied by 3600.
    - equivalent_reflectivity_factor in dBZ becomes R = (10^(dBZ/10) / a)^(1/b), Marshall-Palmer (a = 200,
      b = 1.6) unless ``zr`` says otherwise.
    - precipitation_amount / rainfall_amount in kg m-2 or mm is divided by its accumulation period in hours: the
      ``accumulation`` argument, else the interval of the variable's ``cell_methods`` ("time: sum (interval: 5
      minutes)"), else each frame's time step (the amount fell since the previous time).

    Raises:
        ValueError: another standard_name, units that do not go with it, ``zr`` for a variable that is no
            reflectivity or ``accumulation`` for one that is no amount.
    """
    standard_name = str(variable.attrs.get("standard_name", "")).strip().lower()
    units = str(variable.attrs.get("units", "")).strip()
    said = f"{where}: variable {name!r} (standard_name={standard_name!r}, units={units!r})"
    if standard_name not in RAIN_STANDARD_NAMES:
        raise ValueError(f"{said}: expected a standard_name among {list(RAIN_STANDARD_NAMES)}")
    if zr is not None and standard_name not in REFLECTIVITY_NAMES:
        raise ValueError(f"{said}: zr applies to equivalent_reflectivity_factor only, got zr={zr!r}")
    if accumulation is not None and standard_name not in AMOUNT_NAMES:
        raise ValueError(f"{said}: accumulation applies to an amount {list(AMOUNT_NAMES)} only")
    key = " ".join(units.split()).lower()
    if standard_name in RATE_NAMES:
        if key not in RATE_UNITS:
            raise ValueError(f"{said}: unknown units of a rate; expected one of {list(RATE_UNITS)}")
        factor = RATE_UNITS[key]
        how = "mm/h as stored" if factor == 1.0 else f"x {factor:g} to mm/h"
        return RainConversion(name, standard_name, units, "rate", factor=factor, description=how)
    if standard_name in REFLECTIVITY_NAMES:
        if key not in REFLECTIVITY_UNITS:
            raise ValueError(f"{said}: unknown units of reflectivity; expected 'dBZ'")
        if zr is None or isinstance(zr, str):
            a, b = zr_coefficients("marshall_palmer" if zr is None else zr)
        elif isinstance(zr, Sequence) and len(zr) == 2 and all(isinstance(v, int | float) for v in zr):
            a, b = zr_coefficients((float(zr[0]), float(zr[1])))
        else:
            raise ValueError(f"zr must be 'marshall_palmer', 'hko7' or an (a, b) pair of numbers, got {zr!r}")
        return RainConversion(name, standard_name, units, "reflectivity", zr=(a, b), description=f"Z = {a:g} R^{b:g}")
    if key not in AMOUNT_UNITS:
        raise ValueError(f"{said}: unknown units of an amount; expected one of {list(AMOUNT_UNITS)}")
    if accumulation is not None:
        period: np.timedelta64 | None = _duration(accumulation, "accumulation")
        how = f"amount over accumulation={accumulation!r}"
    else:
        cell_methods = str(variable.attrs.get("cell_methods", ""))
        found = _INTERVAL.search(cell_methods)
        period = None if found is None else _duration(found.group(1), f"{said}: the interval of its cell_methods")
        how = f"amount over cell_methods {cell_methods!r}" if found else "amount over each frame's time step"
    return RainConversion(
        name, standard_name, units, "amount", factor=AMOUNT_UNITS[key], accumulation=period, description=how
    )


def find_rain_variable(dataset: xr.Dataset, variable: str | None = None, *, where: str = "store") -> str:
    """The name of the one variable whose ``standard_name`` is rain (`RAIN_STANDARD_NAMES`), or ``variable``
    when given; ValueError listing the store's variables when there is none, several, or ``variable`` is not one."""

    def listing() -> str:
        return ", ".join(
            f"{n} (standard_name={v.attrs.get('standard_name')!r}, units={v.attrs.get('units')!r}, dims={v.dims})"
            for n, v in dataset.data_vars.items()
        )

    if variable is not None:
        if variable not in dataset.data_vars:
            raise ValueError(f"{where}: variable={variable!r} is not in the store; it has {listing()}")
        return variable
    rain = [
        str(n)
        for n, v in dataset.data_vars.items()
        if str(v.attrs.get("standard_name", "")).strip().lower() in RAIN_STANDARD_NAMES
    ]
    if not rain:
        raise ValueError(
            f"{where}: no variable has a standard_name of rain {list(RAIN_STANDARD_NAMES)}; it has {listing()}. "
            "Pass variable= to name one"
        )
    if len(rain) > 1:
        raise ValueError(f"{where}: several variables are rain: {rain}; pass variable= one of them ({listing()})")
    return rain[0]


def _as_time(value: Any, where: str) -> np.datetime64:
    """A time (naive UTC, ns) from ISO text, a datetime or a numpy datetime64."""
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        stamp = pd.NaT
    if stamp is pd.NaT:
        raise ValueError(f"{where} must be a date and time ('2021-06-01' or '2021-06-01T12:00'), got {value!r}")
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return np.datetime64(stamp.value, "ns")


def time_runs(
    times: np.ndarray,
    missing: np.ndarray,
    consistent_start: np.datetime64 | None = None,
    *,
    where: str = "store",
) -> tuple[list[tuple[int, int]], np.ndarray]:
    """Cuts the time coordinate of an mlcast store into runs of one time step without a gap.

    Every time of ``times`` (the times with data) and ``missing`` (the times without) makes the full axis. From
    ``consistent_start`` on (everywhere when None), its step is the most common step there: two neighbouring times
    further apart are cut (a gap that ``missing`` did not list). Before ``consistent_start`` the step may change:
    neighbours stay together where their step equals a neighbouring step (a lone step is a gap), and a change of
    step starts a new run. The axis is always cut at ``consistent_start`` and at every missing time.

    Args:
        times: the ``time`` coordinate (datetime64), strictly increasing.
        missing: the ``missing_times`` (datetime64), none of them in ``times``.
        consistent_start: the ``consistent_timestep_start`` attribute, or None.

    Returns:
        [start, stop) index ranges into ``times`` of the runs, in order, and each time's step (timedelta64[ns]):
        its run's step, or for a run of one frame the shorter distance to a neighbour on the full axis.
    """
    times = np.asarray(times).astype("datetime64[ns]")
    missing = np.asarray(missing).astype("datetime64[ns]")
    if len(times) == 0:
        raise ValueError(f"{where}: the time coordinate is empty")
    if len(times) > 1 and not (np.diff(times) > np.timedelta64(0, "ns")).all():
        raise ValueError(f"{where}: the time coordinate must increase strictly, got {times[:5]} ...")
    both = np.intersect1d(times, missing)
    if both.size:
        raise ValueError(f"{where}: {MISSING_TIMES} must not hold times of the time coordinate, got {both[:5]}")
    axis = np.union1d(times, missing)  # sorted: the full axis
    present = np.isin(axis, times)
    steps = np.diff(axis)
    joined = present[:-1] & present[1:]
    late = np.ones(len(axis), dtype=bool) if consistent_start is None else axis >= consistent_start
    regular = late[:-1] & late[1:]
    if regular.any():
        values, counts = np.unique(steps[regular], return_counts=True)
        step = values[counts.argmax()]
        off = regular & (steps != step)
        if (off & joined).any():
            logger.warning(
                "%s: %d neighbouring times of the regular period are not %s apart and not listed in %s; cut there",
                where,
                int((off & joined).sum()),
                pd.Timedelta(step),
                MISSING_TIMES,
            )
        joined &= ~off
    early = ~late[:-1] & ~late[1:]  # the edges before consistent_start: a prefix, as the axis is sorted
    if early.any():
        # Only early neighbours count: a step equal to the first regular one does not make an early step steady.
        same_as_before = np.concatenate([[False], (steps[1:] == steps[:-1]) & early[:-1]])
        same_as_after = np.concatenate([(steps[:-1] == steps[1:]) & early[1:], [False]])
        lone = early & ~(same_as_before | same_as_after)
        # A change of step between two stretches of steady steps: the frame between them stays with the first.
        change = early & np.concatenate([[False], (steps[1:] != steps[:-1]) & ~lone[:-1]])
        joined &= ~(lone | change)
    joined &= ~(late[:-1] ^ late[1:])  # consistent_timestep_start begins a new run
    # A run starts at a time with data not joined to the one before, and stops at one not joined to the next.
    starts = np.flatnonzero(present & np.concatenate([[True], ~joined]))
    stops = np.flatnonzero(present & np.concatenate([~joined, [True]])) + 1
    runs_on_axis = list(zip(starts.tolist(), stops.tolist(), strict=True))
    index = np.cumsum(present) - 1  # axis position -> position in times
    runs = [(int(index[a]), int(index[b - 1]) + 1) for a, b in runs_on_axis]
    frame_steps = np.empty(len(times), dtype="timedelta64[ns]")
    for (a, b), (p, _) in zip(runs, runs_on_axis, strict=True):
        if b - a > 1:
            frame_steps[a:b] = steps[p]
        else:
            near = [steps[k] for k in (p - 1, p) if 0 <= k < len(steps)]
            frame_steps[a] = min(near) if near else np.timedelta64(1, "h")
    return runs, frame_steps


def parse_splits(
    splits: Mapping[str, Any] | None, times: np.ndarray
) -> dict[str, list[tuple[np.datetime64 | None, np.datetime64 | None]]]:
    """Each split's time ranges [start, end) (None: open), checked not to overlap; None: chronological 80 / 10 / 10
    of the store's times (train the first 80 %, test the last 10 %)."""
    if splits is None:
        counts = split_counts(len(times), DEFAULT_FRACTIONS)
        ranges: dict[str, list[tuple[np.datetime64 | None, np.datetime64 | None]]] = {}
        first = 0
        for name, count in counts.items():
            stop = first + count
            if count:  # an empty split (of a store with few times) starts past the last time
                start_time = None if first == 0 else times[first]
                end_time = None if stop >= len(times) else times[stop]
                ranges[name] = [(start_time, end_time)]
            else:
                ranges[name] = []
            first = stop
        return ranges
    if not isinstance(splits, Mapping) or not splits:
        raise ValueError(
            "splits must map split names to time ranges [start, end), e.g. "
            f"{{train: ['2019-01-01', '2022-01-01'], test: ['2022-01-01', null]}}, got {splits!r}"
        )
    parsed = {}
    for name, value in splits.items():
        where = f"splits[{name!r}]"
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise ValueError(f"{where} must be a [start, end) pair of times or a list of them, got {value!r}")
        single = len(value) == 2 and not any(_is_pair(v) for v in value)
        pairs = [value] if single else list(value)
        if not pairs:
            raise ValueError(f"{where} must be a [start, end) pair of times or a list of them, got {value!r}")
        parsed_pairs = []
        for k, pair in enumerate(pairs):
            here = where if single else f"{where}[{k}]"
            if not _is_pair(pair):
                raise ValueError(f"{here} must be a [start, end) pair of times (null: open), got {pair!r}")
            start = None if pair[0] is None else _as_time(pair[0], f"{here}[0]")
            end = None if pair[1] is None else _as_time(pair[1], f"{here}[1]")
            if start is not None and end is not None and end <= start:
                raise ValueError(f"{here}: the end {pair[1]!r} must come after the start {pair[0]!r}")
            parsed_pairs.append((start, end))
        parsed[str(name)] = parsed_pairs
    open_start = np.iinfo(np.int64).min
    flat = sorted(
        ((s, e, n) for n, pairs in parsed.items() for s, e in pairs),
        key=lambda r: open_start if r[0] is None else int(r[0].astype("int64")),
    )
    for (s0, e0, n0), (s1, e1, n1) in itertools.pairwise(flat):
        if e0 is None or s1 is None or s1 < e0:
            raise ValueError(
                f"the time ranges of splits {n0!r} [{s0}, {e0}) and {n1!r} [{s1}, {e1}) overlap: "
                "a time goes to one split at most"
            )
    return parsed


def _is_pair(value: Any) -> bool:
    return not isinstance(value, str) and isinstance(value, Sequence) and len(value) == 2


class MlcastFrames:
    """The frames of the rain variable as (T, 1, H, W) float32 in ``units``, NaN kept; a time slice reads only its
    frames (through `XarrayFrames` and its chunk cache).

    Attributes:
        frames: the raw frames.
        conversion: how they become mm/h.
        steps: (T,) each frame's time step (the accumulation period of an amount without a fixed one).
        units: what indexing returns, "mm/h" or "pixel".
    """

    def __init__(self, frames: XarrayFrames, conversion: RainConversion, steps: np.ndarray, units: Units) -> None:
        self.frames, self.conversion, self.steps, self.units = frames, conversion, steps, units
        self.shape = frames.shape

    def rain_rate(self, time: slice) -> np.ndarray:
        """Frames ``time`` in mm/h, NaN without coverage."""
        return self.conversion.to_rain_rate(self.frames[time], self.steps[time])

    def __getitem__(self, time: slice) -> np.ndarray:
        rain = self.rain_rate(time)
        if self.units == "mm/h":
            return rain
        dry = np.isnan(rain)
        pixels = rain_rate_to_pixel(np.nan_to_num(rain), "hko7").astype(np.float32)
        pixels[dry] = np.nan
        return pixels


class MlcastSequences(WindowDataset):
    """Windows of rain rates from a radar archive in the mlcast convention, a local path or an fsspec URL.

    The store is opened lazily: building the dataset reads its coordinates and attributes (and, with
    ``scan_empty_frames``, the frames of the split once), and each item reads only its window's frames. Items
    hold "context" (T_in, 1, h, w) and "target" (T_out, 1, h, w) in ``units``, "context_mask" and "mask" (1 where
    the radars cover the pixel, 0 where the store has NaN; the frames hold 0 there), and with ``patch_size``
    "weight" (the patch's importance weight) and "origin" (row and column of its top-left pixel), as
    [`RadarArchiveSequences`][convlstm.data.RadarArchiveSequences] gives them.

    Time: the axis is rebuilt from ``time`` and ``missing_times`` and cut into recordings at every missing time,
    every all-NaN frame (when scanned), ``consistent_timestep_start`` and every change of time step (see
    `time_runs`); windows never cross a cut. A split takes the frames of the recordings inside its time
    ranges, so that splits share no frame.

    The window arguments (``context_frames``, ``target_frames``, ``stride``, ``transform``, applied last) are the
    fields of [`WindowOptions`][convlstm.data.WindowOptions], which documents them; missing values are always masked.

    Args:
        root: the store: a local path or an fsspec URL (``s3://``, ``gs://``, ``https://``).
        split: a key of ``splits`` ("train" (the default), "val", "test"), or "all" for every time.
        variable: the variable to read; default the one whose ``standard_name`` is rain (an error lists the
            store's variables when there is none or several).
        zr: the Z-R relation of a reflectivity variable: "marshall_palmer" (a = 200, b = 1.6, the default),
            "hko7" or an (a, b) pair.
        accumulation: an amount variable's accumulation period ("5min", "1h"); default the interval of its
            ``cell_methods`` ("time: sum (interval: 5 minutes)"), else each frame's time step.
        splits: split name -> a time range [start, end) or a list of them (ISO times; null for an open end);
            ranges must not overlap. None: the store's times chronologically, 80 / 10 / 10.
        units: "mm/h" (default) or "pixel" (HKO-7 pixels in [0, 1]).
        patch_size: (height, width) or one int: items are patches drawn in favour of rain
            ([`RainBiasedPatches`][convlstm.data.RainBiasedPatches]); None: whole frames.
        rain_threshold: rain rate (mm/h) from which a pixel counts as raining for the patch draw.
        min_acceptance: acceptance probability of a dry patch, in (0, 1]; 1 draws uniform positions.
        favour_rain_in: the frames whose rain decides the draw: "window" (context and target) or "context"
            (only the frames the model reads). Drawn by the whole window, a patch whose rain stayed or grew in the
            target is kept more often than one whose rain decayed, so a model trained on the patches learns to
            forecast too much rain; drawn by the context, the target is whatever followed it.
        augment: rotate and flip the items of split "train" at random (odd quarter turns on square items only).
        seed: seed of the patch draws and augmentation.
        scan_empty_frames: read the split's frames once when the dataset is built to find all-NaN frames, which
            are then gaps. False skips the read (for archives too large to read up front): an all-NaN frame is
            then a frame without coverage (mask 0 everywhere).
        storage_options: options of the fsspec filesystem of a URL ``root`` (``{"anon": True}``,
            ``{"endpoint_url": ...}``, credentials).
        chunk_cache: decoded time chunks each process keeps (see
            `XarrayFrames`).

    Attributes:
        conversion: the variable and how it becomes mm/h.
        times: (T,) the store's time coordinate.
        empty_frames: indices into ``times`` of the all-NaN frames found (empty when not scanned).
        time_chunk: frames per chunk along time on disk (1 in the convention).
    """

    def __init__(
        self,
        root: Location,
        split: str = "train",
        *,
        context_frames: int,
        target_frames: int,
        variable: str | None = None,
        zr: str | Sequence[float] | None = None,
        accumulation: str | None = None,
        splits: Mapping[str, Any] | None = None,
        units: Units = "mm/h",
        patch_size: int | Sequence[int] | None = None,
        rain_threshold: float = 0.1,
        min_acceptance: float = 0.1,
        favour_rain_in: FavourRainIn = "window",
        augment: bool = False,
        stride: int = 1,
        seed: int = 0,
        scan_empty_frames: bool = True,
        storage_options: Mapping[str, Any] | None = None,
        chunk_cache: int = 0,
        transform: Transform | None = None,
    ) -> None:
        options = WindowOptions(
            context_frames=context_frames,
            target_frames=target_frames,
            stride=stride,
            transform=transform,
            nan_policy="mask",
        )
        window = options.window_frames
        check_choice("units", units, get_args(Units))
        check_bool("augment", augment)
        check_bool("scan_empty_frames", scan_empty_frames)
        where = os.fspath(root)
        opener = functools.partial(open_lazy, root, None, storage_options)
        dataset = opener()
        name = find_rain_variable(dataset, variable, where=where)
        self.conversion = rain_conversion(dataset[name], name, zr=zr, accumulation=accumulation, where=where)
        array = dataset[name]
        if array.ndim != 3 or "time" not in array.dims:
            raise ValueError(f"{where}: variable {name!r} must have dims (time, y, x), got {array.dims}")
        spatial = tuple(str(d) for d in array.dims if d != "time")
        self.times = np.asarray(dataset["time"].values)
        if not np.issubdtype(self.times.dtype, np.datetime64):
            raise ValueError(f"{where}: the time coordinate must hold dates (CF-decoded), got {self.times.dtype}")
        missing = (
            np.asarray(dataset[MISSING_TIMES].values)
            if MISSING_TIMES in dataset.variables
            else np.array([], "datetime64[ns]")
        )
        if not np.issubdtype(missing.dtype, np.datetime64):
            raise ValueError(f"{where}: {MISSING_TIMES} must hold dates (CF-decoded), got {missing.dtype}")
        start = dataset.attrs.get(CONSISTENT_START)
        consistent = None if start is None else _as_time(start, f"{where}: the attribute {CONSISTENT_START}")
        runs, steps = time_runs(self.times, missing, consistent, where=where)
        dataset.close()  # XarrayFrames opens its own, again in each DataLoader worker
        ranges = self._split_ranges(split, splits)
        logger.info(
            "%s: %r (%s, %s) read as %s; %d times, %d missing, %d runs",
            where,
            name,
            self.conversion.standard_name,
            self.conversion.units,
            self.conversion.description,
            len(self.times),
            len(missing),
            len(runs),
        )
        raw = XarrayFrames(opener, [name], ("time", spatial[0], spatial[1]), where, chunk_cache=chunk_cache)
        self.time_chunk = raw.time_chunk
        frames = MlcastFrames(raw, self.conversion, steps, units)
        pieces = [piece for run in runs for piece in self._inside(run, ranges)]
        self.empty_frames = np.array([], dtype=np.int64)
        if scan_empty_frames:
            pieces, self.empty_frames = _cut_empty_frames(raw, pieces, window)
        self.split, self.units, self.augment = split, units, augment
        self.seed, self.epoch = check_int("seed", seed, 0), 0
        self.favour_rain_in = check_choice("favour_rain_in", favour_rain_in, get_args(FavourRainIn))
        self.patches = (
            None
            if patch_size is None
            else RainBiasedPatches(patch_size, threshold=rain_threshold, min_acceptance=min_acceptance)
        )
        if self.patches is not None and any(s < p for s, p in zip(raw.shape[2:], self.patches.size, strict=True)):
            raise ValueError(f"patch_size {self.patches.size} does not fit the store's frames {raw.shape[2:]}")
        whole = Recording(name=name, frames=frames, source=where)
        recordings = [  # named by their first time, which says more in a log than frame indices
            replace(whole.segment(a, b), name=f"{name}@{np.datetime_as_string(self.times[a], unit='m')}")
            for a, b in pieces
            if b - a >= window
        ]
        short = sum(1 for a, b in pieces if b - a < window)
        if short:
            logger.info("%s: %d runs of split %r are shorter than a window of %d frames", where, short, split, window)
        if not recordings:
            raise ValueError(
                f"{where}: split {split!r} has no run of {window} consecutive frames (context_frames + "
                f"target_frames) without a gap or change of time step in its time ranges; use shorter windows or "
                "wider splits"
            )
        super().__init__(recordings, options)

    def _split_ranges(
        self, split: str, splits: Mapping[str, Any] | None
    ) -> list[tuple[np.datetime64 | None, np.datetime64 | None]]:
        parsed = parse_splits(splits, self.times)
        if check_choice("split", split, ["all", *parsed]) == "all":
            return [(None, None)]
        return parsed[split]

    def _inside(
        self, run: tuple[int, int], ranges: list[tuple[np.datetime64 | None, np.datetime64 | None]]
    ) -> list[tuple[int, int]]:
        """The parts of ``run`` (indices into ``times``) whose times lie in one of ``ranges``."""
        a, b = run
        pieces = []
        for start, end in ranges:
            lo = a if start is None else max(a, int(np.searchsorted(self.times, start, side="left")))
            hi = b if end is None else min(b, int(np.searchsorted(self.times, end, side="left")))
            if lo < hi:
                pieces.append((lo, hi))
        return sorted(pieces)

    def set_epoch(self, epoch: int) -> None:
        """Draws the patches and augmentations of epoch ``epoch`` (window i's come from (seed, split, epoch, i))."""
        self.epoch = check_int("epoch", epoch, 0)

    def window_times(self, index: int) -> np.ndarray:
        """The times of the frames of window ``index``, context then target."""
        rec, start = self.locate(index)
        first = rec.start + start
        return self.times[first : first + self.window_frames]

    def __getitem__(self, index: int) -> Item:
        rec, start = self.locate(index)
        rng = window_rng(self.seed, self.split, self.epoch, index % len(self))
        if self.patches is None:
            item = self.read_window(rec, start)
        else:
            frames, first = cast(MlcastFrames, rec.frames), rec.start + start
            # One read of the window: a chunk holds a whole frame, so a patch costs the same to read.
            rain = frames.rain_rate(slice(first, first + self.window_frames))  # (T, 1, H, W) mm/h
            favoured = rain[: self.context_frames] if self.favour_rain_in == "context" else rain
            patch = self.patches.draw(favoured, np.isfinite(rain[self.context_frames :]), rng)
            rows = slice(patch.top, patch.top + self.patches.size[0])
            cols = slice(patch.left, patch.left + self.patches.size[1])
            values = rain[:, :, rows, cols]
            if self.units == "pixel":
                dry = np.isnan(values)
                values = rain_rate_to_pixel(np.nan_to_num(values), "hko7").astype(np.float32)
                values[dry] = np.nan
            item = self.read_window(Recording(name=rec.name, frames=values, source=rec.source), 0)
            item["weight"] = torch.tensor(patch.weight, dtype=torch.float32)
            item["origin"] = torch.tensor([patch.top, patch.left], dtype=torch.int64)
        if self.augment and self.split == "train":
            item = random_flip_rotate(item, rng)
        return item if self.transform is None else self.transform(item)


def _cut_empty_frames(
    frames: XarrayFrames, pieces: list[tuple[int, int]], window: int
) -> tuple[list[tuple[int, int]], np.ndarray]:
    """``pieces`` cut at their all-NaN frames, and those frames' indices; pieces shorter than a window are not
    read (no window can come from them)."""
    per_frame = max(1, math.prod(frames.shape[1:]) * 4)
    block = max(1, SCAN_BYTES // per_frame)
    empty: list[int] = []
    kept: list[tuple[int, int]] = []
    for a, b in pieces:
        if b - a < window:
            kept.append((a, b))
            continue
        found = []
        for lo in range(a, b, block):
            hi = min(lo + block, b)
            values = np.asarray(frames[slice(lo, hi)], dtype=np.float32)
            found += (lo + np.flatnonzero(np.isnan(values).all(axis=(1, 2, 3)))).tolist()
        edges = [a - 1, *found, b]
        kept += [(p + 1, q) for p, q in itertools.pairwise(edges) if q > p + 1]
        empty += found
    if empty:
        logger.warning("%s: %d frames are all NaN; treated as missing", frames.variables[0], len(empty))
    return kept, np.array(empty, dtype=np.int64)
