import dataclasses
import inspect
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from convlstm.models import create_model, from_pretrained, list_models
from convlstm.models.fc_lstm import FCLSTM, FCLSTMConfig


def _tiny(**overrides: Any) -> FCLSTM:
    model = create_model("fc_lstm_tiny", **overrides)
    assert isinstance(model, FCLSTM)
    return model


def _randomize_peepholes(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("peephole"):
                p.uniform_(-0.5, 0.5)


def test_fc_lstm_2048_2048_has_the_published_parameter_count() -> None:
    # Shi et al. 2015, table 1. On the meta device: shapes only, no 570 MB of weights.
    with torch.device("meta"):
        model = create_model("fc_lstm_2048_2048")
    assert sum(p.numel() for p in model.parameters()) == 142_667_776
    assert model.config.hidden_sizes == [2048, 2048]


def test_builders_are_registered() -> None:
    assert {"fc_lstm_2048_2048", "fc_lstm_tiny"} <= set(list_models("fc_lstm*"))


def test_config_fields_are_the_constructor_arguments() -> None:
    parameters = set(inspect.signature(FCLSTM.__init__).parameters) - {"self"}
    assert parameters == {f.name for f in dataclasses.fields(FCLSTMConfig)}


def _lstm_step(
    x: Tensor | None, h: Tensor, c: Tensor, w_x: Tensor | None, w_h: Tensor, b: Tensor, peep: Tensor
) -> tuple[Tensor, Tensor]:
    """One fully connected LSTM step with diagonal peepholes (Graves 2013), gates [i, f, g, o]."""
    pre = h @ w_h.T + b
    if x is not None and w_x is not None:
        pre = pre + x @ w_x.T
    i, f, g, o = pre.chunk(4, dim=1)
    i = torch.sigmoid(i + peep[0] * c)
    f = torch.sigmoid(f + peep[1] * c)
    c = f * c + i * torch.tanh(g)
    o = torch.sigmoid(o + peep[2] * c)
    return o * torch.tanh(c), c


def _reference_forward(model: FCLSTM, context: Tensor, horizon: int) -> Tensor:
    """Srivastava's unconditioned future predictor written with matrix products on flattened frames."""

    def weights(stack: Any, layer: int) -> tuple[Tensor | None, Tensor, Tensor, Tensor]:
        cell = stack.cell(layer)
        w_x = None if cell.input_conv is None else cell.input_conv.weight[:, :, 0, 0]
        return w_x, cell.recurrent_conv.weight[:, :, 0, 0], cell.bias, cell.peephole

    b, t = context.shape[:2]
    sizes = model.config.hidden_sizes
    state = [(context.new_zeros(b, n), context.new_zeros(b, n)) for n in sizes]
    for step in range(t):
        below: Tensor | None = context[:, step].flatten(1)
        for layer in range(len(sizes)):
            state[layer] = _lstm_step(below, *state[layer], *weights(model.encoder, layer))
            below = state[layer][0]
    frames = []
    for _ in range(horizon):
        below = None
        for layer in range(len(sizes)):
            state[layer] = _lstm_step(below, *state[layer], *weights(model.forecaster, layer))
            below = state[layer][0]
        frames.append(torch.sigmoid(model.head.weight @ state[-1][0].T + model.head.bias[:, None]).T)
    return torch.stack(frames, dim=1).reshape(b, horizon, *context.shape[2:])


def test_forward_matches_fully_connected_lstm_reference() -> None:
    torch.manual_seed(0)
    model = _tiny(in_channels=2, height=4, width=6, hidden_sizes=[12, 9, 7])
    _randomize_peepholes(model)
    context = torch.rand(3, 4, 2, 4, 6)
    torch.testing.assert_close(model(context, 3), _reference_forward(model, context, 3), atol=1e-5, rtol=1e-5)


def test_shapes_and_finite_outputs() -> None:
    torch.manual_seed(0)
    model = _tiny().eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 1, 16, 16), horizon=4)
        default = model(torch.rand(1, 2, 1, 16, 16))
    assert out.shape == (2, 4, 1, 16, 16)
    assert default.shape == (1, 5, 1, 16, 16)
    assert torch.isfinite(out).all()
    assert ((out >= 0) & (out <= 1)).all()


def test_output_activation_none_gives_the_logits_of_sigmoid() -> None:
    torch.manual_seed(0)
    sigmoid, raw = _tiny(), _tiny(output_activation="none")
    raw.load_state_dict(sigmoid.state_dict())
    context = torch.rand(2, 3, 1, 16, 16)
    torch.testing.assert_close(torch.sigmoid(raw(context, 2)), sigmoid(context, 2))


def test_every_parameter_gets_a_gradient() -> None:
    torch.manual_seed(0)
    model = _tiny()
    _randomize_peepholes(model)
    out = model(torch.rand(2, 3, 1, 16, 16), horizon=3)
    (out * torch.randn_like(out)).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_seeded_construction_is_deterministic() -> None:
    context = torch.rand(2, 3, 1, 16, 16)
    torch.manual_seed(1)
    first = _tiny()
    torch.manual_seed(1)
    second = _tiny()
    torch.manual_seed(2)
    other = _tiny()
    assert torch.equal(first(context), second(context))
    assert not torch.equal(first(context), other(context))


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _tiny(height=8, width=12, default_horizon=3).eval()
    _randomize_peepholes(model)
    model.save_pretrained(tmp_path)
    loaded = from_pretrained(tmp_path)
    assert isinstance(loaded, FCLSTM)
    assert loaded.config == model.config
    context = torch.rand(2, 4, 1, 8, 12)
    with torch.no_grad():
        assert torch.equal(loaded(context), model(context))


def test_chunked_encoding_equals_one_call() -> None:
    torch.manual_seed(0)
    model = _tiny()
    _randomize_peepholes(model)
    context = torch.rand(2, 6, 1, 16, 16)
    state = model.encode(context[:, 2:], model.encode(context[:, :2]))
    for (h, c), (h_ref, c_ref) in zip(state, model.encode(context), strict=True):
        torch.testing.assert_close(h, h_ref, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(c, c_ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(model.forecast(state, 2), model(context, 2), atol=1e-6, rtol=1e-5)


def test_teacher_forcing_is_validated_then_ignored() -> None:
    torch.manual_seed(0)
    model = _tiny()
    context, targets = torch.rand(2, 3, 1, 16, 16), torch.rand(2, 2, 1, 16, 16)
    mask = torch.tensor([[True, False], [False, True]])
    torch.testing.assert_close(model(context, 2, targets, mask), model(context, 2))
    with pytest.raises(ValueError, match=r"teacher_forcing must have shape \(2,\) or \(2, 2\)"):
        model(context, 2, targets, torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="teacher_forcing needs targets"):
        model(context, 2, None, mask)


def test_bad_inputs_are_rejected() -> None:
    model = _tiny()
    with pytest.raises(ValueError, match=r"context must have shape \(B, T, 1, 16, 16\), got \(1, 3, 1, 16, 8\)"):
        model(torch.rand(1, 3, 1, 16, 8))
    with pytest.raises(ValueError, match="context must have 1 channels"):
        model(torch.rand(1, 3, 2, 16, 16))
    with pytest.raises(ValueError, match="state must be a list of 2"):
        model.forecast(model.encode(torch.rand(1, 2, 1, 16, 16))[:1], 2)
    with pytest.raises(ValueError, match=r"state\[0\] must be a pair \(h, c\)"):
        model.forecast([torch.zeros(1, 32, 1, 1)] * 2, 2)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"hidden_sizes": []}, "hidden_sizes must be a non-empty list"),
        ({"height": 0}, "height must be an int >= 1"),
        ({"output_activation": "relu"}, "output_activation must be one of"),
        ({"default_horizon": 0}, "default_horizon must be an int >= 1"),
    ],
)
def test_bad_constructor_arguments(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _tiny(**overrides)
