"""Helpers shared by the benchmarks: synchronized wall-clock timing, peak memory, atomic JSON output, Markdown table
cells, and the refusal of an --out folder that is in use."""

import argparse
import gc
import json
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from convlstm.utils.machine import device_name as device_name  # the benchmarks import it from here


def synchronize(device: torch.device) -> None:
    """Waits for queued kernels, so that a wall-clock interval covers the work launched inside it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timing:
    """Seconds per call of the timed calls (warm-up excluded) and of the very first call (compilation shows there)."""

    first_s: float
    times_s: list[float] = field(default_factory=list)

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)


def time_calls(fn: Callable[[], object], *, device: torch.device, warmup: int, repeats: int) -> Timing:
    """Calls ``fn`` ``warmup`` times untimed (at least once, timed as ``first_s``), then ``repeats`` times timed."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    timing = Timing(first_s=time.perf_counter() - start)
    for _ in range(max(warmup - 1, 0)):
        fn()
    synchronize(device)
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        timing.times_s.append(time.perf_counter() - start)
    return timing


def reset_peak_memory(device: torch.device) -> None:
    """Starts a new peak after freeing what earlier measurements left in reference cycles."""
    if device.type == "cuda":
        gc.collect()
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mib(device: torch.device) -> float | None:
    """Peak memory allocated by tensors since the last reset, in MiB; None where torch does not track it (CPU)."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    """Writes ``data`` as JSON to a temporary file next to ``path``, then renames it over ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def format_columns(header: list[str], lines: list[list[str]]) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned.

    A line shorter than the header (e.g. [name, "failed: ..."]) is printed as its cells joined, unaligned.
    """
    full = [header] + [line for line in lines if len(line) == len(header)]
    widths = [max(len(line[i]) for line in full) for i in range(len(header))]
    text = []
    for line in [header, *lines]:
        if len(line) != len(header):
            text.append(f"{line[0]:<{widths[0]}}  " + "  ".join(line[1:]))
            continue
        cells = [
            cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ]
        text.append("  ".join(cells))
    return "\n".join(text)


def refuse_used_out(parser: argparse.ArgumentParser, out: Path) -> None:
    """Exits through ``parser`` (status 2) when ``out`` holds anything: a script's results never overwrite a user's."""
    if out.exists() and any(out.iterdir()):
        parser.error(f"--out {out} is not empty; nothing there is overwritten: choose a new directory")


def format_cell(value: float | None, digits: int) -> str:
    """A table cell: "-" for a missing or non-finite score, scientific notation where ``digits`` would print 0."""
    if value is None or not math.isfinite(value):
        return "-"
    if abs(value) < 10**-digits and value != 0:
        return f"{value:.2e}"
    return f"{value:.{digits}f}"
