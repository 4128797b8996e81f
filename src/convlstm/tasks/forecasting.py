"""The unsupervised mode: a forecaster learns to continue sequences (Moving MNIST, radar echoes, video)."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from convlstm.metrics import ForecastScores
from convlstm.tasks.base import TaskBase
from convlstm.tasks.losses import (
    ENSEMBLE_LOSSES,
    FORECAST_LOSSES,
    HKO7_ZR,
    ForecastLossName,
    RainUnits,
    decoupling_loss,
    differential_divergence,
    forecast_loss,
    fractions_loss,
    rain_rate_of,
)
from convlstm.tasks.optim import OptimizationConfig
from convlstm.tasks.scheduled_sampling import SamplingKind, ScheduledSampling
from convlstm.utils.checks import check_bool, check_choice, check_float, check_int

__all__ = ["ForecastScores", "ForecastingTask"]

logger = logging.getLogger(__name__)


class ForecastingTask(TaskBase):
    """Trains a forecaster ``model(context, horizon, targets=None, teacher_forcing=None)`` on (context, target)
    pairs and scores its free-running predictions per lead time.

    Batches are dicts with "context" (B, T_in, C, H, W) and "target" (B, T_out, C, H, W), optionally "mask"
    (valid pixels, broadcastable to the target, 1/True = valid; the loss and every score leave the others out),
    "weight" (B,) (importance weights of patches drawn in favour of rain: the scores' averages over sequences are
    weighted by them) and "target_rain_rate" (mm/h, the target's shape; otherwise rain rates come from the target
    through ``units``). A batch of contexts of different lengths, padded
    at the end, carries "context_lengths" (B,) (as [`convlstm.data.pad_collate`][convlstm.data.pad_collate] makes it);
    it is passed on as the model's ``context_lengths=`` (models with ``accepts_context_lengths``; others refuse such a
    batch).

    Training feeds the model the true frames where the scheduled-sampling mask says so (the model is called without
    ``targets``/``teacher_forcing`` when ``sampling="none"``, so any ``model(context, horizon)`` works). Validation,
    test and prediction never use teacher forcing.

    Logged: ``train/loss`` (per step), ``train/teacher_forcing`` (the sampling probability); ``val/loss`` and
    ``test/loss`` (the training loss on free-running predictions, averaged over the epoch and the processes: the
    key to select checkpoints and stop early on), then at the end of each evaluation epoch ``<stage>/<score>``
    (mean over lead times) and ``<stage>/<score>@t<k>`` (lead time k from 1) for each score of
    [`ForecastMetrics`][convlstm.metrics.ForecastMetrics] (``mse_per_frame``, ``psnr``, ...) and, with
    ``rain_thresholds``, ``<stage>/csi@<threshold>``, ``pod@``, ``far@``, ``hss@``.

    Trainer arguments that belong with this task: ``gradient_clip_val`` (e.g. 1.0; clipping by norm happens in the
    Trainer, not here), ``precision`` ("bf16-mixed" on GPUs), ``max_steps``/``max_epochs`` (the "cosine" and
    "onecycle" schedules read the run's length from them), ``accumulate_grad_batches``.
    [`make_trainer`][convlstm.tasks.make_trainer] sets all of them.

    Args:
        model: The forecaster (an ``nn.Module``; a [`PretrainedModel`][convlstm.models.PretrainedModel] can be rebuilt
            from the checkpoint).
        loss: ``"mse"``, ``"mae"`` (per pixel), ``"log_mse"`` (MSE of log(1 + x), for frames in mm/h), ``"bce"``
            (Shi et al.'s per-pixel cross-entropy on predicted probabilities, clamped), ``"balanced"`` (HKO-7's
            B-MSE + B-MAE, weights from the true rain rate) or ``"crps_fair"`` (the fair CRPS of ``ensemble_members``
            members, which needs that argument).
        units: What the frames are, for rain rates (balanced loss and scores, thresholds): ``"pixel"`` (radar
            pixels in [0, 1], dBZ = 70 p - 10) or ``"mm/h"``.
        zr_a: Z-R coefficient a (HKO-7: 58.53; Marshall-Palmer: 200).
        zr_b: Z-R exponent b (HKO-7: 1.56; Marshall-Palmer: 1.6).
        balanced_mse_weight: Weight of B-MSE in the balanced loss.
        balanced_mae_weight: Weight of B-MAE in the balanced loss.
        sampling: Scheduled sampling: ``"none"`` (feed predictions back, the default), ``"linear"``,
            ``"teacher_forcing"`` or ``"reverse"`` (see [`ScheduledSampling`][convlstm.tasks.ScheduledSampling]).
            OpenSTL's ConvLSTM and PredRNN recipes are ``sampling="linear", sampling_start=1.0, sampling_end=0.0,
            sampling_end_step=50_000``; its PredRNN-V2 recipe is ``sampling="reverse"`` with the defaults below
            ("reverse" needs a model whose forward takes ``context_teacher_forcing=``, such as PredRNN).
        sampling_start: Probability of feeding the truth at step 0.
        sampling_end: Probability from ``sampling_end_step`` on.
        sampling_end_step: Optimizer step where the linear decay ends.
        reverse_start_step: Reverse scheduled sampling: OpenSTL's r_sampling_step_1.
        reverse_end_step: Reverse scheduled sampling: r_sampling_step_2.
        reverse_decay: Reverse scheduled sampling: r_exp_alpha.
        decouple_beta: Weight of PredRNN-V2's decoupling loss ([`decoupling_loss`][convlstm.tasks.decoupling_loss],
            OpenSTL: 0.1) added to the training loss; needs a model with ``forward_with_increments`` (PredRNNv2).
            0 (default): none. Logged as ``train/decoupling``.
        divergence_alpha: Weight of TAU's differential divergence regularisation
            ([`differential_divergence`][convlstm.tasks.differential_divergence], OpenSTL: 0.1 for TAU) added to the
            training loss. 0 (default): none. Logged as ``train/divergence``.
        fractions_weight: Weight of the fractions loss, 1 - FSS at ``fractions_window`` pixels and
            ``fractions_thresholds`` ([`fractions_loss`][convlstm.tasks.fractions_loss]), added to a single forecast's
            loss in training and validation (``val/loss`` includes it); for rain rates (``units="mm/h"``). 0
            (default): none. Logged as ``train/fractions``.
        fractions_window: Side in pixels of the fractions loss's squares.
        fractions_thresholds: Rain rates (mm/h) of the fractions loss's events.
        fractions_matched: Rank the forecast's events as probability matching would (the fractions loss's
            ``matched``): for models whose eval-mode forecast is probability-matched, so that training judges where
            the rain goes, which is all that matching leaves to the model.
        metrics: Scores to accumulate (names of [`FORECAST_METRICS`][convlstm.metrics.FORECAST_METRICS]); None for the
            default set (without SSIM for frames under 11x11), plus ``bce_per_sequence`` with ``loss="bce"`` and
            ``b_mse``, ``b_mae`` with ``loss="balanced"``.
        ssim_data_range: SSIM's data range (1.0 for data in [0, 1]).
        rain_thresholds: Rain-rate thresholds in mm/h for contingency scores (HKO-7: 0.5, 2, 5, 10, 30); None
            for none.
        log_per_lead_time: Also log every score per lead time.
        predict_horizon: Horizon of ``predict_step`` when the batch has no "target" (default: the model's
            ``default_horizon``).
        optimization: The optimizer, learning rate and schedule
            ([`OptimizationConfig`][convlstm.tasks.OptimizationConfig]): Adam at 5e-4 by default, OpenSTL's ConvLSTM
            value (Adam's usual 1e-3 also works at small batches; lower it with larger models or bf16).
        ensemble_members: Train and validate on an ensemble of this many members (>= 2) drawn by
            ``model.ensemble(context, horizon, members=M)`` (e.g. ``extrapolation_nowcast_ensemble``), scored by
            ``loss="crps_fair"``; the scores then take the members' mean. None (default): one forecast per call.

    Examples:
        >>> model = create_model("encoder_forecaster_shi2015_3layer")
        >>> task = ForecastingTask(model, loss="bce", optimization=OptimizationConfig(lr=1e-3))
        >>> make_trainer(TrainerConfig(max_epochs=50)).fit(task, datamodule=data)
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        loss: ForecastLossName = "mse",
        units: RainUnits = "pixel",
        zr_a: float = HKO7_ZR[0],
        zr_b: float = HKO7_ZR[1],
        balanced_mse_weight: float = 1.0,
        balanced_mae_weight: float = 1.0,
        sampling: SamplingKind = "none",
        sampling_start: float = 1.0,
        sampling_end: float = 0.0,
        sampling_end_step: int = 50_000,
        reverse_start_step: int = 25_000,
        reverse_end_step: int = 50_000,
        reverse_decay: float = 5_000.0,
        decouple_beta: float = 0.0,
        divergence_alpha: float = 0.0,
        fractions_weight: float = 0.0,
        fractions_window: int = 16,
        fractions_thresholds: Sequence[float] = (1.0, 5.0),
        fractions_matched: bool = False,
        metrics: Sequence[str] | None = None,
        ssim_data_range: float = 1.0,
        rain_thresholds: Sequence[float] | None = None,
        log_per_lead_time: bool = True,
        predict_horizon: int | None = None,
        optimization: OptimizationConfig = OptimizationConfig(),
        ensemble_members: int | None = None,
    ) -> None:
        super().__init__(model)
        check_choice("loss", loss, FORECAST_LOSSES)
        check_choice("units", units, ("pixel", "mm/h"))
        if predict_horizon is not None:  # None: the model's default_horizon
            check_int("predict_horizon", predict_horizon)
        _check_ensemble(model, loss, ensemble_members, sampling)
        self.sampling = ScheduledSampling(
            sampling,
            start=sampling_start,
            end=sampling_end,
            end_step=sampling_end_step,
            reverse_start_step=reverse_start_step,
            reverse_end_step=reverse_end_step,
            reverse_decay=reverse_decay,
        )
        _check_predrnn_training(model, sampling, decouple_beta)
        check_float("divergence_alpha", divergence_alpha, 0.0, math.inf)  # a loss term's weight
        _check_fractions(fractions_weight, fractions_window, fractions_thresholds, fractions_matched, units, loss)
        self.save_hyperparameters(ignore=["model", "optimization"])
        self.record_optimization(optimization)
        self.record_model()
        self.zr = (float(zr_a), float(zr_b))
        # The default scores include the paper's own score of the loss: Shi's sequence BCE, HKO-7's B-MSE / B-MAE.
        extra = {"bce": ("bce_per_sequence",), "balanced": ("b_mse", "b_mae")}.get(loss, ())
        self.scores = {
            stage: ForecastScores(
                metrics=metrics, data_range=ssim_data_range, thresholds=rain_thresholds, default_extra=extra
            )
            for stage in ("val", "test")
        }

    def forward(self, context: Tensor, horizon: int | None = None) -> Tensor:
        """Free-running predictions (B, horizon, C, H, W) of the wrapped model."""
        return self.model(context, horizon)

    # --- pieces of a step ------------------------------------------------------------------------------------

    def _unpack(self, batch: Any) -> tuple[Tensor, Tensor]:
        if not isinstance(batch, Mapping) or "context" not in batch or "target" not in batch:
            got = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
            raise ValueError(f"a forecasting batch must be a dict with 'context' and 'target', got {got}")
        context, target = batch["context"], batch["target"]
        if context.ndim < 4 or target.ndim != context.ndim or target.shape[2:] != context.shape[2:]:
            raise ValueError(
                f"context (B, T_in, C, *spatial) and target (B, T_out, C, *spatial) must agree, got "
                f"{tuple(context.shape)} and {tuple(target.shape)}"
            )
        return context, target

    def _context_lengths(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """``{"context_lengths": ...}`` for a padded batch of contexts, else nothing (the plain call)."""
        lengths = batch.get("context_lengths")
        if lengths is None:
            return {}
        if not getattr(self.model, "accepts_context_lengths", False):
            raise ValueError(
                f"the batch has 'context_lengths' (contexts of different lengths), but {type(self.model).__name__} "
                "does not take context_lengths=; use a model with accepts_context_lengths (encoder_forecaster, "
                "next_frame) or contexts of one length"
            )
        return {"context_lengths": lengths}

    def _ensemble(self, context: Tensor, horizon: int, extra: dict[str, Tensor]) -> Tensor:
        """(B, M, horizon, C, H, W): ``ensemble_members`` members of the model."""
        ensemble: Any = self.model.ensemble  # checked callable in __init__
        members: Tensor = ensemble(context, horizon, members=self.hparams["ensemble_members"], **extra)
        return members

    def _true_rain_rate(self, batch: Mapping[str, Any], target: Tensor) -> Tensor:
        given = batch.get("target_rain_rate")
        return given.float() if isinstance(given, Tensor) else rain_rate_of(target, self.hparams["units"], zr=self.zr)

    def _loss(self, batch: Mapping[str, Any], pred: Tensor, target: Tensor) -> Tensor:
        """The loss of a batch; a single forecast's includes the weighted fractions loss."""
        loss = self._base_loss(batch, pred, target)
        weight = self.hparams.get("fractions_weight", 0.0)
        if weight > 0:
            fractions = fractions_loss(
                pred,
                target,
                thresholds=self.hparams["fractions_thresholds"],
                window=self.hparams["fractions_window"],
                mask=batch.get("mask"),
                matched=self.hparams.get("fractions_matched", False),
            )
            if self.training:
                self.log("train/fractions", fractions, batch_size=target.shape[0])
            loss = loss + weight * fractions
        return loss

    def _base_loss(self, batch: Mapping[str, Any], pred: Tensor, target: Tensor) -> Tensor:
        hp = self.hparams
        rain_rate = self._true_rain_rate(batch, target) if hp["loss"] == "balanced" else None
        return forecast_loss(
            hp["loss"],
            pred,
            target,
            mask=batch.get("mask"),
            rain_rate=rain_rate,
            units=hp["units"],
            zr=self.zr,
            balanced_mse_weight=hp["balanced_mse_weight"],
            balanced_mae_weight=hp["balanced_mae_weight"],
        )

    # --- steps -----------------------------------------------------------------------------------------------

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        context, target = self._unpack(batch)
        batch_size, horizon = target.shape[:2]
        step = self.global_step
        mask = self.sampling.mask(step, batch_size, horizon, device=context.device)
        extra: dict[str, Tensor] = self._context_lengths(batch)
        if mask is not None:
            extra.update(targets=target, teacher_forcing=mask)
        context_mask = self.sampling.context_mask(step, batch_size, context.shape[1], device=context.device)
        if context_mask is not None:
            extra["context_teacher_forcing"] = context_mask
        beta = self.hparams.get("decouple_beta", 0.0)
        decoupling = None
        if self.hparams.get("ensemble_members") is not None:
            pred = self._ensemble(context, horizon, extra)
        elif beta > 0:
            with_increments: Any = self.model.forward_with_increments  # checked callable in __init__
            pred, (delta_c, delta_m) = with_increments(context, horizon, **extra)
            decoupling = decoupling_loss(delta_c, delta_m)
        else:
            pred = self.model(context, horizon, **extra)
        loss = self._loss(batch, pred, target)
        if decoupling is not None:
            self.log("train/decoupling", decoupling, batch_size=batch_size)
            loss = loss + beta * decoupling
        alpha = self.hparams.get("divergence_alpha", 0.0)
        if alpha > 0:
            divergence = differential_divergence(pred, target)
            self.log("train/divergence", divergence, batch_size=batch_size)
            loss = loss + alpha * divergence
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        self.log("train/teacher_forcing", self.sampling.probability(step), batch_size=batch_size)
        if context_mask is not None:
            self.log("train/context_teacher_forcing", self.sampling.context_probability(step), batch_size=batch_size)
        return loss

    def _evaluation_step(self, stage: str, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        context, target = self._unpack(batch)
        extra = self._context_lengths(batch)
        if self.hparams.get("ensemble_members") is not None:
            members = self._ensemble(context, target.shape[1], extra)
            loss, pred = self._loss(batch, members, target), members.mean(dim=1)
        else:
            pred = self.model(context, target.shape[1], **extra)
            loss = self._loss(batch, pred, target)
        self.log(f"{stage}/loss", loss, prog_bar=stage == "val", sync_dist=True, batch_size=target.shape[0])
        scores = self.scores[stage]
        raw_mask = batch.get("mask")
        mask = None if raw_mask is None else (raw_mask > 0.5).broadcast_to(target.shape)
        needs_rain = scores.uses_balanced or scores.thresholds is not None
        rain_rate = self._true_rain_rate(batch, target) if needs_rain else None
        rain_pred = None
        if scores.thresholds is not None:
            clipped = pred.float().clamp(0.0, 1.0) if self.hparams["units"] == "pixel" else pred.float()
            rain_pred = rain_rate_of(clipped, self.hparams["units"], zr=self.zr)
        weight = batch.get("weight")
        scores.update(pred.detach(), target, rain_rate=rain_rate, mask=mask, rain_pred=rain_pred, weight=weight)
        return {"loss": loss, "predictions": pred.detach()}

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Tensor]:
        return self._evaluation_step("val", batch)

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Tensor]:
        return self._evaluation_step("test", batch)

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Free-running predictions (B, horizon, C, H, W); horizon from the batch's "target" if it has one."""
        if isinstance(batch, Tensor):
            context, target = batch, None
        elif isinstance(batch, Mapping) and "context" in batch:
            context, target = batch["context"], batch.get("target")
        else:
            raise ValueError(
                f"a prediction batch must be a tensor or a dict with 'context', got {type(batch).__name__}"
            )
        horizon = target.shape[1] if isinstance(target, Tensor) else self.hparams["predict_horizon"]
        extra = self._context_lengths(batch) if isinstance(batch, Mapping) else {}
        return self.model(context, horizon, **extra)

    # --- epoch boundaries ------------------------------------------------------------------------------------

    def on_validation_epoch_start(self) -> None:
        self.scores["val"].reset()

    def on_test_epoch_start(self) -> None:
        self.scores["test"].reset()

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_scores("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch_scores("test")

    def _log_epoch_scores(self, stage: str) -> None:
        scores = self.scores[stage].compute(self.sum_across_processes)
        self.log_scores(stage, scores, per_lead_time=self.hparams["log_per_lead_time"])


def _check_predrnn_training(model: nn.Module, sampling: str, decouple_beta: float) -> None:
    """Reverse scheduled sampling needs ``context_teacher_forcing=``; the decoupling loss needs the increments."""
    if sampling == "reverse" and not getattr(model, "accepts_context_teacher_forcing", False):
        raise ValueError(
            f"sampling='reverse' replaces context frames by predictions: it needs a model whose forward takes "
            f"context_teacher_forcing= (PredRNN, PredRNNv2), got {type(model).__name__}"
        )
    check_float("decouple_beta", decouple_beta, 0.0, math.inf)
    if decouple_beta > 0 and not callable(getattr(model, "forward_with_increments", None)):
        raise ValueError(
            f"decouple_beta={decouple_beta} weighs PredRNN-V2's decoupling loss: it needs a model with "
            f"forward_with_increments (PredRNNv2), got {type(model).__name__}"
        )


def _check_fractions(
    weight: float, window: int, thresholds: Sequence[float], matched: bool, units: str, loss: str
) -> None:
    """The fractions loss scores one forecast of rain rates in mm/h."""
    check_float("fractions_weight", weight, 0.0, math.inf)
    check_int("fractions_window", window)
    check_bool("fractions_matched", matched)
    if (
        isinstance(thresholds, str)
        or not isinstance(thresholds, Sequence)
        or not thresholds
        or any(not isinstance(t, (int, float)) or not 0 < t < math.inf for t in thresholds)
    ):
        raise ValueError(f"fractions_thresholds must be a non-empty list of rain rates in mm/h, got {thresholds!r}")
    if weight > 0 and units != "mm/h":
        raise ValueError(f"fractions_weight={weight} needs frames of rain rates: units='mm/h', got units={units!r}")
    if weight > 0 and loss in ENSEMBLE_LOSSES:
        raise ValueError(f"fractions_weight={weight} scores a single forecast; loss={loss!r} scores an ensemble")


def _check_ensemble(model: nn.Module, loss: str, members: int | None, sampling: str) -> None:
    """An ensemble loss goes with ``ensemble_members`` >= 2, a model with ``ensemble`` and no teacher forcing."""
    if loss in ENSEMBLE_LOSSES and members is None:
        raise ValueError(f"loss={loss!r} scores an ensemble: give ensemble_members (>= 2)")
    if members is None:
        return
    check_int("ensemble_members", members, minimum=2)
    if loss not in ENSEMBLE_LOSSES:
        raise ValueError(f"ensemble_members={members} needs an ensemble loss {ENSEMBLE_LOSSES}, got loss={loss!r}")
    if not callable(getattr(model, "ensemble", None)):
        raise ValueError(
            f"ensemble_members={members} needs a model with ensemble(context, horizon, members=M), e.g. "
            f"extrapolation_nowcast_ensemble; {type(model).__name__} has none"
        )
    if sampling != "none":
        raise ValueError(f"ensemble_members feeds nothing back: sampling must be 'none', got {sampling!r}")
