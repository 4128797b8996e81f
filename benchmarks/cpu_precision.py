"""Training speed on the CPU in float32 and under bfloat16 autocast, for the model of every quality.py run.

For each run of benchmarks/quality.py (its recipe with the study's overrides), one training step (the task's
training_step, backward, Adam) is timed on one batch of the recipe's training data, alternately in float32 and under
torch.autocast(bfloat16), the way Lightning's "32-true" and "bf16-mixed" precisions run it; the two alternate so that
a change in the machine's speed during the run touches both columns alike. It prints seconds per step, the ratio,
the precision `quality.py --precision auto` trains the run in, and whether this CPU multiplies bfloat16 in hardware
(AMX), the condition for auto to pick bfloat16 at all.

Usage:
    python benchmarks/cpu_precision.py [--only STUDY ...] [--repeats N] [--threads N] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import default_collate

import quality
from _timing import device_name, format_columns, write_json_atomic
from convlstm.accel import cpu_computes_bf16
from convlstm.experiment import build_dataset, build_model, build_task, load_recipe


def training_step(study: quality.Study, run: quality.Run, work: Path) -> Callable[[bool], float]:
    """A function that runs one training step of ``run`` (bfloat16 autocast when called with True) on a fixed
    batch, from the same starting weights each time, and returns its seconds."""
    extra = study.prepare(work) if study.prepare is not None else []
    recipe = load_recipe(study.recipe, [*study.common, *extra, *run.overrides])
    dataset = build_dataset(recipe, "train")
    batch = default_collate([dataset[i] for i in range(recipe.data.batch_size)])
    task = build_task(recipe, build_model(recipe))
    start = copy.deepcopy(task.state_dict())
    optimizer = torch.optim.Adam(task.parameters(), lr=1e-3)

    def step(bf16: bool) -> float:
        task.load_state_dict(start)
        began = time.perf_counter()
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with autocast:
            loss = task.training_step(batch, 0)
        assert isinstance(loss, torch.Tensor), f"{type(task).__name__}.training_step returned {type(loss).__name__}"
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - began

    return step


def measure(step: Callable[[bool], float], *, repeats: int) -> dict[str, float]:
    """Median seconds per step in float32 and bfloat16, timed alternately after one untimed step of each."""
    step(False)
    step(True)
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(repeats):
        for bf16 in (False, True):
            times[bf16].append(step(bf16))
    float32, bfloat16 = statistics.median(times[False]), statistics.median(times[True])
    return {"float32_s": float32, "bfloat16_s": bfloat16, "speedup": float32 / bfloat16}


def runs_to_time(studies: Sequence[quality.Study]) -> list[tuple[quality.Study, quality.Run]]:
    """Every run that trains a network of its own: not one that fine-tunes the run before it, nor one that scores
    another study's model."""
    return [
        (study, run)
        for study in studies
        for index, run in enumerate(study.runs)
        if quality.prerequisite(study, index) is None
    ]


def main(argv: Sequence[str] | None = None) -> int:
    names = [s.name for s in quality.STUDIES]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=names, default=names, help="studies whose runs to time")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per precision and run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (quality.py trains on 1 per run)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here too")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", message=".*self.trainer.* reference is not registered")  # no Trainer here
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    hardware = cpu_computes_bf16()
    print(f"{device_name(torch.device('cpu'))}, torch {torch.__version__}, bfloat16 in hardware (AMX): {hardware}")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as work:
        for study, run in runs_to_time([s for s in quality.STUDIES if s.name in args.only]):
            timing = measure(training_step(study, run, Path(work)), repeats=args.repeats)
            auto = quality.training_precision(run, "auto")
            rows.append({"study": study.name, "run": run.label, **timing, "quality_py_trains_in": auto})
    print(
        format_columns(
            ["study", "run", "float32 s/step", "bf16 s/step", "bf16 speed-up", "quality.py trains in"],
            [
                [
                    r["study"],
                    r["run"],
                    f"{r['float32_s']:.3f}",
                    f"{r['bfloat16_s']:.3f}",
                    f"{r['speedup']:.2f}x",
                    r["quality_py_trains_in"],
                ]
                for r in rows
            ],
        )
    )
    total = sum(r["float32_s"] for r in rows) / sum(r["bfloat16_s"] for r in rows)
    print(f"all runs, one step each: {total:.2f}x")
    if args.json is not None:
        write_json_atomic(args.json, {"hardware_bf16": hardware, "threads": args.threads, "runs": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
