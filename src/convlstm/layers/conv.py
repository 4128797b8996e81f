"""A convolution for 1, 2 or 3 spatial dimensions with exact "same" padding, also for even kernels."""

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convlstm.utils.checks import check_int

Padding = Literal["same", "valid"]
IntOrTuple = int | Sequence[int]

_CONV_FUNCTIONS = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}

#: The largest convolution weight a layer accepts: 2**31 - 1 elements (8 GiB in float32), the 32-bit index limit of
#: many convolution kernels; 64 times the largest one among the registered models (FC-LSTM-2048's, 33.5M).
MAX_WEIGHT_ELEMENTS = 2**31 - 1


def check_spatial_dims(spatial_dims: int) -> int:
    return check_int("spatial_dims", spatial_dims, min(_CONV_FUNCTIONS), max(_CONV_FUNCTIONS))


def to_tuple(value: IntOrTuple, spatial_dims: int, name: str, *, minimum: int = 1) -> tuple[int, ...]:
    """Expands an int to one value per spatial dimension and checks each is an int >= ``minimum``."""
    if not isinstance(value, int | Sequence) or isinstance(value, str):
        raise ValueError(f"{name} must be an int or {spatial_dims} ints, got {value!r}")
    values = (value,) * spatial_dims if isinstance(value, int) else tuple(value)
    if len(values) != spatial_dims or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{name} must be an int or {spatial_dims} ints, got {value!r}")
    if any(v < minimum for v in values):
        raise ValueError(f"{name} must be >= {minimum} in every dimension, got {value!r}")
    return values


def check_weight_size(out_channels: int, in_channels: int, kernel_size: Sequence[int]) -> None:
    """Raises ValueError, before anything is allocated, for a convolution weight over `MAX_WEIGHT_ELEMENTS`
    (such a request would otherwise fail in the allocator or exhaust memory)."""
    count = out_channels * in_channels * math.prod(kernel_size)
    if count > MAX_WEIGHT_ELEMENTS:
        raise ValueError(
            f"a convolution weight ({out_channels}, {in_channels}, {', '.join(map(str, kernel_size))}) would hold "
            f"{count:,} elements, more than {MAX_WEIGHT_ELEMENTS:,}: check the channel counts and kernel size"
        )


def same_padding(
    size: Sequence[int], kernel_size: Sequence[int], stride: Sequence[int], dilation: Sequence[int]
) -> list[tuple[int, int]]:
    """(before, after) padding per dimension for "same" padding: output size ceil(size / stride).

    An even total is split evenly; an odd one puts the extra pixel after, as TensorFlow and Keras do.
    """
    pads = []
    for n, k, s, d in zip(size, kernel_size, stride, dilation, strict=True):
        span = d * (k - 1) + 1
        total = max(0, (-(-n // s) - 1) * s + span - n)
        pads.append((total // 2, total - total // 2))
    return pads


class PaddedConv(nn.Module):
    """A bias-free N-d convolution whose weight can be shared by ``groups`` stacked copies of its input.

    Gate biases live in the cells, not here, so that the input and recurrent convolutions stay interchangeable.

    Shape:
        input: (N, groups * in_channels, *spatial); output: (N, out_channels, *spatial_out)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Sequence[int],
        *,
        stride: Sequence[int],
        dilation: Sequence[int],
        padding: Padding,
    ) -> None:
        super().__init__()
        check_weight_size(out_channels, in_channels, kernel_size)
        self.spatial_dims = len(kernel_size)
        self.kernel_size = tuple(kernel_size)
        self.stride = tuple(stride)
        self.dilation = tuple(dilation)
        self.padding = padding
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *kernel_size))
        self._conv = _CONV_FUNCTIONS[self.spatial_dims]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # The default of torch.nn.ConvNd: uniform with bound 1 / sqrt(fan_in).
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def pads(self, size: Sequence[int]) -> list[tuple[int, int]]:
        """(before, after) padding per spatial dimension for an input of spatial ``size``."""
        if self.padding == "valid":
            return [(0, 0)] * self.spatial_dims
        return same_padding(size, self.kernel_size, self.stride, self.dilation)

    def output_size(self, size: Sequence[int]) -> tuple[int, ...]:
        """Spatial size of the output for an input of spatial ``size``."""
        pads = self.pads(size)
        return tuple(
            (n + a + b - d * (k - 1) - 1) // s + 1
            for n, (a, b), k, s, d in zip(size, pads, self.kernel_size, self.stride, self.dilation, strict=True)
        )

    def forward(
        self, x: Tensor, bias: Tensor | None = None, *, weight: Tensor | None = None, groups: int = 1
    ) -> Tensor:
        pads = self.pads(x.shape[2:])
        if all(before == after for before, after in pads):
            conv_padding = tuple(before for before, _ in pads)
        else:
            # F.pad lists the last dimension first.
            x = F.pad(x, tuple(p for pair in reversed(pads) for p in pair))
            conv_padding = (0,) * self.spatial_dims
        w = self.weight if weight is None else weight
        return self._conv(x, w, bias, self.stride, conv_padding, self.dilation, groups)
