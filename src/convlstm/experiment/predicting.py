"""Forecasts from a trained run: frames in a .npy file, or gridded variables in a netCDF file or zarr store."""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from convlstm.experiment.run_dir import RunDir
from convlstm.utils.atomic import atomic_path

if TYPE_CHECKING:
    import xarray as xr

logger = logging.getLogger(__name__)


@dataclass
class GridOptions:
    """How to read gridded input, as [`XarraySequences`][convlstm.data.XarraySequences] takes it; None: the recipe's
    ``data.args`` when its source is xarray, else the defaults below.

    variables: the variables, in channel order. time_dim, y_dim, x_dim: dimension names (time, lat, lon).
    engine: the xarray engine. windows: "last" forecasts from the last context_frames frames (lead times past the
    end of the input); "all" from every window whose lead times lie inside the input (hindcasts), stacked along
    an init_time dimension.
    """

    variables: list[str] | None = None
    time_dim: str | None = None
    y_dim: str | None = None
    x_dim: str | None = None
    engine: str | None = None
    windows: Literal["last", "all"] = "last"


_GRID_DEFAULTS = {"time_dim": "time", "y_dim": "lat", "x_dim": "lon"}


def is_gridded(source: Path) -> bool:
    """A netCDF file (.nc, .nc4, .netcdf) or a zarr store (.zarr, or a folder with zarr metadata)."""
    if source.is_dir():
        return source.suffix == ".zarr" or any((source / m).exists() for m in ("zarr.json", ".zgroup"))
    return source.suffix in (".nc", ".nc4", ".netcdf")


def predict_gridded(run: RunDir, source: Path, output: Path, *, horizon: int | None, grid: GridOptions) -> Path:
    """Forecasts gridded variables and writes ``output/predictions.nc``: one variable per channel with dims
    (lead_time, y, x), or (init_time, lead_time, y, x) for windows="all", on the input's y / x coordinates, with
    valid_time and init_time coordinates ([`to_dataset`][convlstm.data.WindowCoords.to_dataset])."""
    import xarray as xr

    from convlstm.data.formats.xarray_source import XarraySequences, last_window, open_lazy

    recipe = run.recipe()
    recipe_args = recipe.data.args if recipe.data.source == "xarray" else {}
    variables = grid.variables or recipe_args.get("variables")
    if not variables:
        raise ValueError(f"--input {source}: name the variables to read with --variables (channel order)")
    dims = {name: getattr(grid, name) or recipe_args.get(name) or _GRID_DEFAULTS[name] for name in _GRID_DEFAULTS}
    engine = grid.engine or recipe_args.get("engine")
    horizon = horizon or recipe.data.target_frames
    context_frames = recipe.data.context_frames
    model = run.trained_model()
    if grid.windows == "all":
        windows = XarraySequences(
            source,
            variables=variables,
            context_frames=context_frames,
            target_frames=horizon,
            split="all",
            time_dim=dims["time_dim"],
            y_dim=dims["y_dim"],
            x_dim=dims["x_dim"],
            engine=engine,
        )
        forecasts = []
        for index in range(len(windows)):
            with torch.no_grad():
                prediction = model(windows[index]["context"][None], horizon=horizon)[0]
            forecasts.append(windows.coords(index).to_dataset(prediction))
        # valid_time differs between windows and goes along init_time; lat / lon are the same in every one.
        dataset = xr.concat(forecasts, dim="init_time", coords="different", compat="equals", join="exact")
    else:
        try:
            context, coords = last_window(
                source, variables, context_frames=context_frames, horizon=horizon, engine=engine, **dims
            )
        except ValueError as err:
            raise ValueError(f"--input {err}") from None
        with torch.no_grad():
            prediction = model(context[None], horizon=horizon)[0]
        dataset = coords.to_dataset(prediction)
    with open_lazy(source, engine) as given:  # keep the variables' units and descriptions, and the grid's CRS
        for name in variables:
            dataset[name].attrs = dict(given[name].attrs)
        dataset = with_grid(dataset, given, (dims["y_dim"], dims["x_dim"]))
    output.mkdir(parents=True, exist_ok=True)
    target = output / "predictions.nc"
    with atomic_path(target) as tmp:
        dataset.to_netcdf(tmp)
    logger.info("predictions %s -> %s", dict(dataset.sizes), target)
    return output


def with_grid(dataset: "xr.Dataset", source: "xr.Dataset", spatial: tuple[str, str]) -> "xr.Dataset":
    """``dataset`` with the grid of ``source`` copied over: its coordinates on the spatial dims (2-D latitude and
    longitude of a projected grid, say) and the grid-mapping variables its variables name (CF: the CRS, with
    ``crs_wkt``), so that the forecast is placed as the input was."""
    coords = {
        name: coord.variable.load()
        for name, coord in source.coords.items()
        if coord.dims and set(coord.dims) <= set(spatial) and name not in dataset.coords
    }
    dataset = dataset.assign_coords(coords)
    mappings = {variable.attrs.get("grid_mapping") for variable in dataset.data_vars.values()}
    for mapping in sorted(str(m) for m in mappings if m is not None):
        if mapping in source.variables and mapping not in dataset.variables:
            dataset[mapping] = source[mapping].variable.load()
    return dataset


def predict(
    run_dir: Path,
    source: Path,
    output: Path,
    *,
    horizon: int | None,
    grid: GridOptions | None = None,
) -> Path:
    """Forecasts from a .npy of frames (T, C, H, W) or sequences (N, T, C, H, W) in [0, 1], or from gridded
    variables in a netCDF file or zarr store (see [`predict_gridded`][convlstm.experiment.predict_gridded])."""
    run = RunDir(run_dir)
    recipe = run.recipe()
    if not source.exists():
        raise FileNotFoundError(f"--input {source} not found")
    if is_gridded(source):
        return predict_gridded(run, source, output, horizon=horizon, grid=grid or GridOptions())
    if source.suffix != ".npy" or not source.is_file():
        raise ValueError(
            f"--input must be a .npy file of frames (T, C, H, W) or (N, T, C, H, W), a netCDF file (.nc) or a "
            f"zarr store (.zarr), got {source}"
        )
    from convlstm.report import write_comparison_gif

    try:
        array = np.load(source)  # allow_pickle=False: a file with Python objects is refused, never unpickled
        if array.dtype.kind not in "biuf":
            raise ValueError(f"expected numbers, got dtype {array.dtype}")
        frames = torch.from_numpy(array.astype(np.float32))
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"--input {source} is not a readable .npy array of frames: {err}") from None
    if frames.ndim == 4:
        frames = frames.unsqueeze(0)
    if frames.ndim != 5:
        raise ValueError(f"--input {source}: expected (T, C, H, W) or (N, T, C, H, W), got shape {tuple(frames.shape)}")
    if not torch.isfinite(frames).all():
        raise ValueError(f"--input {source}: contains NaN or infinite values")
    model = run.trained_model()
    with torch.no_grad():
        prediction = model(frames, horizon=horizon or recipe.data.target_frames)
    output.mkdir(parents=True, exist_ok=True)
    with atomic_path(output / "predictions.npy") as tmp, open(tmp, "wb") as f:
        np.save(f, prediction.numpy())
    if frames.shape[2] in (1, 3):  # frames a GIF can show: grey or RGB
        write_comparison_gif(frames[0], None, {recipe.model.name: prediction[0]}, output / "predictions.gif")
    else:
        logger.info("no predictions.gif: frames with %d channels are not images", frames.shape[2])
    logger.info("predictions %s -> %s", tuple(prediction.shape), output)
    return output
