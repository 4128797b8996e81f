"""Exporting a forecaster for a fixed context length and horizon: ONNX (onnxruntime) and torch.export (.pt2).

The models run Python loops over time; with the number of context frames and the horizon fixed, tracing unrolls
those loops into a plain graph. ONNX goes through the torch.export-based ("dynamo") exporter, which handles every
registered learnable family; the TorchScript-based exporter is the fallback (``exporter="auto"``) or can be
chosen outright. The batch size stays free unless ``batch_size`` fixes it (the TorchScript exporter always fixes
it). The optical-flow baseline runs pysteps on numpy arrays, so it has no graph to trace and is refused with an
[`ExportError`][convlstm.inference.ExportError].

A .pt2 file can hold pickled objects that ``torch.export.load`` unpickles: load only files you trust (the
safetensors weights are the safe format).

    export_onnx(model, "model.onnx", context_frames=10, horizon=10, frame_shape=(1, 64, 64))
    forecast = load_exported("model.onnx")(context)          # (B, 10, 1, 64, 64), run by onnxruntime
"""

import contextlib
import json
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from convlstm.baselines import STEPS, OpticalFlow
from convlstm.models.base import ForecastingModel
from convlstm.models.extrapolation_nowcast import ExtrapolationNowcast
from convlstm.utils.atomic import atomic_path
from convlstm.utils.checks import check_choice, check_int

logger = logging.getLogger(__name__)

Exporter = Literal["auto", "dynamo", "torchscript"]
EXPORTERS = ("auto", "dynamo", "torchscript")
DEFAULT_OPSET = 18
INPUT_NAME, OUTPUT_NAME = "context", "forecast"
#: The file inside a .pt2 archive that records what the program expects.
CONTRACT_FILE = "convlstm_contract.json"
#: Example batch for tracing a dynamic batch: 2, as torch.export specialises sizes 0 and 1 instead of keeping them free.
_DYNAMIC_TRACE_BATCH = 2


class ExportError(ValueError):
    """A model that cannot be exported in the asked format; the message says why."""


class FixedHorizonForecaster(nn.Module):
    """``model(context, horizon=horizon)`` as a one-input module, the form exporters trace.

    Shape:
        context (B, T_in, C, H, W) -> forecast (B, horizon, C, H, W).
    """

    def __init__(self, model: nn.Module, horizon: int) -> None:
        super().__init__()
        self.model = model
        self.horizon = horizon

    def forward(self, context: Tensor) -> Tensor:
        forecast: Tensor = self.model(context, horizon=self.horizon)
        return forecast


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    context_frames: int,
    horizon: int,
    frame_shape: Sequence[int],
    opset: int = DEFAULT_OPSET,
    exporter: Exporter = "auto",
    batch_size: int | None = None,
) -> Path:
    """Writes ``model`` as an ONNX graph: input "context" (B, context_frames, C, H, W), output "forecast"
    (B, horizon, C, H, W). The file is written atomically; the model is traced in eval mode.

    Args:
        model: a forecaster (``model(context, horizon=...)``).
        path: the .onnx file to write (one file, weights inside: models under 2 GB).
        context_frames: the fixed input length.
        horizon: the fixed output length.
        frame_shape: (C, H, W) of the frames.
        opset: the ONNX opset.
        exporter: "dynamo" (torch.export-based), "torchscript", or "auto": dynamo, and TorchScript if that fails.
        batch_size: None keeps the batch size free (dynamo); a number fixes it. The TorchScript exporter records
            the models' reshapes with the traced batch, so it always fixes it: at ``batch_size``, or 1 (logged).

    Returns:
        The path written.

    Raises:
        ExportError: the model cannot be traced (the message gives the reason); ValueError for bad arguments.
    """
    check_choice("exporter", exporter, EXPORTERS)
    check_int("opset", opset, minimum=7)
    wrapper, example = _prepare(model, context_frames, horizon, frame_shape, batch_size)
    path = Path(path)
    reasons: list[str] = []
    with _eval_mode(model):
        for kind in ("dynamo", "torchscript") if exporter == "auto" else (exporter,):
            try:
                with atomic_path(path) as tmp, _quiet_exporters():
                    if kind == "dynamo":
                        _write_onnx_dynamo(wrapper, example, tmp, opset=opset, dynamic_batch=batch_size is None)
                    else:
                        if batch_size is None:
                            logger.warning("the TorchScript exporter fixes the batch size; exporting for batch 1")
                        fixed = example[:1] if batch_size is None else example
                        _write_onnx_torchscript(wrapper, fixed, tmp, opset=opset)
            except Exception as err:  # the exporters raise many types; each one is reported with its reason
                reasons.append(f"{kind} exporter: {_first_line(err)}")
                logger.warning("ONNX export of %s with the %s exporter failed: %s", _name(model), kind, reasons[-1])
                continue
            logger.info("exported %s to %s with the %s exporter", _name(model), path, kind)
            return path
    raise ExportError(f"{_name(model)} could not be exported to ONNX: {'; '.join(reasons)}")


def export_torch(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    context_frames: int,
    horizon: int,
    frame_shape: Sequence[int],
    batch_size: int | None = None,
) -> Path:
    """Writes ``model`` as a torch.export program (.pt2, loaded with ``torch.export.load`` or
    [`load_exported`][convlstm.inference.load_exported]), for a fixed context length and horizon, atomically, traced in
    eval mode.

    The arguments are those of [`export_onnx`][convlstm.inference.export_onnx] (``batch_size`` None: any batch size).

    Returns:
        The path written.

    Raises:
        ExportError: torch.export cannot trace the model (the message gives the reason).
    """
    wrapper, example = _prepare(model, context_frames, horizon, frame_shape, batch_size)
    with _eval_mode(model), _quiet_exporters():
        try:
            program = torch.export.export(wrapper, (example,), dynamic_shapes=_dynamic_shapes(batch_size is None))
        except Exception as err:  # torch.export raises many types (UserError, GuardOnDataDependentSymNode, ...)
            raise ExportError(f"torch.export could not trace {_name(model)}: {_first_line(err)}") from err
    contract = {
        "family": _name(model),
        "context_frames": context_frames,
        "horizon": horizon,
        "frame_shape": list(frame_shape),
        "batch_size": batch_size,
    }
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.export.save(program, f, extra_files={CONTRACT_FILE: json.dumps(contract)})
    logger.info("exported %s to %s with torch.export", _name(model), path)
    return path


class ExportedForecaster:
    """A forecaster loaded from an exported file: ``exported(context) -> forecast``.

    Attributes:
        path: the file.
        context_frames, horizon: the fixed lengths it was exported for.
        frame_shape: (C, H, W) of its frames.
        batch_size: the batch size it takes, or None for any.
    """

    def __init__(
        self,
        path: Path,
        context_frames: int,
        horizon: int,
        frame_shape: tuple[int, int, int],
        batch_size: int | None,
    ) -> None:
        self.path = path
        self.context_frames, self.horizon, self.frame_shape = context_frames, horizon, frame_shape
        self.batch_size = batch_size

    def __call__(self, context: Tensor) -> Tensor:
        """Forecast (B, horizon, C, H, W) from context (B, context_frames, C, H, W), as a float32 CPU tensor for
        ONNX and on the program's device for .pt2."""
        expected = (self.context_frames, *self.frame_shape)
        if not isinstance(context, Tensor) or context.ndim != 5 or tuple(context.shape[1:]) != expected:
            got = tuple(context.shape) if isinstance(context, Tensor) else type(context).__name__
            raise ValueError(
                f"context for {self.path.name} must have shape (B, {', '.join(map(str, expected))}), got {got}"
            )
        if self.batch_size is not None and context.shape[0] != self.batch_size:
            raise ValueError(
                f"{self.path.name} was exported for batches of {self.batch_size}, got context of shape "
                f"{tuple(context.shape)}"
            )
        return self._run(context)

    def _run(self, context: Tensor) -> Tensor:
        raise NotImplementedError


class _OnnxForecaster(ExportedForecaster):
    def __init__(self, path: Path) -> None:
        try:
            import onnxruntime
        except ImportError as err:
            raise ImportError(f"running {path} needs onnxruntime: pip install convlstm[export] ({err})") from err
        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (given,), (made,) = self.session.get_inputs(), self.session.get_outputs()
        in_shape, out_shape = given.shape, made.shape
        if len(in_shape) != 5 or len(out_shape) != 5 or not all(isinstance(n, int) for n in in_shape[1:]):
            raise ValueError(f"{path} is not a forecaster export: input {in_shape}, output {out_shape}")
        self.input_name = given.name
        batch = in_shape[0] if isinstance(in_shape[0], int) else None  # a name ("batch") when it is free
        super().__init__(path, in_shape[1], int(out_shape[1]), (in_shape[2], in_shape[3], in_shape[4]), batch)

    def _run(self, context: Tensor) -> Tensor:
        values = context.detach().to("cpu", torch.float32).numpy()
        (out,) = self.session.run(None, {self.input_name: np.ascontiguousarray(values)})
        return torch.from_numpy(out)


class _ProgramForecaster(ExportedForecaster):
    def __init__(self, path: Path) -> None:
        extra = {CONTRACT_FILE: ""}
        program = torch.export.load(path, extra_files=extra)
        try:
            contract = json.loads(extra[CONTRACT_FILE])
            frame_shape = tuple(int(n) for n in contract["frame_shape"])
            context_frames, horizon = int(contract["context_frames"]), int(contract["horizon"])
            batch = None if contract["batch_size"] is None else int(contract["batch_size"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path} was not written by export_torch: no valid {CONTRACT_FILE} ({err})") from None
        if len(frame_shape) != 3:
            raise ValueError(f"{path}: {CONTRACT_FILE} gives frame_shape {frame_shape}, expected (C, H, W)")
        self.module = program.module()
        super().__init__(path, context_frames, horizon, (frame_shape[0], frame_shape[1], frame_shape[2]), batch)

    def _run(self, context: Tensor) -> Tensor:
        forecast: Tensor = self.module(context)
        return forecast


def load_exported(path: str | os.PathLike[str]) -> ExportedForecaster:
    """Loads a file written by [`export_onnx`][convlstm.inference.export_onnx] (.onnx, run by onnxruntime on the CPU) or
    [`export_torch`][convlstm.inference.export_torch] (.pt2, run by PyTorch)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"exported model {path} not found")
    if path.suffix == ".onnx":
        return _OnnxForecaster(path)
    if path.suffix == ".pt2":
        return _ProgramForecaster(path)
    raise ValueError(f"exported model {path} must end in .onnx or .pt2, got {path.suffix!r}")


def check_export(
    exported: str | os.PathLike[str] | ExportedForecaster,
    model: nn.Module,
    context: Tensor,
    *,
    horizon: int,
    atol: float = 1e-4,
) -> float:
    """Runs an exported forecaster (a file, or what [`load_exported`][convlstm.inference.load_exported] returned) and
    ``model`` (in eval mode) on ``context`` and compares their forecasts.

    Returns:
        The largest absolute difference.

    Raises:
        ExportError: the horizons or shapes differ, or the difference exceeds ``atol``.
    """
    if not isinstance(exported, ExportedForecaster):
        exported = load_exported(exported)
    name = exported.path
    if exported.horizon != horizon:
        raise ExportError(f"{name} forecasts {exported.horizon} frames, expected horizon={horizon}")
    got = exported(context)
    with _eval_mode(model), torch.no_grad():
        want = model(context, horizon=horizon)
    if got.shape != want.shape:
        raise ExportError(f"{name} gives shape {tuple(got.shape)}, the model {tuple(want.shape)}")
    difference = (got.to(want.device, want.dtype) - want).abs().max().item()
    if not difference <= atol:  # also catches NaN
        raise ExportError(f"{name} differs from the model by {difference:.3g} (atol {atol:g})")
    return float(difference)


# ------------------------------------------------------------------------------------------------------- helpers
def _prepare(
    model: nn.Module, context_frames: int, horizon: int, frame_shape: Sequence[int], batch_size: int | None
) -> tuple[FixedHorizonForecaster, Tensor]:
    """Checks the arguments, refuses what cannot be traced, runs the model once (its own checks give clear
    errors about frame sizes) and returns the module to trace with its example input."""
    check_int("context_frames", context_frames)
    check_int("horizon", horizon)
    if batch_size is not None:  # None: any batch size
        check_int("batch_size", batch_size)
    shape = tuple(frame_shape) if isinstance(frame_shape, Sequence) else ()
    if len(shape) != 3:
        raise ValueError(f"frame_shape must be three ints (C, H, W) >= 1, got {frame_shape!r}")
    for axis, size in zip("CHW", shape, strict=True):
        check_int(f"frame_shape {axis}", size)
    if isinstance(model, OpticalFlow | STEPS | ExtrapolationNowcast):
        raise ExportError(
            f"{model.family} cannot be exported: it runs pysteps on numpy arrays outside PyTorch, so there is no "
            "graph to trace; run it in Python"
        )
    if not isinstance(model, ForecastingModel):
        raise ExportError(
            f"only forecasters (model(context, horizon)) can be exported for a fixed horizon, got {_name(model)}"
        )
    parameter = next(model.parameters(), None)
    device, dtype = (torch.device("cpu"), torch.float32) if parameter is None else (parameter.device, parameter.dtype)
    batch = _DYNAMIC_TRACE_BATCH if batch_size is None else batch_size
    example = torch.rand(batch, context_frames, *shape, generator=torch.Generator().manual_seed(0))
    example = example.to(device, dtype)
    wrapper = FixedHorizonForecaster(model, horizon)
    with _eval_mode(model), torch.no_grad():
        wrapper(example)
    return wrapper, example


def _dynamic_shapes(dynamic_batch: bool) -> tuple[dict[int, Any], ...] | None:
    return ({0: torch.export.Dim("batch", min=1)},) if dynamic_batch else None


def _write_onnx_dynamo(wrapper: nn.Module, example: Tensor, target: Path, *, opset: int, dynamic_batch: bool) -> None:
    program = torch.onnx.export(
        wrapper,
        (example,),
        dynamo=True,
        dynamic_shapes=_dynamic_shapes(dynamic_batch),
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        opset_version=opset,
        verbose=False,
    )
    if program is None:
        raise AssertionError("unreachable: the dynamo exporter returns its program")
    program.save(target, external_data=False)


def _write_onnx_torchscript(wrapper: nn.Module, example: Tensor, target: Path, *, opset: int) -> None:
    torch.onnx.export(
        wrapper,
        (example,),
        str(target),
        dynamo=False,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        opset_version=opset,
    )


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Runs the block with ``model`` in eval mode (dropout off, running norm statistics) and restores its mode."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@contextlib.contextmanager
def _quiet_exporters() -> Iterator[None]:
    """Keeps the exporters' chatter (tracer and deprecation warnings, notes on missing torchvision ops) out of
    the output; what matters is logged by this module."""
    chatty = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = chatty.level
    chatty.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        chatty.setLevel(level)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"


def _name(model: nn.Module) -> str:
    return str(getattr(model, "family", type(model).__name__))
