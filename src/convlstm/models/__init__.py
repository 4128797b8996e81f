"""Models: one file per family; importing this package registers all of them."""

from convlstm.models import encoder_forecaster, fc_lstm, next_frame, prednet, unet
from convlstm.models.base import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    ForecastingModel,
    PretrainedModel,
    from_pretrained,
    model_from_config,
)
from convlstm.models.encoder_forecaster import EncoderForecaster
from convlstm.models.fc_lstm import FCLSTM
from convlstm.models.next_frame import NextFramePredictor
from convlstm.models.prednet import PredNet
from convlstm.models.registry import (
    create_model,
    family_class,
    list_families,
    list_models,
    model_family,
    register_model,
)
from convlstm.models.unet import ConvLSTMUNet, ConvLSTMUNetForecaster
from convlstm.utils.deprecation import deprecated_aliases

__all__ = [
    "CONFIG_FILE",
    "FCLSTM",
    "WEIGHTS_FILE",
    "ConvLSTMUNet",
    "ConvLSTMUNetForecaster",
    "EncoderForecaster",
    "ForecastingModel",
    "NextFramePredictor",
    "PredNet",
    "PretrainedModel",
    "create_model",
    "encoder_forecaster",
    "family_class",
    "fc_lstm",
    "from_pretrained",
    "list_families",
    "list_models",
    "model_family",
    "model_from_config",
    "next_frame",
    "prednet",
    "register_model",
    "unet",
]


__getattr__ = deprecated_aliases(__name__, Forecaster=(ForecastingModel, "ForecastingModel"))
