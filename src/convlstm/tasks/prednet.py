"""PredNet training (Lotter, Kreiman & Cox 2016): minimise the weighted prediction errors of the layers, or fine-tune
multi-step extrapolation.

The model follows this protocol (that of `convlstm.models.prednet`):

- ``model.run(frames, output_mode="error")`` -> ((B, T, L), state): the mean of each layer's error units E_l at
  each step;
- ``model.run(frames, output_mode="prediction")`` -> ((B, T, C, H, W), state): at step t the prediction of frame
  t, made before seeing it (step 0 predicts from the empty state);
- ``model.run(frames, output_mode="prediction", extrap_start_time=k)``: from step k on, the model's previous
  prediction replaces the input frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from convlstm.metrics import ForecastScores
from convlstm.models.prednet import parse_layer_loss_weights, time_loss_weights
from convlstm.tasks.base import TaskBase, frames_of
from convlstm.tasks.losses import extrapolation_loss, prednet_error_loss
from convlstm.tasks.optim import OptimizationConfig
from convlstm.utils.checks import check_int

__all__ = ["PredNetTask"]


class PredNetTask(TaskBase):
    """Trains a PredNet on whole sequences.

    Batches are (B, T, C, H, W) tensors or dicts whose "context" and "target" (if any) are joined along time; the
    whole sequence is the input (PredNet predicts every frame from the ones before it).

    Two modes:

    - ``extrap_start_time=None`` (training from scratch): loss = sum over t and l of
      ``time_weight[t] * layer_weight[l] * error[b, t, l]``, averaged over sequences, with the errors of
      ``output_mode="error"``;
    - ``extrap_start_time=k`` (fine-tuning, Lotter et al. use nt = 15 and k = 10): loss = 0.5 x mean absolute error
      of the predictions of frames k .. T-1, made while feeding predictions back from step k on.

    Logged: ``train/loss``; ``val/loss`` / ``test/loss``; at the end of each evaluation epoch the scores of
    [`ForecastMetrics`][convlstm.metrics.ForecastMetrics] on the predicted frames (t >= 1, or t >= k when extrapolating)
    as ``<stage>/<score>`` and ``<stage>/<score>@t<k>``, and ``<stage>/persistence_mse_per_pixel``, the score of
    copying the last seen frame (Lotter et al.'s baseline).

    Args:
        model: A PredNet following the protocol of this module.
        layer_loss_weights: ``"L_0"`` (1, 0, 0, 0), ``"L_all"`` (1, 0.1, 0.1, 0.1) or one weight per layer;
            None (the default): the model's own ``layer_loss_weights`` (PredNet's config).
        time_loss_weights: One weight per step; None gives 0 at t = 0 and 1 / (T - 1) after.
        extrap_start_time: Step from which predictions are fed back (fine-tuning mode); None to train on errors.
        metrics: Scores for evaluation (None: the default set, without SSIM for frames under 11x11).
        log_per_lead_time: Also log scores per predicted frame.
        optimization: The optimizer, learning rate and schedule
            ([`OptimizationConfig`][convlstm.tasks.OptimizationConfig]). Lotter et al.: Adam at 1e-3 (the default),
            then 1e-4 after epoch 75 (``OptimizationConfig(lr=1e-3, lr_schedule="multistep", lr_milestones=(75,))``).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        layer_loss_weights: Sequence[float] | Literal["L_0", "L_all"] | None = None,
        time_loss_weights: Sequence[float] | None = None,
        extrap_start_time: int | None = None,
        metrics: Sequence[str] | None = None,
        log_per_lead_time: bool = True,
        optimization: OptimizationConfig = OptimizationConfig(lr=1e-3),
    ) -> None:
        super().__init__(model)
        if layer_loss_weights is not None:
            parse_layer_loss_weights(layer_loss_weights, getattr(model, "num_layers", len(layer_loss_weights)))
        if extrap_start_time is not None:  # None: train on the errors
            check_int("extrap_start_time", extrap_start_time)
        self.save_hyperparameters(ignore=["model", "optimization"])
        self.record_optimization(optimization)
        self.record_model()
        self.scores = {stage: ForecastScores(metrics=metrics) for stage in ("val", "test")}
        self.persistence = {stage: ForecastScores(metrics=("mse_per_pixel",)) for stage in ("val", "test")}

    def forward(self, frames: Tensor) -> Tensor:
        """Predictions (B, T, C, H, W) of every frame (feeding predictions back from ``extrap_start_time`` on)."""
        start = self.hparams["extrap_start_time"]
        if start is None:
            return self._run(frames, "prediction")
        if start >= frames.shape[1]:
            raise ValueError(
                f"extrap_start_time={start} needs sequences longer than that, got {frames.shape[1]} frames"
            )
        return self._run(frames, "prediction", extrap_start_time=start)

    def _run(self, frames: Tensor, output_mode: str, extrap_start_time: int | None = None) -> Tensor:
        run: Any = self.model.run
        output, _ = run(frames, output_mode=output_mode, extrap_start_time=extrap_start_time)
        return output

    def _error_loss(self, frames: Tensor) -> Tensor:
        errors = self._run(frames, "error")
        if not isinstance(errors, Tensor) or errors.ndim != 3 or errors.shape[:2] != frames.shape[:2]:
            shape = tuple(errors.shape) if isinstance(errors, Tensor) else type(errors).__name__
            raise ValueError(
                f"output_mode='error' must give (B, T, L) = ({frames.shape[0]}, {frames.shape[1]}, L), got {shape}"
            )
        given_layers = self.hparams["layer_loss_weights"]
        if given_layers is None:  # the model's own (PredNet's config), else the paper's "L_0"
            given_layers = getattr(self.model, "layer_weights", "L_0")
        layer_weights = torch.tensor(parse_layer_loss_weights(given_layers, errors.shape[2]))
        given = self.hparams["time_loss_weights"]
        if given is None:
            time_weights = time_loss_weights(frames.shape[1])
        elif len(given) != frames.shape[1]:
            raise ValueError(f"time_loss_weights has {len(given)} values for sequences of {frames.shape[1]} frames")
        else:
            time_weights = errors.new_tensor([float(w) for w in given])
        return prednet_error_loss(errors, layer_weights, time_weights)

    def _loss(self, frames: Tensor) -> tuple[Tensor, Tensor | None]:
        """The loss, and the predictions when the loss needed them (extrapolation mode)."""
        start = self.hparams["extrap_start_time"]
        if start is None:
            return self._error_loss(frames), None
        predictions = self(frames)
        return extrapolation_loss(predictions, frames, start), predictions

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        frames = frames_of(batch)
        loss, _ = self._loss(frames)
        self.log("train/loss", loss, prog_bar=True, batch_size=frames.shape[0])
        return loss

    def _evaluation_step(self, stage: str, batch: Any) -> dict[str, Tensor]:
        frames = frames_of(batch)
        loss, predictions = self._loss(frames)
        self.log(f"{stage}/loss", loss, prog_bar=stage == "val", sync_dist=True, batch_size=frames.shape[0])
        if predictions is None:
            predictions = self(frames)
        start = self.hparams["extrap_start_time"] or 1
        truth = frames[:, start:]
        self.scores[stage].update(predictions[:, start:].detach(), truth)
        if self.hparams["extrap_start_time"] is None:
            last_seen = frames[:, start - 1 : -1]  # next-frame mode: the frame before each target
        else:
            last_seen = frames[:, start - 1 : start].expand_as(truth)  # extrapolation: the last frame fed in
        self.persistence[stage].update(last_seen, truth)
        return {"loss": loss, "predictions": predictions.detach()}

    def validation_step(self, batch: Any, batch_idx: int) -> dict[str, Tensor]:
        return self._evaluation_step("val", batch)

    def test_step(self, batch: Any, batch_idx: int) -> dict[str, Tensor]:
        return self._evaluation_step("test", batch)

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Predictions (B, T, C, H, W) of every frame of the sequence."""
        return self(frames_of(batch))

    def on_validation_epoch_start(self) -> None:
        self.scores["val"].reset()
        self.persistence["val"].reset()

    def on_test_epoch_start(self) -> None:
        self.scores["test"].reset()
        self.persistence["test"].reset()

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_scores("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch_scores("test")

    def _log_epoch_scores(self, stage: str) -> None:
        per_lead_time = self.hparams["log_per_lead_time"]
        self.log_scores(stage, self.scores[stage].compute(self.sum_across_processes), per_lead_time=per_lead_time)
        persistence = self.persistence[stage].compute(self.sum_across_processes)
        if persistence:
            self.log(f"{stage}/persistence_mse_per_pixel", float(persistence["mse_per_pixel"]), sync_dist=False)
