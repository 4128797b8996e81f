"""Anomaly scoring by prediction: PSNR -> per-sequence regularity -> frame-level AUROC."""

import itertools
import math

import lightning as L
import pytest
import torch

from convlstm.tasks import AnomalyTask, next_frame_psnr, score_sequences
from tests.tasks.tiny import QUIET_TRAINER, ItemList, LastFrame, TinyForecaster, flicker_videos, loader


def _psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    mse = float((pred.clamp(0, 1) - target.clamp(0, 1)).double().square().mean())
    return 10 * math.log10(1 / mse)


def _auroc(scores: list[float], labels: list[int]) -> float:
    """Probability that an anomalous frame outscores a normal one (ties count half)."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y == 1]
    neg = [s for s, y in zip(scores, labels, strict=True) if y == 0]
    wins = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p, q in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_psnr_and_regularity_match_a_direct_computation():
    frames, _ = flicker_videos(3)
    k = 2
    values = next_frame_psnr(LastFrame(), frames, context_frames=k)
    assert values.shape == (3, 6)
    for b in range(3):
        for t in range(k, 8):
            assert float(values[b, t - k]) == pytest.approx(_psnr(frames[b, t - 1], frames[b, t]), rel=1e-5)
    regularity = score_sequences(LastFrame(), frames, context_frames=k)
    assert regularity.shape == (3, 8)
    for b in range(3):
        row = values[b]
        expected = (row - row.min()) / (row.max() - row.min())
        assert torch.allclose(regularity[b, k:], expected, atol=1e-6)
        assert torch.allclose(regularity[b, :k], expected[:1].expand(k))  # "fill": first scored frame's value
    excluded = score_sequences(LastFrame(), frames, context_frames=k, first_frames="exclude")
    assert bool(torch.isnan(excluded[:, :k]).all()) and torch.allclose(excluded[:, k:], regularity[:, k:])


def test_sliding_windows_call_the_model_on_the_right_frames():
    torch.manual_seed(0)
    model = TinyForecaster().eval()
    frames, _ = flicker_videos(2, steps=6)
    values = next_frame_psnr(model, frames, context_frames=3, chunk_size=2)
    with torch.no_grad():
        for t in range(3, 6):
            pred = model(frames[:, t - 3 : t], 1)[:, 0]
            for b in range(2):
                assert float(values[b, t - 3]) == pytest.approx(_psnr(pred[b], frames[b, t]), rel=1e-4)


def test_exact_predictions_are_capped():
    frames = torch.rand(1, 1, 1, 4, 4).expand(1, 5, 1, 4, 4)
    values = next_frame_psnr(LastFrame(), frames, context_frames=1, max_psnr=80.0)
    assert torch.equal(values, torch.full((1, 4), 80.0))
    assert torch.equal(score_sequences(LastFrame(), frames, context_frames=1), torch.ones(1, 5))


def test_cumulative_score_keeps_the_worst_prediction_so_far():
    frames, labels = flicker_videos(4, seed=2)
    k = 2
    values = next_frame_psnr(LastFrame(), frames, context_frames=k, max_psnr=60.0)
    cumulative = score_sequences(LastFrame(), frames, context_frames=k, score="cumulative", max_psnr=60.0)
    for b in range(4):
        for t in range(k, frames.shape[1]):
            assert float(cumulative[b, t]) == pytest.approx(float(values[b, : t - k + 1].min()) / 60.0, rel=1e-6)
    task = AnomalyTask(LastFrame(), context_frames=k, score="cumulative", max_psnr=60.0)
    data = ItemList([{"context": f[:5], "target": f[5:], "labels": y} for f, y in zip(frames, labels, strict=True)])
    results = L.Trainer(**QUIET_TRAINER).test(task, loader(data), verbose=False)[0]
    expected = _auroc((1 - cumulative).flatten().tolist(), labels.flatten().tolist())
    assert results["test/auroc"] == pytest.approx(expected, rel=1e-6)


def test_task_logs_frame_auroc():
    frames, labels = flicker_videos(6, seed=1)
    data = ItemList([{"context": f[:5], "target": f[5:], "labels": y} for f, y in zip(frames, labels, strict=True)])
    task = AnomalyTask(LastFrame(), context_frames=2)
    results = L.Trainer(**QUIET_TRAINER).test(task, loader(data), verbose=False)[0]
    regularity = score_sequences(LastFrame(), frames, context_frames=2)
    expected = _auroc((1 - regularity).flatten().tolist(), labels.flatten().tolist())
    assert results["test/auroc"] == pytest.approx(expected, rel=1e-6)
    assert expected > 0.8  # persistence spots the flicker
    assert "test/psnr" in results
    assert torch.equal(task.results["labels"], labels)
    excluding = AnomalyTask(LastFrame(), context_frames=2, first_frames="exclude")
    results = L.Trainer(**QUIET_TRAINER).validate(excluding, loader(data), verbose=False)[0]
    kept = (1 - regularity[:, 2:]).flatten().tolist()
    assert results["val/auroc"] == pytest.approx(_auroc(kept, labels[:, 2:].flatten().tolist()), rel=1e-6)


def test_checkpoint_of_a_pretrained_forecaster(tmp_path):
    torch.manual_seed(0)
    task = AnomalyTask(TinyForecaster(hidden=2), context_frames=3)
    frames, labels = flicker_videos(2)
    data = ItemList([{"context": f, "labels": y} for f, y in zip(frames, labels, strict=True)])
    trainer = L.Trainer(**QUIET_TRAINER)
    first = trainer.test(task, loader(data), verbose=False)[0]["test/auroc"]
    path = tmp_path / "anomaly.ckpt"
    trainer.save_checkpoint(path)
    rebuilt = AnomalyTask.from_checkpoint(path)
    assert rebuilt.hparams["context_frames"] == 3 and isinstance(rebuilt.model, TinyForecaster)
    assert L.Trainer(**QUIET_TRAINER).test(rebuilt, loader(data), verbose=False)[0]["test/auroc"] == first


def test_bad_inputs():
    frames, labels = flicker_videos(2)
    with pytest.raises(ValueError, match="context_frames"):
        score_sequences(LastFrame(), frames, context_frames=8)
    with pytest.raises(ValueError, match="first_frames"):
        AnomalyTask(LastFrame(), first_frames="drop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"score must be one of \['regularity', 'cumulative'\], got 'max'"):
        score_sequences(LastFrame(), frames, score="max")  # type: ignore[arg-type]
    task = AnomalyTask(LastFrame())
    with pytest.raises(ValueError, match="labels must be"):
        task.test_step({"context": frames, "labels": labels[:, :4]}, 0)
    with pytest.raises(ValueError, match="'labels'"):
        task.test_step({"context": frames}, 0)
    with pytest.raises(ValueError, match="ForecastingTask"):
        task.configure_optimizers()
