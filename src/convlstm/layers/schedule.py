"""How a sequence layer schedules its input-to-state convolution, chosen from measurements.

"batched" runs it once over all B*T frames before the time loop; "per_step" runs it inside the loop, one frame
batch at a time. Both compute the same numbers; only speed and memory differ.
"""

from typing import Literal

from torch import Tensor

InputSchedule = Literal["auto", "batched", "per_step"]

#: At or below this many sequences per batch, a CUDA device batches the input convolution over time: at batch 16
#: launches dominate and one large convolution pays; at batch 128 it was slower and used more memory on an H200
#: (ANCHORS §10). On the CPU the convolutions dominate and batching did not pay in our measurements (see README).
CUDA_BATCHED_MAX_BATCH = 32


def choose_input_schedule(x: Tensor, hidden_channels: int) -> Literal["batched", "per_step"]:
    """The faster schedule for sequences ``x`` (B, T, C, *spatial) on their device, by measurement."""
    if x.device.type == "cuda" and x.shape[0] <= CUDA_BATCHED_MAX_BATCH:
        return "batched"
    return "per_step"
