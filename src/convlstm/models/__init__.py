"""Models: one file per family; importing this package registers all of them."""

from convlstm.models import (
    e3dlstm,
    encoder_forecaster,
    exceedance,
    extrapolation_nowcast,
    fc_lstm,
    mim,
    next_frame,
    periodic_anchor,
    prednet,
    predrnn,
    predrnnpp,
    simvp,
    trajgru_forecaster,
    unet,
)
from convlstm.models.base import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    ForecastingModel,
    PretrainedModel,
    model_from_config,
)
from convlstm.models.e3dlstm import E3DLSTM
from convlstm.models.encoder_forecaster import EncoderForecaster
from convlstm.models.exceedance import ExceedanceForecaster
from convlstm.models.extrapolation_nowcast import ExtrapolationNowcast
from convlstm.models.fc_lstm import FCLSTM
from convlstm.models.mim import MIM
from convlstm.models.next_frame import NextFramePredictor
from convlstm.models.periodic_anchor import PeriodicAnchor
from convlstm.models.prednet import PredNet
from convlstm.models.predrnn import PredRNN, PredRNNv2
from convlstm.models.predrnnpp import PredRNNpp
from convlstm.models.pretrained import (
    DataSource,
    ModelCard,
    from_pretrained,
    list_pretrained,
    read_model_card,
)
from convlstm.models.registry import (
    ModelSummary,
    create_model,
    family_class,
    list_families,
    list_models,
    model_builder,
    model_family,
    model_summaries,
    register_model,
)
from convlstm.models.simvp import SimVP
from convlstm.models.trajgru_forecaster import TrajGRUForecaster
from convlstm.models.unet import ConvLSTMUNet, ConvLSTMUNetForecaster
from convlstm.utils.deprecation import deprecated_aliases

__all__ = [
    "CONFIG_FILE",
    "E3DLSTM",
    "FCLSTM",
    "MIM",
    "WEIGHTS_FILE",
    "ConvLSTMUNet",
    "ConvLSTMUNetForecaster",
    "DataSource",
    "EncoderForecaster",
    "ExceedanceForecaster",
    "ExtrapolationNowcast",
    "ForecastingModel",
    "ModelCard",
    "ModelSummary",
    "NextFramePredictor",
    "PeriodicAnchor",
    "PredNet",
    "PredRNN",
    "PredRNNpp",
    "PredRNNv2",
    "PretrainedModel",
    "SimVP",
    "TrajGRUForecaster",
    "create_model",
    "e3dlstm",
    "encoder_forecaster",
    "exceedance",
    "extrapolation_nowcast",
    "family_class",
    "fc_lstm",
    "from_pretrained",
    "list_families",
    "list_models",
    "list_pretrained",
    "mim",
    "model_builder",
    "model_family",
    "model_from_config",
    "model_summaries",
    "next_frame",
    "periodic_anchor",
    "prednet",
    "predrnn",
    "predrnnpp",
    "read_model_card",
    "register_model",
    "simvp",
    "trajgru_forecaster",
    "unet",
]


__getattr__ = deprecated_aliases(__name__, Forecaster=(ForecastingModel, "ForecastingModel"))
