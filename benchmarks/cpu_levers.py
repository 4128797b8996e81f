"""The CPU levers besides precision, side by side in one run: channels-last, compiled gates, threads and workers.

One run prints the machine (as benchmarks/cpu_precision.py does) and one table of training-step throughput
(sequences per second: forward, MSE, backward, Adam) of the small shape (2 x 32 hidden ConvLSTM, 3x3 kernels,
1 x 64 x 64 frames, 10 frames, batch 8) in the precision ``trainer.precision=auto`` picks on this CPU, with each
row's ratio to the baseline:

1. baseline: the layers as convlstm.accel.fast_settings("cpu") sets them, but with the gates eager, contiguous;
2. channels_last: the same with ``FastSettings.channels_last``: the 4-D convolution weights in channels-last memory
   format and the (B, T, C, H, W) input stored by convlstm.accel.channels_last_sequence, so that every frame the
   cells convolve, x[:, t], is a contiguous channels-last block (the layers keep their outputs so);
3. compiled gates: the same with ``FastSettings.compile_gates``: the cell step's gate arithmetic through
   torch.compile (inductor, which generates C++ on the CPU). Its compile time is the first step's time minus the
   steady step's; a failed compilation (no C++ compiler, say) is reported as "failed: <reason>" and the run goes on.

Rows 1-3 train on one fixed random batch, each on its own copy of the same initial weights; after their first
steps and warm-up, their timed steps alternate, so that a change in the machine's speed touches all alike; rates
are medians.

4. threads against DataLoader workers: the baseline trained on bouncing balls generated on the fly
   (convlstm.data.BouncingBalls, 10 frames in, the next 10 the target of the first output channel), with
   intra-op threads and worker processes (convlstm.data.init_worker: one thread each) of (cores, 0),
   (cores - 1, 1) and (cores, 1), cores = os.cpu_count(); sequences per second over a fixed number of steps,
   data loading included, after the warm-up steps (which start the workers).

A benchmark prints ratios for people to read; it asserts nothing about speed.

Usage:
    python benchmarks/cpu_levers.py [--steps N] [--warmup N] [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

import layers
from _timing import format_columns, write_json_atomic
from convlstm.accel import FastSettings, apply_fast_settings, channels_last_sequence, fast_settings
from convlstm.data import BouncingBalls, init_worker
from cpu_precision import SHAPES, describe_machine, machine

CPU = torch.device("cpu")
SHAPE = SHAPES["small"]
# Small enough that the smoke test's compilation and steps take seconds.
QUICK_SHAPE = replace(SHAPE, hidden_channels=4, frame_size=8, frames=3, cpu_batches=(2,))
BASELINE = "baseline"


@dataclasses.dataclass
class Lever:
    """One row of the table: a rate in sequences per second, or the reason it has none."""

    name: str
    description: str
    per_s: float | None = None
    compile_s: float | None = None
    failed: str | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------- compute levers
def compute_levers(base: FastSettings) -> dict[str, tuple[FastSettings, str]]:
    return {
        BASELINE: (base, "contiguous, eager"),
        "channels_last": (replace(base, channels_last=True), "weights and frames channels-last"),
        "compiled gates": (replace(base, compile_gates=True), "cell step's gate arithmetic through torch.compile"),
    }


def training_step(settings: FastSettings, shape: layers.Shape, batch: int) -> Callable[[], None]:
    """A training step of a fresh model (seed 0: every lever starts from the same weights) under ``settings``."""
    torch.manual_seed(0)
    candidate, model = layers.ours_candidate(shape, CPU, settings.input_schedule)
    apply_fast_settings(model, settings)
    x, target = layers.make_batch(shape, batch, CPU)
    if settings.channels_last:
        x = channels_last_sequence(x)
    precision = layers.Settings(CPU, settings.autocast_dtype or torch.float32, warmup=0, repeats=0)
    return layers.training_step(candidate, x, target, precision)


def failure(error: Exception) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


def time_compute_levers(base: FastSettings, shape: layers.Shape, batch: int, warmup: int, steps: int) -> list[Lever]:
    """Rows 1-3: each lever's first step timed alone, then warm-up, then ``steps`` timed steps in turn."""
    rows, calls, first_s = [], {}, {}
    for name, (settings, description) in compute_levers(base).items():
        row = Lever(name, description)
        rows.append(row)
        try:
            step = training_step(settings, shape, batch)
            began = time.perf_counter()
            step()
            first_s[name] = time.perf_counter() - began
            for _ in range(max(warmup - 1, 0)):
                step()
        except Exception as error:  # a failed compilation must not end the run
            row.failed = failure(error)
            print(f"  {name} failed: {row.failed}", file=sys.stderr)
            continue
        calls[name] = step
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(steps):
        for name, step in calls.items():
            began = time.perf_counter()
            step()
            seconds[name].append(time.perf_counter() - began)
    for row in rows:
        if row.name in seconds:
            median = statistics.median(seconds[row.name])
            row.per_s = batch / median
            row.extra = {"first_step_s": first_s[row.name], "median_step_s": median}
            if row.name == "compiled gates":
                row.compile_s = first_s[row.name] - median
    return rows


# ----------------------------------------------------------------------------------------------------- threads
def pipelines(cores: int) -> list[tuple[int, int]]:
    """(intra-op threads, DataLoader workers) to compare; none that would leave the model without a thread."""
    candidates = [(cores, 0), (cores - 1, 1), (cores, 1)]
    return [(threads, workers) for threads, workers in dict.fromkeys(candidates) if threads >= 1]


def batches(loader: DataLoader[Any]) -> Iterator[dict[str, torch.Tensor]]:
    while True:
        yield from loader


def time_pipeline(
    settings: FastSettings, shape: layers.Shape, batch: int, threads: int, workers: int, warmup: int, steps: int
) -> Lever:
    """Row 4 for one split of the cores: sequences per second of ``steps`` steps, data loading included."""
    name = f"threads {threads}, workers {workers}"
    row = Lever(name, "bouncing balls generated on the fly, loading included")
    dataset = BouncingBalls(
        "train",
        resolution=shape.frame_size,
        context_frames=shape.frames,
        target_frames=shape.frames,
        num_sequences=batch * (warmup + steps),
    )
    loader = DataLoader(
        dataset, batch_size=batch, shuffle=True, num_workers=workers, worker_init_fn=init_worker, drop_last=True
    )
    torch.manual_seed(0)
    candidate, model = layers.ours_candidate(shape, CPU, settings.input_schedule)
    apply_fast_settings(model, settings)
    optimizer = torch.optim.Adam(candidate.parameters, lr=1e-4)
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        data = batches(loader)
        began = time.perf_counter()
        for index in range(warmup + steps):
            if index == warmup:
                began = time.perf_counter()
            item = next(data)
            optimizer.zero_grad(set_to_none=True)
            with settings.autocast(CPU):
                # The first output channel predicts the next frames: a loss that learns, at the model's cost.
                loss = F.mse_loss(candidate.forward(item["context"])[:, :, :1].float(), item["target"])
            loss.backward()
            optimizer.step()
        row.per_s = batch * steps / (time.perf_counter() - began)
    except Exception as error:  # e.g. workers that cannot start here
        row.failed = failure(error)
        print(f"  {name} failed: {row.failed}", file=sys.stderr)
    finally:
        torch.set_num_threads(saved)
    row.extra = {"threads": threads, "workers": workers}
    return row


# ----------------------------------------------------------------------------------------------------- output
def ratio(row: Lever, baselines: dict[str, float | None]) -> float | None:
    """``row``'s rate over its group's baseline; None where either has none."""
    reference = baselines.get(row.name)
    return None if row.per_s is None or not reference else row.per_s / reference


def table(rows: list[Lever], baselines: dict[str, float | None]) -> str:
    """Rates with their ratio to the baseline of their group (``baselines`` by row name)."""
    header = ["lever", "sequences/s", "vs baseline", "compile s"]
    lines = []
    for row in rows:
        if row.per_s is None:
            lines.append([row.name, f"failed: {row.failed}"])
            continue
        against = ratio(row, baselines)
        relative = "-" if against is None else f"{against:.2f}x"
        compile_s = "-" if row.compile_s is None else f"{row.compile_s:.1f}"
        lines.append([row.name, f"{row.per_s:.2f}", relative, compile_s])
    legend = "\n".join(f"  {row.name}: {row.description}" for row in rows)
    return f"{format_columns(header, lines)}\n{legend}"


# ----------------------------------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per lever")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per lever first (compilation included)")
    parser.add_argument("--quick", action="store_true", help="tiny shape, for a smoke test; rates mean nothing")
    parser.add_argument("--json", type=str, default=None, help="write the results here too")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    if args.warmup < 1:
        parser.error(f"--warmup must be >= 1, got {args.warmup}")
    # Compiled gates specialise per first step or not, grad mode and layout: room for every variant, so that the
    # compiled row never falls back to eager code.
    config = torch._dynamo.config
    limit = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"  # renamed in torch 2.7
    setattr(config, limit, max(getattr(config, limit), 64))

    cores = os.cpu_count() or 1
    torch.set_num_threads(cores)
    shape = QUICK_SHAPE if args.quick else SHAPE
    batch = shape.cpu_batches[0]
    found = machine()
    base = replace(fast_settings("cpu"), compile_gates=False)  # the lever below is measured against eager gates
    print(describe_machine(found))
    print(f"command: {' '.join(['python', 'benchmarks/cpu_levers.py', *sys.argv[1:]])}")
    print(f"cores: {cores}; baseline settings: {base.describe()}")

    compute = time_compute_levers(base, shape, batch, args.warmup, args.steps)
    pipeline = [
        time_pipeline(base, shape, batch, threads, workers, args.warmup, args.steps)
        for threads, workers in pipelines(cores)
    ]
    reference = compute[0].per_s
    baselines = {row.name: reference for row in compute}
    baselines.update({row.name: pipeline[0].per_s for row in pipeline})
    print(
        f"\ntraining step, sequences/s, batch {batch}: {shape.describe()}; rows 1-3 median of {args.steps} steps "
        f"on one batch, vs the baseline; the pipeline rows {args.steps} steps with loading, vs threads {cores}, "
        "workers 0"
    )
    print(table(compute + pipeline, baselines))

    if args.json is not None:
        results = {
            "machine": found,
            "cores": cores,
            "baseline_settings": base.describe(),
            "shape": asdict(shape),
            "batch": batch,
            "steps": args.steps,
            "warmup": args.warmup,
            "levers": [{**asdict(row), "vs_baseline": ratio(row, baselines)} for row in compute + pipeline],
        }
        write_json_atomic(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
