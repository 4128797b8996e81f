"""Sequences stored as video files (mp4, avi, ...), decoded with the ffmpeg binary that imageio-ffmpeg ships.

Each video is one recording, split at its scene cuts (see convlstm.data.core.scene_cuts) so that no window spans one.
Videos are decoded once, when the dataset is built, into uint8 arrays kept in memory (optionally every k-th frame,
optionally resized by ffmpeg); the cuts are found on those arrays. For archives larger than memory, convert them to
HDF5 or .npy once and use those loaders. Values are scaled to [0, 1].

    data = VideoSequences("ucsd_ped2/train", context_frames=4, target_frames=1, size=(128, 128), grayscale=True)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from convlstm.data.core.layout import to_tchw
from convlstm.data.core.scene_cuts import CUT_THRESHOLD, split_at_scene_cuts
from convlstm.data.core.splits import RecordingSplit, Splitter, build_split
from convlstm.data.core.windows import Recording, Transform, WindowDataset, WindowOptions
from convlstm.utils.checks import check_bool, check_int

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


def read_video(
    path: str | os.PathLike[str],
    *,
    grayscale: bool = False,
    frame_step: int = 1,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Decode a video file into uint8 frames (T, C, H, W), C = 1 (grayscale) or 3 (RGB).

    Args:
        path: the video file.
        grayscale: decode to one luminance channel instead of RGB.
        frame_step: keep every frame_step-th frame, starting with the first.
        size: (height, width) to scale the frames to (ffmpeg's area filter); None keeps the stored size.

    Raises:
        FileNotFoundError: no such file.
        ValueError: ffmpeg cannot decode it, or it holds no frame.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video file not found: {path}")
    check_int("frame_step", frame_step, 1)
    pix_fmt, channels = ("gray", 1) if grayscale else ("rgb24", 3)
    # passthrough: every stored frame once. ffmpeg's default for this output is a constant rate, which repeats
    # frames of a variable-frame-rate file to fill its gaps (a 68-frame clip came out as 449 frames).
    output_params = ["-fps_mode", "passthrough"]
    if size is not None:
        output_params += ["-vf", f"scale={size[1]}:{size[0]}:flags=area"]
    frames = []
    try:
        reader = imageio_ffmpeg.read_frames(
            str(path), pix_fmt=pix_fmt, bits_per_pixel=8 * channels, output_params=output_params
        )
        width, height = next(reader)["size"]
        for i, buffer in enumerate(reader):
            if i % frame_step == 0:
                frames.append(np.frombuffer(buffer, dtype=np.uint8).reshape(height, width, channels))
    except (OSError, RuntimeError, StopIteration) as error:
        raise ValueError(f"{path}: ffmpeg could not decode the video ({error})") from error
    if not frames:
        raise ValueError(f"{path}: the video holds no frame")
    return to_tchw(np.stack(frames), "THWC")


def list_videos(root: Path) -> list[Path]:
    """The video files in a folder (not recursive), sorted by name."""
    return sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)


class VideoSequences(WindowDataset):
    """Windows over video files, one recording per video, scaled to [0, 1].

    The window arguments (``context_frames``, ``target_frames``, ``stride``, ``transform``, ``skip_invalid``) are the
    fields of [`WindowOptions`][convlstm.data.WindowOptions], which documents them.

    Args:
        root: a folder of videos, one video file, or a list of video files.
        split: "train" (the default), "val", "test" (keys of split_by's fractions) or "all".
        split_by: RecordingSplit() (default: whole videos) or TimeBlockSplit(...) (blocks of each video).
        grayscale: decode to one channel instead of RGB.
        frame_step: keep every frame_step-th decoded frame.
        size: (height, width) to resize the frames to.
        split_at_cuts: split each video (each time block with TimeBlockSplit) at its scene cuts into recordings of
            their own, so that no window spans a cut; parts shorter than a window are left out. The cuts are found
            on the decoded frames in memory ([`find_scene_cuts`][convlstm.data.find_scene_cuts]), and an INFO log
            line counts them and the windows they removed.
        cut_threshold: the smallest difference of consecutive frames that is a cut (mean absolute difference of
            the gray, shrunk, mean-free frames, on the [0, 1] scale); a cut must also exceed 3 times the video's
            median difference.

    Attributes:
        scene_cuts: recording name -> the frames that begin a new shot (relative to that recording), for the
            recordings of this split with a cut; empty with split_at_cuts=False.
        dropped_windows: the windows that spanned a cut, counted on this split's recordings before they were split
            (0 with split_at_cuts=False).
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        split: str = "train",
        *,
        context_frames: int,
        target_frames: int,
        split_by: Splitter | None = None,
        stride: int = 1,
        transform: Transform | None = None,
        grayscale: bool = False,
        frame_step: int = 1,
        size: tuple[int, int] | None = None,
        skip_invalid: bool = False,
        split_at_cuts: bool = True,
        cut_threshold: float = CUT_THRESHOLD,
    ) -> None:
        window = WindowOptions(
            context_frames=context_frames,
            target_frames=target_frames,
            stride=stride,
            transform=transform,
            value_scale=1 / 255,
            skip_invalid=skip_invalid,
        )
        check_bool("split_at_cuts", split_at_cuts)
        if isinstance(root, str | os.PathLike):
            root = Path(root)
            if not root.exists():
                raise FileNotFoundError(
                    f"video root not found: {root} (expected a folder of videos or one video file, "
                    f"suffixes {VIDEO_SUFFIXES})"
                )
            paths = list_videos(root) if root.is_dir() else [root]
            if not paths:
                raise ValueError(f"{root}: no video files with suffixes {VIDEO_SUFFIXES}")
            place = str(root)
        else:
            paths = [Path(p) for p in root]
            place = f"{len(paths)} files"

        def build(path: str) -> list[Recording]:
            frames = read_video(path, grayscale=grayscale, frame_step=frame_step, size=size)
            return [Recording(name=Path(path).name, frames=frames, source=path)]

        by = split_by or RecordingSplit()
        recordings = build_split([str(p) for p in paths], build, split, by, skip_invalid=skip_invalid, what="videos")
        self.scene_cuts: dict[str, list[int]] = {}
        self.dropped_windows = 0
        if split_at_cuts:
            cut = split_at_scene_cuts(
                recordings,
                window_frames=window.window_frames,
                stride=window.stride,
                threshold=cut_threshold,
                what=f"videos ({split!r} split of {place})",
            )
            recordings, self.scene_cuts, self.dropped_windows = cut.recordings, cut.cuts, cut.dropped_windows
        super().__init__(recordings, window)
