"""The straightforward per-step formulation most repositories write, used as the reference in tests.

One convolution over cat([x_t, h_{t-1}]) per step, zeros as the first state, then the gate arithmetic written out.
It reads the weights of a convlstm cell, so it checks our schedules and fused arithmetic, not our weights.
"""

import torch
import torch.nn.functional as F
from torch import Tensor

from convlstm import ConvGRUCell, ConvLSTMCell


def _conv(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    conv = {3: F.conv1d, 4: F.conv2d, 5: F.conv3d}[x.ndim]
    return conv(x, w, b, padding=w.shape[-1] // 2)


def reference_conv_lstm(cell: ConvLSTMCell, x: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """x (B, T, C, *S) -> (outputs (B, T, F, *S), (h, c)); odd kernels, "same", stride 1, no norm."""
    assert cell.input_conv is not None
    batch, steps = x.shape[:2]
    fch = cell.hidden_channels
    weight = torch.cat([cell.input_conv.weight, cell.recurrent_conv.weight], dim=1)
    h = x.new_zeros(batch, fch, *x.shape[3:])
    c = torch.zeros_like(h)
    shape = (1, fch) + (1,) * (x.ndim - 3)
    outs = []
    for t in range(steps):
        gates = _conv(torch.cat([x[:, t], h], dim=1), weight, cell.bias)
        i, f, g, o = gates.chunk(4, dim=1)
        if cell.peephole is not None:
            i = i + cell.peephole[0].view(shape) * c
            f = f + cell.peephole[1].view(shape) * c
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        if cell.peephole is not None:
            o = o + cell.peephole[2].view(shape) * c
        h = torch.sigmoid(o) * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs, dim=1), (h, c)


def reference_conv_gru(cell: ConvGRUCell, x: Tensor) -> tuple[Tensor, Tensor]:
    """x (B, T, C, *S) -> (outputs, h) for a ConvGRUCell with reset_after=True, "same", stride 1, no norm."""
    assert cell.input_conv is not None and cell.reset_after
    batch, steps = x.shape[:2]
    h = x.new_zeros(batch, cell.hidden_channels, *x.shape[3:])
    outs = []
    for t in range(steps):
        xr, xz, xn = _conv(x[:, t], cell.input_conv.weight, cell.bias).chunk(3, dim=1)
        hr, hz, hn = _conv(h, cell.recurrent_conv.weight, cell.recurrent_bias).chunk(3, dim=1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        h = (1 - z) * n + z * h
        outs.append(h)
    return torch.stack(outs, dim=1), h


def randomize_(module: torch.nn.Module, scale: float = 0.5, seed: int = 0) -> None:
    """Random values in every parameter: constant or default-initialised weights can hide a wrong gate order."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale)
