"""TrajGRU: shapes, gradients, chunked runs, and the zero-flow case against ConvGRU."""

import pytest
import torch

from convlstm.layers import ConvGRUCell, TrajGRU, TrajGRUCell
from convlstm.layers.trajgru import warp


def _cell(**kwargs: object) -> TrajGRUCell:
    torch.manual_seed(0)
    return TrajGRUCell(2, 4, 3, links=3, flow_channels=6, **kwargs)  # type: ignore[arg-type]


def test_cell_and_stack_shapes() -> None:
    cell = _cell()
    h = cell(torch.randn(2, 2, 9, 7))
    assert h.shape == (2, 4, 9, 7)
    assert cell(torch.randn(2, 2, 9, 7), h).shape == (2, 4, 9, 7)
    layer = TrajGRU(2, [4, 5], num_layers=2, links=[3, 2], flow_channels=6)
    out, state = layer(torch.randn(2, 6, 2, 8, 8))
    assert out.shape == (2, 6, 5, 8, 8)
    assert [s.shape for s in state] == [(2, 4, 8, 8), (2, 5, 8, 8)]
    # A stack without input runs from a state; x only carries the step count and the frame size.
    free = TrajGRU(0, [4, 5], num_layers=2, links=2, flow_channels=6)
    out, _ = free(torch.empty(2, 3, 0, 8, 8), state)
    assert out.shape == (2, 3, 5, 8, 8) and torch.isfinite(out).all()


def test_every_parameter_gets_a_gradient() -> None:
    layer = TrajGRU(2, [4, 4], num_layers=2, links=3, flow_channels=6)
    out, _ = layer(torch.randn(2, 4, 2, 8, 8))
    out.square().sum().backward()
    missing = [n for n, p in layer.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_frame_by_frame_equals_one_call() -> None:
    torch.manual_seed(1)
    layer = TrajGRU(2, [4, 3], num_layers=2, links=[3, 2], flow_channels=6)
    x = torch.randn(2, 5, 2, 8, 8)
    with torch.no_grad():
        whole, whole_state = layer(x)
        state = None
        frames = []
        for t in range(5):
            out, state = layer(x[:, t : t + 1], state)
            frames.append(out)
    # The same float32 operations in the same order: equal up to scheduling-dependent summation order.
    torch.testing.assert_close(torch.cat(frames, dim=1), whole, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(state, whole_state, atol=1e-6, rtol=1e-5)


def test_warp_by_a_whole_pixel_shifts_with_zeros_at_the_border() -> None:
    h = torch.randn(1, 2, 5, 6, dtype=torch.float64)
    flows = torch.zeros(1, 4, 5, 6, dtype=torch.float64)
    flows[:, 0] = 1.0  # link 0: dx = +1 (reads the right neighbour)
    flows[:, 3] = -2.0  # link 1: dy = -2 (reads two rows up)
    out = warp(h, flows)
    right = torch.zeros_like(h)
    right[..., :-1] = h[..., 1:]
    up = torch.zeros_like(h)
    up[..., 2:, :] = h[..., :-2, :]
    # float64 bilinear weights at integer positions are 0 or 1 up to the rounding of the grid normalisation.
    torch.testing.assert_close(out[:, 0], right, atol=1e-12, rtol=0)
    torch.testing.assert_close(out[:, 1], up, atol=1e-12, rtol=0)


def test_zero_flow_is_a_convgru_step_with_a_1x1_recurrent_kernel_summed_over_links() -> None:
    cell = _cell(activation="tanh").double()
    with torch.no_grad():
        cell.flow_out.weight.zero_()
        cell.flow_out.bias.zero_()  # type: ignore[union-attr]
    gru = ConvGRUCell(2, 4, 3, recurrent_kernel_size=1, reset_after=True).double()
    assert cell.input_conv is not None and gru.input_conv is not None
    assert gru.bias is not None and gru.recurrent_bias is not None
    with torch.no_grad():
        gru.input_conv.weight.copy_(cell.input_conv.weight)
        gru.bias.copy_(cell.input_conv.bias)  # type: ignore[arg-type]
        f, links = 4, 3
        gru.recurrent_conv.weight.copy_(cell.recurrent_conv.weight.unflatten(1, (links, f)).sum(dim=1))
        gru.recurrent_bias.copy_(cell.recurrent_conv.bias)  # type: ignore[arg-type]
    x, h = torch.randn(2, 2, 6, 5, dtype=torch.float64), torch.randn(2, 4, 6, 5, dtype=torch.float64)
    # float64 throughout; the only difference is summation order and the identity resampling (exact to ~1e-15).
    torch.testing.assert_close(cell(x, h), gru(x, h), atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(cell(x), gru(x), atol=1e-10, rtol=1e-10)


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        TrajGRUCell(1, 4, 4)
    with pytest.raises(ValueError, match="links must be an int >= 1"):
        TrajGRUCell(1, 4, links=0)
    with pytest.raises(ValueError, match="links must be an int or have num_layers=2"):
        TrajGRU(1, 4, num_layers=2, links=[3])
    cell = _cell()
    with pytest.raises(ValueError, match=r"x must have shape \(B, C=2, H, W\)"):
        cell(torch.randn(2, 3, 5, 5))
    with pytest.raises(ValueError, match=r"state must have shape \(2, 4, 5, 5\)"):
        cell(torch.randn(2, 2, 5, 5), torch.randn(2, 4, 5, 4))
    with pytest.raises(ValueError, match="x must have shape"):
        TrajGRU(2, 4)(torch.randn(2, 3, 1, 5, 5))
