"""Fast paths, each switchable: compiled gate arithmetic, CUDA-graph capture, bfloat16 autocast with a float32
cell state, channels-last memory format, and [`fast_settings`][convlstm.accel.fast_settings], which picks what is on per
device."""

from convlstm.accel.compiled_gates import compiled_gates_work, restore_compiled_gates, set_compiled_gates
from convlstm.accel.cpu_bf16 import cpu_bf16_feature, cpu_computes_bf16
from convlstm.accel.cuda_graphs import CapturedStep, capture_inference, capture_training_step, make_training_step
from convlstm.accel.precision import choose_precision, resolve_precision
from convlstm.accel.settings import (
    BF16_TOLERANCE,
    FLOAT32_TOLERANCE,
    FastSettings,
    apply_fast_settings,
    channels_last_sequence,
    fast_settings,
)

__all__ = [
    "BF16_TOLERANCE",
    "FLOAT32_TOLERANCE",
    "CapturedStep",
    "FastSettings",
    "apply_fast_settings",
    "capture_inference",
    "capture_training_step",
    "channels_last_sequence",
    "choose_precision",
    "compiled_gates_work",
    "cpu_bf16_feature",
    "cpu_computes_bf16",
    "fast_settings",
    "make_training_step",
    "resolve_precision",
    "restore_compiled_gates",
    "set_compiled_gates",
]
