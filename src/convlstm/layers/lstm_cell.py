"""The ConvLSTM cell of Shi et al. (2015), with the Keras ConvLSTM feature set."""

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from convlstm.layers.activations import Activation
from convlstm.layers.cell_base import ConvRNNCellBase, LSTMState, channel_view
from convlstm.layers.conv import IntOrTuple, Padding
from convlstm.layers.norm import BlockNorm, NormKind
from convlstm.utils.checks import check_finite

DEFAULT_FORGET_BIAS = 1.0
"""Initial bias of the forget gate: 1.0, as Keras' unit_forget_bias and Jozefowicz et al. (2015) recommend, so that a
fresh cell remembers rather than forgets."""


#: Dtypes whose cell state drifts when rounded every step: under autocast the cell keeps c in float32 instead.
REDUCED_PRECISION = (torch.bfloat16, torch.float16)


def lstm_pointwise(
    gates: Tensor,
    c_prev: Tensor | None,
    *,
    peephole: Tensor | None,
    activation: Activation,
    recurrent_activation: Activation,
    cell_norm: Callable[[Tensor], Tensor] | None = None,
    float32_cell: bool = False,
) -> LSTMState:
    """The gate arithmetic of one step, given all pre-activations.

    Args:
        gates: (N, 4F, *S) pre-activations in the order [i, f, g, o] (Keras and torch.nn.LSTM order).
        c_prev: (N, F, *S) previous cell state, or None for zeros.
        peephole: (3, F) Shi's per-channel W_ci, W_cf (on C_{t-1}) and W_co (on C_t), or None.
        float32_cell: with gates in bfloat16 or float16, do the arithmetic in float32 from the widened
            pre-activations and return c in float32 and h in the dtype of gates. c = f * c + i * g integrates over
            the sequence: with f and c rounded to 8 mantissa bits every step (bfloat16) it drifts from the float32
            result; with this, the only rounding left is that of the pre-activations (and of h). Eager autograd then
            saves the activations in float32 (about twice the memory of the gate arithmetic); compiled
            (`compiled_lstm_pointwise`), inductor saved the bfloat16 pre-activations and recomputed the rest
            (seen on the CPU: as much saved memory as keeping everything in bfloat16).
    """
    dtype = gates.dtype
    wide = float32_cell and dtype in REDUCED_PRECISION
    if wide:
        gates = gates.float()
        c_prev = None if c_prev is None else c_prev.float()
    i, f, g, o = gates.chunk(4, dim=1)
    spatial = gates.ndim - 2
    if peephole is not None and c_prev is not None:
        i = i + channel_view(peephole[0], spatial) * c_prev
        f = f + channel_view(peephole[1], spatial) * c_prev
    c = recurrent_activation(i) * activation(g)
    if c_prev is not None:
        c = c + recurrent_activation(f) * c_prev
    if peephole is not None:
        o = o + channel_view(peephole[2], spatial) * c
    h = recurrent_activation(o) * activation(c if cell_norm is None else cell_norm(c))
    return (h.to(dtype) if wide else h), c


def _lstm_first_step(gates: Tensor, **options: Any) -> LSTMState:
    """[`lstm_pointwise`][convlstm.layers.lstm_pointwise] of a first step (no cell state yet), as a function of its
    own: torch.compile counts variants per function, and the first step doubles them."""
    return lstm_pointwise(gates, None, **options)


@functools.cache
def compiled_lstm_pointwise() -> Callable[..., LSTMState]:
    """[`lstm_pointwise`][convlstm.layers.lstm_pointwise] under torch.compile (one fused kernel per pass on CUDA),
    compiled on first call.

    The compiled functions serve every cell: torch.compile specialises each per dtype, autocast, grad mode, memory
    layout and ``float32_cell``, and re-traces for a new one; past torch._dynamo.config.recompile_limit (8 by
    default) variants of one function it runs the rest eagerly, with a warning. A training run with validation
    under bfloat16 autocast needs about that many (gates in bfloat16 and float32, grad on and off, besides the
    probe of [`compiled_gates_work`][convlstm.accel.compiled_gates_work]), so the first step (no cell state) is
    compiled as a function of its own, which halves the variants of each.
    """
    first_step, later_step = torch.compile(_lstm_first_step), torch.compile(lstm_pointwise)

    def pointwise(gates: Tensor, c_prev: Tensor | None, **options: Any) -> LSTMState:
        return first_step(gates, **options) if c_prev is None else later_step(gates, c_prev, **options)

    return pointwise


class ConvLSTMCell(ConvRNNCellBase):
    """One ConvLSTM step: the LSTM with its matrix products replaced by convolutions.

    With * a convolution and ∘ the elementwise product:

    ```text
    i  = σ(W_xi * x + W_hi * h + [w_ci ∘ c] + b_i)
    f  = σ(W_xf * x + W_hf * h + [w_cf ∘ c] + b_f)
    g  = tanh(W_xg * x + W_hg * h + b_g)
    c' = f ∘ c + i ∘ g
    o  = σ(W_xo * x + W_ho * h + [w_co ∘ c'] + b_o)
    h' = o ∘ tanh(c')
    ```

    Peepholes (in brackets) follow Shi et al. 2015 eq. 3 and are off by default (Keras has none).

    Args:
        in_channels: channels of x; 0 makes a cell without input (state-to-state only, as Shi's first forecaster).
        hidden_channels: channels F of h and c.
        kernel_size: input-to-state kernel, int or one per spatial dimension; odd or even.
        spatial_dims: 1, 2 or 3.
        recurrent_kernel_size: state-to-state kernel (default: kernel_size).
        stride: stride of the input-to-state convolution (the state is smaller then, as in Keras).
        padding: "same" (exact also for even kernels: the extra pixel goes after) or "valid" (no padding), for the
            input-to-state convolution; the state-to-state one is always "same".
        dilation: dilation of the input-to-state convolution.
        recurrent_dilation: dilation of the state-to-state convolution (default: dilation).
        bias: learn gate biases.
        peephole: add Shi's per-channel peephole connections.
        forget_bias: initial forget-gate bias (default [`DEFAULT_FORGET_BIAS`][convlstm.layers.DEFAULT_FORGET_BIAS] =
            1.0).
        activation: for g and the output (tanh): "sigmoid", "tanh", "relu", "hard_sigmoid" (Keras 3),
            "hard_sigmoid_keras2" or "linear".
        recurrent_activation: for i, f, o (sigmoid); the same choices.
        norm: None, "layer" or "group": normalizes the gate pre-activations (per gate) and the cell state before
            the output activation; parameters do not depend on the frame size.
        norm_groups: groups per gate for norm="group".
        input_dropout: Keras' dropout (one mask per gate).
        recurrent_dropout: Keras' recurrent_dropout (one mask per gate).

    Two attributes, not arguments, switch how (not what) the cell computes, and may be set after construction
    ([`convlstm.accel.apply_fast_settings`][convlstm.accel.apply_fast_settings] sets them on a whole model):

    - ``float32_cell_state`` (default True): under torch.autocast with bfloat16/float16 gates, the gate arithmetic
      runs in float32, c is kept in float32 and h comes out in the autocast dtype (see
      [`lstm_pointwise`][convlstm.layers.lstm_pointwise]).
      Outside autocast nothing changes: c has the dtype of the parameters.
    - ``compile_gates`` (default False): run the gate arithmetic through `compiled_lstm_pointwise`.

    Shape:
        x: (B, C_in, *spatial); state: (h, c), each (B, F, *spatial_state); returns (h, c).
    """

    num_gates = 4

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
        peephole: bool = False,
        forget_bias: float = DEFAULT_FORGET_BIAS,
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
        self.forget_bias = check_finite("forget_bias", forget_bias)
        self.peephole = nn.Parameter(torch.zeros(3, hidden_channels)) if peephole else None
        self.gate_norm = BlockNorm(4, hidden_channels, norm, groups=norm_groups) if norm is not None else None
        self.cell_norm = BlockNorm(1, hidden_channels, norm, groups=norm_groups) if norm is not None else None
        self.float32_cell_state = True
        self.compile_gates = False
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialises the convolutions as torch.nn.ConvNd does; biases and peepholes start at zero, except the
        forget gate's bias, which starts at ``forget_bias``."""
        if self.input_conv is not None:
            self.input_conv.reset_parameters()
        self.recurrent_conv.reset_parameters()
        if self.bias is not None:
            nn.init.zeros_(self.bias)
        if self.gate_norm is not None:
            nn.init.zeros_(self.gate_norm.bias)
        forget = self._gate_bias_block(1)
        if forget is not None:
            with torch.no_grad():
                forget.fill_(self.forget_bias)
        if self.peephole is not None:
            nn.init.zeros_(self.peephole)

    def step(
        self,
        x_gates: Tensor | None,
        state: LSTMState | None,
        recurrent_mask: Tensor | None = None,
        *,
        recurrent_weight: Tensor | None = None,
    ) -> LSTMState:
        """Advances the state one step given the input-to-state pre-activations (from `input_gates`);
        ``recurrent_weight`` stands in for the recurrent convolution's own.

        A missing state means zeros; its state-to-state convolution is skipped rather than computed on zeros.
        """
        if state is None:
            if x_gates is None:
                raise ValueError("a cell without input (in_channels=0) needs a state")
            gates, c_prev = x_gates, None
        else:
            h_prev, c_prev = state
            recurrent = self.recurrent_gates(h_prev, recurrent_mask, weight=recurrent_weight)
            if x_gates is not None:
                gates = x_gates + recurrent
            elif self.bias is not None:
                gates = recurrent + channel_view(self.bias, self.spatial_dims)
            else:
                gates = recurrent
        return self.pointwise(gates, c_prev)

    fused_step_supported = True

    def fused_step(self, x: Tensor, state: LSTMState, fused_weight: Tensor) -> LSTMState:
        h_prev, c_prev = state
        # The recurrent convolution's geometry equals the input one's here (can_fuse), so it can run the pair.
        gates = self.recurrent_conv(torch.cat([x, h_prev], dim=1), self.bias, weight=fused_weight)
        return self.pointwise(gates, c_prev)

    def pointwise(self, gates: Tensor, c_prev: Tensor | None) -> LSTMState:
        """The gate arithmetic of one step, given the summed pre-activations (N, 4F, *S)."""
        if self.gate_norm is not None:
            gates = self.gate_norm(gates)
        # Looked up at call time, so that a benchmark may patch the module's lstm_pointwise.
        pointwise = compiled_lstm_pointwise() if self.compile_gates else lstm_pointwise
        return pointwise(
            gates,
            c_prev,
            peephole=self.peephole,
            activation=self.activation,
            recurrent_activation=self.recurrent_activation,
            cell_norm=self.cell_norm,
            float32_cell=self.float32_cell_state and torch.is_autocast_enabled(gates.device.type),
        )

    def forward(self, x: Tensor | None, state: LSTMState | None = None) -> LSTMState:
        """One step. ``x`` may be None only for a cell without input, given a state."""
        if x is None:
            if self.in_channels != 0:
                raise ValueError(f"x must be a tensor (B, {self.in_channels}, ...), got None")
            if state is None:
                raise ValueError("a cell without input (in_channels=0) needs a state")
            batch, size = state[0].shape[0], tuple(state[0].shape[2:])
        else:
            self.check_input(x)
            batch, size = x.shape[0], self.state_size(x.shape[2:])
        if state is not None:
            if not isinstance(state, tuple | list) or len(state) != 2:
                raise ValueError(f"state must be a pair (h, c), got {type(state).__name__}")
            self.check_hidden(state[0], batch, size, name="state h")
            self.check_hidden(state[1], batch, size, name="state c")
        input_mask, recurrent_mask = self.dropout_masks(x, batch, size)
        x_gates = None if x is None else self.input_gates(x, input_mask)
        return self.step(x_gates, None if state is None else (state[0], state[1]), recurrent_mask)
