import pytest
import torch
from torch import nn

from convlstm import ConvGRUCell, ConvLSTMCell
from convlstm.layers import DEFAULT_FORGET_BIAS, get_activation
from tests.layers.reference import randomize_
from tests.tolerances import FLOAT32_REORDERED


def test_1x1_lstm_cell_equals_torch_lstm_cell() -> None:
    torch.manual_seed(0)
    ref = nn.LSTMCell(3, 5)
    cell = ConvLSTMCell(3, 5, kernel_size=1)
    assert cell.input_conv is not None
    with torch.no_grad():
        cell.input_conv.weight.copy_(ref.weight_ih.view(20, 3, 1, 1))
        cell.recurrent_conv.weight.copy_(ref.weight_hh.view(20, 5, 1, 1))
        cell.bias.copy_(ref.bias_ih + ref.bias_hh)  # type: ignore[union-attr]
    x = torch.randn(6, 4, 3)
    state, ref_state = None, None
    for t in range(6):
        state = cell(x[t].view(4, 3, 1, 1), state)
        ref_state = ref(x[t], ref_state)
        # float32: the same sums in another order (tests/tolerances.py)
        torch.testing.assert_close(state[0].view(4, 5), ref_state[0], **FLOAT32_REORDERED)
        # float32: the same sums in another order (tests/tolerances.py)
        torch.testing.assert_close(state[1].view(4, 5), ref_state[1], **FLOAT32_REORDERED)


def test_1x1_gru_cell_equals_torch_gru_cell() -> None:
    torch.manual_seed(0)
    ref = nn.GRUCell(3, 5)
    cell = ConvGRUCell(3, 5, kernel_size=1)
    assert cell.input_conv is not None
    with torch.no_grad():
        cell.input_conv.weight.copy_(ref.weight_ih.view(15, 3, 1, 1))
        cell.recurrent_conv.weight.copy_(ref.weight_hh.view(15, 5, 1, 1))
        cell.bias.copy_(ref.bias_ih)  # type: ignore[union-attr]
        cell.recurrent_bias.copy_(ref.bias_hh)  # type: ignore[union-attr]
    x = torch.randn(6, 4, 3)
    h, ref_h = None, None
    for t in range(6):
        h = cell(x[t].view(4, 3, 1, 1), h)
        ref_h = ref(x[t], ref_h)
        # float32: the same sums in another order (tests/tolerances.py)
        torch.testing.assert_close(h.view(4, 5), ref_h, **FLOAT32_REORDERED)


def test_peepholes_follow_shi_eq3() -> None:
    torch.manual_seed(0)
    cell = ConvLSTMCell(2, 3, kernel_size=3, peephole=True)
    randomize_(cell)
    x, h, c = torch.randn(2, 2, 5, 5), torch.randn(2, 3, 5, 5), torch.randn(2, 3, 5, 5)
    h_new, c_new = cell(x, (h, c))
    pre = torch.nn.functional.conv2d(x, cell.input_conv.weight, cell.bias, padding=1)  # type: ignore[union-attr]
    pre = pre + torch.nn.functional.conv2d(h, cell.recurrent_conv.weight, padding=1)
    wx_i, wx_f, wx_c, wx_o = pre.chunk(4, dim=1)
    w_ci, w_cf, w_co = (w.view(1, 3, 1, 1) for w in cell.peephole)  # type: ignore[union-attr]
    i = torch.sigmoid(wx_i + w_ci * c)
    f = torch.sigmoid(wx_f + w_cf * c)
    expected_c = f * c + i * torch.tanh(wx_c)
    o = torch.sigmoid(wx_o + w_co * expected_c)  # W_co acts on the new cell C_t
    torch.testing.assert_close(c_new, expected_c)
    torch.testing.assert_close(h_new, o * torch.tanh(expected_c))


def test_neural_gpu_cgru_follows_kaiser_sutskever() -> None:
    torch.manual_seed(0)
    cell = ConvGRUCell.neural_gpu(4, kernel_size=3)
    # gate biases start at +1, the candidate's at 0
    torch.testing.assert_close(cell.bias, torch.tensor([1.0] * 8 + [0.0] * 4))  # type: ignore[arg-type]
    randomize_(cell)
    s = torch.randn(2, 4, 6, 6)
    w = cell.recurrent_conv.weight
    b = cell.bias
    assert b is not None

    def sat(v: torch.Tensor) -> torch.Tensor:
        return (1.2 * torch.sigmoid(v) - 0.1).clamp(0, 1)

    conv = torch.nn.functional.conv2d
    r = sat(conv(s, w[:4], b[:4], padding=1))
    u = sat(conv(s, w[4:8], b[4:8], padding=1))
    expected = u * s + (1 - u) * torch.tanh(conv(r * s, w[8:], b[8:], padding=1))
    torch.testing.assert_close(cell(None, s), expected)


def test_default_forget_bias_is_documented_value() -> None:
    assert DEFAULT_FORGET_BIAS == 1.0
    cell = ConvLSTMCell(2, 3)
    assert cell.bias is not None
    torch.testing.assert_close(cell.bias, torch.tensor([0.0] * 3 + [1.0] * 3 + [0.0] * 6))
    custom = ConvLSTMCell(2, 3, forget_bias=2.5)
    torch.testing.assert_close(custom.bias[3:6], torch.full((3,), 2.5))  # type: ignore[index]
    normed = ConvLSTMCell(2, 3, norm="layer")
    assert normed.bias is None and normed.gate_norm is not None
    torch.testing.assert_close(normed.gate_norm.bias, torch.tensor([0.0] * 3 + [1.0] * 3 + [0.0] * 6))
    # and the forget bias really reaches the gate: with zero weights, c' = sigmoid(1) * c
    zero = ConvLSTMCell(1, 2, kernel_size=1)
    with torch.no_grad():
        zero.input_conv.weight.zero_()  # type: ignore[union-attr]
        zero.recurrent_conv.weight.zero_()
    c = torch.randn(1, 2, 1, 1)
    _, c_new = zero(torch.zeros(1, 1, 1, 1), (torch.zeros_like(c), c))
    torch.testing.assert_close(c_new, torch.sigmoid(torch.tensor(1.0)) * c)


def test_activation_definitions() -> None:
    x = torch.tensor([-4.0, -1.0, 0.0, 1.0, 4.0])
    torch.testing.assert_close(get_activation("hard_sigmoid_keras2")(x), torch.tensor([0.0, 0.3, 0.5, 0.7, 1.0]))
    torch.testing.assert_close(
        get_activation("hard_sigmoid")(x), torch.tensor([0.0, 1 / 3, 0.5, 2 / 3, 1.0]), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(get_activation("relu")(x), x.clamp(min=0))
    with pytest.raises(ValueError, match=r"recurrent_activation must be one of .* got 'swishy'"):
        ConvLSTMCell(1, 2, recurrent_activation="swishy")


@pytest.mark.parametrize("cell_type", [ConvLSTMCell, ConvGRUCell])
@pytest.mark.parametrize(
    ("dims", "kernel"),
    [(1, 4), (2, (2, 3)), (2, 4), (3, 2), (3, (3, 2, 1))],
    ids=["1d-even", "2d-mixed", "2d-even", "3d", "3d-mixed"],
)
def test_same_padding_keeps_size_for_any_kernel(cell_type: type, dims: int, kernel: object) -> None:
    size = (7, 6, 5)[:dims]
    cell = cell_type(2, 3, kernel, spatial_dims=dims)
    out = cell(torch.randn(2, 2, *size))
    h = out[0] if isinstance(out, tuple) else out
    assert h.shape == (2, 3, *size)
    h2 = cell(torch.randn(2, 2, *size), out)
    assert (h2[0] if isinstance(h2, tuple) else h2).shape == (2, 3, *size)


def test_even_kernel_puts_extra_padding_after() -> None:
    # A 2-tap kernel [0, 1] at "same" reads x[t + 1] (extra pad after), as TensorFlow and Keras do.
    cell = ConvLSTMCell(1, 1, kernel_size=2, spatial_dims=1, forget_bias=0.0)
    with torch.no_grad():
        cell.input_conv.weight.zero_()  # type: ignore[union-attr]
        cell.input_conv.weight[2, 0, 1] = 1.0  # type: ignore[union-attr]  # g gate reads the right neighbour
    x = torch.tensor([[[1.0, 2.0, 3.0]]])
    _, c = cell(x)
    expected_g = torch.tanh(torch.tensor([2.0, 3.0, 0.0]))
    torch.testing.assert_close(c.view(3), 0.5 * expected_g)


def test_dilation_and_stride_and_valid_padding_sizes() -> None:
    cell = ConvLSTMCell(1, 2, kernel_size=3, stride=2, padding="valid")
    h, _ = cell(torch.randn(1, 1, 9, 8))
    assert h.shape == (1, 2, 4, 3)
    same_strided = ConvLSTMCell(1, 2, kernel_size=3, stride=2)
    assert same_strided(torch.randn(1, 1, 9, 8))[0].shape == (1, 2, 5, 4)
    dilated = ConvLSTMCell(1, 2, kernel_size=3, dilation=2)
    assert dilated(torch.randn(1, 1, 9, 8))[0].shape == (1, 2, 9, 8)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ConvLSTMCell(2, 3, kernel_size=3, peephole=True),
        lambda: ConvLSTMCell(2, 4, kernel_size=2, norm="group", norm_groups=2),
        lambda: ConvLSTMCell(2, 3, kernel_size=(3, 1), norm="layer", activation="relu"),
        lambda: ConvGRUCell(2, 3, kernel_size=3),
        lambda: ConvGRUCell(2, 3, kernel_size=3, reset_after=False, norm="layer"),
    ],
    ids=["lstm-peephole", "lstm-group-norm", "lstm-layer-norm", "gru", "gru-reset-before"],
)
def test_gradcheck_float64(make: object) -> None:
    torch.manual_seed(0)
    cell = make().double()  # type: ignore[operator]
    randomize_(cell)
    x = torch.randn(2, 2, 4, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, cell.hidden_channels, 4, 3, dtype=torch.float64, requires_grad=True)
    if isinstance(cell, ConvLSTMCell):
        c0 = torch.randn_like(h0, requires_grad=True)
        assert torch.autograd.gradcheck(lambda a, b, c: cell(a, (b, c)), (x, h0, c0))
    else:
        assert torch.autograd.gradcheck(lambda a, b: cell(a, b), (x, h0))


def test_dtype_follows_module_and_input() -> None:
    cell = ConvLSTMCell(1, 2).double()
    h, c = cell(torch.randn(1, 1, 5, 5, dtype=torch.float64))
    assert h.dtype == c.dtype == torch.float64


@pytest.mark.parametrize("cell_type", [ConvLSTMCell, ConvGRUCell])
def test_finite_under_bf16_autocast(cell_type: type) -> None:
    cell = cell_type(3, 4, norm="group", norm_groups=2)
    x = torch.randn(2, 3, 8, 8) * 10
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = cell(x)
        out = cell(x, out)
    h = out[0] if isinstance(out, tuple) else out
    assert torch.isfinite(h.float()).all()


def test_norm_parameters_do_not_depend_on_frame_size() -> None:
    cell = ConvLSTMCell(1, 4, norm="layer")
    count = sum(p.numel() for p in cell.parameters())
    for size in (5, 17):
        assert cell(torch.randn(1, 1, size, size))[0].shape[-1] == size
    assert sum(p.numel() for p in cell.parameters()) == count


def test_layer_norm_normalizes_each_gate_over_channels() -> None:
    cell = ConvLSTMCell(1, 4, norm="layer")
    gates = torch.randn(2, 16, 3, 3) * 5 + 2
    assert cell.gate_norm is not None
    with torch.no_grad():
        cell.gate_norm.bias.zero_()
    normed = cell.gate_norm(gates).view(2, 4, 4, 3, 3)
    torch.testing.assert_close(normed.mean(dim=2), torch.zeros(2, 4, 3, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(normed.var(dim=2, unbiased=False), torch.ones(2, 4, 3, 3), atol=1e-3, rtol=0)


@pytest.mark.parametrize(
    ("kwargs", "x_shape", "match"),
    [
        ({}, (2, 3, 8), r"x must have 4 dimensions \(B, C=3, H, W\), got shape \(2, 3, 8\)"),
        ({}, (2, 5, 8, 8), r"x must have 3 channels in dim 1, got shape \(2, 5, 8, 8\)"),
        ({"padding": "valid", "kernel_size": 5}, (2, 3, 3, 3), "smaller than the kernel"),
    ],
)
def test_bad_input_raises_clear_errors(kwargs: dict, x_shape: tuple, match: str) -> None:
    cell = ConvLSTMCell(3, 4, **kwargs)
    with pytest.raises(ValueError, match=match):
        cell(torch.randn(*x_shape))


def test_bad_state_and_arguments_raise_clear_errors() -> None:
    cell = ConvLSTMCell(3, 4)
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match=r"state h must have shape \(2, 4, 8, 8\), got \(2, 4, 7, 8\)"):
        cell(x, (torch.zeros(2, 4, 7, 8), torch.zeros(2, 4, 8, 8)))
    with pytest.raises(ValueError, match="state must be a pair"):
        cell(x, torch.zeros(2, 4, 8, 8))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hidden_channels must be an int >= 1, got 0"):
        ConvLSTMCell(3, 0)
    with pytest.raises(ValueError, match=r"kernel_size must be >= 1 in every dimension, got -3"):
        ConvLSTMCell(3, 4, kernel_size=-3)
    with pytest.raises(ValueError, match=r"kernel_size must be an int or 2 ints, got \(3, 3, 3\)"):
        ConvLSTMCell(3, 4, kernel_size=(3, 3, 3))
    with pytest.raises(ValueError, match=r"padding must be one of \['same', 'valid'\], got 'full'"):
        ConvLSTMCell(3, 4, padding="full")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"spatial_dims must be an int in \[1, 3\], got 4"):
        ConvLSTMCell(3, 4, spatial_dims=4)
    with pytest.raises(ValueError, match=r"input_dropout must be a probability in \[0, 1\), got 1.5"):
        ConvLSTMCell(3, 4, input_dropout=1.5)
    with pytest.raises(ValueError, match="norm must be one of"):
        ConvLSTMCell(3, 4, norm="batch")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="norm_groups must divide hidden_channels=4, got 3"):
        ConvLSTMCell(3, 4, norm="group", norm_groups=3)
    with pytest.raises(ValueError, match="needs a state"):
        ConvGRUCell(0, 4)(None)
