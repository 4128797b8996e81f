import dataclasses
import inspect
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from convlstm.models import create_model, from_pretrained, list_models
from convlstm.models.encoder_forecaster import EncoderForecaster, EncoderForecasterConfig
from convlstm.models.patching import depth_to_space, space_to_depth

# Shi et al. 2015, table 1: the published parameter counts of the Moving MNIST models.
SHI_MOVING_MNIST_COUNTS = {
    "shi2015_convlstm_5x5_256": 13_524_496,
    "shi2015_convlstm_5x5_128_128": 10_042_896,
    "shi2015_convlstm_5x5_128_64_64": 7_585_296,
    "shi2015_convlstm_9x9_1x1_128_128": 11_550_224,
    "shi2015_convlstm_9x9_1x1_128_64_64": 8_830_480,
}
SMALL_BUILDERS = [
    "encoder_forecaster_tiny",
    "shi2015_radar_convlstm",
    "shi2015_radar_convgru",
    "radar_convlstm_advection",
]


def _tiny(**overrides: Any) -> EncoderForecaster:
    model = create_model("encoder_forecaster_tiny", **overrides)
    assert isinstance(model, EncoderForecaster)
    return model


def _randomize_peepholes(model: torch.nn.Module) -> None:
    # Peepholes start at zero; give them values so that tests see them act.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("peephole"):
                p.uniform_(-0.5, 0.5)


def test_builders_are_registered() -> None:
    names = set(list_models("shi2015_*")) | set(list_models("encoder_forecaster_*")) | set(list_models("radar_*"))
    assert set(SHI_MOVING_MNIST_COUNTS) | set(SMALL_BUILDERS) <= names


@pytest.mark.parametrize(("name", "expected"), SHI_MOVING_MNIST_COUNTS.items())
def test_moving_mnist_builders_have_published_parameter_counts(name: str, expected: int) -> None:
    model = create_model(name)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_builder_configs_follow_shi_naming() -> None:
    config = create_model("shi2015_convlstm_9x9_1x1_128_64_64").config
    assert (config.kernel_size, config.recurrent_kernel_size, config.hidden_channels) == (9, 1, [128, 64, 64])
    assert (config.patch_size, config.peephole, config.default_horizon) == (4, True, 10)
    radar = create_model("shi2015_radar_convlstm").config
    assert (radar.patch_size, radar.hidden_channels, radar.kernel_size, radar.default_horizon) == (2, [64, 64], 3, 15)
    assert create_model("shi2015_radar_convgru").config.cell == "gru"


def test_config_fields_are_the_constructor_arguments() -> None:
    parameters = set(inspect.signature(EncoderForecaster.__init__).parameters) - {"self"}
    assert parameters == {f.name for f in dataclasses.fields(EncoderForecasterConfig)}
    model = _tiny(hidden_channels=(5, 7))
    assert model.config.hidden_channels == [5, 7]
    assert EncoderForecaster.from_config(model.config).config == model.config


@pytest.mark.parametrize("name", SMALL_BUILDERS)
def test_shapes_and_finite_outputs(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name).eval()
    context = torch.rand(2, 3, 1, 12, 16)
    with torch.no_grad():
        out = model(context, horizon=4)
        default = model(context)
    assert out.shape == (2, 4, 1, 12, 16)
    assert default.shape == (2, model.default_horizon, 1, 12, 16)
    assert torch.isfinite(out).all()
    assert ((out >= 0) & (out <= 1)).all()  # sigmoid output by default


def test_patching_keeps_channels_apart() -> None:
    """Channel c's p x p patch folds into channels c*p*p + i*p + j and unfolds back to channel c and its pixels:
    checked on the folding itself, and on the model against the step-by-step reference, which folds by hand."""
    p = 4
    x = torch.arange(2 * 3 * 16 * 8, dtype=torch.float32).reshape(1, 2, 3, 16, 8)
    folded = space_to_depth(x, p)
    assert folded.shape == (1, 2, 3 * p * p, 4, 2)
    for c in range(3):
        for i in range(p):
            for j in range(p):
                assert torch.equal(folded[:, :, c * p * p + i * p + j], x[:, :, c, i::p, j::p])
    assert torch.equal(depth_to_space(folded, p), x)

    torch.manual_seed(0)
    model = _tiny(in_channels=3, patch_size=p).eval()
    _randomize_peepholes(model)
    context = torch.rand(1, 2, 3, 16, 8)
    with torch.no_grad():
        out = model(context, horizon=2)
        torch.testing.assert_close(out, _reference_forward(model, context, 2), atol=1e-5, rtol=1e-5)
    assert out.shape == (1, 2, 3, 16, 8)


def test_output_activation_none_gives_the_logits_of_sigmoid() -> None:
    torch.manual_seed(0)
    sigmoid = _tiny()
    raw = _tiny(output_activation="none")
    raw.load_state_dict(sigmoid.state_dict())
    context = torch.rand(2, 3, 1, 8, 8)
    torch.testing.assert_close(torch.sigmoid(raw(context, 3)), sigmoid(context, 3))


def _reference_forward(model: EncoderForecaster, context: Tensor, horizon: int) -> Tensor:
    """Shi's figure 3 step by step with the cells' own one-step call, independent of the sequence layers."""
    p = model.patch_size
    b, t, c, h, w = context.shape
    # (B, T, C, H, W) -> (B, T, C*p*p, H/p, W/p) with channel index c*p*p + i*p + j
    x = (
        context.reshape(b, t, c, h // p, p, w // p, p)
        .permute(0, 1, 2, 4, 6, 3, 5)
        .reshape(b, t, c * p * p, h // p, w // p)
    )
    layers = model.encoder.num_layers
    state: list[Any] = [None] * layers
    for step in range(t):
        below = x[:, step]
        for layer in range(layers):
            state[layer] = model.encoder.cell(layer)(below, state[layer])
            below = state[layer][0] if isinstance(state[layer], tuple) else state[layer]
    frames = []
    for _ in range(horizon):
        below = None  # the first forecaster layer has no input
        hiddens = []
        for layer in range(layers):
            state[layer] = model.forecaster.cell(layer)(below, state[layer])
            below = state[layer][0] if isinstance(state[layer], tuple) else state[layer]
            hiddens.append(below)
        logits = model.head(torch.cat(hiddens, dim=1))  # 1x1 conv over all forecaster states
        frames.append(torch.sigmoid(logits))
    out = torch.stack(frames, dim=1)  # (B, horizon, C*p*p, H/p, W/p)
    return out.reshape(b, horizon, c, p, p, h // p, w // p).permute(0, 1, 2, 5, 3, 6, 4).reshape(b, horizon, c, h, w)


@pytest.mark.parametrize(("cell", "peephole"), [("lstm", True), ("gru", False)])
def test_forward_matches_step_by_step_reference(cell: str, peephole: bool) -> None:
    torch.manual_seed(0)
    model = _tiny(cell=cell, peephole=peephole, hidden_channels=[6, 5, 4], recurrent_kernel_size=1)
    _randomize_peepholes(model)
    context = torch.rand(2, 4, 1, 8, 12)
    torch.testing.assert_close(model(context, 3), _reference_forward(model, context, 3), atol=1e-5, rtol=1e-5)


def test_first_forecaster_layer_has_no_input_and_higher_layers_read_the_layer_below() -> None:
    model = _tiny(hidden_channels=[6, 4, 3])
    assert model.forecaster.cell(0).input_conv is None
    assert model.forecaster.cell(1).in_channels == 6
    assert model.forecaster.cell(2).in_channels == 4
    assert model.head.in_channels == 6 + 4 + 3
    assert all(model.encoder.cell(i).peephole is not None for i in range(3))


@pytest.mark.parametrize(("cell", "peephole"), [("lstm", True), ("gru", False)])
def test_every_parameter_gets_a_gradient(cell: str, peephole: bool) -> None:
    torch.manual_seed(0)
    model = _tiny(cell=cell, peephole=peephole)
    _randomize_peepholes(model)
    out = model(torch.rand(2, 3, 1, 8, 8), horizon=3)
    (out * torch.randn_like(out)).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_seeded_construction_is_deterministic() -> None:
    context = torch.rand(2, 3, 1, 8, 8)
    torch.manual_seed(3)
    first = _tiny()
    torch.manual_seed(3)
    second = _tiny()
    torch.manual_seed(4)
    other = _tiny()
    assert torch.equal(first(context), second(context))
    assert not torch.equal(first(context), other(context))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_save_and_load_round_trip(tmp_path: Path, cell: str) -> None:
    torch.manual_seed(0)
    model = _tiny(cell=cell, peephole=cell == "lstm", output_activation="none", default_horizon=4).eval()
    _randomize_peepholes(model)
    model.save_pretrained(tmp_path / "model")
    loaded = from_pretrained(tmp_path / "model")
    assert isinstance(loaded, EncoderForecaster)
    assert loaded.config == model.config
    context = torch.rand(2, 3, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(context), model(context))


@pytest.mark.parametrize(("cell", "peephole"), [("lstm", True), ("gru", False)])
def test_chunked_encoding_equals_one_call(cell: str, peephole: bool) -> None:
    torch.manual_seed(0)
    model = _tiny(cell=cell, peephole=peephole)
    _randomize_peepholes(model)
    context = torch.rand(2, 7, 1, 8, 8)
    whole = model.encode(context)
    state = model.encode(context[:, :3])
    state = model.encode(context[:, 3:4], state)
    state = model.encode(context[:, 4:], state)
    torch.testing.assert_close(state, whole, atol=1e-6, rtol=1e-5)  # compares the (h, c) pairs element by element
    torch.testing.assert_close(model.forecast(state, 3), model(context, 3), atol=1e-6, rtol=1e-5)


def test_teacher_forcing_is_validated_then_ignored() -> None:
    torch.manual_seed(0)
    model = _tiny()
    context, targets = torch.rand(2, 3, 1, 8, 8), torch.rand(2, 4, 1, 8, 8)
    mask = torch.tensor([True, False, True, True])
    torch.testing.assert_close(model(context, 4, targets, mask), model(context, 4))
    with pytest.raises(ValueError, match=r"teacher_forcing must have shape \(4,\) or \(2, 4\)"):
        model(context, 4, targets, torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="teacher_forcing needs targets of shape"):
        model(context, 4, None, mask)
    with pytest.raises(ValueError, match="teacher_forcing needs targets of shape"):
        model(context, 4, targets[:, :3], mask)


def test_bad_context_is_rejected_with_a_clear_message() -> None:
    model = _tiny()
    with pytest.raises(ValueError, match=r"context frames of size 9x8.*divisible by patch_size=2"):
        model(torch.rand(1, 3, 1, 9, 8))
    with pytest.raises(ValueError, match="context must have 1 channels"):
        model(torch.rand(1, 3, 2, 8, 8))
    with pytest.raises(ValueError, match=r"context must have shape \(B, T_in, C=1, H, W\)"):
        model(torch.rand(3, 1, 8, 8))
    with pytest.raises(ValueError, match="horizon must be an int >= 1"):
        model(torch.rand(1, 3, 1, 8, 8), horizon=0)


def test_bad_state_is_rejected() -> None:
    model = _tiny()
    state = model.encode(torch.rand(2, 3, 1, 8, 8))
    with pytest.raises(ValueError, match=r"state must be a list of 2 entries \(one per layer\)"):
        model.forecast(state[:1], 2)
    with pytest.raises(ValueError, match=r"state\[1\] h must have shape"):
        model.forecast([state[0], (state[1][0][:, :3], state[1][1])], 2)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"cell": "rnn"}, r"cell must be one of \['lstm', 'gru'\], got 'rnn'"),
        ({"cell": "gru"}, "peephole=True needs cell='lstm'"),
        ({"output_activation": "tanh"}, "output_activation must be one of"),
        ({"hidden_channels": []}, "hidden_channels must be a non-empty list"),
        ({"kernel_size": (3, 3)}, "kernel_size must be an int >= 1"),
        ({"recurrent_kernel_size": 0}, "recurrent_kernel_size must be an int >= 1"),
        ({"patch_size": 0}, "patch_size must be an int >= 1"),
        ({"in_channels": 0}, "in_channels must be an int >= 1"),
        ({"default_horizon": 0}, "default_horizon must be an int >= 1"),
        ({"motion_radius": -1}, "motion_radius must be an int >= 0"),
    ],
)
def test_bad_constructor_arguments(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _tiny(**overrides)
