"""Numerical equivalence of from_keras with Keras 3's own ConvLSTM layers (torch backend, same process)."""

import os

os.environ["KERAS_BACKEND"] = "torch"

import json
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from convlstm import ConvLSTM
from convlstm.interop import from_keras, from_keras_weights, keras_to_torch_layout, torch_to_keras_layout

BATCH, STEPS, IN_CHANNELS, FILTERS = 2, 8, 3, 4
TOL = {"atol": 1e-5, "rtol": 1e-5}


@pytest.fixture(scope="module")
def keras() -> ModuleType:
    return pytest.importorskip("keras")


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # Keras runs 8 tiny convolutions per step; on a busy CPU, intra-op threads make each one 10-30x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _random_weights(layer: Any, seed: int) -> None:
    """Random normal kernels and bias: every gate block differs, so a wrong gate or axis order shows."""
    rng = np.random.default_rng(seed)
    layer.set_weights([(0.3 * rng.standard_normal(w.shape)).astype(np.float32) for w in layer.get_weights()])


def _keras_layer(keras: ModuleType, cls_name: str, x: np.ndarray, seed: int = 0, **kwargs: Any) -> Any:
    layer = getattr(keras.layers, cls_name)(FILTERS, return_state=True, **kwargs)
    layer.build(x.shape)
    _random_weights(layer, seed)
    return layer


def _numpy(value: Any, keras: ModuleType) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(value))


def _sequence(spatial: tuple[int, ...], channels: int = IN_CHANNELS, seed: int = 1) -> np.ndarray:
    """A channels_last input (B, T, *spatial, C)."""
    return np.random.default_rng(seed).standard_normal((BATCH, STEPS, *spatial, channels)).astype(np.float32)


def _assert_equivalent(
    keras: ModuleType, layer: Any, x: np.ndarray, model: ConvLSTM | None = None, **call: Any
) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Runs both layers on x (in the layer's data_format) and compares output and final (h, c)."""
    config = layer.get_config()
    channels_last = config["data_format"] == "channels_last"
    model = from_keras(layer) if model is None else model
    # return_state=True (set by _keras_layer): [output, h, c].
    expected = [_numpy(e, keras) for e in layer(x, **call)]

    ours_in = keras_to_torch_layout(x) if channels_last else torch.as_tensor(x)
    state = None
    if "initial_state" in call:
        h0, c0 = (torch.as_tensor(_numpy(s, keras)) for s in call["initial_state"])
        if channels_last:
            h0, c0 = h0.movedim(-1, 1), c0.movedim(-1, 1)
        state = [(h0, c0)]
    results = []
    for schedule in ("per_step", "batched"):
        model.input_schedule = schedule
        with torch.no_grad():
            results.append(model(ours_in, state))
    torch.testing.assert_close(results[0][0], results[1][0], **TOL)
    out, final = results[0]
    h, c = final[0]

    def keras_layout(t: torch.Tensor, *, sequence: bool) -> np.ndarray:
        if not channels_last:
            return t.numpy()
        return (torch_to_keras_layout(t) if sequence else t.movedim(1, -1)).numpy()

    if config["return_sequences"]:
        keras_order = out.flip(1) if config["go_backwards"] else out
        np.testing.assert_allclose(keras_layout(keras_order, sequence=True), expected[0], **TOL)
    else:
        np.testing.assert_allclose(keras_layout(h, sequence=False), expected[0], **TOL)
    np.testing.assert_allclose(keras_layout(h, sequence=False), expected[1], **TOL)
    np.testing.assert_allclose(keras_layout(c, sequence=False), expected[2], **TOL)
    return out, final


CONV_LSTM_2D_CASES = {
    "same": ({"kernel_size": 3, "padding": "same", "return_sequences": True}, (8, 8)),
    "last_output_only": ({"kernel_size": 3, "padding": "same", "return_sequences": False}, (8, 8)),
    "go_backwards_sequence": (
        {"kernel_size": 3, "padding": "same", "go_backwards": True, "return_sequences": True},
        (8, 8),
    ),
    "stride2_valid_odd": ({"kernel_size": 3, "strides": 2, "padding": "valid", "return_sequences": True}, (9, 11)),
    "stride2_same_odd": ({"kernel_size": 3, "strides": 2, "padding": "same", "return_sequences": True}, (9, 11)),
    "stride_2x1_same_even_kernel": ({"kernel_size": (4, 2), "strides": (2, 1), "padding": "same"}, (9, 11)),
    "even_kernel_same": ({"kernel_size": 4, "padding": "same", "return_sequences": True}, (8, 8)),
    "non_square_kernel_same": ({"kernel_size": (2, 3), "padding": "same", "return_sequences": True}, (9, 11)),
    "dilation2_same": ({"kernel_size": 3, "dilation_rate": 2, "padding": "same", "return_sequences": True}, (8, 8)),
    "dilation2_valid": ({"kernel_size": 3, "dilation_rate": 2, "padding": "valid", "return_sequences": True}, (9, 11)),
    "hard_sigmoid_keras3": ({"kernel_size": 3, "padding": "same", "recurrent_activation": "hard_sigmoid"}, (8, 8)),
    "relu_activation": ({"kernel_size": 3, "padding": "same", "activation": "relu", "return_sequences": True}, (8, 8)),
    "linear_activation": ({"kernel_size": 3, "padding": "same", "activation": None, "return_sequences": True}, (8, 8)),
    "no_bias": ({"kernel_size": 3, "padding": "same", "use_bias": False, "return_sequences": True}, (8, 8)),
}


@pytest.mark.parametrize(("kwargs", "spatial"), CONV_LSTM_2D_CASES.values(), ids=CONV_LSTM_2D_CASES.keys())
def test_conv_lstm_2d_matches_keras(keras: ModuleType, kwargs: dict[str, Any], spatial: tuple[int, int]) -> None:
    x = _sequence(spatial)
    layer = _keras_layer(keras, "ConvLSTM2D", x, **kwargs)
    _assert_equivalent(keras, layer, x)


def test_keras_defaults_are_valid_padding_and_sigmoid(keras: ModuleType) -> None:
    x = _sequence((8, 8))
    layer = _keras_layer(keras, "ConvLSTM2D", x, kernel_size=3, return_sequences=True)
    model = from_keras(layer)
    cell = model.cell(0)
    assert cell.input_conv is not None
    assert cell.input_conv.padding == "valid"
    assert cell.recurrent_activation_name == "sigmoid"
    out, _ = _assert_equivalent(keras, layer, x, model)
    assert out.shape == (BATCH, STEPS, FILTERS, 6, 6)


def test_go_backwards_output_is_aligned_with_input_frames(keras: ModuleType) -> None:
    x = _sequence((8, 8))
    layer = _keras_layer(keras, "ConvLSTM2D", x, kernel_size=3, padding="same", go_backwards=True)
    model = from_keras(layer)
    assert model.reverse
    out, final = _assert_equivalent(keras, layer, x, model)
    # The last step processed is frame 0, so the final h is the output at t = 0, not at t = T - 1.
    torch.testing.assert_close(out[:, 0], final[0][0])
    assert not torch.allclose(out[:, -1], final[0][0])


def test_initial_state_is_carried_over(keras: ModuleType) -> None:
    x = _sequence((8, 8))
    layer = _keras_layer(keras, "ConvLSTM2D", x, kernel_size=3, padding="same", return_sequences=True)
    rng = np.random.default_rng(5)
    h0, c0 = (rng.standard_normal((BATCH, 8, 8, FILTERS)).astype(np.float32) for _ in range(2))
    _assert_equivalent(keras, layer, x, initial_state=[h0, c0])


def test_channels_first_layer_needs_no_layout_change(keras: ModuleType) -> None:
    x = np.ascontiguousarray(keras_to_torch_layout(_sequence((8, 8))).numpy())
    layer = _keras_layer(
        keras, "ConvLSTM2D", x, kernel_size=(3, 2), padding="same", data_format="channels_first", return_sequences=True
    )
    _assert_equivalent(keras, layer, x)


def test_conv_lstm_1d_matches_keras(keras: ModuleType) -> None:
    x = _sequence((11,))
    layer = _keras_layer(keras, "ConvLSTM1D", x, kernel_size=4, padding="same", return_sequences=True)
    model = from_keras(layer)
    assert model.spatial_dims == 1
    _assert_equivalent(keras, layer, x, model)


def test_conv_lstm_3d_matches_keras(keras: ModuleType) -> None:
    x = _sequence((5, 6, 4), channels=2)
    layer = _keras_layer(keras, "ConvLSTM3D", x, kernel_size=(3, 2, 3), padding="same", return_sequences=True)
    model = from_keras(layer)
    assert model.spatial_dims == 3
    _assert_equivalent(keras, layer, x, model)


def test_comparison_detects_swapped_gates(keras: ModuleType) -> None:
    """The random weights make the check sensitive: swapping the i and f blocks must break it."""
    x = _sequence((8, 8))
    layer = _keras_layer(keras, "ConvLSTM2D", x, kernel_size=3, padding="same", return_sequences=True)
    model = from_keras(layer)
    cell = model.cell(0)
    assert cell.input_conv is not None
    swap = torch.cat(
        [torch.arange(FILTERS, 2 * FILTERS), torch.arange(FILTERS), torch.arange(2 * FILTERS, 4 * FILTERS)]
    )
    with torch.no_grad():
        for weight in (cell.input_conv.weight, cell.recurrent_conv.weight):
            weight.copy_(weight[swap])
        assert cell.bias is not None
        cell.bias.copy_(cell.bias[swap])
    with pytest.raises(AssertionError):
        _assert_equivalent(keras, layer, x, model)


def test_dropout_rates_map_and_eval_mode_matches(keras: ModuleType) -> None:
    x = _sequence((8, 8))
    layer = _keras_layer(
        keras,
        "ConvLSTM2D",
        x,
        kernel_size=3,
        padding="same",
        dropout=0.25,
        recurrent_dropout=0.5,
        return_sequences=True,
    )
    model = from_keras(layer)
    cell = model.cell(0)
    assert (cell.input_dropout, cell.recurrent_dropout) == (0.25, 0.5)
    assert not model.training
    _assert_equivalent(keras, layer, x, model)


# ------------------------------------------------------------------------------------------- raw weights path
def test_raw_weights_with_json_config_equal_from_keras(keras: ModuleType) -> None:
    x = _sequence((9, 11))
    layer = _keras_layer(keras, "ConvLSTM2D", x, kernel_size=(3, 2), strides=2, padding="same", return_sequences=True)
    # A config read back from JSON has lists where get_config() has tuples.
    config = json.loads(json.dumps(layer.get_config()))
    model = from_keras_weights(*layer.get_weights(), config)
    _assert_equivalent(keras, layer, x, model)


def test_raw_weights_with_partial_config_take_keras_defaults(keras: ModuleType) -> None:
    x = _sequence((8, 8))
    layer = _keras_layer(keras, "ConvLSTM2D", x, kernel_size=3, return_sequences=True)
    kernel, recurrent_kernel, bias = layer.get_weights()
    model = from_keras_weights(kernel, recurrent_kernel, bias, {"return_sequences": True})
    _assert_equivalent(keras, layer, x, model)


def test_raw_weights_keras2_hard_sigmoid(keras: ModuleType) -> None:
    """A config saved by Keras 2 means clip(0.2 x + 0.5, 0, 1); run Keras 3 with that function to compare."""

    def keras2_hard_sigmoid(z: Any) -> Any:
        return keras.ops.clip(0.2 * z + 0.5, 0.0, 1.0)

    x = _sequence((8, 8))
    layer = _keras_layer(
        keras, "ConvLSTM2D", x, kernel_size=3, padding="same", recurrent_activation=keras2_hard_sigmoid
    )
    config = {**layer.get_config(), "recurrent_activation": "hard_sigmoid"}
    model = from_keras_weights(*layer.get_weights(), config, hard_sigmoid="keras2")
    assert model.cell(0).recurrent_activation_name == "hard_sigmoid_keras2"
    _assert_equivalent(keras, layer, x, model)
    keras3 = from_keras_weights(*layer.get_weights(), config)
    with pytest.raises(AssertionError):
        _assert_equivalent(keras, layer, x, keras3)


def test_weight_layout_by_hand() -> None:
    """Keras (kh, kw, C_in, 4F) -> ours (4F, C_in, kh, kw), checked element by element without Keras."""
    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((3, 2, 2, 8)).astype(np.float32)
    recurrent = rng.standard_normal((3, 2, 2, 8)).astype(np.float32)
    bias = rng.standard_normal(8).astype(np.float32)
    model = from_keras_weights(kernel, recurrent, bias, {"padding": "same"})
    cell = model.cell(0)
    assert cell.input_conv is not None
    assert cell.bias is not None
    assert cell.input_conv.weight[5, 1, 2, 0].item() == kernel[2, 0, 1, 5]
    assert cell.recurrent_conv.weight[7, 0, 1, 1].item() == recurrent[1, 1, 0, 7]
    np.testing.assert_array_equal(cell.bias.detach().numpy(), bias)
    assert cell.recurrent_conv.dilation == (1, 1)


# ------------------------------------------------------------------------------------------------- errors
def _raw(kernel_size: tuple[int, ...] = (3, 3), filters: int = 2, channels: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [
        rng.standard_normal((*kernel_size, channels, 4 * filters)).astype(np.float32),
        rng.standard_normal((*kernel_size, filters, 4 * filters)).astype(np.float32),
        rng.standard_normal(4 * filters).astype(np.float32),
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"activation": "silu"}, "activation .* got 'silu'"),
        ({"recurrent_activation": "hard_silu"}, "recurrent_activation .* got 'hard_silu'"),
        ({"activation": {"class_name": "Custom"}}, "activation"),
        ({"stateful": True}, "stateful"),
        ({"dropout": 1.0}, "dropout"),
        ({"recurrent_dropout": -0.1}, "recurrent_dropout"),
        ({"padding": "causal"}, "padding .* 'causal'"),
        ({"data_format": "channels_middle"}, "data_format"),
        ({"strides": (2, 2, 2)}, "strides"),
        ({"filters": 3}, "filters=3"),
        ({"kernel_size": (5, 5)}, "kernel_size"),
    ],
)
def test_config_errors_name_the_option(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        from_keras_weights(*_raw(), {"filters": 2, "kernel_size": (3, 3), **change})


def test_weight_errors_name_the_array() -> None:
    kernel, recurrent, bias = _raw()
    with pytest.raises(ValueError, match="recurrent_kernel must have shape"):
        from_keras_weights(kernel, recurrent[..., :4], bias, {})
    with pytest.raises(ValueError, match="bias must have shape"):
        from_keras_weights(kernel, recurrent, bias[:4], {})
    with pytest.raises(ValueError, match="bias is None"):
        from_keras_weights(kernel, recurrent, None, {})
    with pytest.raises(ValueError, match="use_bias=False"):
        from_keras_weights(kernel, recurrent, bias, {"use_bias": False})
    with pytest.raises(ValueError, match="kernel must have shape"):
        from_keras_weights(kernel[..., :6], recurrent, bias, {})
    with pytest.raises(ValueError, match="kernel must have shape"):
        from_keras_weights(kernel[0, 0, 0], recurrent, bias, {})
    kernel[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="kernel must be finite"):
        from_keras_weights(kernel, recurrent, bias, {})
    with pytest.raises(ValueError, match="hard_sigmoid"):
        from_keras_weights(*_raw(), {}, hard_sigmoid="keras1")


def test_no_bias_layer_converts_without_bias() -> None:
    kernel, recurrent, _ = _raw(kernel_size=(3,))
    model = from_keras_weights(kernel, recurrent, None, {"use_bias": False})
    assert model.cell(0).bias is None
    assert model.spatial_dims == 1


def test_from_keras_rejects_other_objects(keras: ModuleType) -> None:
    with pytest.raises(ValueError, match=r"ConvLSTM2D.*got LSTM"):
        from_keras(keras.layers.LSTM(3))
    with pytest.raises(ValueError, match="no weights yet"):
        from_keras(keras.layers.ConvLSTM2D(3, 3))


def test_missing_keras_raises_import_error_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "keras", None)
    with pytest.raises(ImportError, match=r"convlstm\[keras\]"):
        from_keras(object())


# ------------------------------------------------------------------------------------------------- layout
@pytest.mark.parametrize("spatial", [(7,), (5, 6), (3, 4, 5)])
def test_layout_helpers_are_inverse_and_move_channels(spatial: tuple[int, ...]) -> None:
    x = torch.randn(2, 3, *spatial, 4)
    y = keras_to_torch_layout(x)
    assert y.shape == (2, 3, 4, *spatial)
    index = (1, 2, 3, *(s - 1 for s in spatial))
    assert y[index] == x[(1, 2, *(s - 1 for s in spatial), 3)]
    torch.testing.assert_close(torch_to_keras_layout(y), x, rtol=0, atol=0)
    from_numpy = keras_to_torch_layout(x.numpy())
    torch.testing.assert_close(from_numpy, y, rtol=0, atol=0)


def test_layout_helpers_reject_wrong_rank() -> None:
    with pytest.raises(ValueError, match=r"x must be a sequence .* got shape \(2, 3, 4\)"):
        keras_to_torch_layout(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="x must be a tensor or NumPy array"):
        torch_to_keras_layout([1, 2, 3])  # type: ignore[arg-type]


def test_mixed_precision_policy_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    config = {"dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "mixed_float16"}}}
    with caplog.at_level("WARNING", logger="convlstm.interop.keras"):
        model = from_keras_weights(*_raw(), config)
    assert "mixed_float16" in caplog.text
    assert model.cell(0).recurrent_conv.weight.dtype == torch.float32


MASKED_CASES = {
    "forward": {},
    "go_backwards": {"go_backwards": True},
}


@pytest.mark.parametrize("kwargs", MASKED_CASES.values(), ids=MASKED_CASES.keys())
def test_masked_conv_lstm_2d_matches_keras(keras: ModuleType, kwargs: dict[str, Any]) -> None:
    """A Keras mask (with gaps, and a sequence whose first steps are masked) from an initial state: outputs on
    every step, masked ones included, and the final (h, c) agree with our ``mask`` argument."""
    x = _sequence((6, 7))
    layer = _keras_layer(keras, "ConvLSTM2D", x, kernel_size=3, padding="same", return_sequences=True, **kwargs)
    mask = np.ones((BATCH, STEPS), dtype=bool)
    mask[0, 5:] = False  # padding at the end
    mask[1, :2] = False  # masked first steps: Keras outputs zeros there, whatever the initial state
    mask[1, 4] = False  # a gap: the state is carried over it
    rng = np.random.default_rng(7)
    h0, c0 = (rng.standard_normal((BATCH, 6, 7, FILTERS)).astype(np.float32) for _ in range(2))
    expected = [_numpy(e, keras) for e in layer(x, mask=mask, initial_state=[h0, c0])]
    model = from_keras(layer)
    state = [(keras_to_torch_layout(h0[:, None])[:, 0], keras_to_torch_layout(c0[:, None])[:, 0])]
    for schedule in ("per_step", "batched", "fused"):
        model.input_schedule = schedule
        with torch.no_grad():
            out, [(h, c)] = model(keras_to_torch_layout(x), state, mask=torch.as_tensor(mask))
        keras_order = out.flip(1) if kwargs.get("go_backwards") else out
        np.testing.assert_allclose(torch_to_keras_layout(keras_order).numpy(), expected[0], **TOL)
        np.testing.assert_allclose(h.movedim(1, -1).numpy(), expected[1], **TOL)
        np.testing.assert_allclose(c.movedim(1, -1).numpy(), expected[2], **TOL)


def test_keras_lengths_mask_equals_our_lengths(keras: ModuleType) -> None:
    """A padding mask built from lengths, as Keras's Masking layer would give it, equals ``lengths=``."""
    x = _sequence((9,))
    layer = _keras_layer(keras, "ConvLSTM1D", x, kernel_size=3, padding="same", return_sequences=True)
    lengths = np.array([STEPS - 3, STEPS])
    mask = np.arange(STEPS)[None, :] < lengths[:, None]
    expected = [_numpy(e, keras) for e in layer(x, mask=mask)]
    with torch.no_grad():
        out, [(h, c)] = from_keras(layer)(keras_to_torch_layout(x), lengths=torch.as_tensor(lengths))
    np.testing.assert_allclose(torch_to_keras_layout(out).numpy(), expected[0], **TOL)
    np.testing.assert_allclose(h.movedim(1, -1).numpy(), expected[1], **TOL)
    np.testing.assert_allclose(c.movedim(1, -1).numpy(), expected[2], **TOL)
