"""Streaming forecasts: after every frame they equal the batch call on all frames so far, in constant memory."""

import collections
import dataclasses
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from convlstm.inference import StreamingForecaster
from convlstm.models import create_model

HORIZON = 3

# (builder, overrides, frame shape (C, H, W)): every family with its own state API, kept tiny.
FAMILIES = {
    "encoder_forecaster": ("encoder_forecaster_tiny", {}, (1, 8, 8)),
    "encoder_forecaster_gru": ("encoder_forecaster_tiny", {"cell": "gru", "peephole": False}, (1, 8, 8)),
    "fc_lstm": ("fc_lstm_tiny", {"height": 8, "width": 8}, (1, 8, 8)),
    "next_frame": ("next_frame_tiny", {}, (1, 8, 8)),
    "convlstm_unet_forecaster": ("convlstm_unet_forecaster", {"base_channels": 4, "norm_groups": 2}, (1, 8, 8)),
    "prednet": ("prednet_tiny", {}, (3, 8, 8)),
    "persistence": ("persistence", {}, (1, 8, 8)),
}
RECURRENT = [name for name in FAMILIES if name != "persistence"]


def build(family: str) -> tuple[nn.Module, tuple[int, int, int]]:
    name, overrides, shape = FAMILIES[family]
    torch.manual_seed(0)
    return create_model(name, **overrides).eval(), shape


def frames(batch: int, steps: int, shape: tuple[int, int, int], seed: int = 1) -> Tensor:
    return torch.rand(batch, steps, *shape, generator=torch.Generator().manual_seed(seed))


def held_tensors(obj: Any) -> list[Tensor]:
    """Every tensor reachable from ``obj`` through attributes and containers, except inside nn.Modules (the
    model's parameters do not change with the number of frames)."""
    found: list[Tensor] = []
    seen: set[int] = set()

    def walk(value: Any) -> None:
        if id(value) in seen or isinstance(value, nn.Module):
            return
        seen.add(id(value))
        if isinstance(value, Tensor):
            found.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple | set | collections.deque):
            for item in value:
                walk(item)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            for f in dataclasses.fields(value):
                walk(getattr(value, f.name))
        elif hasattr(value, "__dict__"):
            walk(vars(value))

    walk(obj)
    return found


@pytest.mark.parametrize("family", FAMILIES)
def test_forecast_after_every_frame_equals_the_batch_call(family: str) -> None:
    model, shape = build(family)
    x = frames(2, 6, shape)
    stream = StreamingForecaster(model, horizon=HORIZON)
    forecasts = []
    for t in range(x.shape[1]):
        got = stream.update(x[:, t])
        with torch.no_grad():
            want = model(x[:, : t + 1], horizon=HORIZON)
        assert got.shape == (2, HORIZON, *shape)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0, msg=f"{family}: forecast after frame {t}")
        forecasts.append(got)
    # The forecasts follow the frames, so the comparison above has something to compare.
    assert (forecasts[0] - forecasts[-1]).abs().max() > 1e-4
    assert stream.frames_seen == x.shape[1]


@pytest.mark.parametrize("family", RECURRENT)
def test_the_state_carries_the_past(family: str) -> None:
    """A forecast from the last frame alone differs from the streamed one: the earlier frames count."""
    model, shape = build(family)
    x = frames(1, 4, shape)
    stream = StreamingForecaster(model, horizon=HORIZON)
    for t in range(x.shape[1]):
        streamed = stream.update(x[:, t])
    with torch.no_grad():
        last_frame_only = model(x[:, -1:], horizon=HORIZON)
    assert (streamed - last_frame_only).abs().max() > 1e-5


@pytest.mark.parametrize("family", FAMILIES)
def test_memory_is_constant(family: str) -> None:
    model, shape = build(family)
    x = frames(2, 50, shape)
    stream = StreamingForecaster(model, horizon=2)
    sizes = {}
    for t in range(x.shape[1]):
        stream.update(x[:, t])
        if t + 1 in (5, 50):
            held = held_tensors(stream)
            assert held, "the stream must hold its state"
            assert all(not h.requires_grad and h.grad_fn is None for h in held), "no autograd graph may build up"
            sizes[t + 1] = sum(h.numel() for h in held)
    assert sizes[5] == sizes[50]


@pytest.mark.parametrize("family", FAMILIES)
def test_forecast_leaves_the_state_untouched(family: str) -> None:
    model, shape = build(family)
    x = frames(2, 3, shape)
    stream = StreamingForecaster(model, horizon=HORIZON)
    for t in range(x.shape[1]):
        stream.push(x[:, t])
    before = [h.clone() for h in held_tensors(stream)]
    first, second = stream.forecast(), stream.forecast()
    after = held_tensors(stream)
    assert len(after) == len(before)
    assert all(torch.equal(a, b) for a, b in zip(after, before, strict=True))
    assert torch.equal(first, second)


@pytest.mark.parametrize("family", ["encoder_forecaster", "next_frame", "prednet"])
def test_streams_in_a_batch_are_independent(family: str) -> None:
    model, shape = build(family)
    x = frames(3, 4, shape)
    together = StreamingForecaster(model, horizon=HORIZON)
    alone = [StreamingForecaster(model, horizon=HORIZON) for _ in range(3)]
    for t in range(x.shape[1]):
        batch = together.update(x[:, t])
        for b, stream in enumerate(alone):
            torch.testing.assert_close(batch[b : b + 1], stream.update(x[b : b + 1, t]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", ["fc_lstm", "convlstm_unet_forecaster", "prednet"])
def test_reset_starts_over(family: str) -> None:
    model, shape = build(family)
    first, second = frames(2, 3, shape, seed=1), frames(1, 2, shape, seed=2)
    stream = StreamingForecaster(model, horizon=HORIZON)
    for t in range(first.shape[1]):
        stream.update(first[:, t])
    stream.reset()
    assert stream.frames_seen == 0
    fresh = StreamingForecaster(model, horizon=HORIZON)
    for t in range(second.shape[1]):  # another batch size after the reset
        torch.testing.assert_close(stream.update(second[:, t]), fresh.update(second[:, t]), atol=0, rtol=0)


def test_optical_flow_streams_over_its_motion_window() -> None:
    pytest.importorskip("pysteps")
    pytest.importorskip("cv2")
    model = create_model("optical_flow", motion_frames=3).eval()
    # A smooth random field moving one pixel right per frame: corners for Lucas-Kanade to track.
    field = torch.nn.functional.avg_pool2d(frames(1, 1, (1, 36, 36))[:, 0], 3, stride=1)  # (1, 1, 34, 34)
    x = torch.stack([field.roll(t, dims=-1)[..., 5:29, 5:29] for t in range(6)], dim=1)  # (1, 6, 1, 24, 24)
    stream = StreamingForecaster(model, horizon=2)
    stream.push(x[:, 0])
    stream.push(x[:, 1])
    with pytest.raises(ValueError, match="motion_frames=3"):
        stream.forecast()
    for t in range(2, 6):
        got = stream.update(x[:, t])
        torch.testing.assert_close(got, model(x[:, : t + 1], horizon=2), atol=1e-5, rtol=0)
    assert sum(h.numel() for h in held_tensors(stream)) == 3 * x[:, 0].numel()


def test_default_horizon_is_the_models() -> None:
    model, shape = build("next_frame")
    assert StreamingForecaster(model).horizon == model.default_horizon
    assert StreamingForecaster(model).update(frames(1, 1, shape)[:, 0]).shape[1] == model.default_horizon


def test_bad_frames_and_arguments_are_refused() -> None:
    model, shape = build("encoder_forecaster")
    stream = StreamingForecaster(model, horizon=2)
    with pytest.raises(ValueError, match="at least one frame"):
        stream.forecast()
    with pytest.raises(ValueError, match=r"\(B, C, H, W\), got \(1, 1, 1, 8, 8\)"):
        stream.update(torch.rand(1, 1, *shape))
    stream.update(torch.rand(2, *shape))
    with pytest.raises(ValueError, match="call reset"):
        stream.update(torch.rand(3, *shape))
    nan = torch.rand(2, *shape)
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        stream.update(nan)
    assert stream.frames_seen == 1  # refused frames are not counted
    with pytest.raises(ValueError, match="horizon must be an int >= 1"):
        StreamingForecaster(model, horizon=0)
    with pytest.raises(ValueError, match="can stream"):
        StreamingForecaster(create_model("convlstm_unet"))  # a segmentation network, not a forecaster
    with pytest.raises(ValueError, match="can stream"):
        StreamingForecaster(nn.Linear(2, 2), horizon=1)
