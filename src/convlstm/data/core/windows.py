"""Recordings and the sliding windows cut from them: the core every file loader builds on.

A recording is one continuous sequence of frames, an array-like (T, C, H, W) that may be lazy (a memmap, an
h5py dataset, image files read on demand). A `WindowDataset` cuts windows of context_frames + target_frames
frames every `stride` frames, never across a recording boundary, and returns torchvision-style items:

    {"context": (T_in, C, H, W) float32, "target": (T_out, C, H, W) float32}

plus, when the recordings have masks or NaNs are masked, "context_mask" (T_in, C_m, H, W) and "mask"
(T_out, C_m, H, W) aligned with the target (1 = valid / foreground).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol, Required, TypedDict, Unpack, overload

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from convlstm.utils.checks import check_bool, check_choice, check_int, check_number

logger = logging.getLogger(__name__)

Item = dict[str, Tensor]
Transform = Callable[[Item], Item]
NanPolicy = Literal["raise", "mask"]
NAN_POLICIES = ("raise", "mask")


class FrameArray(Protocol):
    """What a recording's frames must offer: a (T, C, H, W) shape and reading a time slice as numpy."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    def __getitem__(self, index: slice, /) -> Any: ...


@dataclass(frozen=True, eq=False)  # compared by identity: fields hold arrays
class Recording:
    """One continuous sequence of frames, or a time segment [start, stop) of one.

    Attributes:
        name: unique name used in error messages and split bookkeeping.
        frames: (T, C, H, W) array-like; only the slices that windows need are read.
        mask: optional (T, C_m, H, W) array-like, C_m = 1 or C, 1 = valid / foreground.
        source: the file it came from, for error messages.
        start: first frame of the segment inside `frames`.
        stop: end of the segment (exclusive); None means the end of `frames`.
    """

    name: str
    frames: FrameArray
    mask: FrameArray | None = None
    source: str = ""
    start: int = 0
    stop: int | None = None

    @property
    def num_frames(self) -> int:
        """Frames of the recording between start and stop."""
        stop = self.frames.shape[0] if self.stop is None else self.stop
        return stop - self.start

    @property
    def where(self) -> str:
        """The recording and its file, for error messages."""
        return f"recording {self.name!r}" + (f" in {self.source}" if self.source and self.source != self.name else "")

    def segment(self, start: int, stop: int) -> Recording:
        """The frames [start, stop) of this recording (relative to it), as a recording of its own."""
        if not 0 <= start < stop <= self.num_frames:
            raise ValueError(f"{self.where}: segment [{start}, {stop}) is outside its {self.num_frames} frames")
        return replace(self, name=f"{self.name}[{start}:{stop}]", start=self.start + start, stop=self.start + stop)

    def read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Frames [start, stop) relative to this recording: ((t, C, H, W), mask (t, C_m, H, W) or None)."""
        time = slice(self.start + start, self.start + stop)
        frames = np.asarray(self.frames[time])
        mask = None if self.mask is None else np.asarray(self.mask[time])
        return frames, mask

    def validate(self) -> None:
        """Raise ValueError naming the recording when frames or mask do not have the expected dimensions."""
        shape = tuple(self.frames.shape)
        if len(shape) != 4:
            raise ValueError(f"{self.where}: frames must have 4 dimensions (T, C, H, W), got shape {shape}")
        if min(shape[1:]) < 1:
            raise ValueError(f"{self.where}: frames must have at least one channel, row and column, got shape {shape}")
        if self.mask is not None:
            mask_shape = tuple(self.mask.shape)
            t, c, h, w = shape
            if len(mask_shape) != 4 or mask_shape[0] != t or mask_shape[2:] != (h, w) or mask_shape[1] not in (1, c):
                raise ValueError(
                    f"{self.where}: mask must have shape ({t}, 1 or {c}, {h}, {w}) like its frames, got {mask_shape}"
                )


def log_skipped(skipped: Sequence[tuple[str, str]], total: int, what: str = "recordings") -> None:
    """Log how many of `total` items were skipped and why (skipped = [(name, reason), ...])."""
    if not skipped:
        return
    reasons = "; ".join(f"{name}: {reason}" for name, reason in skipped)
    logger.warning("skipped %d of %d %s: %s", len(skipped), total, what, reasons)


def build_recordings(
    candidates: Iterable[str],
    build: Callable[[str], Sequence[Recording]],
    *,
    skip_invalid: bool,
    what: str = "files",
) -> list[Recording]:
    """Build the recordings of each candidate (a file or folder); with skip_invalid, leave out those that raise.

    `build` raises ValueError / OSError (FileNotFoundError included) with a message naming the file and the
    problem; with skip_invalid that message is logged for each skipped candidate, with the count.
    """
    recordings: list[Recording] = []
    skipped: list[tuple[str, str]] = []
    names = list(candidates)
    for name in names:
        try:
            recordings.extend(build(name))
        except (ValueError, OSError) as error:
            if not skip_invalid:
                raise
            skipped.append((name, str(error)))
    log_skipped(skipped, len(names), what)
    return recordings


@dataclass(frozen=True, kw_only=True)
class WindowOptions:
    """How a dataset cuts its recordings into windows and what it does to each window: the arguments every file
    source shares, documented here once.

    Every file source ([`NumpySequences`][convlstm.data.NumpySequences],
    [`VideoSequences`][convlstm.data.VideoSequences], [`XarraySequences`][convlstm.data.XarraySequences], ...) takes
    these as keyword arguments of its own, so that a call and a recipe's ``data.args`` read alike, and builds one
    `WindowOptions` from them. A source leaves out those it fixes itself: images and videos are always scaled by
    1/255, radar archives always mask missing values.

    Attributes:
        context_frames: input frames per window (T_in), >= 1.
        target_frames: frames to predict per window (T_out), >= 0; 0 for reconstruction-only uses.
        stride: frames between the starts of consecutive windows of one recording, >= 1.
        transform: callable applied to each item dict (see [`Compose`][convlstm.data.Compose] and the other
            transforms), e.g. crops or a normalisation; None applies nothing.
        nan_policy: "raise" raises on NaN or infinite values, naming the file and the frames; "mask" sets them to 0
            and returns "context_mask" / "mask" with 0 where values were missing.
        value_scale: factor applied to the raw values (1/255 for 8-bit images).
        skip_invalid: leave out files, sequences or recordings that are missing, malformed or too short for a window
            instead of raising; what was skipped and why is logged as a warning.

    Raises:
        ValueError: a field out of its range, naming it, what was expected and what came.
    """

    context_frames: int
    target_frames: int
    stride: int = 1
    transform: Transform | None = None
    nan_policy: NanPolicy = "raise"
    value_scale: float = 1.0
    skip_invalid: bool = False

    def __post_init__(self) -> None:
        checked = {
            "context_frames": check_int("context_frames", self.context_frames, 1),
            "target_frames": check_int("target_frames", self.target_frames, 0),
            "stride": check_int("stride", self.stride, 1),
            "nan_policy": check_choice("nan_policy", self.nan_policy, NAN_POLICIES),
            "value_scale": check_number("value_scale", self.value_scale),
            "skip_invalid": check_bool("skip_invalid", self.skip_invalid),
        }
        if self.transform is not None and not callable(self.transform):
            raise ValueError(f"transform must be callable or None, got {type(self.transform).__name__}")
        for name, value in checked.items():
            object.__setattr__(self, name, value)  # frozen; numpy integers become ints

    @property
    def window_frames(self) -> int:
        """Frames per window: context_frames + target_frames."""
        return self.context_frames + self.target_frames


class WindowArguments(TypedDict, total=False):
    """The fields of [`WindowOptions`][convlstm.data.WindowOptions] as keyword arguments (for type checkers)."""

    context_frames: Required[int]
    target_frames: Required[int]
    stride: int
    transform: Transform | None
    nan_policy: NanPolicy
    value_scale: float
    skip_invalid: bool


class WindowDataset(Dataset[Item]):
    """Sliding windows over a list of recordings, never crossing a recording boundary.

        WindowDataset(recordings, WindowOptions(context_frames=4, target_frames=2, stride=2))
        WindowDataset(recordings, context_frames=4, target_frames=2, stride=2)  # the same

    Args:
        recordings: the recordings, each (T, C, H, W); all must have the same C.
        window: the [`WindowOptions`][convlstm.data.WindowOptions]; or leave it out and pass its fields as keyword
            arguments (``context_frames``, ``target_frames``, ``stride``, ...), not both.

    The options become attributes of the dataset (``context_frames``, ``target_frames``, ``window_frames``,
    ``stride``, ``transform``, ``nan_policy``, ``value_scale``); ``transform`` may be set again later, e.g. to a
    [`Normalization`][convlstm.data.Normalization] fitted on the dataset.

    Raises:
        ValueError: a window option out of its range, a recording too short for one window or malformed (unless
            skip_invalid), no recording left, or recordings that disagree on the channel count.
    """

    @overload
    def __init__(self, recordings: Sequence[Recording], window: WindowOptions, /) -> None: ...

    @overload
    def __init__(self, recordings: Sequence[Recording], /, **options: Unpack[WindowArguments]) -> None: ...

    def __init__(
        self,
        recordings: Sequence[Recording],
        window: WindowOptions | None = None,
        /,
        **options: Any,
    ) -> None:
        if window is None:
            window = WindowOptions(**options)
        elif options:
            raise ValueError(
                f"pass the window options as one WindowOptions or as keywords, not both; got {sorted(options)}"
            )
        elif not isinstance(window, WindowOptions):
            raise ValueError(f"window must be a WindowOptions, got {type(window).__name__} {window!r}")
        self.context_frames = window.context_frames
        self.target_frames = window.target_frames
        self.window_frames = window.window_frames
        self.stride = window.stride
        self.transform = window.transform
        self.nan_policy = window.nan_policy
        self.value_scale = window.value_scale
        self.recordings = self._usable(recordings, window.skip_invalid)
        # Window i of the dataset is window i - offsets[r] of recording r = searchsorted(offsets, i, "right") - 1.
        counts = [(rec.num_frames - self.window_frames) // self.stride + 1 for rec in self.recordings]
        self._offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def _usable(self, recordings: Sequence[Recording], skip_invalid: bool) -> list[Recording]:
        kept, skipped = [], []
        for rec in recordings:
            try:
                rec.validate()
                if rec.num_frames < self.window_frames:
                    raise ValueError(
                        f"{rec.where}: too few frames: it has {rec.num_frames} frames, one window needs "
                        f"context_frames + target_frames = {self.context_frames} + {self.target_frames} "
                        f"= {self.window_frames}"
                    )
            except ValueError as error:
                if not skip_invalid:
                    raise
                skipped.append((rec.name, str(error)))
                continue
            kept.append(rec)
        log_skipped(skipped, len(recordings))
        if not kept:
            raise ValueError(f"no recording with at least {self.window_frames} frames among {len(recordings)} given")
        channels = {rec.frames.shape[1] for rec in kept}
        if len(channels) > 1:
            raise ValueError(f"recordings disagree on the channel count: found {sorted(channels)}")
        return kept

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def locate(self, index: int) -> tuple[Recording, int]:
        """The recording of window `index` and the window's first frame inside that recording."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"window index {index} out of range for {len(self)} windows")
        index %= len(self)
        r = int(np.searchsorted(self._offsets, index, side="right")) - 1
        return self.recordings[r], int(index - self._offsets[r]) * self.stride

    def __getitem__(self, index: int) -> Item:
        rec, start = self.locate(index)
        item = self.read_window(rec, start)
        return item if self.transform is None else self.transform(item)

    def read_window(self, rec: Recording, start: int) -> Item:
        """The untransformed item for the window of `rec` starting at frame `start`."""
        frames, mask = rec.read(start, start + self.window_frames)
        values, valid = self._checked_values(frames, rec, start, start + self.window_frames)
        if valid is not None:
            mask = valid if mask is None else valid * (np.asarray(mask, dtype=np.float32) > 0)
        t_in = self.context_frames
        item = {"context": torch.from_numpy(values[:t_in]), "target": torch.from_numpy(values[t_in:])}
        if mask is not None:
            mask = np.ascontiguousarray(mask, dtype=np.float32)
            item["context_mask"] = torch.from_numpy(mask[:t_in])
            item["mask"] = torch.from_numpy(mask[t_in:])
        return item

    def _checked_values(
        self, frames: np.ndarray, rec: Recording, start: int, stop: int
    ) -> tuple[np.ndarray, np.ndarray | None]:
        if frames.dtype.kind not in "biuf":
            # Strings, dates, complex numbers or records would be converted (or fail) silently or unclearly.
            raise ValueError(
                f"{rec.where}: frames have dtype {frames.dtype}; expected booleans, integers or floating-point numbers"
            )
        values = np.array(frames, dtype=np.float32)  # a copy: never hand out views of a memmap
        if self.value_scale != 1.0:
            values *= self.value_scale
        if np.issubdtype(frames.dtype, np.integer):
            return values, (np.ones_like(values) if self.nan_policy == "mask" else None)
        finite = np.isfinite(values)
        if self.nan_policy == "raise":
            if not finite.all():
                raise ValueError(
                    f"{rec.where}: {int((~finite).sum())} NaN or infinite values in frames [{start}, {stop}); "
                    "pass nan_policy='mask' to mask them"
                )
            return values, None
        values[~finite] = 0.0
        return values, finite.astype(np.float32)

    def iter_frames(self, chunk_frames: int = 64) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """Every frame of every recording once, untransformed, in chunks: ((t, C, H, W), valid mask or None).

        Values are scaled like items; with nan_policy="mask" the mask marks finite values. Used to fit
        normalization statistics without counting overlapping windows twice.
        """
        for rec in self.recordings:
            for start in range(0, rec.num_frames, chunk_frames):
                stop = min(start + chunk_frames, rec.num_frames)
                frames, _ = rec.read(start, stop)
                yield self._checked_values(frames, rec, start, stop)
