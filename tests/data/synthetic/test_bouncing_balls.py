import math

import numpy as np
import pytest
import torch

from convlstm.data.synthetic.bouncing_balls import BouncingBalls, initial_state, render_balls, simulate_balls

R, BOX = 1.2, 10.0


def _pair_distances(positions):
    d = np.linalg.norm(positions[:, :, None] - positions[:, None], axis=-1)
    n = positions.shape[1]
    return d[:, ~np.eye(n, dtype=bool)]


def _trajectories(num, frames=150, balls=3):
    for s in range(num):
        x0, v0 = initial_state(np.random.default_rng(s), balls, radius=R, box_size=BOX, speed=0.5)
        yield simulate_balls(x0, v0, frames, radius=R, box_size=BOX, substeps=2)


def test_initial_state_has_no_overlap_and_speed_norm():
    for s in range(20):
        x, v = initial_state(np.random.default_rng(s), 4, radius=R, box_size=BOX, speed=0.5)
        assert _pair_distances(x[None]).min() > 2 * R
        assert x.min() >= R
        assert x.max() <= BOX - R
        assert math.isclose(float(np.sqrt((v**2).sum())), 0.5)


def test_energy_conserved_through_collisions():
    contacts = 0
    for positions, velocities in _trajectories(30):
        energy = (velocities**2).sum(axis=(1, 2))
        np.testing.assert_allclose(energy, energy[0], rtol=1e-9)
        contacts += int((_pair_distances(positions).min(axis=1) < 2 * R + 0.3).sum())
    assert contacts > 0  # ball-ball collisions did happen


def test_balls_stay_in_box_and_barely_overlap():
    for positions, _ in _trajectories(30):
        assert positions.min() >= R - 1e-9
        assert positions.max() <= BOX - R + 1e-9
        assert _pair_distances(positions).min() > 2 * R - 0.1 * R


def test_head_on_collision_exchanges_velocities():
    x0 = np.array([[5.0, 2.0], [5.0, 8.0]])
    v0 = np.array([[0.0, 0.3], [0.0, -0.1]])
    # contact after (6 - 2.4) / 0.4 = 9 frames; walls are reached only much later
    _, v = simulate_balls(x0, v0, 13, radius=R, box_size=BOX, substeps=4)
    np.testing.assert_allclose(v[12], [[0.0, -0.1], [0.0, 0.3]], atol=1e-12)
    np.testing.assert_allclose(v[5], v0)


def test_oblique_collision_conserves_momentum_and_tangential_speed():
    x0 = np.array([[5.0, 2.0], [5.8, 6.0]])
    v0 = np.array([[0.0, 0.4], [0.0, 0.0]])
    _x, v = simulate_balls(x0, v0, 12, radius=R, box_size=BOX, substeps=8)
    after = v[-1]
    assert not np.allclose(after, v0)  # they did collide
    np.testing.assert_allclose(after.sum(0), v0.sum(0), atol=1e-12)
    np.testing.assert_allclose((after**2).sum(), (v0**2).sum(), rtol=1e-12)
    # equal masses, resting target: the two outgoing velocities are perpendicular
    assert abs(float(np.dot(after[0], after[1]))) < 1e-12


def test_frozen_ball_stays_and_reflects_others():
    x0 = np.array([[5.0, 2.0], [5.0, 6.0]])
    v0 = np.array([[0.0, 0.4], [0.0, 0.3]])
    x, v = simulate_balls(x0, v0, 12, radius=R, box_size=BOX, frozen=np.array([False, True]))
    assert np.all(x[:, 1] == [5.0, 6.0])
    np.testing.assert_allclose(v[8, 0], [0.0, -0.4])  # contact near frame 4, left wall near frame 10
    np.testing.assert_allclose(v[-1, 0], [0.0, 0.4])


def test_rendering_of_a_ball_on_a_pixel_centre():
    res = 30
    pixel = BOX / res
    centre = np.array([[[(7 + 0.5) * pixel, (12 + 0.5) * pixel]]])  # pixel (7, 12)
    frame = render_balls(centre, radius=R, resolution=res, box_size=BOX)[0]
    assert frame.shape == (30, 30)
    assert frame[7, 12] == 1.0
    # one pixel to the right: d = pixel
    expected = math.exp(-(((pixel**2) / R**2) ** 4))
    assert math.isclose(float(frame[7, 13]), expected, rel_tol=1e-6)
    assert frame[7, 20] < 1e-6
    assert frame.max() == 1.0


def test_rendering_clips_overlapping_balls_to_one():
    pos = np.array([[[5.0, 5.0], [5.0, 5.3]]])
    frame = render_balls(pos, radius=R, resolution=30, box_size=BOX)
    assert frame.max() == 1.0
    assert frame.min() >= 0.0


def test_dataset_items():
    ds = BouncingBalls(num_sequences=5)
    item = ds[0]
    assert set(item) == {"context", "target"}
    assert item["context"].shape == (10, 1, 30, 30)
    assert item["target"].shape == (10, 1, 30, 30)
    assert item["context"].dtype == torch.float32
    assert float(item["context"].max()) <= 1.0
    assert len(ds) == 5
    assert len(BouncingBalls()) == 4000
    assert len(BouncingBalls(split="test")) == 200


def test_whole_sequence_mode_and_sizes():
    ds = BouncingBalls(sequence_length=100, num_balls=4, resolution=16, num_sequences=2)
    item = ds[1]
    assert set(item) == {"frames"}
    assert item["frames"].shape == (100, 1, 16, 16)
    # 4 balls, each peaking near 1 somewhere on the 16 px grid most of the time
    assert float(item["frames"].amax(dim=(1, 2, 3)).mean()) > 0.7


def test_reproducible_and_split_dependent():
    a, b = BouncingBalls(seed=1, num_sequences=3), BouncingBalls(seed=1, num_sequences=3)
    assert torch.equal(a[2]["target"], b[2]["target"])
    assert not torch.equal(a[0]["target"], a[1]["target"])
    test = BouncingBalls(seed=1, split="test", num_sequences=3)
    assert not torch.equal(a[0]["target"], test[0]["target"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_balls": 0}, "num_balls"),
        ({"radius": 6.0}, "radius"),
        ({"radius": 0.0}, "radius"),
        ({"resolution": 0}, "resolution"),
        ({"substeps": 0}, "substeps"),
        ({"split": "dev"}, "split"),
        ({"sequence_length": 0}, "sequence_length"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BouncingBalls(**kwargs)


def test_too_many_balls_raise_when_drawn():
    ds = BouncingBalls(num_balls=40, num_sequences=1)
    with pytest.raises(ValueError, match="could not place 40 balls"):
        ds[0]
