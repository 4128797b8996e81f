"""PredRNN (Wang et al. 2017) and PredRNN-V2 (Wang et al. 2022): a stack of ST-LSTM cells on p x p patches of the
frames, with the spatiotemporal memory zigzagging through the stack, predicting frame t + 1 at every step t.

The configuration and the layout of the weights are OpenSTL's (Tan et al. 2023), so that its Moving MNIST benchmark
(10 -> 10 frames, 4x4 patches, 4 layers of 128, 5x5 kernels) has the same parameters:

- ``predrnn_mmnist``: 23,838,720 parameters (OpenSTL: 23.8M), 115.95G multiply-adds in the convolutions over the 19
  steps of one 10 -> 10 sequence (OpenSTL: 116.0G FLOPs by fvcore, which counts one multiply-add as one FLOP);
- ``predrnnv2_mmnist``: 23,855,104 parameters (23.9M), 116.59G (116.6G; the adapter runs at every step and layer).

PredRNN-V2 adds a 1x1 "adapter" convolution through which the increments of the two memories pass to its decoupling
loss, and reverse scheduled sampling, which also replaces context frames by the model's predictions during training
(``context_teacher_forcing``). The losses and the schedules live in [`convlstm.tasks`][convlstm.tasks].
"""

import dataclasses
from typing import Any

import torch
from torch import Tensor, nn

from convlstm.layers.cell_base import LSTMState
from convlstm.layers.st_lstm import SpatioTemporalLSTMCell
from convlstm.models.base import config_from_arguments
from convlstm.models.patch_recurrent import PatchRecurrentForecaster
from convlstm.models.registry import register_model
from convlstm.utils.checks import check_int

PredRNNState = tuple[list[LSTMState], Tensor]
"""Each layer's (h, c), then the spatiotemporal memory m that the bottom layer reads next; all (B, F, H / p, W / p)."""


@dataclasses.dataclass
class PredRNNConfig:
    in_channels: int = 1
    hidden_channels: int = 128
    num_layers: int = 4
    kernel_size: int = 5
    patch_size: int = 4
    layer_norm: bool = False
    default_horizon: int = 10


class PredRNN(PatchRecurrentForecaster):
    """Patches -> ``num_layers`` ST-LSTM cells -> a 1x1 convolution back to the patches (linear output).

    Args:
        in_channels: channels C of the frames.
        hidden_channels: channels F of every layer's h, c and m (one width: m passes from layer to layer).
        num_layers: ST-LSTM cells in the stack.
        kernel_size: of the cells' convolutions (odd).
        patch_size: p; the cells work on (C p^2, H / p, W / p) patches; H and W must be divisible by p.
        layer_norm: normalise the cells' convolutions (see
            [`SpatioTemporalLSTMCell`][convlstm.layers.SpatioTemporalLSTMCell]).
        default_horizon: frames forecast when ``horizon`` is not given.

    Shape:
        `one_step`: frames (B, T, C, H, W) -> predictions (B, T, C, H, W),
        prediction t for frame t + 1.
        forward: context (B, T_in, C, H, W) -> predictions (B, horizon, C, H, W).
        state: `PredRNNState`.

    Examples:
        >>> model = create_model("predrnn_mmnist")
        >>> future = model(torch.rand(4, 10, 1, 64, 64), horizon=10)   # (4, 10, 1, 64, 64)
    """

    family = "predrnn"
    config_class = PredRNNConfig

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
        for name in ("in_channels", "hidden_channels", "num_layers", "kernel_size", "patch_size", "default_horizon"):
            check_int(name, locals()[name])
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (the state keeps its size), got {kernel_size}")
        self.config = config_from_arguments(PredRNNConfig, locals())
        self.default_horizon = default_horizon
        self.patch_size = patch_size
        patched = in_channels * patch_size**2
        self.cells = nn.ModuleList(
            SpatioTemporalLSTMCell(
                patched if layer == 0 else hidden_channels, hidden_channels, kernel_size, layer_norm=layer_norm
            )
            for layer in range(num_layers)
        )
        self.conv_last = nn.Conv2d(hidden_channels, patched, 1, bias=False)

    # --------------------------------------------------------------------------------------------------- steps
    def _step(
        self, patch: Tensor, state: PredRNNState | None, record: list[tuple[Tensor, Tensor]] | None
    ) -> tuple[Tensor, PredRNNState]:
        """One step on patches (B, C p^2, h, w): the prediction of the next patches and the new state. Appends
        each layer's (Δc, Δm) to ``record`` when it is a list."""
        if state is None:
            # Zeros, as OpenSTL starts; m too: the bottom layer's first m is the "top layer's m" of no step.
            zeros = patch.new_zeros(patch.shape[0], self.config.hidden_channels, *patch.shape[2:])
            layers, m = [(zeros, zeros)] * len(self.cells), zeros
        else:
            layers, m = state
            if len(layers) != len(self.cells):
                raise ValueError(f"state must hold (h, c) of {len(self.cells)} layers, got {len(layers)}")
        x, new_layers = patch, []
        cells: list[SpatioTemporalLSTMCell] = list(self.cells)  # type: ignore[arg-type]
        for cell, (h, c) in zip(cells, layers, strict=True):
            (h, c, m), delta = cell.forward_with_increments(x, (h, c, m))
            if record is not None:
                record.append(delta)
            new_layers.append((h, c))
            x = h
        return self.conv_last(x), (new_layers, m)

    # --------------------------------------------------------------------------------------------------- cost
    def conv_flops(self, height: int, width: int, steps: int) -> int:
        """Multiply-adds of the convolutions (one multiply-add = one FLOP, as fvcore counts) over ``steps`` steps on
        H x W frames: the dominant cost; the gate arithmetic adds a few per pixel and channel."""
        f, k2 = self.config.hidden_channels, self.config.kernel_size**2
        patched = self.config.in_channels * self.patch_size**2
        pixels = (height // self.patch_size) * (width // self.patch_size)
        per_step = patched * f  # the last 1x1 convolution
        for cell in self.cells:
            # conv_x, conv_h (4F), conv_m (3F), conv_o (2F -> F), then the 1x1 fusion (2F -> F).
            per_step += (7 * f * cell.in_channels + 4 * f * f + 3 * f * f + 2 * f * f) * k2 + 2 * f * f
        return per_step * pixels * steps


class PredRNNv2(PredRNN):
    """PredRNN-V2: PredRNN plus a shared 1x1 adapter through which every layer's memory increments reach the
    decoupling loss ([`convlstm.tasks.decoupling_loss`][convlstm.tasks.decoupling_loss]); its predictions do not use the
    adapter.

    Args and shapes as [`PredRNN`][convlstm.models.PredRNN];
    [`forward_with_increments`][convlstm.models.PredRNNv2.forward_with_increments] also returns the adapted increments.
    Train it with the decoupling loss (``ForecastingTask(decouple_beta=0.1)``, OpenSTL's): without it the adapter gets
    no gradient, which DistributedDataParallel without ``find_unused_parameters`` refuses.
    """

    family = "predrnn_v2"

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
        super().__init__(
            in_channels=in_channels,
            hidden_channels=hidden_channels,
            num_layers=num_layers,
            kernel_size=kernel_size,
            patch_size=patch_size,
            layer_norm=layer_norm,
            default_horizon=default_horizon,
        )
        self.adapter = nn.Conv2d(hidden_channels, hidden_channels, 1, bias=False)

    def forward_with_increments(
        self,
        context: Tensor,
        horizon: int | None = None,
        targets: Tensor | None = None,
        teacher_forcing: Tensor | None = None,
        *,
        context_teacher_forcing: Tensor | None = None,
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """forward, plus the adapted increments of every step (context and forecast) and layer.

        Returns:
            (predictions (B, horizon, C, H, W), (adapter(Δc), adapter(Δm)), each (B, S, L, F, H / p, W / p)) with
            S = T_in + horizon - 1 steps and L layers.
        """
        increments: list[tuple[Tensor, Tensor]] = []
        predictions = self._rollout(context, horizon, targets, teacher_forcing, context_teacher_forcing, increments)
        layers = len(self.cells)
        delta_c = torch.stack([c for c, _ in increments], dim=1)  # (B, S L, F, h, w), step-major
        delta_m = torch.stack([m for _, m in increments], dim=1)
        adapted = per_step_layer(self.adapter, torch.cat([delta_c, delta_m], dim=0)).unflatten(1, (-1, layers))
        return predictions, (adapted[: len(context)], adapted[len(context) :])

    def conv_flops(self, height: int, width: int, steps: int) -> int:
        """As [`PredRNN.conv_flops`][convlstm.models.PredRNN.conv_flops], plus the adapter on both increments of every
        layer (as OpenSTL runs it)."""
        f, layers = self.config.hidden_channels, len(self.cells)
        pixels = (height // self.patch_size) * (width // self.patch_size)
        return super().conv_flops(height, width, steps) + 2 * layers * f * f * pixels * steps


def per_step_layer(module: nn.Module, x: Tensor) -> Tensor:
    """Applies a per-frame module to (B, N, C, h, w) as one batch."""
    return module(x.flatten(0, 1)).unflatten(0, x.shape[:2])


# ---------------------------------------------------------------------------------------------------- builders
_MMNIST: dict[str, Any] = {"hidden_channels": 128, "num_layers": 4, "kernel_size": 5, "patch_size": 4}
_TINY: dict[str, Any] = {"hidden_channels": 8, "num_layers": 2, "kernel_size": 3, "patch_size": 4}


@register_model
def predrnn_mmnist(**overrides: Any) -> PredRNN:
    """OpenSTL's PredRNN for Moving MNIST: 4x4 patches, 4 ST-LSTM layers of 128, 5x5 kernels, no layer norm;
    23,838,720 parameters, as OpenSTL's."""
    return PredRNN(**{**_MMNIST, **overrides})


@register_model
def predrnnv2_mmnist(**overrides: Any) -> PredRNNv2:
    """OpenSTL's PredRNN-V2 for Moving MNIST: predrnn_mmnist plus the adapter; 23,855,104 parameters."""
    return PredRNNv2(**{**_MMNIST, **overrides})


@register_model
def predrnn_tiny(**overrides: Any) -> PredRNN:
    """2 layers of 8, 3x3 kernels, 4x4 patches: for CPU tests and demos."""
    return PredRNN(**{**_TINY, **overrides})


@register_model
def predrnnv2_tiny(**overrides: Any) -> PredRNNv2:
    """2 layers of 8, 3x3 kernels, 4x4 patches: for CPU tests and demos."""
    return PredRNNv2(**{**_TINY, **overrides})
