"""The nowcasting study with the field's scores: TrajGRU beside ConvLSTM and ConvGRU and the learned correction of
pysteps' extrapolation (extrapolation_nowcast), and probabilistic forecasts (a trained exceedance model, STEPS, a
perturbed-input ConvLSTM ensemble, the learned ensemble extrapolation_nowcast_ensemble, thresholded optical flow)
scored by CSI, FSS, Brier score, ROC area, reliability, CRPS and rank histograms per lead time.

CPU-sized: synthetic radar of 32 x 32 pixels (wind 0.5-1.5 px/frame, rain from 0.5 mm/h at the edges), 5 -> 10
frames, each network trained for --steps Adam steps of batch 4 on HKO-7's balanced loss (the exceedance model on
the per-threshold cross-entropy; the two extrapolation_nowcast models in rain rates, as their real-radar recipes
train them: the deterministic one on the MSE of log(1 + R), the ensemble on the fair CRPS of 8 members), scored
on --test sequences. Needs the nowcast extra (pysteps). Training and
scoring are separate calls, so that the networks can train in parallel processes:

    PYTHONPATH=src python benchmarks/nowcasting_probabilistic.py --train ConvLSTM ConvGRU exceedance --weights w
    PYTHONPATH=src python benchmarks/nowcasting_probabilistic.py --train TrajGRU --weights w
    PYTHONPATH=src python benchmarks/nowcasting_probabilistic.py --train "extrapolation + ConvLSTM" \
        "learned ensemble" --weights w
    PYTHONPATH=src python benchmarks/nowcasting_probabilistic.py --evaluate --weights w --out results.json
"""

import argparse
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from convlstm.baselines import STEPS
from convlstm.data.synthetic.radar import SyntheticRadar
from convlstm.inference.ensemble import ensemble_forecast
from convlstm.metrics import ContingencyTable
from convlstm.metrics.field_scores import (
    EnsembleScores,
    FractionsSkillScore,
    ProbabilityScores,
    exceedance_from_deterministic,
    exceedance_from_ensemble,
)
from convlstm.models import ExceedanceForecaster, ExtrapolationNowcast, create_model, from_pretrained
from convlstm.tasks.losses import balanced_loss, crps_fair_loss, exceedance_loss, log_mse_loss
from convlstm.units import pixel_to_rain_rate
from convlstm.utils.atomic import atomic_write_text

THRESHOLDS = (0.5, 2.0, 5.0, 10.0, 30.0)
FSS_THRESHOLDS = (0.5, 2.0, 10.0)
FSS_SCALES = (1, 4, 8, 16)
RADAR = {"image_size": 32, "speed_range": (0.5, 1.5), "edge_rain_rate": 0.5, "context_frames": 5, "target_frames": 10}
BATCH = 4
HORIZON = 10
#: The synthetic radar's mean pixel at 48 x 48 (the deterministic networks start predicting it).
RADAR_MEAN = 0.067
SMALL = {"hidden_channels": [32, 32], "default_horizon": 10}
NETWORKS: dict[str, tuple[str, dict[str, Any]]] = {
    "ConvLSTM": ("shi2015_radar_convlstm", {**SMALL, "initial_mean": RADAR_MEAN}),
    "ConvGRU": ("shi2015_radar_convgru", {**SMALL, "initial_mean": RADAR_MEAN}),
    "TrajGRU": ("trajgru_radar_small", {"initial_mean": RADAR_MEAN, "default_horizon": 10}),
}
#: Networks that read and forecast rain rates (mm/h): pysteps' extrapolation plus a learned correction.
RAIN_RATE_NETWORKS: dict[str, tuple[str, dict[str, Any]]] = {
    "extrapolation + ConvLSTM": ("extrapolation_nowcast", {"default_horizon": HORIZON}),
    "learned ensemble": ("extrapolation_nowcast_ensemble", {"default_horizon": HORIZON}),
}
#: Members the learned ensemble is trained with (the fair CRPS), as its real-radar recipe.
TRAINING_MEMBERS = 8


def rain(frames: Tensor) -> Tensor:
    return pixel_to_rain_rate(frames.double().clamp(0, 1), "hko7")


def train(model: nn.Module, loss_fn: Callable[[nn.Module, Tensor, Tensor], Tensor], steps: int, seed: int) -> float:
    """Adam (lr 0.002, cosine decay) on fresh training sequences; returns seconds per step."""
    torch.manual_seed(seed)
    data = SyntheticRadar(split="train", seed=seed, num_sequences=steps * BATCH, **RADAR)  # type: ignore[arg-type]
    loader = DataLoader(data, batch_size=BATCH, shuffle=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.002)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    model.train()
    start = time.perf_counter()
    for step, batch in enumerate(loader):
        if step >= steps:
            break
        loss = loss_fn(model, batch["context"], batch["target"])
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % 100 == 0:
            logging.info("step %d loss %.4f", step, loss.item())
    return (time.perf_counter() - start) / steps


def deterministic_loss(model: nn.Module, context: Tensor, target: Tensor) -> Tensor:
    return balanced_loss(model(context, target.shape[1]), target)


def rain_rate_loss(model: nn.Module, context: Tensor, target: Tensor) -> Tensor:
    """The real-radar recipe's loss in rain rates: log-MSE for one forecast, the fair CRPS for an ensemble."""
    assert isinstance(model, ExtrapolationNowcast)
    rain_context, rain_target = rain(context).float(), rain(target).float()
    if model.config.noise_channels:
        return crps_fair_loss(model.ensemble(rain_context, target.shape[1], members=TRAINING_MEMBERS), rain_target)
    return log_mse_loss(model(rain_context, target.shape[1]), rain_target)


def probabilistic_loss(model: nn.Module, context: Tensor, target: Tensor) -> Tensor:
    assert isinstance(model, ExceedanceForecaster)
    return exceedance_loss(model.logits(context, target.shape[1]), target, thresholds=THRESHOLDS)


def summarize(scores: dict[str, Tensor]) -> dict[str, Any]:
    return {k: (v.tolist() if v.ndim else float(v)) for k, v in scores.items()}


def train_and_save(name: str, steps: int, seed: int, weights: Path) -> None:
    """Trains one network (a key of NETWORKS, or "exceedance") and saves it with its seconds per step."""
    if name == "exceedance":
        model: nn.Module = ExceedanceForecaster("shi2015_radar_convlstm", SMALL, thresholds=THRESHOLDS)
        loss_fn = probabilistic_loss
    elif name in RAIN_RATE_NETWORKS:
        builder, overrides = RAIN_RATE_NETWORKS[name]
        model, loss_fn = create_model(builder, **overrides), rain_rate_loss
    else:
        builder, overrides = NETWORKS[name]
        model, loss_fn = create_model(builder, **overrides), deterministic_loss
    logging.info("training %s (%d parameters)", name, sum(p.numel() for p in model.parameters()))
    seconds = train(model, loss_fn, steps, seed)
    model.save_pretrained(weights / name)  # type: ignore[operator]
    atomic_write_text(weights / name / "timing.json", json.dumps({"seconds_per_step": seconds, "steps": steps}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", nargs="*", default=[], choices=[*NETWORKS, *RAIN_RATE_NETWORKS, "exceedance"])
    parser.add_argument("--evaluate", action="store_true")
    parser.add_argument("--weights", type=Path, default=Path("nowcasting_probabilistic_weights"))
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--test", type=int, default=32, help="test sequences")
    parser.add_argument("--members", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("nowcasting_probabilistic.json"))
    parser.add_argument("--figures", type=Path, default=None, help="folder for the reliability / rank PNGs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    for name in args.train:
        train_and_save(name, args.steps, args.seed, args.weights)
    if args.evaluate:
        evaluate(args)


def evaluate(args: argparse.Namespace) -> None:
    """Scores the saved networks and the baselines on the test sequences; writes JSON and prints tables."""
    horizon = HORIZON
    test = SyntheticRadar(split="test", seed=args.seed, num_sequences=args.test, **RADAR)  # type: ignore[arg-type]
    batches = list(DataLoader(test, batch_size=8))
    deterministic: dict[str, nn.Module] = {name: from_pretrained(args.weights / name).eval() for name in NETWORKS}
    timings = {
        name: json.loads((args.weights / name / "timing.json").read_text())["seconds_per_step"]
        for name in [*NETWORKS, *RAIN_RATE_NETWORKS, "exceedance"]
    }
    in_rain_rates = {name: from_pretrained(args.weights / name).eval() for name in RAIN_RATE_NETWORKS}
    deterministic["extrapolation + ConvLSTM"] = in_rain_rates["extrapolation + ConvLSTM"]
    learned_ensemble = in_rain_rates["learned ensemble"]
    assert isinstance(learned_ensemble, ExtrapolationNowcast)
    deterministic["optical flow"] = create_model("optical_flow", default_horizon=horizon)
    deterministic["persistence"] = create_model("persistence", default_horizon=horizon)
    exceedance = from_pretrained(args.weights / "exceedance").eval()
    steps_model = create_model("steps", members=args.members, default_horizon=horizon)
    assert isinstance(steps_model, STEPS)

    results: dict[str, Any] = {"deterministic": {}, "probabilistic": {}, "ensemble": {}, "reliability": {}}
    tables = {n: ContingencyTable(thresholds=THRESHOLDS, lead_times=horizon) for n in deterministic}
    fss = {
        n: FractionsSkillScore(thresholds=FSS_THRESHOLDS, scales=FSS_SCALES, lead_times=horizon) for n in deterministic
    }
    ensembles = ("STEPS", "ConvLSTM ensemble", "learned ensemble")
    probabilistic = ["ConvLSTM exceedance", *ensembles, "optical flow, thresholded"]
    prob = {n: ProbabilityScores(thresholds=THRESHOLDS, lead_times=horizon) for n in probabilistic}
    ens = {n: EnsembleScores(members=args.members, lead_times=horizon) for n in ensembles}
    with torch.no_grad():
        for index, batch in enumerate(batches):
            context, target = batch["context"], batch["target"]
            truth = rain(target)
            flow = None
            rain_context = rain(context).float()
            for name, model in deterministic.items():
                if name in RAIN_RATE_NETWORKS:
                    forecast = model(rain_context, horizon).double()
                else:
                    forecast = rain(model(context, horizon))
                flow = forecast if name == "optical flow" else flow
                tables[name].update(forecast, truth)
                fss[name].update(forecast, truth)
            assert flow is not None
            prob["optical flow, thresholded"].update(exceedance_from_deterministic(flow, THRESHOLDS), truth)
            prob["ConvLSTM exceedance"].update(exceedance(context, horizon).double(), truth)
            members = {
                "STEPS": rain(steps_model.ensemble(context, horizon)),
                "ConvLSTM ensemble": rain(
                    ensemble_forecast(deterministic["ConvLSTM"], context, members=args.members, seed=index)
                ),
                "learned ensemble": learned_ensemble.ensemble(
                    rain_context, horizon, members=args.members, generator=torch.Generator().manual_seed(index)
                ).double(),
            }
            for name, values in members.items():
                prob[name].update(exceedance_from_ensemble(values, THRESHOLDS), truth)
                ens[name].update(values, truth)
            logging.info("scored batch %d of %d", index + 1, len(batches))
    for name in deterministic:
        results["deterministic"][name] = {**summarize(tables[name].compute()), **summarize(fss[name].compute())}
    for name in probabilistic:
        results["probabilistic"][name] = summarize(prob[name].compute())
        results["reliability"][name] = {f"{t:g}": prob[name].reliability(t) for t in (0.5, 2.0, 10.0)}
    for name, scores in ens.items():
        results["ensemble"][name] = {**summarize(scores.compute()), "rank_histogram": scores.rank_histogram()}
    results["seconds_per_training_step"] = timings
    results["settings"] = {"test_sequences": args.test, "members": args.members, "batch": BATCH, **RADAR}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(results, indent=1, default=float) + "\n")
    if args.figures is not None:
        from convlstm.report.probabilistic_figures import plot_rank_histograms, plot_reliability_diagram

        for label in ("0.5", "2"):
            curves = {name: results["reliability"][name][label] for name in probabilistic}
            plot_reliability_diagram(
                curves, args.figures / f"nowcasting_reliability_{label}.png", title=f"P(rain >= {label} mm/h)"
            )
        plot_rank_histograms(
            {name: s["rank_histogram"] for name, s in results["ensemble"].items()},
            args.figures / "nowcasting_rank_histograms.png",
        )
    print_tables(results)


def print_tables(results: dict[str, Any]) -> None:
    """Markdown tables of the headline numbers."""
    det = results["deterministic"]
    print("| method | " + " | ".join(f"CSI@{t:g}" for t in THRESHOLDS) + " | HSS@0.5 | FSS@2 1/4/8/16 px |")
    print("|---" * (len(THRESHOLDS) + 3) + "|")
    for name, s in det.items():
        fss = "/".join(f"{s[f'fss@2_{k}px']:.3f}" for k in FSS_SCALES)
        csi = " | ".join(f"{s[f'csi@{t:g}']:.3f}" for t in THRESHOLDS)
        print(f"| {name} | {csi} | {s['hss@0.5']:.3f} | {fss} |")
    print()
    print(
        "| method | "
        + " | ".join(f"Brier@{t:g}" for t in THRESHOLDS)
        + " | "
        + " | ".join(f"ROC@{t:g}" for t in THRESHOLDS)
        + " |"
    )
    print("|---" * (2 * len(THRESHOLDS) + 1) + "|")
    for name, s in results["probabilistic"].items():
        brier = " | ".join(f"{s[f'brier@{t:g}']:.4f}" for t in THRESHOLDS)
        roc = " | ".join(f"{s[f'roc_auc@{t:g}']:.3f}" for t in THRESHOLDS)
        print(f"| {name} | {brier} | {roc} |")
    print()
    for name, s in results["ensemble"].items():
        hist = ", ".join(f"{v:.3f}" for v in s["rank_histogram"])
        print(f"{name}: CRPS {s['crps']:.4f} mm/h; rank histogram [{hist}]")
    print("seconds per training step:", {k: round(v, 3) for k, v in results["seconds_per_training_step"].items()})


if __name__ == "__main__":
    main()
