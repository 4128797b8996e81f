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

#: At or below this many sequences per batch, CUDA batches the input convolution over time: at batch 16 launches
#: dominate and one large convolution pays; at batch 128 it was slower and used more memory on an H200
#: (measured before this project, not yet by benchmarks/layers.py), where one convolution over cat([x, h]) per step
#: was the fastest eager formulation. The threshold between 16 and 128 is a guess until a GPU session measures it.
CUDA_BATCHED_MAX_BATCH = 32


def choose_schedule(x: Tensor, *, can_fuse: bool) -> Literal["batched", "per_step", "fused"]:
    """The faster schedule for sequences ``x`` (B, T, C, *spatial) on their device, by measurement.

    On the CPU the convolutions dominate and one convolution over cat([x, h]) per step measured as fast as or
    slightly faster than two (training 1.06x vs 1.03x the straightforward cell at the small shape of
    benchmarks/layers.py, 1.14x vs 1.13x at OpenSTL-S, 2026-11-28); batching the input convolution over time was
    slower at the small shape (0.55x).
    """
    if x.device.type == "cuda":
        if x.shape[0] <= CUDA_BATCHED_MAX_BATCH:
            return "batched"
        return "fused" if can_fuse else "per_step"
    return "fused" if can_fuse else "per_step"
