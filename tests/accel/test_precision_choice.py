"""precision="auto": bfloat16 only where the hardware computes it, with the reason logged; an explicit bfloat16
on a CPU that would emulate it is kept but warned about."""

import logging

import pytest
import torch

import convlstm.accel.precision as precision_module
from convlstm.accel import choose_precision, resolve_precision


@pytest.mark.parametrize(("amx", "expected"), [(True, "bf16-mixed"), (False, "32-true")])
def test_auto_on_the_cpu_follows_amx(monkeypatch: pytest.MonkeyPatch, amx: bool, expected: str) -> None:
    monkeypatch.setattr(precision_module, "cpu_computes_bf16", lambda: amx)
    chosen, why = choose_precision("cpu")
    assert chosen == expected
    assert "AMX" in why


def test_auto_is_logged_with_its_reason(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(precision_module, "cpu_computes_bf16", lambda: False)
    with caplog.at_level(logging.INFO, logger="convlstm.accel.precision"):
        assert resolve_precision("auto", "cpu") == "32-true"
    assert "no AMX" in caplog.text and "32-true" in caplog.text


def test_explicit_bf16_without_amx_is_kept_and_warned(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(precision_module, "cpu_computes_bf16", lambda: False)
    with caplog.at_level(logging.WARNING, logger="convlstm.accel.precision"):
        assert resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"
    assert "emulated" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="convlstm.accel.precision"):
        assert resolve_precision("32-true", "cpu") == "32-true"
    assert caplog.text == ""


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_auto_on_a_gpu_follows_its_bf16_support() -> None:
    chosen, _ = choose_precision("gpu")
    assert chosen == ("bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true")
