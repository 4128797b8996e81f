"""Checks every registered model through one interface (timm style)."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

import convlstm
from convlstm.models import (
    E3DLSTM,
    ConvLSTMUNet,
    ForecastingModel,
    ModelSummary,
    PredNet,
    family_class,
    from_pretrained,
    list_families,
    list_models,
    model_builder,
    model_family,
    model_from_config,
    model_summaries,
)
from tests.models.golden import GOLDEN_FILE, GOLDEN_MODELS, compute
from tests.models.registry_cases import HORIZON, build, example_input, frame_shape, run
from tests.tolerances import FLOAT32_REORDERED

ALL = convlstm.list_models()
# FC-LSTM-2048-2048 has 142.7M parameters: building it twice per test would dominate the suite. MIM's per-pixel
# peepholes hold mim_mmnist to 64x64 frames, 16 times the cost of the 16x16 frames the others run on here (its
# family runs as mim_tiny; tests/models/test_mim.py checks its size and cost); so does E3D-LSTM's per-pixel norm.
HUGE = {"fc_lstm_2048_2048", "mim_mmnist", "e3dlstm_mmnist"}
TRAINABLE = [name for name in ALL if name not in {"persistence", "optical_flow", "steps"}]
#: Models that start exactly at a non-learned forecast: their last layer starts at zero, so the first backward pass
#: reaches that layer only (its zero weights are what the earlier layers' gradients are multiplied by).
STARTS_AT_ZERO = {"extrapolation_nowcast", "extrapolation_nowcast_ensemble", "periodic_anchor"}
#: Models that read the whole context at once (pysteps' motion from its last frames; SimVP's frames stacked as
#: channels; the periodic anchor's field one period back): nothing to run frame by frame.
WHOLE_CONTEXT = {
    "extrapolation_nowcast",
    "extrapolation_nowcast_ensemble",
    "periodic_anchor",
    *list_models(family="simvp"),
}


def test_registry_lists_every_family() -> None:
    assert {"shi2015_convlstm_5x5_256", "fc_lstm_2048_2048", "convlstm_unet", "next_frame_convlstm"} <= set(ALL)
    assert {"prednet_kitti", "persistence", "optical_flow"} <= set(ALL)
    assert convlstm.list_models("shi2015_*") == sorted(n for n in ALL if n.startswith("shi2015_"))
    with pytest.raises(ValueError, match="unknown model name 'convlstm_unett'; did you mean convlstm_unet"):
        convlstm.create_model("convlstm_unett")


def test_every_builder_records_the_family_of_the_model_it_builds() -> None:
    for name in ALL:
        family = model_family(name)
        assert family in list_families()
        assert name in list_models(family=family)
        if name not in HUGE:
            model = convlstm.create_model(name)
            assert model.family == family and isinstance(model, family_class(family))
    with pytest.raises(ValueError, match=r"model family must be one of \[.*\], got 'no_such'"):
        family_class("no_such")


def test_summaries_count_the_parameters_of_each_matching_model() -> None:
    assert model_summaries("shi2015_convlstm_5x5_256") == [
        ModelSummary("shi2015_convlstm_5x5_256", 13_524_496, "EncoderForecaster")
    ]
    assert [s.name for s in model_summaries("shi2015_*")] == list_models("shi2015_*")
    with pytest.raises(ValueError, match=r"no registered model matches 'nothing\*'"):
        model_summaries("nothing*")
    from convlstm import experiment

    assert experiment.model_summaries is model_summaries  # the pipeline's name for the same function


def test_the_builder_of_a_name_is_the_function_that_create_model_calls() -> None:
    assert model_builder("encoder_forecaster_tiny") is convlstm.models.encoder_forecaster.encoder_forecaster_tiny
    with pytest.raises(ValueError, match="unknown model name 'convlstm_unett'; did you mean convlstm_unet"):
        model_builder("convlstm_unett")


def test_one_function_rebuilds_a_saved_config_for_files_and_checkpoints() -> None:
    model = convlstm.create_model("next_frame_tiny")
    saved = dataclasses.asdict(model.config)
    rebuilt = model_from_config("next_frame", saved)
    assert type(rebuilt) is type(model) and rebuilt.config == model.config
    del saved["patch_size"]  # a config written before a defaulted field existed
    assert model_from_config("next_frame", saved).config.patch_size == model.config.patch_size
    with pytest.raises(ValueError, match=r"unknown keys \['colour'\]"):
        model_from_config("next_frame", {**saved, "colour": 1})


def test_the_old_base_class_name_warns() -> None:
    with pytest.warns(DeprecationWarning, match="use ForecastingModel"):
        from convlstm.models import Forecaster
    assert Forecaster is ForecastingModel
    with pytest.warns(DeprecationWarning, match="use StreamingForecaster"):
        assert convlstm.Forecaster is convlstm.StreamingForecaster


@pytest.mark.parametrize("name", [n for n in ALL if n not in HUGE])
def test_output_shape_and_finite(name: str) -> None:
    model = build(name)
    x = example_input(model)
    with torch.no_grad():
        out = run(model, x)
    if isinstance(model, ConvLSTMUNet):
        assert out.shape == (1, x.shape[1], model.config.out_channels, *x.shape[3:])
    else:
        assert out.shape == (1, HORIZON, *frame_shape(model))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", [n for n in TRAINABLE if n not in HUGE])
def test_every_parameter_gets_a_gradient(name: str) -> None:
    model = build(name).train()
    if isinstance(model, PredNet):
        # Its prediction output reads only layer 0's Ahat; the upper layers learn through the error output.
        errors, _ = model.run(example_input(model, frames=4), output_mode="error")
        loss = errors.sum()
    elif hasattr(model, "forward_with_increments"):
        # PredRNN-V2's adapter serves only its decoupling loss, which the training task adds to the forecast's.
        forecast, increments = model.forward_with_increments(example_input(model), HORIZON)
        loss = forecast.square().sum() + sum(delta.square().sum() for delta in increments)
    else:
        loss = _forecast_loss(model)
    if name in STARTS_AT_ZERO:
        loss.backward()
        # A small step: a large one on this loss sends every output to 0, where its gradient vanishes.
        torch.optim.SGD(model.parameters(), lr=1e-4).step()
        model.zero_grad(set_to_none=True)
        loss = _forecast_loss(model)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    if isinstance(model, E3DLSTM) and not model.config.update_memory:
        # OpenSTL's wiring keeps the spatiotemporal memory at zero: its convolution gets a zero gradient (not None).
        missing = [n for n in missing if ".conv_m." not in n or model.get_parameter(n).grad is None]
    assert not missing


def _forecast_loss(model: torch.nn.Module) -> torch.Tensor:
    # An ensemble's noise reaches its members only: forward is the noise-free control member.
    if getattr(getattr(model, "config", None), "noise_channels", 0):
        return model.ensemble(example_input(model), HORIZON, members=2).square().sum()  # type: ignore[operator]
    return run(model, example_input(model)).square().sum()


@pytest.mark.parametrize("name", [n for n in ALL if n not in HUGE])
def test_seeded_builds_are_deterministic(name: str) -> None:
    a, b = build(name, seed=3), build(name, seed=3)
    x = example_input(a)
    with torch.no_grad():
        torch.testing.assert_close(run(a, x), run(b, x), rtol=0, atol=0)


@pytest.mark.parametrize("name", [n for n in ALL if n not in HUGE])
def test_save_and_load_round_trip(name: str, tmp_path: object) -> None:
    model = build(name)
    model.save_pretrained(tmp_path)  # type: ignore[operator]
    loaded = from_pretrained(tmp_path).eval()  # type: ignore[arg-type]
    assert type(loaded) is type(model)
    x = example_input(model)
    with torch.no_grad():
        torch.testing.assert_close(run(loaded, x), run(model, x), rtol=0, atol=0)


# A bidirectional network reads the future too: it has no frame-by-frame mode to compare.
@pytest.mark.parametrize("name", [n for n in TRAINABLE if n not in HUGE | WHOLE_CONTEXT and "bidirectional" not in n])
def test_frame_by_frame_equals_one_call(name: str) -> None:
    model = build(name)
    x = example_input(model, frames=4)
    with torch.no_grad():
        if hasattr(model, "encode"):
            whole, chunks = model.encode(x), model.encode(x[:, 2:], model.encode(x[:, :2]))
            torch.testing.assert_close(model.forecast(whole, HORIZON), model.forecast(chunks, HORIZON))
            return
        if isinstance(model, PredNet):
            whole, _ = model.run(x, output_mode="prediction")
            first, state = model.run(x[:, :1], output_mode="prediction")
            rest, _ = model.run(x[:, 1:], state, output_mode="prediction")
        else:
            step = model.one_step if hasattr(model, "one_step") else model
            whole, _ = step(x)
            first, state = step(x[:, :1])
            rest, _ = step(x[:, 1:], state)
        # float32, the frames' convolutions batched in another order
        torch.testing.assert_close(torch.cat([first, rest], dim=1), whole, **FLOAT32_REORDERED)


def test_golden_outputs_pin_numerics() -> None:
    """Small stored outputs (``python -m tests.models.golden`` rewrites them after a deliberate change)."""
    stored = json.loads(GOLDEN_FILE.read_text())
    assert sorted(stored) == sorted(GOLDEN_MODELS)
    for name, now in compute().items():
        then = stored[name]
        assert now["shape"] == then["shape"], name
        # Another CPU's float32 kernels move each element by up to FLOAT32_REORDERED; the sums move by at most
        # that times the element count (sum) or times 2 sqrt(N * sum_sq) (sum of squares, by Cauchy-Schwarz).
        numel, each = math.prod(then["shape"]), FLOAT32_REORDERED["atol"]
        assert now["sum"] == pytest.approx(then["sum"], rel=0, abs=each * numel), name
        assert now["sum_sq"] == pytest.approx(then["sum_sq"], rel=0, abs=2 * each * math.sqrt(numel * then["sum_sq"]))
        np.testing.assert_allclose(now["first"], then["first"], **FLOAT32_REORDERED, err_msg=name)


@pytest.mark.slow
def test_fc_lstm_2048_runs_and_learns() -> None:
    model = build("fc_lstm_2048_2048").train()
    out = run(model, example_input(model))
    assert out.shape == (1, HORIZON, 1, 64, 64) and torch.isfinite(out).all()
    out.square().sum().backward()
    assert all(p.grad is not None for p in model.parameters())
