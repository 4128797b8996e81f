"""Tolerances for comparing floating-point results, derived from the dtype and the computation, not from what one
machine printed.

Two float32 computations of the same mathematics that sum their products in another order (a convolution batched
over all frames against one frame at a time, a sequence in chunks against one call, our cell against a reference
written another way, another CPU's kernels) round differently. A sum of K terms of magnitude at most M changes by
at most about K * eps * M, and typically by sqrt(K) * eps * M, with eps = 2**-23 ~ 1.2e-7 for float32. The layers
and models of the tests sum K <= ~1,000 products per output (3x3 or 5x5 kernels over up to ~100 channels), their
activations lie in [-1, 1] (tanh, sigmoid), and a few layers and frames compound the difference: a few 1e-6 in
all, so 1e-5 absolute (torch's own float32 default) leaves room on any CPU, and 1.3e-6 relative covers the
larger values of unbounded outputs.
"""

from typing import Any

import torch

EPS32 = torch.finfo(torch.float32).eps

#: float32 results of the same computation with its sums in another order (see the module docstring).
FLOAT32_REORDERED: dict[str, float] = {"rtol": 1.3e-6, "atol": 1e-5}

#: float64 results of the same computation with its sums in another order, through a stack of gates run over a few
#: steps with weights three times PyTorch's default bound (OpenSTL's golden fixtures): eps = 2**-52 ~ 2.2e-16, and
#: the steps amplify a difference (a float32 run of such a fixture differed by 3e-5 at outputs up to 3, about 100
#: times FLOAT32_REORDERED's rtol), so 1e-12: about 4,500 eps, where float32's atol is about 80 eps.
FLOAT64_REORDERED: dict[str, float] = {"rtol": 1e-12, "atol": 1e-12}


def gradient_tolerance(reference: torch.Tensor, *, rel: float = 1e-5) -> dict[str, Any]:
    """assert_close tolerances for a float32 gradient computed along another path (chunks, checkpointing, ranks).

    A parameter's gradient sums products over batch, frames and pixels, thousands of terms whose own sizes vary
    widely, so its rounding scales with the largest entry rather than with each entry: ``rel`` of the largest
    magnitude (about 100 eps, i.e. sqrt of ~10^4 terms times a margin), plus the same ``rel`` relative."""
    scale = float(reference.detach().abs().max()) if reference.numel() else 0.0
    return {"rtol": rel, "atol": rel * max(scale, EPS32)}
