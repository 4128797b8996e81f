"""An output head that forecasts by moving the last observed frame, the way optical-flow nowcasting does, with the
motion and the change of intensity read from the recurrent state.

A pixel head (Shi et al.'s 1x1 convolution) must redraw every frame from the state: early in training and for
detail finer than the patches it blurs, and at the first lead time it scores below a copy of the last frame. This
head keeps the last frame's detail instead. For lead time k it reads, from the forecaster's hidden states at that
step,

- a mean velocity v_k since the last observation (2 channels, pixels per frame, on the patch grid, upsampled
  bilinearly to the frame), so the displacement is k * v_k: a steady wind is the same v at every lead time;
- an additive change (C * p * p channels, unfolded to the frame): growth, decay and rain that enters the picture.

The forecast is the last frame sampled at x - k v_k(x) (semi-Lagrangian backtracking, bilinear, zero outside the
frame) plus the change. The change starts at zero, so a fresh model forecasts (nearly) persistence and learns the
motion from there. The head learns motion well only when the encoder is given motion cues
(`convlstm.models.motion_cues`); docs/results/ablations.md measures how much of pysteps' Lucas-Kanade speed it
reaches with and without them.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convlstm.models.patching import depth_to_space


class AdvectionHead(nn.Module):
    """Forecast frames = last frame moved by a predicted velocity field + a predicted change.

    Args:
        hidden_channels: channels of the forecaster states it reads (all layers concatenated).
        in_channels: channels C of the frames.
        patch_size: p, the factor between the state grid and the frame.

    Shape:
        states (B, K, hidden_channels, H / p, W / p) and last_frame (B, C, H, W) -> (B, K, C, H, W).
    """

    def __init__(self, hidden_channels: int, in_channels: int, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.velocity = nn.Conv2d(hidden_channels, 2, kernel_size=1)
        self.change = nn.Conv2d(hidden_channels, in_channels * patch_size**2, kernel_size=1)
        # The change starts at zero and the velocity at PyTorch's small random weights (zero would pass no gradient
        # back to the states): a fresh model forecasts the last frame, moved by a fraction of a pixel per frame.
        nn.init.zeros_(self.change.weight)
        for bias in (self.change.bias, self.velocity.bias):
            if bias is not None:  # always, for an nn.Conv2d built with its default bias=True
                nn.init.zeros_(bias)

    def forward(self, states: Tensor, last_frame: Tensor) -> Tensor:
        batch, horizon = states.shape[:2]
        flat = states.flatten(0, 1)  # (B * K, F, h, w)
        velocity = self.velocity_field(flat, last_frame.shape[-2:])
        lead = torch.arange(1, horizon + 1, device=states.device, dtype=velocity.dtype).repeat(batch)
        displacement = velocity * lead.view(-1, 1, 1, 1)  # (B * K, 2, H, W): (dx, dy) in pixels
        moved = backtrack(last_frame.repeat_interleave(horizon, dim=0), displacement)
        change = depth_to_space(self.change(flat), self.patch_size, name="change")
        return (moved + change).unflatten(0, (batch, horizon))

    def velocity_field(self, flat_states: Tensor, size: Sequence[int]) -> Tensor:
        """The mean velocity since the last observation, (N, 2, H, W) pixels per frame (x then y), read from states
        (N, hidden_channels, H / p, W / p) and upsampled bilinearly to the frame size ``size``."""
        return F.interpolate(self.velocity(flat_states), size=size, mode="bilinear", align_corners=False)


def backtrack(frames: Tensor, displacement: Tensor) -> Tensor:
    """Samples ``frames`` (N, C, H, W) at x - displacement(x) (N, 2, H, W; x then y, in pixels), bilinearly, with
    zeros outside the frame: what arrives at x after moving by ``displacement``."""
    height, width = frames.shape[-2:]
    rows = torch.arange(height, device=frames.device, dtype=displacement.dtype)
    cols = torch.arange(width, device=frames.device, dtype=displacement.dtype)
    y, x = torch.meshgrid(rows, cols, indexing="ij")
    source_x = x - displacement[:, 0]
    source_y = y - displacement[:, 1]
    # grid_sample with align_corners=True maps -1 and 1 to the centres of the first and last pixels.
    grid = torch.stack((2 * source_x / max(width - 1, 1) - 1, 2 * source_y / max(height - 1, 1) - 1), dim=-1)
    return F.grid_sample(frames, grid.to(frames.dtype), mode="bilinear", padding_mode="zeros", align_corners=True)
