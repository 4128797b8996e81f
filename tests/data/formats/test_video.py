import logging
import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import torch

from convlstm.data.core.splits import TimeBlockSplit
from convlstm.data.formats.video import VideoSequences, read_video
from tests.data.core.test_scene_cuts import two_scenes

FRAMES = 12
LEVELS = np.linspace(20, 230, FRAMES).round().astype(np.uint8)  # frame i is a flat gray of LEVELS[i]


def write_video(path: Path, codec: str, frames: int = FRAMES, size: tuple[int, int] = (32, 48)) -> None:
    """Write flat gray frames (height, width) = size with imageio-ffmpeg's ffmpeg."""
    height, width = size
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (width, height),
        codec=codec,
        pix_fmt_out="yuvj420p" if codec == "mjpeg" else "yuv420p",
        fps=10,
        quality=9,
        macro_block_size=1,
    )
    writer.send(None)
    for level in LEVELS[:frames]:
        writer.send(np.full((height, width, 3), level, dtype=np.uint8).tobytes())
    writer.close()


@pytest.fixture(params=[("clip.mp4", "libx264"), ("clip.avi", "mjpeg")], ids=["mp4", "avi"])
def video(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    name, codec = request.param
    write_video(tmp_path / name, codec)
    return tmp_path / name


def test_decode_frame_count_and_values(video: Path) -> None:
    frames = read_video(video)
    assert frames.shape == (FRAMES, 3, 32, 48) and frames.dtype == np.uint8
    np.testing.assert_allclose(frames.mean(axis=(1, 2, 3)), LEVELS, atol=4)  # lossy codecs


def test_variable_frame_rate_video_gives_each_stored_frame_once(tmp_path: Path) -> None:
    write_video(tmp_path / "steady.mp4", "libx264")
    # Re-timed so that frame n is shown at n^2 / 10 s: gaps of 0.1 s to 2.3 s, as in a recording that paused.
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(tmp_path / "steady.mp4")]
    command += ["-vf", "setpts=N*N/10/TB", "-fps_mode", "passthrough", "-c:v", "ffv1", str(tmp_path / "vfr.mkv")]
    subprocess.run(command, check=True)
    frames = read_video(tmp_path / "vfr.mkv")
    assert frames.shape == (FRAMES, 3, 32, 48)  # a constant-rate decode would repeat frames to fill the gaps
    np.testing.assert_allclose(frames.mean(axis=(1, 2, 3)), LEVELS, atol=4)  # lossy codec on the way


def test_grayscale_stride_and_resize(video: Path) -> None:
    frames = read_video(video, grayscale=True, frame_step=3, size=(16, 24))
    assert frames.shape == (FRAMES // 3, 1, 16, 24)
    np.testing.assert_allclose(frames.mean(axis=(1, 2, 3)), LEVELS[::3], atol=4)


def test_dataset_items(video: Path) -> None:
    ds = VideoSequences(video, split="all", context_frames=3, target_frames=2, stride=2)
    assert len(ds) == len(range(0, FRAMES - 5 + 1, 2))
    item = ds[1]  # frames 2..6
    assert item["context"].shape == (3, 3, 32, 48)
    measured = torch.cat([item["context"], item["target"]]).mean(dim=(1, 2, 3)) * 255
    assert torch.allclose(measured, torch.from_numpy(LEVELS[2:7]).float(), atol=4)


def test_folder_of_videos_split_by_time_blocks(tmp_path: Path) -> None:
    write_video(tmp_path / "a.mp4", "libx264", frames=10)
    write_video(tmp_path / "b.avi", "mjpeg", frames=10)
    by = TimeBlockSplit({"train": 0.6, "test": 0.4})
    train = VideoSequences(tmp_path, split="train", split_by=by, context_frames=2, target_frames=1, grayscale=True)
    test = VideoSequences(tmp_path, split="test", split_by=by, context_frames=2, target_frames=1, grayscale=True)
    assert [r.name for r in train.recordings] == ["a.mp4[0:6]", "b.avi[0:6]"]
    assert [r.name for r in test.recordings] == ["a.mp4[6:10]", "b.avi[6:10]"]


def test_bad_videos(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(FileNotFoundError, match=r"none\.mp4"):
        read_video(tmp_path / "none.mp4")
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match=r"broken\.mp4.*could not decode"):
        read_video(tmp_path / "broken.mp4")
    write_video(tmp_path / "short.mp4", "libx264", frames=2)
    write_video(tmp_path / "good.mp4", "libx264", frames=6)
    with caplog.at_level(logging.WARNING):
        ds = VideoSequences(tmp_path, split="all", context_frames=2, target_frames=1, skip_invalid=True)
    assert [r.name for r in ds.recordings] == ["good.mp4"]
    assert "skipped 1 of 3 videos" in caplog.text and "broken.mp4" in caplog.text
    assert "short.mp4" in caplog.text and "too few frames" in caplog.text


def write_lossless(path: Path, video: np.ndarray) -> None:
    """(T, 3, H, W) uint8 frames into an FFV1 file: what is decoded is exactly what was written."""
    writer = imageio_ffmpeg.write_frames(
        str(path), video.shape[:1:-1], codec="ffv1", output_params=["-pix_fmt", "bgr0"], macro_block_size=1
    )
    writer.send(None)
    for frame in video.transpose(0, 2, 3, 1):
        writer.send(np.ascontiguousarray(frame))
    writer.close()


def window_frames(ds: VideoSequences, index: int) -> tuple[int, np.ndarray]:
    """The first frame of window `index` in its video and the window's frames (T, C, H, W) as uint8."""
    rec, start = ds.locate(index)
    item = ds[index]
    return rec.start + start, (torch.cat([item["context"], item["target"]]) * 255).round().byte().numpy()


def test_no_window_spans_a_scene_cut(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    video = two_scenes(12, 12)  # the second scene begins at frame 12
    write_lossless(tmp_path / "cut.mkv", video)
    with caplog.at_level(logging.INFO):
        ds = VideoSequences(tmp_path / "cut.mkv", split="all", context_frames=3, target_frames=2)
    assert [r.name for r in ds.recordings] == ["cut.mkv[0:12]", "cut.mkv[12:24]"]
    assert ds.scene_cuts == {"cut.mkv": [12]}
    assert len(ds) == 8 + 8 and ds.dropped_windows == 4  # 20 windows uncut; those starting at 8..11 span frame 12
    for index in range(len(ds)):
        start, frames = window_frames(ds, index)
        assert start + 5 <= 12 or start >= 12
        np.testing.assert_array_equal(frames, video[start : start + 5])
    assert "scene cuts: 1 in 1 of 1 videos" in caplog.text and "4 of their 20 windows" in caplog.text


def test_without_split_at_cuts_every_window_is_kept(tmp_path: Path) -> None:
    video = two_scenes(12, 12)
    write_lossless(tmp_path / "cut.mkv", video)
    ds = VideoSequences(tmp_path / "cut.mkv", split="all", context_frames=3, target_frames=2, split_at_cuts=False)
    assert [r.name for r in ds.recordings] == ["cut.mkv"]
    assert len(ds) == 20 and ds.dropped_windows == 0 and ds.scene_cuts == {}
    start, frames = window_frames(ds, 10)
    assert start == 10 and np.array_equal(frames, video[10:15])


def test_scene_cuts_inside_time_blocks(tmp_path: Path) -> None:
    write_lossless(tmp_path / "cut.mkv", two_scenes(6, 18))
    by = TimeBlockSplit({"train": 0.5, "test": 0.5})  # train: frames 0..11 with the cut at 6; test: 12..23
    train = VideoSequences(tmp_path / "cut.mkv", split="train", split_by=by, context_frames=2, target_frames=1)
    test = VideoSequences(tmp_path / "cut.mkv", split="test", split_by=by, context_frames=2, target_frames=1)
    assert [r.name for r in train.recordings] == ["cut.mkv[0:12][0:6]", "cut.mkv[0:12][6:12]"]
    assert train.scene_cuts == {"cut.mkv[0:12]": [6]} and train.dropped_windows == 2
    assert [r.name for r in test.recordings] == ["cut.mkv[12:24]"] and test.scene_cuts == {}


def test_bad_cut_options_are_named(tmp_path: Path) -> None:
    write_lossless(tmp_path / "cut.mkv", two_scenes(6, 6))
    with pytest.raises(ValueError, match="cut_threshold must be a finite number >= 0, got -1"):
        VideoSequences(tmp_path / "cut.mkv", split="all", context_frames=2, target_frames=1, cut_threshold=-1)
    with pytest.raises(ValueError, match="split_at_cuts must be True or False, got str 'no'"):
        VideoSequences(tmp_path / "cut.mkv", split="all", context_frames=2, target_frames=1, split_at_cuts="no")
