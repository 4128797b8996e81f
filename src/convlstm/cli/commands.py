"""What each subcommand does, on top of recipes, run directories and the library."""

import fnmatch
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from convlstm.cli.building import build_datamodule, build_dataset, build_model, build_task, build_trainer
from convlstm.cli.evaluation import (
    _limited,
    evaluate_anomaly,
    evaluate_forecasters,
    evaluate_segmentation,
    load_baselines,
    write_outputs,
)
from convlstm.cli.recipe import Recipe
from convlstm.cli.run_dir import RunDir
from convlstm.models import PretrainedModel, create_model, from_pretrained
from convlstm.models import list_models as registered_models
from convlstm.tasks import load_task
from convlstm.utils.atomic import atomic_path, atomic_write_text

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
    elif recipe.task.kind == "anomaly":
        results = evaluate_anomaly({recipe.model.name: model, **load_baselines(names, model)}, dataset, recipe)
    else:
        methods = {recipe.model.name: model, **load_baselines(names, model)}
        results, samples = evaluate_forecasters(methods, dataset, recipe, keep=recipe.evaluate.animations)
    return write_outputs(run, recipe, results, samples)


def predict(run_dir: Path, source: Path, output: Path, *, horizon: int | None) -> Path:
    """Forecasts from a .npy of frames (T, C, H, W) or sequences (N, T, C, H, W) in [0, 1]."""
    from convlstm.report import write_comparison_gif

    run = RunDir(run_dir)
    recipe = run.recipe()
    if not source.is_file():
        raise FileNotFoundError(f"--input {source} not found")
    if source.suffix != ".npy":
        raise ValueError(f"--input must be a .npy file of frames (T, C, H, W) or (N, T, C, H, W), got {source}")
    frames = torch.from_numpy(np.load(source).astype(np.float32))
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
    write_comparison_gif(frames[0], None, {recipe.model.name: prediction[0]}, output / "predictions.gif")
    logger.info("predictions %s -> %s", tuple(prediction.shape), output)
    return output


def export(run_dir: Path, output: Path) -> Path:
    """Copies the best model as safetensors + config.json into ``output``."""
    model = _trained_model(RunDir(run_dir))
    if not isinstance(model, PretrainedModel):
        raise ValueError(f"the model of {run_dir} is not a registered family and cannot be exported")
    model.save_pretrained(output)
    logger.info("exported %s to %s", type(model).__name__, output)
    return output
