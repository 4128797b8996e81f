"""The Causal LSTM cell and the Gradient Highway Unit of PredRNN++ (Wang et al. 2018).

A Causal LSTM keeps PredRNN's two memories, the temporal c (along time, per layer) and the spatiotemporal m (up the
stack, and from the top layer at t - 1 to the bottom layer at t), but updates them in a cascade instead of side by
side: the new c gates the update of m, and both feed the output gate, so that a step is deeper in time than an
ST-LSTM's. The Gradient Highway Unit, between the two bottom layers, is a gated shortcut along time through which
gradients reach far-back steps without passing through every layer of every step.
"""

import math

import torch
from torch import Tensor, nn

from convlstm.layers.st_lstm import STLSTMState, check_step, gate_conv
from convlstm.utils.checks import check_finite, check_float, check_int


class CausalLSTMCell(nn.Module):
    """One Causal LSTM step: the temporal memory c first, then the spatiotemporal memory m gated by the new c.

    With * a "same" convolution (no biases), ∘ the elementwise product and b_f the constant ``forget_bias``:

    - temporal memory: i = σ(W_xi * x + W_hi * h + W_ci * c), f = σ(W_xf * x + W_hf * h + W_cf * c + b_f),
      g = tanh(W_xg * x + W_hg * h + W_cg * c), c' = f ∘ c + i ∘ g;
    - spatiotemporal memory, from the new c': i' = σ(W_xi' * x + W_mi * m + W_c'i * c'),
      f' = σ(W_xf' * x + W_mf * m + W_c'f * c' + b_f), g' = tanh(W_xg' * x + W_c'g * c'),
      m' = f' ∘ tanh(W_mm * m) + i' ∘ g';
    - output from both new memories: o = tanh(W_xo * x + W_ho * h + W_c'o * c' + W_m'o * m'),
      h' = o ∘ tanh(W_1x1 * [c', m']).

    g' reads x and c' only, and o is a tanh, as OpenSTL implements the cell. The convolutions are
    OpenSTL's, so that state dicts correspond: ``conv_x`` (x to i, f, g, i', f', g', o), ``conv_h`` (h to i, f, g,
    o), ``conv_c`` (c to i, f, g), ``conv_m`` (m to i', f', and the m inside the tanh), ``conv_c2m`` (c' to i', g',
    f', o), ``conv_om`` (m' to o) and ``conv_last`` (the 1x1 fusion).

    In a stack, layer l is called with its own (h, c) and the m that layer l - 1 just returned (the bottom layer
    gets the top layer's m of the previous step), so every layer of a stack has the same hidden_channels.

    Args:
        in_channels: channels of x.
        hidden_channels: channels F of h, c and m.
        kernel_size: of every convolution but the 1x1 fusion; odd (the state keeps its size).
        layer_norm: normalise each convolution's output (over its channels and pixels, a per-channel affine), as
            [`SpatioTemporalLSTMCell`][convlstm.layers.SpatioTemporalLSTMCell] does.
        forget_bias: the constant added to both forget gates' pre-activations (PredRNN++: 1.0).

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
        self.conv_x = gate_conv(in_channels, 7 * f, kernel_size, layer_norm=self.layer_norm)
        self.conv_h = gate_conv(f, 4 * f, kernel_size, layer_norm=self.layer_norm)
        self.conv_c = gate_conv(f, 3 * f, kernel_size, layer_norm=self.layer_norm)
        self.conv_m = gate_conv(f, 3 * f, kernel_size, layer_norm=self.layer_norm)
        self.conv_c2m = gate_conv(f, 4 * f, kernel_size, layer_norm=self.layer_norm)
        self.conv_om = gate_conv(f, f, kernel_size, layer_norm=self.layer_norm)
        self.conv_last = nn.Conv2d(2 * f, f, 1, bias=False)

    def forward(self, x: Tensor, state: STLSTMState | None = None) -> STLSTMState:
        """One step; ``state`` None means zeros."""
        h, c, m = check_step(x, state, self.in_channels, self.hidden_channels, "hcm")
        f = self.hidden_channels
        i_x, f_x, g_x, i_xm, f_xm, g_xm, o_x = self.conv_x(x).split(f, dim=1)
        i_h, f_h, g_h, o_h = self.conv_h(h).split(f, dim=1)
        i_c, f_c, g_c = self.conv_c(c).split(f, dim=1)
        i_m, f_m, m_m = self.conv_m(m).split(f, dim=1)

        c_new = torch.sigmoid(f_x + f_h + f_c + self.forget_bias) * c + torch.sigmoid(i_x + i_h + i_c) * torch.tanh(
            g_x + g_h + g_c
        )
        i_cm, g_cm, f_cm, o_c = self.conv_c2m(c_new).split(f, dim=1)
        m_new = torch.sigmoid(f_xm + f_m + f_cm + self.forget_bias) * torch.tanh(m_m) + torch.sigmoid(
            i_xm + i_m + i_cm
        ) * torch.tanh(g_xm + g_cm)

        o = torch.tanh(o_x + o_h + o_c + self.conv_om(m_new))
        h_new = o * torch.tanh(self.conv_last(torch.cat([c_new, m_new], dim=1)))
        return h_new, c_new, m_new

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.hidden_channels}, kernel_size={self.kernel_size}, "
            f"layer_norm={self.layer_norm}, forget_bias={self.forget_bias}"
        )


class GradientHighwayUnit(nn.Module):
    """The Gradient Highway Unit: a gated state z carried along time, z' = u ∘ p + (1 - u) ∘ z, with
    p = tanh(W_px * x + W_pz * z) and u = σ(W_ux * x + W_uz * z) (one "switch" u per pixel and channel).

    Where u is near 0, z passes a step unchanged: a path along time whose gradient is not squashed by the stack's
    gates. PredRNN++ places it between the bottom two Causal LSTM layers: it reads layer 1's h and its output is what
    layer 2 reads. The convolutions are OpenSTL's ``x_concat`` (here ``conv_x``: x to p, u) and ``z_concat``
    (``conv_z``: z to p, u), no biases.

    Args:
        in_channels: channels of x.
        hidden_channels: channels F of z.
        kernel_size: of both convolutions; odd.
        layer_norm: normalise each convolution's output (over its channels and pixels, a per-channel affine).
        init_range: weights start uniform in [-init_range, init_range] (PredRNN++ and OpenSTL: 0.001, so that the
            unit starts close to z' = z / 2); None keeps PyTorch's default initialisation.

    Shape:
        x: (B, C_in, H, W); z: (B, F, H, W) or None for zeros; returns z' (B, F, H, W).
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        kernel_size: int = 5,
        *,
        layer_norm: bool = False,
        init_range: float | None = 1e-3,
    ) -> None:
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels)
        self.hidden_channels = f = check_int("hidden_channels", hidden_channels)
        check_int("kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (the state keeps its size), got {kernel_size}")
        self.kernel_size = kernel_size
        self.layer_norm = bool(layer_norm)
        self.conv_x = gate_conv(in_channels, 2 * f, kernel_size, layer_norm=self.layer_norm)
        self.conv_z = gate_conv(f, 2 * f, kernel_size, layer_norm=self.layer_norm)
        if init_range is not None:
            scale = check_float("init_range", init_range, 0.0, math.inf, low_open=True)
            for sequential in (self.conv_x, self.conv_z):
                nn.init.uniform_(sequential[0].weight, -scale, scale)  # type: ignore[arg-type]

    def forward(self, x: Tensor, z: Tensor | None = None) -> Tensor:
        """One step; ``z`` None means zeros."""
        (z,) = check_step(x, None if z is None else (z,), self.in_channels, self.hidden_channels, "z")
        p, u = (self.conv_x(x) + self.conv_z(z)).split(self.hidden_channels, dim=1)
        u = torch.sigmoid(u)
        return u * torch.tanh(p) + (1 - u) * z

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.hidden_channels}, kernel_size={self.kernel_size}, layer_norm={self.layer_norm}"
        )
