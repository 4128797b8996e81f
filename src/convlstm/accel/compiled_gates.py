"""Whether the LSTM gate arithmetic can run through torch.compile here, found by compiling it once.

On the CPU inductor turns the gates' elementwise arithmetic into C++ that it builds at run time; that fused kernel
trained a ConvLSTM faster than eager arithmetic (benchmarks/cpu_levers.py), but it needs a working C++ compiler,
and its generated code does not build everywhere torch runs (e.g. under ``ATEN_CPU_CAPABILITY=default``). Rather
than guess from the environment, [`compiled_gates_work`][convlstm.accel.compiled_gates_work] compiles the gate
arithmetic of a tiny cell once per process, forward and backward, in float32 and (where the CPU computes it) under
bfloat16 autocast, and reports what failed. A training run turns compiled gates on only where that worked, so a
machine without a compiler trains as before, with one log line saying why.
"""

import functools

import torch
from torch import nn

from convlstm.accel.cpu_bf16 import cpu_computes_bf16
from convlstm.layers.lstm_cell import ConvLSTMCell, compiled_lstm_pointwise, lstm_pointwise

__all__ = ["compiled_gates_work", "restore_compiled_gates", "set_compiled_gates"]


@functools.cache
def compiled_gates_work(device_type: str = "cpu") -> tuple[bool, str]:
    """Whether the compiled gate arithmetic runs on ``device_type`` ("cpu" only: elsewhere no probe is made),
    with the reason in words for logs. The answer is cached for the process; the first call compiles (seconds)."""
    if device_type != "cpu":
        return False, f"compiled gates are chosen automatically on the CPU only, not on {device_type!r}"
    dtypes = [None, torch.bfloat16] if cpu_computes_bf16() else [None]
    try:
        for dtype in dtypes:
            _compile_one_step(dtype)
    except Exception as err:  # any failure of dynamo, inductor or the C++ build means: stay eager
        cause = getattr(err, "inner_exception", None) or err  # inductor wraps the real error (e.g. CppCompileError)
        first_line = next((line.strip() for line in str(cause).splitlines() if line.strip()), "")
        return False, f"torch.compile of the gate arithmetic failed here ({type(cause).__name__}: {first_line[:200]})"
    return True, "torch.compile builds the gate arithmetic here"


def set_compiled_gates(model: nn.Module, enabled: bool) -> dict[ConvLSTMCell, bool]:
    """Sets ``compile_gates`` on every ConvLSTM cell in ``model``; returns each cell's previous setting, to restore
    them with `restore_compiled_gates` (empty where the model has no ConvLSTM cell)."""
    before: dict[ConvLSTMCell, bool] = {}
    for module in model.modules():
        if isinstance(module, ConvLSTMCell):
            before[module] = module.compile_gates
            module.compile_gates = enabled
    return before


def restore_compiled_gates(before: dict[ConvLSTMCell, bool]) -> None:
    """Puts back the settings [`set_compiled_gates`][convlstm.accel.set_compiled_gates] returned."""
    for cell, enabled in before.items():
        cell.compile_gates = enabled


def _compile_one_step(dtype: torch.dtype | None) -> None:
    """Runs the compiled gate arithmetic of a 2-channel cell forward and backward (a first step, then one with a
    cell state), under ``dtype`` autocast when given, and checks it against the eager arithmetic."""
    generator = torch.Generator().manual_seed(0)
    # Under autocast the convolutions hand the gates over in the reduced dtype, the cell state stays float32.
    gates = torch.randn(1, 8, 4, 4, generator=generator).to(dtype or torch.float32).requires_grad_()
    c_prev = torch.randn(1, 2, 4, 4, generator=generator)
    autocast = torch.autocast("cpu", dtype=dtype, enabled=dtype is not None)
    compiled = compiled_lstm_pointwise()
    wide = dtype is not None
    with autocast:
        for previous in (None, c_prev):
            (h, c), (h_eager, _) = (
                pointwise(
                    gates,
                    previous,
                    peephole=None,
                    activation=torch.tanh,
                    recurrent_activation=torch.sigmoid,
                    float32_cell=wide,
                )
                for pointwise in (compiled, lstm_pointwise)
            )
            (h.float().sum() + c.float().sum()).backward()
            if not torch.allclose(h.float(), h_eager.float(), atol=1e-2):
                raise RuntimeError("the compiled gate arithmetic disagrees with the eager one")
