"""Scene cuts: where footage jumps from one shot to the next, so that no window spans the jump.

A window that spans a cut asks a forecaster to predict a new scene from the old one. No model can, and any blurred
guess beats copying the last frame there, so such windows flatter every model against copy-last-frame, in training
and in testing. The video and image-folder sources therefore split each recording at its cuts before cutting
windows (see `split_at_scene_cuts`).

The test compares consecutive frames. Each frame is turned gray, shrunk by block means to about 32 x 32 cells (small
motions and sensor noise average out) and has its own mean subtracted (a global brightness change, an exposure step
or a flash, is no cut). The difference of two frames is the mean absolute difference of their cells, on the [0, 1]
scale of the pixel values. A cut lies between frames t - 1 and t when that difference exceeds both

- ``threshold`` (default 0.1): a tenth of the full pixel range, on average over the whole frame. A new shot replaces
  most of the picture; camera motion and moving objects shift it, which the shrinking mostly averages away.
- ``factor`` (default 3) times the median difference of the recording: footage that changes a lot from every frame
  to the next (noise, a low frame rate, ``frame_step``) is cut only where it changes far more than usual.

The defaults were chosen on real sample footage (docs/explanation/data.md lists what they find there): its cuts lie
above 0.1, its fastest motions (cars passing close by, a hand moved before the lens) below it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from convlstm.data.core.windows import FrameArray, Recording
from convlstm.utils.checks import check_number

logger = logging.getLogger(__name__)

#: Default smallest difference of two consecutive frames (mean absolute, [0, 1] scale) that counts as a cut.
CUT_THRESHOLD = 0.1
#: Default multiple of a recording's median frame difference that a cut must also exceed.
MEDIAN_FACTOR = 3.0
#: Cells per side that frames are shrunk to before they are compared.
CELLS = 32


def _shrink(frames: np.ndarray) -> np.ndarray:
    """(t, C, H, W) uint8 or float frames -> (t, h, w) gray block means, each frame's mean subtracted."""
    t, channels, height, width = frames.shape
    block_h, block_w = max(height // CELLS, 1), max(width // CELLS, 1)
    h, w = height // block_h, width // block_w
    # One pass over the pixels: channels and blocks summed at once (much faster than a gray image first).
    blocks = frames[:, :, : h * block_h, : w * block_w].reshape(t, channels, h, block_h, w, block_w)
    cells = blocks.sum(axis=(1, 3, 5), dtype=np.float64) / (channels * block_h * block_w)
    if frames.dtype == np.uint8:
        cells /= 255
    return cells - cells.mean(axis=(1, 2), keepdims=True)


def frame_differences(frames: FrameArray, *, chunk_frames: int = 16) -> np.ndarray:
    """The difference of each frame from the one before it, as the scene-cut test measures it.

    Args:
        frames: (T, C, H, W) uint8 (0 to 255) or floating-point (0 to 1) frames; any array-like that reads a time
            slice as numpy (an array, a memmap, image files read on demand). Read ``chunk_frames`` at a time.
        chunk_frames: frames read and shrunk at once (bounds the memory of full-resolution footage).

    Returns:
        (T - 1,) float64: entry t - 1 compares frame t with frame t - 1 (mean absolute difference of the gray,
        shrunk, mean-free frames on the [0, 1] scale).

    Raises:
        ValueError: frames are not 4-dimensional, or neither uint8 nor floating point.
    """
    shape = tuple(frames.shape)
    if len(shape) != 4:
        raise ValueError(f"frames must have 4 dimensions (T, C, H, W), got shape {shape}")
    differences: list[np.ndarray] = []
    previous: np.ndarray | None = None
    for start in range(0, shape[0], chunk_frames):
        chunk = np.asarray(frames[start : start + chunk_frames])
        if chunk.dtype != np.uint8 and chunk.dtype.kind != "f":
            raise ValueError(f"frames must be uint8 (0 to 255) or floating point (0 to 1), got dtype {chunk.dtype}")
        cells = _shrink(chunk)
        if previous is not None:
            cells = np.concatenate([previous, cells])
        differences.append(np.abs(np.diff(cells, axis=0)).mean(axis=(1, 2)))
        previous = cells[-1:]
    return np.concatenate(differences) if differences else np.zeros(0)


def find_scene_cuts(
    frames: FrameArray, *, threshold: float = CUT_THRESHOLD, factor: float = MEDIAN_FACTOR
) -> list[int]:
    """The frames t that begin a new shot: a cut lies between frame t - 1 and frame t.

    A cut is where the difference of consecutive frames (see `frame_differences`) exceeds both ``threshold``
    and ``factor`` times the median difference of the recording (the module docstring gives the reasons). The median
    needs a few ordinary frame pairs beside a cut, so a recording of 3 frames or fewer is never cut.

    Args:
        frames: (T, C, H, W) uint8 (0 to 255) or floating-point (0 to 1) frames, read a time slice at a time.
        threshold: smallest mean absolute difference of two frames (gray, shrunk, mean-free; [0, 1] scale) that is
            a cut.
        factor: multiple of the recording's median difference that a cut must also exceed.

    Returns:
        The indices t in increasing order, each in 1 .. T - 1.

    Raises:
        ValueError: a negative or non-finite threshold or factor, or frames of the wrong dimensions or dtype.
    """
    limit = check_number("threshold", threshold, 0)
    factor = check_number("factor", factor, 0)
    differences = frame_differences(frames)
    if differences.size:
        limit = max(limit, factor * float(np.median(differences)))
    return (np.flatnonzero(differences > limit) + 1).tolist()


class _RecordingFrames:
    """The frames of a recording (a segment too) as an array-like, without its mask."""

    def __init__(self, recording: Recording) -> None:
        self.recording = recording
        self.shape = (recording.num_frames, *tuple(recording.frames.shape)[1:])

    def __getitem__(self, time: slice) -> np.ndarray:
        start, stop, _ = time.indices(self.shape[0])
        offset = self.recording.start
        return np.asarray(self.recording.frames[offset + start : offset + stop])


@dataclass(frozen=True)
class CutSplit:
    """Recordings split at their scene cuts.

    Attributes:
        recordings: the parts between cuts that hold at least one window, and the recordings without a cut.
        cuts: recording name -> its cut frames (relative to the recording), for recordings with a cut.
        windows_before: windows of the recordings before the split (stride apart from each one's first frame).
        dropped_windows: of those, the windows that spanned a cut.
    """

    recordings: list[Recording]
    cuts: dict[str, list[int]]
    windows_before: int
    dropped_windows: int


def _spanning(num_frames: int, cuts: list[int], window_frames: int, stride: int) -> tuple[int, int]:
    """(windows, windows that hold frames from both sides of a cut) of one recording."""
    starts = np.arange(0, num_frames - window_frames + 1, stride)[:, None]  # (windows, 1)
    at = np.asarray(cuts)[None, :]  # (1, cuts)
    spans = ((starts < at) & (at < starts + window_frames)).any(axis=1)
    return len(starts), int(spans.sum())


def split_at_scene_cuts(
    recordings: list[Recording],
    *,
    window_frames: int,
    stride: int,
    threshold: float = CUT_THRESHOLD,
    what: str = "recordings",
) -> CutSplit:
    """Split each recording at its scene cuts ([`find_scene_cuts`][convlstm.data.find_scene_cuts]) into recordings of
    their own.

    Parts shorter than one window are left out. A recording too short for a window even whole, or malformed, is
    passed on untouched, so that the window dataset reports it as it would without cuts. One INFO line says how many
    cuts were found and how many windows they removed.

    Args:
        recordings: the recordings (or time segments) of one split.
        window_frames: frames per window (context_frames + target_frames).
        stride: frames between the starts of consecutive windows.
        threshold: as in [`find_scene_cuts`][convlstm.data.find_scene_cuts].
        what: what the recordings are, for the log line and errors ("videos of data/clips, split 'train'").

    Raises:
        ValueError: every recording is left without a window once split at its cuts.
    """
    threshold = check_number("cut_threshold", threshold, 0)
    kept: list[Recording] = []
    cuts: dict[str, list[int]] = {}
    before = dropped = 0
    for rec in recordings:
        try:
            rec.validate()
        except ValueError:
            kept.append(rec)
            continue
        if rec.num_frames < window_frames:
            kept.append(rec)
            continue
        found = find_scene_cuts(_RecordingFrames(rec), threshold=threshold)
        windows, spanning = _spanning(rec.num_frames, found, window_frames, stride)
        before, dropped = before + windows, dropped + spanning
        if not found:
            kept.append(rec)
            continue
        cuts[rec.name] = found
        edges = [0, *found, rec.num_frames]
        kept += [rec.segment(a, b) for a, b in pairwise(edges) if b - a >= window_frames]
    count = sum(len(c) for c in cuts.values())
    logger.info(
        "scene cuts: %d in %d of %d %s (cut_threshold=%g); %d of their %d windows spanned a cut and were left out",
        count,
        len(cuts),
        len(recordings),
        what,
        threshold,
        dropped,
        before,
    )
    if recordings and not kept:
        raise ValueError(
            f"no window of {window_frames} frames is left in the {len(recordings)} {what} once they are split at "
            f"their {count} scene cuts (cut_threshold={threshold}); use shorter windows, a larger cut_threshold or "
            "split_at_cuts=False"
        )
    return CutSplit(kept, cuts, before, dropped)
