"""TrajGRU (Shi et al. 2017, "Deep Learning for Precipitation Nowcasting: A Benchmark and A New Model").

A ConvGRU's state-to-state convolution reads a fixed neighbourhood of every pixel. TrajGRU reads instead L points
per pixel whose positions a small subnetwork computes at every step from the input and the state: the links follow
the motion, so a state can be carried along a curved trajectory without a kernel large enough to cover it.
The equations of one step are in [`TrajGRUCell`][convlstm.layers.TrajGRUCell]'s docstring.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convlstm.layers.activations import get_activation
from convlstm.utils.checks import check_int
from convlstm.utils.tensor_checks import check_like_parameters


def _check_odd_kernel(value: int, name: str) -> int:
    check_int(name, value)
    if value % 2 == 0:
        raise ValueError(f"{name} must be odd (the state keeps its size with 'same' padding), got {value}")
    return value


def warp(h: Tensor, flows: Tensor) -> Tensor:
    """Samples ``h`` at every pixel displaced by each of L flows (bilinear, zeros outside the frame).

    Args:
        h: (B, F, H, W) state.
        flows: (B, 2L, H, W) displacements in pixels, (dx, dy) of link l at channels 2l, 2l + 1.

    Returns:
        (B, L, F, H, W): out[:, l, :, y, x] = h[:, :, y + dy_l, x + dx_l], interpolated.
    """
    batch, channels, height, width = h.shape
    links = flows.shape[1] // 2
    ys = torch.arange(height, device=h.device, dtype=flows.dtype)
    xs = torch.arange(width, device=h.device, dtype=flows.dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")  # (H, W) pixel coordinates
    displacement = flows.unflatten(1, (links, 2))  # (B, L, 2, H, W)
    x = grid_x + displacement[:, :, 0]
    y = grid_y + displacement[:, :, 1]
    # With align_corners=False, -1 and +1 are the outer edges of the frame, so pixel i's centre is (2i + 1) / n - 1:
    # a displacement keeps its meaning (and its gradient) even in a frame one pixel wide.
    grid = torch.stack(((2 * x + 1) / width - 1, (2 * y + 1) / height - 1), dim=-1)  # (B, L, H, W, 2)
    repeated = h.unsqueeze(1).expand(batch, links, channels, height, width).flatten(0, 1)  # (B*L, F, H, W)
    sampled = F.grid_sample(
        repeated, grid.flatten(0, 1).to(h.dtype), mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return sampled.unflatten(0, (batch, links))


class TrajGRUCell(nn.Module):
    """One TrajGRU step: a GRU whose state-to-state links follow a flow computed at every step.

    One step, for a state h (B, F, H, W) and a frame x (B, C, H, W):

    ```text
    U           = flow_out(act(conv_xf(x) + conv_hf(h)))   # (B, 2L, H, W)
    h_l(p)      = h(p + U_l(p)),  l = 1..L                 # bilinear
    [r, z, n]_h = W_h * concat(h_1, ..., h_L)              # 1x1 conv
    [r, z, n]_x = W_x * x                                  # (B, 3F, H, W)
    r = σ(r_x + r_h),  z = σ(z_x + z_h),  n = act(n_x + r ∘ n_h)
    h' = (1 - z) ∘ n + z ∘ h
    ```

    U holds L displacement fields, in pixels; h_l samples h bilinearly at the displaced points, zeros outside the
    frame; W_h is a 1x1 convolution over the L sampled states, (B, L·F, H, W) to (B, 3F, H, W).

    With every displacement zero, each h_l is h and the step is a ConvGRU step (reset applied after the recurrent
    term) whose state-to-state kernel is 1x1 with weight sum_l W_h,l.

    Args:
        in_channels: channels C of the input frames; 0 for a cell without input, driven by its state (the first
            layer of a forecaster).
        hidden_channels: channels F of the state.
        kernel_size: input-to-state kernel (odd; "same" padding, stride 1).
        links: L, the number of points each pixel's state reads.
        flow_channels: channels of the flow-generating subnetwork's hidden layer (32 in Shi et al.).
        flow_kernel_size: kernel of the flow subnetwork's three convolutions (odd; 5 in Shi et al.).
        activation: of the candidate state and of the flow subnetwork's hidden layer ("leaky_relu", slope 0.2, as
            Shi et al.; any name in [`convlstm.layers.ACTIVATIONS`][convlstm.layers.ACTIVATIONS]).
        recurrent_activation: of the reset and update gates.
        bias: whether the convolutions have biases.

    Shape:
        x: (B, C, H, W) or None (in_channels=0); state h: (B, F, H, W); returns h' (B, F, H, W).
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        kernel_size: int = 3,
        *,
        links: int = 5,
        flow_channels: int = 32,
        flow_kernel_size: int = 5,
        activation: str = "leaky_relu",
        recurrent_activation: str = "sigmoid",
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels, minimum=0)
        self.hidden_channels = check_int("hidden_channels", hidden_channels)
        _check_odd_kernel(kernel_size, "kernel_size")
        self.links = check_int("links", links)
        check_int("flow_channels", flow_channels)
        _check_odd_kernel(flow_kernel_size, "flow_kernel_size")
        self.activation_name, self.recurrent_activation_name = activation, recurrent_activation
        self.activation = get_activation(activation, argument="activation")
        self.recurrent_activation = get_activation(recurrent_activation, argument="recurrent_activation")
        f, pad, flow_pad = hidden_channels, kernel_size // 2, flow_kernel_size // 2
        self.input_conv: nn.Conv2d | None = None
        self.input_flow_conv: nn.Conv2d | None = None
        if in_channels > 0:
            self.input_conv = nn.Conv2d(in_channels, 3 * f, kernel_size, padding=pad, bias=bias)
            self.input_flow_conv = nn.Conv2d(in_channels, flow_channels, flow_kernel_size, padding=flow_pad, bias=bias)
        self.state_flow_conv = nn.Conv2d(f, flow_channels, flow_kernel_size, padding=flow_pad, bias=bias)
        self.flow_out = nn.Conv2d(flow_channels, 2 * links, flow_kernel_size, padding=flow_pad, bias=bias)
        # The state-to-state "convolution": a 1x1 over the L warped copies of the state, side by side.
        self.recurrent_conv = nn.Conv2d(links * f, 3 * f, 1, bias=bias)

    def flows(self, x: Tensor | None, h: Tensor) -> Tensor:
        """The L displacement fields (B, 2L, H, W), in pixels, from the frame and the state."""
        hidden = self.state_flow_conv(h)
        if x is not None and self.input_flow_conv is not None:
            hidden = hidden + self.input_flow_conv(x)
        return self.flow_out(self.activation(hidden))

    def forward(self, x: Tensor | None, state: Tensor | None = None) -> Tensor:
        """One step. ``x`` may be None only for a cell without input, given a state; a missing state is zeros."""
        weight = self.recurrent_conv.weight
        if x is None:
            if self.in_channels != 0:
                raise ValueError(f"x must be a tensor (B, {self.in_channels}, H, W), got None")
            if state is None:
                raise ValueError("a cell without input (in_channels=0) needs a state")
        else:
            if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != self.in_channels:
                got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
                raise ValueError(f"x must have shape (B, C={self.in_channels}, H, W), got {got}")
            check_like_parameters(x, weight, name="x", owner="cell")
        batch, size = (x.shape[0], x.shape[2:]) if x is not None else (state.shape[0], state.shape[2:])  # type: ignore[union-attr]
        expected = (batch, self.hidden_channels, *size)
        if state is None:
            ref = x if x is not None else weight
            state = ref.new_zeros(expected)
        elif not isinstance(state, Tensor) or tuple(state.shape) != expected:
            got = tuple(state.shape) if isinstance(state, Tensor) else type(state).__name__
            raise ValueError(f"state must have shape {expected}, got {got}")
        else:
            check_like_parameters(state, weight, name="state", owner="cell")
        f = self.hidden_channels
        warped = warp(state, self.flows(x, state))  # (B, L, F, H, W)
        recurrent = self.recurrent_conv(warped.flatten(1, 2))  # (B, 3F, H, W)
        if x is not None and self.input_conv is not None:
            inputs = self.input_conv(x)
            rz = inputs[:, : 2 * f] + recurrent[:, : 2 * f]
            x_n: Tensor | float = inputs[:, 2 * f :]
        else:
            rz, x_n = recurrent[:, : 2 * f], 0.0
        r, z = self.recurrent_activation(rz).chunk(2, dim=1)
        n = self.activation(x_n + r * recurrent[:, 2 * f :])
        return n + z * (state - n)

    def extra_repr(self) -> str:
        """Channels, links and activations, for the module's repr."""
        return (
            f"{self.in_channels}, {self.hidden_channels}, links={self.links}, "
            f"activation={self.activation_name}, recurrent_activation={self.recurrent_activation_name}"
        )


class TrajGRU(nn.Module):
    """A stack of TrajGRU layers over (B, T, C, H, W) sequences, called like [`ConvGRU`][convlstm.layers.ConvGRU].

    Args:
        in_channels: channels of the input frames (0: a stack without input, driven by its state only).
        hidden_channels: channels per layer: an int, or one per layer.
        kernel_size: input-to-state kernel of every layer (odd).
        num_layers: layers in the stack.
        links: L of every layer: an int, or one per layer.
        flow_channels: as [`TrajGRUCell`][convlstm.layers.TrajGRUCell].
        flow_kernel_size: as [`TrajGRUCell`][convlstm.layers.TrajGRUCell].
        activation: as [`TrajGRUCell`][convlstm.layers.TrajGRUCell].
        recurrent_activation: as [`TrajGRUCell`][convlstm.layers.TrajGRUCell].
        bias: as [`TrajGRUCell`][convlstm.layers.TrajGRUCell].

    Shape:
        x: (B, T, C_in, H, W) -> output (B, T, hidden_channels[-1], H, W); state: a list of h tensors
        (B, hidden_channels[l], H, W), one per layer, bottom first.

    Examples:
        >>> layer = TrajGRU(1, [16, 16], num_layers=2, links=5)
        >>> out, state = layer(torch.randn(2, 6, 1, 32, 32))      # out (2, 6, 16, 32, 32)
        >>> more, state = layer(torch.randn(2, 3, 1, 32, 32), state)   # continues where the first call ended
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int | Sequence[int],
        kernel_size: int = 3,
        num_layers: int = 1,
        *,
        links: int | Sequence[int] = 5,
        flow_channels: int = 32,
        flow_kernel_size: int = 5,
        activation: str = "leaky_relu",
        recurrent_activation: str = "sigmoid",
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.num_layers = check_int("num_layers", num_layers)
        self.in_channels = check_int("in_channels", in_channels, minimum=0)
        self.hidden_channels = _per_layer(hidden_channels, num_layers, "hidden_channels")
        self.links = _per_layer(links, num_layers, "links")
        cells = []
        layer_in = in_channels
        for hidden, layer_links in zip(self.hidden_channels, self.links, strict=True):
            cells.append(
                TrajGRUCell(
                    layer_in,
                    hidden,
                    kernel_size,
                    links=layer_links,
                    flow_channels=flow_channels,
                    flow_kernel_size=flow_kernel_size,
                    activation=activation,
                    recurrent_activation=recurrent_activation,
                    bias=bias,
                )
            )
            layer_in = hidden
        self.cells = nn.ModuleList(cells)
        self.out_channels = layer_in

    def forward(self, x: Tensor, state: list[Tensor] | None = None) -> tuple[Tensor, list[Tensor]]:
        """Runs the stack over a sequence; returns the last layer's outputs and the state after the last step."""
        outputs, final = self.forward_layers(x, state)
        return outputs[-1], final

    def forward_layers(self, x: Tensor, state: list[Tensor] | None = None) -> tuple[list[Tensor], list[Tensor]]:
        """As [`forward`][convlstm.layers.TrajGRU.forward], but returns the output sequence of every layer (bottom
        first)."""
        if not isinstance(x, Tensor) or x.ndim != 5 or x.shape[2] != self.in_channels:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (B, T, C={self.in_channels}, H, W), got {got}")
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"x must have at least one sequence and one time step, got shape {tuple(x.shape)}")
        if state is not None and (not isinstance(state, list | tuple) or len(state) != self.num_layers):
            raise ValueError(f"state must be a list of {self.num_layers} tensors (one per layer), got {state!r:.80}")
        outputs: list[Tensor] = []
        final: list[Tensor] = []
        layer_input = x
        for index, cell in enumerate(self.cells):
            h = None if state is None else state[index]
            hidden = []
            for t in range(x.shape[1]):
                frame = None if cell.in_channels == 0 else layer_input[:, t]
                if frame is None and h is None:
                    raise ValueError("a stack without input (in_channels=0) needs a state")
                h = cell(frame, h)
                hidden.append(h)
            layer_input = torch.stack(hidden, dim=1)  # (B, T, F_l, H, W)
            outputs.append(layer_input)
            final.append(hidden[-1])
        return outputs, final


def _per_layer(value: int | Sequence[int], num_layers: int, name: str) -> list[int]:
    values = [value] * num_layers if isinstance(value, int) else list(value)
    if len(values) != num_layers:
        raise ValueError(f"{name} must be an int or have num_layers={num_layers} entries, got {value!r}")
    return [check_int(name, v) for v in values]
