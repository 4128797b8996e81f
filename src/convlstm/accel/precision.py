"""Which training precision pays on this machine, and why: what ``precision="auto"`` resolves to.

bfloat16 autocast changes the numbers, so it is used where the hardware computes it natively: CUDA GPUs with
bfloat16 support, and CPUs on which torch multiplies bfloat16 in hardware, with AMX or avx512_bf16
([`cpu_bf16_feature`][convlstm.accel.cpu_bf16_feature] says what that takes). Elsewhere bfloat16 is emulated in
software and slower than float32, so "auto" picks float32 and says so. Under bfloat16 autocast the ConvLSTM cell
state (and the ConvGRU state) stays in float32, on the CPU as on GPUs.
"""

import logging

import torch

from convlstm.accel.cpu_bf16 import cpu_bf16_feature

logger = logging.getLogger(__name__)


def uses_gpu(accelerator: str) -> bool:
    """Whether a Lightning ``accelerator`` setting will train on a CUDA GPU."""
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def choose_precision(accelerator: str = "auto") -> tuple[str, str]:
    """The Lightning precision for "auto" on this machine, and the reason in words.

    Returns:
        ("bf16-mixed" or "32-true", why); on a CPU the reason names the CPU feature, e.g. "this CPU multiplies
        bfloat16 in hardware (avx512_bf16)".
    """
    if uses_gpu(accelerator):
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return "bf16-mixed", "the GPU computes bfloat16 natively"
        return "32-true", "the GPU does not support bfloat16"
    feature, why = cpu_bf16_feature()
    return ("bf16-mixed" if feature is not None else "32-true"), why


def resolve_precision(precision: str, accelerator: str = "auto") -> str:
    """``precision`` as Lightning takes it: "auto" becomes [`choose_precision`][convlstm.accel.choose_precision]'s
    choice (logged with its reason); an explicit bfloat16 precision on a CPU that would emulate it is kept, with a
    warning that it will be slow."""
    if precision == "auto":
        chosen, why = choose_precision(accelerator)
        logger.info("precision auto: %s, since %s", chosen, why)
        return chosen
    if precision.startswith("bf16") and not uses_gpu(accelerator):
        feature, why = cpu_bf16_feature()
        if feature is None:
            logger.warning("precision %s kept, but %s: expect slower training than 32-true", precision, why)
    return precision
