"""ConvLSTM and ConvGRU cells for 1, 2 and 3 spatial dimensions, from one implementation.

A cell is split in two halves so that sequence layers can choose how to schedule them:
``input_gates`` (the input-to-state convolution, which does not depend on the state and can run over all frames
at once) and ``step`` (the state-to-state convolution plus the gate arithmetic).
"""

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from convlstm.layers.activations import get_activation
from convlstm.layers.conv import (
    IntOrTuple,
    PaddedConv,
    Padding,
    check_spatial_dims,
    check_weight_size,
    to_tuple,
)
from convlstm.layers.norm import BlockNorm, NormKind
from convlstm.utils.checks import check_choice, check_int, check_probability
from convlstm.utils.tensor_checks import check_like_parameters

LSTMState = tuple[Tensor, Tensor]


class ConvRNNCellBase(nn.Module):
    """What ConvLSTMCell and ConvGRUCell share: argument checks, the two convolutions, biases, norms, dropout."""

    num_gates: ClassVar[int]
    gate_norm: BlockNorm | None

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        kernel_size: IntOrTuple,
        *,
        spatial_dims: int,
        recurrent_kernel_size: IntOrTuple | None,
        stride: IntOrTuple,
        padding: Padding,
        dilation: IntOrTuple,
        recurrent_dilation: IntOrTuple | None,
        bias: bool,
        activation: str,
        recurrent_activation: str,
        norm: NormKind | None,
        norm_groups: int,
        input_dropout: float,
        recurrent_dropout: float,
    ) -> None:
        super().__init__()
        dims = check_spatial_dims(spatial_dims)
        self.in_channels = check_int("in_channels", in_channels, 0)
        self.hidden_channels = check_int("hidden_channels", hidden_channels)
        check_choice("padding", padding, ("same", "valid"))
        kernel = to_tuple(kernel_size, dims, "kernel_size")
        recurrent_kernel = to_tuple(
            kernel if recurrent_kernel_size is None else recurrent_kernel_size, dims, "recurrent_kernel_size"
        )
        dilation_ = to_tuple(dilation, dims, "dilation")
        recurrent_dilation_ = to_tuple(
            dilation_ if recurrent_dilation is None else recurrent_dilation, dims, "recurrent_dilation"
        )
        self.spatial_dims = dims
        self.activation_name, self.recurrent_activation_name = activation, recurrent_activation
        self.activation = get_activation(activation, argument="activation")
        self.recurrent_activation = get_activation(recurrent_activation, argument="recurrent_activation")
        self.input_dropout = check_probability("input_dropout", input_dropout)
        self.recurrent_dropout = check_probability("recurrent_dropout", recurrent_dropout)

        gate_channels = self.num_gates * hidden_channels
        # Both weights are checked before either is allocated.
        check_weight_size(gate_channels, in_channels, kernel)
        check_weight_size(gate_channels, hidden_channels, recurrent_kernel)
        self.input_conv = (
            PaddedConv(
                in_channels,
                gate_channels,
                kernel,
                stride=to_tuple(stride, dims, "stride"),
                dilation=dilation_,
                padding=padding,
            )
            if in_channels > 0
            else None
        )
        # The state keeps its size, so the state-to-state convolution is always stride 1, "same" (as in Keras).
        self.recurrent_conv = PaddedConv(
            hidden_channels,
            gate_channels,
            recurrent_kernel,
            stride=(1,) * dims,
            dilation=recurrent_dilation_,
            padding="same",
        )
        # With a norm, a bias before it would be cancelled: the norm's affine shift carries the gate biases.
        self.bias = nn.Parameter(torch.zeros(gate_channels)) if bias and norm is None else None
        self.norm = norm
        self.norm_groups = norm_groups

    # ----------------------------------------------------------------------------------------------- shapes
    def state_size(self, input_size: Sequence[int]) -> tuple[int, ...]:
        """Spatial size of the state for inputs of spatial ``input_size`` (smaller with stride or "valid")."""
        return tuple(input_size) if self.input_conv is None else self.input_conv.output_size(input_size)

    def check_input(self, x: Tensor, *, name: str = "x", leading: str = "B") -> None:
        """Raises ValueError unless x is a floating tensor (``leading``, in_channels, *spatial) with positive sizes,
        of the parameters' dtype (outside autocast) and on their device."""
        if not isinstance(x, Tensor):
            raise ValueError(f"{name} must be a tensor ({leading}, C={self.in_channels}, ...), got {type(x).__name__}")
        self.check_tensor_type(x, name=name)
        expected = 2 + self.spatial_dims
        spatial = ", ".join(["H", "W", "D"][: self.spatial_dims] if self.spatial_dims > 1 else ["L"])
        if x.ndim != expected:
            raise ValueError(
                f"{name} must have {expected} dimensions ({leading}, C={self.in_channels}, {spatial}), "
                f"got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{name} must have {self.in_channels} channels in dim 1, got shape {tuple(x.shape)}")
        if any(n <= 0 for n in x.shape[2:]):
            raise ValueError(f"{name} must have positive spatial sizes, got shape {tuple(x.shape)}")
        if min(self.state_size(x.shape[2:])) <= 0:
            raise ValueError(
                f"{name} spatial size {tuple(x.shape[2:])} is smaller than the kernel with padding='valid'"
            )

    def check_hidden(self, h: Tensor, batch: int, size: Sequence[int], *, name: str) -> None:
        expected = (batch, self.hidden_channels, *size)
        if not isinstance(h, Tensor):
            raise ValueError(f"{name} must be a tensor of shape {expected}, got {type(h).__name__}")
        if tuple(h.shape) != expected:
            raise ValueError(f"{name} must have shape {expected}, got {tuple(h.shape)}")
        self.check_tensor_type(h, name=name)

    def check_tensor_type(self, x: Tensor, *, name: str) -> None:
        """Raises ValueError unless x is floating point, of the parameters' dtype (any under autocast) and on their
        device."""
        check_like_parameters(x, self.recurrent_conv.weight, name=name, owner="cell")

    # ----------------------------------------------------------------------------------------------- dropout
    def dropout_masks(
        self, x: Tensor | None, batch: int, state_size: Sequence[int]
    ) -> tuple[Tensor | None, Tensor | None]:
        """Keras-style masks, one per gate, to be held fixed over the time steps of a call (training only).

        Returns (input_mask (B, G, C_in, *spatial) or None, recurrent_mask (B, G, C_hidden, *state) or None).
        """
        if not self.training:
            return None, None
        g = self.num_gates
        ref = x if x is not None else self.recurrent_conv.weight
        input_mask = recurrent_mask = None
        if self.input_dropout > 0 and x is not None:
            input_mask = _inverted_dropout_mask(
                ref, (batch, g, self.in_channels, *x.shape[-self.spatial_dims :]), self.input_dropout
            )
        if self.recurrent_dropout > 0:
            recurrent_mask = _inverted_dropout_mask(
                ref, (batch, g, self.hidden_channels, *state_size), self.recurrent_dropout
            )
        return input_mask, recurrent_mask

    # ----------------------------------------------------------------------------------------------- gates
    def input_gates(
        self, x: Tensor, input_mask: Tensor | None = None, *, weight: Tensor | None = None
    ) -> Tensor | None:
        """Input-to-state pre-activations with the gate biases: (N, C_in, *S) -> (N, G * C_hidden, *S_state).

        Returns None for a cell without input (in_channels=0). A mask (N, G, C_in, *S) gives each gate its own
        dropped copy of x; the G copies run as one grouped convolution with the same weight. ``weight`` stands in
        for the input convolution's own (a copy already cast for autocast, say).
        """
        if self.input_conv is None:
            return None
        if input_mask is None:
            return self.input_conv(x, self.bias, weight=weight)
        masked = (x.unsqueeze(1) * input_mask).flatten(1, 2)
        return self.input_conv(masked, self.bias, weight=weight, groups=self.num_gates)

    def recurrent_gates(
        self,
        h: Tensor,
        recurrent_mask: Tensor | None,
        *,
        first: int = 0,
        count: int | None = None,
        weight: Tensor | None = None,
    ) -> Tensor:
        """State-to-state pre-activations of gates [first, first + count); ``weight`` stands in for the recurrent
        convolution's own (all gates' blocks).

        Shape: (N, C_hidden, *S) -> (N, count * C_hidden, *S).
        """
        g = self.num_gates if count is None else count
        weight = self.recurrent_conv.weight if weight is None else weight
        if g != self.num_gates:
            f = self.hidden_channels
            weight = weight[first * f : (first + g) * f]
        if recurrent_mask is None:
            return self.recurrent_conv(h, weight=weight)
        masked = (h.unsqueeze(1) * recurrent_mask[:, first : first + g]).flatten(1, 2)
        return self.recurrent_conv(masked, weight=weight, groups=g)

    def _gate_bias_block(self, block: int) -> Tensor | None:
        """The parameter slice that holds the bias of gate ``block`` (in the norm when there is one)."""
        f = self.hidden_channels
        source = self.bias if self.gate_norm is None else self.gate_norm.bias
        return None if source is None else source[block * f : (block + 1) * f]

    @property
    def can_fuse(self) -> bool:
        """Whether one convolution over cat([x, h]) can replace the two (see `fused_step`)."""
        conv, rec = self.input_conv, self.recurrent_conv
        return (
            self.fused_step_supported
            and conv is not None
            and conv.padding == "same"
            and set(conv.stride) == {1}
            and conv.kernel_size == rec.kernel_size
            and conv.dilation == rec.dilation
        )

    fused_step_supported: ClassVar[bool] = False

    def fused_weight(self) -> Tensor:
        """The input and recurrent weights side by side: (G*F, C_in + F, *kernel), for one conv over cat([x, h])."""
        if self.input_conv is None:
            raise ValueError("a cell without input has no fused weight")
        return torch.cat([self.input_conv.weight, self.recurrent_conv.weight], dim=1)

    def fused_step(self, x: Tensor, state: Any, fused_weight: Tensor) -> Any:
        """One step from the frame itself, with one convolution over cat([x, h]) (when `can_fuse`)."""
        raise NotImplementedError

    def step(
        self,
        x_gates: Tensor | None,
        state: Any,
        recurrent_mask: Tensor | None = None,
        *,
        recurrent_weight: Tensor | None = None,
    ) -> Any:
        """Advances the state one step given the input-to-state pre-activations (from `input_gates`);
        ``recurrent_weight`` stands in for the recurrent convolution's own."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        parts = [f"{self.in_channels}, {self.hidden_channels}", f"spatial_dims={self.spatial_dims}"]
        if self.input_conv is not None:
            parts.append(f"kernel_size={self.input_conv.kernel_size}, stride={self.input_conv.stride}")
        parts.append(f"recurrent_kernel_size={self.recurrent_conv.kernel_size}")
        parts.append(f"activation={self.activation_name}, recurrent_activation={self.recurrent_activation_name}")
        if self.norm is not None:
            parts.append(f"norm={self.norm}")
        return ", ".join(parts)


def _inverted_dropout_mask(ref: Tensor, shape: Sequence[int], p: float) -> Tensor:
    keep = 1.0 - p
    return ref.new_empty(shape).bernoulli_(keep).div_(keep)


def channel_view(weight: Tensor, spatial_dims: int) -> Tensor:
    """(C,) -> (1, C, 1, ..., 1), to broadcast a per-channel weight over a batch of frames."""
    return weight.view(1, -1, *([1] * spatial_dims))
