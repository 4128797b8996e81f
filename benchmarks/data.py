"""Generation speed of the built-in data generators on ONE core (torch.set_num_threads(1), process pinned to one CPU).

The headline number is Moving MNIST training sequences (20 frames of 64x64, two digits, read as dataset items:
float32 "context" and "target" tensors) per second, against the target of 1,000 sequences/s. The other generators
are timed the same way, for information.

Usage:
    python benchmarks/data.py [--sequences N] [--all] [--json FILE]
"""

import argparse
import logging
import os
import time
from collections.abc import Callable

import torch

from _timing import write_json_atomic
from convlstm.data.anomalies import AnomalySequences
from convlstm.data.bouncing_balls import BouncingBalls
from convlstm.data.moving_mnist import MovingMNIST
from convlstm.data.radar import SyntheticRadar
from convlstm.data.shapes import MovingShapesSegmentation

TARGET_PER_S = 1_000.0


def pin_to_one_core() -> str:
    """Restrict this process to one CPU and torch to one thread; returns a description."""
    torch.set_num_threads(1)
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"CPU {cpu}, 1 torch thread"
    return "1 torch thread (no CPU pinning on this platform)"


def items_per_second(make: Callable[[int], object], count: int) -> tuple[float, float]:
    """Reads items 0..count-1 (after one warm-up item); returns items per wall-clock second and per CPU second.

    On a machine shared with other jobs the CPU-second rate is the one that does not depend on the load.
    """
    make(count)  # warm-up: caches, lazy imports
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(count):
        make(i)
    return count / (time.perf_counter() - wall), count / (time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=3000, help="Moving MNIST sequences to time")
    parser.add_argument("--all", action="store_true", help="also time the other generators (fewer sequences)")
    parser.add_argument("--json", help="write the results to this JSON file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    where = pin_to_one_core()
    mnist = MovingMNIST(split="train", num_sequences=args.sequences + 1)
    rate, cpu_rate = items_per_second(mnist.__getitem__, args.sequences)
    results: dict[str, object] = {
        "moving_mnist_train_per_s": rate,
        "moving_mnist_train_per_cpu_s": cpu_rate,
        "ratio_to_1000": rate / TARGET_PER_S,
        "where": where,
    }
    print(f"Moving MNIST train sequences (20 x 64 x 64, 2 digits), {where}")
    print(f"  {rate:,.0f} sequences/s   ratio to the 1,000/s target: {rate / TARGET_PER_S:.2f}x")
    print(f"  ({cpu_rate:,.0f} sequences per CPU second, {cpu_rate / TARGET_PER_S:.2f}x, independent of other load)")

    if args.all:
        others = {
            "bouncing_balls (20 x 30 x 30, 3 balls)": (BouncingBalls(num_sequences=501), 500),
            "moving_shapes (16 x 64 x 64)": (MovingShapesSegmentation(num_sequences=201), 200),
            "anomalies, balls (20 x 30 x 30)": (AnomalySequences(split="test", num_sequences=201), 200),
            "synthetic_radar (20 x 100 x 100)": (SyntheticRadar(num_sequences=41), 40),
        }
        for name, (dataset, count) in others.items():
            other, other_cpu = items_per_second(dataset.__getitem__, count)
            results[name] = {"per_s": other, "per_cpu_s": other_cpu}
            print(f"  {name}: {other:,.1f} sequences/s ({other_cpu:,.1f} per CPU second)")
    if args.json:
        write_json_atomic(args.json, results)


if __name__ == "__main__":
    main()
