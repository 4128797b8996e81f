"""ConvLSTM and ConvGRU sequence layers: stacks of cells run over (B, T, C, *spatial) sequences."""

import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from convlstm.layers.cell_base import ConvRNNCellBase, LSTMState
from convlstm.layers.conv import IntOrTuple, check_spatial_dims
from convlstm.layers.schedule import SCHEDULES, InputSchedule, choose_schedule
from convlstm.utils.checks import check_choice, check_int, check_probability

logger = logging.getLogger(__name__)

StateT = TypeVar("StateT", LSTMState, Tensor)
CellT = TypeVar("CellT", bound=ConvRNNCellBase)


def _per_layer(value: Any, num_layers: int, name: str) -> list[Any]:
    """One value per layer: a scalar (or kernel tuple) is repeated, a list must have num_layers entries."""
    if isinstance(value, list):
        if len(value) != num_layers:
            raise ValueError(f"{name} must have num_layers={num_layers} entries, got {len(value)}: {value!r}")
        return value
    if isinstance(value, tuple) and name == "hidden_channels":
        return _per_layer(list(value), num_layers, name)
    return [value] * num_layers


class ConvRNNBase(nn.Module, Generic[CellT, StateT]):
    """A stack of convolutional recurrent layers; subclasses say which cell.

    The state is a list with one entry per layer and direction, at index ``layer * num_directions + direction``
    (as torch.nn.LSTM orders h_n), so a sequence run in chunks, each starting from the last one's state, equals
    one call (for unidirectional layers).

    ``checkpoint_every`` (an attribute that may also be set after construction) trades compute for memory: while
    autograd records, each cell runs in chunks of that many steps under torch.utils.checkpoint, which keeps only
    a chunk's input frames and starting state and recomputes its activations in the backward pass. Memory for
    the backward pass then grows with T by the layer outputs (which every layer returns anyway) instead of by all
    gate activations; one more forward pass is the price. Outputs and gradients are those of the plain layer.

    Variable-length sequences: ``lengths`` (B,) or ``mask`` (B, T) mark the valid steps of a padded batch, with the
    semantics of Keras's masked recurrent layers (ConvLSTM2D included). On a masked step the cell does not advance:
    the state is carried over unchanged, and the output repeats the last output computed before it in processing
    order, or is zero when no valid step has been processed yet (Keras's ``zero_output_for_mask=False``, its
    default). So with ``lengths`` (padding at the end) the returned state is each sequence's state after its own
    last valid step; the reverse direction first passes over the padding without changing the state and then
    runs over each sequence's valid part only, as if the sequence were alone; outputs on padded steps repeat the
    last valid output (forward) or are zero (reverse). Without ``lengths`` and ``mask`` the layer runs exactly as
    before, on the same code path.
    """

    cells: nn.ModuleList

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int | Sequence[int],
        kernel_size: IntOrTuple | list[IntOrTuple],
        num_layers: int,
        *,
        spatial_dims: int,
        bidirectional: bool,
        reverse: bool,
        dropout: float,
        input_schedule: InputSchedule,
        cell_kwargs: dict[str, Any],
        checkpoint_every: int | None = None,
    ) -> None:
        super().__init__()
        self.num_layers = check_int("num_layers", num_layers)
        self.spatial_dims = check_spatial_dims(spatial_dims)
        if bidirectional and reverse:
            raise ValueError("reverse=True cannot be combined with bidirectional=True (it already runs both ways)")
        check_choice("input_schedule", input_schedule, SCHEDULES)
        self.in_channels = check_int("in_channels", in_channels, 0)
        self.hidden_channels = [
            check_int("hidden_channels", c) for c in _per_layer(hidden_channels, num_layers, "hidden_channels")
        ]
        kernels = _per_layer(kernel_size, num_layers, "kernel_size")
        per_layer_kwargs = {name: _per_layer(v, num_layers, name) for name, v in cell_kwargs.items()}
        self.bidirectional, self.reverse = bidirectional, reverse
        self.num_directions = 2 if bidirectional else 1
        self.dropout = check_probability("dropout", dropout)
        self.input_schedule: InputSchedule = input_schedule
        if checkpoint_every is not None and (
            not isinstance(checkpoint_every, int) or isinstance(checkpoint_every, bool) or checkpoint_every < 1
        ):
            raise ValueError(
                f"checkpoint_every must be None or an int >= 1 (steps per chunk), got {checkpoint_every!r}"
            )
        self.checkpoint_every = checkpoint_every
        cells = []
        layer_in = in_channels
        for layer in range(num_layers):
            kwargs = {name: values[layer] for name, values in per_layer_kwargs.items()}
            for _ in range(self.num_directions):
                cells.append(
                    self._make_cell(layer_in, self.hidden_channels[layer], kernels[layer], spatial_dims, kwargs)
                )
            layer_in = self.hidden_channels[layer] * self.num_directions
        self.cells = nn.ModuleList(cells)
        self.out_channels = layer_in

    def _make_cell(self, in_channels: int, hidden: int, kernel: IntOrTuple, dims: int, kwargs: dict[str, Any]) -> CellT:
        raise NotImplementedError

    @staticmethod
    def hidden_of(state: StateT) -> Tensor:
        """The hidden tensor h of one layer's state: h of an LSTM's (h, c), a GRU's state itself."""
        raise NotImplementedError

    def _check_state(self, state: list[StateT], batch: int, sizes: list[tuple[int, ...]]) -> None:
        raise NotImplementedError

    def cell(self, layer: int, direction: int = 0) -> CellT:
        """The cell of ``layer`` (0 is the bottom) and ``direction`` (1 is the backward one when bidirectional)."""
        return self.cells[layer * self.num_directions + direction]  # type: ignore[return-value]

    def forward(
        self,
        x: Tensor,
        state: list[StateT] | None = None,
        *,
        lengths: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> tuple[Tensor, list[StateT]]:
        """Runs the stack over a sequence.

        Args:
            x: (B, T, C_in, *spatial). A layer without input (in_channels=0) takes x of shape (B, T, 0, *spatial),
                which only carries the number of steps and the frame size.
            state: the initial state (see the class docstring), or None for zeros.
            lengths: optional (B,) integer tensor (or sequence of ints): sequence b is valid on steps
                [0, lengths[b]) and padded after (as for torch.nn.utils.rnn.pack_padded_sequence).
            mask: optional (B, T) boolean tensor, True on valid steps (Keras's mask; may have gaps). At most one
                of ``lengths`` and ``mask``; see the class docstring for what masked steps do.

        Returns:
            (output, state): output (B, T, F_last * num_directions, *spatial_state) of the last layer, aligned with
            the input frames (also for reverse=True); the state after the last step of each layer and direction
            (with ``lengths``: after each sequence's last valid step).
        """
        outputs, final = self.forward_layers(x, state, lengths=lengths, mask=mask)
        return outputs[-1], final

    def forward_layers(
        self,
        x: Tensor,
        state: list[StateT] | None = None,
        *,
        lengths: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> tuple[list[Tensor], list[StateT]]:
        """As `forward`, but returns the output sequence of every layer (bottom first)."""
        self._check_input(x)
        step_mask = steps_mask(lengths, mask, batch=x.shape[0], steps=x.shape[1], device=x.device)
        batch = x.shape[0]
        sizes = self._state_sizes(tuple(x.shape[3:]))
        if state is not None:
            self._check_state(state, batch, sizes)
        outputs: list[Tensor] = []
        final: list[StateT] = []
        layer_input = x
        for layer in range(self.num_layers):
            directional = []
            for direction in range(self.num_directions):
                index = layer * self.num_directions + direction
                backwards = self.reverse or direction == 1
                out, last = self._run_cell(
                    self.cell(layer, direction),
                    layer_input,
                    None if state is None else state[index],
                    backwards,
                    step_mask,
                )
                directional.append(out)
                final.append(last)
            layer_output = directional[0] if len(directional) == 1 else torch.cat(directional, dim=2)
            outputs.append(layer_output)
            if layer < self.num_layers - 1 and self.dropout > 0:
                layer_output = F.dropout(layer_output, self.dropout, self.training)
            layer_input = layer_output
        return outputs, final

    def _check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise ValueError(f"x must be a tensor (B, T, C, *spatial), got {type(x).__name__}")
        expected = 3 + self.spatial_dims
        if x.ndim != expected:
            raise ValueError(
                f"x must have {expected} dimensions (B, T, C={self.in_channels}, {self.spatial_dims} spatial), "
                f"got shape {tuple(x.shape)}"
            )
        if x.shape[1] == 0:
            raise ValueError(f"x must have at least one time step in dim 1, got shape {tuple(x.shape)}")
        if x.shape[0] == 0:
            raise ValueError(f"x must have a batch of at least one sequence in dim 0, got shape {tuple(x.shape)}")
        self.cell(0).check_input(x[:, 0], name="x[:, t]", leading="B")

    def _state_sizes(self, input_size: tuple[int, ...]) -> list[tuple[int, ...]]:
        sizes, size = [], input_size
        for layer in range(self.num_layers):
            size = self.cell(layer).state_size(size)
            if min(size) <= 0:
                raise ValueError(f"layer {layer} gets frames of size {size}: too small for its kernel and padding")
            sizes.append(size)
        return sizes

    def _schedule(self, cell: CellT, x: Tensor, masked: bool) -> str:
        can_fuse = cell.can_fuse and not masked
        if self.input_schedule == "auto":
            return choose_schedule(x, can_fuse=can_fuse)
        if self.input_schedule == "fused" and not can_fuse:
            raise ValueError(
                "input_schedule='fused' needs LSTM cells with stride 1, padding 'same', equal input and recurrent "
                "kernels and dilations, and no input/recurrent dropout in training"
            )
        return self.input_schedule

    def _run_cell(
        self, cell: CellT, x: Tensor, state: StateT | None, backwards: bool, step_mask: Tensor | None = None
    ) -> tuple[Tensor, StateT]:
        """Runs one cell over all steps: x (B, T, C, *S) -> outputs (B, T, F, *S_state), last state.

        With ``checkpoint_every`` (and autograd recording), the steps run in chunks whose activations are
        recomputed in the backward pass. The dropout masks are drawn here, once per call, so a recomputed chunk
        uses the masks of its forward pass. ``step_mask`` (B, T) bool marks valid steps (None: all are).
        """
        hidden, last = self._run_cell_steps(cell, x, state, backwards, step_mask)
        if step_mask is None:
            return hidden, last
        return _zero_before_first_valid(hidden, step_mask, backwards), last

    def _run_cell_steps(
        self, cell: CellT, x: Tensor, state: StateT | None, backwards: bool, step_mask: Tensor | None
    ) -> tuple[Tensor, StateT]:
        batch, steps = x.shape[:2]
        has_input = cell.input_conv is not None
        input_mask, recurrent_mask = cell.dropout_masks(x if has_input else None, batch, cell.state_size(x.shape[3:]))
        masked = input_mask is not None or recurrent_mask is not None
        schedule = self._schedule(cell, x, masked) if has_input else "per_step"
        run = functools.partial(
            _run_steps,
            cell,
            hidden_of=self.hidden_of,
            schedule=schedule,
            input_mask=input_mask,
            recurrent_mask=recurrent_mask,
            backwards=backwards,
        )
        every = self.checkpoint_every
        if every is None or not torch.is_grad_enabled():
            return run(x, state, step_mask=step_mask)
        starts = range(0, steps, every)
        chunks: list[Tensor] = []
        for start in reversed(starts) if backwards else starts:
            chunk_mask = None if step_mask is None else step_mask[:, start : start + every]
            hidden, state = _checkpointed(
                functools.partial(run, step_mask=chunk_mask), x[:, start : start + every], state
            )
            chunks.append(hidden)
        if backwards:
            chunks.reverse()
        if state is None:
            raise AssertionError("unreachable: at least one step ran")
        return torch.cat(chunks, dim=1), state


def _run_steps(
    cell: CellT,
    x: Tensor,
    state: StateT | None,
    *,
    hidden_of: Callable[[StateT], Tensor],
    schedule: str,
    input_mask: Tensor | None,
    recurrent_mask: Tensor | None,
    backwards: bool,
    step_mask: Tensor | None = None,
) -> tuple[Tensor, StateT]:
    """Runs ``cell`` over the steps of x (B, t, C, *S) from ``state``: -> hidden (B, t, F, *S_state), last state.

    ``step_mask`` (B, t) bool: on a False step the state is carried over (its hidden is what the step returns).
    """
    steps = x.shape[1]
    has_input = cell.input_conv is not None
    batched_gates = _batched_input_gates(cell, x, input_mask) if schedule == "batched" else None
    # Every step reuses one cast of each weight it needs (see _per_call_weight).
    fused_weight = _per_call_weight(cell.fused_weight(), x) if schedule == "fused" else None
    input_conv = cell.input_conv if schedule == "per_step" else None
    input_weight = None if input_conv is None else _per_call_weight(input_conv.weight, x)
    recurrent_weight = _per_call_weight(cell.recurrent_conv.weight, x) if schedule != "fused" else None
    hidden: list[Tensor] = []
    for t in reversed(range(steps)) if backwards else range(steps):
        previous = state
        if fused_weight is not None and state is not None:
            new_state = cell.fused_step(x[:, t], state, fused_weight)
        else:
            if batched_gates is not None:
                gates: Tensor | None = batched_gates[:, t]
            else:
                gates = cell.input_gates(x[:, t], input_mask, weight=input_weight) if has_input else None
            new_state = cell.step(gates, state, recurrent_mask, recurrent_weight=recurrent_weight)
        if step_mask is not None:
            new_state = _keep_where_masked(step_mask[:, t], new_state, previous)
        state = new_state
        hidden.append(hidden_of(state))
    if backwards:
        hidden.reverse()
    if state is None:
        raise AssertionError("unreachable: at least one step ran")
    return _stack_steps(hidden), state


def steps_mask(
    lengths: Tensor | Sequence[int] | None, mask: Tensor | None, *, batch: int, steps: int, device: torch.device
) -> Tensor | None:
    """The (B, T) boolean mask of valid steps from ``lengths`` (B,) or ``mask`` (B, T); None when neither is given
    or every step is valid (so that a full batch runs the unmasked code path)."""
    if lengths is not None and mask is not None:
        raise ValueError("pass at most one of lengths (B,) and mask (B, T), got both")
    if lengths is not None:
        lengths = torch.as_tensor(lengths)
        if lengths.shape != (batch,) or lengths.dtype.is_floating_point or lengths.dtype.is_complex:
            raise ValueError(
                f"lengths must be an integer tensor of shape (B,)=({batch},), "
                f"got {lengths.dtype} of shape {tuple(lengths.shape)}"
            )
        low, high = int(lengths.min()), int(lengths.max())
        if low < 0 or high > steps:
            raise ValueError(f"lengths must lie in [0, T={steps}], got values from {low} to {high}")
        if low == steps:
            return None
        return torch.arange(steps, device=device) < lengths.to(device).unsqueeze(1)
    if mask is not None:
        if not isinstance(mask, Tensor) or mask.shape != (batch, steps) or mask.dtype != torch.bool:
            got = f"{mask.dtype} of shape {tuple(mask.shape)}" if isinstance(mask, Tensor) else type(mask).__name__
            raise ValueError(f"mask must be a bool tensor of shape (B, T)=({batch}, {steps}), got {got}")
        if bool(mask.all()):
            return None
        return mask.to(device)
    return None


def _keep_where_masked(valid: Tensor, new: StateT, previous: StateT | None) -> StateT:
    """The new state where ``valid`` (B,) is True, the previous one (zeros before the first step) elsewhere."""
    new_parts = (new,) if isinstance(new, Tensor) else tuple(new)
    old_parts = (
        (None,) * len(new_parts) if previous is None else (previous,) if isinstance(previous, Tensor) else previous
    )
    kept = []
    for n, o in zip(new_parts, old_parts, strict=True):
        where = valid.view(-1, *([1] * (n.ndim - 1)))
        kept.append(torch.where(where, n, torch.zeros_like(n) if o is None else o.to(n.dtype)))
    if isinstance(new, Tensor):
        return kept[0]
    return tuple(kept)  # type: ignore[return-value]


def _zero_before_first_valid(hidden: Tensor, step_mask: Tensor, backwards: bool) -> Tensor:
    """Zeroes the outputs (B, T, F, *S) of masked steps processed before any valid one of their sequence (Keras
    gives zeros there, not the initial state); later masked steps keep the carried-over output."""
    order = step_mask.flip(1) if backwards else step_mask
    seen = order.to(torch.uint8).cummax(dim=1).values.bool()
    if backwards:
        seen = seen.flip(1)
    if bool(seen.all()):
        return hidden
    seen = seen.view(*seen.shape, *([1] * (hidden.ndim - 2)))
    return torch.where(seen, hidden, torch.zeros_like(hidden))


def _per_call_weight(weight: Tensor, x: Tensor) -> Tensor:
    """``weight`` as every step of one call uses it: under autocast, cast once to the autocast dtype of x's device.
    Autocast caches only casts of parameters, and none while a CUDA graph is captured (its cache is off there), so
    a weight cast inside the step would be cast, and saved for the backward pass, once per step (as the concatenated
    fused weight always would)."""
    device_type = x.device.type
    if torch.is_autocast_enabled(device_type):
        return weight.to(torch.get_autocast_dtype(device_type))
    return weight


def _stack_steps(hidden: list[Tensor]) -> Tensor:
    """Frames (B, F, H, W) -> a sequence (B, T, F, H, W). Channels-last frames give a sequence stored time-major as
    (T, B, H, W, F), so that every frame the next layer reads, x[:, t], is a contiguous channels-last block."""
    first = hidden[0]
    if first.ndim == 4 and not first.is_contiguous() and first.is_contiguous(memory_format=torch.channels_last):
        return torch.stack([h.permute(0, 2, 3, 1) for h in hidden]).permute(1, 0, 4, 2, 3)
    return torch.stack(hidden, dim=1)


def _checkpointed(
    run: Callable[[Tensor, StateT | None], tuple[Tensor, StateT]], x: Tensor, state: StateT | None
) -> tuple[Tensor, StateT]:
    """``run(x, state)``, keeping only its inputs for the backward pass and recomputing the rest there.

    The state's tensors go in as arguments of their own: torch.utils.checkpoint saves (and version-checks) tensor
    arguments, but would hold a tuple of them as an opaque object.
    """
    tensors = () if state is None else (state,) if isinstance(state, Tensor) else tuple(state)

    def chunk(x_chunk: Tensor, *state_tensors: Tensor) -> tuple[Tensor, StateT]:
        rebuilt: Any = None if state is None else state_tensors[0] if isinstance(state, Tensor) else state_tensors
        return run(x_chunk, rebuilt)

    result: tuple[Tensor, StateT] = checkpoint(chunk, x, *tensors, use_reentrant=False)
    return result


def _batched_input_gates(cell: ConvRNNCellBase, x: Tensor, input_mask: Tensor | None) -> Tensor | None:
    """The input-to-state pre-activations of all frames in one convolution: (B, T, G*F, *S_state)."""
    batch, steps = x.shape[:2]
    mask = None if input_mask is None else input_mask.unsqueeze(1).expand(-1, steps, *input_mask.shape[1:])
    flat = cell.input_gates(x.flatten(0, 1), None if mask is None else mask.flatten(0, 1))  # (B*T, G*F, *S)
    return None if flat is None else flat.unflatten(0, (batch, steps))
