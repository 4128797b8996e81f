"""Scores for forecasts, nowcasts, segmentations and anomaly detection; every forecast score per lead time.

Weather fields get WeatherBench's latitude-weighted scores (`convlstm.metrics.weather`), reference forecasts
that read the archive (`convlstm.metrics.reference_forecasts`) and verification at stations
(`convlstm.metrics.stations`).

Predictions and targets are (B, T, C, *spatial), T being the lead time. Names say their reduction:
``mse_per_pixel`` averages a frame's pixels, ``mse_per_frame`` sums them (OpenSTL's "MSE"), ``csi@0.5`` is the
critical success index at the 0.5 threshold; accumulators return ``"<name>"`` (averaged) and
``"<name>_by_lead_time"`` (one value per lead time).

Every forecast score takes ``mask=`` (bool, True where a pixel counts: pixels without radar coverage count
nowhere) and ``weight=`` (one importance weight per sequence: averages over sequences and counts are weighted);
`convlstm.metrics.forecast` and `convlstm.metrics.field_scores` say how each uses them.
"""

from convlstm.metrics.anomaly import anomaly_aurocs, cumulative_regularity, frame_auroc, regularity_score
from convlstm.metrics.crps import crps_ensemble
from convlstm.metrics.field_scores import (
    EnsembleScores,
    FractionsSkillScore,
    ProbabilityScores,
    exceedance_from_deterministic,
    exceedance_from_ensemble,
)
from convlstm.metrics.forecast import (
    bce_per_sequence,
    correlation,
    mae_per_frame,
    mae_per_pixel,
    mse_per_frame,
    mse_per_pixel,
    psnr,
    ssim,
)
from convlstm.metrics.forecast_metrics import DEFAULT_FORECAST_METRICS, FORECAST_METRICS, ForecastMetrics
from convlstm.metrics.forecast_scores import ForecastScores
from convlstm.metrics.nowcasting import (
    HKO_THRESHOLDS,
    ContingencyTable,
    balanced_mae,
    balanced_mse,
    balanced_weights,
    pixel_to_rain_rate,
    rain_rate_to_pixel,
)
from convlstm.metrics.reference_forecasts import HourlyClimatology, observed_earlier
from convlstm.metrics.segmentation import ConfusionMatrix, dice_from_confusion, iou_from_confusion
from convlstm.metrics.stations import (
    StationScores,
    interpolate_to_points,
    read_metar,
    read_station_csv,
    verify_at_stations,
)
from convlstm.metrics.weather import WEATHER_SCORES, WeatherScores, latitude_weights

__all__ = [
    "DEFAULT_FORECAST_METRICS",
    "FORECAST_METRICS",
    "HKO_THRESHOLDS",
    "WEATHER_SCORES",
    "ConfusionMatrix",
    "ContingencyTable",
    "EnsembleScores",
    "ForecastMetrics",
    "ForecastScores",
    "FractionsSkillScore",
    "HourlyClimatology",
    "ProbabilityScores",
    "StationScores",
    "WeatherScores",
    "anomaly_aurocs",
    "balanced_mae",
    "balanced_mse",
    "balanced_weights",
    "bce_per_sequence",
    "correlation",
    "crps_ensemble",
    "cumulative_regularity",
    "dice_from_confusion",
    "exceedance_from_deterministic",
    "exceedance_from_ensemble",
    "frame_auroc",
    "interpolate_to_points",
    "iou_from_confusion",
    "latitude_weights",
    "mae_per_frame",
    "mae_per_pixel",
    "mse_per_frame",
    "mse_per_pixel",
    "observed_earlier",
    "pixel_to_rain_rate",
    "psnr",
    "rain_rate_to_pixel",
    "read_metar",
    "read_station_csv",
    "regularity_score",
    "ssim",
    "verify_at_stations",
]
