"""What each subcommand does, on top of recipes, run directories and the library."""

import fnmatch
import functools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from convlstm.cli.building import build_datamodule, build_dataset, build_model, build_task, build_trainer
from convlstm.cli.evaluation import (
    _limited,
    evaluate_anomaly,
    evaluate_forecasters,
    evaluate_prednet,
    evaluate_segmentation,
    load_baselines,
    write_outputs,
)
from convlstm.cli.recipe import Recipe
from convlstm.cli.run_dir import RunDir
from convlstm.inference import ExportError, check_export, export_onnx, export_torch
from convlstm.models import PretrainedModel, create_model, from_pretrained
from convlstm.models import list_models as registered_models
from convlstm.models.base import CONFIG_FILE, WEIGHTS_FILE
from convlstm.tasks import load_task
from convlstm.tasks.base import read_checkpoint
from convlstm.utils.atomic import atomic_path, atomic_write_text

if TYPE_CHECKING:
    from convlstm.data.xarray_source import WindowCoords, XarrayFrames

logger = logging.getLogger(__name__)


def list_models(pattern: str) -> int:
    names = [n for n in registered_models() if fnmatch.fnmatch(n, pattern)]
    if not names:
        raise ValueError(f"no registered model matches {pattern!r}")
    width = max(len(n) for n in names)
    for name in names:
        with torch.device("meta"):  # counts parameters without allocating 570 MB for FC-LSTM-2048
            model = create_model(name)
        count = sum(p.numel() for p in model.parameters())
        print(f"{name:<{width}}  {count:>12,}  {type(model).__name__}")
    return 0


def fit(recipe: Recipe, run_dir: Path, *, resume: bool) -> Path:
    """Trains the recipe's model; saves the best checkpoint's model to <run>/model. Returns the run directory."""
    run = RunDir(run_dir)
    run.create(recipe, resume=resume)
    trainer = build_trainer(recipe, run)  # seeds everything first, so the model's initialisation is seeded
    data = build_datamodule(recipe, ("train", "val"))
    task = build_task(recipe, build_model(recipe))
    checkpoint = run.last_checkpoint() if resume else None
    if resume and checkpoint is None:
        raise FileNotFoundError(f"--resume: no last.ckpt in {run.checkpoint_dir}")
    if checkpoint is not None:
        # Lightning's own errors for a truncated or foreign file name neither the file nor the problem.
        read_checkpoint(checkpoint)
    trainer.fit(task, datamodule=data, ckpt_path=checkpoint, weights_only=True)
    if trainer.global_rank == 0:
        _save_best_model(run)
    return run.path


def _save_best_model(run: RunDir) -> None:
    best = run.best_checkpoint()
    task = load_task(best)
    if not isinstance(task.model, PretrainedModel):
        logger.warning("the model is not a registered family; %s keeps only the checkpoint", run.path)
        return
    task.model.save_pretrained(run.model_dir)
    atomic_write_text(run.path / "best_checkpoint.txt", f"{best.relative_to(run.path)}\n")
    logger.info("best checkpoint %s -> %s", best.name, run.model_dir)


def _trained_model(run: RunDir) -> torch.nn.Module:
    if (run.model_dir / "config.json").exists():
        return from_pretrained(run.model_dir).eval()
    return load_task(run.best_checkpoint()).model.eval()


def test(run_dir: Path) -> dict[str, float]:
    run = RunDir(run_dir)
    recipe = run.recipe()
    trainer = build_trainer(recipe, run, loggers=False, checkpoints=False, early_stopping_patience=None)
    task = load_task(run.best_checkpoint())
    (results,) = trainer.test(task, datamodule=build_datamodule(recipe, ("test",)))
    scores = {k: float(v) for k, v in results.items()}
    atomic_write_text(run.resolve("test_metrics.json"), json.dumps(scores, indent=2) + "\n")
    return scores


def evaluate(run_dir: Path, *, baselines: list[str] | None = None, num_sequences: int | None = None) -> Path:
    run = RunDir(run_dir)
    recipe = run.recipe()
    model = _trained_model(run)
    dataset = _limited(build_dataset(recipe, "test"), num_sequences or recipe.evaluate.num_sequences)
    names = recipe.evaluate.baselines if baselines is None else baselines
    samples: list[dict[str, Any]] = []
    if recipe.task.kind == "segmentation":
        results = evaluate_segmentation(model, dataset, recipe, num_classes=int(recipe.task.args["num_classes"]))
    elif recipe.task.kind == "prednet":
        results = evaluate_prednet(model, dataset, recipe)
    elif recipe.task.kind == "anomaly":
        results = evaluate_anomaly({recipe.model.name: model, **load_baselines(names, model)}, dataset, recipe)
    else:
        methods = {recipe.model.name: model, **load_baselines(names, model)}
        results, samples = evaluate_forecasters(methods, dataset, recipe, keep=recipe.evaluate.animations)
    return write_outputs(run, recipe, results, samples)


@dataclass
class GridOptions:
    """How to read gridded input, as :class:`~convlstm.data.XarraySequences` takes it; None: the recipe's
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
    valid_time and init_time coordinates (:meth:`~convlstm.data.xarray_source.WindowCoords.to_dataset`)."""
    import xarray as xr

    from convlstm.data.xarray_source import XarraySequences, open_lazy

    recipe = run.recipe()
    recipe_args = recipe.data.args if recipe.data.source == "xarray" else {}
    variables = grid.variables or recipe_args.get("variables")
    if not variables:
        raise ValueError(f"--input {source}: name the variables to read with --variables (channel order)")
    dims = {name: getattr(grid, name) or recipe_args.get(name) or _GRID_DEFAULTS[name] for name in _GRID_DEFAULTS}
    engine = grid.engine or recipe_args.get("engine")
    horizon = horizon or recipe.data.target_frames
    context_frames = recipe.data.context_frames
    model = _trained_model(run)
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
        context, coords = _last_window(source, variables, dims, engine, context_frames, horizon)
        with torch.no_grad():
            prediction = model(context[None], horizon=horizon)[0]
        dataset = coords.to_dataset(prediction)
    with open_lazy(source, engine) as given:  # keep the variables' units and descriptions
        for name in variables:
            dataset[name].attrs = dict(given[name].attrs)
    output.mkdir(parents=True, exist_ok=True)
    target = output / "predictions.nc"
    with atomic_path(target) as tmp:
        dataset.to_netcdf(tmp)
    logger.info("predictions %s -> %s", dict(dataset.sizes), target)
    return output


def _last_window(
    source: Path, variables: list[str], dims: dict[str, str], engine: str | None, context_frames: int, horizon: int
) -> tuple[torch.Tensor, "WindowCoords"]:
    """The last context_frames frames (T_in, C, H, W) and their coordinates, extended ``horizon`` steps ahead."""
    from convlstm.data.xarray_source import XarrayFrames, open_lazy

    order = (dims["time_dim"], dims["y_dim"], dims["x_dim"])
    frames = XarrayFrames(functools.partial(open_lazy, source, engine), variables, order, str(source))
    try:
        return _read_last_window(frames, source, context_frames, horizon)
    finally:
        frames.dataset.close()


def _read_last_window(
    frames: "XarrayFrames", source: Path, context_frames: int, horizon: int
) -> tuple[torch.Tensor, "WindowCoords"]:
    from convlstm.data.xarray_source import WindowCoords, regular_runs

    order = frames.dims
    time, y, x = (np.asarray(frames.dataset[d].values) for d in order)
    if len(time) < 2:
        raise ValueError(f"--input {source}: needs at least 2 time steps to tell the step, got {len(time)}")
    start, stop = regular_runs(time, source=str(source))[-1]
    if stop - start < context_frames:
        raise ValueError(
            f"--input {source}: the model reads context_frames={context_frames} consecutive frames, but the last "
            f"stretch without a gap in {order[0]} has {stop - start}"
        )
    steps = np.diff(time)
    values, counts = np.unique(steps, return_counts=True)
    step = values[counts.argmax()]
    context = torch.from_numpy(np.asarray(frames[slice(stop - context_frames, stop)], dtype=np.float32))
    if not torch.isfinite(context).all():
        raise ValueError(f"--input {source}: the last {context_frames} frames of {frames.variables} hold NaN or inf")
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


def predict(
    run_dir: Path,
    source: Path,
    output: Path,
    *,
    horizon: int | None,
    grid: GridOptions | None = None,
) -> Path:
    """Forecasts from a .npy of frames (T, C, H, W) or sequences (N, T, C, H, W) in [0, 1], or from gridded
    variables in a netCDF file or zarr store (see :func:`predict_gridded`)."""
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
    model = _trained_model(run)
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


EXPORT_FORMATS = ("safetensors", "onnx", "torch")


def export(
    run_dir: Path,
    output: Path,
    *,
    formats: Sequence[str] | None = None,
    frame_shape: Sequence[int] | None = None,
) -> list[Path]:
    """Writes the best model into ``output``: safetensors + config.json, model.onnx and model.pt2.

    ONNX and torch.export fix the context length and horizon (the recipe's context_frames and target_frames) and
    the frame size (``frame_shape`` (C, H, W), else read from the first test item of the recipe's data). Each
    export is checked against PyTorch on a random context. With ``formats`` None every format that works is
    written and the others are skipped with a warning; formats asked for by name must all work.

    Returns:
        The files written.
    """
    chosen = list(EXPORT_FORMATS if formats is None else formats)
    unknown = sorted(set(chosen) - set(EXPORT_FORMATS))
    if unknown or not chosen:
        raise ValueError(f"--format must be some of {list(EXPORT_FORMATS)}, got {chosen}")
    run = RunDir(run_dir)
    recipe = run.recipe()
    model = _trained_model(run)
    written: list[Path] = []
    if "safetensors" in chosen:
        if not isinstance(model, PretrainedModel):
            raise ValueError(f"the model of {run_dir} is not a registered family and cannot be exported")
        directory = model.save_pretrained(output)
        written += [directory / WEIGHTS_FILE, directory / CONFIG_FILE]
    traced = [f for f in chosen if f != "safetensors"]
    if traced:
        shape = tuple(frame_shape) if frame_shape is not None else _data_frame_shape(recipe)
        sizes: dict[str, Any] = {
            "context_frames": recipe.data.context_frames,
            "horizon": recipe.data.target_frames,
            "frame_shape": shape,
        }
        for kind in traced:
            try:
                written.append(_export_checked(model, kind, output, sizes))
            except (ExportError, ImportError) as err:  # ImportError: the convlstm[export] extra is missing
                if formats is not None:
                    raise
                logger.warning("skipped %s: %s", kind, err)
    logger.info("exported %s to %s", type(model).__name__, output)
    return written


def _export_checked(model: torch.nn.Module, kind: str, output: Path, sizes: dict[str, Any]) -> Path:
    """Exports in one format and checks the file against the model on a random context (atol 1e-4)."""
    if kind == "onnx":
        path = export_onnx(model, output / "model.onnx", **sizes)
    else:
        path = export_torch(model, output / "model.pt2", **sizes)
    context = torch.rand(1, sizes["context_frames"], *sizes["frame_shape"], generator=torch.Generator().manual_seed(0))
    difference = check_export(path, model, context, horizon=sizes["horizon"], atol=1e-4)
    logger.info("%s matches PyTorch to %.1e", path.name, difference)
    return path


def _data_frame_shape(recipe: Recipe) -> tuple[int, ...]:
    """(C, H, W) of the recipe's data, from the first test item."""
    hint = "pass --frame-shape C H W instead"
    try:
        dataset = build_dataset(recipe, "test")
        item = dataset[0]
    except (FileNotFoundError, ValueError, IndexError) as err:
        raise type(err)(f"reading a test item of the recipe's data for the frame size failed ({err}); {hint}") from err
    frames = item.get("context", item.get("frames")) if isinstance(item, dict) else None
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4:
        raise ValueError(f"the recipe's test items hold no (T, C, H, W) context frames; {hint}")
    return tuple(int(n) for n in frames.shape[1:])
