"""Synthetic weather radar: rain-rate fields advected by a slowly changing wind, with growth, decay, birth and death.

How a sequence is made (all from one seeded stream):

1. A latent Gaussian field L on a periodic domain twice the frame size, with a power-law spectrum
   |k|^-spectral_slope (multiscale structure: large rain bands holding small cells).
2. Each frame, L is carried by the wind with a semi-Lagrangian step (L(x) <- L(x - u(x)), bilinear), then
   partly renewed per Fourier mode: L_k <- rho(k) L_k + sqrt(1 - rho(k)^2) noise_k with rho(k) = exp(-evolution
   * |k|), so small cells change fast and large bands slowly. Cells grow, decay, appear and vanish; optical-flow
   extrapolation is good but not perfect.
3. The wind is a mean wind (speed in ``speed_range`` px/frame, direction turning slowly) plus a divergence-free,
   large-scale perturbation that drifts between two random states over the sequence.
4. Rain falls where L exceeds the quantile that gives the wanted wet fraction of the valid pixels (drifting
   linearly inside ``wet_fraction`` over the sequence); the rate is ``edge_rain_rate * exp(gain * (L - threshold))``,
   light at the edge of a rain area and heavy-tailed inside. ``gain`` is drawn per sequence in ``gain_range``
   (low: stratiform rain, high: convective cells above 10 and 30 mm/h) and drifts a little over the sequence.
5. The frame is the centre crop of the domain, so rain flows in from outside the picture.

Conversions follow HKO-7 (Shi et al. 2017): pixel p in [0, 1] <-> dBZ = 70 p - 10, and the Z-R relation
Z = a R^b, i.e. dBZ = 10 log10(a) + 10 b log10(R) (HKO-7: a = 58.53, b = 1.56; Marshall-Palmer: a = 200, b = 1.6).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.fft
import torch

from convlstm.data.synthetic._sequences import (
    Item,
    SeededSequences,
    Transform,
    dataset_salt,
    frames_to_item,
)
from convlstm.units import (
    ZR_RELATIONS,
    dbz_to_pixel,
    dbz_to_rain_rate,
    pixel_to_dbz,
    pixel_to_rain_rate,
    rain_rate_to_dbz,
    rain_rate_to_pixel,
    zr_coefficients,
)
from convlstm.utils.checks import check_choice, check_float, check_int, check_range

UNITS = ("pixel", "mm/h")


# --- the radar and its invalid pixels ----------------------------------------------------------------------------


def radar_mask(
    height: int, width: int, rng: np.random.Generator, *, num_blocked_beams: int = 2, range_fraction: float = 1.0
) -> np.ndarray:
    """Valid-pixel mask (H, W) of a radar at the frame centre: 1 inside its range circle, 0 outside and behind
    obstacles (each blocked beam is a sector of 3 to 8 degrees, blocked beyond 20 to 60 % of the range)."""
    rows = np.arange(height)[:, None] + 0.5 - height / 2.0
    cols = np.arange(width)[None, :] + 0.5 - width / 2.0
    distance = np.hypot(rows, cols)
    azimuth = np.arctan2(rows, cols)
    max_range = range_fraction * min(height, width) / 2.0
    valid = distance <= max_range
    for _ in range(num_blocked_beams):
        centre = rng.uniform(-np.pi, np.pi)
        half_width = np.deg2rad(rng.uniform(3.0, 8.0)) / 2.0
        start = rng.uniform(0.2, 0.6) * max_range
        off_axis = np.abs(np.angle(np.exp(1j * (azimuth - centre))))
        valid &= ~((off_axis <= half_width) & (distance >= start))
    return valid.astype(np.float32)


# --- the weather ----------------------------------------------------------------------------------------------


class RadarSequence(NamedTuple):
    """One generated sequence: rain rates (T, H, W) in mm/h (0 on invalid pixels) and mean wind (T, 2) px/frame."""

    rain_rate: np.ndarray
    mean_wind: np.ndarray


def _wavenumbers(shape: tuple[int, int]) -> np.ndarray:
    """|k| in cycles per pixel on the rfft2 grid of ``shape``."""
    return np.hypot(np.fft.fftfreq(shape[0])[:, None], np.fft.rfftfreq(shape[1])[None, :])


def _spectral_noise(rng: np.random.Generator, amplitude: np.ndarray) -> np.ndarray:
    """Complex Gaussian rfft2 coefficients shaped by ``amplitude`` (float32; E|c|^2 = 2 amplitude^2)."""
    parts = rng.standard_normal((*amplitude.shape, 2), dtype=np.float32)
    return parts.view(np.complex64)[..., 0] * amplitude


def _standardise(field: np.ndarray) -> np.ndarray:
    return (field - field.mean()) / field.std()


def _perturbation_wind(rng: np.random.Generator, k: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A divergence-free, large-scale wind (2, H, W) with max speed 1, from a smooth streamfunction."""
    large_scale = np.where((k > 0) & (k <= 2.5 / max(shape)), 1.0, 0.0)
    psi = scipy.fft.irfft2(_spectral_noise(rng, large_scale), s=shape)
    wind = np.stack([np.gradient(psi, axis=1), -np.gradient(psi, axis=0)])  # (d psi/dx, -d psi/dy)
    return (wind / np.abs(wind).max()).astype(np.float32)


def advect(field: np.ndarray, wind: np.ndarray) -> np.ndarray:
    """Semi-Lagrangian step on a periodic domain: the new value at x is the old one at x - u(x) (bilinear).

    Args:
        field: (H, W) values.
        wind: (2, H, W) displacement per step in pixels, (row, col) components.

    Returns:
        (H, W) float32 advected field.
    """
    if field.ndim != 2 or wind.shape != (2, *field.shape):
        raise ValueError(f"advect expects field (H, W) and wind (2, H, W), got {field.shape} and {wind.shape}")
    height, width = field.shape
    margin = int(np.ceil(np.abs(wind).max())) + 2
    padded = torch.from_numpy(np.pad(field.astype(np.float32, copy=False), margin, mode="wrap"))
    rows = np.arange(height, dtype=np.float32)[:, None] + margin - wind[0]
    cols = np.arange(width, dtype=np.float32)[None, :] + margin - wind[1]
    # grid_sample wants (x, y) in [-1, 1]; with align_corners=True, -1 and 1 are the outer pixel centres.
    grid = np.stack([cols * (2.0 / (padded.shape[1] - 1)) - 1.0, rows * (2.0 / (padded.shape[0] - 1)) - 1.0], -1)
    out = torch.nn.functional.grid_sample(
        padded[None, None], torch.from_numpy(grid.astype(np.float32))[None], mode="bilinear", align_corners=True
    )
    return out[0, 0].numpy()


class SyntheticRadar(SeededSequences):
    """Synthetic radar rain-rate sequences for precipitation nowcasting.

    Args:
        split: "train", "val" or "test" (disjoint random streams).
        transform: Callable applied to the item dict.
        seed: Base seed; item ``i`` is a function of (seed, split, epoch, i) only. The radar mask depends on the
            seed alone (one radar site for all splits).
        context_frames: Input frames T_in (5 as in Shi et al.).
        target_frames: Frames to predict T_out (15 or 20).
        image_size: Frame side, or (H, W).
        units: "pixel" (HKO-7 pixel values in [0, 1], the default) or "mm/h" (rain rates, not bounded by 1).
        relation: Z-R relation for the pixel units: "hko7" (a=58.53, b=1.56), "marshall_palmer" or (a, b).
        wet_fraction: (low, high) fraction of valid pixels with rain; each sequence drifts between two values
            drawn in this range.
        speed_range: (low, high) mean wind speed in px/frame.
        spectral_slope: Power spectrum exponent beta of the latent field (P(k) ~ |k|^-beta).
        evolution: Growth and decay speed: Fourier mode k keeps correlation exp(-evolution |k|) per frame
            (|k| in cycles per pixel), so small cells change faster than large bands.
        edge_rain_rate: Rain rate in mm/h at the edge of a rain area: R = edge_rain_rate * exp(gain (L - threshold))
            for a unit Gaussian latent field L.
        gain_range: (low, high) of ``gain``, drawn per sequence; larger gives heavier tails. It drifts by up to
            +-0.5 over a sequence (growth and decay of intensity).
        num_blocked_beams: Blocked radar beams in the mask.
        num_sequences: Length; None gives 5,000 train, 500 val, 1,000 test.

    Items are dicts with float32 "context" (T_in, 1, H, W), "target" (T_out, 1, H, W) in ``units``, 0 on invalid
    pixels, and "mask" (1, 1, H, W) float32 (1 valid, 0 invalid; broadcasts against the frames).
    """

    name = "synthetic_radar"
    default_sizes = {"train": 5_000, "val": 500, "test": 1_000}  # noqa: RUF012

    def __init__(
        self,
        split: str = "train",
        transform: Transform | None = None,
        *,
        seed: int = 0,
        context_frames: int = 5,
        target_frames: int = 15,
        image_size: int | tuple[int, int] = 100,
        units: str = "pixel",
        relation: str | tuple[float, float] = "hko7",
        wet_fraction: tuple[float, float] = (0.1, 0.3),
        speed_range: tuple[float, float] = (1.0, 3.0),
        spectral_slope: float = 3.0,
        evolution: float = 0.3,
        edge_rain_rate: float = 0.2,
        gain_range: tuple[float, float] = (1.5, 3.5),
        num_blocked_beams: int = 2,
        num_sequences: int | None = None,
    ) -> None:
        super().__init__(split=split, transform=transform, seed=seed, num_sequences=num_sequences)
        self.context_frames = check_int("context_frames", context_frames, 1)
        self.target_frames = check_int("target_frames", target_frames, 0)
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if len(size) != 2:
            raise ValueError(f"image_size must be an int or an (H, W) pair, got {image_size!r}")
        self.image_size = (check_int("image_size[0]", size[0], 8), check_int("image_size[1]", size[1], 8))
        self.units = check_choice("units", units, UNITS)
        self.relation = zr_coefficients(relation)
        self.wet_fraction = check_range("wet_fraction", wet_fraction, 0.0, 1.0)
        self.speed_range = check_range("speed_range", speed_range, 0.0, float(min(self.image_size)))
        self.spectral_slope = check_float("spectral_slope", spectral_slope, 0.0, 10.0)
        self.evolution = check_float("evolution", evolution, 0.0, np.inf)
        self.edge_rain_rate = check_float("edge_rain_rate", edge_rain_rate, 0.0, np.inf, low_open=True)
        self.gain_range = check_range("gain_range", gain_range, 0.0, 20.0)
        self.num_blocked_beams = check_int("num_blocked_beams", num_blocked_beams, 0)

        mask_rng = np.random.default_rng([self.seed, dataset_salt(self.name + "/mask")])
        self.mask = radar_mask(*self.image_size, mask_rng, num_blocked_beams=self.num_blocked_beams)
        # The weather lives on a periodic domain twice the frame size; the frame is its centre, so rain enters
        # the picture from outside and leaves it without coming straight back.
        self._domain = (2 * self.image_size[0], 2 * self.image_size[1])
        self._k = _wavenumbers(self._domain)
        amplitude = np.zeros_like(self._k)
        amplitude[self._k > 0] = self._k[self._k > 0] ** (-self.spectral_slope / 2)
        self._amplitude = amplitude.astype(np.float32)
        self._persistence = np.exp(-self.evolution * self._k).astype(np.float32)
        # rfft2 coefficients of a unit-variance field with spectrum ~ amplitude^2 have E|c|^2 = N^2 amp^2 / S,
        # S the sum of amp^2 over the full (two-sided) spectrum; the rfft grid holds most columns once for two.
        columns = np.full(self._k.shape[1], 2.0)
        columns[0] = 1.0
        if self._domain[1] % 2 == 0:
            columns[-1] = 1.0
        two_sided = float(np.sum(columns * amplitude**2))
        noise_scale = self._domain[0] * self._domain[1] / np.sqrt(2.0 * two_sided)
        self._renewal = (np.sqrt(1.0 - self._persistence**2) * noise_scale * amplitude).astype(np.float32)

    @property
    def num_frames(self) -> int:
        """Frames per sequence (context and target together)."""
        return self.context_frames + self.target_frames

    def generate(self, rng: np.random.Generator) -> RadarSequence:
        """One sequence of rain rates in mm/h (0 on invalid pixels) drawn from ``rng``."""
        num_frames, (height, width) = self.num_frames, self.image_size
        ramp = np.linspace(0.0, 1.0, num_frames)
        wet = np.interp(ramp, [0, 1], rng.uniform(*self.wet_fraction, size=2))
        gain_start = rng.uniform(*self.gain_range)
        gain_end = np.clip(gain_start + rng.uniform(-0.5, 0.5), *self.gain_range)
        gain = np.interp(ramp, [0, 1], [gain_start, gain_end])

        # Wind: a mean flow turning up to ~1 degree per frame, plus a large-scale swirl drifting between two states.
        speed = rng.uniform(*self.speed_range)
        direction = rng.uniform(-np.pi, np.pi) + rng.uniform(-0.02, 0.02) * np.arange(num_frames)
        mean_wind = speed * np.stack([np.sin(direction), np.cos(direction)], axis=1)  # (T, 2) (row, col)
        swirl = rng.uniform(0.1, 0.4) * speed
        swirl_a, swirl_b = (_perturbation_wind(rng, self._k, self._domain) for _ in range(2))

        latent = _standardise(scipy.fft.irfft2(_spectral_noise(rng, self._amplitude), s=self._domain))
        crop = np.s_[height // 2 : height // 2 + height, width // 2 : width // 2 + width]
        valid = self.mask > 0
        rain = np.zeros((num_frames, height, width), dtype=np.float32)
        for t in range(num_frames):
            if t > 0:
                phase = 0.5 * np.pi * t / max(num_frames - 1, 1)
                wind = mean_wind[t, :, None, None] + swirl * (np.cos(phase) * swirl_a + np.sin(phase) * swirl_b)
                kept = self._persistence * scipy.fft.rfft2(advect(latent, wind))
                fresh = _spectral_noise(rng, self._renewal)
                latent = _standardise(scipy.fft.irfft2(kept + fresh, s=self._domain))
            view = latent[crop]
            threshold = np.quantile(view[valid], 1.0 - wet[t]) if valid.any() else np.inf
            raining = (view > threshold) & valid
            rain[t][raining] = self.edge_rain_rate * np.exp(gain[t] * (view[raining] - threshold))
        return RadarSequence(rain, mean_wind)

    def _make_item(self, rng: np.random.Generator, index: int) -> Item:
        rain = torch.from_numpy(self.generate(rng).rain_rate).unsqueeze(1)  # (T, 1, H, W) mm/h
        frames = rain if self.units == "mm/h" else rain_rate_to_pixel(rain, self.relation)
        item = frames_to_item(frames, self.context_frames, self.target_frames)
        item["mask"] = torch.from_numpy(self.mask)[None, None]
        return item

    def extra_repr(self) -> str:
        return f"{self.context_frames} -> {self.target_frames} frames, {self.image_size}, units={self.units!r}"


__all__ = [
    "ZR_RELATIONS",
    "RadarSequence",
    "SyntheticRadar",
    "advect",
    "dbz_to_pixel",
    "dbz_to_rain_rate",
    "pixel_to_dbz",
    "pixel_to_rain_rate",
    "radar_mask",
    "rain_rate_to_dbz",
    "rain_rate_to_pixel",
    "zr_coefficients",
]
