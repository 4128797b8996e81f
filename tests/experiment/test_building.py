"""Recipe -> model: fine-tuning from a saved model's weights (model.init_from)."""

from pathlib import Path

import pytest
import torch

from convlstm.experiment import RecipeError, build_model, recipe_from_dict
from convlstm.models import create_model


def _recipe(name: str, init_from: Path, **args: object) -> dict:
    return {"name": "x", "data": {"source": "s"}, "model": {"name": name, "args": args, "init_from": str(init_from)}}


def test_init_from_copies_every_weight(tmp_path: Path) -> None:
    torch.manual_seed(1)
    saved = create_model("encoder_forecaster_tiny", hidden_channels=[4, 4])
    saved.save_pretrained(tmp_path / "model")
    torch.manual_seed(2)  # a fresh initialisation differs: the copy must replace it
    recipe = recipe_from_dict(_recipe("encoder_forecaster_tiny", tmp_path / "model", hidden_channels=[4, 4]))
    model = build_model(recipe)
    expected = saved.state_dict()
    assert expected.keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected[key]), key


def test_init_from_refuses_another_network(tmp_path: Path) -> None:
    create_model("encoder_forecaster_tiny", hidden_channels=[4, 4]).save_pretrained(tmp_path / "model")
    recipe = recipe_from_dict(_recipe("encoder_forecaster_tiny", tmp_path / "model", hidden_channels=[4, 8]))
    with pytest.raises(RecipeError, match=r"model.init_from .*model holds a EncoderForecaster that does not fit"):
        build_model(recipe)
    with pytest.raises(RecipeError, match="does not fit the recipe's FCLSTM"):
        build_model(recipe_from_dict(_recipe("fc_lstm_tiny", tmp_path / "model")))
    with pytest.raises(FileNotFoundError, match=r"config\.json not found"):
        build_model(recipe_from_dict(_recipe("fc_lstm_tiny", tmp_path / "missing")))
