"""initial_mean: the encoder-forecasters (ConvLSTM and FC-LSTM) can start predicting the data's mean pixel."""

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from convlstm.models import create_model, from_pretrained

# (builder, arguments for 8x8 frames)
MODELS = [
    ("encoder_forecaster_tiny", {}),
    ("fc_lstm_tiny", {"height": 8, "width": 8}),
]


def _build(name: str, args: dict[str, Any], **overrides: Any) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(name, **args, default_horizon=3, **overrides).eval()


@pytest.mark.parametrize(("name", "args"), MODELS)
@pytest.mark.parametrize(("activation", "mean"), [("sigmoid", 0.05), ("sigmoid", 0.7), ("none", -1.5)])
def test_a_head_without_weights_predicts_exactly_the_initial_mean(
    name: str, args: dict[str, Any], activation: str, mean: float
) -> None:
    model = _build(name, args, output_activation=activation, initial_mean=mean)
    with torch.no_grad():
        model.head.weight.zero_()  # type: ignore[union-attr, operator]
        prediction = model(torch.rand(2, 4, 1, 8, 8))
    torch.testing.assert_close(prediction, torch.full_like(prediction, mean), atol=1e-6, rtol=0)


@pytest.mark.parametrize(("name", "args"), MODELS)
def test_a_fresh_model_predicts_near_the_initial_mean_instead_of_one_half(name: str, args: dict[str, Any]) -> None:
    context = torch.rand(4, 4, 1, 8, 8)
    with torch.no_grad():
        started = _build(name, args, initial_mean=0.05)(context)
        default = _build(name, args)(context)
    assert abs(float(started.mean()) - 0.05) < 0.02
    assert abs(float(default.mean()) - 0.5) < 0.1


@pytest.mark.parametrize(("name", "args"), MODELS)
def test_initial_mean_survives_saving(tmp_path: Path, name: str, args: dict[str, Any]) -> None:
    model = _build(name, args, initial_mean=0.1)
    model.save_pretrained(tmp_path / "model")  # type: ignore[operator]
    loaded = from_pretrained(tmp_path / "model")
    assert loaded.config.initial_mean == 0.1
    context = torch.rand(2, 4, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(context), model(context))


@pytest.mark.parametrize(("name", "args"), MODELS)
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"initial_mean": 0.0}, r"initial_mean must lie in \(0, 1\) with a sigmoid output, got 0.0"),
        ({"initial_mean": 1.5}, r"initial_mean must lie in \(0, 1\) with a sigmoid output, got 1.5"),
        ({"initial_mean": float("nan"), "output_activation": "none"}, "initial_mean must be a finite number"),
        ({"initial_mean": True}, "initial_mean must be a finite number or None, got True"),
        ({"initial_mean": 0.1, "output_activation": "tanh"}, "output_activation must be one of"),
    ],
)
def test_bad_initial_mean_is_rejected(name: str, args: dict[str, Any], overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _build(name, args, **overrides)


def test_a_model_saved_before_initial_mean_existed_still_loads(tmp_path: Path) -> None:
    model = _build("encoder_forecaster_tiny", {})
    model.save_pretrained(tmp_path / "model")  # type: ignore[operator]
    config_file = tmp_path / "model" / "config.json"
    saved = json.loads(config_file.read_text())
    del saved["config"]["initial_mean"]
    config_file.write_text(json.dumps(saved))
    loaded = from_pretrained(tmp_path / "model")
    assert loaded.config.initial_mean is None
    context = torch.rand(2, 4, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(context), model(context))
    saved["config"]["colour"] = "blue"
    config_file.write_text(json.dumps(saved))
    with pytest.raises(ValueError, match=r"config of encoder_forecaster has unknown keys \['colour'\] and lacks \[\]"):
        from_pretrained(tmp_path / "model")
