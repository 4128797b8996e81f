"""bfloat16 autocast against float32 on the CPU: speed, quality, and what ``trainer.precision=auto`` picks here.

One run prints:

1. the machine: the CPU model, its bfloat16 features as torch reports them (amx_bf16, avx512_bf16), torch's
   version, kernels and threads, and the precision "auto" picks with its reason;
2. speed: sequences per second of a training step (forward, MSE, backward, Adam) and of inference of a
   convlstm.ConvLSTM stack in float32 and under torch.autocast(bfloat16) with the cell state in float32, side by
   side with their ratio, for the small shape (2 x 32 hidden, 3x3, 1 x 64 x 64 frames, 10 frames, batch 8) and
   OpenSTL's ConvLSTM-S (4 x 128 hidden, 5x5, Moving MNIST's 64 x 64 frames as 16 x 16 x 16 patches, 20 frames,
   batch 4). The two precisions alternate step by step, so that a change in the machine's speed touches both alike;
   rates are medians;
3. quality: the demo recipe's model trained for a fixed number of steps through make_trainer in "32-true" and in
   "bf16-mixed" (what "auto" picks on a CPU with bfloat16 instructions), from several seeds (each seeds the
   weights and the training data), then scored in float32 on the same held-out sequences. It prints the mean and
   spread (standard deviation over seeds) of that validation loss per precision and whether the bfloat16 mean lies
   within two standard errors of the float32 one: the run-to-run noise;
4. with --studies, one training step (the task's training_step, backward, Adam) of every model that
   benchmarks/quality.py trains in those studies, on a batch of the recipe's data, seconds per step in both
   precisions, and the precision `quality.py --precision auto` trains it in.

Where the CPU would emulate bfloat16 ("auto" picks float32), emulation runs some 10 to 50 times slower than
float32, so parts 2 to 4 measure float32 alone and say why, unless --bf16 always asks for the emulated numbers too.

A benchmark prints ratios for people to read; it asserts nothing about speed.

Usage:
    python benchmarks/cpu_precision.py [--shapes small openstl-s] [--batch N] [--repeats N] [--threads N]
        [--quality-steps N] [--seeds S ...] [--held-out N] [--studies all|STUDY ...] [--bf16 auto|always]
        [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import default_collate

import layers
import quality
from _timing import device_name, format_columns, write_json_atomic
from convlstm.accel import choose_precision, cpu_bf16_feature, cpu_computes_bf16
from convlstm.accel.cpu_bf16 import BF16_FEATURES
from convlstm.experiment import build_dataset, build_model, build_task, load_recipe
from convlstm.tasks import SequenceDataModule, make_trainer

CPU = torch.device("cpu")
BF16 = layers.Settings(CPU, torch.bfloat16, warmup=1, repeats=1)
FLOAT32 = replace(BF16, dtype=torch.float32)

SHAPES = {
    # The shape of the issue that measured bfloat16 on a CPU with avx512_bf16: benchmarks/layers.py's small shape
    # on 64 x 64 frames.
    "small": replace(layers.SHAPES["small"], frame_size=64, cpu_batches=(8,)),
    "openstl-s": layers.SHAPES["openstl-s"],
}
QUALITY_RECIPE = "demo"
# Variables that change what torch runs on the CPU, printed when set.
ENVIRONMENT = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "OMP_NUM_THREADS")


# ----------------------------------------------------------------------------------------------------- machine
def machine() -> dict[str, Any]:
    """What decides whether bfloat16 pays here, as torch sees it."""
    capabilities: dict[str, Any] = getattr(torch.cpu, "get_capabilities", dict)()
    precision, why = choose_precision("cpu")
    return {
        "cpu": device_name(CPU),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "features": {name: bool(capabilities.get(name, False)) for name in BF16_FEATURES},
        "feature_used": cpu_bf16_feature()[0],
        "aten_kernels": torch.backends.cpu.get_cpu_capability(),
        "onednn": torch.backends.mkldnn.is_available() and bool(torch.backends.mkldnn.enabled),
        "auto": precision,
        "auto_reason": why,
    }


def describe_machine(found: dict[str, Any]) -> str:
    features = ", ".join(f"{name} {'yes' if on else 'no'}" for name, on in found["features"].items())
    return (
        f"CPU: {found['cpu']}; bfloat16 features: {features}\n"
        f"torch {found['torch']} (ATen kernels {found['aten_kernels']}, oneDNN {'on' if found['onednn'] else 'off'})\n"
        f"trainer.precision=auto picks {found['auto']}: {found['auto_reason']}"
    )


# ----------------------------------------------------------------------------------------------------- speed
def time_shape(shape: layers.Shape, batch: int, repeats: int, bf16: bool) -> dict[str, Any]:
    """Sequences per second of training and inference in float32 and (``bf16``) bfloat16, each precision on its own
    copy of the same initial weights, timed alternately after one untimed call of each. Rates and ratios of a
    precision not measured are None."""
    x, target = layers.make_batch(shape, batch, CPU)
    result: dict[str, Any] = {"shape": shape.name, "description": shape.describe(), "batch": batch}
    for kind in ("train", "inference"):
        calls = {}
        for settings in (FLOAT32, BF16) if bf16 else (FLOAT32,):
            torch.manual_seed(0)
            candidate, _ = layers.ours_candidate(shape, CPU, "auto")
            if kind == "train":
                calls[settings.dtype] = layers.training_step(candidate, x, target, settings)
            else:
                calls[settings.dtype] = layers.inference_step(candidate, x, settings)
        seconds: dict[torch.dtype, list[float]] = {dtype: [] for dtype in calls}
        for call in calls.values():
            call()
        for _ in range(repeats):
            for dtype, call in calls.items():
                began = time.perf_counter()
                call()
                seconds[dtype].append(time.perf_counter() - began)
        float32 = batch / statistics.median(seconds[torch.float32])
        bfloat16 = batch / statistics.median(seconds[torch.bfloat16]) if bf16 else None
        ratio = None if bfloat16 is None else bfloat16 / float32
        result[kind] = {"float32_per_s": float32, "bfloat16_per_s": bfloat16, "ratio": ratio}
    return result


def speed_table(rows: list[dict[str, Any]]) -> str:
    header = ["shape", "batch", "train fp32", "train bf16", "ratio", "infer fp32", "infer bf16", "ratio"]
    lines = []
    for row in rows:
        cells = [row["shape"], str(row["batch"])]
        for kind in ("train", "inference"):
            rates = row[kind]
            cells += [f"{rates['float32_per_s']:.2f}", _number(rates["bfloat16_per_s"]), _number(rates["ratio"], "x")]
        lines.append(cells)
    return format_columns(header, lines)


def _number(value: float | None, unit: str = "", digits: int = 2) -> str:
    """A table cell: the value, or "-" for a precision not measured."""
    return "-" if value is None else f"{value:.{digits}f}{unit}"


# ----------------------------------------------------------------------------------------------------- quality
def train_and_score(seed: int, precision: str, steps: int, held_out: int) -> float:
    """The validation loss (MSE, scored in float32) of the quality recipe's model after ``steps`` training steps
    in ``precision``. ``seed`` seeds the weights and the training sequences; the held-out sequences are the
    recipe's own (seed 0), the same for every run."""
    overrides = [f"data.val_sequences={held_out}"]
    recipe = load_recipe(QUALITY_RECIPE, [*overrides, f"seed={seed}"])
    scored_on = load_recipe(QUALITY_RECIPE, overrides)
    quiet: dict[str, Any] = {
        "loggers": False,
        "checkpoints": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
    trainer = make_trainer(
        seed=seed,
        accelerator="cpu",
        precision=precision,
        max_steps=steps,
        gradient_clip_val=recipe.trainer.gradient_clip_val,
        early_stopping_patience=None,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        **quiet,
    )
    task = build_task(recipe, build_model(recipe))  # after make_trainer, which seeds the initial weights
    data = SequenceDataModule(
        build_dataset(recipe, "train"),
        build_dataset(scored_on, "val"),
        batch_size=recipe.data.batch_size,
        seed=seed,
    )
    trainer.fit(task, datamodule=data)
    scorer = make_trainer(seed=None, accelerator="cpu", precision="32-true", **quiet)
    (scores,) = scorer.validate(task, datamodule=data, verbose=False)
    return float(scores["val/loss"])


def quality_check(seeds: Sequence[int], steps: int, held_out: int, bf16: bool) -> dict[str, Any]:
    """Validation losses per seed in float32 and (``bf16``) bfloat16, their means and spreads, and the verdict (None
    where bfloat16 was not measured)."""
    losses: dict[str, list[float]] = {"32-true": [], "bf16-mixed": []} if bf16 else {"32-true": []}
    for seed in seeds:
        for precision in losses:
            began = time.perf_counter()
            losses[precision].append(train_and_score(seed, precision, steps, held_out))
            took = time.perf_counter() - began
            print(f"  seed {seed}, {precision}: loss {losses[precision][-1]:.5f} ({took:.0f} s)", file=sys.stderr)
    summary: dict[str, Any] = {"recipe": QUALITY_RECIPE, "steps": steps, "seeds": list(seeds), "held_out": held_out}
    for precision, values in losses.items():
        spread = statistics.stdev(values) if len(values) > 1 else None
        summary[precision] = {"losses": values, "mean": statistics.fmean(values), "spread": spread}
    if not bf16:
        summary["gap"] = summary["two_standard_errors"] = summary["within_noise"] = None
        return summary
    gap = summary["bf16-mixed"]["mean"] - summary["32-true"]["mean"]
    summary["gap"] = gap
    if len(seeds) > 1:
        # Standard error of a difference of two means over the same number of seeds.
        noise = math.sqrt(sum(summary[p]["spread"] ** 2 for p in losses) / len(seeds))
        summary["two_standard_errors"] = 2 * noise
        summary["within_noise"] = abs(gap) <= 2 * noise
    else:
        summary["two_standard_errors"] = summary["within_noise"] = None
    return summary


def quality_table(summary: dict[str, Any]) -> str:
    header = ["precision", "mean loss", "spread", "per seed"]
    lines = []
    for precision in ("32-true", "bf16-mixed"):
        if precision not in summary:
            continue
        result = summary[precision]
        spread = "-" if result["spread"] is None else f"{result['spread']:.5f}"
        lines.append([precision, f"{result['mean']:.5f}", spread, " ".join(f"{v:.5f}" for v in result["losses"])])
    text = format_columns(header, lines)
    if summary["gap"] is None:
        return f"{text}\nbf16-mixed not measured"
    if summary["within_noise"] is None:
        verdict = "one seed: no estimate of the noise"
    else:
        word = "within" if summary["within_noise"] else "outside"
        verdict = f"{word} 2 standard errors ({summary['two_standard_errors']:.5f})"
    return f"{text}\nbf16-mixed - 32-true: {summary['gap']:+.5f}, {verdict}"


# ----------------------------------------------------------------------------------------------------- studies
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


def measure(step: Callable[[bool], float], *, repeats: int, bf16: bool) -> dict[str, float | None]:
    """Median seconds per step in float32 and (``bf16``) bfloat16, timed alternately after one untimed step of
    each; None for bfloat16 not measured."""
    kinds = (False, True) if bf16 else (False,)
    for kind in kinds:
        step(kind)
    times: dict[bool, list[float]] = {kind: [] for kind in kinds}
    for _ in range(repeats):
        for kind in kinds:
            times[kind].append(step(kind))
    float32 = statistics.median(times[False])
    bfloat16 = statistics.median(times[True]) if bf16 else None
    return {"float32_s": float32, "bfloat16_s": bfloat16, "speedup": None if bfloat16 is None else float32 / bfloat16}


def runs_to_time(studies: Sequence[quality.Study]) -> list[tuple[quality.Study, quality.Run]]:
    """Every run that trains a network of its own: not one that fine-tunes the run before it, nor one that scores
    another study's model."""
    return [
        (study, run)
        for study in studies
        for index, run in enumerate(study.runs)
        if quality.prerequisite(study, index) is None
    ]


def time_studies(names: Sequence[str], repeats: int, bf16: bool) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as work:
        for study, run in runs_to_time([s for s in quality.STUDIES if s.name in names]):
            timing = measure(training_step(study, run, Path(work)), repeats=repeats, bf16=bf16)
            auto = quality.training_precision(run, "auto")
            rows.append({"study": study.name, "run": run.label, **timing, "quality_py_trains_in": auto})
    return rows


def studies_table(rows: list[dict[str, Any]]) -> str:
    header = ["study", "run", "float32 s/step", "bf16 s/step", "bf16 speed-up", "quality.py trains in"]
    lines = [
        [
            r["study"],
            r["run"],
            f"{r['float32_s']:.3f}",
            _number(r["bfloat16_s"], digits=3),
            _number(r["speedup"], "x"),
            r["quality_py_trains_in"],
        ]
        for r in rows
    ]
    if any(r["bfloat16_s"] is None for r in rows):
        return format_columns(header, lines)
    total = sum(r["float32_s"] for r in rows) / sum(r["bfloat16_s"] for r in rows)
    return f"{format_columns(header, lines)}\nall runs, one step each: {total:.2f}x"


# ----------------------------------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    names = [s.name for s in quality.STUDIES]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="*", choices=list(SHAPES), default=list(SHAPES), help="shapes to time")
    parser.add_argument("--batch", type=int, default=None, help="batch of every shape (default: small 8, OpenSTL-S 4)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per precision")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, one per core)")
    parser.add_argument("--quality-steps", type=int, default=150, help="training steps per quality run (0: none)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the quality runs")
    parser.add_argument("--held-out", type=int, default=128, help="held-out sequences the quality runs are scored on")
    parser.add_argument("--studies", nargs="+", choices=["all", *names], default=[], help="quality.py studies to time")
    parser.add_argument(
        "--bf16",
        choices=["auto", "always"],
        default="auto",
        help="measure bfloat16 where this CPU computes it in hardware (auto) or emulated too (always)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here too")
    args = parser.parse_args(argv)
    for name in ("batch", "repeats", "threads", "held_out"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.quality_steps < 0:
        parser.error(f"--quality-steps must be >= 0, got {args.quality_steps}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*self.trainer.* reference is not registered")  # no Trainer there
    warnings.filterwarnings("ignore", module="lightning")  # advice on workers and summaries, not results
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    found = machine()
    print(describe_machine(found))
    print(f"command: {' '.join(['python', 'benchmarks/cpu_precision.py', *sys.argv[1:]])}")
    settings = [f"{name}={os.environ[name]}" for name in ENVIRONMENT if os.environ.get(name)]
    if settings:
        print(f"environment: {' '.join(settings)}")
    results: dict[str, Any] = {"machine": found, "hardware_bf16": cpu_computes_bf16()}
    bf16 = args.bf16 == "always" or results["hardware_bf16"]
    results["bf16_measured"] = bf16
    if not bf16:
        print(f"bfloat16 not measured: {found['auto_reason']} (--bf16 always measures it emulated)")

    speed = []
    for name in args.shapes:
        shape = SHAPES[name]
        speed.append(time_shape(shape, args.batch or shape.cpu_batches[0], args.repeats, bf16))
    if speed:
        print(f"\nspeed, sequences/s (median of {args.repeats}), bf16 = bfloat16 autocast, cell state in float32:")
        for row in speed:
            print(f"  {row['shape']}: {row['description']}")
        print(speed_table(speed))
    results["speed"] = speed

    if args.quality_steps > 0:
        summary = quality_check(args.seeds, args.quality_steps, args.held_out, bf16)
        print(
            f"\nquality: recipe {QUALITY_RECIPE}, {args.quality_steps} steps, seeds {' '.join(map(str, args.seeds))}; "
            f"validation MSE (scored in float32) on {args.held_out} held-out sequences:"
        )
        print(quality_table(summary))
        results["quality"] = summary

    if args.studies:
        rows = time_studies(names if "all" in args.studies else args.studies, args.repeats, bf16)
        print(f"\none training step of quality.py's models, seconds (median of {args.repeats}):")
        print(studies_table(rows))
        results["runs"] = rows

    if args.json is not None:
        write_json_atomic(args.json, {**results, "threads": torch.get_num_threads(), "shapes": _shapes(args.shapes)})
    return 0


def _shapes(names: Sequence[str]) -> dict[str, Any]:
    return {name: asdict(SHAPES[name]) for name in names}


if __name__ == "__main__":
    sys.exit(main())
