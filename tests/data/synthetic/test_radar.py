import math

import numpy as np
import pytest
import torch
from scipy.ndimage import shift

from convlstm.data.synthetic.radar import (
    SyntheticRadar,
    advect,
    dbz_to_pixel,
    dbz_to_rain_rate,
    pixel_to_dbz,
    pixel_to_rain_rate,
    radar_mask,
    rain_rate_to_dbz,
    rain_rate_to_pixel,
    zr_coefficients,
)

# --- conversions ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("relation", "a", "b"), [("hko7", 58.53, 1.56), ("marshall_palmer", 200.0, 1.6)])
@pytest.mark.parametrize("rate", [0.5, 2.0, 10.0, 30.0])
def test_rain_rate_to_dbz_matches_z_r_relation(relation, a, b, rate):
    z = a * rate**b  # mm^6 / m^3
    assert math.isclose(rain_rate_to_dbz(rate, relation), 10 * math.log10(z), rel_tol=1e-12)
    assert math.isclose(dbz_to_rain_rate(10 * math.log10(z), relation), rate, rel_tol=1e-12)


def test_known_points():
    # 1 mm/h with HKO-7's Z = 58.53 R^1.56 is 10 log10(58.53) = 17.67 dBZ
    assert math.isclose(rain_rate_to_dbz(1.0), 17.674, abs_tol=1e-3)
    assert math.isclose(rain_rate_to_dbz(1.0, "marshall_palmer"), 23.010, abs_tol=1e-3)
    assert dbz_to_pixel(-10.0) == 0.0
    assert dbz_to_pixel(60.0) == 1.0
    assert math.isclose(dbz_to_pixel(25.0), 0.5)
    assert math.isclose(pixel_to_dbz(0.5), 25.0)
    # pixel 0.5 = 25 dBZ: R = (10^2.5 / 58.53)^(1 / 1.56)
    assert math.isclose(pixel_to_rain_rate(0.5), (10**2.5 / 58.53) ** (1 / 1.56), rel_tol=1e-12)
    assert dbz_to_pixel(80.0, clip=False) > 1.0


def test_round_trips_numpy_and_torch():
    rates = np.geomspace(0.02, 400.0, 50)
    np.testing.assert_allclose(pixel_to_rain_rate(rain_rate_to_pixel(rates)), rates, rtol=1e-10)
    pixels = torch.linspace(0.0, 1.0, 11, dtype=torch.float64)
    back = rain_rate_to_pixel(pixel_to_rain_rate(pixels))
    assert isinstance(back, torch.Tensor)
    assert torch.allclose(back, pixels, atol=1e-12)
    dbz = np.linspace(-10, 60, 15)
    np.testing.assert_allclose(pixel_to_dbz(dbz_to_pixel(dbz)), dbz, atol=1e-12)


def test_dry_pixels_and_bad_input():
    assert rain_rate_to_pixel(np.array([0.0]))[0] == 0.0
    assert float(rain_rate_to_pixel(torch.zeros(2)).max()) == 0.0
    with pytest.raises(ValueError, match="rain_rate"):
        rain_rate_to_dbz(np.array([1.0, -0.1]))
    with pytest.raises(ValueError, match="relation"):
        rain_rate_to_dbz(1.0, "palmer")
    assert zr_coefficients((300.0, 1.4)) == (300.0, 1.4)


# --- the mask and advection ------------------------------------------------------------------------------------


def test_radar_mask_range_circle_and_blocked_beams():
    mask = radar_mask(100, 100, np.random.default_rng(0), num_blocked_beams=0)
    assert set(np.unique(mask).tolist()) == {0.0, 1.0}
    assert mask[0, 0] == 0
    assert mask[50, 50] == 1
    assert math.isclose(mask.mean(), math.pi / 4, abs_tol=0.01)
    blocked = radar_mask(100, 100, np.random.default_rng(0), num_blocked_beams=3)
    assert blocked.sum() < mask.sum()
    assert np.all(blocked <= mask)
    assert np.all(blocked[45:55, 45:55] == 1)  # beams are blocked only beyond 20 % of the range


def test_advect_integer_constant_wind_is_a_periodic_shift():
    field = np.random.default_rng(0).standard_normal((24, 30))
    wind = np.zeros((2, 24, 30), np.float32)
    wind[0], wind[1] = 2.0, -3.0
    np.testing.assert_allclose(advect(field, wind), np.roll(field, (2, -3), axis=(0, 1)), atol=1e-5)
    with pytest.raises(ValueError, match="wind"):
        advect(field, wind[:, :10])


# --- the dataset --------------------------------------------------------------------------------------------------


def test_items_layout_units_and_mask():
    ds = SyntheticRadar(image_size=48, num_sequences=2)
    item = ds[0]
    assert set(item) == {"context", "target", "mask"}
    assert item["context"].shape == (5, 1, 48, 48)
    assert item["target"].shape == (15, 1, 48, 48)
    assert item["mask"].shape == (1, 1, 48, 48)
    assert item["context"].dtype == torch.float32
    frames = torch.cat([item["context"], item["target"]])
    assert float(frames.min()) >= 0.0
    assert float(frames.max()) <= 1.0
    assert float((frames * (1 - item["mask"])).abs().max()) == 0.0  # invalid pixels hold 0
    in_mm = SyntheticRadar(image_size=48, num_sequences=2, units="mm/h")[0]
    assert torch.allclose(rain_rate_to_pixel(in_mm["target"]), item["target"], atol=1e-6)


def test_layout_5_to_20_and_rectangular_frames():
    item = SyntheticRadar(image_size=(32, 40), context_frames=5, target_frames=20, num_sequences=1)[0]
    assert item["context"].shape == (5, 1, 32, 40)
    assert item["target"].shape == (20, 1, 32, 40)


def test_wet_fraction_within_requested_range():
    ds = SyntheticRadar(image_size=64, units="mm/h", wet_fraction=(0.15, 0.25), num_sequences=3)
    for i in range(3):
        item = ds[i]
        frames = torch.cat([item["context"], item["target"]])[:, 0]
        valid = item["mask"][0, 0] > 0
        wet = (frames[:, valid] > 0).float().mean(dim=1)
        tolerance = 1.0 / int(valid.sum())
        assert float(wet.min()) >= 0.15 - tolerance
        assert float(wet.max()) <= 0.25 + tolerance


def test_heavy_tail_reaches_10_and_30_mm_per_hour():
    ds = SyntheticRadar(units="mm/h", num_sequences=6, target_frames=5)
    rain = torch.cat([torch.cat([ds[i]["context"], ds[i]["target"]]) for i in range(6)])
    wet = rain[rain > 0]
    assert float((wet >= 10).float().mean()) > 0.001
    assert float(rain.max()) >= 30.0
    assert float(wet.median()) < 2.0  # most rain is light


def test_frames_correlate_strongly_but_not_perfectly_and_follow_the_wind():
    ds = SyntheticRadar(units="mm/h", image_size=64, num_sequences=4, target_frames=10)
    persistence, lagrangian = [], []
    for i in range(4):
        seq = ds.generate(ds.rng(i))
        p = rain_rate_to_pixel(seq.rain_rate)
        inner = np.s_[12:-12, 12:-12]
        for t in range(p.shape[0] - 1):
            now, nxt = p[t], p[t + 1]
            persistence.append(np.corrcoef(now[inner].ravel(), nxt[inner].ravel())[0, 1])
            moved = shift(now, seq.mean_wind[t + 1], order=1)
            lagrangian.append(np.corrcoef(moved[inner].ravel(), nxt[inner].ravel())[0, 1])
    assert 0.6 < np.mean(persistence) < 0.98
    assert np.mean(lagrangian) > np.mean(persistence)  # moving with the wind explains part of the change
    assert np.mean(lagrangian) < 0.99  # but growth, decay and a varying wind remain


def test_seed_reproducibility():
    a = SyntheticRadar(image_size=32, num_sequences=2, seed=5)
    b = SyntheticRadar(image_size=32, num_sequences=2, seed=5)
    c = SyntheticRadar(image_size=32, num_sequences=2, seed=6)
    assert torch.equal(a[1]["target"], b[1]["target"])
    assert torch.equal(a[1]["mask"], b[1]["mask"])
    assert not torch.equal(a[1]["target"], c[1]["target"])
    assert not torch.equal(a[0]["target"], a[1]["target"])
    val = SyntheticRadar(image_size=32, num_sequences=2, seed=5, split="val")
    assert not torch.equal(a[0]["target"], val[0]["target"])
    assert torch.equal(a[0]["mask"], val[0]["mask"])  # one radar site for all splits


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"units": "dbz"}, "units"),
        ({"wet_fraction": (0.3, 0.1)}, "wet_fraction"),
        ({"wet_fraction": (0.1, 1.5)}, "wet_fraction"),
        ({"image_size": 4}, "image_size"),
        ({"relation": "xyz"}, "relation"),
        ({"context_frames": 0}, "context_frames"),
        ({"edge_rain_rate": 0.0}, "edge_rain_rate"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SyntheticRadar(**kwargs)
