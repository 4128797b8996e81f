"""Training systems (LightningModules) and the training engine: forecasting, segmentation, PredNet and anomaly
scoring, their losses, scheduled sampling, callbacks and ``make_trainer``; the systems take an
``OptimizationConfig`` whole, the trainer a ``TrainerConfig``."""

from convlstm.metrics import ForecastScores  # kept here too: its home was tasks
from convlstm.tasks.anomaly import AnomalyTask, next_frame_psnr, regularity_from_psnr, score_sequences
from convlstm.tasks.base import TaskBase, load_task, model_identity, read_checkpoint
from convlstm.tasks.callbacks import AtomicCheckpointIO, NonFiniteLossGuard, PredictionImageLogger, prediction_grid
from convlstm.tasks.compiled_gates import CompiledGates
from convlstm.tasks.datamodules import SequenceDataModule
from convlstm.tasks.forecasting import ForecastingTask
from convlstm.tasks.losses import (
    balanced_loss,
    bce_loss,
    crps_fair_loss,
    decoupling_loss,
    differential_divergence,
    extrapolation_loss,
    forecast_loss,
    fractions_loss,
    mae_loss,
    mse_loss,
    prednet_error_loss,
    segmentation_loss,
    soft_dice_loss,
)
from convlstm.tasks.optim import OptimizationConfig
from convlstm.tasks.prednet import PredNetTask
from convlstm.tasks.scheduled_sampling import ScheduledSampling
from convlstm.tasks.segmentation import SegmentationTask
from convlstm.tasks.tbptt import TBPTTForecastingTask, tbptt_one_step_loss
from convlstm.tasks.trainer import TrainerConfig, make_trainer

__all__ = [
    "AnomalyTask",
    "AtomicCheckpointIO",
    "CompiledGates",
    "ForecastScores",
    "ForecastingTask",
    "NonFiniteLossGuard",
    "OptimizationConfig",
    "PredNetTask",
    "PredictionImageLogger",
    "ScheduledSampling",
    "SegmentationTask",
    "SequenceDataModule",
    "TBPTTForecastingTask",
    "TaskBase",
    "TrainerConfig",
    "balanced_loss",
    "bce_loss",
    "crps_fair_loss",
    "decoupling_loss",
    "differential_divergence",
    "extrapolation_loss",
    "forecast_loss",
    "fractions_loss",
    "load_task",
    "mae_loss",
    "make_trainer",
    "model_identity",
    "mse_loss",
    "next_frame_psnr",
    "prediction_grid",
    "prednet_error_loss",
    "read_checkpoint",
    "regularity_from_psnr",
    "score_sequences",
    "segmentation_loss",
    "soft_dice_loss",
    "tbptt_one_step_loss",
]
