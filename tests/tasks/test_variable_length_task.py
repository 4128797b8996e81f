"""ForecastingTask on batches of contexts of different lengths (pad_collate's "context_lengths")."""

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from convlstm import create_model
from convlstm.data import pad_collate
from convlstm.tasks import ForecastingTask, OptimizationConfig
from tests.tasks.tiny import QUIET_TRAINER, TinyForecaster


def _items(count: int) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [
        {
            "context": torch.rand(2 + i % 3, 1, 16, 16, generator=generator),
            "target": torch.rand(2, 1, 16, 16, generator=generator),
        }
        for i in range(count)
    ]


def test_trains_and_validates_on_padded_contexts() -> None:
    torch.manual_seed(0)
    model = create_model("encoder_forecaster_tiny")
    task = ForecastingTask(model, optimization=OptimizationConfig(lr=1e-2))
    loader = DataLoader(_items(6), batch_size=3, collate_fn=pad_collate)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = L.Trainer(max_steps=2, enable_checkpointing=False, **QUIET_TRAINER)
    trainer.fit(task, loader, loader)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    predictions = trainer.predict(task, loader)
    assert predictions is not None
    batch = next(iter(loader))
    with torch.no_grad():
        want = model(batch["context"], 2, context_lengths=batch["context_lengths"])
    torch.testing.assert_close(predictions[0], want)


def test_models_without_context_lengths_refuse_padded_batches() -> None:
    task = ForecastingTask(TinyForecaster(), optimization=OptimizationConfig(lr=1e-2))
    batch = next(iter(DataLoader(_items(3), batch_size=3, collate_fn=pad_collate)))
    with pytest.raises(ValueError, match="does not take context_lengths="):
        task.predict_step(batch, 0)
