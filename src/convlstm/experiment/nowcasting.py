"""``convlstm nowcast``: the last radar files of any format pysteps reads, or the last frames of an archive in the
mlcast convention -> a CF forecast (netCDF or zarr) on their grid.

Radar files are read by a pysteps importer (named, or guessed from the extension) and converted to rain rate (mm/h) by
pysteps' ``to_rainrate`` (`convlstm.data.formats.radar_archive.import_rain_rate`); their times come from their names
(every pysteps-data archive has one in its file names). The last ``context_frames`` of them, consecutive at one time
step, go to the model; its forecast is written by
[`convlstm.data.write_forecast_netcdf`][convlstm.data.write_forecast_netcdf] on the files' own grid, with their
projection and the latitude and longitude of every pixel.

An mlcast archive (a zarr store, local or at an fsspec URL) is read by
[`MlcastSequences`][convlstm.data.MlcastSequences]: the last ``context_frames`` consecutive frames (or those
ending at ``init_time``), never across a missing time. Its forecast is written by
[`write_mlcast_forecast`][convlstm.data.write_mlcast_forecast] as a store in the archive's own
convention: its variable and units, its grid, CRS, latitude and longitude.

Pixels without radar coverage (NaN) are 0 for the model, which takes finite rain rates only; the forecast is NaN
at every lead time where the last frame had no coverage, as nothing is known there. Rain advected from such pixels
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
from typing import Any, cast

import numpy as np
import torch

from convlstm.models import ForecastingModel, ModelCard, from_pretrained, list_pretrained, read_model_card
from convlstm.units import pixel_to_rain_rate, rain_rate_to_pixel
from convlstm.utils.checks import check_choice, check_int, check_positive

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
    from convlstm.data.formats.radar_archive import importer_method

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
        horizon = check_int("--lead-times", lead_times)
    return _Model(loaded.eval(), str(model), context_frames, horizon, timestep, units)


def _needs(model: ForecastingModel, card: ModelCard | None, directory: Path) -> tuple[int, int, float | None, str]:
    if card is not None:
        check_choice(f"--model {directory}: the units its model card names", card.units, UNITS)  # what we feed
        return card.context_frames, card.lead_times, card.timestep_minutes, card.units
    if (directory.parent / "recipe.yaml").is_file() and directory.name == "model":
        from convlstm.experiment.run_dir import RunDir

        recipe = RunDir(directory.parent).recipe()
        units = recipe.task.args.get("units") or recipe.data.args.get("units") or "mm/h"
        check_choice(f"--model {directory}: the units its recipe trained it on", units, UNITS)  # what we feed
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
    from convlstm.data.formats.radar_archive import import_rain_rate

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
    init_time: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Path:
    """Forecasts from the last radar files, or from the last frames of an mlcast archive, and writes the forecast
    to ``out`` (atomically): a netCDF file (.nc) or a zarr store (.zarr).

    Args:
        files: radar files of one product, in any order (sorted by the time in their names); the last ``context_frames``
            the model needs are read, and must lie one time step apart. Or one zarr store in the mlcast convention (a
            local path or an fsspec URL), see `nowcast_store`.
        out: the netCDF file (.nc) or zarr store (.zarr) to write.
        model: the name of a shipped model, or a directory written by save_pretrained.
        importer: pysteps' importer ("fmi_pgm", "knmi_hdf5", "odim_hdf5", ...); None guesses it from the extension (see
            `IMPORTERS_BY_EXTENSION`). Radar files only.
        importer_kwargs: keyword arguments of the importer, as in a pystepsrc data_sources entry. Radar files only.
        timestep: minutes between the files (default: read from their times); also between the lead times. Radar
            files only: an archive's times give its time step.
        lead_times: frames to forecast (default: the model card's, or the model's default horizon).
        init_time: an archive only: forecast from the frames ending at this time (ISO, e.g. "2023-06-01T12:00";
            default: the archive's last frames).
        storage_options: an archive at a URL only: options of its fsspec filesystem.

    Returns:
        The path written. Radar files give ``precip_intensity`` (mm h-1, standard name
        ``lwe_precipitation_rate``) on (time, y, x), time the valid times with ``lead_time`` and
        ``forecast_reference_time`` (the last file's time), x and y the pixel centres in the projection's unit,
        ``lat`` and ``lon`` on (y, x), the grid mapping with ``crs_wkt``, and global attributes naming the model and
        the input files (see [`write_forecast_netcdf`][convlstm.data.write_forecast_netcdf]).
    """
    if len(files) == 1 and _is_store(files[0]):
        given = {"--importer": importer, "--importer-kwargs": importer_kwargs, "--timestep": timestep}
        wrong = [name for name, value in given.items() if value is not None]
        if wrong:
            raise ValueError(f"{', '.join(wrong)}: apply to radar files, not to the mlcast store {files[0]}")
        return nowcast_store(
            files[0], out, model=model, lead_times=lead_times, init_time=init_time, storage_options=storage_options
        )
    for name, value in (("--init-time", init_time), ("--storage-options", storage_options)):
        if value is not None:
            raise ValueError(f"{name} applies to an mlcast store (one zarr store as FILES), not to radar files")
    paths = [Path(file) for file in files]
    if not paths:
        raise ValueError("FILES: expected the radar files to forecast from, got none")
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"FILES: {path} not found")
    if timestep is not None:  # None: from the files' times
        check_positive("--timestep", timestep)  # minutes
    _check_out(out)
    importer, kwargs = choose_importer(paths, importer, importer_kwargs)
    chosen = load_nowcast_model(model, lead_times=lead_times)
    timed = timed_files(paths)
    if len(timed) < chosen.context_frames:
        raise ValueError(
            f"FILES: model {chosen.name} reads the last {chosen.context_frames} frames, got {len(timed)} file(s)"
        )
    frames = read_radar_files(timed[-chosen.context_frames :], importer, kwargs)
    step = _timestep([frame.time for frame in frames], timestep, chosen)
    _check_series(frames, step)
    last = frames[-1]
    context = np.stack([np.nan_to_num(frame.rain_rate, nan=0.0) for frame in frames])  # (T, H, W) mm/h
    values = _forecast(chosen, context, covered=~np.isnan(last.rain_rate))
    return _write(Path(out), values, frames, chosen, step, importer)


def nowcast_store(
    store: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    model: str | os.PathLike[str] = DEFAULT_MODEL,
    lead_times: int | None = None,
    init_time: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Path:
    """Forecasts from the last frames of a radar archive in the mlcast convention and writes the forecast as a
    store in the same convention (``out`` ending in .zarr; .nc writes the same as netCDF).

    The archive is read by [`MlcastSequences`][convlstm.data.MlcastSequences] (its rain variable found by its
    ``standard_name`` and read in mm/h): the model's ``context_frames`` consecutive frames, the last ones of the archive
    or those ending at ``init_time``, never across a missing time or a change of time step. The forecast is written by
    [`write_mlcast_forecast`][convlstm.data.write_mlcast_forecast]: the archive's variable in its units,
    on its grid with its CRS, latitude and longitude, at the archive's time step.

    Raises:
        ValueError: no run of ``context_frames`` consecutive frames (ending at ``init_time``), a last frame without
            any coverage, or a time step other than the model card's.
    """
    import pandas as pd

    from convlstm import __version__
    from convlstm.data.formats.mlcast import MlcastFrames, MlcastSequences
    from convlstm.data.formats.mlcast_forecast import write_mlcast_forecast

    _check_out(out)
    chosen = load_nowcast_model(model, lead_times=lead_times)
    where = os.fspath(store)
    end, splits = None, None
    if init_time is not None:
        try:
            end = np.datetime64(pd.Timestamp(init_time).tz_localize(None), "ns")
        except (TypeError, ValueError) as err:
            raise ValueError(f"--init-time must be an ISO time such as 2023-06-01T12:00, got {init_time!r}") from err
        splits = {"nowcast": [None, end + np.timedelta64(1, "ns")]}
    try:
        data = MlcastSequences(
            store,
            "all" if splits is None else "nowcast",
            context_frames=chosen.context_frames,
            target_frames=0,
            splits=splits,
            scan_empty_frames=False,  # an archive may hold decades: only the frames forecast from are read
            storage_options=storage_options,
        )
    except ValueError as err:
        raise ValueError(f"FILES: {err}") from None
    index = len(data) - 1  # windows are in time order: the last one ends last
    times = data.window_times(index)
    if end is not None and times[-1] != end:
        raise ValueError(
            f"--init-time {init_time}: {where} has no {chosen.context_frames} consecutive frames ending then; the "
            f"last ones before it end at {np.datetime_as_string(times[-1], unit='m')}"
        )
    item = data[index]
    covered = item["context_mask"][-1, 0].numpy() > 0
    if not covered.any():
        raise ValueError(
            f"FILES: the frame of {np.datetime_as_string(times[-1], unit='m')} in {where} is NaN everywhere (no radar "
            "data): pass --init-time an earlier time"
        )
    recording, start = data.locate(index)
    frames = cast(MlcastFrames, recording.frames)
    frame_step = frames.steps[recording.start + start + chosen.context_frames - 1]
    minutes = float(frame_step / np.timedelta64(1, "s")) / 60
    step = _timestep([], minutes, chosen, where=f"FILES {where}", apart="its frames")
    values = _forecast(chosen, item["context"][:, 0].numpy(), covered=covered)
    attrs = {
        "title": f"rain nowcast by {chosen.name} of {data.conversion.variable} ({data.conversion.standard_name})",
        "source": f"convlstm {__version__} nowcast, model {chosen.name} ({chosen.model.family})",
        "model": chosen.name,
        "input_store": where,
        "history": f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} convlstm nowcast from {chosen.context_frames} frames "
        f"of {where} ending {np.datetime_as_string(times[-1], unit='s')}",
        "comment": "NaN where the last input frame had no radar coverage",
    }
    written = write_mlcast_forecast(
        out,
        store,
        values,
        init_time=times[-1],
        timestep=np.timedelta64(int(step.total_seconds()), "s"),
        variable=data.conversion.variable,
        storage_options=storage_options,
        attrs=attrs,
    )
    logger.debug("nowcast %s from %s ending %s -> %s", values.shape, where, times[-1], written)
    return written


def _is_store(path: str | os.PathLike[str]) -> bool:
    """A zarr store: an fsspec URL, or a local folder named .zarr or holding zarr metadata."""
    from convlstm.data.formats.xarray_source import is_url

    if is_url(path):
        return True
    local = Path(path)
    return local.is_dir() and (local.suffix == ".zarr" or any((local / m).exists() for m in ("zarr.json", ".zgroup")))


def _check_out(out: str | os.PathLike[str]) -> None:
    from convlstm.data.formats.forecast_netcdf import NETCDF_SUFFIXES

    if Path(out).suffix.lower() not in (*NETCDF_SUFFIXES, ".zarr"):
        raise ValueError(f"--out must be a netCDF file (.nc) or a zarr store (.zarr), got {out}")


def _forecast(chosen: _Model, context: np.ndarray, *, covered: np.ndarray) -> np.ndarray:
    """The model's forecast (K, H, W) in mm/h of the context (T, H, W) in mm/h (finite), NaN where ``covered``
    (H, W) is False (no coverage in the last frame)."""
    if chosen.units == "pixel":
        context = rain_rate_to_pixel(context, "hko7")
    frames = torch.from_numpy(np.ascontiguousarray(context, dtype=np.float32))[None, :, None]  # (1, T, 1, H, W)
    with torch.no_grad():
        forecast = chosen.model(frames, horizon=chosen.lead_times)[0, :, 0]
    values = forecast.numpy().astype(np.float32)  # (K, H, W) in the model's units
    if chosen.units == "pixel":
        values = pixel_to_rain_rate(values, "hko7").astype(np.float32)  # mm/h
    values[:, ~covered] = np.nan
    return values


def _timestep(
    times: Sequence[datetime], minutes: float | None, chosen: _Model, *, where: str = "FILES", apart: str = "the files"
) -> timedelta:
    if minutes is not None:
        step = timedelta(minutes=float(minutes))
    elif len(times) > 1:  # the shortest: a gap is then a pair further apart, named as such
        step = min(later - earlier for earlier, later in itertools.pairwise(times))
    elif chosen.timestep_minutes is not None:
        step = timedelta(minutes=chosen.timestep_minutes)
    else:
        raise ValueError("--timestep: one file gives no time step; pass it in minutes")
    if chosen.timestep_minutes is not None and step != timedelta(minutes=chosen.timestep_minutes):
        raise ValueError(
            f"{where}: {chosen.name} forecasts {chosen.timestep_minutes:g}-minute steps (its model card), {apart} are "
            f"{step.total_seconds() / 60:g} minutes apart"
        )
    return step


def _write(
    out: Path, values: np.ndarray, frames: Sequence[RadarFrame], chosen: _Model, step: timedelta, importer: str
) -> Path:
    from convlstm import __version__
    from convlstm.data.formats.forecast_netcdf import write_forecast_netcdf
    from convlstm.data.formats.radar_archive import grid_coordinates

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
