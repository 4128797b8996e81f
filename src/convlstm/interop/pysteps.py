"""The pysteps plugin: any convlstm model as a pysteps nowcast method, ``pysteps.nowcasts.get_method("convlstm")``.

[`forecast`][convlstm.interop.pysteps.forecast] has the signature of pysteps' nowcasts, ``forecast(precip, velocity,
timesteps, n_ens_members=None, **kwargs)``: it takes the last observed fields (T, m, n) in pysteps' units (mm/h, mm or
dBZ, optionally dB-transformed, as a pysteps ``metadata`` dict describes them) and returns (timesteps, m, n), or
(n_ens_members, timesteps, m, n), in the same units.

How pysteps finds it. pysteps 1.21 looks nowcast methods up in a module-level table,
``pysteps.nowcasts.interface._nowcast_methods``, and has plugin entry-point groups for importers and postprocessors
only, not for nowcasts. Importing this module therefore adds ``"convlstm"`` to that table
([`register`][convlstm.interop.pysteps.register], which may run any number of times). The package also declares the
entry point ``convlstm = "convlstm.interop.pysteps:forecast"`` in the group ``pysteps.plugins.nowcasts``, the group of
pysteps' unmerged nowcast-plugin work (pull request 418, modelled on ``pysteps.plugins.importers``); a pysteps that
discovers that group will find the method without the import.

What happens to a field on its way through:
    * units: the frames become rain rate (mm/h): the dB transform is undone, depths are divided by the accumulation
      time, reflectivity goes through the Z-R relation. Then they become what the model reads (``model_units``):
      HKO-7 radar pixels, p = (dBZ + 10) / 70 clipped to [0, 1], the scale every radar model and recipe of this
      library is trained on, or plain mm/h. The forecast goes the same way back. Reflectivity in and a pixel model
      reach the model unchanged (the same Z-R relation goes both ways); reflectivity above 60 dBZ, the top of the
      pixel scale, comes back as 60 dBZ.
    * dry pixels: values below ``metadata["threshold"]`` are dry (rain rate 0, pixel 0) on the way in; forecast
      values below it come back as ``metadata["zerovalue"]``, as pysteps' own conversions do.
    * no coverage: NaN marks pixels outside the radar's coverage in pysteps. The model reads them as dry (it knows no
      missing value), and every forecast step and member is NaN wherever any context frame was NaN, so blending and
      verification see the same coverage as the input (pysteps' STEPS masks the union of the inputs' NaN too).
    * motion: the models compute their own motion from the frames; ``velocity`` is accepted for the interface and
      otherwise ignored.
    * ensembles: a model with an ``ensemble(context, horizon)`` method (the ``steps`` baseline) gives its members;
      any other model gives an ensemble of its forecasts from perturbed inputs
      (`convlstm.inference.ensemble.ensemble_forecast`; member 0 is the unperturbed forecast). That spread
      comes from the perturbation, not from a learned uncertainty.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from convlstm.inference.ensemble import ensemble_forecast
from convlstm.models.pretrained import ModelCard, from_pretrained, list_pretrained, read_model_card
from convlstm.models.registry import create_model, list_models
from convlstm.units import pixel_to_rain_rate, rain_rate_to_pixel, zr_coefficients
from convlstm.utils.checks import check_choice, check_int

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_MODEL", "ENTRY_POINT_GROUP", "METHOD_NAME", "forecast", "register"]

METHOD_NAME = "convlstm"
"""The name pysteps knows the method by: ``pysteps.nowcasts.get_method("convlstm")``."""

ENTRY_POINT_GROUP = "pysteps.plugins.nowcasts"
"""The entry-point group this package declares [`forecast`][convlstm.interop.pysteps.forecast] in, for a pysteps that
discovers nowcast plugins."""

DEFAULT_MODEL: str | None = "radar-nowcast"
"""What [`forecast`][convlstm.interop.pysteps.forecast] runs without ``model=``: anything ``model=`` takes; by default
the radar nowcast shipped in the package (rain rate in and out, 5-minute steps, its last 4 frames). None makes
[`forecast`][convlstm.interop.pysteps.forecast] ask for ``model=``."""

ModelUnits = Literal["pixel", "mm/h"]
_MODEL_UNITS = ("pixel", "mm/h")
_UNITS = ("mm/h", "mm", "dBZ")
_TRANSFORMS = (None, "dB")
#: pysteps' defaults for dB fields whose metadata has no threshold (dB_transform's inverse) or zerovalue (its
#: forward: threshold - 5).
_DB_THRESHOLD = -10.0
_DB_ZEROVALUE_BELOW_THRESHOLD = 5.0


def forecast(
    precip: np.ndarray,
    velocity: np.ndarray | None,
    timesteps: int | Sequence[int],
    n_ens_members: int | None = None,
    *,
    model: nn.Module | str | os.PathLike[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    model_units: ModelUnits | None = None,
    zr_relation: str | tuple[float, float] | None = None,
    context_frames: int | None = None,
    noise_std: float = 0.3,
    correlation_pixels: int = 8,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """A nowcast of a convlstm model in pysteps' interface (see the module docstring for units, NaN, ensembles).

    Args:
        precip: (T, m, n) observed fields, oldest first, in the units ``metadata`` describes; NaN where there is no
            coverage. The last ``context_frames`` frames are used.
        velocity: None, or pysteps' (2, m, n) advection field, which is checked for its shape and otherwise ignored
            (the models estimate motion from the frames themselves).
        timesteps: the number of steps to forecast (an int >= 1), or an increasing list of the steps wanted (whole
            multiples of the input time step, e.g. ``[1, 2, 4]``); fractional steps are refused, since the models
            forecast one input step at a time.
        n_ens_members: None for one deterministic forecast, or the number of ensemble members.
        model: a model (an ``nn.Module`` called as ``model(context, horizon)``, e.g. from
            [`convlstm.from_pretrained`][convlstm.from_pretrained]), the directory of a saved model
            (``save_pretrained``, or the ``model/`` folder of a ``convlstm fit`` run), or a registered name
            (``convlstm.list_models()``: a registered name builds fresh, untrained weights, so only the parameter-free
            baselines give a meaningful forecast by name). Default:
            [`DEFAULT_MODEL`][convlstm.interop.pysteps.DEFAULT_MODEL]. Pass a loaded model when calling repeatedly, so
            it is read once.
        metadata: pysteps' description of ``precip`` (what its importers and ``pysteps.utils`` conversions return):
            ``unit`` ("mm/h", "mm" or "dBZ"), ``transform`` (None or "dB"; dBZ values are unit "dBZ" with
            transform "dB", as in pysteps), ``accutime`` (minutes; needed for "mm"), and optionally ``threshold``,
            ``zerovalue``, ``zr_a``, ``zr_b``. Default: rain rate in mm/h.
        model_units: what the model reads: "pixel" (HKO-7 radar pixels in [0, 1]) or "mm/h". Default: what its
            model card says (a shipped model, or a directory with a MODEL_CARD.md), else the model's
            ``config.units`` when it has one (the ``steps`` baseline), else "pixel".
        zr_relation: the Z-R relation between rain rate and the model's pixels (and the input's reflectivity):
            "hko7", "marshall_palmer" or an (a, b) pair. Default: the metadata's ``zr_a``, ``zr_b`` when it has
            them, else HKO-7, the relation the library's radar data is made with.
        context_frames: how many of the last frames the model reads. Default: its model card's, else the
            model's ``context_frames`` attribute when it has one, else every frame of ``precip``.
        noise_std: σ of the input perturbation of ensemble members (see
            `convlstm.inference.ensemble.ensemble_forecast`).
        correlation_pixels: the spatial scale of that perturbation.
        seed: the seed of that perturbation: the same input and seed give the same ensemble.
        device: where a model built here (from a name or a directory) runs; default CPU. A model passed in runs where
            its parameters are.

    Returns:
        (len(timesteps), m, n), or (n_ens_members, len(timesteps), m, n) when ``n_ens_members`` is given, in the
        units of ``precip``, NaN outside the coverage of the context, in ``precip``'s float dtype (float64 for
        integers).

    Raises:
        ValueError: an argument of the wrong shape, type or value (the message names it); no ``model=`` while
            [`DEFAULT_MODEL`][convlstm.interop.pysteps.DEFAULT_MODEL] is None; a model whose ensemble size is not
            ``n_ens_members``.
    """
    field = _check_precip(precip)
    _check_velocity(velocity, field.shape[1:])
    steps = _check_timesteps(timesteps)
    members = None if n_ens_members is None else check_int("n_ens_members", n_ens_members, 1)
    described = _check_metadata(metadata)
    net, card = _resolve_model(model, device)
    _check_one_channel(net)
    units = _resolve_model_units(net, model_units, card)
    a, b = _resolve_relation(zr_relation, described)
    frames = _context(field, net, context_frames if context_frames is not None or card is None else card.context_frames)

    outside = np.isnan(frames).any(axis=0)  # (m, n): no coverage in some context frame
    rain = np.nan_to_num(_to_rain_rate(frames, described, (a, b)), nan=0.0)
    values = rain_rate_to_pixel(rain, (a, b)) if units == "pixel" else rain

    parameter = next(iter(net.parameters()), None)
    context = torch.from_numpy(values).to(
        device=parameter.device if parameter is not None else torch.device("cpu"),
        dtype=parameter.dtype if parameter is not None else torch.float32,
    )[None, :, None]  # (1, T, 1, m, n)
    horizon = steps[-1]
    predicted = _run(net, context, horizon, members, noise_std, correlation_pixels, seed, units)
    predicted = predicted[..., [step - 1 for step in steps], :, :]  # ([M,] len(steps), m, n)

    if units == "pixel":
        # Pixel 0 is where dry rain (0 mm/h) went in; pixel_to_rain_rate would make it the scale's -10 dBZ.
        rain_out = np.where(predicted > 0, pixel_to_rain_rate(predicted, (a, b)), 0.0)
    else:
        rain_out = np.maximum(predicted, 0.0)
    out = _from_rain_rate(rain_out, described, (a, b))
    out[..., outside] = np.nan
    return out.astype(precip.dtype if np.issubdtype(precip.dtype, np.floating) else np.float64, copy=False)


def register() -> bool:
    """Adds [`forecast`][convlstm.interop.pysteps.forecast] to pysteps' table of nowcast methods under
    [`METHOD_NAME`][convlstm.interop.pysteps.METHOD_NAME].

    Importing this module calls it; calling it again changes nothing. A method of that name from elsewhere is left
    in place, with a warning logged.

    Returns:
        Whether ``pysteps.nowcasts.get_method("convlstm")`` now gives [`forecast`][convlstm.interop.pysteps.forecast].

    Raises:
        ImportError: pysteps is not installed (``pip install convlstm[nowcast]``).
    """
    methods = _pysteps_nowcast_methods()
    present = methods.get(METHOD_NAME)
    # The same function from an earlier import of this module (importlib.reload) may be replaced; another may not.
    if present is not None and present is not forecast and getattr(present, "__module__", None) != __name__:
        logger.warning(
            "pysteps already has a nowcast method named %r (%r); the convlstm plugin left it in place",
            METHOD_NAME,
            present,
        )
        return False
    methods[METHOD_NAME] = forecast
    return True


def _pysteps_nowcast_methods() -> dict[str, Any]:
    try:
        # pysteps prints where it found its configuration file when first imported; keep that out of stdout.
        with contextlib.redirect_stdout(io.StringIO()):
            from pysteps.nowcasts import interface
    except ImportError as err:
        raise ImportError(
            f"the convlstm pysteps plugin needs pysteps ({err}); install it with `pip install convlstm[nowcast]`"
        ) from err
    methods = getattr(interface, "_nowcast_methods", None)
    if not isinstance(methods, dict):
        raise ImportError(
            "pysteps.nowcasts.interface has no _nowcast_methods table to register in; this pysteps "
            "(a version other than 1.x?) must find the plugin through its entry point instead"
        )
    return methods


# --- arguments -----------------------------------------------------------------------------------------------------


def _check_precip(precip: object) -> np.ndarray:
    """precip as float64 (T, m, n); +inf refused (NaN is no coverage, -inf is 0 in dB units)."""
    if not isinstance(precip, np.ndarray):
        raise ValueError(f"precip must be a numpy array (T, m, n), got {type(precip).__name__}")
    if precip.ndim != 3 or min(precip.shape) < 1:
        raise ValueError(f"precip must have shape (T, m, n) with T >= 1 observed fields, got {precip.shape}")
    if not (np.issubdtype(precip.dtype, np.floating) or np.issubdtype(precip.dtype, np.integer)):
        raise ValueError(f"precip must hold real numbers, got dtype {precip.dtype}")
    field = precip.astype(np.float64)
    if np.isposinf(field).any():
        raise ValueError("precip must be finite or NaN (no coverage), got +inf values")
    return field


def _check_velocity(velocity: object, shape: tuple[int, ...]) -> None:
    if velocity is None:
        return
    got = np.shape(velocity) if isinstance(velocity, np.ndarray) else type(velocity).__name__
    if got != (2, *shape):
        raise ValueError(f"velocity must be None or an array (2, m, n) = {(2, *shape)}, got {got}")


def _check_timesteps(timesteps: object) -> list[int]:
    """The 1-based steps to return, increasing."""
    if isinstance(timesteps, int | np.integer) and not isinstance(timesteps, bool):
        return list(range(1, check_int("timesteps", timesteps, 1) + 1))
    if not isinstance(timesteps, Sequence | np.ndarray) or isinstance(timesteps, str) or len(timesteps) == 0:
        raise ValueError(f"timesteps must be an int >= 1 or a non-empty list of steps, got {timesteps!r}")
    steps = []
    for value in timesteps:
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise ValueError(f"timesteps must hold numbers of steps, got {value!r} in {timesteps!r}")
        if not float(value).is_integer():
            raise ValueError(
                f"timesteps must be whole steps (the models forecast one input time step at a time and do not "
                f"interpolate between them), got {value!r} in {timesteps!r}"
            )
        steps.append(int(value))
    if steps[0] < 1 or any(later <= earlier for earlier, later in itertools.pairwise(steps)):
        raise ValueError(f"timesteps must be increasing steps >= 1, got {timesteps!r}")
    return steps


def _check_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """The input's units with every default filled in: unit, transform, accutime, threshold, zerovalue, zr."""
    if metadata is None:
        metadata = {"unit": "mm/h", "transform": None}
    if not isinstance(metadata, Mapping):
        raise ValueError(f"metadata must be a pysteps metadata dict or None, got {type(metadata).__name__}")
    unit, transform = metadata.get("unit"), metadata.get("transform")
    check_choice("metadata['unit']", unit, _UNITS)
    # Required, as pysteps' conversions require it: {"unit": "dBZ"} alone means linear Z there, not dBZ values.
    if "transform" not in metadata:
        raise ValueError(
            "metadata['transform'] must be given, None or 'dB' (pysteps stores reflectivity in dBZ as unit 'dBZ' "
            f"with transform 'dB'), got a metadata without it: {dict(metadata)!r}"
        )
    if transform not in _TRANSFORMS:
        raise ValueError(
            f"metadata['transform'] must be None or 'dB', got {transform!r}; convert the field to mm/h first "
            "(pysteps.utils.conversion.to_rainrate)"
        )
    accutime = metadata.get("accutime")
    if unit == "mm" and (not isinstance(accutime, int | float) or not accutime > 0):
        raise ValueError(
            f"metadata['accutime'] must be the accumulation time in minutes (> 0) for mm, got {accutime!r}"
        )
    threshold = metadata.get("threshold")
    if threshold is None:
        threshold = _DB_THRESHOLD if transform == "dB" else 0.0
    zerovalue = metadata.get("zerovalue")
    if zerovalue is None:
        zerovalue = threshold - _DB_ZEROVALUE_BELOW_THRESHOLD if transform == "dB" else 0.0
    for key, value in (("threshold", threshold), ("zerovalue", zerovalue)):
        if not isinstance(value, int | float | np.number) or math.isnan(value):
            raise ValueError(f"metadata[{key!r}] must be a number in the field's units, got {value!r}")
    return {
        "unit": unit,
        "transform": transform,
        "accutime": accutime,
        "threshold": float(threshold),
        "zerovalue": float(zerovalue),
        "zr": (metadata["zr_a"], metadata["zr_b"]) if "zr_a" in metadata and "zr_b" in metadata else None,
    }


def _resolve_relation(zr_relation: str | tuple[float, float] | None, described: dict[str, Any]) -> tuple[float, float]:
    try:
        return zr_coefficients(zr_relation if zr_relation is not None else described["zr"] or "hko7")
    except (TypeError, ValueError) as err:
        where = "zr_relation" if zr_relation is not None else "metadata['zr_a'], metadata['zr_b']"
        raise ValueError(f"{where}: {err}") from None


def _resolve_model(model: object, device: str | torch.device | None) -> tuple[nn.Module, ModelCard | None]:
    """The model to run and its card (what it reads: units, context frames), None for a model without one."""
    if model is None:
        model = DEFAULT_MODEL
        if model is None:
            raise ValueError(
                "model is needed: DEFAULT_MODEL is None. Pass model= a model (e.g. "
                "convlstm.from_pretrained('radar-nowcast')), the directory of a saved model, the name of a shipped "
                "model (convlstm.list_pretrained()) or a registered name such as 'persistence'"
            )
    if isinstance(model, nn.Module):
        return model, None
    target = torch.device(device) if device is not None else torch.device("cpu")
    if isinstance(model, str | os.PathLike) and (Path(model).is_dir() or str(model) in list_pretrained()):
        return from_pretrained(model, device=target), read_model_card(model)
    if isinstance(model, str) and model in list_models():
        built = create_model(model).to(target)
        if any(True for _ in built.parameters()):
            logger.warning(
                "model %r was built by name with untrained weights; pass a trained model or its saved directory",
                model,
            )
        return built, None
    raise ValueError(
        "model must be an nn.Module, the directory of a saved model, a shipped model's name "
        f"(convlstm.list_pretrained(): {list_pretrained()}) or a registered name (convlstm.list_models()), "
        f"got {model!r}"
    )


def _check_one_channel(net: nn.Module) -> None:
    channels = getattr(net, "in_channels", None)
    if channels is None:
        channels = getattr(getattr(net, "config", None), "in_channels", None)
    if isinstance(channels, int) and channels != 1:
        raise ValueError(f"model must read one channel (a precipitation field), got a model of in_channels={channels}")


def _resolve_model_units(net: nn.Module, model_units: str | None, card: ModelCard | None) -> ModelUnits:
    if model_units is None:
        model_units = card.units if card is not None else getattr(getattr(net, "config", None), "units", None)
        if model_units not in _MODEL_UNITS:
            model_units = "pixel"
    if model_units == "pixel":
        return "pixel"
    if model_units == "mm/h":
        return "mm/h"
    raise ValueError(f"model_units must be one of {_MODEL_UNITS} or None, got {model_units!r}")


def _context(field: np.ndarray, net: nn.Module, context_frames: int | None) -> np.ndarray:
    """The last frames the model reads, (T_in, m, n)."""
    wanted = context_frames if context_frames is not None else getattr(net, "context_frames", None)
    if wanted is None:
        return field
    wanted = check_int("context_frames", wanted, 1)
    if field.shape[0] < wanted:
        raise ValueError(
            f"precip must have at least context_frames={wanted} frames, the context the model reads; got shape "
            f"{field.shape}"
        )
    return field[-wanted:]


# --- units ---------------------------------------------------------------------------------------------------------


def _to_rain_rate(values: np.ndarray, described: dict[str, Any], relation: tuple[float, float]) -> np.ndarray:
    """Rain rate in mm/h of fields in the described units; 0 below the threshold, NaN stays NaN."""
    linear = 10.0 ** (values / 10.0) if described["transform"] == "dB" else values  # dB -> linear (-inf -> 0)
    if described["unit"] == "mm":
        rain = linear * (60.0 / described["accutime"])
    elif described["unit"] == "dBZ":
        a, b = relation
        rain = (np.maximum(linear, 0.0) / a) ** (1.0 / b)  # Z = a R^b
    else:
        rain = linear
    with np.errstate(invalid="ignore"):  # NaN compares False: no coverage stays NaN
        dry = values < described["threshold"]
        return np.where(dry, 0.0, np.maximum(rain, 0.0))


def _from_rain_rate(rain: np.ndarray, described: dict[str, Any], relation: tuple[float, float]) -> np.ndarray:
    """Rain rates in mm/h back in the described units; values below the threshold become the zerovalue."""
    if described["unit"] == "mm":
        linear = rain * (described["accutime"] / 60.0)
    elif described["unit"] == "dBZ":
        a, b = relation
        linear = a * rain**b
    else:
        linear = rain
    if described["transform"] == "dB":
        with np.errstate(divide="ignore"):  # 0 -> -inf, below any threshold
            values = 10.0 * np.log10(linear)
    else:
        values = np.array(linear, dtype=np.float64)
    return np.where(values < described["threshold"], described["zerovalue"], values)


# --- the model -----------------------------------------------------------------------------------------------------


@torch.no_grad()
def _run(
    net: nn.Module,
    context: Tensor,
    horizon: int,
    members: int | None,
    noise_std: float,
    correlation_pixels: int,
    seed: int,
    units: ModelUnits,
) -> np.ndarray:
    """The model's forecast from context (1, T, 1, m, n): (horizon, m, n), or (members, horizon, m, n)."""
    if members is None:
        was_training = net.training
        net.eval()
        try:
            out = net(context, horizon)  # (1, horizon, 1, m, n)
        finally:
            net.train(was_training)
        return _one_channel(out, (1, horizon), "forecast")[0]
    ensemble = getattr(net, "ensemble", None)
    if callable(ensemble):
        out = ensemble(context, horizon)  # (1, N, horizon, 1, m, n)
        made = out.shape[1] if isinstance(out, Tensor) and out.ndim == 6 else None
        if made != members:
            raise ValueError(
                f"n_ens_members must be the size of the model's own ensemble, {made}, got {members}; build the model "
                "with that many members"
            )
    else:
        out = ensemble_forecast(
            net,
            context,
            members=members,
            horizon=horizon,
            noise_std=noise_std,
            correlation_pixels=correlation_pixels,
            seed=seed,
            max_value=1.0 if units == "pixel" else None,
        )
    return _one_channel(out, (1, members, horizon), "ensemble")[0]


def _one_channel(out: object, leading: tuple[int, ...], what: str) -> np.ndarray:
    """(*leading, m, n) float64 from the model's (*leading, 1, m, n) output."""
    if not isinstance(out, Tensor) or tuple(out.shape[: len(leading)]) != leading or out.ndim != len(leading) + 3:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"the model's {what} must have shape {(*leading, 1, 'm', 'n')}, got {got}")
    if out.shape[len(leading)] != 1:
        raise ValueError(
            f"model must forecast one channel (a precipitation field), its {what} has shape {tuple(out.shape)}"
        )
    return out.squeeze(len(leading)).detach().to("cpu", torch.float64).numpy()


# Registered on import; a pysteps that is not installed (or still importing, when it discovers this module through
# its entry point) leaves the table to the entry point.
with contextlib.suppress(ImportError):
    register()
