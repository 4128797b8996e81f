"""Radar archives read through pysteps' own I/O: the files a pystepsrc ``data_sources`` entry describes, found with
``pysteps.io.archive``, read by the entry's pysteps importer and converted to rain rate (mm/h) by
``pysteps.utils.conversion.to_rainrate``. No reader here knows a file format; pysteps does.

A recipe pastes the entries as they are and names the events (stretches of time) to read and the split of each:

    data:
      source: radar_archive
      args:
        root: ~/pysteps-data            # relative root_path entries are read from here
        archives:
          fmi: {root_path: ./radar/fmi/pgm, path_fmt: "%Y%m%d",
                fn_pattern: "%Y%m%d%H%M_fmi.radar.composite.lowest_FIN_SUOMI1", fn_ext: pgm.gz,
                importer: fmi_pgm, timestep: 5, importer_kwargs: {gzipped: true}}
        events:
          fmi_2016: {archive: fmi, start: "2016-09-28 14:45", end: "2016-09-28 18:00"}
          fmi_2017: {archive: fmi, start: "2017-05-09 10:45", end: "2017-05-09 14:00"}
        splits: {train: [fmi_2016], val: [], test: [fmi_2017]}
        patch_size: 128

Every time step of an event that has no file, or whose file fails to import or holds another grid, is logged
once when the dataset is built and treated as missing; windows never span a missing step. Pixels without radar
coverage (NaN) are set to 0 and marked 0 in the items' masks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, cast, get_args

import numpy as np
import torch

from convlstm.data.core.sampling import FavourRainIn, RainBiasedPatches, window_rng
from convlstm.data.core.splits import RecordingSplit
from convlstm.data.core.transforms import random_flip_rotate
from convlstm.data.core.windows import Item, Recording, Transform, WindowDataset, WindowOptions
from convlstm.units import rain_rate_to_pixel
from convlstm.utils.atomic import atomic_write_text, atomic_write_with
from convlstm.utils.checks import check_bool, check_choice, check_int, check_positive

logger = logging.getLogger(__name__)

Units = Literal["mm/h", "pixel"]

#: The keys of a pystepsrc ``data_sources`` entry; all but ``importer_kwargs`` are required.
ARCHIVE_KEYS = ("root_path", "path_fmt", "fn_pattern", "fn_ext", "importer", "timestep", "importer_kwargs")
REQUIRED_ARCHIVE_KEYS = ARCHIVE_KEYS[:-1]
EVENT_KEYS = ("archive", "start", "end")
#: Bumped when the cached arrays change meaning, so that old caches are read again rather than trusted.
CACHE_VERSION = 1


def _pysteps_io() -> Any:
    try:
        import pysteps.io
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("radar archives are read by pysteps: pip install 'convlstm[nowcast]'") from err
    return pysteps.io


@dataclass(frozen=True)
class RadarArchive:
    """One pystepsrc ``data_sources`` entry: where the files of one product lie and which pysteps importer reads them.

    Attributes:
        name: the entry's name ("fmi", "mch", ...), for messages.
        root_path: the folder the dated sub-folders start from (relative entries resolved against ``root``).
        path_fmt: strftime pattern of the sub-folders ("%Y%m%d").
        fn_pattern: strftime pattern of the file names, without extension; "?" matches any one character.
        fn_ext: the file names' extension ("pgm.gz").
        importer: the pysteps importer's name ("fmi_pgm", "knmi_hdf5", ...).
        timestep: minutes between files.
        importer_kwargs: keyword arguments of the importer.
    """

    name: str
    root_path: Path
    path_fmt: str
    fn_pattern: str
    fn_ext: str
    importer: str
    timestep: float
    importer_kwargs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_entry(
        cls, name: str, entry: Mapping[str, Any], root: str | os.PathLike[str] | None = None
    ) -> RadarArchive:
        """Reads a pystepsrc entry (a dict, as pasted); ValueError naming the key that is missing or wrong."""
        where = f"archives[{name!r}]"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where} must be a pystepsrc data_sources entry (a mapping), got {type(entry).__name__}")
        missing = [key for key in REQUIRED_ARCHIVE_KEYS if key not in entry]
        if missing:
            raise ValueError(f"{where} lacks {missing}; a pystepsrc data_sources entry has {list(ARCHIVE_KEYS)}")
        unknown = sorted(set(entry) - set(ARCHIVE_KEYS))
        if unknown:
            raise ValueError(f"{where} has unknown keys {unknown}; expected those of pystepsrc: {list(ARCHIVE_KEYS)}")
        for key in ("root_path", "path_fmt", "fn_pattern", "fn_ext", "importer"):
            if not isinstance(entry[key], str):
                raise ValueError(f"{where}[{key!r}] must be a string, got {type(entry[key]).__name__} {entry[key]!r}")
        timestep = entry["timestep"]
        check_positive(f"{where}['timestep'] (minutes)", timestep)
        kwargs = entry.get("importer_kwargs") or {}
        if not isinstance(kwargs, Mapping):
            raise ValueError(f"{where}['importer_kwargs'] must be a mapping, got {type(kwargs).__name__}")
        importer_method(entry["importer"], where=f"{where}['importer']")
        root_path = Path(entry["root_path"]).expanduser()
        if not root_path.is_absolute():
            root_path = Path(root if root is not None else os.getcwd()).expanduser() / root_path
        return cls(
            name=name,
            root_path=root_path,
            path_fmt=entry["path_fmt"],
            fn_pattern=entry["fn_pattern"],
            fn_ext=entry["fn_ext"],
            importer=entry["importer"],
            timestep=float(timestep),
            importer_kwargs=dict(kwargs),
        )

    def example_path(self, when: datetime) -> Path:
        """The file expected at ``when`` (for messages)."""
        return self.root_path / when.strftime(self.path_fmt) / f"{when.strftime(self.fn_pattern)}.{self.fn_ext}"


@dataclass(frozen=True)
class RadarEvent:
    """A stretch of time of one archive: every time step from ``start`` to ``end`` (both included)."""

    name: str
    archive: str
    start: datetime
    end: datetime


def _parse_time(value: Any, where: str) -> datetime:
    """A datetime from a datetime, a date, ISO text ("2016-09-28 14:45") or pysteps' "201609281445"."""
    if isinstance(value, datetime):
        return value if value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    text = str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) else None
    try:
        if text is not None and text.isdigit() and len(text) in (12, 14):
            return datetime.strptime(text, "%Y%m%d%H%M%S"[: len(text) - 2])
        if text is not None:
            return _parse_time(datetime.fromisoformat(text), where)
    except ValueError:
        pass
    raise ValueError(f"{where} must be a date and time (ISO '2016-09-28 14:45' or '201609281445'), got {value!r}")


def parse_events(events: Mapping[str, Any], archives: Mapping[str, RadarArchive]) -> dict[str, RadarEvent]:
    """``events`` of a recipe (name -> {archive, start, end}) checked against the archives and their time steps."""
    if not isinstance(events, Mapping) or not events:
        raise ValueError(
            f"events must map event names to {{archive, start, end}}, got {type(events).__name__} {events!r}"
        )
    parsed = {}
    for name, spec in events.items():
        where = f"events[{name!r}]"
        if not isinstance(spec, Mapping):
            raise ValueError(f"{where} must be a mapping with {list(EVENT_KEYS)}, got {spec!r}")
        unknown = sorted(set(spec) - set(EVENT_KEYS))
        missing = [key for key in ("start", "end") if key not in spec]
        if unknown or missing:
            raise ValueError(f"{where} must have keys {list(EVENT_KEYS)}; it lacks {missing}, has unknown {unknown}")
        archive = spec.get("archive", next(iter(archives)) if len(archives) == 1 else None)
        if not isinstance(archive, str) or archive not in archives:
            raise ValueError(f"{where}['archive'] must be one of the archives {sorted(archives)}, got {archive!r}")
        start, end = _parse_time(spec["start"], f"{where}['start']"), _parse_time(spec["end"], f"{where}['end']")
        step = timedelta(minutes=archives[archive].timestep)
        if end < start or (end - start) % step:
            raise ValueError(
                f"{where}: end {end} must follow start {start} by whole time steps of archive {archive!r} ({step})"
            )
        parsed[str(name)] = RadarEvent(name=str(name), archive=archive, start=start, end=end)
    return parsed


@dataclass
class EventFrames:
    """One event read into memory (or memory-mapped from the cache).

    Attributes:
        event: the event.
        rain_rate: (T, 1, H, W) float32 rain rate in mm/h, one frame per time step; NaN without coverage, and
            all NaN at a missing step.
        present: (T,) bool, False at the steps without a readable file.
        times: (T,) datetime64[s] of the steps.
        metadata: pysteps' metadata of the event's first readable file (projection, x1, y1, x2, y2, pixel sizes,
            yorigin), with JSON-ready values.
    """

    event: RadarEvent
    rain_rate: np.ndarray
    present: np.ndarray
    times: np.ndarray
    metadata: dict[str, Any]

    def runs(self) -> list[tuple[int, int]]:
        """[start, stop) of every run of consecutive present steps."""
        edges = np.flatnonzero(np.diff(np.concatenate([[0], self.present.astype(np.int8), [0]])))
        return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if isinstance(self.rain_rate, np.memmap) and self.rain_rate.filename:
            # A DataLoader worker started by spawn maps the cached file again instead of receiving a copy.
            state["rain_rate"] = Path(self.rain_rate.filename)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if isinstance(state["rain_rate"], Path):
            state["rain_rate"] = np.load(state["rain_rate"], mmap_mode="r")
        self.__dict__.update(state)


def importer_method(name: str, *, where: str = "importer") -> Callable[..., Any]:
    """pysteps' importer of that name ("fmi_pgm", "knmi_hdf5", ...); ValueError naming ``where`` and listing
    pysteps' importers otherwise."""
    try:
        return cast(Callable[..., Any], _pysteps_io().get_method(name, "importer"))
    except ValueError as err:  # pysteps' message lists its importers
        said = " ".join(str(err).split())
        raise ValueError(f"{where} = {name!r} is not a pysteps importer: {said}") from None


def import_rain_rate(
    path: str | os.PathLike[str], importer: str, importer_kwargs: Mapping[str, Any] | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """One file through the pysteps importer named and ``to_rainrate``: (H, W) float32 mm/h (NaN without
    coverage) and pysteps' metadata (projection, x1, x2, y1, y2, pixel sizes, yorigin, ...).

    Raises:
        ValueError: an unknown importer, or a file that holds more than one field. Whatever the importer raises
            for a file it cannot read comes through as it is.
    """
    from pysteps.utils.conversion import to_rainrate

    precip, _, metadata = importer_method(importer)(str(path), **dict(importer_kwargs or {}))
    # Some importers return masked arrays (BoM's netCDF): masked pixels have no coverage, as NaN has.
    values = np.ma.filled(np.ma.asarray(precip, dtype=np.float64), np.nan)
    if values.ndim != 2:
        raise ValueError(f"expected one 2-D field, got shape {values.shape}")
    rain, metadata = to_rainrate(values, metadata)
    return np.asarray(rain, dtype=np.float32), metadata


def grid_coordinates(metadata: Mapping[str, Any], shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The pixel centres (x (W,), y (H,)) of a field of ``shape`` (H, W) on pysteps' grid ``metadata``, in its
    ``cartesian_unit``, placed as pysteps' own netCDF exporter places them: the corners x1..x2 and y1..y2 cut into
    W and H equal pixels, and y from north to south (decreasing) when ``yorigin`` is "upper" (row 0 at the top, as
    most composites are stored), from south to north when it is "lower".

    Raises:
        ValueError: metadata without the grid's corners or ``yorigin``.
    """
    keys = ("x1", "x2", "y1", "y2", "yorigin")
    missing = [key for key in keys if metadata.get(key) is None]
    if missing:
        raise ValueError(f"pysteps' metadata lacks the grid's {missing}: cannot place the field on its grid")
    if metadata["yorigin"] not in ("upper", "lower"):
        raise ValueError(f"pysteps' metadata['yorigin'] must be 'upper' or 'lower', got {metadata['yorigin']!r}")
    height, width = shape
    x1, x2, y1, y2 = (float(metadata[key]) for key in ("x1", "x2", "y1", "y2"))
    x = x1 + (x2 - x1) * (np.arange(width) + 0.5) / width
    y = y1 + (y2 - y1) * (np.arange(height) + 0.5) / height
    return x, (y[::-1].copy() if metadata["yorigin"] == "upper" else y)


def _import_rain_rate(archive: RadarArchive, path: str) -> tuple[np.ndarray, dict[str, Any]]:
    return import_rain_rate(path, archive.importer, archive.importer_kwargs)


def _plain_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("projection", "x1", "y1", "x2", "y2", "xpixelsize", "ypixelsize", "yorigin", "cartesian_unit")
    plain: dict[str, Any] = {}
    for key in keys:
        value = metadata.get(key)
        plain[key] = value.item() if isinstance(value, np.generic) else value
    return plain


def _find_files(archive: RadarArchive, event: RadarEvent) -> tuple[list[str | None], list[datetime]]:
    steps = round((event.end - event.start) / timedelta(minutes=archive.timestep))
    try:
        files, times = _pysteps_io().archive.find_by_date(
            event.end,
            str(archive.root_path),
            archive.path_fmt,
            archive.fn_pattern,
            archive.fn_ext,
            archive.timestep,
            num_prev_files=steps,
            silent=True,
        )
    except OSError:  # pysteps found none of them
        raise FileNotFoundError(
            f"event {event.name!r}: no file of archive {archive.name!r} from {event.start} to {event.end}; the "
            f"first would be {archive.example_path(event.start)}"
        ) from None
    files = files if isinstance(files, list) else [files]
    times = times if isinstance(times, list) else [times]
    return files, times


def read_event(archive: RadarArchive, event: RadarEvent) -> EventFrames:
    """Imports every file of ``event``; a file that fails to import or holds another grid than most of the
    event's files is logged and left out as a missing step."""
    files, times = _find_files(archive, event)
    fields: list[np.ndarray | None] = []
    metadata: list[dict[str, Any]] = []
    for path in files:
        if path is None:
            fields.append(None)
            metadata.append({})
            continue
        try:
            rain, meta = _import_rain_rate(archive, path)
        except Exception as error:  # whatever a third-party reader raises, the file is unreadable
            logger.warning(
                "archive %r: could not import %s (%s: %s); treated as missing",
                archive.name,
                path,
                type(error).__name__,
                error,
            )
            fields.append(None)
            metadata.append({})
            continue
        metadata.append(_plain_metadata(meta))
        fields.append(rain)
    shapes = Counter(f.shape for f in fields if f is not None)
    if not shapes:
        raise ValueError(f"event {event.name!r}: none of its {len(files)} files of archive {archive.name!r} imports")
    shape = shapes.most_common(1)[0][0]
    for i, field_ in enumerate(fields):
        if field_ is not None and field_.shape != shape:
            logger.warning(
                "archive %r: %s holds a %s field, the event's others %s; treated as missing",
                archive.name,
                files[i],
                field_.shape,
                shape,
            )
            fields[i] = None
    present = np.array([f is not None for f in fields])
    missing = int((~present).sum())
    if missing:
        logger.warning(
            "event %r: %d of %d time steps missing or unreadable; no window spans them",
            event.name,
            missing,
            len(fields),
        )
    frames = np.full((len(fields), 1, *shape), np.nan, dtype=np.float32)
    for i, field_ in enumerate(fields):
        if field_ is not None:
            frames[i, 0] = field_
    stamps = np.array([np.datetime64(t, "s") for t in times])
    first = metadata[int(np.argmax(present))]  # of a file on the event's grid
    return EventFrames(event=event, rain_rate=frames, present=present, times=stamps, metadata=first)


def _cache_key(archive: RadarArchive, event: RadarEvent, files: Sequence[str | None]) -> str:
    """A digest of everything the cached arrays depend on, the files' sizes and times included, so that a changed
    or added file is read again."""
    stats = [None if p is None else (p, os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in files]
    described = {
        "version": CACHE_VERSION,
        "archive": {**archive.__dict__, "name": None, "root_path": str(archive.root_path)},
        "event": [event.start.isoformat(), event.end.isoformat()],
        "files": stats,
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()[:20]


def cached_event(archive: RadarArchive, event: RadarEvent, cache_dir: str | os.PathLike[str]) -> EventFrames:
    """`read_event` through a cache of .npy files under ``cache_dir``, memory-mapped when read back."""
    files, _ = _find_files(archive, event)
    # "~" as the recipes write it is the user's home, not a folder named "~" in the working directory.
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", event.name)
    stem = Path(cache_dir).expanduser() / f"{name}-{_cache_key(archive, event, files)}"
    array_path, info_path = stem.with_suffix(".npy"), stem.with_suffix(".json")
    if array_path.is_file() and info_path.is_file():
        try:
            cached = json.loads(info_path.read_text())
            rain_rate = np.load(array_path, mmap_mode="r")
            present = np.array(cached["present"], dtype=bool)
            if not present.all():
                logger.warning(
                    "event %r: %d of %d time steps missing or unreadable (cached in %s)",
                    event.name,
                    int((~present).sum()),
                    len(present),
                    array_path,
                )
            times = np.array(cached["times"], dtype="datetime64[s]")
            return EventFrames(event, rain_rate=rain_rate, present=present, times=times, metadata=cached["metadata"])
        except (OSError, ValueError, KeyError) as error:
            logger.warning("cache %s is unreadable (%s); reading the event's files again", array_path, error)
    frames = read_event(archive, event)

    def save(path: Path) -> None:
        with open(path, "wb") as f:  # np.save(path) would add ".npy" to the temporary name
            np.save(f, frames.rain_rate)

    atomic_write_with(array_path, save)
    info = {"present": frames.present.tolist(), "times": frames.times.astype(str).tolist(), "metadata": frames.metadata}
    atomic_write_text(info_path, json.dumps(info))
    frames.rain_rate = np.load(array_path, mmap_mode="r")
    return frames


class RainFrames:
    """An event's (T, 1, H, W) rain rates read as the dataset's units (NaN kept); indexable like the array.

    Attributes:
        event: the event's frames, in mm/h.
        units: what indexing returns, "mm/h" or "pixel".
    """

    def __init__(self, event: EventFrames, units: Units) -> None:
        self.event, self.units = event, units
        self.shape = tuple(event.rain_rate.shape)

    @property
    def rain_rate(self) -> np.ndarray:
        """(T, 1, H, W) rain rates in mm/h, NaN without coverage."""
        return self.event.rain_rate

    def __getitem__(self, index: Any) -> np.ndarray:
        values = np.asarray(self.rain_rate[index])
        if self.units == "mm/h":
            return values
        dry = np.isnan(values)
        pixels = rain_rate_to_pixel(np.nan_to_num(values), "hko7").astype(np.float32)
        pixels[dry] = np.nan
        return pixels


class _Patch:
    """The frames of a recording cropped to one patch: what a Recording reads its window from."""

    def __init__(self, frames: RainFrames, top: int, left: int, size: tuple[int, int]) -> None:
        self.frames, self.rows, self.cols = frames, slice(top, top + size[0]), slice(left, left + size[1])
        self.shape = (frames.shape[0], frames.shape[1], *size)

    def __getitem__(self, time: slice) -> np.ndarray:
        return self.frames[time, :, self.rows, self.cols]


class RadarArchiveSequences(WindowDataset):
    """Windows of radar rain rates from archives that pysteps reads, whole events to each split.

    Each event (a stretch of time of one archive) is read once when the dataset is built (see ``cache_dir``), and
    cut at its missing time steps (no file, a file that does not import, another grid) into runs; windows never
    cross a run's end. Items hold "context" (T_in, 1, h, w) and "target" (T_out, 1, h, w) in ``units``,
    "context_mask" and "mask" (1 where the radars cover the pixel, 0 where pysteps gave NaN; the frames hold 0
    there), and with ``patch_size`` "weight", the patch's importance weight (a 0-d float32 tensor), and "origin",
    the row and column of its top-left pixel in the event's frames, before any augmentation ((2,) int64).

    With ``patch_size`` each window yields one patch drawn in favour of rain by
    [`RainBiasedPatches`][convlstm.data.RainBiasedPatches]; its weight makes means over patches unbiased estimates of
    means over uniformly placed patches (multiply each item's masked sums by its weight). The patch of window i
    comes from the random stream (seed, split, epoch, i): the same whatever the order or worker; ``set_epoch``
    draws new ones.

    The window arguments (``context_frames``, ``target_frames``, ``stride``, ``transform``, applied last) are the
    fields of [`WindowOptions`][convlstm.data.WindowOptions], which documents them; missing values are always masked.

    Args:
        root: the folder relative ``root_path`` entries are read from (a clone of pysteps-data); default the
            working directory, as pysteps does.
        split: a key of ``splits`` ("train" (the default), "val", "test"), or "all" for every event.
        archives: name -> pystepsrc ``data_sources`` entry, pasted as it is (root_path, path_fmt, fn_pattern,
            fn_ext, importer, timestep, importer_kwargs).
        events: name -> {archive, start, end}: the time steps from start to end (both included) of one archive;
            ``archive`` may be left out when there is one. Times as datetimes, ISO text or "%Y%m%d%H%M".
        splits: split name -> event names; an event goes whole to at most one split. None: a seeded shuffle of
            whole events, 80 / 10 / 10 ([`RecordingSplit`][convlstm.data.RecordingSplit]).
        units: "mm/h" (default) or "pixel" (HKO-7 pixels in [0, 1], what the radar models here train on).
        patch_size: (height, width) or one int: items are patches of this size drawn in favour of rain; None:
            whole frames (events of different grids then make items of different sizes).
        rain_threshold: rain rate (mm/h) from which a pixel counts as raining for the patch draw.
        min_acceptance: acceptance probability of a dry patch, in (0, 1]; 1 draws uniform positions.
        favour_rain_in: the frames whose rain decides the draw: "window" (context and target) or "context"
            (only the frames the model reads). Drawn by the whole window, a patch whose rain stayed or grew in the
            target is kept more often than one whose rain decayed, so a model trained on the patches learns to
            forecast too much rain; drawn by the context, the target is whatever followed it.
        augment: rotate and flip the items of split "train" (patch or frame) at random, frames and masks alike;
            odd quarter turns only on square items. Other splits are never augmented.
        seed: seed of the patch draws and augmentation.
        cache_dir: keep each event's rain rates as a .npy file here and memory-map it (DataLoader workers then
            share pages instead of copies); None keeps them in memory.

    Attributes:
        archives: the parsed archive entries by name.
        events: the `EventFrames` of this split's events, in the order of ``events``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        split: str = "train",
        *,
        archives: Mapping[str, Mapping[str, Any]],
        events: Mapping[str, Mapping[str, Any]],
        context_frames: int,
        target_frames: int,
        splits: Mapping[str, Sequence[str]] | None = None,
        units: Units = "mm/h",
        patch_size: int | Sequence[int] | None = None,
        rain_threshold: float = 0.1,
        min_acceptance: float = 0.1,
        favour_rain_in: FavourRainIn = "window",
        augment: bool = False,
        stride: int = 1,
        seed: int = 0,
        cache_dir: str | os.PathLike[str] | None = None,
        transform: Transform | None = None,
    ) -> None:
        options = WindowOptions(
            context_frames=context_frames,
            target_frames=target_frames,
            stride=stride,
            transform=transform,
            nan_policy="mask",
        )
        check_choice("units", units, get_args(Units))
        if not isinstance(archives, Mapping) or not archives:
            raise ValueError(f"archives must map names to pystepsrc data_sources entries, got {archives!r}")
        check_bool("augment", augment)
        self.archives = {str(name): RadarArchive.from_entry(str(name), e, root) for name, e in archives.items()}
        parsed = parse_events(events, self.archives)
        chosen = _events_of_split(list(parsed), split, splits)
        self.split, self.units, self.augment = split, units, augment
        self.seed, self.epoch = check_int("seed", seed, 0), 0
        self.favour_rain_in = check_choice("favour_rain_in", favour_rain_in, get_args(FavourRainIn))
        self.patches = (
            None
            if patch_size is None
            else RainBiasedPatches(patch_size, threshold=rain_threshold, min_acceptance=min_acceptance)
        )
        # Read once, here: importing hundreds of files per epoch would keep the GPU waiting, and a file that fails
        # fails now, not hours into training. In memory by default; cache_dir memory-maps .npy files instead,
        # for archives larger than memory and for workers that share them.
        read: Callable[[RadarArchive, RadarEvent], EventFrames] = (
            read_event if cache_dir is None else lambda a, e: cached_event(a, e, cache_dir)
        )
        self.events = [read(self.archives[parsed[name].archive], parsed[name]) for name in chosen]
        super().__init__(self._recordings(options.window_frames), options)

    def _recordings(self, window: int) -> list[Recording]:
        recordings = []
        for frames in self.events:
            name = frames.event.name
            if self.patches is not None and any(
                s < p for s, p in zip(frames.rain_rate.shape[2:], self.patches.size, strict=True)
            ):
                raise ValueError(
                    f"patch_size {self.patches.size} does not fit event {name!r}, whose frames are "
                    f"{tuple(frames.rain_rate.shape[2:])}"
                )
            whole = Recording(name=name, frames=RainFrames(frames, self.units), source=frames.event.archive)
            runs = frames.runs()
            recordings += [whole.segment(a, b) for a, b in runs if b - a >= window]
            short = [b - a for a, b in runs if b - a < window]
            if short:
                logger.info(
                    "event %r: %d runs between missing steps are shorter than a window of %d frames (%s)",
                    name,
                    len(short),
                    window,
                    short,
                )
        if not recordings:
            raise ValueError(
                f"no run of {window} consecutive time steps in events {[f.event.name for f in self.events]}: "
                "use shorter windows or events with fewer missing steps"
            )
        return recordings

    def set_epoch(self, epoch: int) -> None:
        """Draws the patches and augmentations of epoch ``epoch`` (window i's come from (seed, split, epoch, i))."""
        self.epoch = check_int("epoch", epoch, 0)

    def window_times(self, index: int) -> np.ndarray:
        """The times (datetime64[s]) of the frames of window ``index``, context then target."""
        rec, start = self.locate(index)
        first = rec.start + start
        return cast(RainFrames, rec.frames).event.times[first : first + self.window_frames]

    def __getitem__(self, index: int) -> Item:
        rec, start = self.locate(index)
        rng = window_rng(self.seed, self.split, self.epoch, index % len(self))
        if self.patches is None:
            item = self.read_window(rec, start)
        else:
            frames, first = cast(RainFrames, rec.frames), rec.start + start
            rain = np.asarray(frames.rain_rate[first : first + self.window_frames])  # (T, 1, H, W) mm/h
            favoured = rain[: self.context_frames] if self.favour_rain_in == "context" else rain
            patch = self.patches.draw(favoured, np.isfinite(rain[self.context_frames :]), rng)
            cropped = replace(rec, frames=_Patch(frames, patch.top, patch.left, self.patches.size))
            item = self.read_window(cropped, start)
            item["weight"] = torch.tensor(patch.weight, dtype=torch.float32)
            item["origin"] = torch.tensor([patch.top, patch.left], dtype=torch.int64)
        if self.augment and self.split == "train":
            item = random_flip_rotate(item, rng)
        return item if self.transform is None else self.transform(item)


def _events_of_split(names: list[str], split: str, splits: Mapping[str, Sequence[str]] | None) -> list[str]:
    """The events of ``split``, in the order of ``names``; ValueError for an unknown or doubly assigned event."""
    if splits is None:
        by = RecordingSplit()
        check_choice("split", split, ["all", *by.fractions])
        chosen = names if split == "all" else by.select(names, split)
        if not chosen:
            raise ValueError(
                f"split={split!r} gets none of the {len(names)} events by an 80/10/10 shuffle: pass splits"
            )
        return chosen
    if not isinstance(splits, Mapping):
        raise ValueError(f"splits must map split names to event names, got {type(splits).__name__} {splits!r}")
    owner: dict[str, str] = {}
    for name, members in splits.items():
        if isinstance(members, str) or not isinstance(members, Sequence):
            raise ValueError(f"splits[{name!r}] must be a list of event names, got {members!r}")
        for event in members:
            if event not in names:
                raise ValueError(f"splits[{name!r}] names event {event!r}, which is not among the events {names}")
            if event in owner:
                raise ValueError(f"event {event!r} is in splits {owner[event]!r} and {name!r}; events go whole to one")
            owner[event] = str(name)
    if check_choice("split", split, ["all", *splits]) == "all":
        return names
    chosen = [name for name in names if owner.get(name) == split]
    if not chosen:
        raise ValueError(f"split {split!r} has no event: splits[{split!r}] is empty")
    return chosen
