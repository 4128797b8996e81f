"""OpenSTL's Moving MNIST table on a CPU budget: every model trained for the same minutes, then scored on one test set.

Usage:
    python benchmarks/openstl_cpu_budget.py --out DIR [--minutes 3] [--width 0.125] [--models NAME ...] [--json FILE]
    python benchmarks/openstl_cpu_budget.py --counts [--width 1]    # parameters and FLOPs only, nothing trained

The models are those of OpenSTL's Moving MNIST table (Tan et al. 2023): ConvLSTM-S, PredRNN, PredRNN++, MIM,
E3D-LSTM, PredRNN-V2, SimVP with gSTA and TAU. Each trains from its packaged OpenSTL-protocol recipe (OpenSTL's
architecture, batch size, learning rate and loss terms) through ``convlstm fit`` and is scored by
``convlstm evaluate`` on the same generated test sequences (10 -> 10 frames, 64x64), as a user would run them, with
one budget protocol for all, because OpenSTL's schedule assumes a known, long run:

- ``--minutes`` of training each (the Trainer's ``max_time``; no validation inside it: the only validation, which
  picks the checkpoint, runs when the time is up);
- the recipe's learning rate, constant after a ``--warmup``-step linear warm-up (OneCycle needs the run's length);
- predictions fed back from the first forecast frame (no scheduled sampling: OpenSTL's anneals over 50,000 steps,
  far beyond a CPU budget), as the ``moving_mnist_openstl`` recipe trains;
- widths scaled by ``--width`` (default 0.125, an eighth of OpenSTL's: hidden 16 for the recurrent models, hid_S 8
  and hid_T 64 for SimVP and TAU), layers, kernels and patches as OpenSTL's: at full width one training step of
  E3D-LSTM takes minutes on a 2-core CPU.

Printed: one row per model with its parameters and FLOPs at that width (as fvcore counts them for one 10 -> 10
sequence, one multiply-add = one FLOP: ``flops`` / ``conv_flops`` of each model; ConvLSTM-S's count leaves out the
convolutions of the zero state at the first step, which this library skips and OpenSTL's model runs), its training
throughput (sequences per second over the training minutes), the steps reached, and the test MSE per frame and SSIM
of the model and of copying the last frame (persistence). ``--json`` writes the same. Every run directory stays in
``--out``. ``--counts`` prints the parameters and FLOPs of the models at ``--width`` and trains nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from _timing import device_name, format_cell, format_columns, refuse_used_out, write_json_atomic
from convlstm.experiment import load_recipe
from convlstm.models import E3DLSTM, SimVP, create_model

CONTEXT = TARGET = 10
SIZE = 64
#: Validation sequences: the one validation at the end of the budget only picks the checkpoint to score.
VAL_SEQUENCES = 16
#: Training sequences per epoch (drawn on the fly): so many that no epoch, and no epoch-end validation, ends inside a
#: CPU budget.
TRAIN_SEQUENCES = 1_000_000
#: Task arguments that schedule training; the budget protocol sets its own.
SCHEDULE_KEYS = {
    "lr_schedule",
    "warmup_steps",
    "sampling",
    "sampling_start",
    "sampling_end",
    "sampling_end_step",
    "reverse_start_step",
    "reverse_end_step",
    "reverse_decay",
}


@dataclass(frozen=True)
class ModelSpec:
    """A row of OpenSTL's table: its label, the packaged recipe that trains it and its full widths (scaled by
    ``--width``; a tuple is one width per layer)."""

    label: str
    recipe: str
    widths: dict[str, int | tuple[int, ...]]


MODELS: dict[str, ModelSpec] = {
    "convlstm_s": ModelSpec("ConvLSTM-S", "moving_mnist_openstl", {"hidden_channels": (128, 128, 128, 128)}),
    "predrnn": ModelSpec("PredRNN", "moving_mnist_openstl_predrnn", {"hidden_channels": 128}),
    "predrnnpp": ModelSpec("PredRNN++", "moving_mnist_openstl_predrnnpp", {"hidden_channels": 128}),
    "mim": ModelSpec("MIM", "moving_mnist_openstl_mim", {"hidden_channels": 128}),
    "e3dlstm": ModelSpec("E3D-LSTM", "moving_mnist_openstl_e3dlstm", {"hidden_channels": 128}),
    "predrnnv2": ModelSpec("PredRNN-V2", "moving_mnist_openstl_predrnnv2", {"hidden_channels": 128}),
    "simvp_gsta": ModelSpec(
        "SimVP+gSTA", "moving_mnist_openstl_simvp", {"spatial_channels": 64, "temporal_channels": 512}
    ),
    "tau": ModelSpec("TAU", "moving_mnist_openstl_tau", {"spatial_channels": 64, "temporal_channels": 512}),
}


def scaled(width: int, scale: float) -> int:
    """``width`` times ``scale``, to a multiple of 4 (at least 4: SimVP's norms split channels into 2 groups)."""
    return max(4, 4 * round(width * scale / 4))


def model_args(spec: ModelSpec, scale: float) -> dict[str, Any]:
    """The builder overrides of a model at ``scale`` of OpenSTL's widths."""
    args: dict[str, Any] = {}
    for name, width in spec.widths.items():
        args[name] = [scaled(w, scale) for w in width] if isinstance(width, tuple) else scaled(width, scale)
    return args


def budget_recipe(spec: ModelSpec, args: argparse.Namespace) -> dict[str, Any]:
    """The model's packaged recipe with the budget protocol applied (see the module docstring), as a YAML dict."""
    raw = load_recipe(spec.recipe).to_dict()
    raw["name"] = f"{spec.recipe}_cpu_budget"
    data = raw["data"]
    data.update(
        num_workers=0,
        train_sequences=TRAIN_SEQUENCES,
        val_sequences=VAL_SEQUENCES,
        test_sequences=args.test_sequences,
        context_frames=CONTEXT,
        target_frames=TARGET,
    )
    if args.batch_size is not None:
        data["batch_size"] = args.batch_size
    raw["model"]["args"] = {**raw["model"]["args"], **model_args(spec, args.width)}
    task_args = {k: v for k, v in raw["task"]["args"].items() if k not in SCHEDULE_KEYS}
    raw["task"]["args"] = {**task_args, "lr_schedule": "constant", "warmup_steps": args.warmup, "sampling": "none"}
    raw["trainer"].update(
        max_minutes=args.minutes,
        max_epochs=None,
        max_steps=-1,
        val_check_interval=None,
        early_stopping_patience=None,
        checkpoint_every_minutes=None,
        accelerator="cpu",
        enable_progress_bar=False,
        log_every_n_steps=1,
    )
    raw["evaluate"].update(baselines=["persistence"], animations=0, num_sequences=None)
    return raw


def build(spec: ModelSpec, scale: float) -> torch.nn.Module:
    """The recipe's model at ``scale`` of OpenSTL's widths, on the meta device (shapes only: the counts need no
    weights)."""
    with torch.device("meta"):
        return create_model(load_recipe(spec.recipe).model.name, **model_args(spec, scale))


def counts_table(keys: list[str], scale: float) -> str:
    lines = []
    for key in keys:
        spec = MODELS[key]
        model = build(spec, scale)
        name = load_recipe(spec.recipe).model.name
        parameters = sum(p.numel() for p in model.parameters())
        lines.append([spec.label, name, f"{parameters:,}", f"{fvcore_flops(model) / 1e9:.2f}G"])
    return format_columns(["model", "registered name", "parameters", "FLOPs"], lines)


def fvcore_flops(model: torch.nn.Module) -> int:
    """FLOPs of one 10 -> 10 sequence of 64x64 frames as fvcore counts them (one multiply-add = one FLOP)."""
    steps = CONTEXT + TARGET - 1
    if isinstance(model, SimVP):  # one pass: 10 frames in, 10 out
        return model.flops(SIZE, SIZE)
    if isinstance(model, E3DLSTM):  # its recall's products and norms beside the convolutions
        return model.flops(SIZE, SIZE, steps)
    conv_flops = getattr(model, "conv_flops", None)
    if conv_flops is None:
        raise ValueError(f"{type(model).__name__} has no FLOP count")
    return int(conv_flops(SIZE, SIZE, steps))


def convlstm(*arguments: str) -> None:
    """Runs the `convlstm` command line with this interpreter, failing loudly."""
    done = subprocess.run([sys.executable, "-m", "convlstm", *arguments], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"convlstm {' '.join(arguments)} failed:\n{done.stderr[-3000:]}")


def run_model(key: str, args: argparse.Namespace) -> dict[str, Any]:
    """Trains and scores one model; returns its row of the table."""
    spec = MODELS[key]
    raw = budget_recipe(spec, args)
    folder = args.out / key
    folder.mkdir(parents=True)
    recipe_path = folder / "recipe.yaml"
    recipe_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    run_dir = folder / "run"
    convlstm("fit", "--config", str(recipe_path), "--run-dir", str(run_dir))
    convlstm("evaluate", "--run-dir", str(run_dir))
    training = json.loads((run_dir / "training.json").read_text())
    methods = json.loads((run_dir / "metrics.json").read_text())["methods"]
    name = raw["model"]["name"]
    model = build(spec, args.width)
    minutes = training["train_minutes"]
    batch = raw["data"]["batch_size"]
    return {
        "model": spec.label,
        "key": key,
        "run_dir": str(run_dir),
        "registered": name,
        "recipe": spec.recipe,
        "model_args": raw["model"]["args"],
        "parameters": sum(p.numel() for p in model.parameters()),
        "flops": fvcore_flops(model),
        "batch_size": batch,
        "steps": training["steps"],
        "train_minutes": minutes,
        "sequences_per_second": training["steps"] * batch / (minutes * 60) if minutes else None,
        "precision": training["precision"],
        "mse_per_frame": methods[name]["mse_per_frame"],
        "ssim": methods[name]["ssim"],
        "persistence_mse_per_frame": methods["persistence"]["mse_per_frame"],
        "persistence_ssim": methods["persistence"]["ssim"],
    }


HEADER = [
    "model",
    "params",
    "FLOPs",
    "seq/s",
    "steps",
    "MSE/frame",
    "SSIM",
    "copy-last MSE/frame",
    "copy-last SSIM",
]


def table(rows: list[dict[str, Any]]) -> str:
    lines = []
    for row in rows:
        if "error" in row:
            lines.append([row["model"], f"failed: {row['error'].splitlines()[0]}"])
            continue
        lines.append(
            [
                row["model"],
                f"{row['parameters'] / 1e6:.2f}M",
                f"{row['flops'] / 1e9:.2f}G",
                format_cell(row["sequences_per_second"], 2),
                str(row["steps"]),
                format_cell(row["mse_per_frame"], 1),
                format_cell(row["ssim"], 3),
                format_cell(row["persistence_mse_per_frame"], 1),
                format_cell(row["persistence_ssim"], 3),
            ]
        )
    return format_columns(HEADER, lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="a new or empty directory for the runs (required unless --counts)")
    parser.add_argument("--minutes", type=float, default=3.0, help="training minutes per model (default 3)")
    parser.add_argument(
        "--width", type=float, default=0.125, help="fraction of OpenSTL's widths (default 0.125: hidden 16 of 128)"
    )
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS), help="default: all")
    parser.add_argument("--test-sequences", type=int, default=64, help="generated test sequences (default 64)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the recipes' (OpenSTL's 16)")
    parser.add_argument("--warmup", type=int, default=20, help="steps of linear learning-rate warm-up (default 20)")
    parser.add_argument("--json", type=Path, default=None, help="also write the table here")
    parser.add_argument("--counts", action="store_true", help="print parameters and FLOPs only, train nothing")
    args = parser.parse_args(argv)
    if not 0 < args.minutes < 24 * 60:
        parser.error(f"--minutes must be > 0 and under a day, got {args.minutes}")
    if not 0 < args.width <= 1:
        parser.error(f"--width must be in (0, 1] (a fraction of OpenSTL's widths), got {args.width}")
    if args.test_sequences < 1 or (args.batch_size is not None and args.batch_size < 1) or args.warmup < 0:
        parser.error(
            "--test-sequences and --batch-size must be >= 1 and --warmup >= 0, got "
            f"{args.test_sequences}, {args.batch_size} and {args.warmup}"
        )
    if args.counts:
        return args
    if args.out is None:
        parser.error("--out is required (a new or empty directory for the runs), unless --counts")
    refuse_used_out(parser, args.out)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.counts:
        print(
            f"One 10 -> 10 sequence of 64x64 frames, widths x {args.width} of OpenSTL's; FLOPs as fvcore counts them\n"
        )
        print(counts_table(args.models, args.width))
        return 0
    command = "python benchmarks/openstl_cpu_budget.py " + " ".join(sys.argv[1:] if argv is None else argv)
    started = time.strftime("%Y-%m-%d")
    rows = []
    for key in args.models:
        print(f"{MODELS[key].label}: {args.minutes} minutes of training ...", flush=True)
        try:
            rows.append(run_model(key, args))
        except RuntimeError as error:
            rows.append({"model": MODELS[key].label, "error": str(error)})
    results = {
        "date": started,
        "device": device_name(torch.device("cpu")),
        "command": command,
        "minutes": args.minutes,
        "width": args.width,
        "test_sequences": args.test_sequences,
        "warmup_steps": args.warmup,
        "rows": rows,
    }
    if args.json is not None:
        write_json_atomic(args.json, results)
    precisions = sorted({row["precision"] for row in rows if "precision" in row})
    print(
        f"\nOpenSTL's Moving MNIST models, {args.minutes} training minutes each on {results['device']}, widths x "
        f"{args.width} of OpenSTL's, {args.test_sequences} test sequences (10 -> 10, 64x64), precision "
        f"{', '.join(precisions) or '-'}; FLOPs of one sequence as fvcore counts them\n"
    )
    print(table(rows))
    if args.json is not None:
        print(f"\n{args.json}")
    return 1 if any("error" in row for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
