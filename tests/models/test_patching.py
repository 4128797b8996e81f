import pytest
import torch

from convlstm.models.patching import depth_to_space, space_to_depth


def _reference_space_to_depth(x: torch.Tensor, p: int) -> torch.Tensor:
    """Element by element: channel c * p * p + i * p + j of patch (y, x) is pixel (y * p + i, x * p + j)."""
    b, t, c, h, w = x.shape
    out = torch.empty(b, t, c * p * p, h // p, w // p)
    for ch in range(c):
        for i in range(p):
            for j in range(p):
                out[:, :, ch * p * p + i * p + j] = x[:, :, ch, i::p, j::p]
    return out


@pytest.mark.parametrize(("p", "channels"), [(2, 1), (4, 1), (2, 3), (3, 2)])
def test_space_to_depth_matches_elementwise_reference(p: int, channels: int) -> None:
    x = torch.randn(2, 3, channels, 3 * p, 4 * p)
    got = space_to_depth(x, p)
    assert got.shape == (2, 3, channels * p * p, x.shape[3] // p, x.shape[4] // p)
    torch.testing.assert_close(got, _reference_space_to_depth(x, p), rtol=0, atol=0)


@pytest.mark.parametrize("p", [1, 2, 4])
def test_round_trip_is_exact(p: int) -> None:
    x = torch.randn(2, 5, 3, 8, 16)
    assert torch.equal(depth_to_space(space_to_depth(x, p), p), x)


def test_patch_of_one_leaves_frames_alone() -> None:
    x = torch.randn(1, 2, 3, 5, 7)  # 5 x 7 is only divisible by 1
    assert space_to_depth(x, 1) is x
    assert depth_to_space(x, 1) is x


def test_indivisible_frame_size_names_argument_and_sizes() -> None:
    with pytest.raises(ValueError, match=r"context frames of size 30x32.*divisible by patch_size=4"):
        space_to_depth(torch.zeros(1, 2, 1, 30, 32), 4, name="context")
    with pytest.raises(ValueError, match=r"divisible by patch_size=4"):
        space_to_depth(torch.zeros(1, 2, 1, 32, 30), 4)


def test_indivisible_channels_rejected_by_depth_to_space() -> None:
    with pytest.raises(ValueError, match=r"6 channels.*divisible by patch_size\*\*2=4"):
        depth_to_space(torch.zeros(1, 2, 6, 4, 4), 2)


@pytest.mark.parametrize("p", [0, -2, 2.0, True])
def test_bad_patch_size(p: object) -> None:
    with pytest.raises(ValueError, match="patch_size must be an int >= 1"):
        space_to_depth(torch.zeros(1, 1, 1, 4, 4), p)  # type: ignore[arg-type]


def test_too_few_dimensions() -> None:
    with pytest.raises(ValueError, match=r"x must be a tensor of frames \(\.\.\., C, H, W\), got \(4, 4\)"):
        space_to_depth(torch.zeros(4, 4), 2)
