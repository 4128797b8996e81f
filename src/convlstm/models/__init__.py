"""Models: one file per family; importing this package registers all of them."""

from convlstm.models.base import Forecaster, PretrainedModel, from_pretrained
from convlstm.models.registry import create_model, list_models, register_model

__all__ = ["Forecaster", "PretrainedModel", "create_model", "from_pretrained", "list_models", "register_model"]
