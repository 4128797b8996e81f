"""Memory of one training step (forward + backward) against sequence length, for the four ways to train on long
sequences: plain back-propagation through time, activation checkpointing in the ConvLSTM layers
(``checkpoint_every``), truncated back-propagation through time (:func:`convlstm.tasks.tbptt.tbptt_one_step_loss`)
and both together.

The step is one-step next-frame training (read frames 0..T-2, predict frames 1..T-1, per-pixel MSE) of a small
model with ``one_step(frames, state)``:

- "convlstm" (default): a ConvLSTM stack on the full frames and a 1x1 convolution to the frame channels, so that
  almost all activation memory is the recurrent layers'.
- "next_frame": :class:`convlstm.models.NextFramePredictor` (conv encoder to 1/4 size, ConvLSTM stack, decoder);
  checkpointing covers the ConvLSTM only, the per-frame encoder and decoder keep their activations.

On the CPU each configuration runs in a process forked for it (a warm-up step on 3 frames first), so that every
step starts from the same clean heap; on CUDA they run in turn in this process. Three measures:

- tensors: peak bytes of the tensors allocated during the step. On CUDA torch.cuda.max_memory_allocated; on the CPU
  the running total that torch's CPU allocator reports to the profiler (torch.profiler, profile_memory=True), which
  sees every tensor allocation and free. Exact, and what bounds the batch and sequence length one can train.
- saved: peak bytes of the distinct tensors autograd holds for the backward pass (torch.autograd.graph.
  saved_tensors_hooks; parameters and the input frames not counted): the activation memory, the same on every
  device. Tensors recomputed inside a checkpointed chunk during the backward pass live for that chunk's backward
  only and are not in it (they are in "tensors").
- rss (CPU): growth of the process's peak resident set size (resource.getrusage ru_maxrss) over its resident
  size just before the step: what the operating system saw, including the allocator's slack and the interpreter.

Usage:
    python benchmarks/memory.py [--device cpu|cuda] [--model convlstm|next_frame] [--lengths 25 50 100 200 400]
        [--batch 1] [--hidden 8 8] [--size 64] [--chunk 25] [--checkpoint-every 10] [--threads 1] [--json FILE]
"""

import argparse
import dataclasses
import gc
import json
import logging
import multiprocessing
import os
import resource
import shlex
import sys
import time
from collections.abc import Callable
from typing import Any, cast

import torch
from torch import Tensor, nn

from convlstm import ConvLSTM
from convlstm.models import NextFramePredictor
from convlstm.tasks.losses import mse_loss
from convlstm.tasks.tbptt import OneStepModel, tbptt_one_step_loss
from convlstm.utils.atomic import atomic_write_text

logger = logging.getLogger("benchmarks.memory")

MODES = ("plain", "checkpoint", "tbptt", "both")
MIB = 2**20


@dataclasses.dataclass(frozen=True)
class Config:
    """One measurement: a model, a sequence length, a way to train."""

    mode: str
    length: int
    model: str
    device: str
    batch: int
    hidden: tuple[int, ...]
    size: int
    chunk: int
    checkpoint_every: int
    threads: int


# ----------------------------------------------------------------------------------------------------- the model
class ConvLSTMForecaster(nn.Module):
    """A ConvLSTM stack on the frames and a 1x1 convolution back to their channels: frame t -> frame t + 1."""

    def __init__(self, channels: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.rnn = ConvLSTM(channels, list(hidden), 3, num_layers=len(hidden))
        self.head = nn.Conv2d(hidden[-1], channels, 1)

    def one_step(self, frames: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        hidden, state = self.rnn(frames, state)  # (B, T, F, H, W)
        return torch.sigmoid(self.head(hidden.flatten(0, 1)).unflatten(0, hidden.shape[:2])), state


def build_model(config: Config) -> nn.Module:
    if config.model == "convlstm":
        model: nn.Module = ConvLSTMForecaster(1, config.hidden)
    else:
        model = NextFramePredictor(encoder_channels=(16, 32), hidden_channels=config.hidden)
    if config.mode in ("checkpoint", "both"):
        model.rnn.checkpoint_every = config.checkpoint_every  # type: ignore[union-attr]
    return model


def training_step(module: nn.Module, frames: Tensor, config: Config) -> None:
    """Forward and backward of the one-step loss (gradients accumulate in the parameters' .grad)."""
    model = cast(OneStepModel, module)
    if config.mode in ("tbptt", "both"):
        tbptt_one_step_loss(model, frames, chunk=config.chunk)
        return
    predictions, _ = model.one_step(frames[:, :-1])
    mse_loss(predictions, frames[:, 1:]).backward()


# ----------------------------------------------------------------------------------------------------- measures
class SavedTensorBytes:
    """Counts the bytes of the distinct storages autograd saves for the backward pass while they are alive.

    Use its ``hooks()`` around the forward pass; a storage counts once however many saved tensors view it, from
    its first save until the last of them is released (after the backward pass that used it).
    """

    def __init__(self, exclude: set[int]) -> None:
        self.exclude = exclude  # data pointers of parameters and inputs
        self.refs: dict[int, int] = {}
        self.sizes: dict[int, int] = {}
        self.current = 0
        self.peak = 0

    def hooks(self) -> torch.autograd.graph.saved_tensors_hooks:
        return torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)

    def _pack(self, tensor: Tensor) -> Any:
        storage = tensor.untyped_storage()
        key, size = storage.data_ptr(), storage.nbytes()
        if size == 0 or key in self.exclude:
            return tensor
        if key not in self.refs:
            self.refs[key], self.sizes[key] = 0, size
            self.current += size
            self.peak = max(self.peak, self.current)
        self.refs[key] += 1
        return _Held(self, key, tensor)

    @staticmethod
    def _unpack(held: Any) -> Tensor:
        return held.tensor if isinstance(held, _Held) else held

    def release(self, key: int) -> None:
        self.refs[key] -= 1
        if self.refs[key] == 0:
            del self.refs[key]
            self.current -= self.sizes.pop(key)


class _Held:
    """A saved tensor; autograd drops it when the graph node that saved it is freed."""

    def __init__(self, owner: SavedTensorBytes, key: int, tensor: Tensor) -> None:
        self.owner, self.key, self.tensor = owner, key, tensor

    def __del__(self) -> None:
        self.owner.release(self.key)


def resident_bytes() -> int | None:
    """The process's resident set size now (Linux), or None."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def reset_peak_resident() -> None:
    """Starts ru_maxrss over from the resident size now (Linux; elsewhere it keeps the process's whole peak)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_resident_bytes() -> int:
    """ru_maxrss in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def profiled_cpu_peak_bytes(step: Callable[[], None]) -> int:
    """Peak of the bytes allocated by torch's CPU allocator during ``step`` (allocations before it not counted)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    peak = 0
    pending = list(prof.profiler.kineto_results.experimental_event_tree())
    while pending:
        event = pending.pop()
        fields = event.extra_fields
        if type(fields).__name__ == "_ExtraFields_Allocation" and fields.device.type == "cpu":
            peak = max(peak, fields.total_allocated)
        pending.extend(event.children)
    return peak


def measure(config: Config) -> dict[str, Any]:
    """Runs in the child process: builds the model, warms up, and measures one step three ways."""
    torch.set_num_threads(config.threads)
    device = torch.device(config.device)
    torch.manual_seed(0)
    model = build_model(config).to(device)
    frames = torch.rand(config.batch, config.length, 1, config.size, config.size, device=device)
    training_step(model, frames[:, :3], config)  # warm-up: kernels, thread pools, gradient buffers
    exclude = {p.untyped_storage().data_ptr() for p in model.parameters()} | {frames.untyped_storage().data_ptr()}

    def step() -> None:
        model.zero_grad(set_to_none=True)
        training_step(model, frames, config)

    # 1. saved tensors and resident set size, from the same step (the hooks' bookkeeping is a few MiB at most)
    model.zero_grad(set_to_none=True)
    gc.collect()
    saved = SavedTensorBytes(exclude)
    reset_peak_resident()
    rss_before = resident_bytes()
    start = time.perf_counter()
    with saved.hooks():
        training_step(model, frames, config)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    rss = None if rss_before is None or device.type != "cpu" else max(peak_resident_bytes() - rss_before, 0)
    # 2. tensors allocated
    model.zero_grad(set_to_none=True)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        training_step(model, frames, config)
        torch.cuda.synchronize(device)
        tensors = torch.cuda.max_memory_allocated(device) - base
    else:
        tensors = profiled_cpu_peak_bytes(step)
    return {
        **dataclasses.asdict(config),
        "tensors_mib": tensors / MIB,
        "saved_mib": saved.peak / MIB,
        "rss_mib": None if rss is None else rss / MIB,
        "seconds": seconds,
    }


# ----------------------------------------------------------------------------------------------------- driver
def run_in_fresh_process(config: Config) -> dict[str, Any]:
    """``measure(config)`` in a child forked from this process (already past the slow imports, no torch work done
    yet), so that each step starts from the same clean heap and its peak resident set size is its own."""
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(config, sender))
    child.start()
    sender.close()
    try:
        outcome = receiver.recv()
    except EOFError:
        outcome = {"error": "the measuring process died (out of memory?)"}
    child.join()
    if "error" in outcome:
        raise RuntimeError(f"{config.mode} T={config.length}: {outcome['error']}")
    result: dict[str, Any] = outcome
    return result


def _child(config: Config, sender: Any) -> None:
    try:
        sender.send(measure(config))
    except Exception as err:  # reported to the parent, which raises it with the configuration
        sender.send({"error": f"{type(err).__name__}: {err}"})


def mode_label(mode: str, chunk: int, every: int) -> str:
    return {
        "plain": "plain",
        "checkpoint": f"checkpoint {every}",
        "tbptt": f"tbptt {chunk}",
        "both": f"tbptt {chunk} + ckpt {every}",
    }[mode]


def table(results: list[dict[str, Any]], key: str, fmt: str, chunk: int, every: int) -> str:
    """Rows: sequence lengths; columns: modes, each "value (ratio to plain)"."""
    lengths = sorted({r["length"] for r in results})
    header = ["T", *(mode_label(m, chunk, every) for m in MODES)]
    lines = []
    for length in lengths:
        by_mode = {r["mode"]: r.get(key) for r in results if r["length"] == length}
        plain = by_mode.get("plain")
        cells = [str(length)]
        for mode in MODES:
            value = by_mode.get(mode)
            if value is None:
                cells.append("-")
            elif mode == "plain" or not plain:
                cells.append(format(value, fmt))
            else:
                cells.append(f"{format(value, fmt)} ({value / plain:.2f}x)")
        lines.append(cells)
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in [header, *lines])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--model", default="convlstm", choices=["convlstm", "next_frame"])
    parser.add_argument("--lengths", type=int, nargs="+", default=[25, 50, 100, 200, 400])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--hidden", type=int, nargs="+", default=[8, 8])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--chunk", type=int, default=25, help="TBPTT chunk length (frames)")
    parser.add_argument("--checkpoint-every", type=int, default=10, help="steps per checkpointed chunk")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in each measuring process")
    parser.add_argument("--json", help="also write the results to this file (atomically)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    results = []
    started = time.perf_counter()
    for length in args.lengths:
        for mode in MODES:
            config = Config(
                mode=mode,
                length=length,
                model=args.model,
                device=args.device,
                batch=args.batch,
                hidden=tuple(args.hidden),
                size=args.size,
                chunk=args.chunk,
                checkpoint_every=args.checkpoint_every,
                threads=args.threads,
            )
            result = measure(config) if config.device == "cuda" else run_in_fresh_process(config)
            logger.info(
                "%-10s T=%-4d tensors %8.1f MiB  saved %8.1f MiB  rss %s  %.1f s",
                mode,
                length,
                result["tensors_mib"],
                result["saved_mib"],
                "-" if result["rss_mib"] is None else f"{result['rss_mib']:8.1f} MiB",
                result["seconds"],
            )
            results.append(result)
    chunk, every = args.chunk, args.checkpoint_every
    hidden = "x".join(map(str, args.hidden))
    title = (
        f"{args.model}: hidden {hidden}, batch {args.batch}, {args.size}x{args.size} frames, {args.device}, "
        f"{args.threads} thread(s); one training step (forward + backward) of the one-step loss over T frames"
    )
    print(title)
    print("\npeak memory of the tensors allocated during the step, MiB (ratio to plain)")
    print(table(results, "tensors_mib", ".1f", chunk, every))
    print("\npeak memory saved for the backward pass (activations), MiB (ratio to plain)")
    print(table(results, "saved_mib", ".1f", chunk, every))
    if any(r["rss_mib"] is not None for r in results):
        print("\npeak resident set size growth during the step, MiB (ratio to plain)")
        print(table(results, "rss_mib", ".1f", chunk, every))
    print("\nseconds per step (ratio to plain)")
    print(table(results, "seconds", ".2f", chunk, every))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    if args.json:
        command = " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])
        atomic_write_text(
            args.json,
            json.dumps({"title": title, "command": command, "results": results}, indent=2) + "\n",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
