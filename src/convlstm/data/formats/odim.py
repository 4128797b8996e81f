"""Radar composites in ODIM HDF5 (the OPERA / EUMETNET format weather services exchange), one file per time.

Each file holds one 2-D field per quantity under ``/datasetN/dataM`` with its coding in ``what`` (gain, offset,
nodata, undetect), the nominal time in ``/what`` (date, time) and the grid in ``/where`` (projdef, corner
coordinates, xscale, yscale). [`ODIMSequences`][convlstm.data.ODIMSequences] reads a folder of them, sorted by nominal
time, into the windowed dataset; the values come out in mm/h (reflectivity through a Z-R relation), or as HKO-7 pixels.

Coding, as pysteps' ODIM importer reads it: value = raw * gain + offset; ``nodata`` (outside the radars' reach)
becomes NaN, which the dataset masks (``nan_policy="mask"``); ``undetect`` (measured, no echo) becomes 0 mm/h.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import h5py
import numpy as np

from convlstm.data.core.splits import Splitter, TimeBlockSplit, select_split
from convlstm.data.core.windows import NanPolicy, Transform, WindowDataset, WindowOptions
from convlstm.data.formats.xarray_source import WindowCoords, recordings_between_gaps
from convlstm.units import dbz_to_rain_rate, rain_rate_to_pixel
from convlstm.utils.checks import check_choice

logger = logging.getLogger(__name__)

#: Quantities read: reflectivity (dBZ, converted by the Z-R relation) and rain rate (mm/h, kept).
REFLECTIVITY_QUANTITIES = ("DBZH", "TH")
RATE_QUANTITIES = ("RATE",)
Units = Literal["mm/h", "pixel"]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes | np.bytes_) else str(value)


@dataclass(frozen=True)
class ODIMGrid:
    """The grid of a composite: projection and pixel-centre coordinates (metres in the projection), north first.

    Attributes:
        projdef: the PROJ string of ``/where``.
        x: (W,) easting of the pixel centres, west to east.
        y: (H,) northing of the pixel centres, north to south (row 0 is the top of the image).
    """

    projdef: str
    x: np.ndarray
    y: np.ndarray


def read_odim_grid(path: str | os.PathLike[str]) -> ODIMGrid | None:
    """The grid of an ODIM file from ``/where``, or None when it has no projdef or corners (needs pyproj).

    An attribute missing from ``/where`` is taken from ``/dataset1/where``: some products keep the scales and
    corners there (pysteps' importer looks there for the scales too).
    """
    with h5py.File(path, "r") as f:
        first = f.get("dataset1", {})
        fallback = dict(first["where"].attrs) if "where" in first else {}
        where = {**fallback, **(dict(f["where"].attrs) if "where" in f else {})}
        shape = _first_data_shape(f, path)
    needed = ("projdef", "LL_lon", "LL_lat", "UR_lon", "UR_lat", "xscale", "yscale")
    if not all(k in where for k in needed):
        return None
    try:
        import pyproj
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("ODIM coordinates need pyproj (pip install 'convlstm[nowcast]')") from err
    projdef = _text(where["projdef"])
    proj = pyproj.Proj(projdef)
    corners = [("LL", "UR")] + (
        [("UL", "LR")] if all(f"{c}_{a}" in where for c in ("UL", "LR") for a in "lonlat") else []
    )
    xs, ys = [], []
    for names in corners:
        for name in names:
            x, y = proj(float(where[f"{name}_lon"]), float(where[f"{name}_lat"]))
            xs.append(x)
            ys.append(y)
    # The outer edges of the grid, as pysteps takes them from the corners; pixel centres half a pixel inside.
    x1, y2 = min(xs), max(ys)
    xscale, yscale = float(where["xscale"]), float(where["yscale"])
    height, width = shape
    return ODIMGrid(
        projdef=projdef,
        x=x1 + (np.arange(width) + 0.5) * xscale,
        y=y2 - (np.arange(height) + 0.5) * yscale,
    )


def _first_data_shape(f: h5py.File, path: str | os.PathLike[str]) -> tuple[int, int]:
    for name in sorted(k for k in f if k.startswith("dataset")):
        for sub in sorted(k for k in f[name] if k.startswith("data")):
            shape = f[name][sub]["data"].shape
            return int(shape[0]), int(shape[1])
    raise ValueError(f"{path}: no /datasetN/dataM/data in this file: not an ODIM composite")


def odim_time(path: str | os.PathLike[str]) -> np.datetime64:
    """The nominal time of an ODIM file (``/what`` date YYYYMMDD and time HHMMSS)."""
    with h5py.File(path, "r") as f:
        if "what" not in f or not {"date", "time"} <= set(f["what"].attrs):
            raise ValueError(f"{path}: no /what date and time attributes: not an ODIM file")
        date, time = _text(f["what"].attrs["date"]), _text(f["what"].attrs["time"])
    if len(date) != 8 or len(time) < 4 or not (date + time).isdigit():
        raise ValueError(f"{path}: /what date {date!r} and time {time!r} must be YYYYMMDD and HHMMSS")
    time = time.ljust(6, "0")
    return np.datetime64(f"{date[:4]}-{date[4:6]}-{date[6:]}T{time[:2]}:{time[2:4]}:{time[4:6]}", "s")


def read_odim_field(
    path: str | os.PathLike[str], *, quantity: str = "DBZH", zr_relation: str | tuple[float, float] = "marshall_palmer"
) -> np.ndarray:
    """One composite as rain rate (H, W) float64 in mm/h: NaN where ``nodata``, 0 where ``undetect``.

    Args:
        path: the ODIM HDF5 file.
        quantity: "DBZH" or "TH" (reflectivity, dBZ) or "RATE" (mm/h).
        zr_relation: Z = a R^b for reflectivity: "marshall_palmer" (a=200, b=1.6, pysteps' default), "hko7", or
            (a, b).
    """
    check_choice("quantity", quantity, REFLECTIVITY_QUANTITIES + RATE_QUANTITIES)
    with h5py.File(path, "r") as f:
        found = []
        for name in sorted(k for k in f if k.startswith("dataset")):
            group = f[name]
            group_what = dict(group["what"].attrs) if "what" in group else {}
            for sub in sorted(k for k in group if k.startswith("data")):
                what = {**group_what, **(dict(group[sub]["what"].attrs) if "what" in group[sub] else {})}
                here = _text(what.get("quantity", ""))
                found.append(here)
                if here == quantity:
                    raw = np.asarray(group[sub]["data"][...])
                    return _decode(raw, what, quantity, zr_relation)
    raise ValueError(f"{path}: no dataset of quantity {quantity!r}; found {sorted(set(found))}")


def _decode(raw: np.ndarray, what: dict[str, Any], quantity: str, zr: str | tuple[float, float]) -> np.ndarray:
    gain, offset = float(what.get("gain", 1.0)), float(what.get("offset", 0.0))
    nodata, undetect = what.get("nodata", np.nan), what.get("undetect", 0.0)
    values = raw.astype(np.float64) * gain + offset
    if quantity in REFLECTIVITY_QUANTITIES:
        values = dbz_to_rain_rate(values, zr)
    values[raw == undetect] = 0.0
    values[raw == nodata] = np.nan
    return values


class ODIMFrames:
    """The files of one recording as (T, 1, H, W) frames; indexing a time slice reads only those files."""

    def __init__(
        self, files: Sequence[Path], shape: tuple[int, int], *, quantity: str, zr_relation: Any, units: Units
    ) -> None:
        self.files, self.quantity, self.zr_relation, self.units = list(files), quantity, zr_relation, units
        self.shape = (len(self.files), 1, *shape)

    def __getitem__(self, time: slice) -> np.ndarray:
        fields = []
        for path in self.files[time]:
            field = read_odim_field(path, quantity=self.quantity, zr_relation=self.zr_relation)
            if field.shape != self.shape[2:]:
                raise ValueError(f"{path}: field of shape {field.shape}, the first file had {self.shape[2:]}")
            if self.units == "pixel":
                dry = np.isnan(field)
                field = rain_rate_to_pixel(np.nan_to_num(field), "hko7")
                field[dry] = np.nan
            fields.append(field.astype(np.float32))
        return np.stack(fields)[:, None]  # (t, 1, H, W)


class ODIMSequences(WindowDataset):
    """Windows over a time series of ODIM HDF5 radar composites (one file per time), in mm/h.

    Files are ordered by their nominal time; a gap in the time series (a missing file) cuts it into separate
    recordings, so no window spans a gap. The window arguments (``context_frames``, ``target_frames``, ``stride``,
    ``transform``, ``nan_policy``, ``skip_invalid``) are the fields of [`WindowOptions`][convlstm.data.WindowOptions],
    which documents them; ``nan_policy`` is "mask" here by default: pixels outside the radars' reach become 0 with a
    mask.

    Args:
        root: a folder (its ``*.h5`` / ``*.hdf5`` / ``*.hdf`` files are read) or a list of files.
        split: "train" (the default), "val", "test" (keys of split_by's fractions) or "all".
        split_by: default TimeBlockSplit() (chronological).
        quantity: "DBZH" (default) or "TH", reflectivity in dBZ, or "RATE", rain rate in mm/h.
        zr_relation: the Z-R relation for reflectivity ("marshall_palmer", "hko7" or (a, b)).
        units: "mm/h" (default) or "pixel" (HKO-7 pixels in [0, 1], what the radar models here are trained on).
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        split: str = "train",
        *,
        context_frames: int,
        target_frames: int,
        split_by: Splitter | None = None,
        quantity: str = "DBZH",
        zr_relation: str | tuple[float, float] = "marshall_palmer",
        units: Units = "mm/h",
        stride: int = 1,
        transform: Transform | None = None,
        nan_policy: NanPolicy = "mask",
        skip_invalid: bool = False,
    ) -> None:
        window = WindowOptions(
            context_frames=context_frames,
            target_frames=target_frames,
            stride=stride,
            transform=transform,
            nan_policy=nan_policy,
            skip_invalid=skip_invalid,
        )
        check_choice("units", units, get_args(Units))
        check_choice("quantity", quantity, REFLECTIVITY_QUANTITIES + RATE_QUANTITIES)
        files = _list_files(root)
        times = np.array([odim_time(p) for p in files])
        order = np.argsort(times, kind="stable")
        files, times = [files[i] for i in order], times[order]
        if len(np.unique(times)) != len(times):
            raise ValueError(f"root {root}: two files share a nominal time; expected one composite per time")
        with h5py.File(files[0], "r") as f:
            shape = _first_data_shape(f, files[0])
        self.files, self.times, self.units = files, times, units
        self.grid = read_odim_grid(files[0])
        frames = ODIMFrames(files, shape, quantity=quantity, zr_relation=zr_relation, units=units)
        name = str(root) if isinstance(root, str | os.PathLike) else f"{len(files)} ODIM files"
        super().__init__(
            select_split(recordings_between_gaps(name, frames, times), split, split_by or TimeBlockSplit()), window
        )

    def coords(self, index: int) -> WindowCoords:
        """The times and grid of window ``index``; pixel indices stand in for x and y when the files carry no
        projection."""
        rec, start = self.locate(index)
        first = rec.start + start
        height, width = rec.frames.shape[2:]
        x = self.grid.x if self.grid is not None else np.arange(width, dtype=np.float64)
        y = self.grid.y if self.grid is not None else np.arange(height, dtype=np.float64)
        return WindowCoords(
            time=self.times[first : first + self.window_frames],
            y=y,
            x=x,
            context_frames=self.context_frames,
            variables=["precip_intensity"],
            dims=("time", "y", "x"),
        )


def _list_files(root: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[Path]:
    if isinstance(root, str | os.PathLike):
        folder = Path(root)
        if not folder.is_dir():
            raise FileNotFoundError(f"root {folder} is not a folder of ODIM HDF5 files")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".h5", ".hdf5", ".hdf"))
        if not files:
            raise ValueError(f"root {folder} holds no .h5 / .hdf5 / .hdf files")
        return files
    files = [Path(p) for p in root]
    if not files:
        raise ValueError("root must be a folder or a non-empty list of ODIM files, got an empty list")
    for path in files:
        if not path.is_file():
            raise FileNotFoundError(f"ODIM file not found: {path}")
    return files
