"""A learned nowcast that starts from pysteps' extrapolation nowcast and learns what extrapolation misses.

pysteps estimates the motion (Lucas-Kanade, from the last ``motion_frames`` context frames) and advects the last
frame along it (semi-Lagrangian): that is the forecast E_k at lead time k, the ``optical_flow`` baseline, computed
on the CPU outside autograd (`convlstm.models.extrapolation`). A ConvLSTM U-Net
([`ConvLSTMUNet`][convlstm.models.ConvLSTMUNet]) reads the context frames, then E_1 ... E_K, each as log(1 + R)
beside the motion field (pixels per frame) and a flag that tells context from forecast; at every lead time it
returns a correction of E_k in four parts, the first three of which can only smooth, move or rescale E_k's detail,
not redraw it:

- smoothing weights w_k,s in [0, 1], one per scale s of ``smoothing_scales``: with B_s the field blurred by
  Gaussians of sigma s_1, ..., s_s pixels in turn (an overall sigma of sqrt(s_1^2 + ... + s_s^2)) and B_0 = E_k,
  S_k = E_k + sum_s w_k,s (B_s - B_s-1), so that w_k,s = 1 up to scale s is B_s. Detail smaller than the
  motion's error after k steps cannot be forecast; S-PROG removes it scale by scale (a cascade and an AR model),
  and here the network learns where and how much of it to remove;
- a displacement d_k (2 channels, pixels): E_k is sampled at x - d_k(x) (bilinear, zero beyond the frame), a motion
  correction that moves cells without smearing them;
- a log growth factor g_k (bounded to +-4 by a tanh): growth and decay, multiplying E_k's pattern;
- an added rain rate a_k (mm/h): rain where E_k has none (entering the domain, new cells).

With ``autocorrelation_prior=True`` the smoothing weights start from S-PROG's rule instead of from nothing: each
scale's detail of the extrapolation is kept in proportion to rho_s^k, rho_s the lag-1 correlation of that scale's
detail in the context (each frame against the one before it moved one step along the motion, in log(1 + R)), as
the forecast of an AR(1) process decays its anomaly. The weight added is gate_s (1 - rho_s^k), one gate per scale,
learned and starting at 0, so untrained the forecast is still E_k; a gate of 1 smooths as the context's own
decorrelation says, and the network's weights correct that where it knows better (S-PROG applies one rule to the
whole domain).

The forecast is max(S_k(x - d_k) exp(g_k) + a_k, 0). The layer that makes the four starts at zero, so untrained
the forecast is E_k bit for bit: weights of 0 add nothing, x - 0 samples the pixel itself with weights 1 and 0,
exp(0) = 1 and + 0 change nothing. Non-negativity is a clamp whose gradient passes as if it were not there
(straight-through): a ReLU would pass none where E_k and a_k are both 0, the very pixels where rain must learn to
enter. The smoothing weights are clamped to [0, 1] the same way.

Probability matching (``probability_matching=True``, in eval mode) then gives each forecast field the values of
E_k, at the ranks of the forecast's own values, dry pixels kept dry: the learned part decides where the rain is,
the observed field how much. It is what S-PROG and STEPS do against a blurred cascade, and here it undoes what a
model trained on a mean error learns first: to hedge, spreading cells into drizzle. Training sees the unmatched
forecast (ranks have no gradient).

The ensemble version (``noise_channels > 0``) runs the U-Net once per sequence and draws its members in a light
per-member head: the U-Net's last 1x1 convolution gives ``member_channels`` features u_k per pixel, each member
adds a 1x1 projection of its own noise fields z (n(z), no bias) and a second 1x1 convolution turns
GELU(u_k + n(z)) into the four parts above. Noise channel c is a unit Gaussian drawn on a grid ``noise_pixels``
* 4**c pixels coarse and upsampled bilinearly (so 8, 32, 128, 512 pixels for four channels: from cell scale up to
domain-wide shifts, as STEPS perturbs every cascade scale and the motion as a whole), held for all the member's
lead times. A member costs two 1x1 convolutions, a weighted sum of the blurs (computed once for all members) and a
bilinear sample, not a U-Net pass.
[`ExtrapolationNowcast.ensemble`][convlstm.models.ExtrapolationNowcast.ensemble] draws M members on demand, for
training with the fair CRPS ([`convlstm.tasks.crps_fair_loss`][convlstm.tasks.crps_fair_loss]). The last
convolution starts at zero, so untrained every member is E_k; forward is the control member (noise 0).
"""

import dataclasses
import itertools
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convlstm.layers.folding import per_frame
from convlstm.models.base import ForecastingModel, config_from_arguments
from convlstm.models.extrapolation import extrapolate
from convlstm.models.frame_output import start_at_zero_change
from convlstm.models.registry import register_model
from convlstm.models.unet import Cell, ConvLSTMUNet
from convlstm.utils.checks import check_bool, check_int

#: Bound of the log growth factor: the learned part scales the extrapolation by e^-4 (1/55) to e^4 (55) at most.
MAX_LOG_GROWTH = 4.0
#: Input channels of the network besides the noise: log(1 + rain rate), motion x and y, the forecast flag.
_INPUTS = 4
#: Output channels besides the smoothing weights: displacement x and y (pixels), log growth, added rain (mm/h).
_OUTPUTS = 4
#: Gaussian sigmas (pixels) of the smoothing scales, finest first; a Gaussian reaches 3 sigma on each side.
SMOOTHING_SCALES = (1.0, 2.0, 4.0, 8.0, 16.0)
#: The autocorrelation prior's gates learn this many times faster than the other parameters: Adam moves a parameter
#: by about its learning rate per step, so a gate stored on its own scale would need a thousand steps to open.
PRIOR_GATE_RATE = 10.0


@dataclasses.dataclass
class ExtrapolationNowcastConfig:
    """The constructor arguments of [`ExtrapolationNowcast`][convlstm.models.ExtrapolationNowcast], as saved with a
    model."""

    base_channels: int = 12
    depth: int = 2
    kernel_size: int = 3
    cell: Cell = "lstm"
    motion_frames: int = 3
    smoothing_scales: tuple[float, ...] = SMOOTHING_SCALES
    noise_channels: int = 0
    noise_pixels: int = 8
    member_channels: int = 16
    members: int = 8
    probability_matching: bool = True
    match_tile: int = 0
    autocorrelation_prior: bool = False
    default_horizon: int = 6


class ExtrapolationNowcast(ForecastingModel):
    """pysteps' extrapolation nowcast corrected by a ConvLSTM U-Net that starts at no correction (see the module
    docstring): rain rates in mm/h in, rain rates in mm/h out.

    Args:
        base_channels: filters of the U-Net's finest scale, doubling at every scale down (a multiple of 4, for
            GroupNorm's 4 groups).
        depth: 2x2 poolings of the U-Net. Frames of any size work: they are padded (edge values repeated) to a
            multiple of 2**depth on the way in and cropped back on the way out.
        kernel_size: of all convolutions and recurrent layers (odd).
        cell: "lstm" or "gru", the U-Net's recurrent layers.
        motion_frames: last context frames pysteps estimates the motion from (>= 2); the context must have at
            least as many.
        smoothing_scales: Gaussian sigmas in pixels, increasing, of the blurs the network may apply to the
            extrapolation (one weight per scale); empty: no smoothing.
        noise_channels: noise fields each member reads (0: a deterministic model without
            [`ensemble`][convlstm.models.ExtrapolationNowcast.ensemble]).
        noise_pixels: spacing in pixels of the grid the first noise channel is drawn on (its correlation length);
            each further channel's grid is 4 times coarser.
        member_channels: features per pixel the U-Net hands the per-member head (ensemble models only).
        members: members [`ensemble`][convlstm.models.ExtrapolationNowcast.ensemble] draws when not told how many.
        probability_matching: in eval mode, give each forecast field the values of the extrapolation at the same
            lead time, at the forecast's ranks (dry pixels stay dry). Training mode never matches.
        match_tile: 0 matches each whole field; n > 0 matches within squares of n x n pixels (tiles of the frame
            from its top left corner), so that every square keeps the extrapolation's amount of rain and the
            learned part only moves rain within it.
        autocorrelation_prior: add to the smoothing weights gate_s (1 - rho_s^k), rho_s the context's lag-1
            correlation of scale s, with one learned gate per scale starting at 0 (module docstring); needs
            ``smoothing_scales``.
        default_horizon: frames forecast when ``horizon`` is not given.

    Shape:
        context: (B, T_in, 1, H, W) rain rates (mm/h, finite, >= 0) -> forward: (B, horizon, 1, H, W) mm/h, >= 0;
        [`ensemble`][convlstm.models.ExtrapolationNowcast.ensemble]: (B, M, horizon, 1, H, W).
    """

    family = "extrapolation_nowcast"
    config_class = ExtrapolationNowcastConfig

    def __init__(
        self,
        *,
        base_channels: int = 12,
        depth: int = 2,
        kernel_size: int = 3,
        cell: Cell = "lstm",
        motion_frames: int = 3,
        smoothing_scales: Sequence[float] = SMOOTHING_SCALES,
        noise_channels: int = 0,
        noise_pixels: int = 8,
        member_channels: int = 16,
        members: int = 8,
        probability_matching: bool = True,
        match_tile: int = 0,
        autocorrelation_prior: bool = False,
        default_horizon: int = 6,
    ) -> None:
        super().__init__()
        check_int("motion_frames", motion_frames, minimum=2)
        check_int("noise_channels", noise_channels, minimum=0)
        check_int("noise_pixels", noise_pixels)
        check_int("member_channels", member_channels)
        check_int("members", members)
        check_int("default_horizon", default_horizon)
        check_bool("probability_matching", probability_matching)
        check_int("match_tile", match_tile, minimum=0)
        if base_channels % 4:
            raise ValueError(f"base_channels must be a multiple of 4 (GroupNorm's 4 groups), got {base_channels!r}")
        smoothing_scales = _check_scales(smoothing_scales)
        if check_bool("autocorrelation_prior", autocorrelation_prior) and not smoothing_scales:
            raise ValueError("autocorrelation_prior needs smoothing_scales to act on, got none")
        self.config = config_from_arguments(ExtrapolationNowcastConfig, locals())
        self.default_horizon = default_horizon
        outputs = _OUTPUTS + len(smoothing_scales)
        self.net = ConvLSTMUNet(
            in_channels=_INPUTS,
            out_channels=member_channels if noise_channels else outputs,
            base_channels=base_channels,
            depth=depth,
            kernel_size=kernel_size,
            cell=cell,
            head="regression",
        )
        if noise_channels:  # the per-member head (module docstring)
            self.noise_in = nn.Conv2d(noise_channels, member_channels, 1, bias=False)
            self.member_out = nn.Conv2d(member_channels, outputs, 1)
        # Zero weights and bias: untrained, the correction is nothing and the forecast is the extrapolation.
        start_at_zero_change(self.member_out if noise_channels else self.net.head)
        if autocorrelation_prior:  # closed: untrained, the prior adds nothing
            self.prior_gates = nn.Parameter(torch.zeros(len(smoothing_scales)))

    def forward(
        self,
        context: Tensor,
        horizon: int | None = None,
        targets: Tensor | None = None,
        teacher_forcing: Tensor | None = None,
    ) -> Tensor:
        """The corrected extrapolation; for an ensemble model its control member (noise fields of zero).

        Args:
            context: (B, T_in, 1, H, W) rain rates in mm/h, finite and >= 0, T_in >= motion_frames.
            horizon: frames to forecast (default: ``default_horizon``).
            targets: validated, then ignored (nothing is fed back: every lead time starts from pysteps).
            teacher_forcing: validated, then ignored.

        Returns:
            (B, horizon, 1, H, W) rain rates in mm/h, >= 0.
        """
        horizon, _ = self.check_forecast_arguments(context, horizon, targets, teacher_forcing, channels=1)
        extrapolated, outputs, bands, prior = self._shared_pass(context, horizon)
        if self.config.noise_channels:
            outputs = self._member_outputs(outputs, None)
        return self._matched(correct(extrapolated, outputs, bands, prior), extrapolated)

    def ensemble(
        self,
        context: Tensor,
        horizon: int | None = None,
        *,
        members: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``members`` forecasts, each from its own noise fields; pysteps and the U-Net run once per sequence for all
        of them, and each member costs the per-member head, a weighted sum of the blurs and a bilinear sample.

        Args:
            context: as [`forward`][convlstm.models.ExtrapolationNowcast.forward].
            horizon: frames to forecast (default: ``default_horizon``).
            members: ensemble size M (default: the ``members`` of the config).
            generator: where the noise comes from (its device); None draws from torch's global generator, which
                ``torch.manual_seed`` (or Lightning's ``seed_everything``) makes reproducible. Training calls it
                without one, so every step sees fresh members.

        Returns:
            (B, M, horizon, 1, H, W) rain rates in mm/h, >= 0.

        Raises:
            ValueError: the model has no noise channels (every member would be the same), or bad arguments.
        """
        horizon, _ = self.check_forecast_arguments(context, horizon, None, None, channels=1)
        if not self.config.noise_channels:
            raise ValueError(
                "ensemble needs a model with noise_channels >= 1 (e.g. extrapolation_nowcast_ensemble); this one has "
                "noise_channels=0, so every member would be the same forecast"
            )
        count = self.config.members if members is None else check_int("members", members)
        extrapolated, features, bands, prior = self._shared_pass(context, horizon)  # once for all members
        batch, height, width = context.shape[0], context.shape[-2], context.shape[-1]
        drawn = []
        for _ in range(count):  # one member at a time: the memory of one, whatever M
            # Member m's noise is the same for every sequence of the batch, so that a sequence's members do not
            # depend on which other sequences share its batch (the same generator state, the same members).
            noise = self._noise(1, height, width, generator, like=context).expand(batch, -1, -1, -1)
            drawn.append(correct(extrapolated, self._member_outputs(features, noise), bands, prior))
        out = torch.stack(drawn, dim=1)  # (B, M, K, 1, H, W)
        return self._matched(out, extrapolated.unsqueeze(1).expand_as(out))

    # --- pieces ------------------------------------------------------------------------------------------------

    def _shared_pass(self, context: Tensor, horizon: int) -> tuple[Tensor, Tensor, list[Tensor], Tensor | None]:
        """What every member shares: pysteps' extrapolation (B, K, 1, H, W), the U-Net's outputs at the forecast
        steps, the extrapolation's detail bands and the autocorrelation prior's smoothing weights (B, K, scales,
        1, 1), or None without one, from a checked context of rain rates."""
        _check_rain(context)
        extrapolated, velocity = extrapolate(context, horizon, motion_frames=self.config.motion_frames)
        outputs = self._network_outputs(context, extrapolated, velocity[:, 0])
        prior = None
        if self.config.autocorrelation_prior:
            rho = lag1_correlations(context, velocity[:, 0], self.config.smoothing_scales)  # (B, scales)
            leads = torch.arange(1, horizon + 1, device=context.device, dtype=rho.dtype).view(1, -1, 1)
            decorrelated = 1 - rho.unsqueeze(1) ** leads  # (B, K, scales): the detail an AR(1) forecast drops
            prior = (PRIOR_GATE_RATE * self.prior_gates * decorrelated)[..., None, None]
        return extrapolated, outputs, detail_bands(extrapolated, self.config.smoothing_scales), prior

    def _network_outputs(self, context: Tensor, extrapolated: Tensor, velocity: Tensor) -> Tensor:
        """What the U-Net makes of the context (B, T, 1, H, W), the extrapolation (B, K, 1, H, W) and the motion
        (B, 2, H, W), at the forecast steps: (B, K, outputs, H, W), the four parts and the smoothing weights
        (deterministic) or the features of the per-member head (ensemble)."""
        steps, horizon = context.shape[1], extrapolated.shape[1]
        height, width = context.shape[-2:]
        frames = torch.cat([context, extrapolated], dim=1)  # (B, T + K, 1, H, W)
        flag = torch.zeros_like(frames)
        flag[:, steps:] = 1.0
        motion = velocity.unsqueeze(1).expand(-1, steps + horizon, -1, -1, -1)
        inputs = torch.cat([frames.log1p(), motion, flag], dim=2)  # (B, T + K, _INPUTS, H, W)
        multiple = 2**self.config.depth
        pad = (0, -width % multiple, 0, -height % multiple)
        padded = F.pad(inputs.flatten(0, 1), pad, mode="replicate").unflatten(0, inputs.shape[:2])
        out, _ = self.net(padded)
        return out[:, steps:, :, :height, :width]

    def _member_outputs(self, features: Tensor, noise: Tensor | None) -> Tensor:
        """The per-member head: features (B, K, member_channels, H, W) and one member's noise (B, noise_channels,
        H, W), or None for the control member -> (B, K, outputs, H, W)."""
        hidden = features if noise is None else features + self.noise_in(noise).unsqueeze(1)
        return per_frame(self.member_out, F.gelu(hidden))

    def _matched(self, forecast: Tensor, reference: Tensor) -> Tensor:
        if self.config.probability_matching and not self.training:
            return probability_match(forecast, reference, tile=self.config.match_tile or None)
        return forecast

    def _noise(self, count: int, height: int, width: int, generator: torch.Generator | None, *, like: Tensor) -> Tensor:
        """(count, noise_channels, H, W) smooth unit Gaussian fields on ``like``'s device and dtype, channel c
        drawn on a grid ``noise_pixels`` * 4**c pixels coarse."""
        device = like.device if generator is None else generator.device
        fields = []
        for channel in range(self.config.noise_channels):
            spacing = self.config.noise_pixels * 4**channel
            coarse = (-(-height // spacing) + 1, -(-width // spacing) + 1)
            eps = torch.randn(count, 1, *coarse, generator=generator, device=device)
            fields.append(F.interpolate(eps, size=(height, width), mode="bilinear", align_corners=True))
        return torch.cat(fields, dim=1).to(device=like.device, dtype=like.dtype)


# ---------------------------------------------------------------------------------------------------- pieces
def backtrack_exact(frames: Tensor, displacement: Tensor) -> Tensor:
    """Samples ``frames`` at x - displacement(x), bilinearly, with zeros outside the frame: what arrives at x after
    moving by ``displacement`` (x then y, in pixels).

    Unlike `convlstm.models.advection_head.backtrack` (``grid_sample``, whose normalised coordinates round),
    a zero displacement gives the frames back bit for bit: x - 0 is x, its weights are exactly 1 and 0.

    Shape:
        frames (N, C, H, W), displacement (N, 2, H, W) -> (N, C, H, W).
    """
    channels, height, width = frames.shape[1:]
    # Pixel coordinates and the indices made from them in float32 whatever autocast chose: bfloat16 holds whole
    # numbers exactly only up to 256, so its indices would point at the wrong pixels (or past the frame).
    displacement = displacement.float()
    rows = torch.arange(height, device=frames.device, dtype=torch.float32).view(1, height, 1)
    cols = torch.arange(width, device=frames.device, dtype=torch.float32).view(1, 1, width)
    x, y = cols - displacement[:, 0], rows - displacement[:, 1]  # (N, H, W) source coordinates
    left, top = x.floor(), y.floor()
    right_weight, bottom_weight = x - left, y - top
    flat = frames.flatten(2)  # (N, C, H * W)
    out = frames.new_zeros(frames.shape)
    for dy, row_weight in ((0, 1 - bottom_weight), (1, bottom_weight)):
        for dx, col_weight in ((0, 1 - right_weight), (1, right_weight)):
            source_x, source_y = left + dx, top + dy
            inside = (source_x >= 0) & (source_x <= width - 1) & (source_y >= 0) & (source_y <= height - 1)
            index = (source_y.clamp(0, height - 1) * width + source_x.clamp(0, width - 1)).long().flatten(1)
            values = flat.gather(2, index.unsqueeze(1).expand(-1, channels, -1)).view(frames.shape)
            weight = (row_weight * col_weight * inside).to(frames.dtype)
            out = out + weight.unsqueeze(1) * values
    return out


def gaussian_blur(fields: Tensor, sigma: float) -> Tensor:
    """``fields`` (N, C, H, W) blurred by a Gaussian of ``sigma`` pixels (separable, cut at 3 sigma), edge values
    repeated beyond the frame so that a blur neither darkens nor brightens the edges."""
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, device=fields.device, dtype=torch.float32)
    taps = torch.exp(-0.5 * (offsets / sigma) ** 2)
    taps = (taps / taps.sum()).to(fields.dtype)
    channels = fields.shape[1]
    # Every field its own channel of one depthwise convolution: ten times faster on a CPU than a batch of
    # single-channel images, with the same sums.
    flat = fields.reshape(1, -1, *fields.shape[-2:])  # (1, N * C, H, W)
    count = flat.shape[1]
    row_taps = taps.view(1, 1, 1, -1).expand(count, -1, -1, -1)
    column_taps = taps.view(1, 1, -1, 1).expand(count, -1, -1, -1)
    rows = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="replicate"), row_taps, groups=count)
    both = F.conv2d(F.pad(rows, (0, 0, radius, radius), mode="replicate"), column_taps, groups=count)
    return both.view(-1, channels, *fields.shape[-2:])


def detail_bands(fields: Tensor, scales: Sequence[float]) -> list[Tensor]:
    """The detail of ``fields`` (B, K, 1, H, W) between successive ``scales``: B_s - B_s-1 for each scale s, where
    B_s is B_s-1 blurred by a Gaussian of sigma ``scales[s]`` (each blur starts from the last, the cheaper way to
    the coarse scales) and B_0 = ``fields``; each band (B, K, 1, H, W)."""
    bands, finer = [], fields.flatten(0, 1)
    for sigma in scales:
        coarser = gaussian_blur(finer, sigma)
        bands.append((coarser - finer).unflatten(0, fields.shape[:2]))
        finer = coarser
    return bands


def smooth(fields: Tensor, weights: Tensor, bands: Sequence[Tensor]) -> Tensor:
    """``fields`` (B, K, 1, H, W) with their detail ``bands`` (from
    [`detail_bands`][convlstm.models.extrapolation_nowcast.detail_bands]) removed in proportion to ``weights``
    (B, K, len(bands), H, W) in [0, 1]: F + sum_s w_s (B_s - B_s-1). Weights of 0 give ``fields`` back bit for
    bit; weights of 1 up to scale s give B_s."""
    out = fields
    for index, band in enumerate(bands):
        out = out + weights[:, :, index : index + 1] * band
    return out


def correct(extrapolated: Tensor, outputs: Tensor, bands: Sequence[Tensor], prior: Tensor | None = None) -> Tensor:
    """The extrapolation (B, K, 1, H, W) corrected by the network's ``outputs`` (B, K, 4 + scales, H, W):
    displacement, log growth, added rain and the smoothing weights (module docstring), its detail ``bands`` given
    (they do not depend on the outputs, so an ensemble computes them once), and ``prior`` smoothing weights
    (broadcast to (B, K, scales, H, W)) added to the network's."""
    displacement, growth, added = outputs[:, :, :2], outputs[:, :, 2:3], outputs[:, :, 3:4]
    growth = MAX_LOG_GROWTH * torch.tanh(growth / MAX_LOG_GROWTH)
    weights = outputs[:, :, _OUTPUTS:] if prior is None else outputs[:, :, _OUTPUTS:] + prior
    smoothed = smooth(extrapolated, unit_interval(weights), bands)
    moved = backtrack_exact(smoothed.flatten(0, 1), displacement.flatten(0, 1)).unflatten(0, outputs.shape[:2])
    return non_negative(moved * growth.exp() + added)


def lag1_correlations(context: Tensor, velocity: Tensor, scales: Sequence[float]) -> Tensor:
    """How much of each scale's detail survives one step of extrapolation: per sequence and scale, the correlation
    of the detail bands of log(1 + R) of each context frame and of the frame before it moved one step along
    ``velocity`` (pixels per frame), averaged over the context's pairs of frames and clamped to [0, 1]. S-PROG's
    lag-1 autocorrelation of its cascade levels, with Gaussian bands.

    Shape:
        context (B, T, 1, H, W) rain rates, T >= 2; velocity (B, 2, H, W) -> (B, len(scales)).
    """
    batch, pairs = context.shape[0], context.shape[1] - 1
    logs = context.float().log1p()
    later = logs[:, 1:].flatten(0, 1)
    displacement = velocity.float().repeat_interleave(pairs, dim=0)
    moved = backtrack_exact(logs[:, :-1].flatten(0, 1), displacement)
    # Where the move brings in pixels from beyond the frame it has no value; the later frame's own stands in, as a
    # zero would be an edge that every band reads as detail.
    inside = backtrack_exact(torch.ones_like(moved), displacement) > 0.999
    moved = torch.where(inside, moved, later)
    correlations = []
    for earlier_band, later_band in zip(
        detail_bands(moved.unflatten(0, (batch, pairs)), scales),
        detail_bands(later.unflatten(0, (batch, pairs)), scales),
        strict=True,
    ):
        a = earlier_band - earlier_band.mean(dim=(-2, -1), keepdim=True)
        b = later_band - later_band.mean(dim=(-2, -1), keepdim=True)
        product = (a * a).sum(dim=(-2, -1)) * (b * b).sum(dim=(-2, -1))
        # No detail at a scale (a dry patch): its correlation is 0, and there is nothing for the prior to smooth.
        correlation = (a * b).sum(dim=(-2, -1)) / product.sqrt().clamp_min(1e-12)
        correlations.append(correlation.mean(dim=(1, 2)))
    return torch.stack(correlations, dim=1).clamp(0.0, 1.0)


def unit_interval(x: Tensor) -> Tensor:
    """``x.clamp(0, 1)`` in value, the identity in gradient (straight-through), so that a weight held at 0 can still
    learn to rise."""
    return x + (x.clamp(0.0, 1.0) - x).detach()


def non_negative(x: Tensor) -> Tensor:
    """``x.clamp_min(0)`` in value, the identity in gradient (straight-through), so that a pixel held at 0 can
    still learn to rise; non-negative values come back unchanged, bit for bit."""
    return x + (x.clamp_min(0.0) - x).detach()


def probability_match(forecast: Tensor, reference: Tensor, *, tile: int | None = None) -> Tensor:
    """Each field of ``forecast`` with the values of the same field of ``reference``, placed by the forecast's
    ranks: the k-th smallest forecast pixel gets the k-th smallest reference value. Pixels the forecast has dry
    (<= 0) stay 0, so where the forecast is wetter than the reference its weakest rain goes dry, and where it is
    drier its rain takes the reference's largest values. A forecast equal to the reference comes back unchanged.

    As pysteps' ``nonparam_match_empirical_cdf`` (which S-PROG and STEPS use), on tensors and without gradient
    through the ranks. With ``tile`` the matching is done within each ``tile`` x ``tile`` square of the field
    (from the top left corner; the last row and column of squares may be smaller), so that the reference's
    values stay in their square: a forecast that concentrates the rain of the whole field in its largest rain
    areas cannot leave the scattered ones dry.

    Shape:
        forecast and reference: (..., H, W), the same shape -> (..., H, W).
    """
    if forecast.shape != reference.shape or forecast.ndim < 2:
        raise ValueError(
            f"forecast and reference must be fields (..., H, W) of one shape, got {tuple(forecast.shape)} and "
            f"{tuple(reference.shape)}"
        )
    if tile is not None:
        return _match_in_tiles(forecast, reference, check_int("tile", tile))
    values = forecast.flatten(-2)  # (..., H * W)
    order = values.argsort(dim=-1, stable=True)
    ranked = reference.flatten(-2).to(values.dtype).sort(dim=-1).values
    matched = torch.empty_like(values).scatter_(-1, order, ranked)
    return torch.where(values > 0, matched, torch.zeros_like(matched)).view(forecast.shape)


def _match_in_tiles(forecast: Tensor, reference: Tensor, tile: int) -> Tensor:
    """`probability_match` within each tile x tile square. The frame is padded with zeros to whole squares: a
    padded forecast pixel is dry, so it stays 0 and takes none of the reference's rain, and the reference's padded
    zeros rank below every value a wet forecast pixel can take."""
    height, width = forecast.shape[-2:]
    pad = (0, -width % tile, 0, -height % tile)

    def squares(x: Tensor) -> Tensor:  # (..., H, W) -> (..., rows, columns, tile, tile)
        padded = F.pad(x, pad)
        rows, columns = padded.shape[-2] // tile, padded.shape[-1] // tile
        return padded.unflatten(-2, (rows, tile)).unflatten(-1, (columns, tile)).transpose(-3, -2)

    matched = probability_match(squares(forecast), squares(reference))
    whole = matched.transpose(-3, -2).flatten(-4, -3).flatten(-2, -1)
    return whole[..., :height, :width]


def _check_scales(scales: Sequence[float]) -> tuple[float, ...]:
    if isinstance(scales, str) or not isinstance(scales, Sequence):
        raise ValueError(f"smoothing_scales must be a list of Gaussian sigmas in pixels, got {scales!r}")
    values = tuple(float(s) for s in scales)
    if any(not 0 < s < float("inf") for s in values) or any(a >= b for a, b in itertools.pairwise(values)):
        raise ValueError(f"smoothing_scales must be positive sigmas in pixels, increasing, got {list(scales)!r}")
    return values


def _check_rain(context: Tensor) -> None:
    if not torch.isfinite(context).all():
        raise ValueError("context must be finite rain rates in mm/h: it holds NaN or inf (mask them in the loss)")
    if bool((context < 0).any()):
        raise ValueError(f"context must be rain rates in mm/h (>= 0), got a minimum of {float(context.min()):.3g}")


# ---------------------------------------------------------------------------------------------------- builders
@register_model
def extrapolation_nowcast(**overrides: Any) -> ExtrapolationNowcast:
    """pysteps' extrapolation plus a learned correction (ConvLSTM U-Net, 12 filters, 2 poolings) that starts at
    zero; probability-matched to the extrapolation in eval mode. mm/h in and out."""
    return ExtrapolationNowcast(**overrides)


@register_model
def extrapolation_nowcast_ensemble(**overrides: Any) -> ExtrapolationNowcast:
    """The same with 4 noise channels: ``model.ensemble(context, horizon, members=M)`` draws M members, trained
    with the fair CRPS; no probability matching, so members may differ in intensity too."""
    return ExtrapolationNowcast(**{"noise_channels": 4, "probability_matching": False, **overrides})
