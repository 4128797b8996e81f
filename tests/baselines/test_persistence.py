from pathlib import Path

import pytest
import torch

from convlstm.baselines import Persistence
from convlstm.models import create_model, from_pretrained, list_models


def test_repeats_the_last_context_frame() -> None:
    context = torch.randn(2, 4, 3, 5, 6)
    out = Persistence()(context, horizon=3)
    expected = torch.stack([context[:, 3]] * 3, dim=1)
    assert torch.equal(out, expected)
    out[:, 0] += 1.0  # a copy, not a view of the context
    assert torch.equal(context[:, 3], expected[:, 0])


def test_default_horizon_dtype_and_any_channels() -> None:
    model = create_model("persistence", default_horizon=7)
    assert "persistence" in list_models()
    out = model(torch.zeros(1, 2, 5, 4, 4, dtype=torch.float64))
    assert out.shape == (1, 7, 5, 4, 4)
    assert out.dtype == torch.float64
    assert list(model.parameters()) == []


def test_fixed_channel_count_is_checked() -> None:
    with pytest.raises(ValueError, match="context must have 2 channels"):
        Persistence(2)(torch.zeros(1, 3, 1, 4, 4))
    with pytest.raises(ValueError, match=r"context must have shape \(B, T_in, C=1, H, W\)"):
        Persistence()(torch.zeros(3, 1, 4, 4))
    with pytest.raises(ValueError, match="in_channels must be >= 1"):
        Persistence(0)
    with pytest.raises(ValueError, match="default_horizon must be an int >= 1"):
        Persistence(default_horizon=0)


def test_teacher_forcing_is_validated_then_ignored() -> None:
    context, targets = torch.rand(2, 3, 1, 4, 4), torch.rand(2, 2, 1, 4, 4)
    model = Persistence()
    assert torch.equal(model(context, 2, targets, torch.tensor([True, True])), model(context, 2))
    with pytest.raises(ValueError, match=r"teacher_forcing must have shape \(2,\) or \(2, 2\)"):
        model(context, 2, targets, torch.ones(5, dtype=torch.bool))


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    model = Persistence(3, default_horizon=4)
    model.save_pretrained(tmp_path)
    loaded = from_pretrained(tmp_path)
    assert isinstance(loaded, Persistence)
    assert loaded.config == model.config
    context = torch.rand(2, 3, 3, 4, 4)
    assert torch.equal(loaded(context), model(context))
    with pytest.raises(ValueError, match="context must have 3 channels"):
        loaded(torch.rand(2, 3, 1, 4, 4))
