"""The convolutional GRU cell, including the Neural GPU's CGRU (Kaiser & Sutskever 2015) as an option."""

import torch
from torch import Tensor, nn

from convlstm.layers.cell_base import ConvRNNCellBase, channel_view
from convlstm.layers.conv import IntOrTuple, Padding
from convlstm.layers.lstm_cell import REDUCED_PRECISION
from convlstm.layers.norm import BlockNorm, NormKind
from convlstm.utils.checks import check_finite


class ConvGRUCell(ConvRNNCellBase):
    """One ConvGRU step, gates in torch.nn.GRUCell's order [r, z, n], with * a convolution and ∘ the elementwise
    product:

    ```text
    r  = σ(W_xr * x + W_hr * h + b_r)
    z  = σ(W_xz * x + W_hz * h + b_z)
    n  = tanh(W_xn * x + b_n + r ∘ (W_hn * h + b_hn))    reset_after=True
    n  = tanh(W_xn * x + b_n + W_hn * (r ∘ h))           reset_after=False
    h' = (1 - z) ∘ n + z ∘ h
    ```

    reset_after=True is torch.nn.GRUCell's form, reset_after=False that of Cho et al. and the Neural GPU.

    [`neural_gpu`][convlstm.layers.ConvGRUCell.neural_gpu] builds the CGRU of the Neural GPU: no input, reset before the
    convolution, the saturating sigmoid clip(1.2 σ(x) - 0.1, 0, 1) and gate biases starting at +1.

    The arguments are those of [`ConvLSTMCell`][convlstm.layers.ConvLSTMCell] without peephole and forget_bias,
    plus two:

    Args:
        reset_after: where the reset gate applies (see above).
        gate_bias: initial bias of the r and z gates (0; positive values make a fresh cell keep its state).

    One attribute, not an argument, switches how (not what) the cell computes, and may be set after construction
    ([`convlstm.accel.apply_fast_settings`][convlstm.accel.apply_fast_settings] sets it on a whole model, from
    ``float32_cell_state``):

    - ``float32_state`` (default True): under torch.autocast with bfloat16/float16, the gate arithmetic after the
      convolutions runs in float32 from the widened pre-activations and h is returned in float32. h is both the
      output and the memory, h' = n + z ∘ (h - n) integrates over the sequence: rounded to 8 mantissa bits every
      step (bfloat16) it drifts from the float32 result, as the LSTM's c does (see
      [`convlstm.layers.lstm_pointwise`][convlstm.layers.lstm_pointwise]); with this, the only rounding left is that of
      the pre-activations (the next step's convolution still reads h in the autocast dtype, cast by autocast). Off,
      h is returned in the autocast dtype, rounded every step. Outside autocast nothing changes: h has the dtype
      of the parameters, whatever the switch.

    Shape:
        x: (B, C_in, *spatial); state h: (B, F, *spatial_state); returns h.
    """

    num_gates = 3

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        kernel_size: IntOrTuple = 3,
        *,
        spatial_dims: int = 2,
        recurrent_kernel_size: IntOrTuple | None = None,
        stride: IntOrTuple = 1,
        padding: Padding = "same",
        dilation: IntOrTuple = 1,
        recurrent_dilation: IntOrTuple | None = None,
        bias: bool = True,
        reset_after: bool = True,
        gate_bias: float = 0.0,
        activation: str = "tanh",
        recurrent_activation: str = "sigmoid",
        norm: NormKind | None = None,
        norm_groups: int = 1,
        input_dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
    ) -> None:
        super().__init__(
            in_channels,
            hidden_channels,
            kernel_size,
            spatial_dims=spatial_dims,
            recurrent_kernel_size=recurrent_kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            recurrent_dilation=recurrent_dilation,
            bias=bias,
            activation=activation,
            recurrent_activation=recurrent_activation,
            norm=norm,
            norm_groups=norm_groups,
            input_dropout=input_dropout,
            recurrent_dropout=recurrent_dropout,
        )
        self.reset_after = reset_after
        self.gate_bias = check_finite("gate_bias", gate_bias)
        # reset_after multiplies r with the whole recurrent term, so its candidate bias must sit there (b_hn).
        self.recurrent_bias = (
            nn.Parameter(torch.zeros(3 * hidden_channels)) if reset_after and bias and norm is None else None
        )
        self.gate_norm = BlockNorm(2, hidden_channels, norm, groups=norm_groups) if norm is not None else None
        self.candidate_norm = BlockNorm(1, hidden_channels, norm, groups=norm_groups) if norm is not None else None
        self.float32_state = True
        self.reset_parameters()

    @classmethod
    def neural_gpu(cls, channels: int, kernel_size: IntOrTuple = 3, *, spatial_dims: int = 2) -> "ConvGRUCell":
        """The CGRU of the Neural GPU: CGRU(s) = u ∘ s + (1 - u) ∘ tanh(U * (r ∘ s) + B)."""
        return cls(
            0,
            channels,
            kernel_size,
            spatial_dims=spatial_dims,
            reset_after=False,
            gate_bias=1.0,
            recurrent_activation="neural_gpu_sigmoid",
        )

    def reset_parameters(self) -> None:
        """Re-initialises the convolutions as torch.nn.ConvNd does; biases start at zero, the reset and update
        gates' at ``gate_bias``."""
        if self.input_conv is not None:
            self.input_conv.reset_parameters()
        self.recurrent_conv.reset_parameters()
        for p in (self.bias, self.recurrent_bias):
            if p is not None:
                nn.init.zeros_(p)
        if self.gate_norm is not None:
            nn.init.zeros_(self.gate_norm.bias)
        for block in (0, 1):
            gate = self._gate_bias_block(block)
            if gate is not None:
                with torch.no_grad():
                    gate.fill_(self.gate_bias)

    def _input_or_bias(self, x_gates: Tensor | None, like: Tensor) -> Tensor:
        """The input pre-activations, or just the biases for a cell without input."""
        if x_gates is not None:
            return x_gates
        if self.bias is not None:
            return channel_view(self.bias, self.spatial_dims).expand(like.shape[0], -1, *like.shape[2:])
        return like.new_zeros(like.shape[0], 3 * self.hidden_channels, *like.shape[2:])

    def step(
        self,
        x_gates: Tensor | None,
        state: Tensor | None,
        recurrent_mask: Tensor | None = None,
        *,
        recurrent_weight: Tensor | None = None,
    ) -> Tensor:
        """Advances the state one step given the input-to-state pre-activations (from `input_gates`);
        ``recurrent_weight`` stands in for the recurrent convolution's own.

        Under autocast with a reduced-precision dtype, h comes back in float32 (``float32_state``) or in that dtype.
        """
        if state is None and x_gates is None:
            raise ValueError("a cell without input (in_channels=0) needs a state")
        f = self.hidden_channels
        like: Tensor = state if state is not None else x_gates  # type: ignore[assignment]
        reduced = _reduced_autocast_dtype(like.device.type)
        wide = reduced is not None and self.float32_state

        def widen(t: Tensor) -> Tensor:
            # The convolutions return the autocast dtype; the arithmetic after them runs on float32 copies.
            return t.float() if wide else t

        xg = widen(self._input_or_bias(x_gates, like))
        h_prev = None if state is None else widen(state)
        x_rz, x_n = xg[:, : 2 * f], xg[:, 2 * f :]
        if state is None:
            # h = 0: the state-to-state convolutions vanish, only b_hn remains of them.
            rz = x_rz
            h_n: Tensor | None = None
            if self.recurrent_bias is not None:
                rz = rz + channel_view(self.recurrent_bias[: 2 * f], self.spatial_dims)
                h_n = channel_view(self.recurrent_bias[2 * f :], self.spatial_dims)
        elif self.reset_after:
            recurrent = widen(self.recurrent_gates(state, recurrent_mask, weight=recurrent_weight))
            if self.recurrent_bias is not None:
                recurrent = recurrent + channel_view(self.recurrent_bias, self.spatial_dims)
            rz, h_n = x_rz + recurrent[:, : 2 * f], recurrent[:, 2 * f :]
        else:
            rz_recurrent = self.recurrent_gates(state, recurrent_mask, first=0, count=2, weight=recurrent_weight)
            rz, h_n = x_rz + widen(rz_recurrent), None
        if self.gate_norm is not None:
            rz = widen(self.gate_norm(rz))
        r, z = self.recurrent_activation(rz).chunk(2, dim=1)
        if h_prev is None:
            candidate = x_n if h_n is None else x_n + r * h_n
        elif self.reset_after:
            candidate = x_n + r * h_n  # type: ignore[operator]
        else:
            n_recurrent = self.recurrent_gates(r * h_prev, recurrent_mask, first=2, count=1, weight=recurrent_weight)
            candidate = x_n + widen(n_recurrent)
        if self.candidate_norm is not None:
            candidate = widen(self.candidate_norm(candidate))
        n = self.activation(candidate)
        h = n - z * n if h_prev is None else n + z * (h_prev - n)
        # Off, h leaves in the autocast dtype, whatever float32 biases or norm affines promoted it to on the way.
        return h.to(reduced) if reduced is not None and not wide else h

    def forward(self, x: Tensor | None, state: Tensor | None = None) -> Tensor:
        """One step. ``x`` may be None only for a cell without input, given a state."""
        if x is None:
            if self.in_channels != 0:
                raise ValueError(f"x must be a tensor (B, {self.in_channels}, ...), got None")
            if state is None:
                raise ValueError("a cell without input (in_channels=0) needs a state")
            batch, size = state.shape[0], tuple(state.shape[2:])
        else:
            self.check_input(x)
            batch, size = x.shape[0], self.state_size(x.shape[2:])
        if state is not None:
            if not isinstance(state, Tensor):
                raise ValueError(f"state must be a tensor h, got {type(state).__name__}")
            self.check_hidden(state, batch, size, name="state")
        input_mask, recurrent_mask = self.dropout_masks(x, batch, size)
        x_gates = None if x is None else self.input_gates(x, input_mask)
        return self.step(x_gates, state, recurrent_mask)


def _reduced_autocast_dtype(device_type: str) -> torch.dtype | None:
    """The autocast dtype of ``device_type`` when autocast is on with bfloat16 or float16, else None."""
    if not torch.is_autocast_enabled(device_type):
        return None
    dtype = torch.get_autocast_dtype(device_type)
    return dtype if dtype in REDUCED_PRECISION else None
