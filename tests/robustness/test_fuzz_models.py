"""Random overrides for the small registered models and random inputs to them: building and calling either works
(predictions of the documented shape and dtype) or raises a ValueError with a message; nothing else escapes. When
every override and input drawn is valid, building and calling must work.

Every model here stays under a few thousand parameters per override drawn, and frames under 16x16, so no example
can use much memory.
"""

from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convlstm.models import ForecastingModel, create_model

FUZZ = settings(max_examples=30, deadline=10_000, suppress_health_check=[HealthCheck.too_slow], derandomize=True)

small = st.integers(1, 4)
small_list = st.lists(st.integers(1, 6), min_size=1, max_size=2)

#: Overrides each builder is fuzzed with: (valid values, invalid values).
OVERRIDES: dict[str, dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]]] = {
    "encoder_forecaster_tiny": {
        "in_channels": (small, st.sampled_from([0, -1, 1.5])),
        "hidden_channels": (small_list, st.sampled_from([[], [0], 4, None])),
        "kernel_size": (st.integers(1, 5), st.sampled_from([0, -3, "3"])),
        "patch_size": (st.integers(1, 4), st.sampled_from([0, -2, 2.0])),
        "cell": (st.sampled_from(["lstm", "gru"]), st.sampled_from(["rnn", None])),
        "default_horizon": (small, st.sampled_from([0, -1])),
    },
    "next_frame_tiny": {
        "in_channels": (small, st.sampled_from([0, -1])),
        "encoder_channels": (small_list, st.sampled_from([[], [0], "8"])),
        "hidden_channels": (small_list, st.sampled_from([[], [-1]])),
        "kernel_size": (st.sampled_from([1, 3, 5]), st.sampled_from([0, 2.5])),
        "output_activation": (st.sampled_from(["sigmoid", "linear"]), st.sampled_from(["softmax", 1])),
        "default_horizon": (small, st.sampled_from([0, True])),
    },
    "fc_lstm_tiny": {
        "in_channels": (small, st.sampled_from([0])),
        "height": (st.integers(1, 8), st.sampled_from([0, -8])),
        "width": (st.integers(1, 8), st.sampled_from([0, 8.0])),
        "hidden_sizes": (small_list, st.sampled_from([[], [0]])),
        "default_horizon": (small, st.sampled_from([0])),
    },
    "convlstm_unet_forecaster": {
        "in_channels": (small, st.sampled_from([0])),
        "base_channels": (st.sampled_from([4, 8]), st.sampled_from([0, 3, -4])),
        "depth": (st.integers(1, 2), st.sampled_from([0, -1, 2.5])),
        "cell": (st.sampled_from(["lstm", "gru"]), st.sampled_from(["transformer"])),
        "norm": (st.sampled_from(["group", None]), st.sampled_from(["instance"])),
        "default_horizon": (small, st.sampled_from([0])),
    },
    "persistence": {
        "default_horizon": (small, st.sampled_from([0, -1, 1.5])),
    },
    "prednet_tiny": {
        "pixel_max": (st.sampled_from([1.0, 255.0]), st.sampled_from([0.0, -1.0, float("nan")])),
        "output_mode": (st.sampled_from(["prediction", "error"]), st.sampled_from(["all", None])),
    },
}

SEGMENTERS = {
    "convlstm_unet": {
        "in_channels": (small, st.sampled_from([0, -1])),
        "num_classes": (st.integers(1, 3), st.sampled_from([0, -2])),
        "base_channels": (st.sampled_from([4, 8]), st.sampled_from([0, 6])),
        "depth": (st.integers(1, 2), st.sampled_from([0])),
    },
    "convlstm_unet_gru": {"base_channels": (st.sampled_from([4, 8]), st.sampled_from([-4]))},
    "unet_per_frame": {"base_channels": (st.sampled_from([4, 8]), st.sampled_from([0])), "depth": (small, st.just(0))},
}


def _sometimes(data: st.DataObject, valid: st.SearchStrategy[Any], invalid: st.SearchStrategy[Any]) -> tuple[Any, bool]:
    """A value, mostly from ``valid``, and whether it is."""
    if data.draw(st.sampled_from([False] * 12 + [True])):
        return data.draw(invalid), False
    return data.draw(valid), True


def _overrides(
    data: st.DataObject, table: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]]
) -> tuple[dict[str, Any], bool]:
    """Overrides for a builder, and whether every one is valid (an unknown keyword is not)."""
    chosen, valid = {}, True
    for name, pair in table.items():
        if data.draw(st.booleans()):
            chosen[name], ok = _sometimes(data, *pair)
            valid = valid and ok
    if data.draw(st.sampled_from([False] * 15 + [True])):
        chosen["no_such_argument"] = 1
        valid = False
    return chosen, valid


def _size_divisor(model: torch.nn.Module) -> int:
    """What the frame size of ``model`` must be a multiple of: its patches and stride-2 stages."""
    config = model.config
    if hasattr(config, "encoder_channels"):  # next-frame: patches, then a stride-2 stage per encoder layer
        return config.patch_size * 2 ** len(config.encoder_channels)
    if hasattr(config, "stack_sizes"):  # PredNet: one 2x pooling between layers
        return 2 ** (len(config.stack_sizes) - 1)
    if hasattr(config, "depth"):  # U-Net: one 2x pooling per level
        return 2**config.depth
    return getattr(config, "patch_size", None) or 1


def _frames(
    data: st.DataObject, channels: int, dtype: torch.dtype, *, size: tuple[int, int] | None = None
) -> tuple[torch.Tensor, bool]:
    """Mostly (B, T, C, H, W) with H and W multiples of 4 (what the patching models need) or ``size``, sometimes
    odd sizes, a wrong channel count, another rank or dtype, empty sizes, or NaN / inf values. Returns the frames
    and whether nothing was corrupted (the size is checked against the model by the caller)."""
    b, t = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 3))
    h = data.draw(st.sampled_from([size[0] if size else 4, 8, 16, 1, 6, 7]))
    w = data.draw(st.sampled_from([size[1] if size else 4, 8, 16, 5, 12]))
    shape = [b, t, channels, h, w]
    corruption = data.draw(st.sampled_from(["none"] * 6 + ["channels", "rank", "empty", "dtype"]))
    if corruption == "channels":
        shape[2] += 1
    elif corruption == "rank":
        shape = shape[1:]
    elif corruption == "empty":
        shape[data.draw(st.integers(0, 1))] = 0
    elif corruption == "dtype":
        dtype = data.draw(st.sampled_from([torch.float64, torch.float16, torch.int64, torch.bool]))
    x = torch.rand(shape)
    special = bool(x.numel()) and data.draw(st.integers(0, 5)) == 0
    if special:
        x.view(-1)[0] = data.draw(st.sampled_from([float("nan"), float("inf"), -1e30]))
    return x.to(dtype), corruption == "none" and not special


def _fits(model: torch.nn.Module, x: torch.Tensor, size: tuple[int, int] | None) -> bool:
    if size is not None:
        return tuple(x.shape[-2:]) == size
    divisor = _size_divisor(model)
    return x.shape[-2] % divisor == 0 and x.shape[-1] % divisor == 0


def _moderate(x: torch.Tensor) -> bool:
    """Finite and small enough that float32 arithmetic on it cannot overflow (1e30 squared in a norm does)."""
    x = x.double()
    return bool(torch.isfinite(x).all()) and (x.numel() == 0 or float(x.abs().max()) < 1e6)


def _assert_clear(error: ValueError, mentions: str = "") -> None:
    assert len(str(error)) > 20 and mentions in str(error), str(error)


def _assert_build_error(error: Exception, *, allowed: bool) -> None:
    assert allowed, f"valid overrides were refused: {error}"
    # A TypeError only for a keyword the builder does not take, as any Python function raises.
    assert isinstance(error, ValueError) or "no_such_argument" in str(error), error
    assert len(str(error)) > 20, str(error)


def _refused(error: ValueError, *, allowed: bool, mentions: str = "") -> None:
    """A refusal must explain itself, and may only come for an override or input that is wrong."""
    assert allowed, f"valid overrides and input were refused: {error}"
    _assert_clear(error, mentions)


@pytest.mark.parametrize("name", sorted(OVERRIDES))
@FUZZ
@given(data=st.data())
def test_forecasters_work_or_raise_value_errors(name: str, data: st.DataObject) -> None:
    overrides, valid = _overrides(data, OVERRIDES[name])
    # The tiny encoder-forecaster has peepholes, which a ConvGRU lacks: cell="gru" alone is refused by design.
    valid = valid and not (name == "encoder_forecaster_tiny" and overrides.get("cell") == "gru")
    try:
        model = create_model(name, **overrides).eval()
    except (ValueError, TypeError) as error:
        _assert_build_error(error, allowed=not valid)
        return
    assert isinstance(model, ForecastingModel)
    channels = getattr(model.config, "in_channels", None) or (
        model.config.stack_sizes[0] if name == "prednet_tiny" else 1
    )
    size = (model.config.height, model.config.width) if name == "fc_lstm_tiny" else None
    x, valid_input = _frames(data, channels, torch.float32, size=size)
    horizon, valid_horizon = _sometimes(data, st.integers(1, 3), st.sampled_from([0, -1, 1.5, "2"]))
    try:
        with torch.no_grad():
            prediction = model(x, horizon=horizon)
    except ValueError as error:
        _refused(error, allowed=not (valid and valid_input and valid_horizon and _fits(model, x, size)))
        return
    assert isinstance(prediction, torch.Tensor) and prediction.dtype == x.dtype
    if name != "prednet_tiny" or model.config.output_mode == "prediction":
        assert prediction.shape == (x.shape[0], horizon, *x.shape[2:])
    if _moderate(x):
        assert bool(torch.isfinite(prediction).all())


@pytest.mark.parametrize("name", sorted(SEGMENTERS))
@FUZZ
@given(data=st.data())
def test_segmenters_work_or_raise_value_errors(name: str, data: st.DataObject) -> None:
    overrides, valid = _overrides(data, SEGMENTERS[name])
    try:
        model = create_model(name, **overrides).eval()
    except (ValueError, TypeError) as error:
        _assert_build_error(error, allowed=not valid)
        return
    x, valid_input = _frames(data, model.config.in_channels, torch.float32)
    try:
        with torch.no_grad():
            logits, _ = model(x)
    except ValueError as error:
        _refused(error, allowed=not (valid and valid_input and _fits(model, x, None)))
        return
    assert logits.shape == (*x.shape[:2], model.config.out_channels, *x.shape[3:])
    if _moderate(x):
        assert bool(torch.isfinite(logits).all())


@pytest.mark.parametrize("name", ["next_frame_tiny", "convlstm_unet_forecaster"])
@FUZZ
@given(data=st.data())
def test_teacher_forcing_arguments_are_checked(name: str, data: st.DataObject) -> None:
    model = create_model(name, base_channels=4) if name == "convlstm_unet_forecaster" else create_model(name)
    context = torch.rand(2, 2, 1, 8, 8)
    horizon = data.draw(st.integers(1, 3))
    target_shape = [2, horizon, 1, 8, 8]
    wrong_targets = data.draw(st.booleans())
    if wrong_targets:
        target_shape[data.draw(st.integers(0, 4))] += 1
    targets = torch.rand(target_shape) if data.draw(st.integers(0, 5)) else None
    mask_shape = data.draw(st.sampled_from([(horizon,), (2, horizon), (3, horizon), (horizon + 1,)]))
    mask = torch.rand(mask_shape) < 0.5
    valid = targets is not None and not wrong_targets and mask_shape in ((horizon,), (2, horizon))
    try:
        prediction = model(context, horizon=horizon, targets=targets, teacher_forcing=mask)
    except ValueError as error:
        _refused(error, allowed=not valid, mentions="teacher_forcing")
        return
    assert prediction.shape == (2, horizon, 1, 8, 8)
    assert targets is not None and tuple(targets.shape) == (2, horizon, 1, 8, 8)


def test_a_refused_valid_call_fails_the_fuzz_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fuzz tests can fail: a model that refuses a valid horizon with a clear ValueError is caught."""
    from convlstm.baselines import Persistence

    forward = Persistence.forward

    def refuses_one_frame(self: Persistence, context: torch.Tensor, horizon: Any = None, **kwargs: Any) -> Any:
        if horizon == 1:
            raise ValueError("horizon=1 refused: a planted bug with a clear message")
        return forward(self, context, horizon, **kwargs)

    monkeypatch.setattr(Persistence, "forward", refuses_one_frame)
    with pytest.raises(AssertionError, match="valid overrides and input were refused"):
        test_forecasters_work_or_raise_value_errors(name="persistence")


def test_unknown_model_names_suggest_close_ones() -> None:
    with pytest.raises(ValueError, match="did you mean next_frame_tiny"):
        create_model("next_frame_tinny")
