"""Blend a convlstm nowcast with an NWP forecast in pysteps (STEPS blending with an external nowcast).

Synthetic fields on a 64 x 64 grid of 1 km pixels, 5 minutes apart: the radar observes an elliptical rain cell
moving east-south-east for five frames; the NWP forecast has the same system 6 km further south, broader and weaker,
as a coarse model would. The nowcast comes through pysteps' own interface, ``pysteps.nowcasts.get_method("convlstm")``
(importing ``convlstm.interop.pysteps`` registers it), as an ensemble in mm/h. ``pysteps.blending.steps.forecast``
then blends it with the NWP forecast, ``nowcasting_method="external_nowcast"``; with ``timestep_start_full_nwp_weight``
the weight hands over linearly to the NWP forecast from the second step, so the blend starts as the nowcast and ends
as the NWP forecast. The table gives, per lead time, the mean rain rate of each and how closely the blend follows the
nowcast and the NWP forecast (correlation of the ensemble means over the grid).

    python examples/pysteps_blending.py [--model persistence] [--members 3] [--steps 6]

``--model`` takes what the plugin's ``model=`` takes: a registered name, or a saved model's directory, such as the
``model/`` folder that ``convlstm fit -c nowcasting`` writes (``--model runs/nowcasting/model``). The default is the
``persistence`` baseline: no pretrained radar model ships with convlstm yet, and this way the script runs in seconds
without one. Needs the nowcast extra (``pip install convlstm[nowcast]``).
"""

import argparse
import contextlib
import datetime
import io
import tempfile
from dataclasses import dataclass

import numpy as np

import convlstm.interop.pysteps  # noqa: F401  (registers "convlstm" with pysteps)

# pysteps prints where it found its configuration file when first imported; keep that out of the table.
with contextlib.redirect_stdout(io.StringIO()):
    from pysteps import blending, nowcasts
    from pysteps.utils import transformation

SIZE = 64
OBSERVED = 5  # radar frames the nowcast starts from (the nowcasting recipe's context_frames)
MOTION = (1.5, 0.5)  # pixels per step in x (east) and y (south), the cell's and the NWP system's
THRESHOLD = 0.1  # mm/h: rain below it is dry, here and in the blending
DB_ZERO = -15.0  # what dry pixels become in dB (pysteps' usual: 5 dB below the threshold)
KM_PER_PIXEL, MINUTES_PER_STEP = 1.0, 5.0
HANDOVER_STEP = 2  # timestep_start_full_nwp_weight: from here the weight goes linearly to the NWP forecast


@dataclass
class Fields:
    """The inputs of the blending, in mm/h: radar (OBSERVED, m, n), NWP (steps + 1, m, n) from the last radar
    time on, and the motion (2, m, n) in pixels per step."""

    radar: np.ndarray
    nwp: np.ndarray
    velocity: np.ndarray


@dataclass
class Result:
    """The nowcast and the blend (members, steps, m, n) and the NWP forecast (steps + 1, m, n) in mm/h, and per lead
    time the correlation of the blend's ensemble mean with the nowcast's and with the NWP forecast."""

    nowcast: np.ndarray
    nwp: np.ndarray
    blend: np.ndarray
    with_nowcast: list[float]
    with_nwp: list[float]


def rain_cell(step: float, x: float, y: float, peak: float, radii: tuple[float, float]) -> np.ndarray:
    """(SIZE, SIZE) rain rates of an elliptical Gaussian cell centred at (x, y) at step 0, moved by MOTION per step."""
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    dx, dy = (cols - x - MOTION[0] * step) / radii[0], (rows - y - MOTION[1] * step) / radii[1]
    rain = peak * np.exp(-(dx**2 + dy**2))
    return np.where(rain >= THRESHOLD, rain, 0.0)


def synthetic_fields(steps: int) -> Fields:
    """The radar's cell over the last OBSERVED steps and the NWP's displaced, smoother cell over steps 0 .. steps."""
    radar = np.stack([rain_cell(t, 20, 28, 20.0, (8, 5)) for t in range(1 - OBSERVED, 1)])
    nwp = np.stack([rain_cell(t, 20, 34, 10.0, (10, 7)) for t in range(steps + 1)])
    # The true motion; with real data, pysteps.motion.get_method("lucaskanade") estimates it from the radar.
    velocity = np.stack([np.full((SIZE, SIZE), MOTION[0]), np.full((SIZE, SIZE), MOTION[1])])
    return Fields(radar, nwp, velocity)


def to_db(rain: np.ndarray) -> np.ndarray:
    """dB of rain rates, as pysteps' blending takes them (dry pixels at DB_ZERO)."""
    return transformation.dB_transform(rain, threshold=THRESHOLD, zerovalue=DB_ZERO)[0]


def from_db(values: np.ndarray) -> np.ndarray:
    return transformation.dB_transform(values, threshold=10 * np.log10(THRESHOLD), inverse=True)[0]


def blend(fields: Fields, nowcast: np.ndarray, steps: int, members: int, workdir: str) -> np.ndarray:
    """pysteps' STEPS blending of the nowcast (members, steps, m, n) with the NWP forecast, in mm/h."""
    # precip_nowcast starts at the analysis time, like precip_models: the last radar frame is its step 0.
    analysis = np.repeat(fields.radar[None, -1:], members, axis=0)
    precip_nowcast = to_db(np.concatenate([analysis, nowcast], axis=1))  # (members, steps + 1, m, n)
    velocity_models = np.broadcast_to(fields.velocity, (1, steps + 1, 2, SIZE, SIZE)).copy()
    # The blending reports every step on stdout; keep the table readable.
    with contextlib.redirect_stdout(io.StringIO()):
        blended = blending.steps.forecast(
            precip=to_db(fields.radar[-3:]),  # ar_order + 1 frames
            precip_models=to_db(fields.nwp)[None],  # one NWP model
            velocity=fields.velocity,
            velocity_models=velocity_models,
            timesteps=steps,
            timestep=MINUTES_PER_STEP,
            issuetime=datetime.datetime(2024, 6, 1, 12, 0),
            n_ens_members=members,
            precip_nowcast=precip_nowcast,
            nowcasting_method="external_nowcast",
            n_cascade_levels=4,  # 64 pixels hold four octaves of scales
            precip_thr=10 * np.log10(THRESHOLD),
            kmperpixel=KM_PER_PIXEL,
            # The members already carry the nowcast's spread, so no STEPS noise on top (pysteps' advice for an
            # ensemble nowcast) and no perturbed motion, which only the STEPS noise would follow.
            noise_method=None,
            vel_pert_method=None,
            mask_method=None,
            timestep_start_full_nwp_weight=HANDOVER_STEP,
            seed=0,
            outdir_path_skill=workdir,  # the blending writes its skill statistics here
        )
    return from_db(blended)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def run(model: str = "persistence", members: int = 3, steps: int = 6) -> Result:
    """The synthetic fields, the convlstm nowcast through pysteps' interface, and its blend with the NWP forecast."""
    fields = synthetic_fields(steps)
    forecast = nowcasts.get_method("convlstm")
    nowcast = forecast(fields.radar, fields.velocity, steps, members, model=model)  # (members, steps, m, n) mm/h
    with tempfile.TemporaryDirectory() as workdir:
        blended = blend(fields, nowcast, steps, members, workdir)
    nowcast_mean, blend_mean = nowcast.mean(axis=0), blended.mean(axis=0)
    return Result(
        nowcast=nowcast,
        nwp=fields.nwp,
        blend=blended,
        with_nowcast=[correlation(blend_mean[k], nowcast_mean[k]) for k in range(steps)],
        with_nwp=[correlation(blend_mean[k], fields.nwp[k + 1]) for k in range(steps)],
    )


def main(argv: list[str] | None = None) -> Result:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="persistence", help="registered name or saved model directory")
    parser.add_argument("--members", type=int, default=3, help="ensemble members")
    parser.add_argument("--steps", type=int, default=6, help=f"lead times, {MINUTES_PER_STEP:g} minutes each")
    args = parser.parse_args(argv)
    if args.steps <= HANDOVER_STEP:
        parser.error(f"--steps must be more than {HANDOVER_STEP}, where the handover to the NWP forecast starts")
    result = run(args.model, args.members, args.steps)
    print(f"convlstm nowcast ({args.model}, {args.members} members) blended with an NWP forecast by pysteps")
    print("lead (min)  nowcast mm/h  NWP mm/h  blend mm/h  blend~nowcast  blend~NWP")
    for k in range(args.steps):
        print(
            f"{(k + 1) * MINUTES_PER_STEP:10.0f}  {result.nowcast[:, k].mean():12.3f}  {result.nwp[k + 1].mean():8.3f}"
            f"  {result.blend[:, k].mean():10.3f}  {result.with_nowcast[k]:13.3f}  {result.with_nwp[k]:9.3f}"
        )
    return result


if __name__ == "__main__":
    main()
