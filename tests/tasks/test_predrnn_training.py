"""PredRNN-V2's training: reverse scheduled sampling as OpenSTL schedules it, the decoupling loss, and both reaching
the model through ForecastingTask."""

import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from convlstm.models import PredRNNv2, create_model
from convlstm.tasks import ForecastingTask, ScheduledSampling, decoupling_loss
from tests.tasks.tiny import QUIET_TRAINER, TinyForecaster, loader, static_sequences


def test_reverse_schedule_follows_openstl_formula() -> None:
    schedule = ScheduledSampling("reverse", reverse_start_step=25_000, reverse_end_step=50_000, reverse_decay=5_000)
    for step in (0, 24_999, 25_000, 30_000, 37_500, 49_999, 50_000, 80_000):
        # openstl/utils/predrnn_utils.py, reserve_schedule_sampling_exp: r_eta for the context, eta for the forecast
        if step < 25_000:
            r_eta, eta = 0.5, 0.5
        elif step < 50_000:
            r_eta = 1.0 - 0.5 * math.exp(-float(step - 25_000) / 5_000)
            eta = 0.5 - (0.5 / (50_000 - 25_000)) * (step - 25_000)
        else:
            r_eta, eta = 1.0, 0.0
        assert schedule.context_probability(step) == pytest.approx(r_eta, abs=1e-12), step
        assert schedule.probability(step) == pytest.approx(eta, abs=1e-12), step
    assert schedule.context_probability(30_000) == pytest.approx(1 - 0.5 / math.e)
    assert schedule.probability(37_500) == pytest.approx(0.25)


def test_reverse_context_masks() -> None:
    schedule = ScheduledSampling("reverse")
    mask = schedule.context_mask(0, 400, 51, generator=torch.Generator().manual_seed(0))
    assert mask is not None and mask.shape == (400, 50) and mask.dtype == torch.bool
    assert float(mask.float().mean()) == pytest.approx(0.5, abs=0.01)  # 20,000 draws: sd 0.0035
    late = schedule.context_mask(60_000, 3, 10)
    assert late is not None and bool(late.all())
    assert ScheduledSampling("linear").context_mask(0, 3, 10) is None
    assert ScheduledSampling("linear").context_probability(0) == 1.0
    with pytest.raises(ValueError, match="reverse_end_step must be >= reverse_start_step=10"):
        ScheduledSampling("reverse", reverse_start_step=10, reverse_end_step=5)
    with pytest.raises(ValueError, match="reverse_decay must be a finite number > 0"):
        ScheduledSampling("reverse", reverse_decay=0)


def test_decoupling_loss_against_brute_force() -> None:
    torch.manual_seed(0)
    delta_c, delta_m = torch.randn(2, 3, 2, 4, 5, 5), torch.randn(2, 3, 2, 4, 5, 5)
    total, count = 0.0, 0
    for index in torch.cartesian_prod(*(torch.arange(n) for n in delta_c.shape[:4])):
        a, b = delta_c[tuple(index)].flatten().double(), delta_m[tuple(index)].flatten().double()
        total += abs(float(a @ b) / float(a.norm() * b.norm()))
        count += 1
    assert float(decoupling_loss(delta_c, delta_m)) == pytest.approx(total / count, rel=1e-5)
    # OpenSTL normalises first, then takes the cosine, per step and layer, and averages those means.
    normal_c, normal_m = F.normalize(delta_c.flatten(-2), dim=-1), F.normalize(delta_m.flatten(-2), dim=-1)
    openstl = torch.stack(
        [
            F.cosine_similarity(normal_c[:, s, layer], normal_m[:, s, layer], dim=-1).abs().mean()
            for s in range(3)
            for layer in range(2)
        ]
    ).mean()
    torch.testing.assert_close(decoupling_loss(delta_c, delta_m), openstl)
    same = decoupling_loss(delta_c, 3 * delta_c)
    assert float(same) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="one shape"):
        decoupling_loss(delta_c, delta_m[..., :4])


class _Recording(PredRNNv2):
    """PredRNN-V2 that records what the task passed."""

    family = "tests_recording_predrnn_v2"
    calls: list[dict[str, object]]

    def forward_with_increments(self, context, horizon=None, targets=None, teacher_forcing=None, **kwargs):  # type: ignore[no-untyped-def]
        self.calls = [*getattr(self, "calls", []), {"teacher_forcing": teacher_forcing, **kwargs}]
        return super().forward_with_increments(context, horizon, targets, teacher_forcing, **kwargs)


def test_forecasting_task_adds_the_decoupling_loss_and_sends_context_masks(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = _Recording(hidden_channels=4, num_layers=2, kernel_size=3, patch_size=4, default_horizon=2)
    task = ForecastingTask(
        model, sampling="reverse", reverse_start_step=2, reverse_end_step=4, reverse_decay=1.0, decouple_beta=0.1
    )
    trainer = L.Trainer(max_steps=5, enable_checkpointing=False, **QUIET_TRAINER)
    trainer.fit(task, loader(static_sequences(8, context=3, target=2), shuffle=True))
    assert len(model.calls) == 5
    for call in model.calls:
        context_mask, teacher = call["context_teacher_forcing"], call["teacher_forcing"]
        assert isinstance(context_mask, torch.Tensor) and context_mask.shape == (4, 2)
        assert isinstance(teacher, torch.Tensor) and teacher.shape == (4, 2)
    assert bool(model.calls[4]["context_teacher_forcing"].all())  # type: ignore[union-attr]  # step 4: true context
    assert not bool(model.calls[4]["teacher_forcing"].any())  # type: ignore[union-attr]  # and a free forecast

    # The training loss is the MSE plus beta times the decoupling loss of the same forward pass.
    batch = next(iter(loader(static_sequences(4, context=3, target=2))))
    torch.manual_seed(1)
    task.train()
    monkeypatch.setattr(task, "log", lambda *args, **kwargs: None)  # outside a fit loop there is nothing to log to
    loss = task.training_step(batch, 0)
    torch.manual_seed(1)
    teacher = task.sampling.mask(task.global_step, 4, 2)
    context_mask = task.sampling.context_mask(task.global_step, 4, 3)
    pred, increments = model.forward_with_increments(
        batch["context"], 2, batch["target"], teacher, context_teacher_forcing=context_mask
    )
    expected = F.mse_loss(pred, batch["target"]) + 0.1 * decoupling_loss(*increments)
    torch.testing.assert_close(loss, expected)


def test_forecasting_task_refuses_what_the_model_cannot_do() -> None:
    with pytest.raises(ValueError, match="sampling='reverse' replaces context frames"):
        ForecastingTask(TinyForecaster(), sampling="reverse")
    with pytest.raises(ValueError, match=r"decouple_beta=0\.1 weighs PredRNN-V2's decoupling loss"):
        ForecastingTask(create_model("predrnn_tiny"), decouple_beta=0.1)
    with pytest.raises(ValueError, match=r"decouple_beta must be in \[0.0, inf\], got"):
        ForecastingTask(create_model("predrnnv2_tiny"), decouple_beta=-1.0)
