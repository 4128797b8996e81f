"""convlstm: convolutional recurrent networks (ConvLSTM, ConvGRU) for spatiotemporal image sequences."""

import warnings
from typing import Any

# Importing the baselines registers them beside the models (they sit above models, which cannot import them).
import convlstm.baselines  # noqa: F401
from convlstm.inference import StreamingForecaster
from convlstm.layers import ConvGRU, ConvGRUCell, ConvLSTM, ConvLSTMCell
from convlstm.models import create_model, from_pretrained, list_models

__version__ = "0.1.0"

__all__ = [
    "ConvGRU",
    "ConvGRUCell",
    "ConvLSTM",
    "ConvLSTMCell",
    "StreamingForecaster",
    "__version__",
    "create_model",
    "from_pretrained",
    "list_models",
]


def __getattr__(name: str) -> Any:
    if name == "Forecaster":  # the old name of StreamingForecaster, which clashed with the models' base class
        warnings.warn("convlstm.Forecaster is deprecated; use StreamingForecaster", DeprecationWarning, stacklevel=2)
        return StreamingForecaster
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
