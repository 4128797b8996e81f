"""The TrajGRU encoder-forecaster: its HKO-7 parameter count from the layer sizes, frame sizes, chunked encoding."""

import pytest
import torch

import convlstm
from convlstm.models import TrajGRUForecaster


def _conv(c_in: int, c_out: int, k: int) -> int:
    return c_in * c_out * k * k + c_out


def _trajgru(c_in: int, f: int, links: int, *, k: int = 3, flow: int = 32, flow_k: int = 5) -> int:
    with_input = _conv(c_in, 3 * f, k) + _conv(c_in, flow, flow_k) if c_in else 0
    return with_input + _conv(f, flow, flow_k) + _conv(flow, 2 * links, flow_k) + _conv(links * f, 3 * f, 1)


def test_hko7_parameter_count_follows_from_the_architecture() -> None:
    # Encoder: conv 1->8 (7x7, stride 5); TrajGRU 8->64 (L=13); conv 64->192 (5x5/3); TrajGRU 192->192 (L=13);
    # conv 192->192 (3x3/2); TrajGRU 192->192 (L=9).
    encoder = (
        _conv(1, 8, 7)
        + _trajgru(8, 64, 13)
        + _conv(64, 192, 5)
        + _trajgru(192, 192, 13)
        + _conv(192, 192, 3)
        + _trajgru(192, 192, 9)
    )
    # Forecaster: TrajGRU -> 192 (no input, L=9); deconv 192->192 (4x4/2); TrajGRU 192->192 (L=13);
    # deconv 192->192 (5x5/3); TrajGRU 192->64 (L=13); deconv 64->8 (7x7/5); conv 8->8 (3x3); conv 8->1 (1x1).
    forecaster = (
        _trajgru(0, 192, 9)
        + _conv(192, 192, 4)
        + _trajgru(192, 192, 13)
        + _conv(192, 192, 5)
        + _trajgru(192, 64, 13)
        + (64 * 8 * 49 + 8)
        + _conv(8, 8, 3)
        + _conv(8, 1, 1)
    )
    model = convlstm.create_model("shi2017_hko7_trajgru")
    assert sum(p.numel() for p in model.parameters()) == encoder + forecaster == 12_149_269


def test_hko7_resolutions_at_480() -> None:
    model = convlstm.create_model("shi2017_hko7_trajgru")
    assert isinstance(model, TrajGRUForecaster)
    assert model.level_sizes(480) == [96, 32, 16]
    assert model.fits(480) and model.smallest_frame() == 30 and not model.fits(32)


def test_small_variant_runs_frame_by_frame_like_one_call() -> None:
    torch.manual_seed(0)
    model = convlstm.create_model("trajgru_radar_small", default_horizon=3).eval()
    x = torch.rand(2, 4, 1, 16, 16)
    with torch.no_grad():
        out = model(x)
        chunked = model.forecast(model.encode(x[:, 2:], model.encode(x[:, :2])), 3)
    assert out.shape == (2, 3, 1, 16, 16) and ((out > 0) & (out < 1)).all()
    # Same float32 operations in the same order.
    torch.testing.assert_close(chunked, out, atol=1e-6, rtol=1e-5)


def test_frames_that_do_not_round_trip_are_refused() -> None:
    model = convlstm.create_model("trajgru_radar_small")
    with pytest.raises(ValueError, match=r"H=20 does not come back unchanged .* multiples of 8"):
        model(torch.rand(1, 2, 1, 20, 16))
    with pytest.raises(ValueError, match="downsample must have len"):
        TrajGRUForecaster(1, [4, 4], links=[2, 2], downsample=[], upsample=[[4, 2, 1]])
