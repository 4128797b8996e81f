"""Inference outside training: streaming forecasts frame by frame, and export to ONNX / torch.export."""

from convlstm.inference.export import (
    ExportedForecaster,
    ExportError,
    FixedHorizonForecaster,
    check_export,
    export_onnx,
    export_torch,
    load_exported,
)
from convlstm.inference.streaming import Forecaster, stream_for

__all__ = [
    "ExportError",
    "ExportedForecaster",
    "FixedHorizonForecaster",
    "Forecaster",
    "check_export",
    "export_onnx",
    "export_torch",
    "load_exported",
    "stream_for",
]
