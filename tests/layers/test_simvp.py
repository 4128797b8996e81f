"""SimVP's and TAU's building blocks: resampling stages, the two attentions, the MetaFormer block's layer scales and
stochastic depth."""

import pytest
import torch
import torch.nn.functional as F

from convlstm.layers import ConvNormAct, GatedSpatialAttention, MetaFormerBlock, TemporalAttention


def test_stages_resample_by_two() -> None:
    x = torch.rand(2, 3, 16, 12)
    assert ConvNormAct(3, 4, resample="down")(x).shape == (2, 4, 8, 6)
    assert ConvNormAct(3, 4, resample="up")(x).shape == (2, 4, 32, 24)
    assert ConvNormAct(3, 4, 5)(x).shape == (2, 4, 16, 12)
    with pytest.raises(ValueError, match="resample must be one of"):
        ConvNormAct(3, 4, resample="sideways")


def test_gated_attention_is_its_formula() -> None:
    torch.manual_seed(0)
    attention = GatedSpatialAttention(6)
    x = torch.randn(2, 6, 9, 9)
    z = F.gelu(attention.proj_1(x))
    f, g = attention.conv1(attention.conv_spatial(attention.conv0(z))).chunk(2, dim=1)
    torch.testing.assert_close(attention(x), x + attention.proj_2(torch.sigmoid(g) * f))
    # The dilated depthwise convolution sees 21 x 21 pixels in all: one pixel moves the output 10 pixels away ...
    x2 = x.clone()
    x2[:, :, 4, 4] += 1.0
    moved = (attention(x2) - attention(x)).abs().sum(dim=(0, 1)) > 0
    assert bool(moved.all())  # (9 x 9: all within reach) ...
    assert attention.conv_spatial.dilation == (3, 3) and attention.conv0.groups == 6  # ... by depthwise kernels


def test_temporal_attention_has_a_static_and_a_dynamic_part() -> None:
    torch.manual_seed(0)
    attention = TemporalAttention(64)
    assert attention.squeeze.out_features == 16  # OpenSTL's rule: 64 // max(64 // 16, 4)
    x = torch.randn(2, 64, 8, 8)
    z = F.gelu(attention.proj_1(x))
    static = attention.conv1(attention.conv_spatial(attention.conv0(z)))
    dynamic = torch.sigmoid(attention.excite(F.relu(attention.squeeze(z.mean(dim=(2, 3))))))
    torch.testing.assert_close(attention(x), x + attention.proj_2(dynamic[:, :, None, None] * static * z))
    with pytest.raises(ValueError, match="channels must be at least 4"):
        TemporalAttention(3)


@pytest.mark.parametrize("attention", ["gsta", "tau"])
def test_layer_scales_start_small_and_zero_scales_are_the_identity(attention: str) -> None:
    torch.manual_seed(0)
    block = MetaFormerBlock(8, attention, mlp_ratio=2.0).eval()
    assert torch.equal(block.layer_scale_1, torch.full((8,), 0.01))
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        block.layer_scale_1.zero_()
        block.layer_scale_2.zero_()
    torch.testing.assert_close(block(x), x, rtol=0, atol=0)


def test_stochastic_depth_drops_whole_branches_per_sample_in_training_only() -> None:
    torch.manual_seed(0)
    block = MetaFormerBlock(8, "gsta", mlp_ratio=2.0, drop_path=0.5)
    x = torch.randn(64, 8, 4, 4)
    with torch.no_grad():
        block.layer_scale_2.zero_()  # the attention branch alone
        branch = block(x) - x
        dropped = branch.flatten(1).abs().sum(1) == 0  # (64,): samples whose branch was dropped
        assert 16 < int(dropped.sum()) < 48  # about half of them (binomial 64, 1/2: 32 +- 4)
        block.drop_path = 0.0
        whole = block(x) - x  # the same batch statistics: the branch undropped
        torch.testing.assert_close(branch[~dropped], 2 * whole[~dropped])  # the kept ones scaled by 1 / (1 - 0.5)
        block.drop_path = 0.5
        block.eval()
        assert bool((block(x) - x).flatten(1).abs().sum(1).gt(0).all())  # none in evaluation
    with pytest.raises(ValueError, match="drop_path must be below 1"):
        MetaFormerBlock(8, drop_path=1.0)
