"""MIM's cells: the peephole LSTM of MIM-N and MIM-S (per-pixel peepholes) and the MIM block."""

import pytest
import torch
from torch import nn

from convlstm.layers import MIMBlock, PeepholeLSTMCell


def _cell(**kwargs: object) -> PeepholeLSTMCell:
    torch.manual_seed(0)
    return PeepholeLSTMCell(3, 4, 3, 8, 8, **kwargs)  # type: ignore[arg-type]


def _block(**kwargs: object) -> MIMBlock:
    torch.manual_seed(0)
    return MIMBlock(3, 4, 3, 8, 8, **kwargs)  # type: ignore[arg-type]


def test_peephole_cell_shapes_and_zero_state() -> None:
    cell = _cell()
    x = torch.rand(2, 3, 8, 8)
    h, c = cell(x)
    assert h.shape == c.shape == (2, 4, 8, 8)
    zeros = torch.zeros(2, 4, 8, 8)
    for a, b in zip((h, c), cell(x, (zeros, zeros)), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_peepholes_start_at_zero_and_weigh_each_pixel_apart() -> None:
    cell = _cell()
    x, state = torch.rand(1, 3, 8, 8), (torch.rand(1, 4, 8, 8), torch.rand(1, 4, 8, 8))
    assert not cell.peephole_c.any() and not cell.peephole_o.any()
    before = cell(x, state)
    with torch.no_grad():
        cell.peephole_c[:, 2, 5] = 3.0  # one pixel's input and forget peepholes
        cell.peephole_o[:, 6, 1] = -3.0  # another pixel's output peephole
    after = cell(x, state)
    moved = [((a - b).abs().sum(dim=(0, 1)) > 0).nonzero().tolist() for a, b in zip(before, after, strict=True)]
    assert moved == [[[2, 5], [6, 1]], [[2, 5]]]  # h' moves at both pixels, c' at the first only


def test_peephole_cell_is_a_convlstm_without_peepholes_at_first() -> None:
    """With zero peepholes: c' = σ(f + b_f) c + σ(i) tanh(g), h' = σ(o) tanh(c'), gates in the order i, g, f, o."""
    cell = _cell(forget_bias=0.5)
    x, (h, c) = torch.rand(2, 3, 8, 8), (torch.rand(2, 4, 8, 8), torch.rand(2, 4, 8, 8))
    gates = cell.conv_x(x) + cell.conv_h(h)
    i, g, f, o = gates.split(4, dim=1)
    c_new = torch.sigmoid(f + 0.5) * c + torch.sigmoid(i) * torch.tanh(g)
    for a, b in zip(cell(x, (h, c)), (torch.sigmoid(o) * torch.tanh(c_new), c_new), strict=True):
        torch.testing.assert_close(a, b)


def test_block_shapes_and_what_its_memories_read() -> None:
    block = _block()
    x, d = torch.rand(2, 3, 8, 8), torch.rand(2, 4, 8, 8)
    h, c, m, n = block(x)
    assert h.shape == c.shape == m.shape == n.shape == (2, 4, 8, 8)
    zeros = torch.zeros(2, 4, 8, 8)
    for a, b in zip((h, c, m, n), block(x, zeros, (zeros,) * 4), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    state = tuple(torch.rand(2, 4, 8, 8) for _ in range(4))
    base = block(x, d, state)  # type: ignore[arg-type]
    # m' reads x and m only: another d (MIM-S's input) moves c' and n' but leaves m' as it was.
    other = block(x, d + 1, state)  # type: ignore[arg-type]
    torch.testing.assert_close(other[2], base[2], rtol=0, atol=0)
    assert not torch.allclose(other[1], base[1]) and not torch.allclose(other[3], base[3])
    # c' is MIM-S's output plus the input gate's increment: MIM-S sees c as its hidden state and n as its memory.
    kept, n_new = block.stationary(d, (state[1], state[3]))
    torch.testing.assert_close(n_new, base[3], rtol=0, atol=0)
    i_x, g_x, _, _ = block.conv_x(x).split(4, dim=1)
    i_h, g_h, _ = block.conv_h(state[0]).split(4, dim=1)
    torch.testing.assert_close(base[1], kept + torch.sigmoid(i_x + i_h) * torch.tanh(g_x + g_h))


def test_every_parameter_gets_a_gradient_and_layer_norm_is_per_channel() -> None:
    block = _block(layer_norm=True)
    with torch.no_grad():
        for name, parameter in block.named_parameters():
            if "peephole" in name:
                parameter.uniform_(-1, 1)  # zero peepholes pass no gradient on to c through them
    x, d = torch.rand(2, 3, 8, 8), torch.rand(2, 4, 8, 8)
    out = block(x, d, block(x, d))
    sum(t.sum() for t in out).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in block.parameters())
    norms = [m for m in block.modules() if isinstance(m, nn.GroupNorm)]
    assert len(norms) == 5 and all(norm.num_groups == 1 for norm in norms)  # conv_x, conv_h, conv_m, MIM-S's two


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: _cell()(torch.rand(2, 3, 4, 4)), r"x must be 8x8 \(H x W: the peepholes are per pixel\), got 4x4"),
        (lambda: _cell()(torch.rand(2, 5, 8, 8)), r"x must have shape \(B, C=3, H, W\), got \(2, 5, 8, 8\)"),
        (
            lambda: _block()(torch.rand(2, 3, 8, 8), torch.rand(2, 4, 4, 4)),
            r"state d must have shape \(2, 4, 8, 8\), got \(2, 4, 4, 4\)",
        ),
        (lambda: _block()(torch.rand(2, 3, 8, 8), None, (torch.rand(2, 4, 8, 8),) * 3), r"state must be a tuple"),
        (lambda: MIMBlock(3, 4, 2, 8, 8), "kernel_size must be odd"),
        (lambda: PeepholeLSTMCell(3, 4, 3, 0, 8), "height must be an int >= 1"),
    ],
)
def test_errors_name_what_was_expected(call: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()  # type: ignore[operator]
