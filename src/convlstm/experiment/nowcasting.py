"""``convlstm nowcast``: the last radar files of any format pysteps reads -> a CF netCDF forecast on their grid.

The files are read by a pysteps importer (named, or guessed from the extension) and converted to rain rate (mm/h)
by pysteps' ``to_rainrate`` (`convlstm.data.radar_archive.import_rain_rate`); their times come from their
names (every pysteps-data archive has one in its file names). The last ``context_frames`` of them, consecutive at
one time step, go to the model; its forecast is written by
[`convlstm.data.write_forecast_netcdf`][convlstm.data.write_forecast_netcdf] on the files' own grid.

Pixels without radar coverage (NaN) are 0 for the model, which takes finite rain rates only; the forecast is NaN
at every lead time where the last file had no coverage, as nothing is known there. Rain advected from such pixels
into covered ones is the model's guess of 0 (no echo), as pysteps' extrapolation treats the area beyond the domain.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch

from convlstm.models import ForecastingModel, ModelCard, from_pretrained, list_pretrained, read_model_card
from convlstm.units import pixel_to_rain_rate, rain_rate_to_pixel

logger = logging.getLogger(__name__)

#: The model ``convlstm nowcast`` runs unless told otherwise: shipped in the package once trained.
DEFAULT_MODEL = "radar-nowcast"

#: File extension -> the pysteps importers that read files so named. One importer: it is taken without asking.
IMPORTERS_BY_EXTENSION: dict[str, tuple[str, ...]] = {
    ".pgm": ("fmi_pgm",),
    ".pgm.gz": ("fmi_pgm",),
    ".gif": ("mch_gif",),
    ".nc": ("bom_rf3",),
    ".tif": ("fmi_geotiff",),
    ".grib2": ("mrms_grib",),
    ".h5": ("knmi_hdf5", "odim_hdf5", "dwd_hdf5", "mch_hdf5"),
    ".hdf": ("odim_hdf5", "opera_hdf5"),
    ".hdf5": ("odim_hdf5", "opera_hdf5"),
}

# A date and time in a file name: 201609281445, 20180824180000, 20180616_100000, 20210701T1200 (and -);
# or MeteoSwiss' two-digit year and day of the year after the product's three letters (AQC161932100V: %y%j%H%M).
_DATE_TIME = re.compile(r"(?<!\d)(\d{8})[_T-]?(\d{4})(\d{2})?(?!\d)")
_YEAR_DAY = re.compile(r"(?<=[A-Z]{3})(\d{2})(\d{3})(\d{4})(?!\d)")


@dataclass(frozen=True)
class RadarFrame:
    """One radar file read: its time, rain rate (H, W) in mm/h (NaN without coverage) and pysteps' metadata."""

    path: Path
    time: datetime
    rain_rate: np.ndarray
    metadata: dict[str, Any]


def file_time(path: str | os.PathLike[str]) -> datetime | None:
    """The time in a radar file's name (the last one, if several), or None when it holds none."""
    name = Path(path).name
    for match in reversed(list(_DATE_TIME.finditer(name))):
        date, hours, seconds = match.groups()
        try:
            return datetime.strptime(f"{date}{hours}{seconds or '00'}", "%Y%m%d%H%M%S")
        except ValueError:
            continue
    for match in reversed(list(_YEAR_DAY.finditer(name))):
        try:
            return datetime.strptime("".join(match.groups()), "%y%j%H%M")
        except ValueError:
            continue
    return None


def choose_importer(
    files: Sequence[Path], importer: str | None, importer_kwargs: Mapping[str, Any] | None
) -> tuple[str, dict[str, Any]]:
    """The pysteps importer and its keyword arguments: ``importer`` when given, else the one the files'
    extension names (``gzipped=True`` added for .pgm.gz); ValueError when the extension names none or several."""
    kwargs = dict(importer_kwargs or {})
    if importer is None:
        extensions = sorted({_extension(path) for path in files})
        candidates = {IMPORTERS_BY_EXTENSION.get(ext, ()) for ext in extensions}
        if len(extensions) != 1 or len(candidates) != 1:
            raise ValueError(f"--importer: the files have several extensions {extensions}; name the importer")
        (ext,), (found,) = extensions, candidates
        if not found:
            known = ", ".join(sorted(IMPORTERS_BY_EXTENSION))
            raise ValueError(
                f"--importer: no pysteps importer is known for {ext!r} files ({known}); name one, e.g. --importer "
                "odim_hdf5"
            )
        if len(found) > 1:
            raise ValueError(
                f"--importer: {ext!r} files are read by several pysteps importers ({', '.join(found)}); name one, "
                f"e.g. --importer {found[0]}"
            )
        importer = found[0]
    from convlstm.data.radar_archive import importer_method

    importer_method(importer, where="--importer")
    if importer == "fmi_pgm" and all(_extension(path) == ".pgm.gz" for path in files):
        kwargs.setdefault("gzipped", True)
    return importer, kwargs


def _extension(path: Path) -> str:
    name = path.name.lower()
    return ".pgm.gz" if name.endswith(".pgm.gz") else path.suffix.lower()


@dataclass(frozen=True)
class _Model:
    """A model to nowcast with and what it needs: the frames it reads, those it forecasts, its time step."""

    model: ForecastingModel
    name: str
    context_frames: int
    lead_times: int
    timestep_minutes: float | None
    units: str


#: What a nowcast model may take: rain rates, or HKO-7 pixels (the radar models here train on, converted both ways).
UNITS = ("mm/h", "pixel")


def load_nowcast_model(model: str | os.PathLike[str], *, lead_times: int | None = None) -> _Model:
    """The model named (shipped) or saved in a directory, with its card's context frames, lead times, time step and
    units.

    Without a card, a model saved by ``convlstm fit`` (runs/<name>/model) takes its recipe's context and target
    frames and units (``task.args.units`` or ``data.args.units``, "pixel" for HKO-7 pixels; mm/h when neither
    says), and any other model its ``motion_frames`` (at least what its motion estimate needs), its
    ``default_horizon`` and mm/h.
    """
    if str(model) == DEFAULT_MODEL and DEFAULT_MODEL not in list_pretrained() and not Path(model).is_dir():
        raise FileNotFoundError(
            f"--model {DEFAULT_MODEL}: the trained radar model is not shipped in this version of the package yet; "
            f"pass --model DIR, a directory written by save_pretrained (e.g. runs/<name>/model)"
        )
    try:
        loaded = from_pretrained(model)
        card = read_model_card(model)
    except (FileNotFoundError, ValueError) as err:
        raise type(err)(f"--model: {err}") from None
    if not isinstance(loaded, ForecastingModel):
        raise ValueError(f"--model {model}: expected a forecasting model, got a {type(loaded).__name__}")
    context_frames, horizon, timestep, units = _needs(loaded, card, Path(str(model)))
    if lead_times is not None:
        if isinstance(lead_times, bool) or not isinstance(lead_times, int) or lead_times < 1:
            raise ValueError(f"--lead-times must be an int >= 1, got {lead_times!r}")
        horizon = lead_times
    return _Model(loaded.eval(), str(model), context_frames, horizon, timestep, units)


def _needs(model: ForecastingModel, card: ModelCard | None, directory: Path) -> tuple[int, int, float | None, str]:
    if card is not None:
        if card.units not in UNITS:
            raise ValueError(f"--model {directory}: its card says it takes {card.units!r}; nowcast feeds {UNITS}")
        return card.context_frames, card.lead_times, card.timestep_minutes, card.units
    if (directory.parent / "recipe.yaml").is_file() and directory.name == "model":
        from convlstm.experiment.run_dir import RunDir

        recipe = RunDir(directory.parent).recipe()
        units = recipe.task.args.get("units") or recipe.data.args.get("units") or "mm/h"
        if units not in UNITS:
            raise ValueError(f"--model {directory}: its recipe trained it on {units!r}; nowcast feeds {UNITS}")
        data = recipe.data
        return data.context_frames, data.target_frames or model.default_horizon, None, units
    motion_frames = getattr(model.config, "motion_frames", None)
    if motion_frames is None:
        raise ValueError(
            f"--model {directory}: cannot tell how many frames it reads; give it a MODEL_CARD.md "
            "(convlstm.models.ModelCard(...).write(directory)) that says context_frames"
        )
    return int(motion_frames), model.default_horizon, None, "mm/h"


def timed_files(files: Sequence[str | os.PathLike[str]]) -> list[tuple[datetime, Path]]:
    """(time, path) of every file, in time order; ValueError naming a file without a time in its name."""
    timed = []
    for file in files:
        path = Path(file)
        when = file_time(path)
        if when is None:
            raise ValueError(
                f"FILES: cannot tell the time of {path} from its name; expected a date and time in it such as "
                "201609281445, 20180616_100000 or 20210701T1200"
            )
        timed.append((when, path))
    return sorted(timed)


def read_radar_files(
    timed: Sequence[tuple[datetime, Path]], importer: str, importer_kwargs: Mapping[str, Any]
) -> list[RadarFrame]:
    """Each (time, file) read through the pysteps importer; ValueError naming a file that fails to import."""
    from convlstm.data.radar_archive import import_rain_rate

    frames = []
    for when, path in timed:
        try:
            rain, metadata = import_rain_rate(path, importer, importer_kwargs)
        except Exception as err:  # whatever a third-party reader raises: the file is unreadable with it
            raise ValueError(
                f"FILES: could not read {path} with pysteps' importer {importer!r} ({type(err).__name__}: {err}); "
                "name another with --importer or pass its arguments with --importer-kwargs"
            ) from None
        frames.append(RadarFrame(path, when, rain, metadata))
    return frames


def _check_series(frames: Sequence[RadarFrame], step: timedelta) -> None:
    last = frames[-1]
    for earlier, later in itertools.pairwise(frames):
        if later.time - earlier.time != step:
            raise ValueError(
                f"FILES: {earlier.path.name} ({earlier.time}) and {later.path.name} ({later.time}) are not one time "
                f"step ({step}) apart: the context must be consecutive frames"
            )
    for frame in frames:
        if frame.rain_rate.shape != last.rain_rate.shape:
            raise ValueError(
                f"FILES: {frame.path} holds a {frame.rain_rate.shape} field, {last.path} a {last.rain_rate.shape} one"
            )


def nowcast(
    files: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    model: str | os.PathLike[str] = DEFAULT_MODEL,
    importer: str | None = None,
    importer_kwargs: Mapping[str, Any] | None = None,
    timestep: float | None = None,
    lead_times: int | None = None,
) -> Path:
    """Forecasts from the last radar files and writes the forecast as CF netCDF to ``out`` (atomically).

    Args:
        files: radar files of one product, in any order (sorted by the time in their names); the last
            ``context_frames`` the model needs are read, and must lie one time step apart.
        out: the netCDF file to write.
        model: the name of a shipped model, or a directory written by save_pretrained.
        importer: pysteps' importer ("fmi_pgm", "knmi_hdf5", "odim_hdf5", ...); None guesses it from the
            extension (see `IMPORTERS_BY_EXTENSION`).
        importer_kwargs: keyword arguments of the importer, as in a pystepsrc data_sources entry.
        timestep: minutes between the files (default: read from their times); also between the lead times.
        lead_times: frames to forecast (default: the model card's, or the model's default horizon).

    Returns:
        The path written. Its layout: ``precip_intensity`` (mm h-1, standard name ``lwe_precipitation_rate``)
        on (time, y, x), time the valid times with ``lead_time`` and ``forecast_reference_time`` (the last
        file's time), x and y the pixel centres in the projection's unit, the grid mapping with ``crs_wkt``, and
        global attributes naming the model and the input files (see
        [`write_forecast_netcdf`][convlstm.data.write_forecast_netcdf]).
    """
    paths = [Path(file) for file in files]
    if not paths:
        raise ValueError("FILES: expected the radar files to forecast from, got none")
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"FILES: {path} not found")
    if timestep is not None and (isinstance(timestep, bool) or not 0 < float(timestep) < float("inf")):
        raise ValueError(f"--timestep must be a positive number of minutes, got {timestep!r}")
    importer, kwargs = choose_importer(paths, importer, importer_kwargs)
    chosen = load_nowcast_model(model, lead_times=lead_times)
    timed = timed_files(paths)
    if len(timed) < chosen.context_frames:
        raise ValueError(
            f"FILES: model {chosen.name} reads the last {chosen.context_frames} frames, got {len(timed)} file(s)"
        )
    frames = read_radar_files(timed[-chosen.context_frames :], importer, kwargs)
    step = _timestep(frames, timestep, chosen)
    _check_series(frames, step)
    last = frames[-1]
    context = np.stack([np.nan_to_num(frame.rain_rate, nan=0.0) for frame in frames])  # (T, H, W) mm/h
    if chosen.units == "pixel":
        context = rain_rate_to_pixel(context, "hko7").astype(np.float32)
    with torch.no_grad():
        forecast = chosen.model(torch.from_numpy(context)[None, :, None], horizon=chosen.lead_times)[0, :, 0]
    values = forecast.numpy().astype(np.float32)  # (K, H, W) in the model's units
    if chosen.units == "pixel":
        values = pixel_to_rain_rate(values, "hko7").astype(np.float32)  # mm/h
    values[:, np.isnan(last.rain_rate)] = np.nan
    return _write(Path(out), values, frames, chosen, step, importer)


def _timestep(frames: Sequence[RadarFrame], minutes: float | None, chosen: _Model) -> timedelta:
    if minutes is not None:
        step = timedelta(minutes=float(minutes))
    elif len(frames) > 1:  # the shortest: a gap is then a pair further apart, named as such
        step = min(later.time - earlier.time for earlier, later in itertools.pairwise(frames))
    elif chosen.timestep_minutes is not None:
        step = timedelta(minutes=chosen.timestep_minutes)
    else:
        raise ValueError("--timestep: one file gives no time step; pass it in minutes")
    if chosen.timestep_minutes is not None and step != timedelta(minutes=chosen.timestep_minutes):
        raise ValueError(
            f"FILES: {chosen.name} forecasts {chosen.timestep_minutes:g}-minute steps (its model card), the files "
            f"are {step.total_seconds() / 60:g} minutes apart"
        )
    return step


def _write(
    out: Path, values: np.ndarray, frames: Sequence[RadarFrame], chosen: _Model, step: timedelta, importer: str
) -> Path:
    from convlstm import __version__
    from convlstm.data.forecast_netcdf import write_forecast_netcdf
    from convlstm.data.radar_archive import grid_coordinates

    metadata = frames[-1].metadata
    x, y = grid_coordinates(metadata, values.shape[-2:])
    projection = metadata.get("projection") or None
    inputs = ", ".join(frame.path.name for frame in frames)
    attrs = {
        "title": f"rain-rate nowcast by {chosen.name}",
        "source": f"convlstm {__version__} nowcast, model {chosen.name} ({chosen.model.family})",
        "model": chosen.name,
        "input_files": inputs,
        "history": f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} convlstm nowcast, pysteps importer {importer}, "
        f"{len(frames)} files",
        "comment": "NaN where the last input file had no radar coverage",
    }
    written = write_forecast_netcdf(
        out,
        values,
        init_time=np.datetime64(frames[-1].time, "s"),
        timestep=np.timedelta64(int(step.total_seconds()), "s"),
        x=x,
        y=y,
        projdef=projection,
        institution=str(metadata.get("institution") or ""),
        xy_units=str(metadata.get("cartesian_unit") or "m"),
        attrs=attrs,
    )
    logger.debug("nowcast %s from %d files of %s -> %s", values.shape, len(frames), frames[-1].time, written)
    return written
