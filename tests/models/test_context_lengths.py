"""Forecasters fed a padded batch of contexts of different lengths forecast each as if it were alone."""

import pytest
import torch

from convlstm import create_model
from convlstm.models.base import ForecastingModel

LENGTHS = [4, 2, 3]

MODELS = {
    "encoder_forecaster": {"name": "encoder_forecaster_tiny"},
    "encoder_forecaster_gru_advection_cues": {
        "name": "encoder_forecaster_tiny",
        "cell": "gru",
        "peephole": False,
        "head": "advection",
        "output_activation": "none",
        "motion_radius": 1,
    },
    "next_frame": {"name": "next_frame_tiny"},
}


@pytest.mark.parametrize("overrides", MODELS.values(), ids=MODELS.keys())
def test_padded_contexts_forecast_as_each_alone(overrides: dict[str, object]) -> None:
    torch.manual_seed(0)
    kwargs = dict(overrides)
    model = create_model(str(kwargs.pop("name")), **kwargs)
    assert isinstance(model, ForecastingModel) and model.accepts_context_lengths
    context = torch.rand(len(LENGTHS), max(LENGTHS), 1, 16, 16)
    for b, length in enumerate(LENGTHS):
        context[b, length:] = 0.0  # padding
    with torch.no_grad():
        batch = model(context, 3, context_lengths=torch.tensor(LENGTHS))
        for b, length in enumerate(LENGTHS):
            alone = model(context[b : b + 1, :length], 3)
            # float32 through a few small convolutions per step: batch and single calls may differ by a few ulps.
            torch.testing.assert_close(batch[b : b + 1], alone, atol=1e-5, rtol=1e-5)
    # Without the lengths the padding is read as frames: the short contexts' forecasts change.
    with torch.no_grad():
        unaware = model(context, 3)
    assert not torch.allclose(unaware[1], batch[1], atol=1e-4)


def test_context_lengths_are_checked() -> None:
    model = create_model("next_frame_tiny")
    context = torch.rand(2, 3, 1, 16, 16)
    with pytest.raises(ValueError, match=r"context_lengths must lie in \[1, T_in=3\]"):
        model(context, 2, context_lengths=torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"context_lengths must be an integer tensor of shape \(B,\)=\(2,\)"):
        model(context, 2, context_lengths=torch.tensor([3.0, 3.0]))
