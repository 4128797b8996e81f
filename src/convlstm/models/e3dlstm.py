"""E3D-LSTM (Wang et al. 2019, "Eidetic 3D LSTM"): a stack of Eidetic 3D LSTM cells on p x p patches, each step
reading a window of the last τ frames, predicting frame t + 1 at every step t.

The configuration and the layout of the weights are OpenSTL's (Tan et al. 2023, ``E3DLSTM_Model`` with
configs/mmnist/E3DLSTM.py), so that its weights load: 4x4 patches, 4 layers of 128, (2, 5, 5) kernels, windows of 2
frames. ``e3dlstm_mmnist`` has 51,347,456 parameters, OpenSTL's model's own count (its table prints 51.0M), and
costs 298.87G FLOPs over the 19 steps of one 10 -> 10 sequence as fvcore counts them (one multiply-add = one FLOP;
the convolutions, the recall's two products and the layer norm at 5 per element; OpenSTL's table: 298.9G): see
[`E3DLSTM.flops`][convlstm.models.E3DLSTM.flops].
"""

import dataclasses
from typing import Any

import torch
from torch import Tensor, nn

from convlstm.layers.e3d_lstm import Eidetic3DLSTMCell
from convlstm.models.base import config_from_arguments
from convlstm.models.patch_recurrent import PatchRecurrentForecaster
from convlstm.models.registry import register_model
from convlstm.utils.checks import check_int

E3DLSTMModelState = tuple[Tensor, list[tuple[Tensor, Tensor]], Tensor]
"""The window's earlier inputs (B, τ - 1, C p^2, H / p, W / p); each layer's (h, memories), h (B, F, τ, H / p, W / p)
and memories (B, N, F, τ, H / p, W / p) the N cell states the recall reads next, the current c last; and the
spatiotemporal memory m (B, F, τ, H / p, W / p) that the bottom layer reads next."""


@dataclasses.dataclass
class E3DLSTMConfig:
    in_channels: int = 1
    height: int = 64
    width: int = 64
    hidden_channels: int = 128
    num_layers: int = 4
    kernel_size: int = 5
    temporal_kernel_size: int = 2
    window_length: int = 2
    patch_size: int = 4
    layer_norm: bool = False
    recall_window: int | None = None
    update_memory: bool = False
    default_horizon: int = 10


class E3DLSTM(PatchRecurrentForecaster):
    """Patches -> windows of the last τ inputs -> ``num_layers`` Eidetic 3D LSTM cells -> a convolution over the
    window back to one frame of patches (linear output).

    At step t the bottom layer reads the window of inputs t - τ + 1 .. t (zeros before the first); a layer above
    reads the window-shaped h of the one below. The recall of every layer attends over its earlier cell states;
    the spatiotemporal memory m goes up the stack and from the top layer at step t - 1 to the bottom layer at step t,
    as in PredRNN. Where OpenSTL's model departs from the paper (besides its cell's departures, listed in
    [`Eidetic3DLSTMCell`][convlstm.layers.Eidetic3DLSTMCell]):

    - the recall reads every cell state since the first step (the zero state included), not the last τ:
      ``recall_window=None`` (an int keeps the last ``recall_window`` states, the current one included: the paper's
      choice, and a cost that stays flat over long sequences);
    - each cell passes on the m that came in, not its new m', so m stays the zeros it starts as and the convolution
      of m runs on zeros (its weights get no gradient): ``update_memory=False``; True passes m' on, as the paper.

    The defaults are OpenSTL's, so that its weights give its outputs
    ([`e3dlstm_from_openstl`][convlstm.interop.e3dlstm_from_openstl]).

    Args:
        in_channels: channels C of the frames.
        height: H of the frames (the cells' layer norm has a weight per pixel, so the model works on one frame
            size).
        width: W of the frames.
        hidden_channels: channels F of every layer's states (one width: m passes from layer to layer).
        num_layers: cells in the stack.
        kernel_size: spatial size of the cells' 3-D convolutions (odd).
        temporal_kernel_size: their temporal size, at most ``window_length``.
        window_length: τ, the frames each step reads.
        patch_size: p; the cells work on (C p^2, H / p, W / p) patches; H and W must be divisible by p.
        layer_norm: normalise the cells' gate convolutions (a per-channel affine; see the cell).
        recall_window: the most cell states each recall reads (None: all since the first step, as OpenSTL).
        update_memory: pass each cell's new spatiotemporal memory on (the paper) rather than the one it read
            (OpenSTL).
        default_horizon: frames forecast when ``horizon`` is not given.

    Shape:
        `one_step`: frames (B, T, C, H, W) -> predictions (B, T, C, H, W), prediction t for frame t + 1.
        forward: context (B, T_in, C, H, W) -> predictions (B, horizon, C, H, W).
        state: `E3DLSTMModelState`; with ``recall_window=None`` it grows by one cell state per layer and step.

    Examples:
        >>> model = create_model("e3dlstm_mmnist")
        >>> future = model(torch.rand(4, 10, 1, 64, 64), horizon=10)   # (4, 10, 1, 64, 64)
    """

    family = "e3dlstm"
    config_class = E3DLSTMConfig
    one_frame_size_because = "E3D-LSTM's layer norm is per pixel"

    def __init__(
        self,
        *,
        in_channels: int = 1,
        height: int = 64,
        width: int = 64,
        hidden_channels: int = 128,
        num_layers: int = 4,
        kernel_size: int = 5,
        temporal_kernel_size: int = 2,
        window_length: int = 2,
        patch_size: int = 4,
        layer_norm: bool = False,
        recall_window: int | None = None,
        update_memory: bool = False,
        default_horizon: int = 10,
    ) -> None:
        super().__init__()
        for name in ("in_channels", "height", "width", "hidden_channels", "num_layers", "patch_size"):
            check_int(name, locals()[name])
        check_int("default_horizon", default_horizon)
        if recall_window is not None:
            check_int("recall_window", recall_window)
        if height % patch_size or width % patch_size:
            raise ValueError(f"height and width must be divisible by patch_size={patch_size}, got {height}x{width}")
        self.config = config_from_arguments(E3DLSTMConfig, locals())
        self.default_horizon = default_horizon
        self.patch_size = patch_size
        patched, f = in_channels * patch_size**2, hidden_channels
        grid = (height // patch_size, width // patch_size)
        self.cells = nn.ModuleList(
            Eidetic3DLSTMCell(
                patched if layer == 0 else f,
                f,
                window_length,
                *grid,
                kernel_size,
                temporal_kernel_size=temporal_kernel_size,
                layer_norm=layer_norm,
            )
            for layer in range(num_layers)
        )
        # The window of the top layer's h to one frame of patches.
        self.conv_last = nn.Conv3d(f, patched, (window_length, 1, 1), stride=(window_length, 1, 1), bias=False)

    def _step(
        self, patch: Tensor, state: E3DLSTMModelState | None, record: list[Any] | None
    ) -> tuple[Tensor, E3DLSTMModelState]:
        tau = self.config.window_length
        if state is None:
            batch, grid = patch.shape[0], patch.shape[2:]
            earlier = patch.new_zeros(batch, tau - 1, *patch.shape[1:])
            zeros = patch.new_zeros(batch, self.config.hidden_channels, tau, *grid)
            layers, m = [(zeros, zeros[:, None])] * len(self.cells), zeros
        else:
            earlier, layers, m = state
            if len(layers) != len(self.cells):
                raise ValueError(f"state must hold (h, memories) of {len(self.cells)} layers, got {len(layers)}")
        window = torch.cat([earlier, patch[:, None]], dim=1)  # (B, τ, C p^2, h, w)
        x = window.transpose(1, 2)  # (B, C p^2, τ, h, w): Conv3d's layout
        new_layers = []
        cells: list[Eidetic3DLSTMCell] = list(self.cells)  # type: ignore[arg-type]
        for cell, (h, memories) in zip(cells, layers, strict=True):
            h, c, m_new = cell(x, (h, memories[:, -1], m), memories)
            if self.config.update_memory:
                m = m_new
            memories = torch.cat([memories, c[:, None]], dim=1)
            if self.config.recall_window is not None:
                memories = memories[:, -self.config.recall_window :]
            new_layers.append((h, memories))
            x = h
        prediction = self.conv_last(x).squeeze(2)  # (B, C p^2, h, w)
        return prediction, (window[:, 1:], new_layers, m)

    # --------------------------------------------------------------------------------------------------- cost
    def conv_flops(self, height: int, width: int, steps: int) -> int:
        """Multiply-adds of the convolutions over ``steps`` steps on H x W frames (one multiply-add = one FLOP, as
        fvcore counts): a temporal kernel k_t over τ frames computes τ - k_t + 1 slices, repeated afterwards."""
        config = self.config
        f, tau, layers = config.hidden_channels, config.window_length, config.num_layers
        patched = config.in_channels * self.patch_size**2
        pixels = (height // self.patch_size) * (width // self.patch_size)
        per_output = config.temporal_kernel_size * config.kernel_size**2
        slices = tau - config.temporal_kernel_size + 1
        # conv_x (7F) of the bottom layer, then per layer conv_h, conv_m (4F each), conv_oc, conv_om (F each);
        gates = (patched + (layers - 1) * f) * 7 * f + layers * 10 * f * f
        # the 1x1x1 fusion (2F -> F on all τ slices) per layer; the last convolution (F τ -> C p^2, one slice).
        per_step = gates * per_output * slices + layers * 2 * f * f * tau + f * tau * patched
        return per_step * pixels * steps

    def flops(self, height: int, width: int, steps: int) -> int:
        """FLOPs over ``steps`` steps on H x W frames as fvcore counts them: the convolutions
        ([`conv_flops`][convlstm.models.E3DLSTM.conv_flops]), the recall's two products (Q K^T and the weights
        times V, B x queries x keys x F each) and the cell norm (5 per element); the gate arithmetic and the softmax
        it does not count. fvcore rounds its count of the products to 4 significant digits (its einsum rule reads
        numpy's printed estimate): for OpenSTL's 10 -> 10 Moving MNIST, 298,869,063,680 here, 298,871,967,040 by
        fvcore.
        """
        config = self.config
        f, tau, layers = config.hidden_channels, config.window_length, config.num_layers
        tokens = tau * (height // self.patch_size) * (width // self.patch_size)  # queries, and keys per memory
        window = steps if config.recall_window is None else config.recall_window
        memories_read = sum(min(step + 1, window) for step in range(steps))  # the zero state at the first step
        recall = 2 * tokens * tokens * f * memories_read * layers
        norm = 5 * f * tokens * steps * layers
        return self.conv_flops(height, width, steps) + recall + norm


# ---------------------------------------------------------------------------------------------------- builders
_MMNIST: dict[str, Any] = {"hidden_channels": 128, "num_layers": 4, "kernel_size": 5, "patch_size": 4}
_TINY: dict[str, Any] = {
    "height": 16,
    "width": 16,
    "hidden_channels": 8,
    "num_layers": 2,
    "kernel_size": 3,
    "patch_size": 4,
}


@register_model
def e3dlstm_mmnist(**overrides: Any) -> E3DLSTM:
    """OpenSTL's E3D-LSTM for Moving MNIST: 64x64 frames in 4x4 patches, windows of 2 frames, 4 Eidetic 3D LSTM
    layers of 128, (2, 5, 5) kernels, no layer norm on the gates; 51,347,456 parameters, as OpenSTL's model."""
    return E3DLSTM(**{**_MMNIST, **overrides})


@register_model
def e3dlstm_tiny(**overrides: Any) -> E3DLSTM:
    """16x16 frames, 2 layers of 8, (2, 3, 3) kernels, 4x4 patches, windows of 2: for CPU tests and demos."""
    return E3DLSTM(**{**_TINY, **overrides})
