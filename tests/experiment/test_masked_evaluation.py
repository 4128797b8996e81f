"""`convlstm evaluate`'s scoring on radar composites with gaps in coverage: pysteps reads small FMI files whose
middle rows have no radar, the radar_archive source gives each patch its mask and importance weight, and every
score of evaluate_forecasters ignores what a method predicts where there is no radar and weighs patches by their
weights."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from convlstm.experiment.building import build_dataset
from convlstm.experiment.recipe import Recipe, recipe_from_dict
from convlstm.experiment.scoring import evaluate_forecasters
from convlstm.models import create_model
from tests.data.formats.test_radar_archive import FMI, FMI_SHAPE, STEP, T0, event, write_fmi

FRAMES = 7  # one event per split; 2 context + 2 target frames: 4 windows
HIDDEN_ROWS = slice(8, 16)  # no radar there: every 16-row patch of the 24 rows crosses it


def _codes(t: int) -> np.ndarray:
    """FMI uint8 codes (dBZ = (code - 64) / 2): two drifting cells of 30 to 45 dBZ, -32 dBZ elsewhere, and rows
    8 to 15 without coverage (255)."""
    codes = np.zeros(FMI_SHAPE, dtype=np.uint8)
    rng = np.random.default_rng(t)
    codes[2:7, 1 + t : 6 + t] = rng.integers(124, 154, size=(5, 5))
    codes[17:22, 20 - t : 27 - t] = rng.integers(124, 154, size=(5, 7))
    codes[HIDDEN_ROWS] = 255
    return codes


def _recipe(folder: Path, units: str = "pixel") -> Recipe:
    starts = [T0 + timedelta(days=d) for d in range(3)]
    for start in starts:
        for k in range(FRAMES):
            write_fmi(folder, start + k * STEP, _codes(k))
    args: dict[str, Any] = {
        "root": str(folder),
        "archives": {"fmi": FMI},
        "events": {f"fmi_{k}": event("fmi", start, FRAMES) for k, start in enumerate(starts)},
        "splits": {"train": ["fmi_0"], "val": ["fmi_1"], "test": ["fmi_2"]},
        "units": units,
        "patch_size": 16,
    }
    return recipe_from_dict(
        {
            "name": "masked",
            "data": {"source": "radar_archive", "args": args, "context_frames": 2, "target_frames": 2, "batch_size": 3},
            "model": {"name": "persistence"},
            "task": {"kind": "forecasting", "args": {"units": units}},
            "evaluate": {"baselines": [], "rain_thresholds": [0.5, 2.0], "extra_metrics": ["b_mse", "b_mae"]},
        }
    )


class GarbageWhereHidden(nn.Module):
    """Another forecaster's predictions with noise written wherever the batch has no radar (it knows the masks of
    the batches to come, in order)."""

    def __init__(self, model: nn.Module, masks: list[Tensor]) -> None:
        super().__init__()
        self.model, self.masks = model, iter(masks)
        self.generator = torch.Generator().manual_seed(0)

    def forward(self, context: Tensor, horizon: int) -> Tensor:
        pred = self.model(context, horizon=horizon)
        hidden = next(self.masks).expand_as(pred) < 0.5
        noise = 3 * torch.rand(pred.shape, generator=self.generator) - 1  # much of it clamped to 0 or 1
        return torch.where(hidden, noise, pred)


def _batches(dataset: Any, recipe: Recipe) -> Iterator[dict[str, Tensor]]:
    return iter(DataLoader(dataset, batch_size=recipe.data.batch_size))


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # pysteps' ROC of a lead time without an event
def test_scores_ignore_predictions_where_there_is_no_radar_and_weigh_patches(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path)
    dataset = build_dataset(recipe, "test")
    batches = list(_batches(dataset, recipe))
    masks = [batch["mask"] for batch in batches]
    weights = torch.cat([batch["weight"] for batch in batches])
    assert all(bool((m == 0).any()) and bool((m == 1).any()) for m in masks)  # every patch is partly covered
    assert len(weights) == FRAMES - 3 and len(set(weights.tolist())) > 1  # patches of unequal weight

    persistence = create_model("persistence", default_horizon=2).eval()
    methods = {"persistence": persistence, "garbage": GarbageWhereHidden(persistence, masks)}
    results, _ = evaluate_forecasters(methods, dataset, recipe, keep=0)
    for key in ("mse_per_frame", "ssim", "csi@0.5", "b_mse", "fss@2_8px", "brier@0.5", "roc_auc@2"):
        assert key in results["persistence"]
    # Whatever a method predicts where there is no radar changes none of its scores.
    assert results["garbage"] == results["persistence"]

    # The model's scores are the patches' weighted means over covered pixels.
    squared, counted = torch.zeros(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    for batch in batches:
        pred = batch["context"][:, -1:].expand_as(batch["target"]).double()
        valid = batch["mask"].expand_as(pred) > 0.5
        per_frame = ((pred - batch["target"].double()) ** 2 * valid).sum((2, 3, 4)) / valid.sum((2, 3, 4))
        squared += (batch["weight"].double()[:, None] * per_frame).sum(0)
        counted += batch["weight"].double().sum()
    expected = (squared / counted).tolist()
    assert results["persistence"]["mse_per_pixel_by_lead_time"] == pytest.approx(expected, rel=1e-5)


def test_rain_rates_are_scored_as_they_are(tmp_path: Path) -> None:
    """Forecasts in mm/h are kept at 0 and above, not squeezed into the [0, 1] of radar pixels."""
    recipe = _recipe(tmp_path, units="mm/h")
    dataset = build_dataset(recipe, "test")
    batches = list(_batches(dataset, recipe))
    assert max(float(b["target"].max()) for b in batches) > 5  # cells of 30 to 45 dBZ: several mm/h
    persistence = create_model("persistence", default_horizon=2).eval()
    results, _ = evaluate_forecasters({"persistence": persistence}, dataset, recipe, keep=0)
    absolute, counted = torch.zeros(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    for batch in batches:
        pred = batch["context"][:, -1:].expand_as(batch["target"]).double()
        valid = batch["mask"].expand_as(pred) > 0.5
        per_frame = ((pred - batch["target"].double()).abs() * valid).sum((2, 3, 4)) / valid.sum((2, 3, 4))
        absolute += (batch["weight"].double()[:, None] * per_frame).sum(0)
        counted += batch["weight"].double().sum()
    expected = (absolute / counted).tolist()
    assert results["persistence"]["mae_per_pixel_by_lead_time"] == pytest.approx(expected, rel=1e-5)
