"""Whether torch multiplies bfloat16 in hardware on this CPU, and with which instructions: the condition for
bfloat16 autocast to train the convolutional models faster than float32 there.

Two kinds of x86 instructions multiply bfloat16: the matrix units of AMX (``amx_bf16``; Intel Xeon Sapphire Rapids
and later) and the AVX-512 dot products of ``avx512_bf16`` (Intel Cooper Lake; AMD Zen 4 and later). torch runs its
CPU convolutions and matrix products through oneDNN, which picks its instructions from what the CPU offers, so
"torch's kernels use them" means here:

- the CPU has one of them, as ``torch.cpu.get_capabilities()`` reports it (what cpuinfo reads from the CPU);
- torch has oneDNN and it is on (``torch.backends.mkldnn.is_available()`` and ``.enabled``); without it a bfloat16
  convolution falls back to slow generic code;
- ``ONEDNN_MAX_CPU_ISA`` (or ``DNNL_MAX_CPU_ISA``) does not cap oneDNN below those instructions. Capped at
  AVX512_CORE, oneDNN emulates bfloat16 and a training step ran at half the speed of float32
  (``benchmarks/cpu_precision.py`` under that setting, docs/results/speed.md).

torch's own vectorised kernels (``torch.backends.cpu.get_cpu_capability()``, which ``ATEN_CPU_CAPABILITY=default``
lowers to scalar code) do not decide it: they run the elementwise gate arithmetic, which stays in float32 with the
cell state, and the casts; with them lowered bfloat16 still trained faster than float32, by less.
"""

import os

import torch

__all__ = ["BF16_FEATURES", "cpu_bf16_feature", "cpu_computes_bf16"]

#: The CPU features, as ``torch.cpu.get_capabilities()`` names them, that multiply bfloat16 in hardware; the first
#: present is the one oneDNN prefers.
BF16_FEATURES = ("amx_bf16", "avx512_bf16")

# oneDNN's ISA names below AVX512_CORE_BF16, the first with bfloat16 instructions; AMX needs a name with "AMX".
_ONEDNN_ISAS_WITHOUT_BF16 = {
    "SSE41",
    "AVX",
    "AVX2",
    "AVX2_VNNI",
    "AVX2_VNNI_2",
    "AVX512_MIC",
    "AVX512_MIC_4OPS",
    "AVX512_CORE",
    "AVX512_CORE_VNNI",
}


def cpu_bf16_feature() -> tuple[str | None, str]:
    """The bfloat16 instructions torch's CPU convolutions will use ("amx_bf16" or "avx512_bf16"), or None where
    bfloat16 would be emulated or torch cannot tell; with the reason in words, for logs."""
    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is None:
        return None, "torch cannot tell whether this CPU has bfloat16 instructions (no torch.cpu.get_capabilities)"
    reported = capabilities()
    present = [name for name in BF16_FEATURES if reported.get(name, False)]
    if not present:
        return None, "this CPU has neither amx_bf16 nor avx512_bf16, so bfloat16 would be emulated, slower than float32"
    if not (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
        return None, f"torch's oneDNN kernels are off (torch.backends.mkldnn), so {present[0]} would go unused"
    cap_name, cap = _onednn_isa_cap()
    if cap is not None:
        allowed = [name for name in present if _cap_allows(cap, name)]
        if not allowed:
            return None, f"{cap_name}={cap} keeps oneDNN from {' and '.join(present)}, so bfloat16 would be emulated"
        present = allowed
    return present[0], f"this CPU multiplies bfloat16 in hardware ({present[0]})"


def cpu_computes_bf16() -> bool:
    """Whether torch multiplies bfloat16 in hardware on this CPU ([`cpu_bf16_feature`][convlstm.accel.cpu_bf16_feature]
    names the instructions): there a bfloat16-autocast training step of the convolutional models runs faster than in
    float32 (benchmarks/cpu_precision.py measures it). False where torch cannot tell (no
    ``torch.cpu.get_capabilities``)."""
    return cpu_bf16_feature()[0] is not None


def _onednn_isa_cap() -> tuple[str, str | None]:
    """The environment variable that caps oneDNN's instructions and its value in capitals (None: no cap). oneDNN
    reads ONEDNN_MAX_CPU_ISA first, then its older name."""
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        value = os.environ.get(name, "").strip().upper()
        if value:
            return name, None if value == "ALL" else value
    return "ONEDNN_MAX_CPU_ISA", None


def _cap_allows(cap: str, feature: str) -> bool:
    """Whether oneDNN capped at ISA ``cap`` may run ``feature``."""
    if cap in _ONEDNN_ISAS_WITHOUT_BF16:
        return False
    return feature != "amx_bf16" or "AMX" in cap
