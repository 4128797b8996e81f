"""Exports a trained run's model: safetensors + config.json, ONNX and torch.export, each checked against PyTorch."""

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from convlstm.experiment.building import build_dataset
from convlstm.experiment.recipe import Recipe
from convlstm.experiment.run_dir import RunDir
from convlstm.inference import ExportError, check_export, export_onnx, export_torch
from convlstm.models import CONFIG_FILE, WEIGHTS_FILE, PretrainedModel

logger = logging.getLogger(__name__)

EXPORT_FORMATS = ("safetensors", "onnx", "torch")
"""The formats `convlstm export` writes: weights with their config, ONNX, and a torch.export program."""


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
    model = run.trained_model()
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
