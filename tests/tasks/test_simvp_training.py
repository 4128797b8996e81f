"""TAU's differential divergence regularisation, as OpenSTL computes it, and ForecastingTask adding it to the MSE."""

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from convlstm.models import create_model
from convlstm.tasks import ForecastingTask, differential_divergence
from tests.tasks.tiny import QUIET_TRAINER, loader, static_sequences


def test_divergence_is_a_kl_divergence_of_the_frame_changes_per_element() -> None:
    torch.manual_seed(0)
    pred, target = torch.rand(2, 4, 1, 5, 5), torch.rand(2, 4, 1, 5, 5)
    # openstl/methods/tau.py, diff_div_reg: softmax over each change's elements at temperature 0.1, then
    # mean(p log(p / (q + eps) + eps)): the KL divergence of each pair of consecutive frames over 25 elements.
    p = F.softmax((pred[:, 1:] - pred[:, :-1]).flatten(2) / 0.1, dim=-1)
    q = F.softmax((target[:, 1:] - target[:, :-1]).flatten(2) / 0.1, dim=-1)
    kl = F.kl_div(q.log(), p, reduction="none").sum(-1)  # (B, T - 1)
    torch.testing.assert_close(differential_divergence(pred, target), kl.mean() / 25)
    # Equal changes give 0 but for eps (1e-12 against probabilities down to ~1e-5 here: terms of order 1e-9).
    assert float(differential_divergence(target, target)) == pytest.approx(0.0, abs=1e-8)
    # Shifting every frame by one constant leaves the changes as they were.
    assert float(differential_divergence(target + 0.3, target)) == pytest.approx(0.0, abs=1e-8)
    assert float(differential_divergence(pred[:, :2], target[:, :2])) == 0.0  # OpenSTL: nothing for T <= 2
    with pytest.raises(ValueError, match="shape"):
        differential_divergence(pred, target[:, :3])


def test_forecasting_task_adds_the_divergence_to_the_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = create_model("tau_tiny")
    task = ForecastingTask(model, divergence_alpha=0.1)
    L.Trainer(max_steps=2, enable_checkpointing=False, **QUIET_TRAINER).fit(
        task, loader(static_sequences(4, context=3, target=3), shuffle=True)
    )
    batch = next(iter(loader(static_sequences(4, context=3, target=3, seed=1))))
    batch["target"] = batch["target"] + 0.1 * torch.rand(batch["target"].shape)  # frames that change
    task.eval()  # BatchNorm's running statistics and no stochastic depth: the same forward twice
    logged: dict[str, float] = {}
    monkeypatch.setattr(task, "log", lambda name, value, **kwargs: logged.update({name: float(value)}))
    loss = task.training_step(batch, 0)
    pred = model(batch["context"], 3)
    divergence = differential_divergence(pred, batch["target"])
    assert float(divergence) > 0 and logged["train/divergence"] == pytest.approx(float(divergence))
    torch.testing.assert_close(loss, F.mse_loss(pred, batch["target"]) + 0.1 * divergence)
    with pytest.raises(ValueError, match=r"divergence_alpha must be in \[0.0, inf\], got"):
        ForecastingTask(model, divergence_alpha=-0.1)
