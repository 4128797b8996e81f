from typing import Any

import pytest
import torch

from convlstm import ConvGRU, ConvGRUCell, ConvLSTM, ConvLSTMCell
from tests.layers.reference import randomize_, reference_conv_gru, reference_conv_lstm
from tests.tolerances import FLOAT32_REORDERED

LAYERS = [ConvLSTM, ConvGRU]


def _hidden(state: Any) -> torch.Tensor:
    return state[0] if isinstance(state, tuple) else state


@pytest.mark.parametrize("schedule", ["batched", "per_step", "fused"])
@pytest.mark.parametrize("peephole", [False, True])
def test_lstm_schedules_match_straightforward_formulation(schedule: str, peephole: bool) -> None:
    """Outputs and gradients equal the one-conv-over-cat([x, h]) loop to 1e-5 in float32."""
    torch.manual_seed(0)
    layer = ConvLSTM(3, 6, kernel_size=3, peephole=peephole, input_schedule=schedule)  # type: ignore[arg-type]
    randomize_(layer, scale=0.3)
    x = torch.randn(2, 7, 3, 9, 8, requires_grad=True)
    out, [(h, c)] = layer(x)
    ref_out, (ref_h, ref_c) = reference_conv_lstm(layer.cell(0), x)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h, ref_h, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(c, ref_c, atol=1e-5, rtol=1e-5)
    weights = torch.randn_like(out)
    grads = torch.autograd.grad((out * weights).sum(), [x, *layer.parameters()])
    ref_grads = torch.autograd.grad((ref_out * weights).sum(), [x, *layer.parameters()])
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("schedule", ["batched", "per_step"])
def test_gru_schedules_match_straightforward_formulation(schedule: str) -> None:
    torch.manual_seed(0)
    layer = ConvGRU(3, 5, kernel_size=3, input_schedule=schedule)  # type: ignore[arg-type]
    randomize_(layer, scale=0.3)
    x = torch.randn(2, 6, 3, 7, 7, requires_grad=True)
    out, [h] = layer(x)
    ref_out, ref_h = reference_conv_gru(layer.cell(0), x)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h, ref_h, atol=1e-5, rtol=1e-5)
    grads = torch.autograd.grad(out.sum(), [x, *layer.parameters()])
    ref_grads = torch.autograd.grad(ref_out.sum(), [x, *layer.parameters()])
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layer_type", LAYERS)
def test_frame_by_frame_equals_sequence_call(layer_type: type) -> None:
    torch.manual_seed(0)
    layer = layer_type(2, [4, 3], kernel_size=[3, (1, 3)], num_layers=2)
    x = torch.randn(2, 5, 2, 6, 6)
    out, state = layer(x)
    step_state = None
    for t in range(5):
        step_out, step_state = layer(x[:, t : t + 1], step_state)
        # float32: the same sums in another order (tests/tolerances.py)
        torch.testing.assert_close(step_out[:, 0], out[:, t], **FLOAT32_REORDERED)
    for a, b in zip(state, step_state, strict=True):
        # float32: the same sums in another order (tests/tolerances.py)
        torch.testing.assert_close(_hidden(a), _hidden(b), **FLOAT32_REORDERED)


@pytest.mark.parametrize("layer_type", LAYERS)
def test_chunks_equal_one_call_and_cells_agree(layer_type: type) -> None:
    torch.manual_seed(0)
    layer = layer_type(2, 4, num_layers=2, peephole=True) if layer_type is ConvLSTM else layer_type(2, 4, num_layers=2)
    x = torch.randn(3, 9, 2, 5, 7)
    out, state = layer(x)
    first, mid = layer(x[:, :4])
    second, last = layer(x[:, 4:], mid)
    # float32: the same sums in another order (tests/tolerances.py)
    torch.testing.assert_close(torch.cat([first, second], dim=1), out, **FLOAT32_REORDERED)
    for whole, chunked in zip(state, last, strict=True):
        # float32: the same sums in another order (tests/tolerances.py)
        torch.testing.assert_close(_hidden(whole), _hidden(chunked), **FLOAT32_REORDERED)
    # the same stack run by hand, cell by cell
    h0: Any = None
    h1: Any = None
    for t in range(9):
        h0 = layer.cell(0)(x[:, t], h0)
        h1 = layer.cell(1)(_hidden(h0), h1)
        # float32: the same sums in another order (tests/tolerances.py)
        torch.testing.assert_close(_hidden(h1), out[:, t], **FLOAT32_REORDERED)


@pytest.mark.parametrize("layer_type", LAYERS)
def test_causal(layer_type: type) -> None:
    torch.manual_seed(0)
    layer = layer_type(1, 3, num_layers=2)
    x = torch.randn(1, 8, 1, 6, 6)
    out, _ = layer(x)
    x2 = x.clone()
    x2[:, 5:] = torch.randn(1, 3, 1, 6, 6)
    out2, _ = layer(x2)
    torch.testing.assert_close(out[:, :5], out2[:, :5])
    assert not torch.allclose(out[:, 5:], out2[:, 5:])


@pytest.mark.parametrize("layer_type", LAYERS)
def test_reverse_and_bidirectional(layer_type: type) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 5, 2, 6, 6)
    forward_only = layer_type(2, 3)
    backward_only = layer_type(2, 3, reverse=True)
    backward_only.load_state_dict(forward_only.state_dict())
    out_fw, _ = forward_only(x)
    out_bw, state_bw = backward_only(x)
    flipped, state_flipped = forward_only(x.flip(1))
    torch.testing.assert_close(out_bw, flipped.flip(1))  # aligned with the input frames
    torch.testing.assert_close(_hidden(state_bw[0]), _hidden(state_flipped[0]))
    both = layer_type(2, 3, bidirectional=True)
    both.cell(0, 0).load_state_dict(forward_only.cell(0).state_dict())
    both.cell(0, 1).load_state_dict(forward_only.cell(0).state_dict())
    out_both, state_both = both(x)
    assert out_both.shape == (2, 5, 6, 6, 6) and len(state_both) == 2
    torch.testing.assert_close(out_both[:, :, :3], out_fw)
    torch.testing.assert_close(out_both[:, :, 3:], out_bw)
    with pytest.raises(ValueError, match="reverse=True cannot be combined with bidirectional=True"):
        layer_type(2, 3, bidirectional=True, reverse=True)


@pytest.mark.parametrize("layer_type", LAYERS)
def test_forward_layers_and_per_layer_arguments(layer_type: type) -> None:
    layer = layer_type(1, [4, 6, 2], kernel_size=[5, 3, 1], num_layers=3, stride=[2, 1, 1], dilation=[1, 2, 1])
    outs, state = layer.forward_layers(torch.randn(2, 3, 1, 16, 12))
    assert [tuple(o.shape) for o in outs] == [(2, 3, 4, 8, 6), (2, 3, 6, 8, 6), (2, 3, 2, 8, 6)]
    assert layer.out_channels == 2 and len(state) == 3
    with pytest.raises(ValueError, match=r"hidden_channels must have num_layers=3 entries, got 2: \[4, 6\]"):
        layer_type(1, [4, 6], num_layers=3)


@pytest.mark.parametrize("layer_type", LAYERS)
@pytest.mark.parametrize(("dims", "size"), [(1, (11,)), (3, (5, 4, 3))])
def test_1d_and_3d_layers(layer_type: type, dims: int, size: tuple[int, ...]) -> None:
    layer = layer_type(2, 3, kernel_size=3, num_layers=2, spatial_dims=dims)
    out, _ = layer(torch.randn(2, 4, 2, *size))
    assert out.shape == (2, 4, 3, *size)


def test_odd_frame_sizes_with_stride_and_valid_padding() -> None:
    layer = ConvLSTM(1, 2, kernel_size=3, stride=2, padding="valid")
    out, [(h, c)] = layer(torch.randn(1, 3, 1, 11, 13))
    assert out.shape == (1, 3, 2, 5, 6) and h.shape == c.shape == (1, 2, 5, 6)


def test_layer_without_input_runs_from_state() -> None:
    torch.manual_seed(0)
    encoder = ConvLSTM(1, 3)
    forecaster = ConvLSTM(0, 3, peephole=True)
    _, state = encoder(torch.randn(2, 4, 1, 6, 6))
    out, _ = forecaster(torch.zeros(2, 5, 0, 6, 6), state)
    assert out.shape == (2, 5, 3, 6, 6) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="needs a state"):
        forecaster(torch.zeros(2, 5, 0, 6, 6))


@pytest.mark.parametrize("schedule", ["batched", "per_step"])
def test_keras_dropout_masks_are_fixed_over_time_and_train_only(schedule: str) -> None:
    torch.manual_seed(0)
    layer = ConvLSTM(2, 4, kernel_size=1, input_dropout=0.5, recurrent_dropout=0.5, input_schedule=schedule)  # type: ignore[arg-type]
    cell = layer.cell(0)
    with torch.no_grad():
        cell.recurrent_conv.weight.zero_()
        cell.bias[4:8] = -100.0  # type: ignore[index]  # f = 0: each step sees only its own input
    x = torch.randn(3, 1, 2, 5, 5).expand(3, 6, 2, 5, 5)  # the same frame at every step
    layer.train()
    out, _ = layer(x)
    for t in range(1, 6):
        torch.testing.assert_close(out[:, t], out[:, 0])  # one mask for all steps
    again, _ = layer(x)
    assert not torch.allclose(again, out)  # a new call draws new masks
    layer.eval()
    eval_out, _ = layer(x)
    plain = ConvLSTM(2, 4, kernel_size=1)
    plain.load_state_dict(layer.state_dict())
    torch.testing.assert_close(eval_out, plain(x)[0])


def test_dropout_masks_differ_per_gate() -> None:
    torch.manual_seed(0)
    cell = ConvLSTMCell(3, 2, kernel_size=1, input_dropout=0.5).train()
    masks, _ = cell.dropout_masks(torch.zeros(4, 3, 5, 5), 4, (5, 5))
    assert masks is not None and masks.shape == (4, 4, 3, 5, 5)
    assert not torch.equal(masks[:, 0], masks[:, 1])
    assert set(masks.unique().tolist()) <= {0.0, 2.0}


def test_dropout_between_layers_only_in_training() -> None:
    torch.manual_seed(0)
    layer = ConvGRU(1, 4, num_layers=2, dropout=0.5)
    x = torch.randn(2, 3, 1, 5, 5)
    layer.eval()
    a, _ = layer(x)
    b, _ = layer(x)
    torch.testing.assert_close(a, b)
    layer.train()
    c, _ = layer(x)
    assert not torch.allclose(a, c)


def test_every_parameter_gets_a_gradient() -> None:
    layer = ConvLSTM(2, [3, 4], num_layers=2, peephole=True, norm="group", bidirectional=True)
    out, _ = layer(torch.randn(2, 4, 2, 5, 5))
    out.square().sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("layer_type", LAYERS)
def test_bad_input_raises_clear_errors(layer_type: type) -> None:
    layer = layer_type(3, 4, num_layers=2)
    with pytest.raises(
        ValueError, match=r"x must have 5 dimensions \(B, T, C=3, 2 spatial\), got shape \(2, 3, 8, 8\)"
    ):
        layer(torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"x\[:, t\] must have 3 channels in dim 1, got shape \(2, 1, 8, 8\)"):
        layer(torch.randn(2, 4, 1, 8, 8))
    with pytest.raises(ValueError, match="at least one time step"):
        layer(torch.randn(2, 0, 3, 8, 8))
    with pytest.raises(ValueError, match=r"state must be a list of 2 entries \(one per layer and direction\)"):
        layer(torch.randn(2, 4, 3, 8, 8), [])
    _, state = layer(torch.randn(2, 4, 3, 8, 8))
    with pytest.raises(ValueError, match=r"state\[\d\].* must have shape \(1, 4, 8, 8\), got \(2, 4, 8, 8\)"):
        layer(torch.randn(1, 4, 3, 8, 8), state)
    with pytest.raises(ValueError, match="num_layers must be an int >= 1, got 0"):
        layer_type(3, 4, num_layers=0)
    with pytest.raises(ValueError, match="input_schedule must be"):
        layer_type(3, 4, input_schedule="fast")


def test_fused_schedule_needs_matching_geometry() -> None:
    x = torch.randn(1, 3, 2, 6, 6)
    with pytest.raises(ValueError, match="input_schedule='fused' needs LSTM cells with stride 1"):
        ConvLSTM(2, 3, stride=2, input_schedule="fused")(x)
    with pytest.raises(ValueError, match="input_schedule='fused' needs"):
        ConvGRU(2, 3, input_schedule="fused")(x)
    with pytest.raises(ValueError, match="input_schedule='fused' needs"):
        ConvLSTM(2, 3, input_dropout=0.1, input_schedule="fused").train()(x)
    assert ConvLSTM(2, 3, recurrent_kernel_size=1).cell(0).can_fuse is False
    assert ConvLSTM(2, 3, kernel_size=(3, 5)).cell(0).can_fuse is True


def test_fused_schedule_with_norm_and_state_matches_per_step() -> None:
    torch.manual_seed(0)
    fused = ConvLSTM(2, 4, num_layers=2, norm="layer", peephole=True, input_schedule="fused")
    per_step = ConvLSTM(2, 4, num_layers=2, norm="layer", peephole=True, input_schedule="per_step")
    randomize_(fused, scale=0.3)
    per_step.load_state_dict(fused.state_dict())
    x = torch.randn(2, 5, 2, 6, 7)
    _, state = per_step(x)
    a, _ = fused(x, state)
    b, _ = per_step(x, state)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_auto_schedule_choices() -> None:
    from convlstm.layers.schedule import choose_schedule

    assert choose_schedule(torch.zeros(16, 2, 1, 4, 4), can_fuse=True) == "fused"  # CPU
    assert choose_schedule(torch.zeros(16, 2, 1, 4, 4), can_fuse=False) == "per_step"


def test_cells_are_the_documented_types() -> None:
    assert isinstance(ConvLSTM(1, 2).cell(0), ConvLSTMCell)
    assert isinstance(ConvGRU(1, 2).cell(0), ConvGRUCell)
