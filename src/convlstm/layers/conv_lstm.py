"""The user-facing sequence layers ConvLSTM and ConvGRU."""

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from convlstm.layers.cell_base import LSTMState
from convlstm.layers.conv import IntOrTuple, Padding
from convlstm.layers.gru_cell import ConvGRUCell
from convlstm.layers.lstm_cell import DEFAULT_FORGET_BIAS, ConvLSTMCell
from convlstm.layers.norm import NormKind
from convlstm.layers.schedule import InputSchedule
from convlstm.layers.sequence import ConvRNNBase


class ConvLSTM(ConvRNNBase[ConvLSTMCell, LSTMState]):
    """A stack of ConvLSTM layers over (B, T, C, *spatial) sequences (Keras ConvLSTM1D/2D/3D, PyTorch-style).

    Args:
        in_channels: channels of the input frames (0: a stack without input, driven by its state only).
        hidden_channels: channels per layer: an int, or a list with one entry per layer.
        kernel_size: input-to-state kernel: int, tuple, or a list with one per layer.
        num_layers: layers in the stack.
        spatial_dims: 1, 2 or 3.
        bidirectional: run a second stack of cells backwards in time; outputs are concatenated on channels.
        reverse: process time from last to first (Keras go_backwards). Outputs stay aligned with the input
            frames: Keras returns them in processing order, that is ``output.flip(1)``.
        dropout: dropout on the outputs of every layer but the last (as torch.nn.LSTM).
        input_dropout: Keras-style dropout of the input inside the cells, one mask per gate, fixed over the time
            steps of a call, in training mode only.
        recurrent_dropout: the same for the state.
        input_schedule: "auto" (by device and batch), "batched" (one input-to-state convolution over all frames),
            "per_step" or "fused" (one convolution over cat([x, h]) per step); see `convlstm.layers.schedule`.
        checkpoint_every: None (keep every activation for the backward pass), or recompute the activations of
            each chunk of this many steps in the backward pass (activation checkpointing: less memory for long
            sequences, one more forward pass of compute; same outputs and gradients).

    The remaining arguments are those of [`ConvLSTMCell`][convlstm.layers.ConvLSTMCell]; each may also be a list with
    one entry per layer.

    Shape:
        x: (B, T, C_in, *spatial) -> output (B, T, hidden_channels[-1] * num_directions, *spatial_state);
        state: list of (h, c) pairs, one per layer and direction, at index layer * num_directions + direction.

    Examples:
        >>> layer = ConvLSTM(1, [16, 16], kernel_size=3, num_layers=2)
        >>> out, state = layer(torch.randn(4, 10, 1, 32, 32))   # out (4, 10, 16, 32, 32)
        >>> more, state = layer(torch.randn(4, 5, 1, 32, 32), state)   # continues where the first call ended
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int | Sequence[int],
        kernel_size: IntOrTuple | list[IntOrTuple] = 3,
        num_layers: int = 1,
        *,
        spatial_dims: int = 2,
        recurrent_kernel_size: IntOrTuple | list[IntOrTuple] | None = None,
        stride: IntOrTuple | list[IntOrTuple] = 1,
        padding: Padding | list[Padding] = "same",
        dilation: IntOrTuple | list[IntOrTuple] = 1,
        recurrent_dilation: IntOrTuple | list[IntOrTuple] | None = None,
        bias: bool = True,
        peephole: bool = False,
        forget_bias: float = DEFAULT_FORGET_BIAS,
        activation: str = "tanh",
        recurrent_activation: str = "sigmoid",
        norm: NormKind | None = None,
        norm_groups: int = 1,
        bidirectional: bool = False,
        reverse: bool = False,
        dropout: float = 0.0,
        input_dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        input_schedule: InputSchedule = "auto",
        checkpoint_every: int | None = None,
    ) -> None:
        super().__init__(
            in_channels,
            hidden_channels,
            kernel_size,
            num_layers,
            spatial_dims=spatial_dims,
            bidirectional=bidirectional,
            reverse=reverse,
            dropout=dropout,
            input_schedule=input_schedule,
            checkpoint_every=checkpoint_every,
            cell_kwargs={
                "recurrent_kernel_size": recurrent_kernel_size,
                "stride": stride,
                "padding": padding,
                "dilation": dilation,
                "recurrent_dilation": recurrent_dilation,
                "bias": bias,
                "peephole": peephole,
                "forget_bias": forget_bias,
                "activation": activation,
                "recurrent_activation": recurrent_activation,
                "norm": norm,
                "norm_groups": norm_groups,
                "input_dropout": input_dropout,
                "recurrent_dropout": recurrent_dropout,
            },
        )

    def _make_cell(
        self, in_channels: int, hidden: int, kernel: IntOrTuple, dims: int, kwargs: dict[str, Any]
    ) -> ConvLSTMCell:
        return ConvLSTMCell(in_channels, hidden, kernel, spatial_dims=dims, **kwargs)

    @staticmethod
    def hidden_of(state: LSTMState) -> Tensor:
        return state[0]

    def _check_state(self, state: list[LSTMState], batch: int, sizes: list[tuple[int, ...]]) -> None:
        _check_state_list(state, len(self.cells))
        for index, entry in enumerate(state):
            if not isinstance(entry, tuple | list) or len(entry) != 2:
                raise ValueError(f"state[{index}] must be a pair (h, c), got {type(entry).__name__}")
            cell = self.cell(index // self.num_directions, index % self.num_directions)
            size = sizes[index // self.num_directions]
            cell.check_hidden(entry[0], batch, size, name=f"state[{index}] h")
            cell.check_hidden(entry[1], batch, size, name=f"state[{index}] c")


class ConvGRU(ConvRNNBase[ConvGRUCell, Tensor]):
    """A stack of ConvGRU layers over (B, T, C, *spatial) sequences; arguments as [`ConvLSTM`][convlstm.layers.ConvLSTM]
    (including checkpoint_every) and [`ConvGRUCell`][convlstm.layers.ConvGRUCell] (reset_after, gate_bias instead of
    peephole, forget_bias).

    Shape:
        x: (B, T, C_in, *spatial) -> output (B, T, hidden_channels[-1] * num_directions, *spatial_state);
        state: list of h tensors, one per layer and direction, at index layer * num_directions + direction.

    Under torch.autocast with bfloat16/float16 the outputs and the state are float32: h is the GRU's memory as well
    as its output, and each cell keeps it in float32
    ([`ConvGRUCell.float32_state`][convlstm.layers.ConvGRUCell.float32_state], default on; the ConvLSTM, whose memory is
    c, returns h in the autocast dtype instead). With ``float32_state`` off they are in the autocast dtype. A float32
    state passed back in under autocast is accepted; the convolutions read it in the autocast dtype.
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int | Sequence[int],
        kernel_size: IntOrTuple | list[IntOrTuple] = 3,
        num_layers: int = 1,
        *,
        spatial_dims: int = 2,
        recurrent_kernel_size: IntOrTuple | list[IntOrTuple] | None = None,
        stride: IntOrTuple | list[IntOrTuple] = 1,
        padding: Padding | list[Padding] = "same",
        dilation: IntOrTuple | list[IntOrTuple] = 1,
        recurrent_dilation: IntOrTuple | list[IntOrTuple] | None = None,
        bias: bool = True,
        reset_after: bool = True,
        gate_bias: float = 0.0,
        activation: str = "tanh",
        recurrent_activation: str = "sigmoid",
        norm: NormKind | None = None,
        norm_groups: int = 1,
        bidirectional: bool = False,
        reverse: bool = False,
        dropout: float = 0.0,
        input_dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        input_schedule: InputSchedule = "auto",
        checkpoint_every: int | None = None,
    ) -> None:
        super().__init__(
            in_channels,
            hidden_channels,
            kernel_size,
            num_layers,
            spatial_dims=spatial_dims,
            bidirectional=bidirectional,
            reverse=reverse,
            dropout=dropout,
            input_schedule=input_schedule,
            checkpoint_every=checkpoint_every,
            cell_kwargs={
                "recurrent_kernel_size": recurrent_kernel_size,
                "stride": stride,
                "padding": padding,
                "dilation": dilation,
                "recurrent_dilation": recurrent_dilation,
                "bias": bias,
                "reset_after": reset_after,
                "gate_bias": gate_bias,
                "activation": activation,
                "recurrent_activation": recurrent_activation,
                "norm": norm,
                "norm_groups": norm_groups,
                "input_dropout": input_dropout,
                "recurrent_dropout": recurrent_dropout,
            },
        )

    def _make_cell(
        self, in_channels: int, hidden: int, kernel: IntOrTuple, dims: int, kwargs: dict[str, Any]
    ) -> ConvGRUCell:
        return ConvGRUCell(in_channels, hidden, kernel, spatial_dims=dims, **kwargs)

    @staticmethod
    def hidden_of(state: Tensor) -> Tensor:
        return state

    def _check_state(self, state: list[Tensor], batch: int, sizes: list[tuple[int, ...]]) -> None:
        _check_state_list(state, len(self.cells))
        for index, h in enumerate(state):
            if not isinstance(h, Tensor):
                raise ValueError(f"state[{index}] must be a tensor h, got {type(h).__name__}")
            self.cell(index // self.num_directions, index % self.num_directions).check_hidden(
                h, batch, sizes[index // self.num_directions], name=f"state[{index}]"
            )


def _check_state_list(state: object, expected: int) -> None:
    if not isinstance(state, list | tuple) or len(state) != expected:
        got = (
            f"{type(state).__name__} of length {len(state)}"
            if isinstance(state, list | tuple)
            else type(state).__name__
        )
        raise ValueError(f"state must be a list of {expected} entries (one per layer and direction), got {got}")
