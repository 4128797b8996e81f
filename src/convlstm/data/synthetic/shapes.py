"""Moving shapes for video segmentation: classes that look alike and differ only in how they move.

Every object, whatever its class, is a disk or a square of the same size and brightness distributions, so no
single frame tells the classes apart. The class is in the motion:

- class 1, "straight": constant velocity, reflected at the walls;
- class 2, "zigzag": the same drift plus a jump of ``2 * zigzag_amplitude`` px across its track every frame;
- class 3, "orbit" (with ``num_classes=3``): the same drift plus a circle of radius ``zigzag_amplitude`` px
  travelled at 0.8 rad/frame.

Single frames are made ambiguous on purpose: Gaussian noise, flicker (in some frames an object's brightness drops
to 0-30 %), objects invisible for a few frames, and a static occluding band; labels persist through all of them.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from convlstm.data.synthetic._sequences import (
    Item,
    SeededSequences,
    Transform,
)
from convlstm.data.synthetic.moving_mnist import bounce
from convlstm.utils.checks import check_float, check_int, check_int_range, check_range

MOTIONS = ("straight", "zigzag", "orbit")
BACKGROUND = 0.2
ORBIT_RATE = 0.8  # rad/frame


class ShapesSequence(NamedTuple):
    """One generated sequence with its ground truth.

    Attributes:
        frames: float32 (T, H, W) in [0, 1].
        labels: int64 (T, H, W), 0 background, 1..K classes (also where an object is hidden).
        centres: float (T, n, 2) object centres (row, col) in pixels.
        classes: int64 (n,) class of each object, 1..K.
        visible: bool (T, n), False in the frames where an object is invisible (not counting the occluder).
    """

    frames: np.ndarray
    labels: np.ndarray
    centres: np.ndarray
    classes: np.ndarray
    visible: np.ndarray


class MovingShapesSegmentation(SeededSequences):
    """Per-pixel segmentation of moving shapes whose class shows only over time.

    Args:
        split: "train", "val" or "test" (disjoint random streams).
        transform: Callable applied to the item dict.
        seed: Base seed; item ``i`` is a function of (seed, split, epoch, i) only.
        context_frames: Sequence length T; the whole sequence is the input.
        image_size: Frame side S.
        num_classes: 2 (straight, zigzag) or 3 (adds orbit).
        objects_range: (min, max) objects per sequence.
        size_range: (min, max) object half-size in px (disk radius or half the square side).
        speed_range: (low, high) drift speed in px/frame, the same for every class.
        zigzag_amplitude: Side-to-side amplitude in px of classes 2 and 3.
        noise_std: Standard deviation of the additive Gaussian noise.
        flicker_prob: Chance per object and frame that its brightness drops to 0-30 %.
        hidden_prob: Chance per object of one stretch of 1 to 3 frames where it is invisible.
        occluder: Draw a static band of background brightness that hides what passes behind it.
        num_sequences: Length; None gives 2,000 train, 200 val, 500 test.

    Items are dicts with float32 "context" (T, 1, S, S) in [0, 1] and int64 "labels" (T, S, S) for the same
    frames. There is no "target" key: the target of segmentation is "labels", for every input frame.
    """

    name = "moving_shapes"
    default_sizes = {"train": 2_000, "val": 200, "test": 500}  # noqa: RUF012

    def __init__(
        self,
        split: str = "train",
        transform: Transform | None = None,
        *,
        seed: int = 0,
        context_frames: int = 16,
        image_size: int = 64,
        num_classes: int = 2,
        objects_range: tuple[int, int] = (2, 4),
        size_range: tuple[int, int] = (4, 7),
        speed_range: tuple[float, float] = (1.0, 2.0),
        zigzag_amplitude: float = 3.0,
        noise_std: float = 0.3,
        flicker_prob: float = 0.2,
        hidden_prob: float = 0.5,
        occluder: bool = True,
        num_sequences: int | None = None,
    ) -> None:
        super().__init__(split=split, transform=transform, seed=seed, num_sequences=num_sequences)
        self.context_frames = check_int("context_frames", context_frames, 2)
        self.image_size = check_int("image_size", image_size, 16)
        self.num_classes = check_int("num_classes", num_classes, 2, len(MOTIONS))
        self.objects_range = check_int_range("objects_range", objects_range, 1, 64)
        self.zigzag_amplitude = check_float("zigzag_amplitude", zigzag_amplitude, 0.0, image_size / 4)
        self.size_range = check_int_range("size_range", size_range, 1, self.image_size // 2)
        free = self.image_size - 2 * (self.size_range[1] + self.zigzag_amplitude)
        if free <= 0:
            raise ValueError(
                f"image_size {image_size} leaves no room for objects of half-size {self.size_range[1]} "
                f"moving {zigzag_amplitude} px side to side"
            )
        self.speed_range = check_range("speed_range", speed_range, 0.0, free)
        self.noise_std = check_float("noise_std", noise_std, 0.0, 10.0)
        self.flicker_prob = check_float("flicker_prob", flicker_prob, 0.0, 1.0)
        self.hidden_prob = check_float("hidden_prob", hidden_prob, 0.0, 1.0)
        self.occluder = bool(occluder)

    def _centres(self, rng: np.random.Generator, classes: np.ndarray) -> np.ndarray:
        """Centres (T, n, 2): a shared drift law for every class plus the class's side motion."""
        n, num_frames = len(classes), self.context_frames
        margin = self.size_range[1] + self.zigzag_amplitude
        limit = self.image_size - 2 * margin
        start = rng.uniform(0.0, limit, size=(n, 2))
        angle = rng.uniform(0.0, 2 * np.pi, size=n)
        speed = rng.uniform(*self.speed_range, size=n)
        heading = np.stack([np.sin(angle), np.cos(angle)], axis=1)
        t = np.arange(num_frames)
        drift = margin + bounce(start, speed[:, None] * heading, t, limit)  # (T, n, 2)
        across = np.stack([heading[:, 1], -heading[:, 0]], axis=1)  # unit vector perpendicular to the heading
        phase = rng.uniform(0.0, 2 * np.pi, size=n)
        a = self.zigzag_amplitude
        side = np.zeros_like(drift)
        zigzag, orbit = classes == 2, classes == 3
        side[:, zigzag] = a * np.where(t % 2 == 0, 1.0, -1.0)[:, None, None] * across[zigzag]
        angle_t = ORBIT_RATE * t[:, None] + phase[orbit]  # (T, n_orbit)
        side[:, orbit] = a * np.stack([np.sin(angle_t), np.cos(angle_t)], axis=-1)
        return drift + side

    def generate(self, rng: np.random.Generator) -> ShapesSequence:
        """One sequence drawn from ``rng``."""
        num_frames, size = self.context_frames, self.image_size
        n = int(rng.integers(self.objects_range[0], self.objects_range[1] + 1))
        classes = rng.integers(1, self.num_classes + 1, size=n)
        # Appearance is drawn the same way for every class.
        is_disk = rng.random(n) < 0.5
        half_size = rng.integers(self.size_range[0], self.size_range[1] + 1, size=n)
        brightness = rng.uniform(0.6, 1.0, size=n)
        flicker = np.where(rng.random((num_frames, n)) < self.flicker_prob, rng.uniform(0.0, 0.3, (num_frames, n)), 1.0)
        visible = np.ones((num_frames, n), dtype=bool)
        for k in np.flatnonzero(rng.random(n) < self.hidden_prob):
            length = int(rng.integers(1, 4))
            first = int(rng.integers(0, max(num_frames - length, 0) + 1))
            visible[first : first + length, k] = False
        centres = self._centres(rng, classes)

        rows = np.arange(size, dtype=np.float64)[None, :, None]
        cols = np.arange(size, dtype=np.float64)[None, None, :]
        image = np.full((num_frames, size, size), BACKGROUND)
        labels = np.zeros((num_frames, size, size), dtype=np.int64)
        for k in rng.permutation(n):  # later objects cover earlier ones
            d_row = np.abs(rows - centres[:, k, 0, None, None])  # (T, S, S) via broadcasting
            d_col = np.abs(cols - centres[:, k, 1, None, None])
            if is_disk[k]:
                inside = d_row**2 + d_col**2 <= half_size[k] ** 2
            else:
                inside = np.maximum(d_row, d_col) <= half_size[k]
            labels[inside] = classes[k]
            shown = inside & visible[:, k, None, None]
            image[shown] = np.broadcast_to((brightness[k] * flicker[:, k])[:, None, None], image.shape)[shown]
        if self.occluder:
            width = size // 8
            start = int(rng.integers(0, size - width + 1))
            band = np.s_[:, start : start + width, :] if rng.random() < 0.5 else np.s_[:, :, start : start + width]
            image[band] = BACKGROUND
        noisy = image + self.noise_std * rng.standard_normal(image.shape)
        frames = np.clip(noisy, 0.0, 1.0).astype(np.float32)
        return ShapesSequence(frames, labels, centres, classes, visible)

    def _make_item(self, rng: np.random.Generator, index: int) -> Item:
        sample = self.generate(rng)
        return {"context": torch.from_numpy(sample.frames).unsqueeze(1), "labels": torch.from_numpy(sample.labels)}

    def extra_repr(self) -> str:
        return f"{self.context_frames} frames, {self.num_classes} classes, {self.image_size}px"


__all__ = ["MOTIONS", "MovingShapesSegmentation", "ShapesSequence"]
