"""Forecasts of reanalysis fields on the test period: a trained model against persistence, the hourly climatology
and "same hour yesterday", by WeatherBench's latitude-weighted RMSE, MAE and anomaly correlation per lead time.

Usage:
    PYTHONPATH=src python benchmarks/reanalysis.py --root /path/to/era5-2mt-2019-03-uk.grib --model RUN/model \\
        --out results/weather [--recipe era5_uk_t2m] [--map docs/images/weather_forecast.png]
    PYTHONPATH=src python benchmarks/reanalysis.py --root ... --minutes 10 --out results/weather   # trains first

The recipe (default the packaged ``era5_uk_t2m``) says the archive's variables, split, window and model; ``--root``
replaces its ``data.args.root``. Every window of the test split (``--split``) is a start time (every ``--every``-th
with that option); a window whose valid times have no field 24 hours earlier in the archive is left out (said so).
Methods, each forecasting the window's ``target_frames`` steps:

- ``ours``: the model (``--model``, a save_pretrained directory; or trained here for ``--minutes`` into
  ``--out``/run), its forecast turned back into data units;
- ``persistence``: the last context frame, held;
- ``climatology``: the training split's mean field at the valid time's hour of day;
- ``yesterday``: the archive's field 24 hours before the valid time.

Scores (``convlstm.metrics.WeatherScores``), per variable and lead time, over every start time: RMSE and MAE
weighted by cos(latitude), the bias, and the ACC against the training split's hourly climatology (the climatology's
own ACC is 0 / 0, printed "-"); also RMSE and MAE weighing every cell alike, as OpenSTL reports them.

Printed: per variable, RMSE, MAE and ACC side by side at every lead time, and at how many lead times ours beats
every baseline. Written (atomically): ``--out``/results.json with every score by lead time; with ``--map``, a PNG
of one start time's forecast (``--map-start``: its index among the scored start times) at three lead times.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from _timing import format_cell, format_columns, refuse_used_out, write_json_atomic
from convlstm.data import ReanalysisSequences
from convlstm.experiment.building import build_dataset
from convlstm.experiment.recipe import Recipe, load_recipe
from convlstm.metrics import HourlyClimatology, WeatherScores, observed_earlier
from convlstm.models import from_pretrained

logger = logging.getLogger("reanalysis")

BASELINES = ("persistence", "climatology", "yesterday")
METHODS = ("ours", *BASELINES)
DAY = np.timedelta64(24, "h")


def parse_args(argv: list[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="era5_uk_t2m", help="a packaged recipe or a YAML file")
    parser.add_argument("--root", help="the archive (replaces the recipe's data.args.root)")
    parser.add_argument("--model", help="the trained model (save_pretrained directory, e.g. RUN/model)")
    parser.add_argument("--minutes", type=float, help="train the recipe for this long into OUT/run instead")
    parser.add_argument("--out", required=True, type=Path, help="an empty or new folder for results.json")
    parser.add_argument("--split", default="test", help="the split to score (train / val shows the other regimes)")
    parser.add_argument("--every", type=int, default=1, help="score every n-th window")
    parser.add_argument("--batch-size", type=int, default=16, help="windows per forward pass of the model")
    parser.add_argument("--map", type=Path, help="write a PNG map of one start time's forecast here")
    parser.add_argument("--map-start", type=int, default=0, help="the start time of the map, counted as scored")
    args = parser.parse_args(argv)
    if (args.model is None) == (args.minutes is None):
        parser.error("give either --model (a trained model) or --minutes (train here first)")
    if args.minutes is not None and args.minutes <= 0:
        parser.error(f"--minutes must be > 0, got {args.minutes}")
    if args.every < 1 or args.batch_size < 1:
        parser.error("--every and --batch-size must be >= 1")
    return parser, args


def recipe_of(args: argparse.Namespace) -> Recipe:
    overrides = [] if args.root is None else [f"data.args.root={args.root}"]
    recipe = load_recipe(args.recipe, overrides)
    if recipe.data.source != "reanalysis":
        raise SystemExit(f"--recipe {args.recipe} reads {recipe.data.source!r}; this benchmark needs a reanalysis one")
    return recipe


def train(recipe: Recipe, run_dir: Path, minutes: float) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Fits the recipe for ``minutes`` (its trainer.max_minutes replaced), as ``convlstm fit`` would."""
    from convlstm.experiment import pipeline
    from convlstm.experiment.recipe import recipe_from_dict

    raw = recipe.to_dict()
    raw["trainer"].update(max_minutes=minutes, max_epochs=None, enable_progress_bar=False)
    pipeline.fit(recipe_from_dict(raw, origin=f"{recipe.name} for {minutes:g} min"), run_dir, resume=False)
    return from_pretrained(run_dir / "model"), json.loads((run_dir / "training.json").read_text())


def forecasts_of(
    model: torch.nn.Module, dataset: ReanalysisSequences, starts: list[int], batch_size: int
) -> tuple[np.ndarray, float]:
    """The model's forecasts of the windows ``starts`` in data units, (N, K, V, H, W), and seconds per forecast."""
    out, began = [], time.perf_counter()
    with torch.no_grad():
        for first in range(0, len(starts), batch_size):
            chosen = starts[first : first + batch_size]
            context = torch.stack([dataset[i]["context"] for i in chosen])
            prediction = model(context, dataset.target_frames)
            out.append(np.asarray(dataset.to_fields(prediction.float())))
    return np.concatenate(out), (time.perf_counter() - began) / max(len(starts), 1)


def run(argv: list[str] | None = None) -> dict[str, Any]:
    parser, args = parse_args(argv)
    refuse_used_out(parser, args.out)
    logging.basicConfig(level=logging.WARNING)
    recipe = recipe_of(args)
    training: dict[str, Any] | None = None
    if args.minutes is not None:
        model, training = train(recipe, args.out / "run", args.minutes)
    else:
        model = from_pretrained(args.model)
        record = Path(args.model).parent / "training.json"
        training = json.loads(record.read_text()) if record.is_file() else None
    model.eval()
    test = build_dataset(recipe, args.split)
    assert isinstance(test, ReanalysisSequences)
    train_split = build_dataset(recipe, "train")
    assert isinstance(train_split, ReanalysisSequences)
    climatology = HourlyClimatology.fit_chunks(train_split.iter_fields())
    everything = build_dataset(recipe, "all")
    assert isinstance(everything, ReanalysisSequences)
    archive_start = everything.times[0] + DAY  # the first valid time with a field a day before
    candidates = list(range(0, len(test), args.every))
    starts = [i for i in candidates if test.window_times(i)[test.context_frames] >= archive_start]
    if not starts:
        raise SystemExit(f"no window of split {args.split!r} has fields 24 hours before its valid times")
    first_valid = test.window_times(starts[0])[test.context_frames]
    archive, archive_times = everything.fields(start=first_valid - DAY)
    horizon, variables = test.target_frames, test.variables
    print(f"{recipe.name}: {len(starts)} start times of split {args.split!r}, {horizon} lead times, {variables}")
    if len(starts) < len(candidates):
        print(f"  ({len(candidates) - len(starts)} windows left out: no field 24 hours before their valid times)")

    ours, seconds = forecasts_of(model, test, starts, args.batch_size)
    weighted = {m: WeatherScores(test.latitudes, variables=variables, lead_times=horizon) for m in METHODS}
    plain = {
        m: WeatherScores(test.latitudes, variables=variables, lead_times=horizon, latitude_weighted=False)
        for m in METHODS
    }
    kept: dict[str, np.ndarray] = {}
    for n, index in enumerate(starts):
        item = test[index]
        times = test.window_times(index)
        valid = times[test.context_frames :]
        observed = np.asarray(test.to_fields(item["target"]))[None]  # (1, K, V, H, W)
        last = np.asarray(test.to_fields(item["context"][-1:]))
        normal = climatology.at(valid)[None]
        forecasts = {
            "ours": ours[n : n + 1],
            "persistence": np.repeat(last, horizon, axis=0)[None],
            "climatology": normal,
            "yesterday": observed_earlier(archive, archive_times, valid)[None],
        }
        for method, forecast in forecasts.items():
            weighted[method].update(forecast, observed, climatology=normal)
            plain[method].update(forecast, observed)
        if n == args.map_start:
            kept = {"observed": observed[0], **{m: f[0] for m, f in forecasts.items()}, "times": times}
    init = test.window_times(0)[test.context_frames - 1]
    leads_h = [float((t - init) / np.timedelta64(1, "h")) for t in test.window_times(0)[test.context_frames :]]
    unweighted = {
        m: {v: {k: s[k] for k in ("rmse", "mae")} for v, s in plain[m].by_variable().items()} for m in METHODS
    }
    results: dict[str, Any] = {
        "script": "benchmarks/reanalysis.py",
        "argv": sys.argv[1:] if argv is None else argv,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "recipe": recipe.to_dict(),
        "training": training,
        "split": args.split,
        "start_times": len(starts),
        "first_start": str(test.window_times(starts[0])[test.context_frames - 1]),
        "last_start": str(test.window_times(starts[-1])[test.context_frames - 1]),
        "lead_times_h": leads_h,
        "seconds_per_forecast": seconds,
        "latitude_weighted": {m: weighted[m].by_variable() for m in METHODS},
        "unweighted": unweighted,
    }
    print_tables(results, variables)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "results.json", results)
    print(f"written: {args.out / 'results.json'}")
    if args.map is not None and kept:
        write_map(kept, test, args.map)
        print(f"map: {args.map} ({args.map.stat().st_size / 1024:.0f} KiB)")
    return results


def print_tables(results: dict[str, Any], variables: list[str]) -> None:
    scores = results["latitude_weighted"]
    leads = results["lead_times_h"]
    print(f"\nseconds per forecast (ours): {results['seconds_per_forecast']:.4f}")
    for variable in variables:
        for name, digits in (("rmse", 3), ("mae", 3), ("acc", 3)):
            header = ["lead (h)", *METHODS]
            lines = [
                [f"{lead:g}", *(format_cell(scores[m][variable][name][k], digits) for m in METHODS)]
                for k, lead in enumerate(leads)
            ]
            lines.append(["mean", *(format_cell(_mean(scores[m][variable][name]), digits) for m in METHODS)])
            weighting = "latitude-weighted " if name != "acc" else "latitude-weighted anomaly correlation, "
            print(f"\n{variable}: {weighting}{name.upper()} by lead time, {results['start_times']} start times")
            print(format_columns(header, lines))
        rmse = np.array([scores[m][variable]["rmse"] for m in METHODS])
        best_baseline = np.nanmin(rmse[1:], axis=0)
        wins = int((rmse[0] < best_baseline).sum())
        worst = float(np.max(rmse[0] - best_baseline))
        print(f"\n{variable}: ours has the lowest RMSE at {wins} of {len(leads)} lead times "
              f"(largest margin over the best baseline: {worst:+.3f})")  # fmt: skip


def _mean(values: list[float]) -> float | None:
    """The mean over lead times, None where no lead time has a score (the climatology's ACC)."""
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def write_map(kept: dict[str, Any], dataset: ReanalysisSequences, path: Path) -> None:
    """Observed and forecast fields of the first variable at three lead times (rows), one column per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    horizon = kept["observed"].shape[0]
    leads = sorted({max(1, horizon // 4), max(1, horizon // 2), horizon})
    columns = ["observed", *METHODS]
    values = np.stack([kept[c][[k - 1 for k in leads], 0] for c in columns])  # (columns, leads, H, W)
    low, high = np.percentile(kept["observed"][:, 0], [1, 99])
    y, x = dataset.y, dataset.x
    extent = (float(x.min()), float(x.max()), float(y.min()), float(y.max()))
    origin = "upper" if y[0] > y[-1] else "lower"
    aspect = len(x) / len(y)  # cells drawn square, whatever their size in degrees
    size = (1.7 * aspect * len(columns) + 1.2, 1.7 * len(leads) + 0.5)
    figure, axes = plt.subplots(len(leads), len(columns), figsize=size, layout="constrained")
    axes = np.atleast_2d(axes)
    init = np.datetime_as_string(kept["times"][dataset.context_frames - 1], unit="h")
    for row, lead in enumerate(leads):
        for col, name in enumerate(columns):
            ax = axes[row, col]
            image = ax.imshow(
                values[col, row], extent=extent, origin=origin, cmap="RdYlBu_r", vmin=low, vmax=high, aspect="auto"
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=9)
            if col == 0:
                ax.set_ylabel(f"+{lead} h", fontsize=9)
    variable = dataset.variables[0]
    label = f"{variable} ({dataset.units[variable]})" if dataset.units.get(variable) else variable
    figure.suptitle(f"{label}, forecasts from {init} UTC", fontsize=10)
    figure.colorbar(image, ax=axes, shrink=0.9, label=label)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(temporary, dpi=80)
    plt.close(figure)
    temporary.replace(path)


if __name__ == "__main__":
    run()
