"""What every model shares: a config dataclass that mirrors the constructor, safe saving and loading, and the
forecaster call ``model(context, horizon, targets=None, teacher_forcing=None)``."""

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import Tensor, nn

from convlstm.models.registry import create_model, family_class, register_family
from convlstm.utils.atomic import atomic_path, atomic_write_text
from convlstm.utils.checks import check_int
from convlstm.utils.deprecation import deprecated_aliases
from convlstm.utils.tensor_checks import check_like_parameters

CONFIG_FILE = "config.json"
"""The file of a saved model's directory that holds its family and config (JSON)."""
WEIGHTS_FILE = "model.safetensors"
"""The file of a saved model's directory that holds its weights (safetensors)."""


def config_from_arguments(config_class: type[Any], arguments: dict[str, Any]) -> Any:
    """Builds ``config_class`` from a constructor's ``locals()``: the fields are exactly its keyword arguments."""
    return config_class(**{f.name: arguments[f.name] for f in dataclasses.fields(config_class)})


class PretrainedModel(nn.Module):
    """A model whose constructor arguments are its config, saved as JSON beside safetensors weights (no pickle).

    Subclasses set ``family`` (a unique name) and ``config_class`` (a dataclass whose fields are the constructor's
    keyword arguments), and store ``self.config = config_from_arguments(self.config_class, locals())``.
    """

    family: ClassVar[str]
    config_class: ClassVar[type[Any]]
    config: Any

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        family = cls.__dict__.get("family")
        if family is not None:
            register_family(family, cls)

    @classmethod
    def from_config(cls, config: Any) -> "PretrainedModel":
        """A freshly initialised model built from an instance of ``config_class``."""
        return cls(**dataclasses.asdict(config))

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Writes ``config.json`` and ``model.safetensors`` into ``directory``, each atomically."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / WEIGHTS_FILE) as tmp:
            save_model(self, str(tmp))
        config = {"family": self.family, "config": dataclasses.asdict(self.config)}
        atomic_write_text(directory / CONFIG_FILE, json.dumps(config, indent=2, sort_keys=True) + "\n")
        return directory


def _has_default(field: "dataclasses.Field[Any]") -> bool:
    return field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING


def model_from_config(family: str, config: dict[str, Any]) -> "PretrainedModel":
    """A freshly initialised model of a registered ``family`` from its saved config (``config.json``'s ``config``,
    or a checkpoint's ``model_config``). The one way a saved model is rebuilt, by `from_pretrained` and by
    checkpoint loading alike.

    A config saved before a field was added lacks it; the field's default keeps the old behaviour (a new field must
    default to it), so only unknown keys and missing fields without a default are refused.

    Raises:
        ValueError: unknown family, unknown keys, missing required fields, or values the constructor refuses.
    """
    return _build_from_config(family, config)[0]


def _build_from_config(family: str, arguments: dict[str, Any]) -> tuple["PretrainedModel", list[str]]:
    model_class = family_class(family)
    if not issubclass(model_class, PretrainedModel):
        raise ValueError(f"model family {family!r} is not a PretrainedModel")
    fields = dataclasses.fields(model_class.config_class)
    unknown = sorted(set(arguments) - {f.name for f in fields})
    absent = [f for f in fields if f.name not in arguments]
    lacking = sorted(f.name for f in absent if not _has_default(f))
    if unknown or lacking:
        raise ValueError(f"config of {family} has unknown keys {unknown} and lacks {lacking}")
    try:
        model = model_class.from_config(model_class.config_class(**arguments))
    except (TypeError, ValueError) as err:  # a tampered value the constructor refuses
        raise ValueError(f"its config does not build a {family}: {err}") from None
    return model, sorted(f.name for f in absent)


def from_pretrained(directory: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> PretrainedModel:
    """Rebuilds a model saved with [`PretrainedModel.save_pretrained`][convlstm.models.PretrainedModel.save_pretrained],
    weights included."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: expected a directory written by save_pretrained")
    try:
        saved = json.loads(config_path.read_text())
        family, arguments = saved["family"], saved["config"]
    except (ValueError, KeyError, TypeError) as err:  # ValueError: bad JSON or bytes that are not UTF-8
        raise ValueError(f"{config_path} is not a saved model config ({err})") from None
    if not isinstance(family, str) or not isinstance(arguments, dict):
        raise ValueError(f"{config_path}: expected a family name and a config mapping, got {family!r}, {arguments!r}")
    try:
        model, defaulted = _build_from_config(family, arguments)
    except ValueError as err:
        raise ValueError(f"{config_path}: {err}") from None
    # If the weights then do not fit, the missing keys are the likelier culprit: name them and the config.
    blame = f" ({config_path} lacks {defaulted}, which took their defaults)" if defaulted else ""
    try:
        missing, unexpected = load_model(model, str(weights_path), strict=False, device=str(device))
    except (SafetensorError, OSError, RuntimeError) as err:
        raise ValueError(f"{weights_path} could not be read as safetensors weights of {family}{blame}: {err}") from None
    if missing or unexpected:
        raise ValueError(
            f"{weights_path} does not fit {family}{blame}: missing {sorted(missing)}, unexpected {sorted(unexpected)}"
        )
    return model.to(device)


class ForecastingModel(PretrainedModel):
    """A model that continues a sequence: ``model(context, horizon, targets=None, teacher_forcing=None)``.

    Args of forward:
        context: (B, T_in, C, H, W) observed frames.
        horizon: number of frames to predict (default: the model's ``default_horizon``).
        targets: (B, horizon, C, H, W) true future frames, needed only with teacher forcing.
        teacher_forcing: bool mask (horizon,) or (B, horizon): where True, step k + 1 is fed the true frame k
            instead of the prediction k (scheduled sampling draws this mask; models never compute a loss).

    forward returns the predictions (B, horizon, C, H, W).

    Models with [`accepts_context_lengths`][convlstm.models.ForecastingModel.accepts_context_lengths] also take
    ``context_lengths`` (B,): a padded batch of contexts of different lengths (valid frames first, padding after, as
    [`convlstm.data.pad_collate`][convlstm.data.pad_collate] makes them), each forecast starting after its own last
    valid frame.
    """

    default_horizon: int = 1
    #: Whether forward takes ``context_lengths=`` (contexts of different lengths in one padded batch).
    accepts_context_lengths: ClassVar[bool] = False

    def check_forecast_arguments(
        self,
        context: Tensor,
        horizon: int | None,
        targets: Tensor | None,
        teacher_forcing: Tensor | None,
        *,
        channels: int,
    ) -> tuple[int, Tensor | None]:
        """Validates forward's arguments; returns the horizon and the teacher-forcing mask as (B, horizon) bool."""
        if not isinstance(context, Tensor) or context.ndim != 5:
            shape = tuple(context.shape) if isinstance(context, Tensor) else type(context).__name__
            raise ValueError(f"context must have shape (B, T_in, C={channels}, H, W), got {shape}")
        if context.shape[2] != channels:
            raise ValueError(f"context must have {channels} channels in dim 2, got shape {tuple(context.shape)}")
        if context.shape[1] < 1:
            raise ValueError(f"context must have at least one frame, got shape {tuple(context.shape)}")
        check_tensor_type(self, context, "context")
        horizon = self.default_horizon if horizon is None else horizon
        check_int("horizon", horizon, 1)
        if teacher_forcing is None:
            return horizon, None
        batch = context.shape[0]
        expected = (batch, horizon, *context.shape[2:])
        if targets is None or tuple(targets.shape) != expected:
            got = None if targets is None else tuple(targets.shape)
            raise ValueError(f"teacher_forcing needs targets of shape {expected}, got {got}")
        mask = torch.as_tensor(teacher_forcing, dtype=torch.bool, device=context.device)
        if mask.shape == (horizon,):
            mask = mask.expand(batch, horizon)
        if mask.shape != (batch, horizon):
            raise ValueError(
                f"teacher_forcing must have shape ({horizon},) or ({batch}, {horizon}), got {tuple(mask.shape)}"
            )
        return horizon, mask


__getattr__ = deprecated_aliases(__name__, Forecaster=(ForecastingModel, "ForecastingModel"))


def backbone_forecaster(name: str, **arguments: Any) -> ForecastingModel:
    """The registered model ``name`` built with ``arguments``, for a model that wraps a forecaster; anything else
    (a segmenter, a baseline that is not a ForecastingModel) is refused by name."""
    net = create_model(name, **arguments)
    if not isinstance(net, ForecastingModel):
        raise ValueError(f"backbone must name a forecaster, got {name!r} ({type(net).__name__})")
    return net


OneStep = Callable[..., tuple[Tensor, Any]]


def check_context_lengths(context_lengths: Tensor | None, context: Tensor) -> Tensor | None:
    """Validates ``context_lengths`` (B,) against a padded context (B, T_in, ...): integers in [1, T_in], on the
    context's device. None stays None."""
    if context_lengths is None:
        return None
    lengths = torch.as_tensor(context_lengths)
    batch, steps = context.shape[:2]
    if lengths.shape != (batch,) or lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
        raise ValueError(
            f"context_lengths must be an integer tensor of shape (B,)=({batch},), "
            f"got {lengths.dtype} of shape {tuple(lengths.shape)}"
        )
    if int(lengths.min()) < 1 or int(lengths.max()) > steps:
        raise ValueError(
            f"context_lengths must lie in [1, T_in={steps}] (a forecast needs a frame to start from), "
            f"got values from {int(lengths.min())} to {int(lengths.max())}"
        )
    return lengths.to(context.device)


def last_valid(frames: Tensor, lengths: Tensor | None) -> Tensor:
    """Each sequence's frame at its last valid step: (B, T, ...) -> (B, ...); the last frame without lengths."""
    if lengths is None:
        return frames[:, -1]
    return frames[torch.arange(frames.shape[0], device=frames.device), lengths - 1]


def rollout(
    one_step: OneStep,
    context: Tensor,
    horizon: int,
    targets: Tensor | None,
    mask: Tensor | None,
    context_lengths: Tensor | None = None,
) -> Tensor:
    """Forecasts with a next-frame model: reads the context, then feeds each prediction (or, where ``mask`` says so,
    the true frame) back for ``horizon`` frames.

    ``one_step(frames (B, T, C, H, W), state, lengths=None) -> (predictions of frames t + 1 (B, T, C, H, W), state)``.
    With ``context_lengths`` (B,), each sequence's forecast starts after its own last valid context frame.
    """
    if context_lengths is None:
        predicted, state = one_step(context, None)
    else:
        predicted, state = one_step(context, None, lengths=context_lengths)
    prediction = last_valid(predicted, context_lengths)  # (B, C, H, W): the first frame after the context
    predictions = [prediction]
    for step in range(1, horizon):
        frame = next_input(prediction, step - 1, targets, mask)
        out, state = one_step(frame.unsqueeze(1), state)
        prediction = out[:, 0]
        predictions.append(prediction)
    return torch.stack(predictions, dim=1)  # (B, horizon, C, H, W)


def check_tensor_type(model: nn.Module, x: Tensor, name: str) -> None:
    """Raises ValueError unless ``x`` is a floating tensor of the model's parameters' dtype (any dtype under
    autocast) on their device; a model without parameters takes anything."""
    parameter = next(model.parameters(), None)
    if parameter is not None:
        check_like_parameters(x, parameter, name=name, owner="model")


def next_input(prediction: Tensor, step: int, targets: Tensor | None, mask: Tensor | None) -> Tensor:
    """The frame fed back after ``step``: the prediction, or the true frame where teacher forcing says so."""
    if mask is None or targets is None:
        return prediction
    chosen = mask[:, step].view(-1, *([1] * (prediction.ndim - 1)))
    return torch.where(chosen, targets[:, step].to(prediction.dtype), prediction)
