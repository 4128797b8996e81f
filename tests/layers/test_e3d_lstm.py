"""E3D-LSTM's Eidetic 3D LSTM cell: shapes, the zero state, the window convolutions, the recall over earlier
memories, the memory the output reads, layer norm and argument errors."""

import pytest
import torch
import torch.nn.functional as F

from convlstm.layers import Eidetic3DLSTMCell, WindowConv3d, eidetic_recall

B, C, HIDDEN, TAU, SIZE = 2, 3, 4, 2, 6


def _cell(**kwargs: object) -> Eidetic3DLSTMCell:
    torch.manual_seed(0)
    return Eidetic3DLSTMCell(C, HIDDEN, TAU, SIZE, SIZE, 3, **kwargs)  # type: ignore[arg-type]


def _x() -> torch.Tensor:
    return torch.rand(B, C, TAU, SIZE, SIZE)


def _state() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    h, c, m = (torch.randn(B, HIDDEN, TAU, SIZE, SIZE) for _ in range(3))
    return h, c, m


def test_shapes_and_the_missing_state_is_zeros() -> None:
    cell = _cell()
    x = _x()
    h, c, m = cell(x)
    assert h.shape == c.shape == m.shape == (B, HIDDEN, TAU, SIZE, SIZE)
    zeros = torch.zeros(B, HIDDEN, TAU, SIZE, SIZE)
    for a, b in zip((h, c, m), cell(x, (zeros, zeros, zeros), zeros[:, None]), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    h2, _, _ = cell(x, (h, c, m))
    assert h2.shape == h.shape and not torch.equal(h2, h)


def test_the_window_convolution_is_valid_in_time_and_repeated_over_the_window() -> None:
    torch.manual_seed(0)
    conv = WindowConv3d(3, 5, (2, 3, 3))
    x = torch.rand(2, 3, 2, 7, 7)
    out = conv(x)
    assert out.shape == (2, 5, 2, 7, 7)
    # One slice from both frames, the same in both places (OpenSTL: nearest-neighbour interpolation of it).
    single = F.conv3d(x, conv.weight, padding=(0, 1, 1))
    torch.testing.assert_close(out[:, :, 0:1], single, rtol=0, atol=0)
    torch.testing.assert_close(out[:, :, 1:2], single, rtol=0, atol=0)
    # A shorter kernel over a longer window: 3 slices stretched to 4 as nearest-neighbour interpolation does.
    longer = torch.rand(1, 3, 4, 5, 5)
    three = WindowConv3d(3, 2, (2, 3, 3))
    torch.testing.assert_close(
        three(longer),
        F.interpolate(F.conv3d(longer, three.weight, padding=(0, 1, 1)), size=(4, 5, 5), mode="nearest"),
    )


def test_the_recall_is_attention_over_tokens_of_the_channel_first_memory() -> None:
    """softmax(Q K^T) V, unscaled, with tokens of F consecutive values of (F, τ, H, W): written out with einsum,
    as OpenSTL writes it."""
    query, history = torch.rand(B, HIDDEN, TAU, SIZE, SIZE), torch.randn(B, 3, HIDDEN, TAU, SIZE, SIZE)
    q = query.reshape(B, -1, HIDDEN)
    kv = torch.cat(list(history.unbind(1)), dim=1).reshape(B, -1, HIDDEN)  # OpenSTL's cat along channels
    weights = torch.softmax(torch.einsum("bxc,byc->bxy", q, kv), dim=2)
    expected = torch.einsum("bxy,byc->bxc", weights, kv).reshape(query.shape)
    torch.testing.assert_close(eidetic_recall(query, history), expected)


def test_the_temporal_memory_has_no_forget_gate_but_recalls_its_history() -> None:
    cell = _cell()
    x, (h, c, m) = _x(), _state()
    _, c_new, m_new = cell(x, (h, c, m))
    # The recall reads the history: another history (same c) moves c' ...
    _, c_other, m_other = cell(x, (h, c, m), torch.stack([c, 5 * torch.randn_like(c)], dim=1))
    assert not torch.allclose(c_other, c_new)
    # ... and not m', whose gates read x and m only.
    torch.testing.assert_close(m_other, m_new, rtol=0, atol=0)
    # c' = LayerNorm(c + recall) + i g, no forget gate: with a zero history the recall adds nothing, and the norm
    # makes c' blind to a scale and shift of c.
    _, c_shifted, _ = cell(x, (h, 3 * c + 1, m), torch.zeros(B, 1, HIDDEN, TAU, SIZE, SIZE))
    _, c_plain, _ = cell(x, (h, c, m), torch.zeros(B, 1, HIDDEN, TAU, SIZE, SIZE))
    torch.testing.assert_close(c_shifted, c_plain, rtol=1e-4, atol=1e-4)


def test_the_output_reads_both_new_memories_and_stays_bounded() -> None:
    cell = _cell()
    x, (h, c, m) = _x(), _state()
    h_new, _, _ = cell(x, (h, c, m))
    h_other_m, _, _ = cell(x, (h, c, m + 1))
    assert not torch.allclose(h_other_m, h_new)
    h_big, _, m_big = cell(10 * x, tuple(10 * t for t in (h, c, m)))  # type: ignore[arg-type]
    # o = σ(tanh(.)) lies in (σ(-1), σ(1)); h' = o tanh(.); m' = f' tanh(.) + i' g'.
    assert h_big.abs().max() < torch.sigmoid(torch.tensor(1.0)) and m_big.abs().max() < 2


def test_every_parameter_gets_a_gradient_and_layer_norm_is_per_channel() -> None:
    plain = sum(p.numel() for p in _cell().parameters())
    normed = _cell(layer_norm=True)
    # A per-channel scale and shift for each of the five gate convolutions (7F, 4F, 4F, F, F).
    assert sum(p.numel() for p in normed.parameters()) == plain + 2 * (7 + 4 + 4 + 1 + 1) * HIDDEN
    for cell in (_cell(), normed):
        x = _x()
        state = _state()
        h, c, m = cell(x, state)
        (h.sum() + c.sum() + m.sum()).backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in cell.parameters())


def test_bad_arguments_and_shapes() -> None:
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        Eidetic3DLSTMCell(C, HIDDEN, TAU, SIZE, SIZE, 4)
    with pytest.raises(ValueError, match="temporal_kernel_size must be at most window_length=2, got 3"):
        Eidetic3DLSTMCell(C, HIDDEN, TAU, SIZE, SIZE, 3, temporal_kernel_size=3)
    cell = _cell()
    with pytest.raises(
        ValueError, match=r"x must have shape \(B, C, τ, H, W\) = \(B, 3, 2, 6, 6\), got \(2, 3, 6, 6\)"
    ):
        cell(torch.rand(B, C, SIZE, SIZE))
    h, _, m = _state()
    with pytest.raises(ValueError, match=r"state c must have shape \(2, 4, 2, 6, 6\), got \(2, 4, 2, 6, 5\)"):
        cell(_x(), (h, torch.rand(B, HIDDEN, TAU, SIZE, 5), m))
    with pytest.raises(ValueError, match=r"history must have shape \(B=2, N, 4, 2, 6, 6\), got \(2, 4, 2, 6, 6\)"):
        cell(_x(), None, torch.rand(B, HIDDEN, TAU, SIZE, SIZE))
