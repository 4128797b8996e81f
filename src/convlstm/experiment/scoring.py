"""Scoring: a trained model and chosen baselines side by side on the test split, and the report of it."""

import json
import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from convlstm.experiment.recipe import Recipe
from convlstm.experiment.run_dir import RunDir
from convlstm.metrics import ConfusionMatrix, ForecastScores, anomaly_aurocs
from convlstm.metrics.field_scores import DeterministicFieldScores, field_scores_available
from convlstm.models import create_model
from convlstm.tasks import next_frame_psnr, regularity_from_psnr
from convlstm.tasks.losses import rain_rate_of
from convlstm.utils.atomic import atomic_write_text

logger = logging.getLogger(__name__)

Results = dict[str, dict[str, Any]]


def first_sequences(dataset: Dataset[Any], count: int | None) -> Dataset[Any]:
    """The first ``count`` items of ``dataset`` (all of them for None or a count past its end)."""
    size = len(dataset)  # type: ignore[arg-type]
    return dataset if count is None or count >= size else Subset(dataset, range(count))


def _plain(value: Any) -> Any:
    """JSON-ready: tensors to floats or lists; NaN and infinities (a perfect PSNR) to None, which JSON lacks."""
    if isinstance(value, Tensor):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _valid_pixels(mask: Tensor | None) -> Tensor | None:
    """A batch's "mask" (1 / True where a pixel counts) as the bool mask the scores take."""
    if mask is None or mask.dtype == torch.bool:
        return mask
    return mask > 0.5


@torch.no_grad()
def evaluate_forecasters(
    methods: Mapping[str, nn.Module], dataset: Dataset[Any], recipe: Recipe, *, keep: int
) -> tuple[Results, list[dict[str, Tensor]]]:
    """Scores each forecaster on the same test sequences; returns per-method scores and ``keep`` samples.

    Items may carry "mask" (1 where a pixel counts, e.g. radar coverage; broadcastable to the target) and
    "weight" (a patch's importance weight): every score leaves the masked pixels out, whatever a method predicts
    there, and averages over sequences with the weights (see [`convlstm.metrics`][convlstm.metrics]).
    """
    rain = recipe.evaluate.rain_thresholds
    units = recipe.task.args.get("units", "pixel")
    extra_metrics = tuple(recipe.evaluate.extra_metrics)
    scores = {name: ForecastScores(metrics=None, thresholds=rain, default_extra=extra_metrics) for name in methods}
    field = {}  # FSS, Brier and ROC area of each method's rain forecast (pysteps; see metrics.field_scores)
    if rain is not None and field_scores_available():
        horizon = recipe.data.target_frames
        field = {name: DeterministicFieldScores(thresholds=rain, lead_times=horizon) for name in methods}
    samples: list[dict[str, Tensor]] = []
    loader = DataLoader(dataset, batch_size=recipe.data.eval_batch_size or recipe.data.batch_size)
    for batch in loader:
        context, target = batch["context"], batch["target"]
        valid, weight = _valid_pixels(batch.get("mask")), batch.get("weight")
        horizon = target.shape[1]
        predictions = {name: model(context, horizon=horizon) for name, model in methods.items()}
        if recipe.evaluate.clip:
            predictions = {name: _physical(pred, units) for name, pred in predictions.items()}
        for name, pred in predictions.items():
            extra = {}
            if rain is not None:
                extra = {"rain_rate": rain_rate_of(target, units), "rain_pred": rain_rate_of(pred, units)}
                if name in field and pred.shape[2] == 1:
                    field[name].update(extra["rain_pred"], extra["rain_rate"], mask=valid, weight=weight)
            scores[name].update(pred, target, mask=valid, weight=weight, **extra)
        for i in range(min(keep - len(samples), context.shape[0])):
            sample = {"context": context[i], "truth": target[i]}
            sample.update({name: pred[i] for name, pred in predictions.items()})
            samples.append(sample)
    results: Results = {}
    for name, acc in scores.items():
        merged: dict[str, Any] = {}
        for part in (acc.metrics, acc.table):
            if part is not None:
                merged.update({k: _plain(v) for k, v in part.compute().items()})
        if name in field:
            merged.update({k: _plain(v) for k, v in field[name].compute().items()})
        results[name] = merged
    return results, samples


def _physical(prediction: Tensor, units: str) -> Tensor:
    """A forecast within what its frames can hold: radar pixels in [0, 1], rain rates (mm/h) at least 0."""
    return prediction.clamp(min=0) if units == "mm/h" else prediction.clamp(0, 1)


@torch.no_grad()
def evaluate_prednet(model: nn.Module, dataset: Dataset[Any], recipe: Recipe) -> Results:
    """PredNet's predictions against copy-last-frame: next-frame scores on frames 1..T-1 of each sequence or,
    for a recipe with ``extrap_start_time`` k, scores of frames k..T-1 predicted from frames 0..k-1 alone (the
    baseline repeats frame k-1)."""
    start = recipe.task.args.get("extrap_start_time")
    scores = {recipe.model.name: ForecastScores(metrics=None), "copy_last_frame": ForecastScores(metrics=None)}
    for batch in DataLoader(dataset, batch_size=recipe.data.eval_batch_size or recipe.data.batch_size):
        frames = torch.cat([batch["context"], batch["target"]], dim=1)  # (B, T, C, H, W)
        predicted, _ = model.run(frames, output_mode="prediction", extrap_start_time=start)  # type: ignore[operator]
        first = 1 if start is None else start
        truth = frames[:, first:]
        copied = frames[:, first - 1 : -1] if start is None else frames[:, first - 1 : first].expand_as(truth)
        scores[recipe.model.name].update(predicted[:, first:].clamp(0, 1), truth)
        scores["copy_last_frame"].update(copied, truth)
    return {
        name: {k: _plain(v) for k, v in acc.metrics.compute().items()}
        for name, acc in scores.items()
        if acc.metrics is not None
    }


@torch.no_grad()
def evaluate_segmentation(model: nn.Module, dataset: Dataset[Any], recipe: Recipe, *, num_classes: int) -> Results:
    """Per-class and mean IoU / Dice of the model's per-frame labels over the test sequences (confusion matrix)."""
    confusion = ConfusionMatrix(num_classes=num_classes, lead_times=recipe.data.context_frames)
    for batch in DataLoader(dataset, batch_size=recipe.data.eval_batch_size or recipe.data.batch_size):
        output = model(batch["context"])
        logits = output[0] if isinstance(output, tuple) else output
        confusion.update(logits, batch["labels"])
    return {recipe.model.name: {k: _plain(v) for k, v in confusion.compute().items()}}


@torch.no_grad()
def evaluate_anomaly(methods: Mapping[str, nn.Module], dataset: Dataset[Any], recipe: Recipe) -> Results:
    """Frame-level ROC-AUC of the prediction-error regularity score (Liu et al. 2018), and where it comes from.

    ``auroc`` uses the dataset's labels (every frame from the onset that differs from the normal continuation).
    When items carry ``kind`` and ``onset`` ([`AnomalySequences`][convlstm.data.AnomalySequences]), also:
    ``auroc_<kind>`` on the sequences of one kind with the normal ones, and ``auroc_onset`` / ``auroc_onset_<kind>``,
    onset frames
    against the frames of normal sequences: how well the score finds the moment the motion breaks its law. After
    a teleport or a reversal the object moves normally again, so its later frames are labelled abnormal but are
    as predictable as normal ones: ``auroc_cumulative`` (and ``auroc_cumulative_<kind>``) score every frame by the
    worst prediction of its sequence so far ([`cumulative_regularity`][convlstm.metrics.cumulative_regularity]), which
    such labels ask for.
    """
    context = int(recipe.task.args.get("anomaly_context_frames", 4))
    results: Results = {}
    for name, model in methods.items():
        psnr, labels, kinds, onsets = [], [], [], []
        for batch in DataLoader(dataset, batch_size=recipe.data.eval_batch_size or recipe.data.batch_size):
            frames = torch.cat([batch["context"], batch["target"]], dim=1)
            psnr.append(next_frame_psnr(model, frames, context_frames=context))
            labels.append(batch["labels"])
            kinds += list(batch.get("kind", ["unknown"] * frames.shape[0]))
            onsets.append(batch.get("onset", torch.full((frames.shape[0],), -1)))
        values, all_labels, all_onsets = torch.cat(psnr), torch.cat(labels), torch.cat(onsets)
        per_frame, cumulative = (
            regularity_from_psnr(values, context_frames=context, first_frames="exclude", score=score)
            for score in ("regularity", "cumulative")
        )
        results[name] = anomaly_aurocs(per_frame, all_labels, kinds, all_onsets)
        kept = anomaly_aurocs(cumulative, all_labels, kinds, all_onsets, onsets_too=False)
        results[name].update({key.replace("auroc", "auroc_cumulative", 1): value for key, value in kept.items()})
    return results


#: What `convlstm evaluate` calls for a task kind (the ``evaluator`` of its
#: [`TaskKindSpec`][convlstm.experiment.TaskKindSpec]):
#: (the trained model, the baselines by name, the test sequences, the recipe) -> (scores per method, samples to
#: animate).
Evaluator = Callable[
    [nn.Module, Mapping[str, nn.Module], Dataset[Any], Recipe], tuple[Results, list[dict[str, Tensor]]]
]


def score_forecasts(
    model: nn.Module, baselines: Mapping[str, nn.Module], dataset: Dataset[Any], recipe: Recipe
) -> tuple[Results, list[dict[str, Tensor]]]:
    """[`evaluate_forecasters`][convlstm.experiment.evaluate_forecasters] of the model and the baselines, keeping
    ``evaluate.animations`` samples."""
    methods = {recipe.model.name: model, **baselines}
    return evaluate_forecasters(methods, dataset, recipe, keep=recipe.evaluate.animations)


def score_anomalies(
    model: nn.Module, baselines: Mapping[str, nn.Module], dataset: Dataset[Any], recipe: Recipe
) -> tuple[Results, list[dict[str, Tensor]]]:
    """[`evaluate_anomaly`][convlstm.experiment.evaluate_anomaly] of the model and the baselines (no animations)."""
    return evaluate_anomaly({recipe.model.name: model, **baselines}, dataset, recipe), []


def score_segmentation(
    model: nn.Module, baselines: Mapping[str, nn.Module], dataset: Dataset[Any], recipe: Recipe
) -> tuple[Results, list[dict[str, Tensor]]]:
    """[`evaluate_segmentation`][convlstm.experiment.evaluate_segmentation] of the model alone, over the recipe's
    ``task.args.num_classes``."""
    _without_baselines(recipe, baselines)
    return evaluate_segmentation(model, dataset, recipe, num_classes=int(recipe.task.args["num_classes"])), []


def score_prednet(
    model: nn.Module, baselines: Mapping[str, nn.Module], dataset: Dataset[Any], recipe: Recipe
) -> tuple[Results, list[dict[str, Tensor]]]:
    """[`evaluate_prednet`][convlstm.experiment.evaluate_prednet]: the model beside copy-last-frame, its own
    baseline."""
    _without_baselines(recipe, baselines)
    return evaluate_prednet(model, dataset, recipe), []


def _without_baselines(recipe: Recipe, baselines: Mapping[str, nn.Module]) -> None:
    """Says so when baselines were named for a kind that scores without them (runs made before a kind's default
    baselines existed name ``persistence`` in their recipe)."""
    if baselines:
        logger.warning("task.kind %s is scored without baselines: %s left out", recipe.task.kind, sorted(baselines))


def load_baselines(names: list[str], model: nn.Module) -> dict[str, nn.Module]:
    """The registered baselines ``names``, forecasting as many frames as ``model`` does by default."""
    horizon = getattr(model, "default_horizon", 10)
    return {name: create_model(name, default_horizon=horizon).eval() for name in names}


def write_outputs(run: RunDir, recipe: Recipe, results: Results, samples: list[dict[str, Tensor]]) -> Path:
    """metrics.json, the score-vs-lead-time figure, GIF animations and report.html, all inside the run directory."""
    from convlstm.report import plot_scores_by_lead_time, write_comparison_gif, write_report

    # How long and how the model trained: its scores depend on it. Absent for a run trained before it was recorded.
    training = run.training_record()
    payload = {"run": recipe.name, "description": recipe.description, "training": training, "methods": results}
    atomic_write_text(run.resolve("metrics.json"), json.dumps(payload, indent=2, allow_nan=False) + "\n")
    figures: list[tuple[Path, str]] = []
    if any(key.endswith("_by_lead_time") for scores in results.values() for key in scores):
        path = plot_scores_by_lead_time(results, run.resolve("scores_by_lead_time.png"))
        figures.append((path, "every score against lead time, model and baselines"))
    animations = []
    cmap = "rain" if recipe.data.source == "radar" else None
    for index, sample in enumerate(samples):
        predictions = {k: v for k, v in sample.items() if k not in ("context", "truth")}
        gif = write_comparison_gif(
            sample["context"], sample["truth"], predictions, run.resolve(f"test_sequence_{index}.gif"), cmap=cmap
        )
        animations.append((gif, f"test sequence {index}: context | truth | prediction | baselines"))
    averaged = {m: {k: v for k, v in s.items() if not isinstance(v, list)} for m, s in results.items()}
    return write_report(
        run.path,
        title=f"convlstm: {recipe.name}",
        metrics=averaged,
        figures=figures,
        animations=animations,
        run_info={
            "model": recipe.model.name,
            "data": recipe.data.source,
            "frames": f"{recipe.data.context_frames} -> {recipe.data.target_frames}",
            "task": recipe.task.kind,
            **{f"training {key}".replace("_", " "): value for key, value in (training or {}).items()},
        },
        notes=recipe.description,
    )
