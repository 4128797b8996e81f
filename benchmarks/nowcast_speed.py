"""Operational speed, side by side: the learned nowcasts against pysteps', wall time and peak memory per forecast.

One run times, on the same CPU and the same radar-like field (a synthetic rain field of ``convlstm.data``'s
SyntheticRadar, 4 context frames in mm/h, seeded):

- ``ours_ens``: the learned ensemble (``extrapolation_nowcast_ensemble``, ``model.ensemble``), ``--members``
  members, against ``steps``: pysteps' STEPS with as many members, configured as benchmarks/radar_nowcast.py runs it
  (dB transform, Lucas-Kanade motion, 6 cascade levels, non-parametric noise, motion perturbations for 1 km pixels
  and 5-minute steps, probability matching), pysteps' num_workers set to ``--threads``;
- ``ours``: the deterministic learned nowcast (``extrapolation_nowcast``), against ``extrapolation``: pysteps'
  Lucas-Kanade motion and semi-Lagrangian extrapolation of the last frame.

The learned methods run under bfloat16 autocast where the CPU multiplies bfloat16 in hardware (``--precision
auto``, as training does and as benchmarks/radar_nowcast.py scores them), else in float32.

Each forecast goes from rain rates to ``--leads`` lead times of rain rates, motion estimation included. Each method
runs in a fresh Python process (so that one's memory does not hide in another's peak), with ``--threads`` threads
for torch, OpenMP, BLAS and OpenCV alike: the first call (one-off costs show there) and ``--repeats`` more, whose
median is the time reported. Peak memory is the process's peak resident set (``getrusage`` maxrss), and what the
forecast added to what the process held before its first call (imports, model, input). The learned models are
untrained unless ``--model`` / ``--ensemble-model`` name saved ones: their time does not depend on the weights (the
same convolutions run on whatever values they hold).

Printed: per domain size, each method's first and median wall time, its share of a ``--cycle-minutes`` radar
cycle (a nowcast that arrives after the next radar image is of no use), its peak memory and what the forecast added,
and the ratios ours_ens / steps and ours / extrapolation. Written with ``--json``: all of it, the machine and the
command, atomically.

Usage:
    PYTHONPATH=src python benchmarks/nowcast_speed.py [--sizes 256 512 1024] [--members 20] [--leads 12]
        [--threads N] [--repeats 1] [--precision auto] [--memory-limit-gib G] [--json results/nowcast_speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from _timing import format_cell, format_columns, write_json_atomic
from radar_nowcast import PRECISIONS

METHODS = ("ours_ens", "steps", "ours", "extrapolation")
#: method -> (what it is, the method it is compared with, or None)
DESCRIPTIONS = {
    "ours_ens": ("learned ensemble (extrapolation_nowcast_ensemble)", "steps"),
    "steps": ("pysteps STEPS", None),
    "ours": ("learned deterministic (extrapolation_nowcast)", "extrapolation"),
    "extrapolation": ("pysteps extrapolation (Lucas-Kanade + semi-Lagrangian)", None),
}
CONTEXT = 4  # context frames, as benchmarks/radar_nowcast.py reads them
KM_PER_PIXEL, MINUTES = 1.0, 5.0  # the grid STEPS' perturbations are set for: a 1 km, 5-minute composite
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


# ------------------------------------------------------------------------------------------------- the input field
def radar_field(size: int, seed: int) -> np.ndarray:
    """(CONTEXT, size, size) float64 rain rates in mm/h: one sequence of the synthetic radar (rain bands with cells,
    advected by a turning wind, 10 to 30 % of the pixels wet, 0 outside the radar's range)."""
    from convlstm.data import SyntheticRadar

    data = SyntheticRadar(
        "test", seed=seed, context_frames=CONTEXT, target_frames=0, image_size=size, units="mm/h", num_sequences=1
    )
    return data[0]["context"][:, 0].double().numpy()


# ------------------------------------------------------------------------------------------- one method, one process
def peak_rss_mib() -> float:
    """This process's peak resident set so far, MiB (getrusage's maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def current_rss_mib() -> float:
    """This process's resident set now, MiB (/proc/self/statm; the peak so far where that cannot be read)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return peak_rss_mib()
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def build_forecaster(args: argparse.Namespace) -> Callable[[np.ndarray], np.ndarray]:
    """The method's forecast: rain rates (CONTEXT, H, W) -> (leads, H, W) or (members, leads, H, W)."""
    import torch

    import radar_nowcast as rn
    from convlstm.models import create_model, from_pretrained

    torch.manual_seed(args.seed)
    if args.worker == "steps":
        return lambda context: rn.steps_ensemble(
            context,
            members=args.members,
            km_per_pixel=KM_PER_PIXEL,
            minutes=MINUTES,
            seed=args.seed,
            levels=args.cascade_levels,
            horizon=args.leads,
            workers=args.threads,
        )
    if args.worker == "extrapolation":
        return lambda context: rn.extrapolation(context, horizon=args.leads)
    bf16 = rn.uses_bf16(args.precision)
    if args.worker == "ours":
        model = from_pretrained(args.model) if args.model else create_model("extrapolation_nowcast")
        return rn.learned(model.eval(), horizon=args.leads, bf16=bf16)
    saved = args.ensemble_model
    model = from_pretrained(saved) if saved else create_model("extrapolation_nowcast_ensemble").eval()
    # One call for all members: the model runs its U-Net once and its members one at a time.
    return rn.learned_ensemble(model.eval(), args.members, args.seed, horizon=args.leads, bf16=bf16)


def run_worker(args: argparse.Namespace) -> None:
    """Times one method on the field in ``args.input`` and writes what it measured to ``args.result``."""
    import cv2
    import torch

    import radar_nowcast as rn

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    rn._pysteps()  # imported before the clock starts, as a running service has it
    context = np.load(args.input)
    forecast = build_forecaster(args)
    if args.memory_limit_gib is not None:  # from here on an allocation past the limit fails in this process alone
        limit = int(args.memory_limit_gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    before = current_rss_mib()
    seconds = []
    for _ in range(1 + args.repeats):
        start = time.perf_counter()
        out = forecast(context)
        seconds.append(time.perf_counter() - start)
    peak = peak_rss_mib()
    result = {
        "first_s": seconds[0],
        "times_s": seconds[1:],
        "median_s": statistics.median(seconds[1:]) if args.repeats else seconds[0],
        "peak_rss_mib": peak,
        "before_mib": before,
        "forecast_mib": max(peak - before, 0.0),
        "shape": list(out.shape),
        "finite_fraction": float(np.isfinite(out).mean()),
        "torch_threads": torch.get_num_threads(),
    }
    write_json_atomic(args.result, result)


# ------------------------------------------------------------------------------------------------------ the study
def parse_args(argv: list[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512], help="square domain sides, pixels")
    parser.add_argument("--members", type=int, default=20, help="ensemble members (STEPS and ours)")
    parser.add_argument("--leads", type=int, default=12, help="lead times of every forecast")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads every method computes on")
    parser.add_argument("--repeats", type=int, default=1, help="timed calls after the first (0: the first only)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS, help="methods to time")
    parser.add_argument("--cascade-levels", type=int, default=6, help="STEPS' cascade levels")
    parser.add_argument("--model", help="a saved extrapolation_nowcast (save_pretrained directory); default untrained")
    parser.add_argument("--ensemble-model", help="a saved extrapolation_nowcast_ensemble; default untrained")
    parser.add_argument("--cycle-minutes", type=float, default=5.0, help="the radar's update cycle, minutes")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds one method may take in all")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="the learned methods' arithmetic (auto: bfloat16 autocast where the CPU computes it in hardware)",
    )
    parser.add_argument(
        "--memory-limit-gib",
        type=float,
        help="address space each method's process may take (RLIMIT_AS; default: 90 %% of the memory available "
        "when the run starts): past it the method fails with an error instead of waking the kernel's "
        "out-of-memory killer, which may pick another process",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write every measurement here (atomically)")
    # A method's own process: what the parent runs, not for people.
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.sizes) < 16 or args.members < 2 or args.leads < 1 or args.threads < 1 or args.repeats < 0:
        parser.error("--sizes must be >= 16, --members >= 2, --leads >= 1, --threads >= 1 and --repeats >= 0")
    if args.cascade_levels < 1 or args.cycle_minutes <= 0 or args.timeout <= 0:
        parser.error("--cascade-levels must be >= 1, --cycle-minutes and --timeout > 0")
    if args.memory_limit_gib is not None and args.memory_limit_gib <= 0:
        parser.error("--memory-limit-gib must be > 0")
    return parser, args


def run_method(args: argparse.Namespace, method: str, field: Path, folder: Path) -> dict[str, Any]:
    """Runs ``method`` in a fresh process on ``field``; its measurements, or {"error": ...} when it failed."""
    result = folder / f"{method}.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", method, "--input", str(field)]
    command += ["--result", str(result), "--members", str(args.members), "--leads", str(args.leads)]
    command += ["--threads", str(args.threads), "--repeats", str(args.repeats), "--seed", str(args.seed)]
    command += ["--cascade-levels", str(args.cascade_levels), "--precision", args.precision]
    if args.memory_limit_gib is not None:
        command += ["--memory-limit-gib", str(args.memory_limit_gib)]
    for option, value in (("--model", args.model), ("--ensemble-model", args.ensemble_model)):
        if value:
            command += [option, str(value)]
    env = {**os.environ, **{name: str(args.threads) for name in THREAD_VARIABLES}}
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=args.timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"took longer than --timeout {args.timeout:g} s"}
    if done.returncode != 0 or not result.is_file():
        signal = -done.returncode if done.returncode < 0 else None
        why = f"killed by signal {signal}" + (" (out of memory?)" if signal == 9 else "") if signal else ""
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return {"error": why or f"exit code {done.returncode}: {last}"}
    return dict(json.loads(result.read_text()))


def ratios(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """ours / theirs of the median time and of the memory the forecast added, for each pair that both ran."""
    out: dict[str, dict[str, float | None]] = {}
    for ours, (_, theirs) in DESCRIPTIONS.items():
        if theirs is None or ours not in results or theirs not in results:
            continue
        a, b = results[ours], results[theirs]
        if "error" in a or "error" in b:
            continue
        memory = a["forecast_mib"] / b["forecast_mib"] if b["forecast_mib"] > 0 else None
        out[f"{ours}/{theirs}"] = {"time": a["median_s"] / b["median_s"], "memory": memory}
    return out


def print_size(size: int, args: argparse.Namespace, results: dict[str, dict[str, Any]]) -> None:
    print(
        f"\n{size} x {size} pixels, {args.members} members, {args.leads} lead times, {args.threads} threads; "
        f"seconds per forecast (median of {args.repeats} after the first), memory in MiB"
    )
    header = ["method", "first s", "median s", f"of {args.cycle_minutes:g} min", "peak MiB", "forecast MiB"]
    lines = []
    for method in [m for m in METHODS if m in results]:
        r = results[method]
        name = f"{method}: {DESCRIPTIONS[method][0]}"
        if "error" in r:
            lines.append([name, f"failed: {r['error']}"])
            continue
        share = r["median_s"] / (60 * args.cycle_minutes)
        lines.append(
            [
                name,
                format_cell(r["first_s"], 2),
                format_cell(r["median_s"], 2),
                f"{100 * share:.1f} %",
                format_cell(r["peak_rss_mib"], 0),
                format_cell(r["forecast_mib"], 0),
            ]
        )
    print(format_columns(header, lines))
    for pair, value in ratios(results).items():
        memory = "-" if value["memory"] is None else f"{value['memory']:.2f}x"
        print(f"{pair}: time {value['time']:.2f}x, memory the forecast added {memory}")


def available_gib() -> float | None:
    """Memory available to new processes now (MemAvailable of /proc/meminfo), GiB; None where it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        pass
    return None


def machine(threads: int) -> dict[str, Any]:
    import importlib.metadata

    import torch

    from convlstm.utils.machine import cpu_model

    return {
        "cpu": cpu_model() or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "threads": threads,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pysteps": importlib.metadata.version("pysteps"),
        "numpy": np.__version__,
    }


def run(argv: list[str] | None = None) -> dict[str, Any]:
    parser, args = parse_args(argv)
    if args.worker is not None:
        if args.input is None or args.result is None:
            parser.error("--worker needs --input and --result")
        run_worker(args)
        return {}
    found = machine(args.threads)
    if args.memory_limit_gib is None:
        available = available_gib()
        args.memory_limit_gib = round(0.9 * available, 1) if available else None
    print(f"{found['cpu']}, {found['cores']} cores; torch {found['torch']}, pysteps {found['pysteps']}")
    if args.memory_limit_gib is not None:
        print(f"each method may take {args.memory_limit_gib:g} GiB of address space (--memory-limit-gib)")
    record: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "command": " ".join(["python", "benchmarks/nowcast_speed.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": found,
        "settings": {
            **{key: getattr(args, key) for key in ("members", "leads", "threads", "repeats", "cascade_levels")},
            "precision": args.precision,
            "memory_limit_gib": args.memory_limit_gib,
            "seed": args.seed,
            "cycle_minutes": args.cycle_minutes,
            "context_frames": CONTEXT,
            "km_per_pixel": KM_PER_PIXEL,
            "minutes": MINUTES,
            "model": args.model,  # None: untrained
            "ensemble_model": args.ensemble_model,
        },
        "sizes": {},
    }
    with tempfile.TemporaryDirectory(prefix="nowcast_speed.") as tmp:
        folder = Path(tmp)
        for size in args.sizes:
            field = folder / f"field_{size}.npy"
            np.save(field, radar_field(size, args.seed))
            results = {method: run_method(args, method, field, folder) for method in args.methods}
            record["sizes"][str(size)] = {"methods": results, "ratios": ratios(results)}
            print_size(size, args, results)
            if args.json is not None:  # after every size, so that a long run keeps what it measured
                write_json_atomic(args.json, record)
    return record


def failures(record: dict[str, Any]) -> list[str]:
    """ "method at size" of every method that failed."""
    return [
        f"{method} at {size}"
        for size, block in record.get("sizes", {}).items()
        for method, result in block["methods"].items()
        if "error" in result
    ]


def main(argv: list[str] | None = None) -> int:
    failed = failures(run(argv))
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
