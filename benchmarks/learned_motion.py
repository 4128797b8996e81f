"""How well an advection-head model has learned the motion: its velocities against pysteps' Lucas-Kanade motion.

Usage:
    python benchmarks/learned_motion.py --run-dir DIR [--sequences N]

DIR is a run directory of `convlstm fit` whose model has ``head="advection"`` (e.g. ``radar_convlstm_advection``).
For the first N test sequences of its recipe, the model's velocity at each lead time and the Lucas-Kanade motion of
the last three context frames (the optical-flow baseline's) are averaged over the pixels where the last context
frame rains. Printed per lead time: the slope of the least-squares fit of the model's mean velocities on Lucas-Kanade's
through zero (1: the same speed; below 1: slower) and their cosine similarity (1: the same direction).
Needs the nowcast extra (pysteps).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from convlstm.baselines.optical_flow import OpticalFlow
from convlstm.experiment import build_dataset, load_recipe
from convlstm.models import from_pretrained
from convlstm.models.advection_head import AdvectionHead


def wet_mean(field: Tensor, wet: Tensor) -> Tensor:
    """Mean of ``field`` (..., 2, H, W) over the pixels where ``wet`` (H, W) is true: (..., 2)."""
    weight = wet.to(field.dtype)
    return (field * weight).sum(dim=(-2, -1)) / weight.sum().clamp_min(1.0)


def mean_velocities(run_dir: Path, sequences: int) -> tuple[Tensor, Tensor]:
    """(model (N, K, 2), Lucas-Kanade (N, 2)) mean velocities over the raining pixels, x then y, px per frame."""
    recipe = load_recipe(run_dir / "recipe.yaml", [])
    model = from_pretrained(run_dir / "model").eval()
    head = getattr(model, "head", None)
    if not isinstance(head, AdvectionHead):
        raise SystemExit(f"{run_dir}/model has no advection head (got {type(head).__name__}); nothing to compare")
    captured: list[Tensor] = []  # the forecaster states the head reads, (1, K, F, h, w)
    hook = head.register_forward_pre_hook(lambda _module, inputs: captured.append(inputs[0]))
    dataset = build_dataset(recipe, "test")
    flow = OpticalFlow()
    model_means, flow_means = [], []
    with torch.no_grad():
        for index in range(min(sequences, len(dataset))):  # type: ignore[arg-type]
            context = dataset[index]["context"].unsqueeze(0)  # (1, T, 1, H, W)
            captured.clear()
            model(context)
            velocity = head.velocity_field(captured[0][0], context.shape[-2:])  # (K, 2, H, W)
            wet = context[0, -1, 0] > 0
            model_means.append(wet_mean(velocity, wet))  # (K, 2)
            flow_means.append(wet_mean(flow.motion(context)[0, 0], wet))  # (2,)
    hook.remove()
    return torch.stack(model_means), torch.stack(flow_means)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--sequences", type=int, default=16)
    args = parser.parse_args(argv)
    if args.sequences < 1:
        parser.error(f"--sequences must be >= 1, got {args.sequences}")
    if not (args.run_dir / "model").is_dir():
        parser.error(f"{args.run_dir} holds no trained model (expected {args.run_dir / 'model'}); run convlstm fit")
    learned, lucas_kanade = mean_velocities(args.run_dir, args.sequences)
    print(f"{len(learned)} test sequences; model against Lucas-Kanade, mean velocity over the raining pixels")
    print("| lead time | slope | cosine |\n|---:|---:|---:|")
    reference = lucas_kanade.flatten()
    for lead in range(learned.shape[1]):
        ours = learned[:, lead].flatten()
        slope = (ours @ reference) / (reference @ reference).clamp_min(1e-12)
        cosine = F.cosine_similarity(ours, reference, dim=0)
        print(f"| {lead + 1} | {slope:.2f} | {cosine:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
