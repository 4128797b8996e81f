"""Block-matching motion cues: how well each small displacement explains a frame from the one before it.

A ConvLSTM can in principle learn motion from raw frames, but the products that reveal it (temporal change times
spatial gradient) take it long to find. These cues hand it the matching costs of a correlation layer (as in
optical-flow networks): for every displacement d within ``radius`` pixels, the mean squared difference between
frame t at x and frame t - 1 at x - d over a ``window`` x ``window`` box, normalised by its mean over all
displacements so that the cue reads the same for light and heavy rain. Low where d is the motion.
"""

import torch
import torch.nn.functional as F
from torch import Tensor


def cue_channels(radius: int) -> int:
    """Channels of `matching_costs` at ``radius``: one per displacement in the (2r + 1)^2 square."""
    return (2 * radius + 1) ** 2


def matching_costs(previous: Tensor, current: Tensor, radius: int, window: int = 5) -> Tensor:
    """Normalised block-matching costs of ``current`` against ``previous``.

    Args:
        previous, current: (N, C, H, W) frames.
        radius: largest displacement tried, in pixels, along each axis.
        window: side of the box the squared differences are averaged over (odd).

    Returns:
        (N, (2r + 1)^2, H, W): for displacement (dy, dx) in row-major order, the local mean squared difference
        divided by its mean over the displacements (1 on average; 0 where both frames are empty).
    """
    padded = F.pad(previous, (radius, radius, radius, radius))
    height, width = current.shape[-2:]
    costs = []
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            # previous at x - d: the pixel that would arrive at x after moving by d.
            shifted = padded[..., radius - dy : radius - dy + height, radius - dx : radius - dx + width]
            costs.append((current - shifted).square().mean(dim=1))
    stacked = torch.stack(costs, dim=1)
    local = F.avg_pool2d(stacked, window, stride=1, padding=window // 2, count_include_pad=False)
    return local / (local.mean(dim=1, keepdim=True) + 1e-6)
