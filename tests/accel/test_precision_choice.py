"""precision="auto": bfloat16 only where the hardware computes it (on a CPU: AMX or avx512_bf16), with the reason
logged; an explicit bfloat16 on a CPU that would emulate it is kept but warned about."""

import logging

import pytest
import torch

from convlstm.accel import choose_precision, resolve_precision
from tests.accel.fake_cpu import pretend_cpu

LOGGER = "convlstm.accel.precision"


@pytest.mark.parametrize(
    ("features", "expected"),
    [
        (("amx_bf16", "avx512_bf16"), "bf16-mixed"),
        (("avx512_bf16",), "bf16-mixed"),  # AVX-512 bfloat16 dot products without AMX pay too
        (("avx512_f",), "32-true"),
    ],
)
def test_auto_on_the_cpu_follows_its_bf16_instructions(
    monkeypatch: pytest.MonkeyPatch, features: tuple[str, ...], expected: str
) -> None:
    pretend_cpu(monkeypatch, *features)
    chosen, why = choose_precision("cpu")
    assert chosen == expected
    if expected == "bf16-mixed":
        assert why == f"this CPU multiplies bfloat16 in hardware ({features[0]})"
    else:
        assert "neither amx_bf16 nor avx512_bf16" in why and "slower than float32" in why


def test_auto_logs_one_line_naming_the_feature(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pretend_cpu(monkeypatch, "avx512_bf16")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert resolve_precision("auto", "cpu") == "bf16-mixed"
    expected = "precision auto: bf16-mixed, since this CPU multiplies bfloat16 in hardware (avx512_bf16)"
    assert caplog.messages == [expected]


def test_auto_logs_why_it_stays_in_float32(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    pretend_cpu(monkeypatch, "avx2")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert resolve_precision("auto", "cpu") == "32-true"
    (line,) = caplog.messages
    assert line.startswith("precision auto: 32-true, since this CPU has neither amx_bf16 nor avx512_bf16")


def test_explicit_bf16_on_a_cpu_that_emulates_it_is_kept_and_warned(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pretend_cpu(monkeypatch, "avx2")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"
    assert "emulated" in caplog.text and "32-true" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert resolve_precision("32-true", "cpu") == "32-true"
    assert caplog.text == ""


def test_explicit_bf16_on_a_cpu_with_avx512_bf16_is_not_warned_about(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pretend_cpu(monkeypatch, "avx512_bf16")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"
    assert caplog.text == ""


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_auto_on_a_gpu_follows_its_bf16_support() -> None:
    chosen, _ = choose_precision("gpu")
    assert chosen == ("bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true")
