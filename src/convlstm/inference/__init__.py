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
from convlstm.inference.streaming import StreamingForecaster, stream_for
from convlstm.utils.deprecation import deprecated_aliases

__all__ = [
    "ExportError",
    "ExportedForecaster",
    "FixedHorizonForecaster",
    "StreamingForecaster",
    "check_export",
    "export_onnx",
    "export_torch",
    "load_exported",
    "stream_for",
]


__getattr__ = deprecated_aliases(__name__, Forecaster=(StreamingForecaster, "StreamingForecaster"))
