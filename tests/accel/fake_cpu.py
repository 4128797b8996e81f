"""Makes torch report a chosen CPU, so that tests of what bfloat16 takes run alike on every machine."""

import pytest
import torch


def pretend_cpu(monkeypatch: pytest.MonkeyPatch, *features: str, onednn: bool = True) -> None:
    """Until the test ends: ``torch.cpu.get_capabilities()`` reports ``features`` (e.g. "avx512_bf16") present and
    every other flag absent, oneDNN is available and on (neither with ``onednn=False``), and no environment
    variable caps oneDNN's instructions."""
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: dict.fromkeys(features, True), raising=False)
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: onednn)
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", onednn)
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        monkeypatch.delenv(name, raising=False)
