"""The ST-LSTM cell of PredRNN: shapes, the zero state, the increments, layer norm and argument errors."""

import pytest
import torch

from convlstm.layers import SpatioTemporalLSTMCell


def _cell(**kwargs: object) -> SpatioTemporalLSTMCell:
    torch.manual_seed(0)
    return SpatioTemporalLSTMCell(3, 4, 3, **kwargs)  # type: ignore[arg-type]


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


def test_the_memories_are_their_forgotten_part_plus_the_increments() -> None:
    cell = _cell()
    x = torch.rand(2, 3, 8, 8)
    (h, c, m), (delta_c, delta_m) = cell.forward_with_increments(x)
    # From zero memories the new memories are the increments alone; i and g bound them in (-1, 1).
    torch.testing.assert_close(c, delta_c, rtol=0, atol=0)
    torch.testing.assert_close(m, delta_m, rtol=0, atol=0)
    assert delta_c.abs().max() < 1 and delta_m.abs().max() < 1
    # Later, each memory moves by its increment plus what its forget gate keeps: f c with f in (0, 1).
    (_, c2, m2), (dc2, dm2) = cell.forward_with_increments(x, (h, c, m))
    kept_c, kept_m = c2 - dc2, m2 - dm2
    assert bool(((kept_c / c).clamp(min=0) <= 1).all()) and bool(((kept_m / m) > 0).all())


def test_forget_bias_is_a_constant_not_a_parameter() -> None:
    cell = _cell()
    names = {name for name, _ in cell.named_parameters()}
    assert names == {f"conv_{n}.0.weight" for n in "xhmo"} | {"conv_last.weight"}
    x, state = torch.rand(1, 3, 6, 6), tuple(torch.rand(1, 4, 6, 6) for _ in range(3))
    remembering = _cell(forget_bias=5.0)
    forgetting = _cell(forget_bias=-5.0)
    _, c_high, _ = remembering(x, state)  # type: ignore[arg-type]
    _, c_low, _ = forgetting(x, state)  # type: ignore[arg-type]
    # With f ~ 1 the old c is kept, with f ~ 0 it is dropped: the two differ by about the old c.
    torch.testing.assert_close(c_high - c_low, state[1], atol=0.02, rtol=0)


def test_layer_norm_is_independent_of_the_frame_size() -> None:
    cell = _cell(layer_norm=True)
    count = sum(p.numel() for p in cell.parameters())
    plain = sum(p.numel() for p in _cell().parameters())
    assert count == plain + 2 * (7 + 4 + 3 + 1) * 4  # a per-channel scale and shift for each of the four norms
    for size in (4, 8):
        h, c, m = cell(torch.rand(2, 3, size, size))
        assert h.shape == c.shape == m.shape == (2, 4, size, size) and torch.isfinite(h).all()
    # The norm sees each convolution's whole output: scaling the input leaves the x-terms as they were, but for the
    # norm's eps (1e-5 added to variances of about 1e-2 here: relative changes of about 1e-3).
    x = torch.rand(2, 3, 8, 8)
    for a, b in zip(cell(x), cell(10 * x), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-3)


def test_every_parameter_gets_a_gradient() -> None:
    cell = _cell(layer_norm=True)
    x = torch.rand(2, 3, 8, 8)
    state = cell(x)
    h, c, m = cell(x, state)
    (h.sum() + c.sum() + m.sum()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in cell.parameters())


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda cell: cell(torch.rand(2, 5, 8, 8)), r"x must have shape \(B, C=3, H, W\), got \(2, 5, 8, 8\)"),
        (lambda cell: cell(torch.rand(2, 3, 8, 8), (torch.zeros(2, 4, 8, 8),)), "state must be a triple"),
        (
            lambda cell: cell(torch.rand(2, 3, 8, 8), tuple(torch.zeros(2, 4, 4, 4) for _ in range(3))),
            r"state h must have shape \(2, 4, 8, 8\), got \(2, 4, 4, 4\)",
        ),
    ],
)
def test_errors_name_what_was_expected(call: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call(_cell())  # type: ignore[operator]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        SpatioTemporalLSTMCell(3, 4, 4)
    with pytest.raises(ValueError, match="hidden_channels"):
        SpatioTemporalLSTMCell(3, 0)
