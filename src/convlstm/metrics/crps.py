"""The continuous ranked probability score of an ensemble, computed exactly, per pixel.

For members x_1 ... x_M and an observation y, the CRPS of the members' empirical distribution is:

```text
CRPS = mean_i |x_i - y| - 1 / (2 M^2) * sum_{i, j} |x_i - x_j|
```

and the fair CRPS (Ferro 2014), what M members drawn from the forecast distribution score on average whatever
M, divides the pair sum by 2 M (M - 1) instead. The pair sum comes from the sorted members:
sum_{i, j} |x_i - x_j| = 2 sum_k (2k - M + 1) x_(k), k from 0, in O(M log M).

pysteps' CRPS (Hersbach's decomposition) drops the segment of the integral where the observation equals a member:
observation 0 with members [0, 0, 0, 1, 2] gives 0.040 there, where the exact value is 0.200. Radar fields are
mostly 0 in observation and members alike, so pysteps' CRPS is biased low on them; this module has no such case.
"""

import torch
from torch import Tensor

__all__ = ["crps_ensemble"]


def crps_ensemble(members: Tensor, target: Tensor, *, fair: bool = False) -> Tensor:
    """The CRPS of an ensemble at every pixel: exact for the members' empirical distribution, or the fair CRPS.

    Args:
        members: the ensemble, (B, M, *rest) with M >= 1 (M >= 2 for ``fair``).
        target: the observation, (B, *rest).
        fair: the fair CRPS (the pair sum over M (M - 1) instead of M^2); for a one-member ensemble both reduce
            to the absolute error, and the fair one is undefined.

    Shape:
        members (B, M, *rest), target (B, *rest) -> (B, *rest), in the members' units, in their floating dtype
        (float32 for integer input).
    """
    if not isinstance(members, Tensor) or not isinstance(target, Tensor):
        raise ValueError(f"members and target must be tensors, got {type(members).__name__}, {type(target).__name__}")
    if members.ndim != target.ndim + 1 or members.shape[:1] + members.shape[2:] != target.shape:
        raise ValueError(
            f"members must be (B, M, *rest) for a target (B, *rest), got members {tuple(members.shape)} and "
            f"target {tuple(target.shape)}"
        )
    count = members.shape[1]
    if count < (2 if fair else 1):
        raise ValueError(f"the {'fair ' if fair else ''}CRPS needs at least {2 if fair else 1} members, got {count}")
    dtype = members.dtype if members.is_floating_point() else torch.float32
    x = members.to(dtype)
    error = (x - target.to(dtype).unsqueeze(1)).abs().mean(dim=1)
    ranked = x.sort(dim=1).values
    coefficients = 2 * torch.arange(count, device=x.device, dtype=dtype) - (count - 1)
    pair_sum = 2 * (coefficients.view(1, count, *([1] * (x.ndim - 2))) * ranked).sum(dim=1)
    return error - pair_sum / (2 * count * (count - 1 if fair else count))
