"""CPU-sized results of every application against its baselines, in one run (issue #6).

Each study trains the packaged recipes (src/convlstm/recipes/) at a CPU size (the overrides below: fewer steps,
smaller frames) with the same code as `convlstm fit`, scores the test split with `convlstm evaluate`, and prints
one Markdown table per study: the table the README shows. Every run is seeded and has a step budget (not a
wall-clock one), so the numbers repeat on any machine of the same torch version and training precision up to the
summation order of its thread count; only the time differs.

Usage:
    python benchmarks/quality.py [--out DIR] [--only STUDY ...] [--scale X] [--test-sequences N] [--jobs N]
                                 [--precision auto|32-true|bf16-mixed] [--json FILE]

--scale multiplies every step budget (0.1 for a smoke test). --jobs (default 2, or 1 on one core) trains that
many runs at a time, each in its own process with its share of the cores, the largest step budgets first; a study's
table is printed when its last run ends. --precision auto (the default) trains under bfloat16 autocast on CPUs where
torch multiplies bfloat16 in hardware (AMX or avx512_bf16, convlstm.accel.cpu_bf16_feature), except the models for
which benchmarks/cpu_precision.py measured no gain, and in float32 elsewhere. The anomaly
study scores the bouncing-balls study's model (--only anomaly trains it too). --out must be a new or empty
directory: nothing there is overwritten. The published numbers printed beside ours come from GPU training of far
larger models for hours (the papers cited with each table): they set the scale, they are not a like-for-like
comparison.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from _timing import format_cell, refuse_used_out, write_json_atomic
from convlstm import experiment
from convlstm.accel import cpu_computes_bf16
from convlstm.experiment import RunDir, load_recipe

#: --precision: Lightning's training precisions, or "auto" (see training_precision).
PRECISIONS = ("auto", "32-true", "bf16-mixed")

#: Test sequences scored per study (the same ones for the model and its baselines).
TEST_SEQUENCES = 256


@dataclass(frozen=True)
class Run:
    """One trained model: its row label in the table and its overrides of the study's recipe."""

    label: str
    overrides: tuple[str, ...] = ()
    steps: int | None = None  # this run's step budget, if not the study's
    bf16_pays: bool = True  # False where benchmarks/cpu_precision.py measured bfloat16 no faster for this model
    model_of: str | None = None  # trains nothing: scores the model of that study's first run on this study's data


@dataclass(frozen=True)
class Column:
    """A table column: ``key`` in metrics.json; with ``lead``, entry ``lead`` of the list ``key`` (a class of
    ``iou_per_class``) or, when ``key`` is not a list, of ``<key>_by_lead_time`` (0-based lead time)."""

    title: str
    key: str
    lead: int | None = None
    digits: int = 3

    def value(self, scores: dict[str, Any]) -> float | None:
        value = scores.get(self.key)
        if self.lead is not None:
            series = value if isinstance(value, list) else scores.get(f"{self.key}_by_lead_time")
            value = series[self.lead] if series is not None else None
        return None if value is None else float(value)


@dataclass(frozen=True)
class Study:
    """Trained runs of one recipe; the first run's evaluation also scores the recipe's baselines."""

    name: str
    recipe: str
    common: tuple[str, ...]
    runs: tuple[Run, ...]
    columns: tuple[Column, ...]
    steps: int
    published: dict[str, dict[str, float]] = field(default_factory=dict)
    prepare: Callable[[Path], list[str]] | None = None  # writes data files; returns extra overrides
    figure: tuple[str, ...] = ()  # scores drawn against lead time for every method, in <out>/<name>_by_lead_time.png


def write_video_frames(root: Path, *, sequences: int = 48, frames: int = 20, size: int = 48) -> None:
    """A folder of PNG frames per sequence, as a camera recording would be stored (the image_folders loader reads
    them back): textured radar-like echoes drifting over the frame. No real video can be downloaded here."""
    from convlstm.data.synthetic.radar import SyntheticRadar

    source = SyntheticRadar(split="train", context_frames=frames, target_frames=0, image_size=size)
    for index in range(sequences):
        item = source[index]
        folder = root / f"sequence_{index:03d}"
        folder.mkdir(parents=True)
        for t, frame in enumerate(item["context"][:, 0].numpy()):
            Image.fromarray(np.round(frame * 255).astype(np.uint8), mode="L").save(folder / f"frame_{t:03d}.png")


def prepare_video(work: Path) -> list[str]:
    root = work / "video_frames"
    if not root.exists():
        write_video_frames(root)
    return [f"data.args.root={root}"]


#: FC-LSTM at a CPU size: two layers of 256 units over the flattened frame (Srivastava et al.'s model, 1/8 wide).
FC_LSTM = "model.name=fc_lstm_tiny"
FC_LSTM_ARGS = "hidden_sizes: [256, 256], default_horizon: 15"
#: The encoder-forecaster at a CPU size (Shi's structure: two ConvLSTM layers, 5x5 kernels, frames as patches).
SMALL_ENCODER_FORECASTER = "hidden_channels: [32, 32], kernel_size: 5, default_horizon: 15"
ANOMALY_KINDS = ("teleport", "reverse", "appear", "stop")
#: Moving MNIST's mean pixel (generated train sequences): both networks start predicting it (see the recipe).
MNIST_MEAN = 0.049
#: The synthetic radar's mean pixel at the nowcasting study's size (48x48, wind 0.5-1.5 px/frame).
RADAR_MEAN = 0.067
#: Shi's radar geometry (3x3 kernels, 2x2 patches) at half his width.
RADAR_ENCODER_FORECASTER = (
    f"hidden_channels: [32, 32], kernel_size: 3, patch_size: 2, default_horizon: 15, initial_mean: {RADAR_MEAN}"
)

FORECAST_COLUMNS = (
    Column("MSE/frame", "mse_per_frame", digits=1),
    Column("MAE/frame", "mae_per_frame", digits=1),
    Column("SSIM", "ssim"),
    Column("PSNR", "psnr", digits=2),
)

STUDIES: tuple[Study, ...] = (
    Study(
        name="moving_mnist",
        recipe="moving_mnist",
        common=("data.num_workers=0", "task.args.warmup_steps=20"),
        runs=(
            Run(
                "ConvLSTM encoder-forecaster",
                (f"model.args={{{SMALL_ENCODER_FORECASTER}, patch_size: 4, initial_mean: {MNIST_MEAN}}}",),
            ),
            Run(
                "FC-LSTM",
                (FC_LSTM, f"model.args={{{FC_LSTM_ARGS}, height: 64, width: 64, initial_mean: {MNIST_MEAN}}}"),
                bf16_pays=False,
            ),
        ),
        columns=(Column("cross-entropy", "bce_per_sequence", digits=1), *FORECAST_COLUMNS),
        steps=300,
        published={
            "Shi et al.: ConvLSTM(5x5)-5x5-128-5x5-64-5x5-64": {"cross-entropy": 3670.85},
            "Shi et al.: FC-LSTM-2048-2048": {"cross-entropy": 4832.49},
            "OpenSTL: ConvLSTM-S, 200 epochs": {"MSE/frame": 29.80, "MAE/frame": 90.64, "SSIM": 0.9288},
        },
    ),
    Study(
        name="nowcasting",
        recipe="nowcasting",
        common=(
            "data.args.image_size=48",
            "data.args.speed_range=[0.5, 1.5]",  # the recipe's wind relative to the frame, at half the size
            "data.num_workers=0",
            "evaluate.num_sequences=64",
            "task.args.lr=0.002",
        ),
        runs=(
            Run("ConvLSTM encoder-forecaster", (f"model.args={{{RADAR_ENCODER_FORECASTER}}}",)),
            Run(
                "ConvLSTM, motion cues + advection head",
                (
                    "model.name=radar_convlstm_advection",
                    "model.args={hidden_channels: [32, 32], default_horizon: 15}",
                    "task.args.lr=0.001",
                ),
                steps=800,
            ),
            Run(
                "ConvGRU encoder-forecaster",
                ("model.name=shi2015_radar_convgru", f"model.args={{{RADAR_ENCODER_FORECASTER}}}"),
            ),
            Run(
                "FC-LSTM",
                (FC_LSTM, f"model.args={{{FC_LSTM_ARGS}, height: 48, width: 48, initial_mean: {RADAR_MEAN}}}"),
                bf16_pays=False,
            ),
        ),
        columns=(
            *(Column(f"CSI@{t}", f"csi@{t}") for t in ("0.5", "2", "5", "10", "30")),
            Column("POD@0.5", "pod@0.5"),
            Column("FAR@0.5", "far@0.5"),
            Column("HSS@0.5", "hss@0.5"),
            Column("B-MSE", "b_mse", digits=1),
            Column("B-MAE", "b_mae", digits=1),
        ),
        steps=400,
        figure=("csi@0.5", "csi@2", "csi@10", "hss@0.5"),
        published={
            "Shi et al. (HKO radar): ConvLSTM": {"CSI@0.5": 0.577, "POD@0.5": 0.660, "FAR@0.5": 0.195},
            "Shi et al. (HKO radar): ROVER optical flow": {"CSI@0.5": 0.516, "POD@0.5": 0.636, "FAR@0.5": 0.308},
            "Shi et al. (HKO radar): FC-LSTM": {"CSI@0.5": 0.286, "POD@0.5": 0.351, "FAR@0.5": 0.335},
        },
    ),
    Study(
        name="bouncing_balls",
        recipe="bouncing_balls",
        common=("task.args.lr=0.002",),  # the recipe's model: 2 x 32, 5x5, 2x2 patches, started at the mean
        runs=(Run("ConvLSTM encoder-forecaster"),),
        columns=(
            Column("MSE 1 step", "mse_per_frame", lead=0, digits=2),
            Column("MSE 10 steps", "mse_per_frame", lead=9, digits=2),
            Column("MSE/frame", "mse_per_frame", digits=2),
            Column("SSIM", "ssim"),
        ),
        steps=300,
    ),
    Study(
        name="segmentation",
        recipe="segmentation",
        common=(
            "data.args.image_size=32",
            "data.context_frames=10",
            "data.args.size_range=[3, 5]",
            "data.args.noise_std=0.1",
            "task.args.lr=0.002",
        ),
        runs=(
            Run("ConvLSTM U-Net"),
            Run("U-Net without recurrence", ("model.name=unet_per_frame",)),
        ),
        columns=(
            Column("mIoU", "miou"),
            Column("mean Dice", "mean_dice"),
            Column("IoU straight", "iou_per_class", lead=1),
            Column("IoU zigzag", "iou_per_class", lead=2),
        ),
        steps=400,
    ),
    Study(
        name="anomaly",
        recipe="anomaly",
        common=(),
        # A forecaster of normal bouncing balls is what the anomaly recipe trains: the bouncing-balls study's model
        # is one (the same network and data), so it is scored here instead of training a second (README, Results 5).
        runs=(Run("ConvLSTM encoder-forecaster of the bouncing-balls study", model_of="bouncing_balls"),),
        columns=(
            Column("ROC-AUC", "auroc"),
            Column("ROC-AUC cumulative", "auroc_cumulative"),
            Column("onset frames", "auroc_onset"),
            *(Column(f"{kind} onset", f"auroc_onset_{kind}") for kind in ANOMALY_KINDS),
            *(Column(f"{kind} cumulative", f"auroc_cumulative_{kind}") for kind in ANOMALY_KINDS),
        ),
        steps=300,
    ),
    Study(
        name="prednet",
        recipe="prednet_video",
        common=(),
        runs=(
            Run("PredNet"),
            Run(
                "PredNet, fine-tuned to extrapolate 5 frames",
                ("model.init_from={previous}", "task.args.extrap_start_time=10", "data.target_frames=5"),
                steps=100,
            ),
        ),
        columns=(
            Column("MSE/pixel", "mse_per_pixel", digits=5),
            Column("SSIM", "ssim"),
        ),
        steps=300,
        published={"Lotter et al. (Caltech): PredNet": {"MSE/pixel": 3.13e-3, "SSIM": 0.884}},
        prepare=prepare_video,
    ),
)


#: A run: (study name, index into the study's runs).
RunRef = tuple[str, int]
#: Method label -> its metrics.json scores (and "minutes", "precision"), in table order.
Methods = dict[str, dict[str, Any]]


def study_named(name: str) -> Study:
    return next(study for study in STUDIES if study.name == name)


def run_at(ref: RunRef) -> tuple[Study, Run]:
    study = study_named(ref[0])
    return study, study.runs[ref[1]]


def prerequisite(study: Study, index: int) -> RunRef | None:
    """The run that run ``index`` of ``study`` needs first: the one before it when it starts from its weights
    ({previous} in its overrides), the other study's first run when it scores that model (model_of), else None."""
    run = study.runs[index]
    if run.model_of is not None:
        return (run.model_of, 0)
    if any("{previous}" in o for o in run.overrides):
        return (study.name, index - 1)
    return None


def with_prerequisites(names: Sequence[str]) -> list[Study]:
    """The studies named and those whose model one of them scores, in the order of STUDIES."""
    wanted = set(names) | {
        run.model_of for study in STUDIES if study.name in names for run in study.runs if run.model_of
    }
    return [study for study in STUDIES if study.name in wanted]


def chains(studies: Sequence[Study]) -> list[tuple[RunRef, ...]]:
    """The runs of ``studies`` grouped into chains that must run in turn: a run joins the chain of the run it needs
    (:func:`prerequisite`, which must come earlier in ``studies``). Different chains may run at the same time."""
    groups: list[list[RunRef]] = []
    chain_of: dict[RunRef, list[RunRef]] = {}
    for study in studies:
        for index in range(len(study.runs)):
            needed = prerequisite(study, index)
            if needed is None:
                group: list[RunRef] = []
                groups.append(group)
            else:
                group = chain_of[needed]
            group.append((study.name, index))
            chain_of[(study.name, index)] = group
    return [tuple(group) for group in groups]


def longest_first(studies: Sequence[Study]) -> list[tuple[RunRef, ...]]:
    """Every chain of ``studies``, the largest step budget first (study order among equals), so that no long run
    starts late and leaves the other processes idle at the end (in study order, one process ran the last 2.4
    minutes alone; longest first, the two ended 50 seconds and 1.5 minutes apart in two runs)."""
    return sorted(chains(studies), key=lambda chain: -chain_steps(chain))


def trained_by(study: Study, index: int) -> tuple[Study, Run]:
    """The run whose training made the model that run ``index`` of ``study`` scores: itself, or for a model_of run
    the other study's first run."""
    run = study.runs[index]
    return (study, run) if run.model_of is None else run_at((run.model_of, 0))


def step_budget(study: Study, run: Run) -> int:
    """The optimizer steps ``run`` of ``study`` trains for, before --scale."""
    return run.steps or study.steps


def chain_steps(chain: Sequence[RunRef]) -> int:
    """The optimizer steps that the runs of ``chain`` train, before --scale (a model_of run trains none)."""
    return sum(step_budget(study, run) for study, run in map(run_at, chain) if run.model_of is None)


def training_precision(run: Run, precision: str) -> str:
    """The Lightning precision ``run`` trains in: ``precision``, or for "auto" bfloat16 autocast ("bf16-mixed")
    where the CPU multiplies bfloat16 in hardware and it pays for the run's model, else "32-true"."""
    if precision != "auto":
        return precision
    return "bf16-mixed" if run.bf16_pays and cpu_computes_bf16() else "32-true"


def run_chain(
    chain: Sequence[RunRef],
    *,
    out: Path,
    extras: dict[str, list[str]],
    scale: float,
    test_sequences: int,
    precision: str,
) -> dict[RunRef, Methods]:
    """Fits (or, for a model_of run, copies) and evaluates the runs of ``chain`` under ``out``, in turn; the first
    run of a study also scores the recipe's baselines. Returns the methods each run scored."""
    settings = [
        "trainer.max_epochs=null",
        "trainer.enable_progress_bar=false",
        f"data.val_sequences={max(1, test_sequences // 4)}",  # validation only picks the best checkpoint
        f"data.test_sequences={test_sequences}",
    ]
    results: dict[RunRef, Methods] = {}
    for name, index in chain:
        study, run = run_at((name, index))
        previous = out / study.name / f"run_{index - 1}" / "model"  # a run may start from the one before it
        overrides = [o.replace("{previous}", str(previous)) for o in run.overrides]
        # A model_of run's recipe records how the model it scores was trained.
        source_study, source = trained_by(study, index)
        trained_in = training_precision(source, precision)
        steps = max(1, round(step_budget(source_study, source) * scale))
        budget = [*settings, f"trainer.precision={trained_in}", f"trainer.max_steps={steps}"]
        recipe = load_recipe(study.recipe, [*study.common, *extras[name], *budget, *overrides])
        run_dir = out / study.name / f"run_{index}"
        started = time.perf_counter()
        if run.model_of is None:
            experiment.fit(recipe, run_dir, resume=False)
        else:
            RunDir(run_dir).create(recipe, resume=False)
            shutil.copytree(out / run.model_of / "run_0" / "model", run_dir / "model")
        experiment.evaluate(run_dir, baselines=recipe.evaluate.baselines if index == 0 else [])
        scores = json.loads((run_dir / "metrics.json").read_text())["methods"]
        methods: Methods = {}
        for method, values in scores.items():
            # Baselines of a later run answer its own question (copy-last-frame over 5 frames, say): say which.
            label = run.label if method == recipe.model.name else method if index == 0 else f"{method} (as {run.label})"
            ours = label == run.label
            minutes = (time.perf_counter() - started) / 60 if ours else None
            methods[label] = {**values, "minutes": minutes, "precision": trained_in if ours else None}
        results[(name, index)] = methods
    return results


def run_studies(
    studies: Sequence[Study], out: Path, *, jobs: int, scale: float, test_sequences: int, precision: str
) -> Iterator[tuple[Study, Methods]]:
    """Runs every chain of ``studies`` on ``jobs`` processes; yields (study, methods) as each study finishes, its
    methods in run order. Every study's data files are written first, in this process."""
    extras = {study.name: list(study.prepare(out)) if study.prepare is not None else [] for study in studies}
    done: dict[str, dict[int, Methods]] = {study.name: {} for study in studies}

    def finished(results: dict[RunRef, Methods]) -> Iterator[tuple[Study, Methods]]:
        for (name, index), methods in results.items():
            done[name][index] = methods
        touched = {name for name, _ in results}
        for study in studies:
            runs = done[study.name]
            if study.name in touched and len(runs) == len(study.runs):
                yield study, {label: scores for i in sorted(runs) for label, scores in runs[i].items()}

    run = functools.partial(
        run_chain, out=out, extras=extras, scale=scale, test_sequences=test_sequences, precision=precision
    )
    work = longest_first(studies)
    if jobs == 1:
        for chain in work:
            yield from finished(run(chain))
        return
    # Each job gets its share of the cores as torch threads: on 2 cores, two single-threaded runs at a time each
    # took about as long as one run alone on two threads (README, Results), so the studies finish in half the time.
    threads = max(1, usable_cores() // jobs)
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked torch thread pools
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker, initargs=(threads,)) as pool:
        futures = [pool.submit(run, chain) for chain in work]
        try:
            for future in as_completed(futures):
                yield from finished(future.result())
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise


def usable_cores() -> int:
    """Cores this process may run on (its affinity where the system has one, as on Linux; else all of them)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _start_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def write_figure(study: Study, methods: Methods, out: Path) -> Path | None:
    """The study's scores against lead time, one line per method (Shi et al.'s CSI figure for nowcasting)."""
    if not study.figure:
        return None
    from convlstm.report import plot_scores_by_lead_time

    path = out / f"{study.name}_by_lead_time.png"
    return plot_scores_by_lead_time(methods, path, metrics=study.figure, title=f"{study.name}: test scores", dpi=80)


def markdown_table(study: Study, methods: Methods) -> str:
    titles = [c.title for c in study.columns]
    lines = ["| method | " + " | ".join(titles) + " | minutes |", "|---" * (len(titles) + 2) + "|"]
    for label, scores in methods.items():
        cells = [format_cell(c.value(scores), c.digits) for c in study.columns]
        minutes = scores.get("minutes")
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {format_cell(minutes, 1)} |")
    for label, row in study.published.items():
        cells = [format_cell(row.get(c.title), c.digits) for c in study.columns]
        lines.append(f"| *{label}* | " + " | ".join(cells) + " | |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    names = [s.name for s in STUDIES]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs") / f"quality-{time.strftime('%Y%m%d-%H%M%S')}")
    parser.add_argument("--only", nargs="+", choices=names, default=names, help="studies to run")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every step budget")
    parser.add_argument("--test-sequences", type=int, default=TEST_SEQUENCES, help="test sequences per study")
    parser.add_argument("--jobs", type=int, default=min(2, usable_cores()), help="runs trained at the same time")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="training precision; auto: bf16-mixed where the CPU has AMX or avx512_bf16, for the models where it "
        "pays, else 32-true",
    )
    parser.add_argument("--json", type=Path, default=None, help="results file (default: <out>/quality.json)")
    args = parser.parse_args(argv)
    if not args.scale > 0:
        parser.error(f"--scale must be positive, got {args.scale}")
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    if args.test_sequences < 1:
        parser.error(f"--test-sequences must be >= 1, got {args.test_sequences}")
    refuse_used_out(parser, args.out)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "scale": args.scale,
        "test_sequences": args.test_sequences,
        "jobs": args.jobs,
        "precision": args.precision,
        "studies": {},
    }
    scored: dict[str, Methods] = {}
    selected = with_prerequisites(args.only)
    for study, methods in run_studies(
        selected,
        args.out,
        jobs=args.jobs,
        scale=args.scale,
        test_sequences=args.test_sequences,
        precision=args.precision,
    ):
        scored[study.name] = methods
        results["studies"] = {s.name: scored[s.name] for s in selected if s.name in scored}  # in study order
        write_json_atomic(args.json or args.out / "quality.json", results)
        run_minutes = sum(scores["minutes"] or 0.0 for scores in methods.values())
        print(f"\n### {study.name} ({run_minutes:.1f} min of training and scoring)\n")
        print(markdown_table(study, methods), flush=True)
        figure = write_figure(study, methods, args.out)
        if figure is not None:
            print(f"\n{figure}")
    results["minutes"] = (time.perf_counter() - started) / 60
    write_json_atomic(args.json or args.out / "quality.json", results)
    print(f"\nall studies: {results['minutes']:.1f} min; runs and reports under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
