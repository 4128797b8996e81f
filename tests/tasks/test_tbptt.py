"""Truncated back-propagation through time: chunked losses, cut gradients, and a real Lightning fit."""

import itertools
from collections import namedtuple
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from convlstm.models import NextFramePredictor
from convlstm.tasks import OptimizationConfig
from convlstm.tasks.losses import mse_loss
from convlstm.tasks.tbptt import TBPTTForecastingTask, detach_state, tbptt_chunks, tbptt_one_step_loss
from tests.tasks.tiny import QUIET_TRAINER
from tests.tolerances import gradient_tolerance


def _model(seed: int = 0) -> NextFramePredictor:
    torch.manual_seed(seed)
    return NextFramePredictor(encoder_channels=(4,), hidden_channels=(4,), kernel_size=3)


def _frames(steps: int = 11, batch: int = 2, size: int = 8, seed: int = 1) -> Tensor:
    return torch.rand(batch, steps, 1, size, size, generator=torch.Generator().manual_seed(seed))


def _full_loss(model: NextFramePredictor, frames: Tensor) -> Tensor:
    """The untruncated one-step loss, computed in one call."""
    predictions, _ = model.one_step(frames[:, :-1])
    return mse_loss(predictions, frames[:, 1:])


@pytest.mark.parametrize("chunk", [1, 3, 4, 10, 50])
def test_chunked_loss_equals_full_loss(chunk: int) -> None:
    model, frames = _model(), _frames()
    want = _full_loss(model, frames)
    torch.testing.assert_close(tbptt_one_step_loss(model, frames, chunk=chunk, backward=False), want)
    got = tbptt_one_step_loss(model, frames, chunk=chunk)
    assert not got.requires_grad
    torch.testing.assert_close(got, want.detach())
    parts = list(tbptt_chunks(model, frames, chunk=chunk))
    spans = [(p.start, p.stop) for p in parts]  # the 10 input frames, tiled in order
    assert spans[0][0] == 0 and spans[-1][1] == 10
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    assert all(0 < stop - start <= chunk for start, stop in spans)
    assert sum(p.weight for p in parts) == pytest.approx(1.0)


def test_first_chunk_gradients_depend_on_the_first_chunk_only() -> None:
    """Changing the frames after the first chunk leaves the first chunk's gradients exactly as they were."""
    model, frames = _model(), _frames()
    changed = frames.clone()
    changed[:, 5:] = torch.rand_like(changed[:, 5:])  # the first chunk (chunk=4) reads frames 0-3, predicts 1-4
    grads = []
    for sequence in (frames, changed):
        first = next(tbptt_chunks(model, sequence, chunk=4))
        grads.append(torch.autograd.grad(first.loss, list(model.parameters())))
    for a, b in zip(*grads, strict=True):
        assert torch.equal(a, b)
    # the untruncated loss of the same predicted frames does see the change: the test above can fail
    full = [torch.autograd.grad(_full_loss(model, s), list(model.parameters())) for s in (frames, changed)]
    assert any(not torch.equal(a, b) for a, b in zip(*full, strict=True))


def test_detach_cuts_the_gradient_between_chunks() -> None:
    """A chunk's loss has no gradient on frames before the chunk; without the cut it would."""
    model = _model()
    frames = _frames().requires_grad_(True)
    parts = tbptt_chunks(model, frames, chunk=3)
    for part in parts:
        (grad,) = torch.autograd.grad(part.loss, frames)
        assert torch.count_nonzero(grad[:, : part.start]) == 0
        assert torch.count_nonzero(grad[:, part.stop + 1 :]) == 0
        assert torch.count_nonzero(grad[:, part.start]) > 0
    predictions, _ = model.one_step(frames[:, :-1])
    (grad,) = torch.autograd.grad(mse_loss(predictions[:, 9:], frames[:, 10:]), frames)
    assert torch.count_nonzero(grad[:, 0]) > 0


def test_accumulated_gradient_is_the_truncated_gradient() -> None:
    """backward=True leaves in .grad the sum of each chunk's weighted gradient, each chunk started (independently
    here) from the state of a gradient-free run over the frames before it."""
    model, frames = _model(), _frames()
    params = list(model.parameters())
    want = [torch.zeros_like(p) for p in params]
    for start, stop in [(0, 4), (4, 8), (8, 10)]:
        state = None
        if start:
            with torch.no_grad():
                _, state = model.one_step(frames[:, :start])
        predictions, _ = model.one_step(frames[:, start:stop], state)
        loss = mse_loss(predictions, frames[:, start + 1 : stop + 1]) * (stop - start) / 10
        for w, g in zip(want, torch.autograd.grad(loss, params), strict=True):
            w += g
    model.zero_grad()
    tbptt_one_step_loss(model, frames, chunk=4)
    for p, w in zip(params, want, strict=True):
        torch.testing.assert_close(p.grad, w, **gradient_tolerance(w))  # float32 sums, another order
    # one chunk spanning the sequence is plain back-propagation through time
    model.zero_grad()
    tbptt_one_step_loss(model, frames, chunk=10)
    full = torch.autograd.grad(_full_loss(model, frames), params)
    for p, g in zip(params, full, strict=True):
        torch.testing.assert_close(p.grad, g, **gradient_tolerance(g))  # float32 sums, another order


def test_activation_checkpointing_inside_chunks_changes_nothing() -> None:
    model, frames = _model(), _frames()
    tbptt_one_step_loss(model, frames, chunk=4)
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.rnn.checkpoint_every = 2
    tbptt_one_step_loss(model, frames, chunk=4)
    for p, g in zip(model.parameters(), plain, strict=True):
        torch.testing.assert_close(p.grad, g, **gradient_tolerance(g))  # recomputed float32 activations


def test_detach_state_keeps_the_structure() -> None:
    Pair = namedtuple("Pair", "h c")
    x = torch.ones(2, requires_grad=True) * 2
    state: Any = [Pair(x, x + 1), (x,), {"h": [x]}, None]
    detached = detach_state(state)
    assert isinstance(detached[0], Pair) and isinstance(detached[1], tuple) and detached[3] is None
    leaves = [detached[0].h, detached[0].c, detached[1][0], detached[2]["h"][0]]
    assert all(not t.requires_grad for t in leaves)
    torch.testing.assert_close(detached[0].c, x + 1)
    assert x.requires_grad


def test_bad_arguments_are_refused() -> None:
    model = _model()
    with pytest.raises(ValueError, match="chunk"):
        tbptt_one_step_loss(model, _frames(), chunk=0)
    with pytest.raises(ValueError, match="at least 2 time steps"):
        tbptt_one_step_loss(model, _frames(steps=1), chunk=2)
    with pytest.raises(ValueError, match="one_step"):
        tbptt_one_step_loss(torch.nn.Linear(2, 2), _frames(), chunk=2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one_step"):
        TBPTTForecastingTask(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="update"):
        TBPTTForecastingTask(model, update="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="total_steps"):
        TBPTTForecastingTask(model, update="per_chunk", optimization=OptimizationConfig(lr_schedule="cosine"))


# ---------------------------------------------------------------------------------------------------- Lightning
def _loader(sequences: Tensor, batch_size: int = 2) -> DataLoader[Tensor]:
    return DataLoader(list(sequences), batch_size=batch_size)


def _drifting_sequences(n: int, steps: int, size: int = 8) -> Tensor:
    """A random frame that slowly brightens: (n, steps, 1, size, size), an easy next frame to learn."""
    base = torch.rand(n, 1, 1, size, size, generator=torch.Generator().manual_seed(3)) * 0.5
    ramp = torch.linspace(0, 0.4, steps).view(1, steps, 1, 1, 1)
    return (base + ramp).clamp(0, 1)


def test_fit_per_sequence_on_long_sequences_learns(tmp_path: Path) -> None:
    """One optimizer step per batch over 60-frame sequences in chunks of 8; the loss falls and a checkpoint
    rebuilds the task."""
    sequences = _drifting_sequences(4, 60)
    task = TBPTTForecastingTask(_model(), chunk=8, optimization=OptimizationConfig(lr=2e-2))
    trainer = L.Trainer(max_steps=60, default_root_dir=tmp_path, enable_checkpointing=False, **QUIET_TRAINER)
    before = trainer.validate(task, _loader(sequences), verbose=False)[0]["val/loss"]
    with torch.no_grad():
        assert before == pytest.approx(float(_full_loss(task.model, sequences)), rel=1e-5)  # type: ignore[arg-type]
    trainer.fit(task, _loader(sequences, batch_size=2))
    assert trainer.global_step == 60
    after = trainer.validate(task, _loader(sequences), verbose=False)[0]["val/loss"]
    assert after < 0.5 * before, (before, after)
    path = tmp_path / "tbptt.ckpt"
    trainer.save_checkpoint(path)
    rebuilt = TBPTTForecastingTask.from_checkpoint(path)
    assert rebuilt.hparams["chunk"] == 8
    for a, b in zip(rebuilt.model.parameters(), task.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_fit_per_chunk_steps_once_per_chunk_and_schedules_by_chunk() -> None:
    """40 frames in chunks of 13: three optimizer steps per batch; a cosine schedule over 6 steps ends at 0."""
    calls = []

    class Counting(TBPTTForecastingTask):
        def training_step(self, batch: Any, batch_idx: int) -> Tensor:
            calls.append(batch_idx)
            return super().training_step(batch, batch_idx)

    task = Counting(
        _model(),
        chunk=13,
        update="per_chunk",
        optimization=OptimizationConfig(lr=1e-3, lr_schedule="cosine", total_steps=6),
    )
    before = [p.detach().clone() for p in task.model.parameters()]
    trainer = L.Trainer(max_steps=6, enable_checkpointing=False, **QUIET_TRAINER)
    trainer.fit(task, _loader(_drifting_sequences(4, 40)))
    assert trainer.global_step == 6 and len(calls) == 2
    assert task.optimizers().param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)  # type: ignore[union-attr]
    assert any(not torch.equal(a, b) for a, b in zip(before, task.model.parameters(), strict=True))
    assert torch.isfinite(trainer.callback_metrics["train/loss"])


def test_make_trainer_runs_it_and_its_guard_skips_non_finite_steps(tmp_path: Path) -> None:
    """make_trainer(gradient_clip_val=None) trains the task; a NaN sequence leaves the weights untouched."""
    from convlstm.tasks import NonFiniteLossGuard, make_trainer

    def fit(sequences: Tensor) -> tuple[list[Tensor], TBPTTForecastingTask, L.Trainer]:
        task = TBPTTForecastingTask(_model(), chunk=5)
        before = [p.detach().clone() for p in task.model.parameters()]
        trainer = make_trainer(
            root_dir=tmp_path,
            accelerator="cpu",
            max_steps=2,
            gradient_clip_val=None,
            loggers=False,
            checkpoints=False,
            early_stopping_patience=None,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(task, _loader(sequences))
        assert trainer.global_step == 2
        return before, task, trainer

    sequences = _drifting_sequences(4, 12)
    before, task, _ = fit(sequences)
    assert any(not torch.equal(a, b) for a, b in zip(before, task.model.parameters(), strict=True))
    before, task, trainer = fit(torch.full_like(sequences, float("nan")))
    assert all(torch.equal(a, b) for a, b in zip(before, task.model.parameters(), strict=True))
    (guard,) = [c for c in trainer.callbacks if isinstance(c, NonFiniteLossGuard)]  # type: ignore[attr-defined]
    assert guard.skipped_steps == 2
