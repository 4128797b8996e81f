"""What a run ran on, in words, for logs, records and benchmark tables."""

import platform
from pathlib import Path

import torch

__all__ = ["cpu_model", "device_name"]


def cpu_model() -> str | None:
    """The CPU's model name as Linux reports it (``/proc/cpuinfo``); None where it cannot be read."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def device_name(device: torch.device | str) -> str:
    """The GPU's name, or the CPU's model with the number of threads torch computes on."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = cpu_model() or platform.processor() or platform.machine()
    return f"{model} ({torch.get_num_threads()} torch threads)"
