"""Inference outside training: streaming forecasts frame by frame, and export to ONNX / torch.export."""

import warnings
from typing import Any

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


def __getattr__(name: str) -> Any:
    if name == "Forecaster":  # the old name of StreamingForecaster, which clashed with the models' base class
        warnings.warn("convlstm.Forecaster is deprecated; use StreamingForecaster", DeprecationWarning, stacklevel=2)
        return StreamingForecaster
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
