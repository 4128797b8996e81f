"""What bfloat16 takes on a CPU: AMX or avx512_bf16, as torch reports them, used through oneDNN."""

import pytest
import torch

from convlstm.accel import cpu_bf16_feature, cpu_computes_bf16
from tests.accel.fake_cpu import pretend_cpu


@pytest.mark.parametrize(
    ("features", "expected"),
    [
        (("amx_bf16", "avx512_bf16"), "amx_bf16"),  # Intel Xeon Sapphire Rapids and later: AMX first
        (("avx512_bf16",), "avx512_bf16"),  # AMD Zen 4 and later, Intel Cooper Lake: no AMX
        (("avx512_f", "avx2"), None),
        ((), None),
    ],
)
def test_the_feature_used_is_amx_else_avx512_bf16(
    monkeypatch: pytest.MonkeyPatch, features: tuple[str, ...], expected: str | None
) -> None:
    pretend_cpu(monkeypatch, *features)
    feature, why = cpu_bf16_feature()
    assert feature == expected and cpu_computes_bf16() is (expected is not None)
    if expected is None:
        assert "neither amx_bf16 nor avx512_bf16" in why and "emulated" in why
    else:
        assert why == f"this CPU multiplies bfloat16 in hardware ({expected})"


def test_false_where_torch_cannot_tell(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(torch.cpu, "get_capabilities", raising=False)
    feature, why = cpu_bf16_feature()
    assert feature is None and cpu_computes_bf16() is False
    assert "torch.cpu.get_capabilities" in why


@pytest.mark.parametrize("available", [True, False])
def test_without_onednn_the_instructions_go_unused(monkeypatch: pytest.MonkeyPatch, available: bool) -> None:
    pretend_cpu(monkeypatch, "avx512_bf16", onednn=available)
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)  # turned off, whether built in or not
    feature, why = cpu_bf16_feature()
    assert feature is None and "oneDNN" in why and "avx512_bf16" in why


@pytest.mark.parametrize(
    ("variable", "cap", "features", "expected"),
    [
        ("ONEDNN_MAX_CPU_ISA", "AVX512_CORE", ("avx512_bf16",), None),
        ("DNNL_MAX_CPU_ISA", "avx2", ("amx_bf16", "avx512_bf16"), None),
        ("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16", ("amx_bf16", "avx512_bf16"), "avx512_bf16"),
        ("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX", ("amx_bf16", "avx512_bf16"), "amx_bf16"),
        ("ONEDNN_MAX_CPU_ISA", "ALL", ("avx512_bf16",), "avx512_bf16"),
    ],
)
def test_a_cap_on_onednns_instructions_counts(
    monkeypatch: pytest.MonkeyPatch, variable: str, cap: str, features: tuple[str, ...], expected: str | None
) -> None:
    pretend_cpu(monkeypatch, *features)
    monkeypatch.setenv(variable, cap)
    feature, why = cpu_bf16_feature()
    assert feature == expected
    if expected is None:
        assert f"{variable}={cap.upper()}" in why and "emulated" in why
