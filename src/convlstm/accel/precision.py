"""Which training precision pays on this machine, and why: what ``precision="auto"`` resolves to.

bfloat16 autocast changes the numbers, so it is used where the hardware computes it natively: CUDA GPUs with
bfloat16 support, and CPUs with AMX (:func:`~convlstm.accel.settings.cpu_computes_bf16`). Elsewhere bfloat16 is
emulated in software and slower than float32, so "auto" picks float32 and says so.
"""

import logging

import torch

from convlstm.accel.settings import cpu_computes_bf16

logger = logging.getLogger(__name__)


def uses_gpu(accelerator: str) -> bool:
    """Whether a Lightning ``accelerator`` setting will train on a CUDA GPU."""
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def choose_precision(accelerator: str = "auto") -> tuple[str, str]:
    """The Lightning precision for "auto" on this machine, and the reason in words.

    Returns:
        ("bf16-mixed" or "32-true", why).
    """
    if uses_gpu(accelerator):
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return "bf16-mixed", "the GPU computes bfloat16 natively"
        return "32-true", "the GPU does not support bfloat16"
    if cpu_computes_bf16():
        return "bf16-mixed", "this CPU multiplies bfloat16 in hardware (AMX)"
    return "32-true", "this CPU has no AMX, so bfloat16 would be emulated and slower than float32"


def resolve_precision(precision: str, accelerator: str = "auto") -> str:
    """``precision`` as Lightning takes it: "auto" becomes :func:`choose_precision`'s choice (logged with its
    reason); an explicit bfloat16 precision on a CPU without AMX is kept, with a warning that it will be slow."""
    if precision == "auto":
        chosen, why = choose_precision(accelerator)
        logger.info("precision auto: %s, since %s", chosen, why)
        return chosen
    if precision.startswith("bf16") and not uses_gpu(accelerator) and not cpu_computes_bf16():
        logger.warning(
            "precision %s on a CPU without AMX: bfloat16 is emulated there, expect slower training than 32-true",
            precision,
        )
    return precision
