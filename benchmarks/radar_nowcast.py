"""Nowcasts of real radar on held-out events, whole domains: the learned extrapolation_nowcast against persistence,
pysteps' extrapolation, S-PROG and STEPS, by the field's scores with bootstrap intervals.

Usage:
    PYTHONPATH=src python benchmarks/radar_nowcast.py --root /path/to/pysteps-data --model RUN/model \\
        --out results/radar [--ensemble-model RUN2/model] [--every 3] [--steps-every 3] [--gif docs/images/x.gif]

The events, archives and split come from the recipe (``--recipe``, default the packaged ``radar_nowcast``); its
``test`` events are scored (``--split val`` scores the validation events instead, for choices that must not see
the test events; ``--events`` picks some of them). Every window of 4 context frames and 12 target
frames of an event is a start time; every ``--every``-th is scored by the deterministic methods, every
``--steps-every``-th of those also by the ensembles (STEPS with ``--members`` members; the learned ensemble with as
many when ``--ensemble-model`` is given). Methods:

- ``persistence``: the last context frame, held;
- ``extrapolation``: pysteps' Lucas-Kanade motion (last 3 frames) and semi-Lagrangian extrapolation of the last
  frame (the ``optical_flow`` baseline);
- ``sprog``: pysteps' S-PROG (6 cascade levels, AR(2), probability matching), in dB, as pysteps' examples run it;
- ``ours``: the trained model (``--model``, a save_pretrained directory), probability-matched (over whole fields,
  or in squares of ``--match-tile`` pixels);
- ``steps``: pysteps' STEPS, ``--members`` members, 6 cascade levels, non-parametric noise, motion perturbations
  (bps) for the archive's pixel size (km) and time step (min), in dB;
- ``ours_ens``: the learned ensemble (``--ensemble-model``), ``--members`` members.

Scores, at each lead time and averaged over lead times, counted only where the radars cover the pixel (the mask):
CSI, POD, FAR and frequency bias at ``--thresholds`` mm/h (from the hits, misses and false alarms summed over the
scored start times), FSS at ``--fss-thresholds`` over ``--fss-km`` km (windows of round(km / pixel size) pixels,
pixel size from the archive's metadata), MAE (mm/h), and for ensembles CRPS (mm/h; for one forecast the CRPS is its
MAE, so the deterministic methods get one on the ensembles' start times too), the rank histogram (pysteps'
``rankhist_accum``, where the observation or a member reaches 0.1 mm/h) and reliability at
``--reliability-thresholds`` (pysteps' ``reldiag_accum``), both over all lead times. Per event and pooled over events,
each with its number of start times, and a percentile interval from ``--bootstrap`` resamples of the start times
within each event (the methods' differences from extrapolation are resampled paired, with the same start times).

Printed: side-by-side tables per event and pooled (scores averaged over lead times, and ours minus extrapolation
with its interval), the timing of each method (seconds per forecast), and the ensemble table. Written: JSON with
every score by lead time, interval and sample size (atomically), with ``--gif`` an animation of one start time
(observation, extrapolation, ours, one STEPS member, one learned member), with ``--figures`` the ensembles' rank
histograms and reliability diagrams.

The work can be shared between processes: each takes a part of the plan (``--events``, ``--starts``) and keeps its
sums (``--save-stats``); a last run reads them all (``--reuse-stats A.pkl B.pkl ... --reuse-only`` every method) and
adds them up.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import pickle
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.ndimage import uniform_filter

from _timing import format_cell, format_columns, refuse_used_out, write_json_atomic
from convlstm.accel import choose_precision
from convlstm.data import RadarArchiveSequences
from convlstm.experiment.recipe import load_recipe
from convlstm.models import from_pretrained
from convlstm.models.extrapolation import extrapolate

logger = logging.getLogger("radar_nowcast")

CONTEXT, HORIZON = 4, 12
DB_FLOOR = -15.0
RAIN_THRESHOLD = 0.1  # mm/h below which STEPS / S-PROG see no rain (pysteps' usual choice)
DETERMINISTIC = ("persistence", "extrapolation", "sprog", "ours")
ENSEMBLES = ("steps", "ours_ens")
ENSEMBLE_LABELS = {"steps": "STEPS", "ours_ens": "learned ensemble"}  # in the figures
PRECISIONS = ("auto", "float32", "bf16")
Forecast = Callable[[np.ndarray], np.ndarray]


# ---------------------------------------------------------------------------------------------- forecasters
def _pysteps() -> Any:
    with contextlib.redirect_stdout(io.StringIO()):
        import pysteps
        from pysteps import motion, nowcasts  # noqa: F401
        from pysteps.utils import transformation  # noqa: F401
    return pysteps


def persistence(context: np.ndarray) -> np.ndarray:
    return np.repeat(context[-1:], HORIZON, axis=0)


def extrapolation(context: np.ndarray, *, horizon: int = HORIZON) -> np.ndarray:
    forecast, _ = extrapolate(torch.from_numpy(context[None, :, None]).double(), horizon, motion_frames=3)
    return forecast[0, :, 0].numpy()


def _db(context: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pysteps = _pysteps()
    db, _ = pysteps.utils.transformation.dB_transform(
        context.astype(np.float64), threshold=RAIN_THRESHOLD, zerovalue=DB_FLOOR
    )
    return db, pysteps.motion.get_method("lucaskanade")(db[-3:])


def _from_db(db: np.ndarray) -> np.ndarray:
    pysteps = _pysteps()
    rain, _ = pysteps.utils.transformation.dB_transform(db, threshold=10 * np.log10(RAIN_THRESHOLD), inverse=True)
    return np.nan_to_num(rain, nan=0.0)  # advected in from beyond the domain: no echo


def sprog(context: np.ndarray, *, levels: int = 6) -> np.ndarray:
    db, velocity = _db(context)
    with contextlib.redirect_stdout(io.StringIO()):
        forecast = _pysteps().nowcasts.get_method("sprog")(
            db[-3:], velocity, HORIZON, precip_thr=10 * np.log10(RAIN_THRESHOLD), n_cascade_levels=levels
        )
    return _from_db(forecast)


def steps_ensemble(
    context: np.ndarray,
    *,
    members: int,
    km_per_pixel: float,
    minutes: float,
    seed: int,
    levels: int = 6,
    horizon: int = HORIZON,
    workers: int = 1,
) -> np.ndarray:
    """pysteps' STEPS from rain rates (T, H, W) to rain rates (members, horizon, H, W); ``workers`` threads (dask,
    over members) as pysteps' num_workers."""
    db, velocity = _db(context)
    with contextlib.redirect_stdout(io.StringIO()):
        forecast = _pysteps().nowcasts.get_method("steps")(
            db[-3:],
            velocity,
            horizon,
            n_ens_members=members,
            n_cascade_levels=levels,
            precip_thr=10 * np.log10(RAIN_THRESHOLD),
            kmperpixel=km_per_pixel,
            timestep=minutes,
            noise_method="nonparametric",
            vel_pert_method="bps",
            mask_method="incremental",
            seed=seed,
            num_workers=workers,
        )
    return _from_db(forecast)  # (M, horizon, H, W)


def uses_bf16(precision: str) -> bool:
    """Whether the learned methods run under bfloat16 autocast: "bf16", or "auto" where the CPU multiplies
    bfloat16 in hardware (as training's precision "auto" decides); "float32" never."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision == "bf16" or (precision == "auto" and choose_precision("cpu")[0] == "bf16-mixed")


def learned(model: torch.nn.Module, *, horizon: int = HORIZON, bf16: bool = False) -> Forecast:
    def forecast(context: np.ndarray) -> np.ndarray:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(torch.from_numpy(context[None, :, None]).float(), horizon)
        return out[0, :, 0].double().numpy()

    return forecast


def learned_ensemble(
    model: Any, members: int, seed: int, *, horizon: int = HORIZON, bf16: bool = False
) -> Callable[[np.ndarray], np.ndarray]:
    def forecast(context: np.ndarray) -> np.ndarray:
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model.ensemble(
                torch.from_numpy(context[None, :, None]).float(), horizon, members=members, generator=generator
            )
        return out[0, :, :, 0].double().numpy()

    return forecast


# ---------------------------------------------------------------------------------------------- statistics
def window_stats(
    forecast: np.ndarray,
    truth: np.ndarray,
    valid: np.ndarray,
    *,
    thresholds: tuple[float, ...],
    fss_thresholds: tuple[float, ...],
    fss_pixels: tuple[int, ...],
) -> dict[str, np.ndarray]:
    """Sums of one start time, per lead time: hits / misses / false alarms per threshold, the FSS's numerator and
    denominator per (threshold, scale), absolute error and valid pixels. forecast, truth, valid: (K, H, W)."""
    valid = valid.astype(bool)
    f = np.where(valid, forecast, 0.0)
    o = np.where(valid, truth, 0.0)
    counts = np.zeros((HORIZON, len(thresholds), 3))
    for j, threshold in enumerate(thresholds):
        fy, oy = (f >= threshold) & valid, (o >= threshold) & valid
        counts[:, j, 0] = (fy & oy).sum(axis=(1, 2))
        counts[:, j, 1] = (~fy & oy).sum(axis=(1, 2))
        counts[:, j, 2] = (fy & ~oy).sum(axis=(1, 2))
    fss = np.zeros((HORIZON, len(fss_thresholds), len(fss_pixels), 2))
    for k in range(HORIZON):
        for j, threshold in enumerate(fss_thresholds):
            fb, ob = (f[k] >= threshold).astype(np.float64), (o[k] >= threshold).astype(np.float64)
            for s, size in enumerate(fss_pixels):
                pf = uniform_filter(fb, size=size, mode="constant")
                po = uniform_filter(ob, size=size, mode="constant")
                fss[k, j, s, 0] = ((pf - po) ** 2)[valid[k]].sum()
                fss[k, j, s, 1] = (pf**2 + po**2)[valid[k]].sum()
    return {
        "counts": counts,
        "fss": fss,
        "abs_error": np.abs(f - o).sum(axis=(1, 2)),
        "pixels": valid.sum(axis=(1, 2)).astype(np.float64),
    }


def crps_sums(members: np.ndarray, truth: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per lead time, the sum over valid pixels of the ensemble's CRPS (members (M, K, H, W)): mean |X - y| minus
    half the mean |X - X'|, the CRPS of the members' empirical distribution (for one member, the absolute error)."""
    m = members.shape[0]
    spread = np.zeros(truth.shape)
    ranked = np.sort(members, axis=0)
    for i in range(m):  # mean |X - X'| = 2 / M^2 * sum_i (2 i - M - 1) x_(i), i = 1..M
        spread += (2 * (i + 1) - m - 1) * ranked[i]
    crps = np.abs(members - truth[None]).mean(axis=0) - spread / m**2
    return np.where(valid.astype(bool), crps, 0.0).sum(axis=(1, 2))


def rank_counts(members: np.ndarray, truth: np.ndarray, valid: np.ndarray, *, seed: int) -> np.ndarray:
    """The observation's rank among the members (M + 1 counts), over every lead time and valid pixel where the
    observation or a member reaches RAIN_THRESHOLD: pysteps' rank histogram (``rankhist_accum``, ties broken at
    random, here from ``seed``). members (M, K, H, W), truth and valid (K, H, W)."""
    ensscores = _pysteps_verification().ensscores
    histogram = ensscores.rankhist_init(members.shape[0], X_min=RAIN_THRESHOLD)
    observed = np.where(valid.astype(bool), truth, np.nan)
    state = np.random.get_state()  # noqa: NPY002 (pysteps draws its tie-breaks from numpy's global generator)
    try:
        np.random.seed(seed)  # noqa: NPY002
        for k in range(truth.shape[0]):
            ensscores.rankhist_accum(histogram, members[:, k], observed[k])
    finally:
        np.random.set_state(state)  # noqa: NPY002
    return histogram["n"].astype(np.float64)


def reliability_sums(
    members: np.ndarray, truth: np.ndarray, valid: np.ndarray, *, thresholds: tuple[float, ...], bins: int
) -> np.ndarray:
    """Per threshold and probability bin, the sums of a reliability diagram over every lead time and valid pixel:
    forecast probability (the members' share at or above the threshold), observed exceedances and pixels,
    (thresholds, bins, 3), accumulated by pysteps' ``reldiag_accum``."""
    probscores = _pysteps_verification().probscores
    observed = np.where(valid.astype(bool), truth, np.nan)
    out = np.zeros((len(thresholds), bins, 3))
    for j, threshold in enumerate(thresholds):
        diagram = probscores.reldiag_init(threshold, n_bins=bins, min_count=1)
        probability = (members >= threshold).mean(axis=0)
        for k in range(truth.shape[0]):
            probscores.reldiag_accum(diagram, probability[k], observed[k])
        out[j] = np.stack([diagram["X_sum"], diagram["Y_sum"], diagram["num_idx"]], axis=-1)
    return out


def _pysteps_verification() -> Any:
    with contextlib.redirect_stdout(io.StringIO()):
        from pysteps.verification import ensscores, probscores
    return argparse.Namespace(ensscores=ensscores, probscores=probscores)


#: Scores computed over all lead times at once (not averaged over them).
POOLED_OVER_LEADS = ("rank_histogram", "reliability_probability", "reliability_frequency", "reliability_pixels")


def scores_of(stats: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    """Scores by lead time (arrays (K,) or (K, thresholds), (K, thresholds, scales)) of the start times ``rows``."""
    counts = stats["counts"][rows].sum(axis=0)  # (K, thresholds, 3)
    hits, misses, false = counts[..., 0], counts[..., 1], counts[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = {
            "csi": hits / (hits + misses + false),
            "pod": hits / (hits + misses),
            "far": false / (hits + false),
            "bias": (hits + false) / (hits + misses),
        }
        fss = stats["fss"][rows].sum(axis=0)
        out["fss"] = 1 - fss[..., 0] / fss[..., 1]
        pixels = stats["pixels"][rows].sum(axis=0)
        out["mae"] = stats["abs_error"][rows].sum(axis=0) / pixels
        if "crps" in stats:
            out["crps"] = stats["crps"][rows].sum(axis=0) / pixels
        if "rank" in stats:
            ranks = stats["rank"][rows].sum(axis=0)
            out["rank_histogram"] = ranks / ranks.sum()
        if "reliability" in stats:
            sums = stats["reliability"][rows].sum(axis=0)  # (thresholds, bins, 3)
            out["reliability_probability"] = sums[..., 0] / sums[..., 2]
            out["reliability_frequency"] = sums[..., 1] / sums[..., 2]
            out["reliability_pixels"] = sums[..., 2]
    return out


def mean_over_leads(by_lead: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Scores by lead time averaged over the lead times; those of POOLED_OVER_LEADS are already over all of them."""
    return {
        name: values if name in POOLED_OVER_LEADS else np.nanmean(values, axis=0) for name, values in by_lead.items()
    }


def bootstrap(
    stats: dict[str, dict[str, dict[str, np.ndarray]]],
    events: list[str],
    methods: list[str],
    *,
    resamples: int,
    seed: int,
    reference: str | None,
) -> dict[str, Any]:
    """Lead-averaged scores of each method, their 2.5-97.5 % intervals over resamples of the start times within each
    event (the same resample for every method), and the differences from ``reference``."""
    rng = np.random.default_rng(seed)
    sizes = {event: len(stats[methods[0]][event]["pixels"]) for event in events}
    offsets = np.cumsum([0] + [sizes[e] for e in events])

    def pooled(method: str) -> dict[str, np.ndarray]:
        return {key: np.concatenate([stats[method][e][key] for e in events]) for key in stats[method][events[0]]}

    pools = {method: pooled(method) for method in methods}
    point = {method: mean_over_leads(scores_of(pools[method], np.arange(offsets[-1]))) for method in methods}
    draws: dict[str, dict[str, list[np.ndarray]]] = {m: {} for m in methods}
    for _ in range(resamples):
        rows = np.concatenate(
            [offsets[i] + rng.integers(0, sizes[e], sizes[e]) for i, e in enumerate(events) if sizes[e]]
        )
        for method in methods:
            for name, value in mean_over_leads(scores_of(pools[method], rows)).items():
                draws[method].setdefault(name, []).append(value)
    out: dict[str, Any] = {"start_times": int(offsets[-1]), "methods": {}}
    for method in methods:
        entry = {}
        for name, value in point[method].items():
            samples = np.array(draws[method][name]) if resamples else None
            entry[name] = {
                "value": value.tolist(),
                "interval": None if samples is None else np.nanpercentile(samples, [2.5, 97.5], axis=0).tolist(),
            }
            if reference is not None and method != reference and reference in methods:
                difference = value - point[reference][name]
                ref = np.array(draws[reference][name]) if resamples else None
                entry[name]["minus_" + reference] = {
                    "value": difference.tolist(),
                    "interval": None
                    if samples is None or ref is None
                    else np.nanpercentile(samples - ref, [2.5, 97.5], axis=0).tolist(),
                }
        out["methods"][method] = entry
    return out


# ---------------------------------------------------------------------------------------------- the study
def parse_args(argv: list[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="the clone of pysteps-data")
    parser.add_argument("--model", required=True, help="the trained model (save_pretrained directory)")
    parser.add_argument("--ensemble-model", help="the trained ensemble model (save_pretrained directory)")
    parser.add_argument("--out", required=True, type=Path, help="an empty or new folder for results.json")
    parser.add_argument("--recipe", default="radar_nowcast", help="recipe whose archives, events and split are read")
    parser.add_argument("--split", choices=("test", "val"), default="test", help="the recipe's split to score")
    parser.add_argument("--events", nargs="*", help="events of --split to score (default: all of them)")
    parser.add_argument("--cache-dir", help="the events' rain rates as .npy (the recipe's cache_dir by default)")
    parser.add_argument("--every", type=int, default=1, help="score every n-th start time")
    parser.add_argument(
        "--starts", type=int, nargs="+", help="of the planned start times (window indices), score only these"
    )
    parser.add_argument("--steps-every", type=int, default=3, help="of those, every n-th also by the ensembles")
    parser.add_argument("--members", type=int, default=20, help="ensemble members (STEPS and ours)")
    parser.add_argument("--methods", nargs="*", default=[*DETERMINISTIC, *ENSEMBLES], help="methods to run")
    parser.add_argument("--thresholds", type=float, nargs="*", default=[0.5, 1.0, 5.0, 10.0])
    parser.add_argument("--fss-thresholds", type=float, nargs="*", default=[1.0, 5.0])
    parser.add_argument("--fss-km", type=float, nargs="*", default=[1.0, 2.0, 4.0, 8.0, 16.0, 32.0])
    parser.add_argument("--reliability-thresholds", type=float, nargs="*", default=[1.0, 5.0])
    parser.add_argument("--reliability-bins", type=int, default=10, help="probability bins of the reliability")
    parser.add_argument("--cascade-levels", type=int, default=6, help="S-PROG's and STEPS' cascade levels")
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples of the start times (0: none)")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="the learned methods' arithmetic: bfloat16 autocast or float32 (auto: bfloat16 where the CPU computes "
        "it in hardware, as training does)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-stats", type=Path, help="keep every scored start time's sums here (pickle)")
    parser.add_argument(
        "--reuse-stats", type=Path, nargs="+", help="take the sums of start times scored by earlier runs (--save-stats)"
    )
    parser.add_argument(
        "--reuse-only", nargs="*", default=[], help="methods taken from --reuse-stats only, never computed here"
    )
    parser.add_argument("--max-minutes", type=float, help="score no new start time after this many minutes")
    parser.add_argument(
        "--match-tile", type=int, help="score ours with probability matching in squares of this many pixels (0: whole)"
    )
    parser.add_argument(
        "--match-members", action="store_true", help="probability-match each learned member to the extrapolation"
    )
    parser.add_argument("--figures", type=Path, help="folder for the ensembles' rank histogram and reliability PNGs")
    parser.add_argument("--gif", type=Path, help="write an animation of one start time here")
    parser.add_argument("--gif-event", help="the event of the animation (default: the first)")
    parser.add_argument("--gif-size", type=int, default=160, help="the animation's panels, pixels (square crop)")
    args = parser.parse_args(argv)
    if args.every < 1 or args.steps_every < 1 or args.members < 2 or args.bootstrap < 0:
        parser.error("--every and --steps-every must be >= 1, --members >= 2, --bootstrap >= 0")
    unknown = sorted(set(args.methods) - {*DETERMINISTIC, *ENSEMBLES})
    if unknown:
        parser.error(f"--methods {unknown} unknown; choose from {[*DETERMINISTIC, *ENSEMBLES]}")
    return parser, args


def scored_sets(args: argparse.Namespace) -> list[RadarArchiveSequences]:
    """One dataset per event of the recipe's ``--split`` (``--events`` of them)."""
    recipe = load_recipe(args.recipe)
    data = dict(recipe.data.args)
    split_events = list(data["splits"][args.split])
    chosen = args.events or split_events
    wrong = sorted(set(chosen) - set(split_events))
    if wrong:
        raise SystemExit(f"--events {wrong} are not {args.split} events of recipe {args.recipe!r}: {split_events}")
    cache = args.cache_dir if args.cache_dir is not None else data.get("cache_dir")
    return [
        RadarArchiveSequences(
            args.root,
            "test",
            archives=data["archives"],
            events={name: data["events"][name] for name in [event]},
            splits={"test": [event]},
            context_frames=CONTEXT,
            target_frames=HORIZON,
            units="mm/h",
            cache_dir=None if cache is None else Path(cache).expanduser(),
        )
        for event in chosen
    ]


def _matching(model: Any) -> str:
    config = getattr(model, "config", None)
    if not getattr(config, "probability_matching", False):
        return "none"
    tile = getattr(config, "match_tile", 0)
    return f"squares of {tile} x {tile} pixels" if tile else "whole fields"


def save_stats(path: Path, records: dict[tuple[str, str, int], dict[str, Any]]) -> None:
    """Every scored (method, event, start time)'s sums, pickled to a temporary file and renamed over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as f:
        pickle.dump(records, f)
    temporary.replace(path)


def load_stats(paths: list[Path]) -> dict[tuple[str, str, int], dict[str, Any]]:
    """The scored (method, event, start time) sums of earlier runs (--save-stats), merged. Runs that shared the work
    (--starts) each hold the start times they were given and copies of what they reused: of two records of one
    start time, the one with the ensemble start time's sums is kept."""
    records: dict[tuple[str, str, int], dict[str, Any]] = {}
    for path in paths:
        with open(path, "rb") as f:
            for key, record in pickle.load(f).items():
                if key not in records or (records[key]["ens"] is None and record["ens"] is not None):
                    records[key] = record
    return records


def pixel_km(dataset: RadarArchiveSequences) -> float:
    meta = dataset.events[0].metadata
    size = float(meta.get("xpixelsize") or 1000.0)
    unit = meta.get("cartesian_unit") or "m"
    return size / 1000.0 if unit == "m" else size


def run(argv: list[str] | None = None) -> dict[str, Any]:
    parser, args = parse_args(argv)
    refuse_used_out(parser, args.out)
    torch.manual_seed(args.seed)
    bf16 = uses_bf16(args.precision)
    print(f"learned methods in {'bfloat16 (autocast)' if bf16 else 'float32'} (--precision {args.precision})")
    methods = [m for m in [*DETERMINISTIC, *ENSEMBLES] if m in args.methods]
    if "ours_ens" in methods and not args.ensemble_model:
        methods.remove("ours_ens")
    model = from_pretrained(args.model).eval()
    ensemble_model = from_pretrained(args.ensemble_model).eval() if "ours_ens" in methods else None
    if ensemble_model is not None and args.match_members:
        ensemble_model.config.probability_matching = True
    if args.match_tile is not None:
        model.config.match_tile = args.match_tile
    print(f"ours: probability matching in {_matching(model)}")
    datasets = scored_sets(args)
    thresholds, fss_thresholds = tuple(args.thresholds), tuple(args.fss_thresholds)
    reliability_thresholds = tuple(args.reliability_thresholds)
    stats: dict[str, dict[str, dict[str, list[Any]]]] = {m: {} for m in methods}
    ens_stats: dict[str, dict[str, dict[str, list[Any]]]] = {m: {} for m in methods}
    seconds: dict[str, list[float]] = {m: [] for m in methods}
    events_info: dict[str, dict[str, Any]] = {}
    gif_event = args.gif_event or datasets[0].events[0].event.name
    gif_frames: dict[str, np.ndarray] | None = None
    forecasters: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "persistence": persistence,
        "extrapolation": extrapolation,
        "sprog": lambda c: sprog(c, levels=args.cascade_levels),
        "ours": learned(model, bf16=bf16),
    }
    plans = []
    for dataset in datasets:
        name = dataset.events[0].event.name
        km = pixel_km(dataset)
        minutes = dataset.archives[dataset.events[0].event.archive].timestep
        fss_pixels = tuple(max(1, round(s / km)) for s in args.fss_km)
        starts = list(range(0, len(dataset), args.every))
        ensemble_starts = set(starts[:: args.steps_every])
        if args.starts is not None:  # a share of the plan (e.g. one of two processes): the same start times as planned
            starts = [start for start in starts if start in args.starts]
            ensemble_starts &= set(starts)
        events_info[name] = {
            "windows": len(dataset),
            "planned_start_times": len(starts),
            "scored_start_times": 0,
            "ensemble_start_times": 0,
            "grid": list(dataset.events[0].rain_rate.shape[-2:]),
            "pixel_km": km,
            "timestep_min": minutes,
            "fss_window_pixels": list(fss_pixels),
        }
        print(f"{name}: {len(dataset)} windows, scoring {len(starts)} ({len(ensemble_starts)} by the ensembles)")
        for method in methods:
            stats[method][name], ens_stats[method][name] = {}, {}
        plans.append((dataset, name, km, minutes, fss_pixels, starts, ensemble_starts))
    # The events' start times interleaved (the first of each event, then the second, ...), so that a run stopped by
    # --max-minutes has scored every event alike.
    order = sorted(
        ((rank, index, start) for index, plan in enumerate(plans) for rank, start in enumerate(plan[5])),
        key=lambda x: (x[0], x[1]),
    )
    reused = load_stats(args.reuse_stats or [])
    if args.reuse_stats:
        print(f"reusing {len(reused)} scored (method, event, start time) from {', '.join(map(str, args.reuse_stats))}")
    began = time.monotonic()
    for _, index, start in order:
        if args.max_minutes is not None and time.monotonic() - began > 60 * args.max_minutes:
            print(f"--max-minutes {args.max_minutes:g} reached: the remaining start times are not scored")
            break
        dataset, name, km, minutes, fss_pixels, _, ensemble_starts = plans[index]
        if "steps" in args.reuse_only and (("steps", name, start) not in reused):
            ensemble_starts = ensemble_starts - {start}  # STEPS only where an earlier run scored it
        item = dataset[start]
        context = item["context"][:, 0].double().numpy()
        truth = item["target"][:, 0].double().numpy()
        valid = item["mask"][:, 0].numpy() > 0
        forecasts: dict[str, np.ndarray] = {}
        member_zero: dict[str, np.ndarray] = {}
        ensemble_start = start in ensemble_starts
        this_window: list[str] = []
        for method in methods:
            key = (method, name, start)
            record = reused.get(key)
            if record is not None and method in ENSEMBLES and record["ens"] is not None and "rank" not in record["ens"]:
                record = None  # from a version without rank histograms: run it again
            earlier = False  # whether this record comes from --reuse-stats rather than from this run
            if record is not None and (record["ens"] is not None or not ensemble_start or method in ENSEMBLES):
                earlier = True
                if record.get("member0") is not None:
                    member_zero[method] = record["member0"]
            elif method in args.reuse_only or (method in ENSEMBLES and not ensemble_start):
                continue
            else:
                begin = time.perf_counter()
                record = {"one": None, "ens": None, "member0": None}
                if method in forecasters:
                    forecast = forecasters[method](context)
                    seconds_taken = time.perf_counter() - begin
                    forecasts[method] = forecast
                    one = window_stats(
                        forecast,
                        truth,
                        valid,
                        thresholds=thresholds,
                        fss_thresholds=fss_thresholds,
                        fss_pixels=fss_pixels,
                    )
                    record["one"] = one
                    if ensemble_start:
                        record["ens"] = {**one, "crps": np.abs(np.where(valid, forecast - truth, 0.0)).sum(axis=(1, 2))}
                else:
                    if method == "steps":
                        ensemble = steps_ensemble(
                            context,
                            members=args.members,
                            km_per_pixel=km,
                            minutes=minutes,
                            seed=args.seed + start,
                            levels=args.cascade_levels,
                        )
                    else:
                        ensemble = learned_ensemble(ensemble_model, args.members, args.seed + start, bf16=bf16)(context)
                    seconds_taken = time.perf_counter() - begin
                    ens = window_stats(
                        ensemble.mean(axis=0),
                        truth,
                        valid,
                        thresholds=thresholds,
                        fss_thresholds=fss_thresholds,
                        fss_pixels=fss_pixels,
                    )
                    ens["crps"] = crps_sums(ensemble, truth, valid)
                    ens["rank"] = rank_counts(ensemble, truth, valid, seed=args.seed + start)
                    ens["reliability"] = reliability_sums(
                        ensemble, truth, valid, thresholds=reliability_thresholds, bins=args.reliability_bins
                    )
                    record["ens"] = ens
                    if name == gif_event and not any(k[1] == name and reused[k].get("member0") is not None
                                                     for k in reused if k[0] == method):  # fmt: skip
                        record["member0"] = ensemble[0].astype(np.float32)
                        member_zero[method] = record["member0"]
                record["seconds"] = seconds_taken
                reused[key] = record
                if args.save_stats is not None:
                    save_stats(args.save_stats, reused)
            seconds[method].append(record["seconds"])
            this_window.append(f"{method} {record['seconds']:.1f} s" + (" (earlier run)" if earlier else ""))
            if record["one"] is not None:
                for k, value in record["one"].items():
                    stats[method][name].setdefault(k, []).append(value)
            if ensemble_start and record["ens"] is not None:
                for k, value in record["ens"].items():
                    ens_stats[method][name].setdefault(k, []).append(value)
        events_info[name]["scored_start_times"] += 1
        events_info[name]["ensemble_start_times"] += int(ensemble_start)
        if args.gif is not None and gif_frames is None and name == gif_event and member_zero:
            for method in ("extrapolation", "ours"):
                if method not in forecasts and method in forecasters:
                    forecasts[method] = forecasters[method](context)
            gif_frames = {"context": context, "observed": truth, **forecasts}
            gif_frames.update({f"{m} member": e.astype(np.float64) for m, e in member_zero.items()})
        print(f"  {name} start {start}: {', '.join(this_window)}", flush=True)
    det = [m for m in methods if m in DETERMINISTIC]
    ens_methods = [m for m in methods if any(ens_stats[m][e] for e in ens_stats[m])]
    as_arrays = {m: {e: {k: np.array(v) for k, v in stats[m][e].items()} for e in stats[m] if stats[m][e]} for m in det}
    ens_arrays = {
        m: {e: {k: np.array(v) for k, v in ens_stats[m][e].items()} for e in ens_stats[m] if ens_stats[m][e]}
        for m in ens_methods
    }
    names = [e for e in events_info if events_info[e]["scored_start_times"]]
    if not names:
        raise SystemExit("no start time was scored: raise --max-minutes")
    reference = "extrapolation" if "extrapolation" in det else None
    groups = {**{e: [e] for e in names}, **({"pooled": names} if len(names) > 1 else {})}
    results: dict[str, Any] = {
        "script": "benchmarks/radar_nowcast.py",
        "argv": sys.argv[1:] if argv is None else argv,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "learned_precision": "bf16" if bf16 else "float32",
        "split": args.split,
        "ours_match_tile": int(getattr(model.config, "match_tile", 0)),  # what ship_radar_model.py ships
        "learned_members_matched": bool(ensemble_model is not None and ensemble_model.config.probability_matching),
        "events": events_info,
        "thresholds": list(thresholds),
        "fss_thresholds": list(fss_thresholds),
        "reliability_thresholds": list(reliability_thresholds),
        "rank_histogram_min_mm_h": RAIN_THRESHOLD,
        "fss_km": list(args.fss_km),
        "horizon": HORIZON,
        "bootstrap": args.bootstrap,
        "every": args.every,
        "steps_every": args.steps_every,
        "members": args.members,
        "max_minutes": args.max_minutes,
        "seconds_per_forecast": {m: float(np.mean(s)) if s else None for m, s in seconds.items()},
        "forecasts_timed": {m: len(s) for m, s in seconds.items()},
        "deterministic": {},
        "ensemble": {},
        "by_lead_time": {},
    }
    for group, members_of in groups.items():
        results["deterministic"][group] = bootstrap(
            as_arrays, members_of, det, resamples=args.bootstrap, seed=args.seed, reference=reference
        )
        scored = [e for e in members_of if ens_methods and e in ens_arrays[ens_methods[0]]]
        if scored:
            results["ensemble"][group] = bootstrap(
                ens_arrays, scored, ens_methods, resamples=args.bootstrap, seed=args.seed, reference="steps"
            )
        results["by_lead_time"][group] = {
            m: {
                k: v.tolist()
                for k, v in scores_of(
                    {k: np.concatenate([as_arrays[m][e][k] for e in members_of]) for k in as_arrays[m][members_of[0]]},
                    np.arange(sum(len(as_arrays[m][e]["pixels"]) for e in members_of)),
                ).items()
            }
            for m in det
        }
    print_tables(results, det, ens_methods)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.figures is not None and results["ensemble"]:
        write_ensemble_figures(results, args.figures)
    write_json_atomic(args.out / "results.json", results)
    if args.gif is not None and gif_frames is not None:
        write_gif(gif_frames, args.gif, args.gif_size)
        print(f"animation: {args.gif} ({args.gif.stat().st_size / 1024:.0f} KiB)")
    print(f"written: {args.out / 'results.json'}")
    return results


def _cell(entry: dict[str, Any], index: tuple[int, ...], digits: int = 3) -> str:
    value = float(np.asarray(entry["value"])[index])
    if entry.get("interval") is None:
        return format_cell(value, digits)
    low, high = (float(np.asarray(b)[index]) for b in entry["interval"])
    return f"{format_cell(value, digits)} [{format_cell(low, digits)}, {format_cell(high, digits)}]"


def print_tables(results: dict[str, Any], det: list[str], ens_methods: list[str]) -> None:
    thresholds, fss_t, fss_km = results["thresholds"], results["fss_thresholds"], results["fss_km"]
    one = thresholds.index(1.0) if 1.0 in thresholds else 0
    t_f = fss_t.index(1.0) if 1.0 in fss_t else 0
    s16 = fss_km.index(16.0) if 16.0 in fss_km else len(fss_km) - 1
    label_t, label_f = f"{thresholds[one]:g}", f"{fss_t[t_f]:g} mm/h {fss_km[s16]:g} km"
    for group, block in results["deterministic"].items():
        print(f"\n{group}: {block['start_times']} start times, scores averaged over lead times 1-{HORIZON}, "
              f"[2.5, 97.5] % bootstrap interval")  # fmt: skip
        header = ["method", f"CSI@{label_t}", f"POD@{label_t}", f"FAR@{label_t}", f"bias@{label_t}", f"FSS@{label_f}",
                  "MAE"]  # fmt: skip
        lines = []
        for method in det:
            e = block["methods"][method]
            lines.append([method, _cell(e["csi"], (one,)), _cell(e["pod"], (one,)), _cell(e["far"], (one,)),
                          _cell(e["bias"], (one,)), _cell(e["fss"], (t_f, s16)), _cell(e["mae"], ())])  # fmt: skip
            if "minus_extrapolation" in e["csi"]:
                lines.append([f"  {method} - extrap.", _cell(e["csi"]["minus_extrapolation"], (one,)),
                              _cell(e["pod"]["minus_extrapolation"], (one,)),
                              _cell(e["far"]["minus_extrapolation"], (one,)),
                              _cell(e["bias"]["minus_extrapolation"], (one,)),
                              _cell(e["fss"]["minus_extrapolation"], (t_f, s16)),
                              _cell(e["mae"]["minus_extrapolation"], ())])  # fmt: skip
        print(format_columns(header, lines))
        header = ["method"] + [f"CSI@{t:g}" for t in thresholds] + [f"bias@{t:g}" for t in thresholds]
        lines = [
            [m]
            + [format_cell(block["methods"][m]["csi"]["value"][j], 3) for j in range(len(thresholds))]
            + [format_cell(block["methods"][m]["bias"]["value"][j], 2) for j in range(len(thresholds))]
            for m in det
        ]
        print(format_columns(header, lines))
        header = ["method"] + [f"FSS@{t:g},{s:g}km" for t in fss_t for s in fss_km]
        lines = [
            [m] + [format_cell(block["methods"][m]["fss"]["value"][j][s], 3) for j in range(len(fss_t))
                   for s in range(len(fss_km))]
            for m in det
        ]  # fmt: skip
        print(format_columns(header, lines))
    for group, block in results["ensemble"].items():
        print(f"\n{group}, ensembles: {block['start_times']} start times; CRPS (mm/h; a single forecast's is its MAE), "
              f"CSI and FSS of the ensemble mean")  # fmt: skip
        header = ["method", "CRPS", "CRPS - STEPS", f"CSI@{label_t} (mean)", f"FSS@{label_f} (mean)"]
        lines = []
        for method in ens_methods:
            e = block["methods"][method]
            diff = e["crps"].get("minus_steps")
            lines.append([method, _cell(e["crps"], ()), "-" if diff is None else _cell(diff, ()),
                          _cell(e["csi"], (one,)), _cell(e["fss"], (t_f, s16))])  # fmt: skip
        print(format_columns(header, lines))
        print_spread(block, ens_methods, results["reliability_thresholds"])
    timed = results["seconds_per_forecast"]
    counts = results["forecasts_timed"]
    cells = [f"{m} {v:.2f} s ({counts[m]})" for m, v in timed.items() if v is not None]
    print("\nseconds per forecast (whole domain, 12 lead times; ensembles: all members): " + ", ".join(cells))


def print_spread(block: dict[str, Any], ens_methods: list[str], reliability_thresholds: list[float]) -> None:
    """The ensembles' rank histograms (share of the observations at each rank among the members, where the
    observation or a member has rain) and reliability (observed frequency per bin of forecast probability)."""
    for method in ens_methods:
        e = block["methods"][method]
        if "rank_histogram" not in e:
            continue
        ranks = np.asarray(e["rank_histogram"]["value"])
        flat = 1 / len(ranks)
        print(f"{method} rank histogram (flat: {flat:.3f} each; below all members {ranks[0]:.3f}, above all "
              f"{ranks[-1]:.3f}): " + " ".join(f"{v:.3f}" for v in ranks))  # fmt: skip
        for j, threshold in enumerate(reliability_thresholds):
            forecast = np.asarray(e["reliability_probability"]["value"])[j]
            observed = np.asarray(e["reliability_frequency"]["value"])[j]
            pixels = np.asarray(e["reliability_pixels"]["value"])[j]
            cells = [f"{f:.2f}->{o:.2f} ({n:.0f})" for f, o, n in zip(forecast, observed, pixels, strict=True) if n]
            print(f"{method} reliability at {threshold:g} mm/h, forecast -> observed (pixels): " + ", ".join(cells))


def write_ensemble_figures(results: dict[str, Any], folder: Path) -> None:
    """The pooled (or only) group's rank histograms and reliability diagrams, as PNGs in ``folder``."""
    from convlstm.report.probabilistic_figures import plot_rank_histograms, plot_reliability_diagram

    group = "pooled" if "pooled" in results["ensemble"] else next(iter(results["ensemble"]))
    methods = {
        ENSEMBLE_LABELS.get(m, m): e for m, e in results["ensemble"][group]["methods"].items() if "rank_histogram" in e
    }
    if not methods:
        return
    folder.mkdir(parents=True, exist_ok=True)
    plot_rank_histograms(
        {m: e["rank_histogram"]["value"] for m, e in methods.items()},
        folder / "real_radar_rank_histograms.png",
        title=f"rank of the observation, {group}",
    )
    for j, threshold in enumerate(results["reliability_thresholds"]):
        curves = {
            m: {
                "forecast_probability": np.asarray(e["reliability_probability"]["value"])[j].tolist(),
                "observed_frequency": np.asarray(e["reliability_frequency"]["value"])[j].tolist(),
            }
            for m, e in methods.items()
        }
        plot_reliability_diagram(
            curves, folder / f"real_radar_reliability_{threshold:g}.png", title=f"P(rain >= {threshold:g} mm/h)"
        )
    print(f"figures: {folder}")


def write_gif(frames: dict[str, np.ndarray], path: Path, size: int) -> None:
    """Observation and forecasts of one start time, cropped to the size x size square with the most rain."""
    from convlstm.report import write_comparison_gif

    observed = frames["observed"]
    total = observed.sum(axis=0)
    height, width = total.shape
    size = min(size, height, width)
    window = uniform_filter(total, size=size, mode="constant")
    half = size // 2
    inner = window[half : height - size + half + 1, half : width - size + half + 1]
    top, left = np.unravel_index(np.argmax(inner), inner.shape)

    def crop(x: np.ndarray) -> np.ndarray:
        return x[..., None, top : top + size, left : left + size].astype(np.float32)

    panels = {k: crop(v) for k, v in frames.items() if k not in ("context", "observed", "persistence", "sprog")}
    write_comparison_gif(crop(frames["context"]), crop(observed), panels, path, cmap="rain_mm_h", scale=1, fps=3.0)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
