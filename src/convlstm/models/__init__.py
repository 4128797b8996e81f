"""Models: one file per family; importing this package registers all of them."""

from convlstm.models import encoder_forecaster, exceedance, fc_lstm, next_frame, prednet, trajgru_forecaster, unet
from convlstm.models.base import Forecaster, PretrainedModel, from_pretrained
from convlstm.models.encoder_forecaster import EncoderForecaster
from convlstm.models.exceedance import ExceedanceForecaster
from convlstm.models.fc_lstm import FCLSTM
from convlstm.models.next_frame import NextFramePredictor
from convlstm.models.prednet import PredNet
from convlstm.models.registry import create_model, list_models, register_model
from convlstm.models.trajgru_forecaster import TrajGRUForecaster
from convlstm.models.unet import ConvLSTMUNet, ConvLSTMUNetForecaster

__all__ = [
    "FCLSTM",
    "ConvLSTMUNet",
    "ConvLSTMUNetForecaster",
    "EncoderForecaster",
    "ExceedanceForecaster",
    "Forecaster",
    "NextFramePredictor",
    "PredNet",
    "PretrainedModel",
    "TrajGRUForecaster",
    "create_model",
    "encoder_forecaster",
    "exceedance",
    "fc_lstm",
    "from_pretrained",
    "list_models",
    "next_frame",
    "prednet",
    "register_model",
    "trajgru_forecaster",
    "unet",
]
