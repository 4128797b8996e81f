"""Sequences stored as folders of image frames (PNG, JPEG, ...), one folder per sequence.

    root/walk_01/frame_1.png, frame_2.png, ..., frame_10.png      (sorted naturally: 2 before 10)
    masks/walk_01/frame_1.png, ...                                (optional parallel tree, same file stems)

Frames are 8-bit grayscale ("L") or RGB and are read on demand, only for the windows asked for; values are
scaled to [0, 1]. Masks are read as grayscale and binarized (nonzero = 1). Each sequence is split at its scene cuts
(see convlstm.data.core.scene_cuts), which reads every frame once when the dataset is built.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from convlstm.data.core.layout import to_tchw
from convlstm.data.core.scene_cuts import CUT_THRESHOLD, split_at_scene_cuts
from convlstm.data.core.splits import RecordingSplit, Splitter, build_split
from convlstm.data.core.windows import Recording, Transform, WindowDataset, WindowOptions
from convlstm.utils.checks import check_bool

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
Mode = Literal["L", "RGB"]


def natural_key(name: str) -> list[int | str]:
    """Sort key that orders the numbers inside names by value: "frame_2" < "frame_10"."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def list_images(folder: Path) -> list[Path]:
    """The image files of a folder, sorted naturally by file name."""
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(files, key=lambda p: natural_key(p.name))


def _image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as image:
            return image.height, image.width
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{path}: not a readable image ({error})") from error


class ImageFrames:
    """(T, C, H, W) uint8 frames read from image files on demand.

    Args:
        paths: one file per frame, in time order.
        mode: "L" (C = 1) or "RGB" (C = 3); every file is converted to it.
        size: (height, width) to resize every frame to; None requires all files to have one size.
        binarize: map nonzero pixels to 1 (for masks; resized with nearest neighbour).
    """

    def __init__(self, paths: Sequence[Path], mode: Mode, size: tuple[int, int] | None, binarize: bool = False) -> None:
        self.paths, self.mode, self.size, self.binarize = list(paths), mode, size, binarize
        if size is None:
            sizes = [_image_size(p) for p in self.paths]
            for path, frame_size in zip(self.paths, sizes, strict=True):
                if frame_size != sizes[0]:
                    raise ValueError(
                        f"{path}: frame size (H, W) = {frame_size} differs from {sizes[0]} of {self.paths[0]}; "
                        "pass size=(height, width) to resize every frame"
                    )
            size = sizes[0]
        self.shape = (len(self.paths), 1 if mode == "L" else 3, size[0], size[1])

    def _read(self, path: Path) -> np.ndarray:
        try:
            with Image.open(path) as stored:
                image = stored.convert(self.mode)
            if self.size is not None and (image.height, image.width) != self.size:
                resample = Image.Resampling.NEAREST if self.binarize else Image.Resampling.BILINEAR
                image = image.resize((self.size[1], self.size[0]), resample)
            pixels = np.asarray(image)
        except (UnidentifiedImageError, OSError) as error:
            raise ValueError(f"{path}: not a readable image ({error})") from error
        return (pixels > 0).astype(np.uint8) if self.binarize else pixels

    def __getitem__(self, time: slice) -> np.ndarray:
        frames = np.stack([self._read(p) for p in self.paths[time]])  # (t, H, W) or (t, H, W, 3)
        return to_tchw(frames, "THW" if self.mode == "L" else "THWC")


def _mask_paths(frame_paths: Sequence[Path], mask_folder: Path) -> list[Path]:
    """The mask file with the same stem as each frame (any image suffix)."""
    if not mask_folder.is_dir():
        raise FileNotFoundError(f"mask folder not found: {mask_folder}")
    by_stem = {p.stem: p for p in list_images(mask_folder)}
    missing = [p.stem for p in frame_paths if p.stem not in by_stem]
    if missing:
        raise FileNotFoundError(f"{mask_folder}: no mask image for frames {missing[:5]} (matched by file stem)")
    return [by_stem[p.stem] for p in frame_paths]


def _infer_mode(folders: Sequence[Path]) -> Mode:
    for folder in folders:
        for path in list_images(folder)[:1]:
            try:
                with Image.open(path) as image:
                    return "L" if image.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB"
            except (UnidentifiedImageError, OSError) as error:
                raise ValueError(f"{path}: not a readable image ({error})") from error
    return "RGB"


class ImageFolderSequences(WindowDataset):
    """Windows over sequences stored as one folder of image frames each, scaled to [0, 1].

    The window arguments (``context_frames``, ``target_frames``, ``stride``, ``transform``, ``skip_invalid``) are the
    fields of [`WindowOptions`][convlstm.data.WindowOptions], which documents them.

    Args:
        root: folder with one sub-folder of frames per sequence.
        split: "train" (the default), "val", "test" (keys of split_by's fractions) or "all".
        split_by: how sequences are split; default RecordingSplit() (whole sequences, seeded).
        mask_root: optional parallel folder tree of masks (same sequence names and file stems); items then
            carry "context_mask" and "mask".
        mode: "L" (grayscale) or "RGB"; None takes the first frame's kind.
        size: (height, width) to resize every frame to; without it frames of different sizes raise an error.
        split_at_cuts: split each sequence (each time block with TimeBlockSplit) at its scene cuts into recordings
            of their own, so that no window spans a cut; parts shorter than a window are left out. Finding the cuts
            ([`find_scene_cuts`][convlstm.data.find_scene_cuts]) reads every frame of the split once, here; an INFO
            log line counts them and the windows they removed.
        cut_threshold: the smallest difference of consecutive frames that is a cut (mean absolute difference of
            the gray, shrunk, mean-free frames, on the [0, 1] scale); a cut must also exceed 3 times the sequence's
            median difference.

    Attributes:
        scene_cuts: recording name -> the frames that begin a new shot (relative to that recording), for the
            recordings of this split with a cut; empty with split_at_cuts=False.
        dropped_windows: the windows that spanned a cut, counted on this split's recordings before they were split
            (0 with split_at_cuts=False).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        *,
        context_frames: int,
        target_frames: int,
        split_by: Splitter | None = None,
        stride: int = 1,
        transform: Transform | None = None,
        mask_root: str | os.PathLike[str] | None = None,
        mode: Mode | None = None,
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
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"image folder root not found: {root}")
        folders = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: natural_key(p.name))
        if not folders:
            raise ValueError(f"{root}: expected one sub-folder of image frames per sequence, found none")
        chosen_mode = mode or _infer_mode(folders)

        def build(name: str) -> list[Recording]:
            paths = list_images(root / name)
            if not paths:
                raise ValueError(f"{root / name}: no image files with suffixes {IMAGE_SUFFIXES}")
            frames = ImageFrames(paths, chosen_mode, size)
            mask = None
            if mask_root is not None:
                mask = ImageFrames(_mask_paths(paths, Path(mask_root) / name), "L", size, binarize=True)
            return [Recording(name=name, frames=frames, mask=mask, source=str(root / name))]

        names, by = [f.name for f in folders], split_by or RecordingSplit()
        recordings = build_split(names, build, split, by, skip_invalid=skip_invalid, what="sequences")
        self.scene_cuts: dict[str, list[int]] = {}
        self.dropped_windows = 0
        if split_at_cuts:
            cut = split_at_scene_cuts(
                recordings,
                window_frames=window.window_frames,
                stride=window.stride,
                threshold=cut_threshold,
                what=f"sequences ({split!r} split of {root})",
            )
            recordings, self.scene_cuts, self.dropped_windows = cut.recordings, cut.cuts, cut.dropped_windows
        super().__init__(recordings, window)
