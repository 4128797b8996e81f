"""ForecastingTask with a real Trainer on tiny data: learning, scheduled sampling, logged scores, checkpoints."""

import logging
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from convlstm.metrics import pixel_to_rain_rate
from convlstm.models import create_model
from convlstm.tasks import (
    AtomicCheckpointIO,
    ForecastingTask,
    NonFiniteLossGuard,
    OptimizationConfig,
    PredictionImageLogger,
    load_task,
    make_trainer,
    prediction_grid,
)
from convlstm.tasks.optim import WarmupCosine
from tests.accel.fake_cpu import pretend_cpu
from tests.tasks.tiny import (
    QUIET_TRAINER,
    ItemList,
    TinyEnsemble,
    TinyForecaster,
    loader,
    noisy_static_sequences,
    static_sequences,
)


def _fit(task: L.LightningModule, steps: int, train, val=None, **kwargs) -> L.Trainer:
    trainer = L.Trainer(max_steps=steps, enable_checkpointing=False, **{**QUIET_TRAINER, **kwargs})
    trainer.fit(task, loader(train, shuffle=True), None if val is None else loader(val))
    return trainer


def test_learns_to_copy_a_static_frame():
    torch.manual_seed(0)
    train, val = static_sequences(16, seed=0), static_sequences(8, seed=1)
    task = ForecastingTask(TinyForecaster(), optimization=OptimizationConfig(lr=1e-2))
    trainer = L.Trainer(max_steps=60, enable_checkpointing=False, **QUIET_TRAINER)
    before = trainer.validate(task, loader(val), verbose=False)[0]["val/loss"]
    trainer.fit(task, loader(train, shuffle=True))
    after = trainer.validate(task, loader(val), verbose=False)[0]["val/loss"]
    assert after < 0.3 * before


def test_logged_scores_have_documented_names_and_values():
    torch.manual_seed(0)
    val = static_sequences(6, target=3, size=12, seed=1)
    task = ForecastingTask(TinyForecaster(), metrics=("mse_per_frame", "psnr", "ssim"))
    trainer = L.Trainer(**QUIET_TRAINER)
    logged = trainer.validate(task, loader(val), verbose=False)[0]
    for name in ("val/loss", "val/mse_per_frame", "val/psnr", "val/ssim"):
        assert name in logged
    for k in (1, 2, 3):
        assert f"val/mse_per_frame@t{k}" in logged and f"val/psnr@t{k}" in logged
    assert "val/mse_per_frame@t4" not in logged
    task.eval()
    with torch.no_grad():
        context = torch.stack([item["context"] for item in val.items])
        target = torch.stack([item["target"] for item in val.items])
        pred = task.model(context, 3)
    per_frame = (pred - target).square().sum((2, 3, 4))  # (N, T): squared error summed over a frame
    assert logged["val/mse_per_frame"] == pytest.approx(float(per_frame.mean()), rel=1e-4)
    assert logged["val/mse_per_frame@t2"] == pytest.approx(float(per_frame[:, 1].mean()), rel=1e-4)
    assert logged["val/loss"] == pytest.approx(float((pred - target).square().mean()), rel=1e-4)
    test = trainer.test(task, loader(val), verbose=False)[0]
    assert test["test/mse_per_frame"] == pytest.approx(logged["val/mse_per_frame"], rel=1e-6)


def test_small_frames_drop_ssim_from_the_default_scores():
    val = static_sequences(2, size=8)
    logged = L.Trainer(**QUIET_TRAINER).validate(ForecastingTask(TinyForecaster()), loader(val), verbose=False)[0]
    assert "val/mse_per_pixel" in logged and "val/psnr" in logged and "val/ssim" not in logged
    assert "val/bce_per_sequence" not in logged and "val/b_mse" not in logged


def test_default_scores_include_the_loss_own_score():
    torch.manual_seed(0)
    val = static_sequences(3, size=8)

    class Sigmoid(TinyForecaster):
        def forward(self, *args, **kwargs):
            return torch.sigmoid(super().forward(*args, **kwargs))

    task = ForecastingTask(Sigmoid(), loss="bce")
    logged = L.Trainer(**QUIET_TRAINER).validate(task, loader(val), verbose=False)[0]
    # Shi's score sums the per-pixel BCE over a sequence's 2 frames of 64 pixels: 128 x the per-pixel loss.
    assert logged["val/bce_per_sequence"] == pytest.approx(128 * logged["val/loss"], rel=1e-5)
    balanced = ForecastingTask(TinyForecaster(), loss="balanced")
    logged = L.Trainer(**QUIET_TRAINER).validate(balanced, loader(val), verbose=False)[0]
    assert logged["val/b_mse"] + logged["val/b_mae"] == pytest.approx(64 * logged["val/loss"], rel=1e-5)


def test_nowcasting_scores_and_balanced_loss_with_a_mask():
    g = torch.Generator().manual_seed(0)
    items = []
    for _ in range(4):
        frames = torch.rand(4, 1, 8, 8, generator=g)
        mask = torch.ones(1, 1, 8, 8)
        mask[..., :2] = 0.0
        items.append({"context": frames[:2], "target": frames[2:], "mask": mask})
    task = ForecastingTask(
        TinyForecaster(), loss="balanced", metrics=("b_mse", "mse_per_pixel"), rain_thresholds=(0.5, 30.0)
    )
    trainer = L.Trainer(**QUIET_TRAINER)
    logged = trainer.validate(task, loader(ItemList(items)), verbose=False)[0]
    for name in ("val/loss", "val/b_mse", "val/csi@0.5", "val/far@30", "val/hss@0.5", "val/pod@0.5@t2"):
        assert name in logged
    task.eval()
    with torch.no_grad():
        context = torch.stack([item["context"] for item in items])
        target = torch.stack([item["target"] for item in items])
        pred = task.model(context, 2)
    valid = torch.ones_like(target, dtype=torch.bool)
    valid[..., :2] = False
    hit = (pixel_to_rain_rate(pred.clamp(0, 1)) >= 0.5) & (pixel_to_rain_rate(target) >= 0.5) & valid
    miss = (pixel_to_rain_rate(pred.clamp(0, 1)) < 0.5) & (pixel_to_rain_rate(target) >= 0.5) & valid
    false_alarm = (pixel_to_rain_rate(pred.clamp(0, 1)) >= 0.5) & (pixel_to_rain_rate(target) < 0.5) & valid
    a, b, c = (x.sum((0, 2, 3, 4)).double() for x in (hit, false_alarm, miss))
    assert logged["val/csi@0.5"] == pytest.approx(float((a / (a + b + c)).mean()), rel=1e-6)


def test_validation_scores_ignore_masked_pixels_and_weigh_sequences():
    g = torch.Generator().manual_seed(1)
    items = []
    for weight in (0.5, 2.0, 1.0, 3.5, 1.5):
        frames = torch.rand(4, 1, 12, 12, generator=g)
        mask = torch.ones(1, 1, 12, 12)
        mask[..., :3] = 0.0  # no radar in the first three columns
        items.append({"context": frames[:2], "target": frames[2:], "mask": mask, "weight": torch.tensor(weight)})

    class Garbage(TinyForecaster):
        """The same forecaster, with noise where the mask hides the pixels."""

        def forward(self, *args, **kwargs):
            pred = super().forward(*args, **kwargs)
            return torch.cat([torch.rand_like(pred[..., :3]) * 5 - 2, pred[..., 3:]], dim=-1)

    torch.manual_seed(0)
    model = TinyForecaster()
    garbage = Garbage()
    garbage.load_state_dict(model.state_dict())
    logged = {}
    for name, forecaster in (("model", model), ("garbage", garbage)):
        task = ForecastingTask(forecaster, rain_thresholds=(0.5, 2.0))
        logged[name] = L.Trainer(**QUIET_TRAINER).validate(task, loader(ItemList(items)), verbose=False)[0]
    assert "val/ssim" in logged["model"] and "val/csi@0.5" in logged["model"]
    assert logged["garbage"].keys() == logged["model"].keys()
    for key, value in logged["model"].items():  # equal, or both NaN (FAR with no forecast rain)
        assert logged["garbage"][key] == pytest.approx(value, rel=0, abs=0, nan_ok=True), key
    model.eval()
    with torch.no_grad():
        context = torch.stack([item["context"] for item in items])
        target = torch.stack([item["target"] for item in items])
        pred = model(context, 2)
    weight = torch.tensor([item["weight"].item() for item in items])
    per_frame = (pred - target)[..., 3:].square().mean((2, 3, 4))  # (N, T): over the covered pixels
    expected = (weight[:, None] * per_frame).sum(0) / weight.sum()
    assert logged["model"]["val/mse_per_pixel"] == pytest.approx(float(expected.mean()), rel=1e-5)


def test_scheduled_sampling_masks_reach_the_model():
    torch.manual_seed(0)
    model = TinyForecaster()
    task = ForecastingTask(model, sampling="linear", sampling_start=1.0, sampling_end=0.0, sampling_end_step=4)
    _fit(task, 6, static_sequences(8, target=3))
    masks = model.seen_masks
    assert len(masks) == 6
    assert all(m is not None and m.shape == (4, 3) for m in masks)
    assert bool(masks[0].all())  # step 0: probability 1
    assert not any(bool(m.any()) for m in masks[4:])  # from step 4: probability 0
    plain = TinyForecaster()
    _fit(ForecastingTask(plain), 2, static_sequences(8))
    assert plain.seen_masks == [None, None]  # "none": the model is called without teacher forcing
    forced = TinyForecaster()
    _fit(ForecastingTask(forced, sampling="teacher_forcing"), 2, static_sequences(8))
    assert all(bool(m.all()) for m in forced.seen_masks)


def test_predict_step_returns_predictions():
    """The model's own free-running forecast of each context, in eval mode: not the targets, not teacher-forced."""
    torch.manual_seed(0)
    task = ForecastingTask(TinyForecaster(), predict_horizon=5)
    trainer = L.Trainer(**QUIET_TRAINER)
    items = static_sequences(4, target=2)
    batches = trainer.predict(task, loader(items))
    contexts = torch.stack([item["context"] for item in items.items])
    targets = torch.stack([item["target"] for item in items.items])
    task.model.eval()
    with torch.no_grad():
        free_running = task.model(contexts, 2)
        teacher_forced = task.model(contexts, 2, targets=targets, teacher_forcing=torch.ones(2, dtype=torch.bool))
    assert batches[0].shape == (4, 2, 1, 8, 8)
    torch.testing.assert_close(batches[0], free_running)
    assert not torch.allclose(batches[0], targets, atol=1e-3)  # an untrained model's forecast, not the truth
    assert not torch.allclose(batches[0][:, 1], teacher_forced[:, 1], atol=1e-6)  # the truth was not fed back

    contexts = torch.rand(3, 2, 1, 8, 8)
    predicted = trainer.predict(task, DataLoader(contexts, batch_size=3))[0]
    with torch.no_grad():
        torch.testing.assert_close(predicted, task.model.eval()(contexts, 5))  # predict_horizon without targets


def _no_temporary_files(root: Path) -> bool:
    return not [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_checkpoints_are_atomic_loadable_and_resume(tmp_path):
    torch.manual_seed(0)
    train, val = static_sequences(8, seed=0), static_sequences(4, seed=1)
    cosine = OptimizationConfig(lr_schedule="cosine", warmup_steps=2)
    task = ForecastingTask(TinyForecaster(hidden=3), optimization=cosine)
    trainer = make_trainer(
        root_dir=tmp_path, name="run", max_steps=4, enable_progress_bar=False, enable_model_summary=False, seed=0
    )
    assert any(isinstance(p, AtomicCheckpointIO) for p in [trainer.strategy.checkpoint_io])
    trainer.fit(task, loader(train, shuffle=True), loader(val))
    run = tmp_path / "run" / "version_0"
    last = run / "checkpoints" / "last.ckpt"
    assert last.is_file() and _no_temporary_files(tmp_path)
    assert (run / "metrics.csv").is_file() and list(run.glob("events.out.tfevents.*"))
    best = [p for p in (run / "checkpoints").glob("*.ckpt") if p.name != "last.ckpt"]
    assert len(best) == 1 and "val_loss=" in best[0].name
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint["hyper_parameters"]["model_family"] == "tests_tiny_forecaster"
    assert checkpoint["hyper_parameters"]["model_config"] == {"channels": 1, "hidden": 3}
    assert isinstance(checkpoint["lr_schedulers"][0]["lr_lambdas"][0], dict)  # WarmupCosine saved as fields

    rebuilt = ForecastingTask.from_checkpoint(last)
    assert isinstance(rebuilt.model, TinyForecaster) and rebuilt.model.config.hidden == 3
    assert rebuilt.optimization == cosine and checkpoint["hyper_parameters"]["optimization"] == cosine.to_dict()
    context = torch.rand(2, 3, 1, 8, 8)
    task.eval(), rebuilt.eval()
    with torch.no_grad():
        assert torch.equal(task.model(context, 2), rebuilt.model(context, 2))
    assert isinstance(load_task(last), ForecastingTask)
    native = ForecastingTask.load_from_checkpoint(last, model=TinyForecaster(hidden=3), weights_only=True)
    assert torch.equal(native.model.head.weight, rebuilt.model.head.weight)

    resumed_task = ForecastingTask(TinyForecaster(hidden=3), optimization=cosine)
    resumed = make_trainer(
        root_dir=tmp_path, name="run", max_steps=7, enable_progress_bar=False, enable_model_summary=False, seed=0
    )
    resumed.fit(resumed_task, loader(train, shuffle=True), loader(val), ckpt_path=last, weights_only=True)
    assert resumed.global_step == 7
    adam_state = resumed.optimizers[0].state_dict()["state"][0]
    assert int(adam_state["step"]) == 7  # optimizer state restored, not restarted
    assert _no_temporary_files(tmp_path)


@pytest.mark.parametrize(
    ("schedule", "extra"),
    [("onecycle", {}), ("multistep", {"lr_milestones": (1,)}), ("constant", {"warmup_steps": 3})],
)
def test_every_lr_schedule_checkpoints_without_pickled_code(tmp_path, schedule, extra):
    task = ForecastingTask(TinyForecaster(), optimization=OptimizationConfig(lr_schedule=schedule, **extra))
    trainer = L.Trainer(max_steps=3, **{**QUIET_TRAINER, "enable_checkpointing": False})
    trainer.fit(task, loader(static_sequences(8)))
    lrs = trainer.lr_scheduler_configs[0].scheduler.get_last_lr()
    path = tmp_path / "s.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["lr_schedulers"][0]["_last_lr"] == lrs
    if schedule == "multistep":
        assert lrs[0] == pytest.approx(5e-5)  # epoch 1 of 2 batches passed the milestone: 5e-4 x 0.1
    if schedule == "constant":
        assert lrs[0] == pytest.approx(5e-4)  # warm-up over: (step + 1) / 3 reached 1


def test_from_checkpoint_needs_a_model_for_plain_modules(tmp_path):
    class Plain(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = TinyForecaster()

        def forward(self, context: torch.Tensor, horizon: int | None = None) -> torch.Tensor:
            return self.inner(context, horizon)

    task = ForecastingTask(Plain())
    assert task.hparams["model_family"] is None
    trainer = L.Trainer(max_steps=1, **{**QUIET_TRAINER, "enable_checkpointing": False})
    trainer.fit(task, loader(static_sequences(4)))
    path = tmp_path / "plain.ckpt"
    trainer.save_checkpoint(path)
    with pytest.raises(ValueError, match="pass model="):
        ForecastingTask.from_checkpoint(path)
    rebuilt = ForecastingTask.from_checkpoint(path, model=Plain())
    assert torch.equal(rebuilt.model.inner.head.bias, task.model.inner.head.bias)
    with pytest.raises(FileNotFoundError):
        ForecastingTask.from_checkpoint(tmp_path / "missing.ckpt")


def test_atomic_checkpoint_io_keeps_the_old_file_on_failure(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "ckpt" / "a.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(2)}}, path)
    before = path.read_bytes()
    with pytest.raises(Exception, match=r"pickle|lambda|local object"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(2)}, "bad": lambda: None}, path)
    assert path.read_bytes() == before and _no_temporary_files(tmp_path)
    assert torch.equal(io.load_checkpoint(path, weights_only=True)["state_dict"]["w"], torch.ones(2))


def _nan_sequences(n: int, bad: set[int]) -> ItemList:
    data = static_sequences(n)
    for i in bad:
        data.items[i]["target"] = torch.full_like(data.items[i]["target"], float("nan"))
    return data


def test_nonfinite_guard_skips_bad_steps():
    torch.manual_seed(0)
    guard = NonFiniteLossGuard(action="skip")
    task = ForecastingTask(TinyForecaster(), optimization=OptimizationConfig(lr=1e-2))
    # Batch size 4, no shuffle: the second batch of every epoch holds the NaN item.
    trainer = L.Trainer(max_steps=6, enable_checkpointing=False, callbacks=[guard], **QUIET_TRAINER)
    trainer.fit(task, loader(_nan_sequences(8, {5})))
    assert trainer.global_step == 6 and guard.skipped_steps == 3
    assert all(bool(torch.isfinite(p).all()) for p in task.parameters())
    unguarded = ForecastingTask(TinyForecaster(), optimization=OptimizationConfig(lr=1e-2))
    L.Trainer(max_steps=2, enable_checkpointing=False, **QUIET_TRAINER).fit(unguarded, loader(_nan_sequences(8, {5})))
    assert not all(bool(torch.isfinite(p).all()) for p in unguarded.parameters())  # what the guard prevents


def test_nonfinite_guard_stops_and_keeps_good_weights(tmp_path):
    torch.manual_seed(0)
    guard = NonFiniteLossGuard(action="stop")
    task = ForecastingTask(TinyForecaster(), optimization=OptimizationConfig(lr=1e-2))
    trainer = make_trainer(
        root_dir=tmp_path,
        max_steps=20,
        nonfinite="off",
        callbacks=[guard],
        loggers=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        early_stopping_patience=None,
    )
    trainer.fit(task, loader(_nan_sequences(12, {9})), loader(static_sequences(4, seed=1)))
    assert trainer.global_step == 3  # the NaN batch was the third step; the run stopped there
    assert guard.stopped_reason is not None and "non-finite loss at global step 2" in guard.stopped_reason
    last = tmp_path / "checkpoints" / "last.ckpt"
    state = torch.load(last, weights_only=True)["state_dict"]
    assert all(bool(torch.isfinite(v).all()) for v in state.values())
    assert torch.equal(state["model.head.weight"], task.model.head.weight)


def test_prediction_images_reach_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    task = ForecastingTask(TinyForecaster())
    trainer = make_trainer(
        root_dir=tmp_path, name="img", max_steps=2, enable_progress_bar=False, enable_model_summary=False
    )
    assert any(isinstance(c, PredictionImageLogger) for c in trainer.callbacks)
    trainer.fit(task, loader(static_sequences(8)), loader(static_sequences(4)))
    events = EventAccumulator(str(tmp_path / "img" / "version_0"), size_guidance={"images": 0})
    events.Reload()
    assert "val/predictions" in events.Tags()["images"]
    image = events.Images("val/predictions")[-1]
    # 4 sequences x 3 rows of 8-pixel frames with 1-pixel padding; 3 columns (context length).
    assert (image.height, image.width) == (12 * 9 + 1, 3 * 9 + 1)


def test_prediction_grid_layout():
    context = torch.zeros(1, 2, 1, 3, 3)
    target = torch.full((1, 1, 1, 3, 3), 0.5)
    prediction = torch.full((1, 1, 1, 3, 3), 0.25)
    grid = prediction_grid(context, target, prediction, padding=1, pad_value=1.0)
    assert grid.shape == (3, 3 * 4 + 1, 2 * 4 + 1)
    assert torch.equal(grid[:, 1:4, 5:8], torch.zeros(3, 3, 3))  # second context frame
    assert torch.equal(grid[:, 5:8, 1:4], torch.full((3, 3, 3), 0.5))  # truth row
    assert torch.equal(grid[:, 9:12, 1:4], torch.full((3, 3, 3), 0.25))  # prediction row
    assert torch.equal(grid[:, 5:8, 5:8], torch.ones(3, 3, 3))  # no second target frame: padding colour


def test_make_trainer_defaults(monkeypatch):
    pretend_cpu(monkeypatch, "avx2")
    trainer = make_trainer(accelerator="cpu", loggers=False, checkpoints=False, enable_progress_bar=False, max_steps=1)
    assert trainer.precision == "32-true"
    assert trainer.gradient_clip_val == 1.0
    assert any(isinstance(c, NonFiniteLossGuard) for c in trainer.callbacks)
    ddp = make_trainer(accelerator="cpu", devices=2, loggers=False, checkpoints=False, max_steps=1)
    assert type(ddp.strategy).__name__ == "DDPStrategy"


@pytest.mark.parametrize("features", [("avx512_bf16",), ("amx_bf16", "avx512_bf16")])
def test_make_trainer_trains_in_bfloat16_by_default_where_the_cpu_multiplies_it(monkeypatch, caplog, features):
    pretend_cpu(monkeypatch, *features)
    quiet = {"accelerator": "cpu", "loggers": False, "checkpoints": False, "enable_progress_bar": False}
    with caplog.at_level(logging.INFO, logger="convlstm.accel.precision"):
        assert make_trainer(**quiet).precision == "bf16-mixed"
    assert f"precision auto: bf16-mixed, since this CPU multiplies bfloat16 in hardware ({features[0]})" in caplog.text
    assert make_trainer(precision="32-true", **quiet).precision == "32-true"  # the way to float32 anyway


def test_warmup_cosine_factor():
    factor = WarmupCosine(warmup_steps=2, total_steps=6, min_ratio=0.1)
    assert [factor(s) for s in (0, 1)] == pytest.approx([0.5, 1.0])
    assert factor(4) == pytest.approx(0.1 + 0.9 * 0.5)
    assert factor(6) == pytest.approx(0.1) and factor(100) == pytest.approx(0.1)


def test_bad_arguments():
    with pytest.raises(ValueError, match="loss"):
        ForecastingTask(TinyForecaster(), loss="huber")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="optimization must be an OptimizationConfig, got float"):
        ForecastingTask(TinyForecaster(), optimization=1e-3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="model must be"):
        ForecastingTask("not a model")  # type: ignore[arg-type]
    task = ForecastingTask(TinyForecaster())
    with pytest.raises(ValueError, match="'context' and 'target'"):
        task.training_step({"context": torch.zeros(1, 2, 1, 4, 4)}, 0)


def test_an_ensemble_trained_with_the_fair_crps_learns_the_spread_of_the_truth():
    torch.manual_seed(0)
    model = TinyEnsemble(spread=0.05)
    task = ForecastingTask(model, loss="crps_fair", ensemble_members=4, optimization=OptimizationConfig(lr=2e-2))
    _fit(task, 40, noisy_static_sequences(16, noise=0.3), noisy_static_sequences(4, noise=0.3, seed=1))
    assert set(model.seen_members) == {4}  # training and validation asked for 4 members
    assert 0.2 < float(model.spread) < 0.4, float(model.spread)  # from 0.05 towards the truth's 0.3
    logged = L.Trainer(**QUIET_TRAINER).validate(task, loader(noisy_static_sequences(4, noise=0.3)), verbose=False)
    assert np.isfinite(logged[0]["val/loss"]) and "val/mse_per_pixel" in logged[0]  # scores of the members' mean


def _moving_rain_items(n: int, size: int = 16) -> ItemList:
    """Rain rates (mm/h): a Gaussian cell moving one pixel right per frame, 4 context and 2 target frames."""
    y, x = np.mgrid[:size, :size]
    rng = np.random.default_rng(0)
    items = []
    for i in range(n):
        frames = [6 * np.exp(-(((y - 6 - i) / 3) ** 2 + ((x - 4 - t) / 4) ** 2)) for t in range(6)]
        frames = torch.from_numpy(np.stack(frames) + 0.05 * rng.random((6, size, size))).float()[:, None]
        items.append({"context": frames[:4], "target": frames[4:]})
    return ItemList(items)


def test_the_extrapolation_nowcast_ensemble_trains_with_the_fair_crps():
    torch.manual_seed(0)
    model = create_model("extrapolation_nowcast_ensemble", base_channels=4, depth=1)
    task = ForecastingTask(
        model, loss="crps_fair", ensemble_members=3, units="mm/h", optimization=OptimizationConfig(lr=1e-2)
    )
    trainer = _fit(task, 3, _moving_rain_items(4), _moving_rain_items(2))
    assert torch.isfinite(trainer.callback_metrics["val/loss"])
    context = _moving_rain_items(1)[0]["context"][None]
    with torch.no_grad():
        members = model.ensemble(context, 2, members=3, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(members[:, 0], members[:, 1])  # trained: the noise now reaches the forecast


def test_ensemble_arguments_go_together():
    with pytest.raises(ValueError, match="give ensemble_members"):
        ForecastingTask(TinyEnsemble(), loss="crps_fair")
    with pytest.raises(ValueError, match="ensemble_members must be an int >= 2"):
        ForecastingTask(TinyEnsemble(), loss="crps_fair", ensemble_members=1)
    with pytest.raises(ValueError, match="needs an ensemble loss"):
        ForecastingTask(TinyEnsemble(), loss="mse", ensemble_members=4)
    with pytest.raises(ValueError, match="needs a model with ensemble"):
        ForecastingTask(TinyForecaster(), loss="crps_fair", ensemble_members=4)
    with pytest.raises(ValueError, match="sampling must be 'none'"):
        ForecastingTask(TinyEnsemble(), loss="crps_fair", ensemble_members=4, sampling="teacher_forcing")


def test_bf16_mixed_precision_runs_and_scores_in_float32():
    torch.manual_seed(0)
    task = ForecastingTask(TinyForecaster(), loss="balanced", rain_thresholds=(0.5,), metrics=("b_mse", "psnr"))
    trainer = L.Trainer(max_steps=2, precision="bf16-mixed", enable_checkpointing=False, **QUIET_TRAINER)
    trainer.fit(task, loader(static_sequences(8)), loader(static_sequences(4, seed=1)))
    logged = trainer.callback_metrics
    assert all(torch.isfinite(logged[name]) for name in ("val/loss", "val/b_mse", "val/psnr", "train/loss"))
    assert "val/csi@0.5" in logged
