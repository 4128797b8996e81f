"""Puts a trained radar nowcast into the package as ``radar-nowcast``: the run's saved model (config.json and
model.safetensors, no pickle) and a model card with its data, licences, training budget and held-out scores.

Usage:
    python benchmarks/ship_radar_model.py --run-dir runs/radar --scores runs/radar-scores/results.json \
        [--init-card radar-nowcast]

``--run-dir`` is what ``convlstm fit -c radar_nowcast --run-dir runs/radar`` wrote (its ``model/``, ``recipe.yaml``
and ``training.json``); ``--scores`` the ``results.json`` of ``benchmarks/radar_nowcast.py`` for that model. The card
takes the held-out events and every score it quotes from these files, so it cannot drift from the run it describes.
A run that fine-tuned another model (its recipe's ``model.init_from``) needs ``--init-card``, that model's card (a
shipped name or a directory): the new card states both trainings and every data set either learnt from.
Writes into ``src/convlstm/models/pretrained/<name>/`` (``--out`` elsewhere), refusing a weights file over the
package's 10 MB limit.
"""

from __future__ import annotations

import argparse
import inspect
import json
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

from convlstm.experiment import load_recipe
from convlstm.experiment.recipe import recipe_from_dict
from convlstm.models.base import CONFIG_FILE, WEIGHTS_FILE
from convlstm.models.pretrained import MAX_SHIPPED_BYTES, MODEL_CARD_FILE, DataSource, ModelCard, read_model_card
from convlstm.tasks import ForecastingTask
from convlstm.utils.atomic import atomic_write_text

PACKAGE_MODELS = Path(__file__).resolve().parents[1] / "src" / "convlstm" / "models" / "pretrained"
#: The open-data terms of the services whose events the recipe trains on, as the providers publish them.
PROVIDERS = {
    "fmi": ("Finnish Meteorological Institute (FMI) radar composite", "CC BY 4.0 (FMI open data)"),
    "knmi": ("Royal Netherlands Meteorological Institute (KNMI) radar composite", "CC BY 4.0 (KNMI Data Platform)"),
}
PYSTEPS_DATA = "https://github.com/pySTEPS/pysteps-data"
#: Forecasters of the benchmark quoted on the card, by the names the card gives them.
QUOTED = {
    "ours": "radar-nowcast",
    "extrapolation": "pysteps extrapolation",
    "sprog": "S-PROG",
    "persistence": "persistence",
}


def held_out_scores(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Forecaster -> score -> value, per held-out event and pooled: CSI and frequency bias at 1 mm/h, FSS at 1 mm/h
    over 16 km, MAE, each averaged over the lead times (as benchmarks/radar_nowcast.py prints them)."""
    csi_at = results["thresholds"].index(1.0)
    fss_at = results["fss_thresholds"].index(1.0), results["fss_km"].index(16.0)
    scores: dict[str, dict[str, float]] = {}
    for event, block in results["deterministic"].items():
        for method, name in QUOTED.items():
            values = block["methods"].get(method)
            if values is None:
                raise ValueError(f"--scores: event {event!r} has no scores of {method!r}; run the benchmark with it")
            scores.setdefault(name, {}).update(
                {
                    f"{event} CSI@1": values["csi"]["value"][csi_at],
                    f"{event} bias@1": values["bias"]["value"][csi_at],
                    f"{event} FSS@1mm,16km": values["fss"]["value"][fss_at[0]][fss_at[1]],
                    f"{event} MAE": values["mae"]["value"],
                }
            )
    return scores


def training_loss(task_args: dict[str, Any]) -> str:
    """The training loss as the recipe's task arguments set it, e.g. "log_mse + 1 x fractions loss (1 - FSS over 16
    px at 1, 5 mm/h)"."""
    defaults = {name: p.default for name, p in inspect.signature(ForecastingTask).parameters.items()}
    args = defaults | task_args  # what the task trained with, the recipe's arguments over the task's defaults
    loss = str(args["loss"])
    weight = float(args["fractions_weight"])
    if weight > 0:
        thresholds = ", ".join(f"{t:g}" for t in args["fractions_thresholds"])
        matched = " of probability-matched events" if args["fractions_matched"] else ""
        window = f"{args['fractions_window']} px{matched}"
        loss += f" + {weight:g} x fractions loss (1 - FSS over {window} at {thresholds} mm/h)"
    return loss


#: Recipe settings that say where a user keeps the data, not how the model was trained.
LOCAL_SETTINGS = ("data.args.root", "data.args.cache_dir")


def command_line(recipe: dict[str, Any]) -> str:
    """The ``convlstm fit`` command of the run: the packaged recipe with the run's overrides of it (``-o key=value``),
    its local paths left out and the model it started from (``model.init_from``) shown as ``...``."""
    packaged, ran = _flat(load_recipe(recipe["name"]).to_dict()), _flat(recipe_from_dict(recipe).to_dict())
    overrides = []
    for key in sorted(set(packaged) | set(ran)):
        if key in LOCAL_SETTINGS or packaged.get(key) == ran.get(key):
            continue
        if key == "model.init_from":
            value = "..."
        else:  # one line of YAML, as -o reads it (safe_dump ends a lone value with a "..." line)
            value = yaml.safe_dump(ran.get(key), default_flow_style=True, width=10**6).splitlines()[0]
        overrides.append(f" -o {shlex.quote(f'{key}={value}')}")
    return f"convlstm fit -c {recipe['name']}{''.join(overrides)}"


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as {"a.b.c": value}; an empty mapping is a value of its own."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def model_card(
    name: str,
    recipe: dict[str, Any],
    config: dict[str, Any],
    training: dict[str, Any],
    results: dict[str, Any],
    started_from: ModelCard | None = None,
) -> ModelCard:
    """The card of the run described by its recipe, saved model config, training.json and the benchmark's results;
    ``started_from`` is the card of the model it fine-tuned (its recipe's model.init_from), if any."""
    args, data = recipe["data"]["args"], recipe["data"]
    train_events = args["splits"]["train"] + args["splits"].get("val", [])
    sources = []
    for event in train_events:
        archive = args["events"][event]["archive"]
        if archive not in PROVIDERS:
            raise ValueError(f"event {event!r} of archive {archive!r} has no known open-data licence: not shipping")
        provider, licence = PROVIDERS[archive]
        when = args["events"][event]
        sources.append(
            DataSource(f"pysteps-data {event} ({when['start']} to {when['end']})", provider, licence, PYSTEPS_DATA)
        )
    held_out = [e for e in results["deterministic"] if e != "pooled"]
    if started_from is not None:  # what the model it started from learnt from, once each
        seen = [e for e in held_out for d in started_from.data if f" {e} " in f"{d.name} "]
        if seen:
            raise ValueError(f"the model it started from learnt from held-out events {seen}: not held out")
        sources = [*started_from.data, *(s for s in sources if s.name not in {d.name for d in started_from.data})]
    timesteps = {args["archives"][args["events"][e]["archive"]]["timestep"] for e in train_events}
    tile = results.get("ours_match_tile", 0)
    matching = f"in squares of {tile} x {tile} pixels" if tile else "over whole fields"
    prior = (
        " with S-PROG's per-scale decorrelation of the context as a learned prior"
        if config.get("autocorrelation_prior")
        else ""
    )
    this_run = (
        f"{training['steps']} steps ({training['train_minutes']:.0f} minutes) on {training['device']}, precision "
        f"{training['precision']}, 128 x 128 patches drawn in favour of rain, batch {data['batch_size']}, loss "
        f"{training_loss(recipe['task']['args'])}; stopped by {training['stopped_by']}."
    )
    if started_from is None:
        budget = f"`{command_line(recipe)}`: {this_run}"
    else:
        budget = f"{started_from.training} Then fine-tuned from that model (`{command_line(recipe)}`): {this_run}"
    return ModelCard(
        name=name,
        model=recipe["model"]["name"],
        summary=(
            f"pysteps' Lucas-Kanade extrapolation nowcast corrected by a ConvLSTM U-Net (smoothing per scale{prior}, "
            f"displacement, growth and decay, added rain; probability-matched to the extrapolation {matching}), "
            "trained on radar composites of FMI and KNMI. Rain rate in, rain rate out, on any grid of about 1 km "
            "pixels."
        ),
        data=sources,
        units="mm/h",
        timestep_minutes=float(min(timesteps)),
        context_frames=int(data["context_frames"]),
        lead_times=int(data["target_frames"]),
        training=budget,
        held_out_scores=held_out_scores(results),
        held_out=(
            f"Events never trained, validated or tuned on: {', '.join(held_out)} (MeteoSwiss's radars never seen "
            f"in training), whole domains, {results['deterministic']['pooled']['start_times']} start times, lead "
            f"times 5 to {5 * results['horizon']} min, scored where the radars cover the pixel "
            "(benchmarks/radar_nowcast.py; docs/results/real-radar.md has the intervals)."
        ),
        limits=[
            "Trained on two events of two services; other climates and radars (convective tropics, mountains "
            "with beam blockage) may do worse than pysteps' extrapolation, which it starts from.",
            "Deterministic: a single forecast of what is likeliest, which cannot say how sure it is (intensities "
            "are the extrapolation's, by probability matching); the held-out scores say where it beats pysteps' "
            "extrapolation and where it does not.",
            "5-minute time steps and about 1 km pixels: other steps or resolutions change the motion per step "
            "it learnt.",
        ],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", required=True, type=Path, help="the run of convlstm fit -c radar_nowcast")
    parser.add_argument("--scores", required=True, type=Path, help="results.json of benchmarks/radar_nowcast.py")
    parser.add_argument("--name", default="radar-nowcast", help="the name it ships under")
    parser.add_argument("--out", type=Path, help="the folder to write (default: the package's pretrained/<name>)")
    parser.add_argument("--init-card", help="the card (shipped name or directory) of the model the run fine-tuned")
    args = parser.parse_args(argv)
    model = args.run_dir / "model"
    for needed in (
        model / CONFIG_FILE,
        model / WEIGHTS_FILE,
        args.run_dir / "recipe.yaml",
        args.run_dir / "training.json",
    ):
        if not needed.is_file():
            parser.error(f"--run-dir {args.run_dir}: {needed} is missing (a finished convlstm fit run has it)")
    if (model / WEIGHTS_FILE).stat().st_size > MAX_SHIPPED_BYTES:
        parser.error(f"{model / WEIGHTS_FILE} is over the {MAX_SHIPPED_BYTES} bytes a shipped model may have")
    recipe = yaml.safe_load((args.run_dir / "recipe.yaml").read_text())
    training = json.loads((args.run_dir / "training.json").read_text())
    results = json.loads(args.scores.read_text())
    saved = json.loads((model / CONFIG_FILE).read_text())
    init_from = (recipe.get("model") or {}).get("init_from")
    if init_from and not args.init_card:
        parser.error(f"the run started from model.init_from {init_from}: give --init-card, that model's card")
    if args.init_card and not init_from:
        parser.error("--init-card given, but the run's recipe has no model.init_from: it trained from scratch")
    try:
        started_from = read_model_card(args.init_card) if args.init_card else None
        if args.init_card and started_from is None:
            raise ValueError(f"--init-card {args.init_card} has no {MODEL_CARD_FILE}")
        card = model_card(args.name, recipe, saved["config"], training, results, started_from)
    except (KeyError, ValueError, FileNotFoundError) as err:
        parser.error(f"cannot write the card: {err}")
    out = args.out or PACKAGE_MODELS / args.name
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    shutil.copyfile(model / WEIGHTS_FILE, staging / WEIGHTS_FILE)
    saved["config"]["match_tile"] = results.get("ours_match_tile", 0)  # the matching the scores were made with
    atomic_write_text(staging / CONFIG_FILE, json.dumps(saved, indent=2, sort_keys=True) + "\n")
    card.write(staging)
    replaced = out.is_dir()
    shutil.rmtree(out, ignore_errors=True)  # a model shipped before under this name is replaced whole
    staging.rename(out)
    print(f"{'replaced' if replaced else 'wrote'} {out}: {', '.join(sorted(p.name for p in out.iterdir()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
