"""The spatiotemporal LSTM (ST-LSTM) cell of PredRNN (Wang et al. 2017; PredRNN-V2, Wang et al. 2022).

A ConvLSTM keeps one memory per layer, passed along time. ST-LSTM adds a second, spatiotemporal memory M that zigzags
through the stack: up through the layers within a step, and from the top layer at step t - 1 to the bottom layer at
step t. It has gates of its own, and a 1x1 convolution fuses both memories into the hidden state.
"""

import torch
from torch import Tensor, nn

from convlstm.utils.checks import check_finite, check_int

STLSTMState = tuple[Tensor, Tensor, Tensor]
"""(h, c, m): hidden state, temporal memory and spatiotemporal memory, each (B, F, H, W)."""


class SpatioTemporalLSTMCell(nn.Module):
    """One ST-LSTM step: a ConvLSTM for the temporal memory c plus gates of its own for the spatiotemporal memory m.

    With * a "same" convolution (no biases) and ∘ the elementwise product:

    ```text
    temporal memory         i  = σ(W_xi * x + W_hi * h)
                            f  = σ(W_xf * x + W_hf * h + b_f)
                            g  = tanh(W_xg * x + W_hg * h)
                            Δc = i ∘ g,    c' = f ∘ c + Δc
    spatiotemporal memory   i' = σ(W_xi' * x + W_mi * m)
                            f' = σ(W_xf' * x + W_mf * m + b_f)
                            g' = tanh(W_xg' * x + W_mg * m)
                            Δm = i' ∘ g',  m' = f' ∘ m + Δm
    output                  o  = σ(W_xo * x + W_ho * h + W_co * [c', m'])
                            h' = o ∘ tanh(W_1x1 * [c', m'])
    ```

    b_f is the constant ``forget_bias`` (not learned), as in PredRNN. The convolutions are the ones PredRNN's code
    uses, so that parameter counts and state dicts correspond: ``conv_x`` (x to the seven x-terms, in the order
    i, f, g, i', f', g', o), ``conv_h`` (h to i, f, g, o), ``conv_m`` (m to i', f', g'), ``conv_o`` ([c', m'] to o)
    and ``conv_last`` (the 1x1 fusion). The increments Δc and Δm are what PredRNN-V2's decoupling loss keeps apart
    ([`forward_with_increments`][convlstm.layers.SpatioTemporalLSTMCell.forward_with_increments] returns them).

    In a stack, layer l is called with its own (h, c) and the m that layer l - 1 just returned (the bottom layer
    gets the top layer's m of the previous step), so every layer of a stack has the same hidden_channels.

    Args:
        in_channels: channels of x.
        hidden_channels: channels F of h, c and m.
        kernel_size: of every convolution but the 1x1 fusion; odd (the state keeps its size).
        layer_norm: normalise each convolution's output (before the gate split, over all its channels and pixels,
            as PredRNN's layer_norm does) with a per-channel affine. PredRNN's own affine is per pixel (its
            parameters depend on the frame size); this one's statistics are the same and its size is not.
        forget_bias: the constant added to both forget gates' pre-activations (PredRNN: 1.0).

    Shape:
        x: (B, C_in, H, W); state: (h, c, m), each (B, F, H, W), or None for zeros; returns (h', c', m').
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        kernel_size: int = 5,
        *,
        layer_norm: bool = False,
        forget_bias: float = 1.0,
    ) -> None:
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels)
        self.hidden_channels = f = check_int("hidden_channels", hidden_channels)
        check_int("kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (the state keeps its size), got {kernel_size}")
        self.kernel_size = kernel_size
        self.layer_norm = bool(layer_norm)
        self.forget_bias = check_finite("forget_bias", forget_bias)
        self.conv_x = self._conv(in_channels, 7 * f)
        self.conv_h = self._conv(f, 4 * f)
        self.conv_m = self._conv(f, 3 * f)
        self.conv_o = self._conv(2 * f, f)
        self.conv_last = nn.Conv2d(2 * f, f, 1, bias=False)

    def _conv(self, in_channels: int, out_channels: int) -> nn.Sequential:
        return gate_conv(in_channels, out_channels, self.kernel_size, layer_norm=self.layer_norm)

    def forward(self, x: Tensor, state: STLSTMState | None = None) -> STLSTMState:
        """One step; ``state`` None means zeros."""
        return self.forward_with_increments(x, state)[0]

    def forward_with_increments(
        self, x: Tensor, state: STLSTMState | None = None
    ) -> tuple[STLSTMState, tuple[Tensor, Tensor]]:
        """One step, also returning the increments (Δc, Δm) = (i ∘ g, i' ∘ g'), each (B, F, H, W)."""
        h, c, m = self._check(x, state)
        f = self.hidden_channels
        i_x, f_x, g_x, i_xm, f_xm, g_xm, o_x = self.conv_x(x).split(f, dim=1)
        i_h, f_h, g_h, o_h = self.conv_h(h).split(f, dim=1)
        i_m, f_m, g_m = self.conv_m(m).split(f, dim=1)

        delta_c = torch.sigmoid(i_x + i_h) * torch.tanh(g_x + g_h)
        c_new = torch.sigmoid(f_x + f_h + self.forget_bias) * c + delta_c
        delta_m = torch.sigmoid(i_xm + i_m) * torch.tanh(g_xm + g_m)
        m_new = torch.sigmoid(f_xm + f_m + self.forget_bias) * m + delta_m

        memories = torch.cat([c_new, m_new], dim=1)  # (B, 2F, H, W)
        o = torch.sigmoid(o_x + o_h + self.conv_o(memories))
        h_new = o * torch.tanh(self.conv_last(memories))
        return (h_new, c_new, m_new), (delta_c, delta_m)

    def _check(self, x: Tensor, state: STLSTMState | None) -> STLSTMState:
        h, c, m = check_step(x, state, self.in_channels, self.hidden_channels, "hcm")
        return h, c, m

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.hidden_channels}, kernel_size={self.kernel_size}, "
            f"layer_norm={self.layer_norm}, forget_bias={self.forget_bias}"
        )


def gate_conv(in_channels: int, out_channels: int, kernel_size: int, *, layer_norm: bool) -> nn.Sequential:
    """A "same" convolution without bias, then optionally layer norm: the gate convolution of the PredRNN family's
    cells, in OpenSTL's layout (``0.weight``; the norm, when there is one, is ``1``)."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
    # GroupNorm with one group: layer norm over (C, H, W) with a per-channel affine.
    norm = [nn.GroupNorm(1, out_channels)] if layer_norm else []
    return nn.Sequential(conv, *norm)


def check_step(
    x: Tensor, state: tuple[Tensor, ...] | None, in_channels: int, hidden_channels: int, names: str
) -> tuple[Tensor, ...]:
    """Checks one step's input (B, in_channels, H, W) and its state, one (B, hidden_channels, H, W) tensor per letter
    of ``names``; returns the state, zeros in place of None.

    Raises:
        ValueError: naming the tensor, the shape expected and the shape that came.
    """
    if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != in_channels:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must have shape (B, C={in_channels}, H, W), got {got}")
    expected = (x.shape[0], hidden_channels, *x.shape[2:])
    if state is None:
        zeros = x.new_zeros(expected)
        return (zeros,) * len(names)
    if not isinstance(state, tuple | list) or len(state) != len(names):
        what = f"a triple ({', '.join(names)})" if len(names) == 3 else f"a tuple ({', '.join(names)})"
        raise ValueError(f"state must be {what}, got {type(state).__name__}")
    for name, tensor in zip(names, state, strict=True):
        got = tuple(tensor.shape) if isinstance(tensor, Tensor) else type(tensor).__name__
        if not isinstance(tensor, Tensor) or tuple(tensor.shape) != expected:
            raise ValueError(f"state {name} must have shape {expected}, got {got}")
    return tuple(state)
