"""PredRNN++ (Wang et al. 2018): a stack of Causal LSTM cells on p x p patches with a Gradient Highway Unit between
the two bottom layers, predicting frame t + 1 at every step t.

The configuration and the layout of the weights are OpenSTL's (Tan et al. 2023), for its Moving MNIST benchmark
(10 -> 10 frames, 4x4 patches, 4 layers of 128, 5x5 kernels). ``predrnnpp_mmnist`` has 35,307,520 parameters and
runs 171.74G multiply-adds in the convolutions over the 19 steps of one 10 -> 10 sequence (OpenSTL: 171.7G FLOPs
by fvcore, which counts one multiply-add as one FLOP). OpenSTL's table lists 38.6M parameters: its Causal LSTM
cell also holds a ``conv_o`` (2F -> F, 5x5) that its forward never uses, 819,200 weights per layer; the importer
leaves them out.
"""

import dataclasses
from typing import Any

from torch import Tensor, nn

from convlstm.layers.causal_lstm import CausalLSTMCell, GradientHighwayUnit
from convlstm.layers.cell_base import LSTMState
from convlstm.models.base import config_from_arguments
from convlstm.models.patch_recurrent import PatchRecurrentForecaster, conv_macs
from convlstm.models.registry import register_model
from convlstm.utils.checks import check_int

PredRNNppState = tuple[list[LSTMState], Tensor, Tensor]
"""Each layer's (h, c), the spatiotemporal memory m that the bottom layer reads next, and the highway's z; all
(B, F, H / p, W / p)."""


@dataclasses.dataclass
class PredRNNppConfig:
    in_channels: int = 1
    hidden_channels: int = 128
    num_layers: int = 4
    kernel_size: int = 5
    patch_size: int = 4
    layer_norm: bool = False
    default_horizon: int = 10


class PredRNNpp(PatchRecurrentForecaster):
    """Patches -> Causal LSTM layer 1 -> Gradient Highway Unit -> Causal LSTM layers 2 .. L -> a 1x1 convolution
    back to the patches (linear output).

    The spatiotemporal memory m zigzags through the stack as in [`PredRNN`][convlstm.models.PredRNN]; the highway's
    state z goes along time only.

    Args:
        in_channels: channels C of the frames.
        hidden_channels: channels F of every layer's h, c, m and of the highway (one width: m passes from layer to
            layer).
        num_layers: Causal LSTM cells in the stack (at least 2: the highway sits between the first two).
        kernel_size: of the cells' and the highway's convolutions (odd).
        patch_size: p; the cells work on (C p^2, H / p, W / p) patches; H and W must be divisible by p.
        layer_norm: normalise the convolutions (see [`CausalLSTMCell`][convlstm.layers.CausalLSTMCell]).
        default_horizon: frames forecast when ``horizon`` is not given.

    Shape:
        `one_step`: frames (B, T, C, H, W) -> predictions (B, T, C, H, W), prediction t for frame t + 1.
        forward: context (B, T_in, C, H, W) -> predictions (B, horizon, C, H, W).
        state: `PredRNNppState`.

    Examples:
        >>> model = create_model("predrnnpp_mmnist")
        >>> future = model(torch.rand(4, 10, 1, 64, 64), horizon=10)   # (4, 10, 1, 64, 64)
    """

    family = "predrnnpp"
    config_class = PredRNNppConfig

    def __init__(
        self,
        *,
        in_channels: int = 1,
        hidden_channels: int = 128,
        num_layers: int = 4,
        kernel_size: int = 5,
        patch_size: int = 4,
        layer_norm: bool = False,
        default_horizon: int = 10,
    ) -> None:
        super().__init__()
        for name in ("in_channels", "hidden_channels", "kernel_size", "patch_size", "default_horizon"):
            check_int(name, locals()[name])
        check_int("num_layers", num_layers, minimum=2)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (the state keeps its size), got {kernel_size}")
        self.config = config_from_arguments(PredRNNppConfig, locals())
        self.default_horizon = default_horizon
        self.patch_size = patch_size
        patched = in_channels * patch_size**2
        self.cells = nn.ModuleList(
            CausalLSTMCell(
                patched if layer == 0 else hidden_channels, hidden_channels, kernel_size, layer_norm=layer_norm
            )
            for layer in range(num_layers)
        )
        self.highway = GradientHighwayUnit(hidden_channels, hidden_channels, kernel_size, layer_norm=layer_norm)
        self.conv_last = nn.Conv2d(hidden_channels, patched, 1, bias=False)

    def _step(
        self, patch: Tensor, state: PredRNNppState | None, record: list[Any] | None
    ) -> tuple[Tensor, PredRNNppState]:
        if state is None:
            zeros = patch.new_zeros(patch.shape[0], self.config.hidden_channels, *patch.shape[2:])
            layers, m, z = [(zeros, zeros)] * len(self.cells), zeros, zeros
        else:
            layers, m, z = state
            if len(layers) != len(self.cells):
                raise ValueError(f"state must hold (h, c) of {len(self.cells)} layers, got {len(layers)}")
        x, new_layers = patch, []
        cells: list[CausalLSTMCell] = list(self.cells)  # type: ignore[arg-type]
        for layer, (cell, (h, c)) in enumerate(zip(cells, layers, strict=True)):
            h, c, m = cell(x, (h, c, m))
            new_layers.append((h, c))
            x = h
            if layer == 0:
                z = x = self.highway(h, z)
        return self.conv_last(x), (new_layers, m, z)

    def conv_flops(self, height: int, width: int, steps: int) -> int:
        """Multiply-adds of the convolutions (one multiply-add = one FLOP, as fvcore counts) over ``steps`` steps on
        H x W frames: the dominant cost; the gate arithmetic adds a few per pixel and channel."""
        f, k = self.config.hidden_channels, self.config.kernel_size
        patched = self.config.in_channels * self.patch_size**2
        pixels = (height // self.patch_size) * (width // self.patch_size)
        per_step = conv_macs(f, patched, 1) + 2 * conv_macs(f, 2 * f, k)  # the last 1x1, the highway's two
        for layer in range(self.config.num_layers):
            # conv_x (7F); conv_h (4F), conv_c, conv_m (3F each), conv_c2m (4F), conv_om (F); the 1x1 fusion.
            per_step += (
                conv_macs(patched if layer == 0 else f, 7 * f, k) + conv_macs(f, 15 * f, k) + conv_macs(2 * f, f, 1)
            )
        return per_step * pixels * steps


# ---------------------------------------------------------------------------------------------------- builders
_MMNIST: dict[str, Any] = {"hidden_channels": 128, "num_layers": 4, "kernel_size": 5, "patch_size": 4}
_TINY: dict[str, Any] = {"hidden_channels": 8, "num_layers": 2, "kernel_size": 3, "patch_size": 4}


@register_model
def predrnnpp_mmnist(**overrides: Any) -> PredRNNpp:
    """OpenSTL's PredRNN++ for Moving MNIST: 4x4 patches, 4 Causal LSTM layers of 128, 5x5 kernels, no layer norm;
    35,307,520 parameters (OpenSTL's 38.6M less the conv_o its cells hold and never use)."""
    return PredRNNpp(**{**_MMNIST, **overrides})


@register_model
def predrnnpp_tiny(**overrides: Any) -> PredRNNpp:
    """2 layers of 8, 3x3 kernels, 4x4 patches: for CPU tests and demos."""
    return PredRNNpp(**{**_TINY, **overrides})
