"""How a sequence layer schedules its convolutions, chosen from measurements. All schedules compute the same
numbers (tests check outputs and gradients to 1e-5 in float32); only speed and memory differ.

- "batched": the input-to-state convolution runs once over all B*T frames before the time loop, the
  state-to-state one per step: fewer, larger launches.
- "per_step": both run inside the loop, one frame batch at a time.
- "fused": one convolution per step over cat([x_t, h]) with the two weights concatenated: the formulation most
  repositories write, one launch per step; only for LSTM cells whose two convolutions have the same geometry
  (stride 1, "same", equal kernels and dilations) and without Keras-style dropout masks.
"""

from typing import Literal

from torch import Tensor

InputSchedule = Literal["auto", "batched", "per_step", "fused"]
SCHEDULES: tuple[InputSchedule, ...] = ("auto", "batched", "per_step", "fused")

#: At or below this many sequences per batch, CUDA batches the input convolution over time: at small batch kernel
#: launches dominate and one large convolution pays; at large batch one convolution over cat([x, h]) per step is
#: faster and uses less memory. The threshold is an estimate; benchmarks/layers.py and benchmarks/gpu.py measure it.
CUDA_BATCHED_MAX_BATCH = 32


def choose_schedule(x: Tensor, *, can_fuse: bool) -> Literal["batched", "per_step", "fused"]:
    """The faster schedule for sequences ``x`` (B, T, C, *spatial) on their device, by measurement.

    On the CPU the convolutions dominate: one convolution over cat([x, h]) per step is as fast as two or slightly
    faster, and batching the input convolution over time is slower (benchmarks/layers.py compares them).
    """
    if x.device.type == "cuda":
        if x.shape[0] <= CUDA_BATCHED_MAX_BATCH:
            return "batched"
        return "fused" if can_fuse else "per_step"
    return "fused" if can_fuse else "per_step"
