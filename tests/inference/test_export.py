"""Export for a fixed horizon: ONNX run by onnxruntime and torch.export programs give the model's forecasts."""

from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from convlstm.inference import ExportError, check_export, export_onnx, export_torch, load_exported
from convlstm.models import ForecastingModel, create_model

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

CONTEXT, HORIZON = 2, 2

# (builder, overrides, frame shape (C, H, W)): every registered learnable family, and persistence.
FAMILIES = {
    "encoder_forecaster": ("encoder_forecaster_tiny", {}, (1, 8, 8)),
    # Motion cues (shifted differences) and the advection head (grid_sample, moving by its random first velocities).
    "encoder_forecaster_advection": ("radar_convlstm_advection", {"hidden_channels": [4, 4]}, (1, 8, 8)),
    "fc_lstm": ("fc_lstm_tiny", {"height": 8, "width": 8}, (1, 8, 8)),
    "next_frame": ("next_frame_tiny", {}, (1, 8, 8)),
    # One pooling level and two PredNet layers: every block of the family, in a graph small enough to export fast.
    "convlstm_unet_forecaster": (
        "convlstm_unet_forecaster",
        {"base_channels": 4, "norm_groups": 2, "depth": 1},
        (1, 8, 8),
    ),
    "prednet": ("prednet_tiny", {"stack_sizes": (3, 4)}, (3, 8, 8)),
    "persistence": ("persistence", {}, (1, 8, 8)),
}


def build(family: str, seed: int = 0) -> tuple[nn.Module, tuple[int, int, int]]:
    name, overrides, shape = FAMILIES[family]
    torch.manual_seed(seed)
    return create_model(name, **overrides).eval(), shape


def contexts(shape: tuple[int, int, int], *batches: int) -> list[Tensor]:
    gen = torch.Generator().manual_seed(3)
    return [torch.rand(batch, CONTEXT, *shape, generator=gen) for batch in batches]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    """Each family exported once in both formats (the exports take most of this file's time)."""
    folder = tmp_path_factory.mktemp("exported")
    paths: dict[str, dict[str, Path]] = {}
    for family in FAMILIES:
        model, shape = build(family)
        sizes = {"context_frames": CONTEXT, "horizon": HORIZON, "frame_shape": shape}
        paths[family] = {
            "onnx": export_onnx(model, folder / f"{family}.onnx", exporter="dynamo", **sizes),
            "torch": export_torch(model, folder / f"{family}.pt2", **sizes),
        }
    assert not list(folder.glob(".*.tmp")), "temporary files must be renamed or removed"
    return paths


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", ["onnx", "torch"])
def test_exported_forecasts_equal_pytorch(exported: dict[str, dict[str, Path]], family: str, kind: str) -> None:
    model, shape = build(family)
    loaded = load_exported(exported[family][kind])
    for context in contexts(shape, 1, 3):  # the batch stays dynamic: sizes other than the traced one
        difference = check_export(loaded, model, context, horizon=HORIZON, atol=1e-4)
        assert difference <= 1e-4
    assert (loaded.context_frames, loaded.horizon, loaded.frame_shape, loaded.batch_size) == (
        CONTEXT,
        HORIZON,
        shape,
        None,
    )


def test_onnx_graph_names_its_input_and_output(exported: dict[str, dict[str, Path]]) -> None:
    onnx = pytest.importorskip("onnx")
    graph = onnx.load(str(exported["prednet"]["onnx"])).graph

    def dims(value: object) -> list[int | str]:
        return [d.dim_value or d.dim_param for d in value.type.tensor_type.shape.dim]  # type: ignore[attr-defined]

    assert [v.name for v in graph.input] == ["context"] and [v.name for v in graph.output] == ["forecast"]
    assert dims(graph.input[0])[1:] == [CONTEXT, 3, 8, 8] and isinstance(dims(graph.input[0])[0], str)
    assert dims(graph.output[0])[1:] == [HORIZON, 3, 8, 8]


def test_check_export_catches_a_different_model(exported: dict[str, dict[str, Path]]) -> None:
    other, shape = build("encoder_forecaster", seed=1)  # same family, other weights
    for kind in ("onnx", "torch"):
        loaded = load_exported(exported["encoder_forecaster"][kind])
        with pytest.raises(ExportError, match="differs from the model"):
            check_export(loaded, other, contexts(shape, 2)[0], horizon=HORIZON)
        with pytest.raises(ExportError, match="forecasts 2 frames, expected horizon=3"):
            check_export(loaded, other, contexts(shape, 2)[0], horizon=3)


def test_loaded_exports_refuse_other_context_shapes(exported: dict[str, dict[str, Path]]) -> None:
    for kind in ("onnx", "torch"):
        loaded = load_exported(exported["next_frame"][kind])
        with pytest.raises(ValueError, match=r"must have shape \(B, 2, 1, 8, 8\), got \(1, 3, 1, 8, 8\)"):
            loaded(torch.rand(1, 3, 1, 8, 8))


def test_torchscript_exporter_gives_the_same_forecasts_for_a_fixed_batch(tmp_path: Path) -> None:
    model, shape = build("next_frame")
    sizes = {"context_frames": CONTEXT, "horizon": HORIZON, "frame_shape": shape}
    path = export_onnx(model, tmp_path / "ts.onnx", exporter="torchscript", batch_size=3, **sizes)
    small, large = contexts(shape, 1, 3)
    assert check_export(path, model, large, horizon=HORIZON) <= 1e-4
    with pytest.raises(ValueError, match="exported for batches of 3"):
        load_exported(path)(small)
    program = export_torch(model, tmp_path / "fixed.pt2", batch_size=3, **sizes)
    assert load_exported(program).batch_size == 3
    assert check_export(program, model, large, horizon=HORIZON) <= 1e-4


@pytest.mark.parametrize("name", ["optical_flow", "steps", "extrapolation_nowcast"])
def test_what_runs_pysteps_cannot_be_exported(tmp_path: Path, name: str) -> None:
    model = create_model(name)
    sizes = {"context_frames": 3, "horizon": 2, "frame_shape": (1, 16, 16)}
    with pytest.raises(ExportError, match=f"{name} cannot be exported: it runs pysteps on numpy"):
        export_onnx(model, tmp_path / "flow.onnx", **sizes)
    with pytest.raises(ExportError, match="pysteps on numpy"):
        export_torch(model, tmp_path / "flow.pt2", **sizes)
    assert not list(tmp_path.iterdir())


class DataDependent(ForecastingModel):
    """Chooses its forecast by a value of the input: a branch that tracing cannot keep."""

    def forward(self, context: Tensor, horizon: int | None = None, *args: object) -> Tensor:
        last = context[:, -1:].repeat(1, horizon or 1, 1, 1, 1)
        return last if context.mean().item() > 0.5 else 1 - last


def test_untraceable_models_raise_export_error(tmp_path: Path) -> None:
    sizes = {"context_frames": 2, "horizon": 2, "frame_shape": (1, 4, 4)}
    with pytest.raises(ExportError, match=r"torch\.export could not trace DataDependent"):
        export_torch(DataDependent(), tmp_path / "branch.pt2", **sizes)
    with pytest.raises(ExportError, match="could not be exported to ONNX: dynamo exporter"):
        export_onnx(DataDependent(), tmp_path / "branch.onnx", exporter="dynamo", **sizes)
    assert not list(tmp_path.iterdir()), "a failed export leaves no file behind"


def test_export_refuses_bad_arguments_and_keeps_the_training_mode(tmp_path: Path) -> None:
    model, shape = build("persistence")
    with pytest.raises(ValueError, match=r"frame_shape must be three ints \(C, H, W\)"):
        export_torch(model, tmp_path / "p.pt2", context_frames=2, horizon=2, frame_shape=(8, 8))
    with pytest.raises(ValueError, match="horizon must be an int >= 1, got 0"):
        export_torch(model, tmp_path / "p.pt2", context_frames=2, horizon=0, frame_shape=shape)
    with pytest.raises(ValueError, match="exporter must be one of"):
        export_onnx(model, tmp_path / "p.onnx", context_frames=2, horizon=2, frame_shape=shape, exporter="tf")  # type: ignore[arg-type]
    with pytest.raises(ExportError, match="only forecasters"):
        export_torch(create_model("convlstm_unet"), tmp_path / "u.pt2", context_frames=2, horizon=2, frame_shape=shape)
    predictor, _ = build("next_frame")  # two stride-2 stages: a 6x6 frame does not fit, and the model says so
    with pytest.raises(ValueError, match=r"divisible by patch_size \* 2\*\*len\(encoder_channels\) = 4"):
        export_torch(predictor, tmp_path / "n.pt2", context_frames=2, horizon=2, frame_shape=(1, 6, 6))
    predictor.train()
    export_torch(predictor, tmp_path / "n.pt2", context_frames=2, horizon=2, frame_shape=(1, 8, 8))
    assert predictor.training


def test_load_exported_refuses_unknown_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        load_exported(tmp_path / "missing.onnx")
    (tmp_path / "model.bin").write_bytes(b"")
    with pytest.raises(ValueError, match=r"must end in .onnx or .pt2"):
        load_exported(tmp_path / "model.bin")
