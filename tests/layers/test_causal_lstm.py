"""PredRNN++'s Causal LSTM cell and Gradient Highway Unit: shapes, the zero state, the cascade of the two memories,
the highway's gate, layer norm and argument errors."""

import pytest
import torch

from convlstm.layers import CausalLSTMCell, GradientHighwayUnit


def _cell(**kwargs: object) -> CausalLSTMCell:
    torch.manual_seed(0)
    return CausalLSTMCell(3, 4, 3, **kwargs)  # type: ignore[arg-type]


def test_shapes_and_the_missing_state_is_zeros() -> None:
    cell = _cell()
    x = torch.rand(2, 3, 8, 8)
    h, c, m = cell(x)
    assert h.shape == c.shape == m.shape == (2, 4, 8, 8)
    zeros = torch.zeros(2, 4, 8, 8)
    for a, b in zip((h, c, m), cell(x, (zeros, zeros, zeros)), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    h2, _, _ = cell(x, (h, c, m))
    assert h2.shape == (2, 4, 8, 8) and not torch.equal(h2, h)


def test_the_temporal_memory_comes_first_and_gates_the_spatiotemporal_one() -> None:
    cell = _cell()
    x = torch.rand(2, 3, 8, 8)
    h, c, m = (torch.rand(2, 4, 8, 8) for _ in range(3))
    _, c_new, m_new = cell(x, (h, c, m))
    # c' reads x, h and c only: another m leaves it as it was ...
    _, c_other_m, m_other_m = cell(x, (h, c, m + 1))
    torch.testing.assert_close(c_other_m, c_new, rtol=0, atol=0)
    assert not torch.allclose(m_other_m, m_new)
    # ... while m' reads the new c': another c (same x, h, m) moves m' too.
    _, c_other_c, m_other_c = cell(x, (h, c + 1, m))
    assert not torch.allclose(c_other_c, c_new) and not torch.allclose(m_other_c, m_new)


def test_outputs_stay_bounded_as_the_gates_make_them() -> None:
    """o = tanh(.) and h' = o tanh(.): |h'| < 1; m' = f' tanh(.) + i' g' with f', i' in (0, 1): |m'| < 2."""
    cell = _cell()
    state = tuple(10 * torch.randn(2, 4, 8, 8) for _ in range(3))
    h, _, m = cell(10 * torch.randn(2, 3, 8, 8), state)  # type: ignore[arg-type]
    assert h.abs().max() < 1 and m.abs().max() < 2


def test_forget_bias_is_a_constant_and_every_weight_is_used() -> None:
    cell = _cell()
    names = {name for name, _ in cell.named_parameters()}
    assert names == {f"conv_{n}.0.weight" for n in ("x", "h", "c", "m", "c2m", "om")} | {"conv_last.weight"}
    x, state = torch.rand(1, 3, 6, 6), tuple(torch.rand(1, 4, 6, 6) for _ in range(3))
    _, c_high, _ = _cell(forget_bias=5.0)(x, state)  # type: ignore[arg-type]
    _, c_low, _ = _cell(forget_bias=-5.0)(x, state)  # type: ignore[arg-type]
    torch.testing.assert_close(c_high - c_low, state[1], atol=0.02, rtol=0)  # f ~ 1 keeps c, f ~ 0 drops it


def test_layer_norm_is_independent_of_the_frame_size() -> None:
    cell = _cell(layer_norm=True)
    plain = sum(p.numel() for p in _cell().parameters())
    # A per-channel scale and shift for each of the six gate convolutions (7F, 4F, 3F, 3F, 4F, F).
    assert sum(p.numel() for p in cell.parameters()) == plain + 2 * (7 + 4 + 3 + 3 + 4 + 1) * 4
    for size in (4, 8):
        h, c, m = cell(torch.rand(2, 3, size, size))
        assert h.shape == c.shape == m.shape == (2, 4, size, size) and torch.isfinite(h).all()


def test_every_parameter_gets_a_gradient() -> None:
    for cell in (_cell(), _cell(layer_norm=True)):
        x = torch.rand(2, 3, 8, 8)
        h, c, m = cell(x, cell(x))
        (h.sum() + c.sum() + m.sum()).backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in cell.parameters())


def test_the_highway_passes_its_state_where_its_switch_is_closed() -> None:
    torch.manual_seed(0)
    ghu = GradientHighwayUnit(3, 4, 3)
    x, z = torch.rand(2, 3, 8, 8), torch.randn(2, 4, 8, 8)
    # Started at +-0.001 (PredRNN++'s initialisation): p ~ 0 and u ~ 1/2, so z' ~ z / 2.
    assert all(p.abs().max() <= 1e-3 for p in ghu.parameters())
    torch.testing.assert_close(ghu(x, z), z / 2, atol=0.05, rtol=0)
    with torch.no_grad():
        ghu.conv_x[0].weight.zero_()
        ghu.conv_z[0].weight.zero_()
        ghu.conv_x[0].weight[4:, 0] = -1e4  # the switch u's pre-activation far below 0 wherever x > 0: u = 0
    torch.testing.assert_close(ghu(x + 0.1, z), z, rtol=0, atol=0)
    with torch.no_grad():
        ghu.conv_x[0].weight[4:, 0] = 1e4  # u = 1: z' = p = tanh(0) = 0
    torch.testing.assert_close(ghu(x + 0.1, z), torch.zeros_like(z), rtol=0, atol=0)
    # The missing state is zeros; PyTorch's default initialisation on request.
    torch.testing.assert_close(ghu(x), ghu(x, torch.zeros(2, 4, 8, 8)), rtol=0, atol=0)
    default = GradientHighwayUnit(3, 4, 3, init_range=None)
    assert max(p.abs().max() for p in default.parameters()) > 0.01


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: _cell()(torch.rand(2, 5, 8, 8)), r"x must have shape \(B, C=3, H, W\), got \(2, 5, 8, 8\)"),
        (lambda: _cell()(torch.rand(2, 3, 8, 8), (torch.zeros(2, 4, 8, 8),)), "state must be a triple"),
        (
            lambda: _cell()(torch.rand(2, 3, 8, 8), tuple(torch.zeros(2, 4, 4, 4) for _ in range(3))),
            r"state h must have shape \(2, 4, 8, 8\), got \(2, 4, 4, 4\)",
        ),
        (
            lambda: GradientHighwayUnit(3, 4, 3)(torch.rand(2, 3, 8, 8), torch.zeros(2, 4, 4, 4)),
            r"state z must have shape \(2, 4, 8, 8\), got \(2, 4, 4, 4\)",
        ),
        (lambda: CausalLSTMCell(3, 4, 4), "kernel_size must be odd"),
        (lambda: GradientHighwayUnit(3, 4, 3, init_range=0.0), r"init_range must be in \(0.0, inf\]"),
        (lambda: CausalLSTMCell(3, 0), "hidden_channels"),
    ],
)
def test_errors_name_what_was_expected(call: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()  # type: ignore[operator]
