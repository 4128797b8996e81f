"""Random arguments and inputs for the ConvLSTM / ConvGRU layers and cells: each call either works (output of the
documented shape and dtype) or raises a ValueError whose message names what was wrong; nothing else escapes. When
every argument and input drawn is valid, the call must work: a ValueError there is a bug, not a clear refusal.

Sizes are bounded (channels <= 6, frames <= 9 pixels a side) so that no example can use much memory.
"""

import resource
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convlstm import ConvGRU, ConvGRUCell, ConvLSTM, ConvLSTMCell
from convlstm.layers.conv import MAX_WEIGHT_ELEMENTS

FUZZ = settings(max_examples=50, deadline=5000, suppress_health_check=[HealthCheck.too_slow], derandomize=True)

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.bool, torch.complex64]
SPECIAL = [0.0, 1.0, -1.0, float("nan"), float("inf"), -float("inf"), 1e30]


def sometimes(
    draw: st.DrawFn, valid: st.SearchStrategy[Any], invalid: st.SearchStrategy[Any], invalid_drawn: list[str], name: str
) -> Any:
    """A valid value most of the time, so that most examples get as far as the forward pass; the name of an
    argument drawn from ``invalid`` is added to ``invalid_drawn``."""
    if draw(st.sampled_from([False] * 19 + [True])):
        invalid_drawn.append(name)
        return draw(invalid)
    return draw(valid)


@st.composite
def layer_arguments(draw: st.DrawFn) -> tuple[dict[str, Any], list[str]]:
    """Keyword arguments of a layer, and the names of those drawn from the invalid values."""
    bad_int = st.sampled_from([-1, 0, 2.5, None, "3", True])
    bad_kernel = st.sampled_from([0, -2, 3.0, "3", [3], [3, 3, 3, 3], [0, 3]])
    invalid: list[str] = []
    required: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]] = {
        "in_channels": (st.sampled_from([1, 2, 3, 4, 0]), bad_int),  # 0 last: Hypothesis favours the first
        "hidden_channels": (st.integers(1, 4), st.sampled_from([0, -1, [], [2, 0], 2.5])),
        "kernel_size": (st.integers(1, 5), bad_kernel),
        "num_layers": (st.integers(1, 2), bad_int),
        "spatial_dims": (st.integers(1, 3), st.sampled_from([0, 4, -1, 2.0])),
    }
    arguments = {name: sometimes(draw, valid, bad, invalid, name) for name, (valid, bad) in required.items()}
    optional: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]] = {
        "stride": (st.integers(1, 3), st.sampled_from([0, -1, 1.5])),
        "padding": (st.sampled_from(["same", "valid"]), st.sampled_from(["full", 0, None])),
        "dilation": (st.integers(1, 3), st.sampled_from([0, -1])),
        "recurrent_kernel_size": (st.integers(1, 5), bad_kernel),
        "bidirectional": (st.booleans(), st.just(True)),
        "reverse": (st.booleans(), st.just(True)),
        "dropout": (st.sampled_from([0.0, 0.5]), st.sampled_from([1.0, -0.1, float("nan"), "0.1"])),
        "recurrent_dropout": (st.sampled_from([0.0, 0.3]), st.sampled_from([1.5, -1.0])),
        "norm": (st.sampled_from([None, "layer", "group"]), st.sampled_from(["batch", 1])),
        "norm_groups": (st.just(1), st.sampled_from([0, 3, 2.0, -1])),
        "activation": (st.sampled_from(["tanh", "relu", "hard_sigmoid"]), st.sampled_from(["gelu", None, 3])),
        "input_schedule": (st.sampled_from(["auto", "batched", "per_step", "fused"]), st.just("fast")),
    }
    for name, (valid, bad) in optional.items():
        if draw(st.booleans()):
            arguments[name] = sometimes(draw, valid, bad, invalid, name)
    return arguments, invalid


def must_work(arguments: dict[str, Any], invalid: list[str]) -> bool:
    """Whether every argument is valid, alone and together: the combinations the layers refuse by design are a
    cell without input (in_channels=0, which needs a state), "valid" padding (frames may be smaller than the
    kernel), reverse with bidirectional, and the fused schedule (LSTM cells of one kernel, stride 1, no dropout)."""
    return (
        not invalid
        and arguments["in_channels"] > 0
        and arguments.get("padding") != "valid"
        and not (arguments.get("reverse") and arguments.get("bidirectional"))
        and arguments.get("input_schedule") != "fused"
    )


def frames(
    data: st.DataObject, *, leading: int, channels: int, spatial_dims: int, dtype: torch.dtype
) -> tuple[torch.Tensor, bool]:
    """Mostly the shape and dtype the layer expects (``leading`` sizes, then C, then the spatial ones), sometimes
    a wrong number of dimensions, a wrong channel count, empty sizes or another dtype; values sometimes NaN/inf
    (which layers propagate, like torch.nn.LSTM). Returns the tensor and whether it is one the layer must take."""
    shape = [data.draw(st.integers(1, 3)) for _ in range(leading)] + [max(channels, 0)]
    shape += [data.draw(st.integers(1, 8)) for _ in range(max(spatial_dims, 1))]
    corruption = data.draw(st.sampled_from(["none"] * 6 + ["ndim", "channels", "empty", "dtype"]))
    if corruption == "ndim":
        shape = shape[:-1] if data.draw(st.booleans()) else [*shape, 2]
    elif corruption == "channels":
        shape[leading] += data.draw(st.sampled_from([-1, 1, 3]))
        shape[leading] = max(shape[leading], 0)
    elif corruption == "empty":
        shape[data.draw(st.integers(0, len(shape) - 1))] = 0
    elif corruption == "dtype":
        dtype = data.draw(st.sampled_from([d for d in DTYPES if d != dtype]))
    if not (dtype.is_floating_point or dtype.is_complex):
        return torch.randint(0, 2, shape).to(dtype), False
    x = torch.randn(shape)
    if x.numel() and data.draw(st.booleans()):
        x.view(-1)[data.draw(st.integers(0, x.numel() - 1))] = data.draw(st.sampled_from(SPECIAL))
    return x.to(dtype), corruption == "none"


def _refused(error: ValueError, *, allowed: bool) -> None:
    """A refusal must explain itself, and may only come for an argument or input that is wrong."""
    assert allowed, f"valid arguments and input were refused: {error}"
    _assert_clear(error)


def _assert_clear(error: ValueError) -> None:
    message = str(error)
    assert len(message) > 20, message


def _expected_output_shape(layer: Any, x: torch.Tensor) -> tuple[int, ...]:
    size = tuple(x.shape[3:])
    for index in range(layer.num_layers):
        size = layer.cell(index).state_size(size)
    return (x.shape[0], x.shape[1], layer.out_channels, *size)


@pytest.mark.parametrize("layer_class", [ConvLSTM, ConvGRU])
@FUZZ
@given(drawn=layer_arguments(), data=st.data())
def test_sequence_layers_work_or_raise_value_errors(
    layer_class: Any, drawn: tuple[dict[str, Any], list[str]], data: st.DataObject
) -> None:
    arguments, invalid = drawn
    valid = must_work(arguments, invalid)
    try:
        layer = layer_class(**arguments)
    except ValueError as error:
        _refused(error, allowed=not valid)
        return
    dtype = data.draw(st.sampled_from([torch.float32, torch.float32, torch.float64, torch.bfloat16]))
    layer = layer.to(dtype)
    x, valid_input = frames(data, leading=2, channels=layer.in_channels, spatial_dims=layer.spatial_dims, dtype=dtype)
    try:
        with torch.no_grad():
            output, state = layer(x)
    except ValueError as error:
        _refused(error, allowed=not (valid and valid_input))
        return
    assert output.shape == _expected_output_shape(layer, x)
    assert output.dtype == x.dtype == dtype
    assert len(state) == layer.num_layers * layer.num_directions
    if bool(torch.isfinite(x).all()) and dtype != torch.bfloat16:
        assert bool(torch.isfinite(output).all())


@pytest.mark.parametrize("cell_class", [ConvLSTMCell, ConvGRUCell])
@FUZZ
@given(drawn=layer_arguments(), data=st.data())
def test_cells_work_or_raise_value_errors(
    cell_class: Any, drawn: tuple[dict[str, Any], list[str]], data: st.DataObject
) -> None:
    all_arguments, invalid = drawn
    arguments = {k: v for k, v in all_arguments.items() if k in CELL_ARGUMENTS}
    valid = must_work(arguments, [name for name in invalid if name in CELL_ARGUMENTS])
    try:
        cell = cell_class(arguments.pop("in_channels"), arguments.pop("hidden_channels"), **arguments)
    except ValueError as error:
        _refused(error, allowed=not valid)
        return
    x, valid_input = frames(
        data, leading=1, channels=cell.in_channels, spatial_dims=cell.spatial_dims, dtype=torch.float32
    )
    state: Any = None
    valid_state = True
    if data.draw(st.booleans()):
        fits = x.ndim == 2 + cell.spatial_dims
        expected = (x.shape[0], cell.hidden_channels, *cell.state_size(x.shape[2:])) if fits else (1, 1, 1)
        shape = [max(n, 1) for n in expected]
        if data.draw(st.integers(0, 3)) == 0:
            shape[data.draw(st.integers(0, len(shape) - 1))] += 1
            valid_state = False
        dtype = data.draw(st.sampled_from([torch.float32] * 3 + [torch.float64, torch.int64]))
        valid_state = valid_state and dtype == torch.float32 and [max(n, 1) for n in expected] == list(expected)
        h = torch.zeros(shape, dtype=dtype)
        state = (h, h.clone()) if cell_class is ConvLSTMCell else h
    try:
        with torch.no_grad():
            result = cell(x, state)
    except ValueError as error:
        _refused(error, allowed=not (valid and valid_input and valid_state))
        return
    h = result[0] if cell_class is ConvLSTMCell else result
    assert h.shape == (x.shape[0], cell.hidden_channels, *cell.state_size(x.shape[2:]))
    assert h.dtype == x.dtype


def test_a_refused_valid_call_fails_the_fuzz_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fuzz tests can fail: a cell or layer that refuses a valid width with a clear ValueError is caught."""
    cell_forward, layer_forward = ConvLSTMCell.forward, ConvLSTM.forward

    def cell_refusing_one(self: ConvLSTMCell, x: Any, state: Any = None) -> Any:
        if self.hidden_channels == 1:
            raise ValueError("hidden_channels=1 refused: a planted bug with a clear message")
        return cell_forward(self, x, state)

    def layer_refusing_one(self: ConvLSTM, x: Any, *args: Any, **kwargs: Any) -> Any:
        if self.cell(0).hidden_channels == 1:
            raise ValueError("hidden_channels=1 refused: a planted bug with a clear message")
        return layer_forward(self, x, *args, **kwargs)

    monkeypatch.setattr(ConvLSTMCell, "forward", cell_refusing_one)
    monkeypatch.setattr(ConvLSTM, "forward", layer_refusing_one)
    with pytest.raises(AssertionError, match="valid arguments and input were refused"):
        test_cells_work_or_raise_value_errors(cell_class=ConvLSTMCell)
    with pytest.raises(AssertionError, match="valid arguments and input were refused"):
        test_sequence_layers_work_or_raise_value_errors(layer_class=ConvLSTM)


CELL_ARGUMENTS = {
    "in_channels",
    "hidden_channels",
    "kernel_size",
    "spatial_dims",
    "stride",
    "padding",
    "dilation",
    "recurrent_kernel_size",
    "norm",
    "norm_groups",
    "activation",
    "recurrent_dropout",
}


@pytest.mark.parametrize(
    ("arguments", "match"),
    [
        ({"in_channels": 1, "hidden_channels": 10**7}, "would hold"),
        ({"in_channels": 10**6, "hidden_channels": 10**6}, "would hold"),
        ({"in_channels": 1, "hidden_channels": 64, "kernel_size": 10**5}, "would hold"),
        ({"in_channels": 4, "hidden_channels": 4, "kernel_size": 10**4, "spatial_dims": 3}, "would hold"),
    ],
)
def test_absurd_sizes_are_refused_before_allocating(arguments: dict[str, Any], match: str) -> None:
    """Each of these needs a weight of petabytes: refused by a size check before anything is allocated, not by the
    allocator (or the OOM killer). The first one's input-to-state weight alone would take 1.4 GB: the peak memory
    of this process shows that it was not allocated either."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    for layer_class in (ConvLSTM, ConvGRU):
        with pytest.raises(ValueError, match=match):
            layer_class(**arguments)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 200_000


def test_the_size_limit_sits_above_real_models() -> None:
    wide = ConvLSTM(256, 256, 5)  # Shi et al.'s widest layer: far below the limit
    assert wide.cell(0).recurrent_conv.weight.numel() < MAX_WEIGHT_ELEMENTS // 100


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_layers_run_in_their_parameters_dtype(dtype: torch.dtype) -> None:
    x = torch.rand(2, 3, 1, 6, 6, dtype=dtype)
    for layer_class in (ConvLSTM, ConvGRU):
        layer = layer_class(1, 2).to(dtype)
        output, _ = layer(x)
        assert output.dtype == dtype and bool(torch.isfinite(output).all())
        with pytest.raises(ValueError, match=f"has dtype {dtype} but the cell's parameters are torch.float32"):
            layer_class(1, 2)(x)


def test_autocast_may_mix_dtypes() -> None:
    layer = ConvLSTM(1, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output, _ = layer(torch.rand(2, 3, 1, 6, 6, dtype=torch.bfloat16))
    assert output.shape == (2, 3, 2, 6, 6)


def test_nan_and_inf_inputs_propagate_without_error() -> None:
    """Layers, like torch.nn.LSTM, do not scan their inputs (a device sync per call); NaN shows in the output."""
    x = torch.rand(1, 2, 1, 5, 5)
    x[0, 0, 0, 2, 2] = float("nan")
    output, _ = ConvLSTM(1, 2)(x)
    assert bool(torch.isnan(output).any())
