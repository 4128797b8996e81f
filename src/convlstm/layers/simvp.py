"""The building blocks of SimVP (Gao et al. 2022; Tan et al. 2022, SimVP v2 with gSTA) and TAU (Tan et al. 2023):
non-recurrent video prediction by convolutions, with all of a sequence's frames stacked as channels.

- [`ConvNormAct`][convlstm.layers.ConvNormAct]: SimVP's spatial encoder and decoder stage, a convolution (stride 2 down,
  or a sub-pixel convolution up), GroupNorm with 2 groups and SiLU.
- [`MetaFormerBlock`][convlstm.layers.MetaFormerBlock]: a block of the temporal translator, MetaFormer-shaped: x + s1 ∘
  A(BN(x)), then x + s2 ∘ MLP(BN(x)), with per-channel layer scales s. A is
  [`GatedSpatialAttention`][convlstm.layers.GatedSpatialAttention] (gSTA) or
  [`TemporalAttention`][convlstm.layers.TemporalAttention] (TAU's TAU unit); the MLP is
  [`MixMLP`][convlstm.layers.MixMLP].

The layouts of the weights are OpenSTL's (Tan et al. 2023), so that its checkpoints load; where its names mislead,
the names here differ and the importer maps them.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convlstm.utils.checks import check_choice, check_float, check_int

#: The large-kernel attention's dilation and the receptive field it stands for (SimVP v2 and TAU: 21 with
#: dilation 3, as a 5x5 depthwise convolution then a 7x7 depthwise one dilated by 3).
LKA_KERNEL, LKA_DILATION = 21, 3


class ConvNormAct(nn.Module):
    """Convolution, GroupNorm (2 groups), SiLU: one stage of SimVP's encoder or decoder (OpenSTL's ConvSC).

    Args:
        in_channels: channels of x.
        out_channels: channels of the output (even: 2 groups).
        kernel_size: of the convolution; odd.
        resample: ``"down"`` (stride 2: H / 2), ``"up"`` (a convolution to 4 out_channels, then pixel shuffle:
            2 H) or ``"none"``.

    Shape:
        x: (N, C_in, H, W) -> (N, C_out, H', W') with H' = H / 2, 2 H or H.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, *, resample: str = "none") -> None:
        super().__init__()
        check_int("in_channels", in_channels)
        check_int("out_channels", out_channels)
        check_int("kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.resample = check_choice("resample", resample, ("down", "up", "none"))
        stride = 2 if resample == "down" else 1
        padding = (kernel_size - stride + 1) // 2  # OpenSTL's: H / 2 for stride 2 and an even H, H otherwise
        channels = 4 * out_channels if resample == "up" else out_channels
        self.conv = nn.Conv2d(in_channels, channels, kernel_size, stride=stride, padding=padding)
        self.norm = nn.GroupNorm(2, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)
        if self.resample == "up":
            y = F.pixel_shuffle(y, 2)
        return F.silu(self.norm(y))


class GatedSpatialAttention(nn.Module):
    """gSTA's attention: x + proj_2(LKA-gate(GELU(proj_1(x)))), where the large-kernel gate of z is
    σ(g) ∘ f with [f, g] = W_1x1 * (dilated depthwise * (depthwise * z)).

    Args:
        channels: C of x.

    Shape:
        x: (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        check_int("channels", channels)
        self.proj_1 = nn.Conv2d(channels, channels, 1)
        self.conv0, self.conv_spatial = _large_kernel(channels)
        self.conv1 = nn.Conv2d(channels, 2 * channels, 1)
        self.proj_2 = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        z = F.gelu(self.proj_1(x))
        f, g = self.conv1(self.conv_spatial(self.conv0(z))).chunk(2, dim=1)
        return x + self.proj_2(torch.sigmoid(g) * f)


class TemporalAttention(nn.Module):
    """TAU's temporal attention unit: x + proj_2(A(z) ∘ z) with z = GELU(proj_1(x)) and the attention A(z) the
    product of a static, per-pixel part, W_1x1 * (dilated depthwise * (depthwise * z)), and a dynamic, per-channel
    part, a squeeze-and-excitation σ(W_2 ReLU(W_1 mean_HW(z))).

    Args:
        channels: C of x.
        reduction: the squeeze's width is C // max(C // reduction, 4) (OpenSTL's rule: 16 for C >= 64).

    Shape:
        x: (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        check_int("channels", channels)
        check_int("reduction", reduction)
        squeeze = channels // max(channels // reduction, 4)
        if squeeze < 1:
            raise ValueError(f"channels must be at least 4 for the squeeze-and-excitation, got {channels}")
        self.proj_1 = nn.Conv2d(channels, channels, 1)
        self.conv0, self.conv_spatial = _large_kernel(channels)
        self.conv1 = nn.Conv2d(channels, channels, 1)
        self.squeeze = nn.Linear(channels, squeeze, bias=False)
        self.excite = nn.Linear(squeeze, channels, bias=False)
        self.proj_2 = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        z = F.gelu(self.proj_1(x))
        static = self.conv1(self.conv_spatial(self.conv0(z)))
        dynamic = torch.sigmoid(self.excite(F.relu(self.squeeze(z.mean(dim=(2, 3))))))  # (N, C)
        return x + self.proj_2(dynamic[:, :, None, None] * static * z)


class MixMLP(nn.Module):
    """A 1x1 convolution up to ``hidden_channels``, a 3x3 depthwise convolution, GELU, a 1x1 convolution back.

    Shape:
        x: (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(self, channels: int, hidden_channels: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(check_int("channels", channels), check_int("hidden_channels", hidden_channels), 1)
        self.dwconv = nn.Conv2d(hidden_channels, hidden_channels, 3, padding=1, groups=hidden_channels)
        self.fc2 = nn.Conv2d(hidden_channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.dwconv(self.fc1(x))))


class MetaFormerBlock(nn.Module):
    """x + s1 ∘ A(BN(x)), then x + s2 ∘ MixMLP(BN(x)): a block of SimVP's translator.

    Args:
        channels: C of x.
        attention: ``"gsta"`` ([`GatedSpatialAttention`][convlstm.layers.GatedSpatialAttention], SimVP v2) or ``"tau"``
            ([`TemporalAttention`][convlstm.layers.TemporalAttention]).
        mlp_ratio: the MLP's hidden width over C (OpenSTL: 8).
        drop_path: stochastic depth in training: the probability that a sample skips each residual branch (the
            kept ones are scaled by 1 / (1 - p)).
        layer_scale: the initial value of the per-channel scales s1 and s2 (OpenSTL: 0.01).

    Shape:
        x: (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(
        self,
        channels: int,
        attention: str = "gsta",
        *,
        mlp_ratio: float = 8.0,
        drop_path: float = 0.0,
        layer_scale: float = 1e-2,
    ) -> None:
        super().__init__()
        check_int("channels", channels)
        self.attention = check_choice("attention", attention, ("gsta", "tau"))
        check_float("mlp_ratio", mlp_ratio, 0.0, float("inf"), low_open=True)
        self.drop_path = check_float("drop_path", drop_path, 0.0, 1.0)
        if self.drop_path == 1.0:
            raise ValueError("drop_path must be below 1 (1 would skip every branch), got 1.0")
        self.norm1 = nn.BatchNorm2d(channels)
        self.attn: nn.Module = GatedSpatialAttention(channels) if attention == "gsta" else TemporalAttention(channels)
        self.norm2 = nn.BatchNorm2d(channels)
        self.mlp = MixMLP(channels, int(channels * mlp_ratio))
        self.layer_scale_1 = nn.Parameter(torch.full((channels,), float(layer_scale)))
        self.layer_scale_2 = nn.Parameter(torch.full((channels,), float(layer_scale)))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self._drop(self.layer_scale_1[:, None, None] * self.attn(self.norm1(x)))
        return x + self._drop(self.layer_scale_2[:, None, None] * self.mlp(self.norm2(x)))

    def _drop(self, branch: Tensor) -> Tensor:
        if not self.training or self.drop_path == 0.0:
            return branch
        keep = 1.0 - self.drop_path
        mask = branch.new_empty(branch.shape[0], 1, 1, 1).bernoulli_(keep)  # one draw per sample
        return branch * mask / keep

    def extra_repr(self) -> str:
        return f"attention={self.attention!r}, drop_path={self.drop_path}"


def _large_kernel(channels: int) -> tuple[nn.Conv2d, nn.Conv2d]:
    """The two depthwise convolutions of a large-kernel attention: 5x5, then 7x7 dilated by 3 (a 21x21 field)."""
    near = 2 * LKA_DILATION - 1
    far = LKA_KERNEL // LKA_DILATION + ((LKA_KERNEL // LKA_DILATION) % 2 - 1)
    return (
        nn.Conv2d(channels, channels, near, padding=near // 2, groups=channels),
        nn.Conv2d(
            channels, channels, far, padding=LKA_DILATION * (far - 1) // 2, groups=channels, dilation=LKA_DILATION
        ),
    )
