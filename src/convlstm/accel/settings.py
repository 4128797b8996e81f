"""Switches for the fast paths and the per-device choice of which ones are on.

Every switch changes how a model computes, not what: the fast paths agree with the plain eager layers (float32 to
1e-5; bfloat16 autocast within the tolerance documented in [`BF16_TOLERANCE`][convlstm.accel.BF16_TOLERANCE]).
"""

import contextlib
import dataclasses
import importlib.util
import logging
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import Tensor, nn

from convlstm.accel.compiled_gates import compiled_gates_work
from convlstm.accel.cpu_bf16 import cpu_computes_bf16
from convlstm.layers.cell_base import ConvRNNCellBase
from convlstm.layers.gru_cell import ConvGRUCell
from convlstm.layers.lstm_cell import ConvLSTMCell
from convlstm.layers.schedule import SCHEDULES, InputSchedule
from convlstm.layers.sequence import ConvRNNBase
from convlstm.utils.checks import check_choice

logger = logging.getLogger(__name__)

# The limits leave room of a few times the differences seen on the CPU (5x5 kernels, 16 x 16 x 16 input) for other
# convolution algorithms (cuDNN); keeping c in bfloat16 would double the output errors.
BF16_TOLERANCE = {"output": 0.02, "gradient": 0.05}
"""Largest differences of bfloat16 autocast (cell state in float32) from float32 over sequences of 20 frames:
"output" is the max absolute difference of the outputs (which lie in [-1, 1]), "gradient" that of the gradients
divided by the largest absolute float32 gradient. tests/layers/test_precision.py checks them."""

FLOAT32_TOLERANCE = {"output": 1e-5, "gradient": 1e-4}
"""The same as [`BF16_TOLERANCE`][convlstm.accel.BF16_TOLERANCE] for float32 fast paths (compiled gates, CUDA graphs,
channels_last), TF32 off."""


@dataclasses.dataclass(frozen=True)
class FastSettings:
    """Which fast paths a model runs with. Build one with [`fast_settings`][convlstm.accel.fast_settings] and change
    fields with ``dataclasses.replace``; [`apply_fast_settings`][convlstm.accel.apply_fast_settings] sets the model-side
    switches.

    Attributes:
        input_schedule: the sequence layers' schedule (see `convlstm.layers.schedule`).
        compile_gates: the LSTM gate arithmetic runs through torch.compile (one fused kernel per pass on CUDA).
        cuda_graph: capture whole training / inference steps in CUDA graphs (static shapes only; see
            `convlstm.accel.cuda_graphs`). Not a model switch: the caller captures.
        autocast_dtype: None (the parameters' dtype), torch.bfloat16 or torch.float16 under torch.autocast.
        float32_cell_state: under autocast, keep the state that integrates over the sequence in float32: the LSTM
            cell state c (recommended; see [`convlstm.layers.lstm_pointwise`][convlstm.layers.lstm_pointwise]) and the
            GRU state h (``ConvGRUCell.float32_state``; the GRU layers then return float32 outputs).
        channels_last: parameters and input frames in channels-last memory format (2-D layers only).
    """

    input_schedule: InputSchedule = "auto"
    compile_gates: bool = False
    cuda_graph: bool = False
    autocast_dtype: torch.dtype | None = None
    float32_cell_state: bool = True
    channels_last: bool = False

    def __post_init__(self) -> None:
        check_choice("input_schedule", self.input_schedule, SCHEDULES)
        check_choice("autocast_dtype", self.autocast_dtype, (None, torch.bfloat16, torch.float16))

    def autocast(self, device: torch.device | str) -> AbstractContextManager[Any]:
        """torch.autocast for ``device`` with [`autocast_dtype`][convlstm.accel.FastSettings.autocast_dtype], or a
        context that does nothing."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(torch.device(device).type, dtype=self.autocast_dtype)

    def describe(self) -> str:
        """A one-line summary of the switches that are on, for logs."""
        on = [f"schedule {self.input_schedule}"]
        if self.autocast_dtype is not None:
            on.append(f"{str(self.autocast_dtype).removeprefix('torch.')} autocast")
            on.append("float32 cell state" if self.float32_cell_state else "reduced-precision cell state")
        on += [name for name in ("compile_gates", "cuda_graph", "channels_last") if getattr(self, name)]
        return ", ".join(on)


def fast_settings(device: torch.device | str, *, static_shapes: bool = True) -> FastSettings:
    """The fast paths expected to pay on ``device``.

    - CPU: bfloat16 autocast with the cell state in float32 where torch multiplies bfloat16 in hardware (AMX or
      avx512_bf16, [`cpu_bf16_feature`][convlstm.accel.cpu_bf16_feature]; the same test as ``precision="auto"``),
      and the gate arithmetic compiled where inductor builds it
      ([`compiled_gates_work`][convlstm.accel.compiled_gates_work], which compiles once per process; the same test
      as the Trainer's ``compile_gates`` "auto"): fused elementwise arithmetic paid in training
      (benchmarks/cpu_levers.py). CUDA graphs do not apply.
    - CUDA: bfloat16 autocast (where supported) with the cell state in float32, the gate arithmetic compiled
      (when Triton is importable), and with ``static_shapes`` whole steps captured in CUDA graphs with the
      one-convolution-per-step schedule ("fused"; batching the input convolution over time does not pay under a
      graph). channels_last stays off until benchmarks/gpu.py shows it pays. Why: at small batch kernel launches
      dominate, which graph capture removes; at large batch bfloat16 pays and what remains is elementwise memory
      traffic, which compiling the gates fuses. ``python benchmarks/gpu.py`` measures them on the target GPU.

    Args:
        device: where the model runs.
        static_shapes: every step sees the same shapes (required by CUDA graphs).
    """
    device = torch.device(device)
    if device.type != "cuda":
        if device.type != "cpu":
            return FastSettings()
        return FastSettings(
            compile_gates=compiled_gates_work("cpu")[0],
            autocast_dtype=torch.bfloat16 if cpu_computes_bf16() else None,
        )
    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return FastSettings(
        input_schedule="fused" if static_shapes else "auto",
        compile_gates=importlib.util.find_spec("triton") is not None,
        cuda_graph=static_shapes,
        autocast_dtype=torch.bfloat16 if bf16 else None,
        float32_cell_state=True,
        channels_last=False,
    )


def apply_fast_settings(model: nn.Module, settings: FastSettings) -> nn.Module:
    """Sets the model-side switches of ``settings`` on every ConvLSTM/ConvGRU layer and cell in ``model`` (in place;
    returns ``model``): input_schedule, compile_gates and float32_cell_state (LSTM cells), float32_state (GRU cells,
    from float32_cell_state) and, for channels_last, the memory format of the 4-D parameters. Autocast and CUDA
    graphs are the caller's (see `.cuda_graphs`). A layer whose cells cannot run the "fused" schedule (GRU
    cells, strides, unequal kernels) gets "auto" instead.
    """
    for name, module in model.named_modules():
        if isinstance(module, ConvRNNBase):
            schedule = settings.input_schedule
            if schedule == "fused" and not all(_can_fuse(cell) for cell in module.cells):
                logger.info("%s cannot run input_schedule='fused': using 'auto'", name or type(module).__name__)
                schedule = "auto"
            module.input_schedule = schedule
        if isinstance(module, ConvLSTMCell):
            module.compile_gates = settings.compile_gates
            module.float32_cell_state = settings.float32_cell_state
        if isinstance(module, ConvGRUCell):
            module.float32_state = settings.float32_cell_state
    if settings.channels_last:
        # Module.to converts the 4-D parameters and buffers only; its stubs lack the memory_format keyword.
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return model


def _can_fuse(cell: nn.Module) -> bool:
    """Whether a cell runs the "fused" schedule also in training (Keras-style dropout masks prevent it)."""
    if not isinstance(cell, ConvRNNCellBase):
        return False
    return cell.can_fuse and cell.input_dropout == 0 and cell.recurrent_dropout == 0


def channels_last_sequence(x: Tensor) -> Tensor:
    """The same (B, T, C, H, W) values stored time-major as (T, B, H, W, C): every frame x[:, t] is then a
    contiguous channels-last block, as the layers' outputs are under ``channels_last``."""
    if x.ndim != 5:
        raise ValueError(f"x must be a sequence (B, T, C, H, W) of 2-D frames, got shape {tuple(x.shape)}")
    return x.permute(1, 0, 3, 4, 2).contiguous().permute(1, 0, 4, 2, 3)
