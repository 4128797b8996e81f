"""Every registered data source, every model family and every task kind a recipe can name, each through a recipe
and the same code as `convlstm fit` and `convlstm evaluate`: two training steps, then scores on the test split.

File sources read small files in their real formats, written by tests/data/source_files.py. The coverage checks at
the bottom fail when a source, family or task kind is added without a case here.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from convlstm.cli.main import main
from convlstm.data.sources import SOURCES
from convlstm.experiment import TASK_KINDS
from convlstm.models import family_class, list_families, model_family
from tests.data.source_files import FILE_WRITERS, GENERATOR_ARGS


def _generated(args: dict[str, Any]) -> Callable[[Path], dict[str, Any]]:
    return lambda folder: args


TINY_NEXT_FRAME = ("next_frame_tiny", {"encoder_channels": [4], "hidden_channels": [4]})


@dataclass
class Case:
    source: str
    data_args: Callable[[Path], dict[str, Any]]
    model: tuple[str, dict[str, Any]] = TINY_NEXT_FRAME
    kind: str = "forecasting"
    task_args: dict[str, Any] = field(default_factory=dict)
    frames: tuple[int, int] = (2, 2)
    baselines: list[str] = field(default_factory=lambda: ["persistence"])
    score: str = "mse_per_frame"


#: A tiny encoder-forecaster for 2 variables + 2 time channels, forecasting the change of standardised fields.
ADVECTING_TINY = {"in_channels": 4, "hidden_channels": [4], "default_horizon": 1, "head": "advection"} | {
    "output_activation": "none"
}

#: Families a recipe cannot train, and why (docs/design.md says so too).
NOT_FROM_A_RECIPE = {
    "exceedance_forecaster": "predicts a probability per rain threshold, not frames: benchmarks/"
    "nowcasting_probabilistic.py trains it with tasks.losses.exceedance_loss",
}

CASES = [
    Case(  # MIM's peepholes are per pixel: one frame size, the model's
        "moving_mnist",
        _generated(GENERATOR_ARGS["moving_mnist"]),
        model=("mim_tiny", {"height": 32, "width": 32, "hidden_channels": 4, "default_horizon": 2}),
    ),
    Case(  # OpenSTL's PredRNN protocol: scheduled sampling of the forecast's inputs
        "moving_mnist_file",
        FILE_WRITERS["moving_mnist_file"],
        model=("predrnn_tiny", {"hidden_channels": 4, "default_horizon": 2}),
        task_args={"sampling": "linear", "sampling_end_step": 2},
    ),
    Case(
        "bouncing_balls",
        _generated(GENERATOR_ARGS["bouncing_balls"]),
        model=("predrnnpp_tiny", {"hidden_channels": 4, "default_horizon": 2}),
    ),
    Case(
        "radar",
        _generated(GENERATOR_ARGS["radar"]),
        model=("fc_lstm_tiny", {"hidden_sizes": [8], "default_horizon": 2}),
        frames=(3, 2),  # optical flow reads 3 frames
        baselines=["persistence", "optical_flow", "steps"],
    ),
    Case(
        "shapes",
        _generated(GENERATOR_ARGS["shapes"]),
        model=("convlstm_unet", {"num_classes": 3, "base_channels": 4, "norm_groups": 2}),
        kind="segmentation",
        task_args={"num_classes": 3},
        frames=(4, 0),
        baselines=[],
        score="miou",
    ),
    Case("anomalies", _generated(GENERATOR_ARGS["anomalies"]), kind="anomaly", frames=(4, 2), score="auroc"),
    Case(
        "numpy",
        FILE_WRITERS["numpy"],
        model=("convlstm_unet_forecaster", {"base_channels": 4, "norm_groups": 2, "default_horizon": 2}),
        kind="tbptt",
        task_args={"chunk": 2},
    ),
    Case("hdf5", FILE_WRITERS["hdf5"], model=("trajgru_radar_small", {"default_horizon": 2})),
    Case(
        "kitti_hickle",
        FILE_WRITERS["kitti_hickle"],
        model=("prednet_tiny", {}),
        kind="prednet",
        frames=(2, 2),
        baselines=[],
    ),
    Case(  # SimVP reads its whole context at once: exactly context_frames of them
        "image_folders", FILE_WRITERS["image_folders"], model=("tau_tiny", {"context_frames": 2, "default_horizon": 2})
    ),
    Case(  # PredRNN-V2's: reverse scheduled sampling (context frames too) and the decoupling loss
        "video",
        FILE_WRITERS["video"],
        model=("predrnnv2_tiny", {"hidden_channels": 4, "default_horizon": 2}),
        task_args={"sampling": "reverse", "reverse_start_step": 0, "reverse_end_step": 2, "decouple_beta": 0.1},
    ),
    Case(  # E3D-LSTM's norm is per pixel: one frame size, the model's (16x16)
        "xarray", FILE_WRITERS["xarray"], model=("e3dlstm_tiny", {"hidden_channels": 4, "default_horizon": 2})
    ),
    Case("odim", FILE_WRITERS["odim"]),
    Case(  # FMI PGM files read by pysteps, patches drawn in favour of rain, pysteps' extrapolation corrected
        "radar_archive",
        FILE_WRITERS["radar_archive"],
        model=("extrapolation_nowcast", {"base_channels": 4, "depth": 1, "motion_frames": 2, "default_horizon": 2}),
    ),
    Case(  # an mlcast-convention zarr store, split by time ranges: Shi's encoder-forecaster
        "mlcast",
        FILE_WRITERS["mlcast"],
        model=("encoder_forecaster_tiny", {"hidden_channels": [4], "default_horizon": 2}),
    ),
    Case(  # 2 variables + 2 time channels: the field one period back, corrected by an encoder-forecaster
        "reanalysis",
        FILE_WRITERS["reanalysis"],
        model=(
            "periodic_anchor",
            {"channels": 4, "period": 2, "backbone": "encoder_forecaster_tiny"} | {"backbone_args": ADVECTING_TINY},
        ),
        frames=(3, 1),  # a context one period and one frame long; the validation split has 4 frames
    ),
]


def _recipe(case: Case, folder: Path) -> dict[str, Any]:
    context, target = case.frames
    name, model_args = case.model
    return {
        "name": case.source,
        "data": {
            "source": case.source,
            "args": case.data_args(folder),
            "context_frames": context,
            "target_frames": target,
            "batch_size": 2,
            "train_sequences": 4,
            "val_sequences": 2,
            "test_sequences": 2,
        },
        "model": {"name": name, "args": model_args},
        "task": {"kind": case.kind, "args": case.task_args},
        "trainer": {
            "max_steps": 2,
            "limit_val_batches": 1,
            "accelerator": "cpu",
            "enable_progress_bar": False,
            "early_stopping_patience": None,
            "log_every_n_steps": 1,
        },
        "evaluate": {"baselines": case.baselines, "animations": 0},
    }


@pytest.mark.parametrize("case", CASES, ids=[case.source for case in CASES])
def test_a_recipe_fits_and_evaluates(case: Case, tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(_recipe(case, tmp_path)))
    run = tmp_path / "run"
    assert main(["fit", "-c", str(recipe), "--run-dir", str(run)]) == 0
    assert (run / "model" / "config.json").is_file()
    assert main(["evaluate", "--run-dir", str(run)]) == 0
    methods = json.loads((run / "metrics.json").read_text())["methods"]
    assert set(methods) == {case.model[0], *case.baselines} | ({"copy_last_frame"} if case.kind == "prednet" else set())
    for scores in methods.values():
        assert case.score in scores
    if case.kind == "anomaly":  # `convlstm test` scores an anomaly run with AnomalyTask
        assert main(["test", "--run-dir", str(run)]) == 0
        assert "test/psnr" in json.loads((run / "test_metrics.json").read_text())


def test_every_source_family_and_task_kind_has_a_case() -> None:
    assert sorted(case.source for case in CASES) == sorted(SOURCES)
    trained = {model_family(case.model[0]) for case in CASES}
    baselines = {model_family(name) for case in CASES for name in case.baselines}
    shipped = {f for f in list_families() if family_class(f).__module__.startswith("convlstm.")}  # not tests' own
    assert trained | baselines | set(NOT_FROM_A_RECIPE) == shipped
    assert {case.kind for case in CASES} == set(TASK_KINDS)
