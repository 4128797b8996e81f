"""MIM, Memory In Memory (Wang et al. 2019): PredRNN's stack with MIM blocks above its bottom ST-LSTM layer, on p x p
patches of the frames, predicting frame t + 1 at every step t.

Layer 1 is an ST-LSTM; layers 2 .. L are MIM blocks ([`MIMBlock`][convlstm.layers.MIMBlock]). Between layers l and
l + 1 a MIM-N ([`PeepholeLSTMCell`][convlstm.layers.PeepholeLSTMCell]) reads the non-stationary signal: for the lowest,
the change of layer 1's hidden state since the previous step; for the others, the output of the MIM-N below. Its output
drives the MIM-S of block l + 1. At the first step there is no previous hidden state: the MIM-Ns do not run and the
blocks read zeros, as in OpenSTL. The spatiotemporal memory m zigzags through the stack as in PredRNN.

The configuration and the layout of the weights are OpenSTL's (Tan et al. 2023), for its Moving MNIST benchmark
(10 -> 10 frames, 4x4 patches, 4 layers of 128, 5x5 kernels). ``mim_mmnist`` has 37,945,344 parameters and runs
179.18G multiply-adds in the convolutions over the 19 steps of one 10 -> 10 sequence (OpenSTL: 179.2G FLOPs by
fvcore, which counts one multiply-add as one FLOP, and skips the MIM-Ns' discarded first step as this model does).
OpenSTL's table lists 38.0M parameters: its MIM-N modules also hold a 1x1 ``conv_last`` (2F -> F) that their forward
never uses, 32,768 weights each; the importer leaves them out.

Two differences from OpenSTL's MIM_Model, neither in what a first call computes: OpenSTL keeps MIM-S's memory on
the module between calls, so that a batch starts from the last memory of the previous batch (which is why its
config drops the last, smaller batch); here every sequence starts from zeros, and the memory is part of the state.
And OpenSTL detaches that memory at every step, cutting its gradient along time; here the gradient flows through it.
"""

import dataclasses
from typing import Any

from torch import Tensor, nn

from convlstm.layers.mim import MIMBlock, PeepholeLSTMCell
from convlstm.layers.st_lstm import SpatioTemporalLSTMCell
from convlstm.models.base import config_from_arguments
from convlstm.models.patch_recurrent import PatchRecurrentForecaster, conv_macs
from convlstm.models.registry import register_model
from convlstm.utils.checks import check_int

MIMState = tuple[list[tuple[Tensor, ...]], Tensor, list[tuple[Tensor, Tensor]]]
"""Layer 1's (h, c) and each MIM block's (h, c, n); the spatiotemporal memory m that the bottom layer reads next;
each MIM-N's (h, c). All (B, F, H / p, W / p)."""


@dataclasses.dataclass
class MIMConfig:
    in_channels: int = 1
    height: int = 64
    width: int = 64
    hidden_channels: int = 128
    num_layers: int = 4
    kernel_size: int = 5
    patch_size: int = 4
    layer_norm: bool = False
    default_horizon: int = 10


class MIM(PatchRecurrentForecaster):
    """Patches -> ST-LSTM -> MIM blocks, with a MIM-N between each pair of layers -> a 1x1 convolution back to the
    patches (linear output).

    Args:
        in_channels: channels C of the frames.
        height: H of the frames (the MIM-N and MIM-S peepholes have a weight per pixel, so the model works on
            one frame size).
        width: W of the frames.
        hidden_channels: channels F of every layer's states and of the MIM-Ns (one width: m passes from layer to
            layer).
        num_layers: the ST-LSTM plus the MIM blocks (at least 2).
        kernel_size: of the convolutions (odd).
        patch_size: p; the cells work on (C p^2, H / p, W / p) patches; H and W must be divisible by p.
        layer_norm: normalise the convolutions (over channels and pixels, a per-channel affine).
        default_horizon: frames forecast when ``horizon`` is not given.

    Shape:
        `one_step`: frames (B, T, C, H, W) -> predictions (B, T, C, H, W), prediction t for frame t + 1.
        forward: context (B, T_in, C, H, W) -> predictions (B, horizon, C, H, W).
        state: `MIMState`.

    Examples:
        >>> model = create_model("mim_mmnist")
        >>> future = model(torch.rand(4, 10, 1, 64, 64), horizon=10)   # (4, 10, 1, 64, 64)
    """

    family = "mim"
    config_class = MIMConfig
    one_frame_size_because = "MIM's peepholes are per pixel"

    def __init__(
        self,
        *,
        in_channels: int = 1,
        height: int = 64,
        width: int = 64,
        hidden_channels: int = 128,
        num_layers: int = 4,
        kernel_size: int = 5,
        patch_size: int = 4,
        layer_norm: bool = False,
        default_horizon: int = 10,
    ) -> None:
        super().__init__()
        for name in ("in_channels", "height", "width", "hidden_channels", "kernel_size", "patch_size"):
            check_int(name, locals()[name])
        check_int("default_horizon", default_horizon)
        check_int("num_layers", num_layers, minimum=2)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (the state keeps its size), got {kernel_size}")
        if height % patch_size or width % patch_size:
            raise ValueError(f"height and width must be divisible by patch_size={patch_size}, got {height}x{width}")
        self.config = config_from_arguments(MIMConfig, locals())
        self.default_horizon = default_horizon
        self.patch_size = patch_size
        patched, f = in_channels * patch_size**2, hidden_channels
        grid = (height // patch_size, width // patch_size)
        norm = {"layer_norm": layer_norm}
        self.cells = nn.ModuleList(
            [SpatioTemporalLSTMCell(patched, f, kernel_size, **norm)]
            + [MIMBlock(f, f, kernel_size, *grid, **norm) for _ in range(num_layers - 1)]
        )
        self.differences = nn.ModuleList(
            PeepholeLSTMCell(f, f, kernel_size, *grid, **norm) for _ in range(num_layers - 1)
        )
        self.conv_last = nn.Conv2d(f, patched, 1, bias=False)

    def _step(self, patch: Tensor, state: MIMState | None, record: list[Any] | None) -> tuple[Tensor, MIMState]:
        layers: list[tuple[Tensor, ...]]
        if state is None:
            zeros = patch.new_zeros(patch.shape[0], self.config.hidden_channels, *patch.shape[2:])
            layers = [(zeros, zeros)] + [(zeros, zeros, zeros)] * (len(self.cells) - 1)
            m, differences = zeros, [(zeros, zeros)] * len(self.differences)
        else:
            layers, m, differences = state
            if len(layers) != len(self.cells) or len(differences) != len(self.differences):
                raise ValueError(
                    f"state must hold the states of {len(self.cells)} layers and {len(self.differences)} MIM-Ns, got "
                    f"{len(layers)} and {len(differences)}"
                )
        bottom: SpatioTemporalLSTMCell = self.cells[0]  # type: ignore[assignment]
        h, c, m = bottom(patch, (layers[0][0], layers[0][1], m))
        new_layers: list[tuple[Tensor, ...]] = [(h, c)]
        new_differences: list[tuple[Tensor, Tensor]] = []
        d = None if state is None else h - layers[0][0]  # the change of layer 1's h since the previous step
        for block, mim_n, layer, difference in zip(
            self.cells[1:], self.differences, layers[1:], differences, strict=True
        ):
            if d is not None:
                difference = mim_n(d, difference)
                d = difference[0]
            new_differences.append(difference)
            h_old, c_old, n_old = layer
            h, c, m, n = block(h, d, (h_old, c_old, m, n_old))
            new_layers.append((h, c, n))
        return self.conv_last(h), (new_layers, m, new_differences)

    def conv_flops(self, height: int, width: int, steps: int) -> int:
        """Multiply-adds of the convolutions (one multiply-add = one FLOP, as fvcore counts) over ``steps`` steps on
        H x W frames (the first step without the MIM-Ns): the dominant cost; the gate arithmetic and the peepholes
        add a few per pixel and channel."""
        f, k, layers = self.config.hidden_channels, self.config.kernel_size, self.config.num_layers
        patched = self.config.in_channels * self.patch_size**2
        pixels = (height // self.patch_size) * (width // self.patch_size)
        # ST-LSTM: conv_x (7F), conv_h (4F), conv_m (3F), conv_o (2F -> F); the 1x1 fusion.
        st_lstm = conv_macs(patched, 7 * f, k) + conv_macs(f, 7 * f, k) + conv_macs(2 * f, f, k)
        # MIM block: conv_x (4F), conv_h (3F), conv_m (4F), MIM-S's two (4F each).
        block = conv_macs(f, 4 * f + 3 * f + 4 * f + 8 * f, k)
        fusion = conv_macs(2 * f, f, 1)
        every_step = st_lstm + fusion + (layers - 1) * (block + fusion) + conv_macs(f, patched, 1)
        mim_n = (layers - 1) * conv_macs(f, 8 * f, k)  # x and h to 4F each
        return (every_step * steps + mim_n * max(steps - 1, 0)) * pixels


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
def mim_mmnist(**overrides: Any) -> MIM:
    """OpenSTL's MIM for Moving MNIST: 64x64 frames in 4x4 patches, an ST-LSTM and 3 MIM blocks of 128, 5x5
    kernels, no layer norm; 37,945,344 parameters (OpenSTL's 38.0M less the conv_last its MIM-Ns hold and never
    use)."""
    return MIM(**{**_MMNIST, **overrides})


@register_model
def mim_tiny(**overrides: Any) -> MIM:
    """16x16 frames, an ST-LSTM and a MIM block of 8, 3x3 kernels, 4x4 patches: for CPU tests and demos."""
    return MIM(**{**_TINY, **overrides})
