"""PredNetTask with a small stand-in that follows the PredNet protocol (errors / predictions / extrapolation)."""

import lightning as L
import pytest
import torch

from convlstm.tasks import OptimizationConfig, PredNetTask
from tests.tasks.tiny import QUIET_TRAINER, ItemList, TinyPredNet, loader


def _static_videos(n: int, *, frames: int = 5, size: int = 8, seed: int = 0) -> ItemList:
    g = torch.Generator().manual_seed(seed)
    items = []
    for _ in range(n):
        frame = torch.rand(1, 1, size, size, generator=g)
        sequence = frame.expand(frames, -1, -1, -1).clone()
        items.append({"context": sequence[:3], "target": sequence[3:]})  # the task joins them
    return ItemList(items)


def _frames(data: ItemList) -> torch.Tensor:
    return torch.stack([torch.cat([item["context"], item["target"]]) for item in data.items])


def test_error_loss_matches_weighted_sum():
    torch.manual_seed(0)
    model = TinyPredNet()
    frames = _frames(_static_videos(3))
    for weights, layer_w in (("L_0", [1.0, 0.0]), ("L_all", [1.0, 0.1]), ((0.5, 2.0), [0.5, 2.0])):
        task = PredNetTask(model, layer_loss_weights=weights)
        with torch.no_grad():
            loss = task.training_step({"context": frames[:, :2], "target": frames[:, 2:]}, 0)
            errors = model(frames, output_mode="error")
        steps = frames.shape[1]
        expected = 0.0
        for b in range(3):
            for t in range(1, steps):  # time weight 0 at t = 0, 1 / (T - 1) after
                for layer in range(2):
                    expected += layer_w[layer] * float(errors[b, t, layer]) / (steps - 1)
        assert float(loss) == pytest.approx(expected / 3, rel=1e-5)
    custom = PredNetTask(model, time_loss_weights=(1.0, 0.0, 0.0, 0.0, 0.0))
    with torch.no_grad():
        assert float(custom.training_step(frames, 0)) == pytest.approx(float(errors[:, 0, 0].mean()), rel=1e-5)
    with pytest.raises(ValueError, match="time_loss_weights"):
        PredNetTask(model, time_loss_weights=(1.0, 0.0)).training_step(frames, 0)
    with pytest.raises(ValueError, match="layer_loss_weights must have 2 entries"):
        PredNetTask(model, layer_loss_weights=(1.0, 0.1, 0.1)).training_step(frames, 0)


def test_the_models_own_layer_loss_weights_train_unless_the_task_overrides_them():
    """PredNet's config carries layer_loss_weights; the task trains with them unless given its own."""
    from convlstm.models.prednet import PredNet

    frames = torch.rand(2, 4, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(0)
    weighted = PredNet(stack_sizes=(1, 4), layer_loss_weights=(1.0, 0.5))
    with torch.no_grad():
        errors, _ = weighted.run(frames, output_mode="error")
        own = PredNetTask(weighted).training_step(frames, 0)
        overridden = PredNetTask(weighted, layer_loss_weights="L_0").training_step(frames, 0)
    # float32 sums of 2 x 3 x 2 terms: a few ulps
    per_step = errors[:, 1:, 0] + 0.5 * errors[:, 1:, 1]
    assert float(own) == pytest.approx(float(per_step.mean()), rel=1e-5)
    assert float(overridden) == pytest.approx(float(errors[:, 1:, 0].mean()), rel=1e-5)
    assert float(own) > float(overridden)


def test_extrapolation_loss_uses_fed_back_predictions():
    torch.manual_seed(0)
    model = TinyPredNet()
    frames = _frames(_static_videos(2))
    task = PredNetTask(model, extrap_start_time=3)
    with torch.no_grad():
        loss = task.training_step(frames, 0)
        extrapolated = model(frames, output_mode="prediction", extrap_start_time=3)
        plain = model(frames, output_mode="prediction")
    assert not torch.allclose(extrapolated[:, 4], plain[:, 4])  # the mode reached the model
    expected = 0.5 * (extrapolated[:, 3:] - frames[:, 3:]).abs().mean()
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    with pytest.raises(ValueError, match="extrap_start_time"):
        PredNetTask(model, extrap_start_time=9).training_step(frames, 0)


def test_training_lowers_the_loss_and_logs_scores():
    torch.manual_seed(0)
    train, val = _static_videos(16, seed=0), _static_videos(4, seed=1)
    task = PredNetTask(TinyPredNet(), optimization=OptimizationConfig(lr=2e-2))
    trainer = L.Trainer(max_steps=40, enable_checkpointing=False, **QUIET_TRAINER)
    before = trainer.validate(task, loader(val), verbose=False)[0]
    trainer.fit(task, loader(train, shuffle=True))
    after = trainer.validate(task, loader(val), verbose=False)[0]
    assert after["val/loss"] < 0.7 * before["val/loss"]
    for name in ("val/mse_per_pixel", "val/psnr", "val/mse_per_pixel@t1", "val/mse_per_pixel@t4"):
        assert name in after
    assert "val/mse_per_pixel@t5" not in after  # frames 1..4 are scored: frame 0 has nothing to predict from
    # Copying the last frame of a static video is exact.
    assert after["val/persistence_mse_per_pixel"] == 0.0
    task.eval()
    frames = _frames(val)
    with torch.no_grad():
        predictions = task.model(frames, output_mode="prediction")
    expected = (predictions[:, 1:] - frames[:, 1:]).square().mean()
    assert after["val/mse_per_pixel"] == pytest.approx(float(expected), rel=1e-5)
    predicted = trainer.predict(task, loader(val))
    assert predicted[0].shape == (4, 5, 1, 8, 8)


def test_persistence_in_extrapolation_repeats_the_last_fed_frame():
    g = torch.Generator().manual_seed(3)
    frames = torch.rand(2, 5, 1, 8, 8, generator=g)
    task = PredNetTask(TinyPredNet(), extrap_start_time=2)
    logged = L.Trainer(**QUIET_TRAINER).validate(
        task, loader(ItemList([{"context": f} for f in frames])), verbose=False
    )
    expected = (frames[:, 1:2] - frames[:, 2:]).square().mean()
    assert logged[0]["val/persistence_mse_per_pixel"] == pytest.approx(float(expected), rel=1e-5)
    assert "val/mse_per_pixel@t3" in logged[0] and "val/mse_per_pixel@t4" not in logged[0]


def test_checkpoint_needs_the_model_for_a_plain_module(tmp_path):
    task = PredNetTask(
        TinyPredNet(),
        layer_loss_weights="L_all",
        optimization=OptimizationConfig(lr=1e-3, lr_schedule="multistep", lr_milestones=(75,)),
    )
    trainer = L.Trainer(max_steps=1, **{**QUIET_TRAINER, "enable_checkpointing": False})
    trainer.fit(task, loader(_static_videos(4)))
    path = tmp_path / "prednet.ckpt"
    trainer.save_checkpoint(path)
    with pytest.raises(ValueError, match="pass model="):
        PredNetTask.from_checkpoint(path)
    rebuilt = PredNetTask.from_checkpoint(path, model=TinyPredNet())
    assert rebuilt.hparams["layer_loss_weights"] == "L_all"
    assert torch.equal(rebuilt.model.head.weight, task.model.head.weight)


def test_bad_arguments():
    with pytest.raises(ValueError, match="layer_loss_weights"):
        PredNetTask(TinyPredNet(), layer_loss_weights="L_1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="extrap_start_time"):
        PredNetTask(TinyPredNet(), extrap_start_time=0)
