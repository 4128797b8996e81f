"""convlstm: convolutional recurrent networks (ConvLSTM, ConvGRU) for spatiotemporal image sequences."""

# Importing the baselines registers them beside the models (they sit above models, which cannot import them).
import convlstm.baselines  # noqa: F401
from convlstm.inference import StreamingForecaster
from convlstm.layers import ConvGRU, ConvGRUCell, ConvLSTM, ConvLSTMCell
from convlstm.models import create_model, from_pretrained, list_models, list_pretrained
from convlstm.utils.deprecation import deprecated_aliases
from convlstm.utils.version import __version__

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
    "list_pretrained",
]


__getattr__ = deprecated_aliases(__name__, Forecaster=(StreamingForecaster, "StreamingForecaster"))
