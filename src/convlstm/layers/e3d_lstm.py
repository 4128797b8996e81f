"""The Eidetic 3D LSTM cell of E3D-LSTM (Wang et al. 2019, "Eidetic 3D LSTM: A Model for Video Prediction and
Beyond").

Two ideas on top of PredRNN's two memories: the cell reads a short window of frames at once through 3-D
convolutions (time x height x width), so that every state is a little clip (B, F, τ, H, W) rather than one map; and
its temporal memory has no forget gate: a recall gate attends over the layer's earlier memories ("eidetic" memory)
and what it finds is added to the memory, so that a state seen many steps ago can come back at once instead of
decaying step by step.

The convolutions and the arithmetic are OpenSTL's (Tan et al. 2023, ``Eidetic3DLSTMCell``), so that its weights load
and its parameter and FLOP counts are this cell's; where OpenSTL departs from the paper, the docstrings say so.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convlstm.utils.checks import check_finite, check_int

E3DLSTMState = tuple[Tensor, Tensor, Tensor]
"""(h, c, m): hidden state, temporal memory and spatiotemporal memory, each (B, F, τ, H, W)."""


class WindowConv3d(nn.Conv3d):
    """A 3-D convolution without bias over a window of τ frames: "valid" along time, "same" in space, its τ - k_t + 1
    output slices stretched back to τ by nearest neighbour (OpenSTL's ``tf_Conv3d``).

    With OpenSTL's temporal kernel of 2 over a window of 2 the convolution gives one slice, which both slices of the
    output repeat (a departure from the paper's 3-D convolutions, which keep the window's length).

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output.
        kernel_size: (k_t, k, k): k_t <= τ, k odd.

    Shape:
        (B, C_in, τ, H, W) -> (B, C_out, τ, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int, int]) -> None:
        _, height, width = kernel_size
        super().__init__(in_channels, out_channels, kernel_size, padding=(0, height // 2, width // 2), bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = super().forward(x)  # (B, C_out, τ - k_t + 1, H, W)
        if out.shape[2] == x.shape[2]:
            return out
        if out.shape[2] == 1:  # what nearest-neighbour interpolation from one slice gives, without the copies
            return out.expand(-1, -1, x.shape[2], -1, -1)
        return F.interpolate(out, size=x.shape[-3:], mode="nearest")


def window_gate_conv(
    in_channels: int, out_channels: int, kernel_size: tuple[int, int, int], *, layer_norm: bool
) -> nn.Sequential:
    """A [`WindowConv3d`][convlstm.layers.WindowConv3d], then optionally layer norm (over channels, window
    and pixels, with a per-channel affine): the gate convolution of the cell (``0.weight``; the norm is ``1``)."""
    norm = [nn.GroupNorm(1, out_channels)] if layer_norm else []
    return nn.Sequential(WindowConv3d(in_channels, out_channels, kernel_size), *norm)


def eidetic_recall(query: Tensor, history: Tensor) -> Tensor:
    """The recall: softmax(Q K^T) V with Q from the recall gate and K = V the earlier memories, as OpenSTL computes it.

    OpenSTL cuts a (F, τ, H, W) memory into τ H W "tokens" of F values by reshaping its channel-first memory, so a
    token is F consecutive values of that layout (mostly one channel's pixels along a row), not the F channels of one
    pixel as in the paper's channels-last code; the scores are not scaled by 1 / sqrt(F). Kept, so that OpenSTL's
    weights give OpenSTL's outputs.

    Args:
        query: (B, F, τ, H, W), the recall gate r.
        history: (B, N, F, τ, H, W), the N memories attended over.

    Returns:
        (B, F, τ, H, W).
    """
    batch, channels = query.shape[:2]
    q = query.reshape(batch, 1, -1, channels)  # (B, 1, τ H W, F)
    kv = history.reshape(batch, 1, -1, channels)  # (B, 1, N τ H W, F)
    # With a head dimension torch picks a fused kernel (on the CPU too) that keeps no (queries x keys) weights for
    # the backward pass: over 19 steps of OpenSTL's model those would be gigabytes.
    return F.scaled_dot_product_attention(q, kv, kv, scale=1.0).reshape(query.shape)


class Eidetic3DLSTMCell(nn.Module):
    """One Eidetic 3D LSTM step on a window of τ frames.

    With * a [`WindowConv3d`][convlstm.layers.WindowConv3d] (no biases), ∘ the elementwise product, b_f the
    constant ``forget_bias`` and C_hist the N memories the recall attends over:

    ```text
    temporal memory         i  = σ(W_xi * x + W_hi * h)
                            g  = tanh(W_xg * x + W_hg * h)
                            r  = σ(W_xr * x + W_hr * h)
                            c' = LayerNorm(c + softmax(r C_hist^T) C_hist) + i ∘ g
    spatiotemporal memory   i' = σ(W_xi' * x + W_mi * m)
                            g' = tanh(W_xg' * x + W_mg * m)
                            f' = σ(W_xf' * x + W_mf * m + b_f)
                            m' = f' ∘ tanh(W_mm * m) + i' ∘ g'
    output                  o  = σ(tanh(W_xo * x + W_ho * h + W_co * c' + W_mo * m'))
                            h' = o ∘ tanh(W_1x1x1 * [c', m'])
    ```

    The temporal memory has no forget gate: the recall gate r decides what of the earlier memories comes back. The
    layer norm has an affine weight per channel, window slice and pixel (the paper's and OpenSTL's), so the cell
    works on one frame size.

    Where OpenSTL's cell (which this one reproduces) departs from the paper:

    - the recall's tokens are F consecutive values of the channel-first memory, and its scores are not scaled (see
      [`eidetic_recall`][convlstm.layers.eidetic_recall]);
    - the 3-D convolutions are valid along time and their output is repeated over the window
      ([`WindowConv3d`][convlstm.layers.WindowConv3d]);
    - m' = f' ∘ tanh(W_mm * m) + i' ∘ g' (the paper: f' ∘ m + i' ∘ g'), as in PredRNN++'s Causal LSTM;
    - the output gate squashes twice, σ(tanh(...)) (the paper: σ(...));
    - no biases; the forget bias is a constant.

    Which earlier memories the recall reads (the paper: the last τ; OpenSTL: all since the first step) and whether m'
    is passed on (OpenSTL passes the m that came in) are the model's choice: see
    [`E3DLSTM`][convlstm.models.E3DLSTM]. The names of the convolutions follow OpenSTL's: ``conv_x`` (x to i, g, r, o,
    i', g', f'), ``conv_h`` (h to i, g, r, o), ``conv_m`` (its ``conv_gm``: m to i', f', g' and the m in the tanh),
    ``conv_oc`` (``conv_new_cell``: c' to o), ``conv_om`` (``conv_new_gm``: m' to o), ``conv_last`` (the 1x1x1
    fusion) and ``cell_norm`` (``_norm_c_t``).

    Args:
        in_channels: channels of x.
        hidden_channels: channels F of h, c and m.
        window_length: τ, the frames of the window (OpenSTL: 2).
        height: H of the maps the cell works on (the layer norm's affine is per pixel).
        width: W of the maps.
        kernel_size: spatial size k of the convolutions; odd (the state keeps its size).
        temporal_kernel_size: k_t, at most τ (OpenSTL: 2).
        layer_norm: normalise each gate convolution's output too (over its channels, window and pixels, a
            per-channel affine; OpenSTL's has a per-pixel affine and does not convert).
        forget_bias: the constant added to the forget gate's pre-activation (OpenSTL: 1.0).

    Shape:
        x: (B, C_in, τ, H, W); state: (h, c, m), each (B, F, τ, H, W), or None for zeros; history: (B, N, F, τ, H, W)
        or None for c alone; returns (h', c', m').
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        window_length: int,
        height: int,
        width: int,
        kernel_size: int = 5,
        *,
        temporal_kernel_size: int = 2,
        layer_norm: bool = False,
        forget_bias: float = 1.0,
    ) -> None:
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels)
        self.hidden_channels = f = check_int("hidden_channels", hidden_channels)
        self.window_length = check_int("window_length", window_length)
        self.height, self.width = check_int("height", height), check_int("width", width)
        check_int("kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (the state keeps its size), got {kernel_size}")
        check_int("temporal_kernel_size", temporal_kernel_size)
        if temporal_kernel_size > window_length:
            raise ValueError(
                f"temporal_kernel_size must be at most window_length={window_length}, got {temporal_kernel_size}"
            )
        self.kernel_size, self.temporal_kernel_size = kernel_size, temporal_kernel_size
        self.layer_norm = bool(layer_norm)
        self.forget_bias = check_finite("forget_bias", forget_bias)
        kernel = (temporal_kernel_size, kernel_size, kernel_size)
        norm = {"layer_norm": self.layer_norm}
        self.conv_x = window_gate_conv(in_channels, 7 * f, kernel, **norm)
        self.conv_h = window_gate_conv(f, 4 * f, kernel, **norm)
        self.conv_m = window_gate_conv(f, 4 * f, kernel, **norm)
        self.conv_oc = window_gate_conv(f, f, kernel, **norm)
        self.conv_om = window_gate_conv(f, f, kernel, **norm)
        self.conv_last = nn.Conv3d(2 * f, f, 1, bias=False)
        self.cell_norm = nn.LayerNorm([f, window_length, height, width])

    def forward(self, x: Tensor, state: E3DLSTMState | None = None, history: Tensor | None = None) -> E3DLSTMState:
        """One step; ``state`` None means zeros, ``history`` None means the recall reads c alone."""
        h, c, m = self._check(x, state)
        if history is None:
            history = c[:, None]
        elif history.ndim != 6 or history.shape[:1] + history.shape[2:] != c.shape:
            expected = f"(B={c.shape[0]}, N, {', '.join(str(s) for s in c.shape[1:])})"
            raise ValueError(f"history must have shape {expected}, got {tuple(history.shape)}")
        f = self.hidden_channels
        i_x, g_x, r_x, o_x, i_xm, g_xm, f_xm = self.conv_x(x).split(f, dim=1)
        i_h, g_h, r_h, o_h = self.conv_h(h).split(f, dim=1)

        recall = eidetic_recall(torch.sigmoid(r_x + r_h), history)
        c_new = self.cell_norm(c + recall) + torch.sigmoid(i_x + i_h) * torch.tanh(g_x + g_h)

        i_m, f_m, g_m, m_m = self.conv_m(m).split(f, dim=1)
        forget, write = torch.sigmoid(f_xm + f_m + self.forget_bias), torch.sigmoid(i_xm + i_m)
        m_new = forget * torch.tanh(m_m) + write * torch.tanh(g_xm + g_m)

        o = torch.sigmoid(torch.tanh(o_x + o_h + self.conv_oc(c_new) + self.conv_om(m_new)))
        h_new = o * torch.tanh(self.conv_last(torch.cat([c_new, m_new], dim=1)))
        return h_new, c_new, m_new

    def _check(self, x: Tensor, state: E3DLSTMState | None) -> E3DLSTMState:
        expected_x = (self.in_channels, self.window_length, self.height, self.width)
        if not isinstance(x, Tensor) or x.ndim != 5 or tuple(x.shape[1:]) != expected_x:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (B, C, τ, H, W) = (B, {', '.join(map(str, expected_x))}), got {got}")
        expected = (x.shape[0], self.hidden_channels, *x.shape[2:])
        if state is None:
            zeros = x.new_zeros(expected)
            return zeros, zeros, zeros
        if not isinstance(state, tuple | list) or len(state) != 3:
            raise ValueError(f"state must be a triple (h, c, m), got {type(state).__name__}")
        for name, tensor in zip("hcm", state, strict=True):
            if not isinstance(tensor, Tensor) or tuple(tensor.shape) != expected:
                got = tuple(tensor.shape) if isinstance(tensor, Tensor) else type(tensor).__name__
                raise ValueError(f"state {name} must have shape {expected}, got {got}")
        h, c, m = state
        return h, c, m

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.hidden_channels}, window_length={self.window_length}, "
            f"size={self.height}x{self.width}, kernel_size=({self.temporal_kernel_size}, {self.kernel_size}, "
            f"{self.kernel_size}), layer_norm={self.layer_norm}, forget_bias={self.forget_bias}"
        )
