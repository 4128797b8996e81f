"""convlstm: convolutional recurrent networks (ConvLSTM, ConvGRU) for spatiotemporal image sequences."""

from convlstm.inference import Forecaster
from convlstm.layers import ConvGRU, ConvGRUCell, ConvLSTM, ConvLSTMCell
from convlstm.models import create_model, from_pretrained, list_models

__version__ = "0.1.0"

__all__ = [
    "ConvGRU",
    "ConvGRUCell",
    "ConvLSTM",
    "ConvLSTMCell",
    "Forecaster",
    "__version__",
    "create_model",
    "from_pretrained",
    "list_models",
]
