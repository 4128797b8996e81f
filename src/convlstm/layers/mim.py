"""The cells of MIM, Memory In Memory (Wang et al. 2019): the MIM block and the two LSTMs inside it, MIM-N and MIM-S.

An ST-LSTM forgets its temporal memory through one forget gate, which can only model a signal that changes slowly.
MIM replaces that gate by two cascaded recurrent modules: MIM-N reads the difference of the hidden states of
consecutive steps (the non-stationary part of the motion) and MIM-S turns it, with the layer's temporal memory, into
what of that memory is kept (its stationary part). Both are ConvLSTMs with peepholes; each keeps a memory of its own.
"""

import torch
from torch import Tensor, nn

from convlstm.layers.st_lstm import check_step, gate_conv
from convlstm.utils.checks import check_finite, check_int

MIMBlockState = tuple[Tensor, Tensor, Tensor, Tensor]
"""(h, c, m, n): hidden state, temporal memory, spatiotemporal memory and MIM-S's memory, each (B, F, H, W)."""


class PeepholeLSTMCell(nn.Module):
    """MIM-N and MIM-S: a ConvLSTM step with peepholes whose weights are per pixel and channel, without biases.

    With * a "same" convolution, ∘ the elementwise product, w the peephole weights (F, H, W) and b_f the constant
    ``forget_bias``:

    - i = σ(W_xi * x + W_hi * h + w_ci ∘ c), f = σ(W_xf * x + W_hf * h + w_cf ∘ c + b_f),
      g = tanh(W_xg * x + W_hg * h), c' = f ∘ c + i ∘ g;
    - h' = σ(W_xo * x + W_ho * h + w_co ∘ c') ∘ tanh(c').

    As in MIM's code and OpenSTL's, the peepholes have a weight for every pixel, so the cell works on one frame size
    only. The names are OpenSTL's but shorter: ``conv_x`` (its ``conv_x_concat``) and ``conv_h``
    (``conv_h_concat``), x and h to the gates in the order i, g, f, o; ``peephole_c`` (``ct_weight``: w_ci, w_cf)
    and ``peephole_o`` (``oc_weight``: w_co).

    Args:
        in_channels: channels of x.
        hidden_channels: channels F of h and c.
        kernel_size: of both convolutions; odd.
        height: H of the frames the cell works on.
        width: W of the frames the cell works on.
        layer_norm: normalise each convolution's output (over its channels and pixels, a per-channel affine).
        forget_bias: the constant added to the forget gate's pre-activation (MIM: 1.0).

    Shape:
        x: (B, C_in, H, W); state: (h, c), each (B, F, H, W), or None for zeros; returns (h', c').
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        kernel_size: int,
        height: int,
        width: int,
        *,
        layer_norm: bool = False,
        forget_bias: float = 1.0,
    ) -> None:
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels)
        self.hidden_channels = f = check_int("hidden_channels", hidden_channels)
        self.kernel_size = _check_kernel(kernel_size)
        self.height, self.width = check_int("height", height), check_int("width", width)
        self.layer_norm = bool(layer_norm)
        self.forget_bias = check_finite("forget_bias", forget_bias)
        self.conv_x = gate_conv(in_channels, 4 * f, kernel_size, layer_norm=self.layer_norm)
        self.conv_h = gate_conv(f, 4 * f, kernel_size, layer_norm=self.layer_norm)
        # Zeros, as MIM and OpenSTL start them: the cell begins as a ConvLSTM without peepholes.
        self.peephole_c = nn.Parameter(torch.zeros(2 * f, height, width))
        self.peephole_o = nn.Parameter(torch.zeros(f, height, width))

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """One step; ``state`` None means zeros."""
        h, c = check_step(x, state, self.in_channels, self.hidden_channels, "hc")
        if x.shape[-2:] != self.peephole_o.shape[-2:]:
            raise ValueError(
                f"x must be {self.height}x{self.width} (H x W: the peepholes are per pixel), got "
                f"{x.shape[-2]}x{x.shape[-1]}"
            )
        f = self.hidden_channels
        i_x, g_x, f_x, o_x = self.conv_x(x).split(f, dim=1)
        i_h, g_h, f_h, o_h = self.conv_h(h).split(f, dim=1)
        i_c, f_c = (c.repeat(1, 2, 1, 1) * self.peephole_c).split(f, dim=1)
        c_new = torch.sigmoid(f_h + f_c + f_x + self.forget_bias) * c + torch.sigmoid(i_h + i_c + i_x) * torch.tanh(
            g_h + g_x
        )
        h_new = torch.sigmoid(o_h + o_x + c_new * self.peephole_o) * torch.tanh(c_new)
        return h_new, c_new

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.hidden_channels}, kernel_size={self.kernel_size}, "
            f"frame={self.height}x{self.width}, layer_norm={self.layer_norm}, forget_bias={self.forget_bias}"
        )


class MIMBlock(nn.Module):
    """One MIM block step: an ST-LSTM whose temporal forget gate is replaced by MIM-S.

    With the notation of [`SpatioTemporalLSTMCell`][convlstm.layers.SpatioTemporalLSTMCell] and d the output of this
    layer's MIM-N (the non-stationary part of the lower layer's hidden state, zeros at the first step):

    - spatiotemporal memory, as ST-LSTM: i' = σ(W_xi * x + W_mi * m), g' = tanh(W_xg * x + W_mg * m),
      f' = σ(W_xf' * x + W_mf * m + b_f), m' = f' ∘ m + i' ∘ g';
    - temporal memory: (T, n') = MIM-S(d, (c, n)), a [`PeepholeLSTMCell`][convlstm.layers.PeepholeLSTMCell] reading d
      with c in place of its hidden state and n its memory; i = σ(W_xi * x + W_hi * h), g = tanh(W_xg * x + W_hg * h),
      c' = T + i ∘ g;
    - output: o = σ(W_xo * x + W_ho * h + W_mo * m), h' = o ∘ tanh(W_1x1 * [c', m']).

    The input terms W_xi * x and W_xg * x are shared by both memories' gates, as OpenSTL computes them. The names
    correspond to OpenSTL's: ``conv_x`` (its ``conv_x_cc``: x to i, g, f', o), ``conv_h`` (``conv_t_cc``: h to i,
    g, o), ``conv_m`` (``conv_s_cc``: m to i', g', f', o), ``stationary`` (MIM-S, whose weights OpenSTL keeps on
    the block) and ``conv_last`` (the 1x1 fusion).

    Args:
        in_channels: channels of x.
        hidden_channels: channels F of h, c, m, n and of d.
        kernel_size: of every convolution but the 1x1 fusion; odd.
        height: H of the frames the block works on (MIM-S's peepholes are per pixel).
        width: W of the frames the block works on.
        layer_norm: normalise each convolution's output (over its channels and pixels, a per-channel affine).
        forget_bias: the constant added to the forget gates' pre-activations (MIM: 1.0).

    Shape:
        x: (B, C_in, H, W); d: (B, F, H, W) or None for zeros; state: (h, c, m, n), each (B, F, H, W), or None for
        zeros; returns (h', c', m', n').
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        kernel_size: int,
        height: int,
        width: int,
        *,
        layer_norm: bool = False,
        forget_bias: float = 1.0,
    ) -> None:
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels)
        self.hidden_channels = f = check_int("hidden_channels", hidden_channels)
        self.kernel_size = _check_kernel(kernel_size)
        self.layer_norm = bool(layer_norm)
        self.forget_bias = check_finite("forget_bias", forget_bias)
        self.conv_x = gate_conv(in_channels, 4 * f, kernel_size, layer_norm=self.layer_norm)
        self.conv_h = gate_conv(f, 3 * f, kernel_size, layer_norm=self.layer_norm)
        self.conv_m = gate_conv(f, 4 * f, kernel_size, layer_norm=self.layer_norm)
        self.stationary = PeepholeLSTMCell(
            f, f, kernel_size, height, width, layer_norm=layer_norm, forget_bias=forget_bias
        )
        self.conv_last = nn.Conv2d(2 * f, f, 1, bias=False)

    def forward(self, x: Tensor, d: Tensor | None = None, state: MIMBlockState | None = None) -> MIMBlockState:
        """One step; ``d`` None and ``state`` None mean zeros."""
        h, c, m, n = check_step(x, state, self.in_channels, self.hidden_channels, "hcmn")
        (d,) = check_step(x, None if d is None else (d,), self.in_channels, self.hidden_channels, "d")
        f = self.hidden_channels
        i_x, g_x, f_x, o_x = self.conv_x(x).split(f, dim=1)
        i_h, g_h, o_h = self.conv_h(h).split(f, dim=1)
        i_m, g_m, f_m, o_m = self.conv_m(m).split(f, dim=1)

        m_new = torch.sigmoid(f_x + f_m + self.forget_bias) * m + torch.sigmoid(i_x + i_m) * torch.tanh(g_x + g_m)
        kept, n_new = self.stationary(d, (c, n))  # MIM-S: what of c is kept
        c_new = kept + torch.sigmoid(i_x + i_h) * torch.tanh(g_x + g_h)
        o = torch.sigmoid(o_x + o_h + o_m)
        h_new = o * torch.tanh(self.conv_last(torch.cat([c_new, m_new], dim=1)))
        return h_new, c_new, m_new, n_new

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.hidden_channels}, kernel_size={self.kernel_size}, "
            f"layer_norm={self.layer_norm}, forget_bias={self.forget_bias}"
        )


def _check_kernel(kernel_size: int) -> int:
    check_int("kernel_size", kernel_size)
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd (the state keeps its size), got {kernel_size}")
    return kernel_size
