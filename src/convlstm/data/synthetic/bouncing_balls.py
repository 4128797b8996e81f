"""Bouncing balls (Sutskever, Hinton & Taylor 2008): elastic balls in a square box, rendered as soft disks.

The physics: balls of equal mass in a box of side ``box_size``; initial positions without overlap; initial
velocities drawn from a normal distribution, then the whole (n, 2) array scaled to Frobenius norm ``speed``.
Each frame is ``substeps`` Euler sub-steps; a wall flips the velocity component normal to it, two touching balls
that approach each other exchange their velocity components along the line of centres (the elastic collision of
equal masses). Total kinetic energy is therefore conserved exactly.

Rendering: on a ``resolution`` square grid of pixel centres, the sum over balls of exp(-(d^2 / r^2)^4), clipped
to 1 (d is the distance from a pixel centre to a ball centre, both in box units).

Positions are (row, col) in box units, 0 to ``box_size``.
"""

from __future__ import annotations

import numpy as np
import torch

from convlstm.data.synthetic._sequences import (
    Item,
    SeededSequences,
    Transform,
    frames_to_item,
)
from convlstm.utils.checks import check_float, check_int

_PLACEMENT_TRIES = 1000


def initial_state(
    rng: np.random.Generator, num_balls: int, *, radius: float, box_size: float, speed: float
) -> tuple[np.ndarray, np.ndarray]:
    """Draw non-overlapping positions (n, 2) inside the box and velocities (n, 2) of Frobenius norm ``speed``."""
    positions = np.empty((num_balls, 2))
    for k in range(num_balls):
        for _ in range(_PLACEMENT_TRIES):
            candidate = rng.uniform(radius, box_size - radius, size=2)
            if np.all(np.linalg.norm(positions[:k] - candidate, axis=1) > 2.0 * radius):
                positions[k] = candidate
                break
        else:
            raise ValueError(
                f"could not place {num_balls} balls of radius {radius} without overlap in a box of size {box_size}"
            )
    velocity = rng.standard_normal((num_balls, 2))
    velocity *= speed / np.linalg.norm(velocity)
    return positions, velocity


def _collide_pairs(x: np.ndarray, v: np.ndarray, radius: float, frozen: np.ndarray) -> None:
    """Resolve ball-ball contacts in place: exchange normal velocities, then push overlapping balls apart."""
    gap = x[:, None, :] - x[None, :, :]  # (n, n, 2)
    dist = np.linalg.norm(gap, axis=-1)
    touching = np.argwhere(np.triu(dist < 2.0 * radius, k=1))
    for i, j in touching:
        if frozen[i] and frozen[j]:
            continue
        w = gap[i, j] / max(dist[i, j], 1e-12)  # unit vector from j to i
        closing = float(np.dot(v[i] - v[j], w))  # < 0: approaching
        if closing < 0.0:
            if frozen[i]:
                v[j] -= 2.0 * np.dot(v[j], w) * w  # bounce off an immovable ball
            elif frozen[j]:
                v[i] -= 2.0 * np.dot(v[i], w) * w
            else:
                v[i] -= closing * w
                v[j] += closing * w
        # Sub-steps are discrete, so contacts are found after some overlap; moving the balls apart along w
        # (energy is untouched) keeps them from sticking together.
        overlap = 2.0 * radius - dist[i, j]
        share_i = 0.0 if frozen[i] else (1.0 if frozen[j] else 0.5)
        x[i] += share_i * overlap * w
        x[j] -= (1.0 - share_i) * overlap * w


def _bounce_walls(x: np.ndarray, v: np.ndarray, radius: float, box_size: float) -> None:
    """Mirror balls that crossed a wall back inside and point their velocity inwards, in place."""
    low, high = radius, box_size - radius
    below, above = x < low, x > high
    x[below] = 2.0 * low - x[below]
    v[below] = np.abs(v[below])
    x[above] = 2.0 * high - x[above]
    v[above] = -np.abs(v[above])


def simulate_balls(
    positions: np.ndarray,
    velocities: np.ndarray,
    num_frames: int,
    *,
    radius: float = 1.2,
    box_size: float = 10.0,
    substeps: int = 2,
    frozen: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Integrate the balls forward.

    Args:
        positions: (n, 2) positions at frame 0.
        velocities: (n, 2) velocities at frame 0, in box units per frame.
        num_frames: Frames T to return, frame 0 included.
        radius: Ball radius.
        box_size: Side of the box.
        substeps: Integration sub-steps per frame.
        frozen: Optional bool (n,): balls that stay put and act as immovable obstacles.

    Returns:
        ``(positions, velocities)``, each (T, n, 2); frame t is the state after t frames.
    """
    x = np.array(positions, dtype=np.float64)
    v = np.array(velocities, dtype=np.float64)
    n = x.shape[0]
    still = np.zeros(n, dtype=bool) if frozen is None else np.asarray(frozen, dtype=bool)
    v[still] = 0.0
    dt = 1.0 / substeps
    xs, vs = np.empty((num_frames, n, 2)), np.empty((num_frames, n, 2))
    xs[0], vs[0] = x, v
    for t in range(1, num_frames):
        for _ in range(substeps):
            x += dt * v
            _collide_pairs(x, v, radius, still)
            _bounce_walls(x, v, radius, box_size)
        xs[t], vs[t] = x, v
    return xs, vs


def render_balls(positions: np.ndarray, *, radius: float, resolution: int, box_size: float = 10.0) -> np.ndarray:
    """Render ball centres (T, n, 2) as float32 frames (T, res, res) in [0, 1].

    Pixel (i, j) has its centre at ((i + 0.5), (j + 0.5)) * box_size / resolution in box units.
    """
    centres = (np.arange(resolution) + 0.5) * (box_size / resolution)
    d_row = (centres[None, None, :] - positions[..., 0:1]) ** 2  # (T, n, res)
    d_col = (centres[None, None, :] - positions[..., 1:2]) ** 2
    d2 = d_row[..., :, None] + d_col[..., None, :]  # (T, n, res, res)
    frames = np.exp(-((d2 / radius**2) ** 4)).sum(axis=1)
    return np.minimum(frames, 1.0).astype(np.float32)


class BouncingBalls(SeededSequences):
    """Sequences of bouncing balls (Sutskever et al. 2008).

    Args:
        split: "train", "val" or "test" (disjoint random streams).
        transform: Callable applied to the item dict.
        seed: Base seed; item ``i`` is a function of (seed, split, epoch, i) only.
        context_frames: Input frames T_in.
        target_frames: Frames to predict T_out.
        sequence_length: If given, items hold the whole sequence of this many frames as "frames" (T, 1, R, R)
            instead of "context" / "target", and ``context_frames`` / ``target_frames`` are not used.
        num_balls: Balls per sequence.
        radius: Ball radius in box units.
        resolution: Frame side R in pixels.
        box_size: Side of the box.
        speed: Frobenius norm of the initial (n, 2) velocity array, box units per frame.
        substeps: Integration sub-steps per frame.
        num_sequences: Length; None gives 4,000 train, 200 val, 200 test.

    Items are dicts with float32 "context" (T_in, 1, R, R) and "target" (T_out, 1, R, R) in [0, 1].
    """

    name = "bouncing_balls"
    default_sizes = {"train": 4_000, "val": 200, "test": 200}  # noqa: RUF012

    def __init__(
        self,
        split: str = "train",
        transform: Transform | None = None,
        *,
        seed: int = 0,
        context_frames: int = 10,
        target_frames: int = 10,
        sequence_length: int | None = None,
        num_balls: int = 3,
        radius: float = 1.2,
        resolution: int = 30,
        box_size: float = 10.0,
        speed: float = 0.5,
        substeps: int = 2,
        num_sequences: int | None = None,
    ) -> None:
        super().__init__(split=split, transform=transform, seed=seed, num_sequences=num_sequences)
        self.context_frames = check_int("context_frames", context_frames, 1)
        self.target_frames = check_int("target_frames", target_frames, 0)
        self.sequence_length = None if sequence_length is None else check_int("sequence_length", sequence_length, 1)
        self.num_balls = check_int("num_balls", num_balls, 1)
        self.box_size = check_float("box_size", box_size, 0.0, np.inf, low_open=True)
        self.radius = check_float("radius", radius, 0.0, self.box_size / 2.0, low_open=True)
        self.resolution = check_int("resolution", resolution, 1)
        self.speed = check_float("speed", speed, 0.0, np.inf)
        self.substeps = check_int("substeps", substeps, 1)

    @property
    def num_frames(self) -> int:
        """Frames per sequence (context and target together)."""
        return self.sequence_length if self.sequence_length is not None else self.context_frames + self.target_frames

    def trajectory(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Positions and velocities (T, n, 2) of one sequence drawn from ``rng``."""
        x0, v0 = initial_state(rng, self.num_balls, radius=self.radius, box_size=self.box_size, speed=self.speed)
        return simulate_balls(
            x0, v0, self.num_frames, radius=self.radius, box_size=self.box_size, substeps=self.substeps
        )

    def render(self, positions: np.ndarray) -> np.ndarray:
        """Frames (T, R, R) of ball centres (T, n, 2)."""
        return render_balls(positions, radius=self.radius, resolution=self.resolution, box_size=self.box_size)

    def _make_item(self, rng: np.random.Generator, index: int) -> Item:
        positions, _ = self.trajectory(rng)
        frames = torch.from_numpy(self.render(positions)).unsqueeze(1)  # (T, 1, R, R)
        if self.sequence_length is not None:
            return {"frames": frames}
        return frames_to_item(frames, self.context_frames, self.target_frames)

    def extra_repr(self) -> str:
        return f"{self.num_frames} frames, {self.num_balls} balls, {self.resolution}px"


__all__ = ["BouncingBalls", "initial_state", "render_balls", "simulate_balls"]
