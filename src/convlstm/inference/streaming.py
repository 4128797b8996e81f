"""Streaming inference: frames arrive one at a time, a k-step forecast comes back after each, in constant memory.

[`StreamingForecaster`][convlstm.inference.StreamingForecaster] keeps the model's recurrent state between calls (never
the frames seen so far) and computes each forecast from that state without changing it, so after frames 0..t its
forecast equals the batch call ``model(frames[:, :t + 1], horizon=k)``. Each model family keeps its state its own way;
one small adapter per family knows it:

- encoder-forecasters (``encode(context, state)`` + ``forecast(state, horizon)``): EncoderForecaster, FCLSTM;
- next-frame models (``one_step(frames, state) -> (predictions, state)``): NextFramePredictor,
  ConvLSTMUNetForecaster;
- PredNet (``run`` / ``step`` on a `PredNetState`);
- baselines that read only the last few frames (persistence: 1, optical flow: ``motion_frames``): a fixed-length
  window of frames.

A new family streams if it has one of these methods; anything else gets a ValueError that says what is needed.
"""

import collections
import logging
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from convlstm.baselines import OpticalFlow, Persistence
from convlstm.models.prednet import PredNet, PredNetState
from convlstm.utils.checks import check_int

logger = logging.getLogger(__name__)


@runtime_checkable
class EncodesState(Protocol):
    """An encoder-forecaster: the encoder state after any prefix of frames determines the forecast."""

    def encode(self, context: Tensor, state: Any = None) -> Any: ...

    def forecast(self, state: Any, horizon: int) -> Tensor: ...


@runtime_checkable
class StepsOneFrame(Protocol):
    """A next-frame model: ``one_step(frames, state)`` predicts frame t + 1 at every step t and returns the state."""

    def one_step(self, frames: Tensor, state: Any = None) -> tuple[Tensor, Any]: ...


class _Stream:
    """What the streaming forecaster asks of a family: take a frame in, forecast from the current state."""

    def reset(self) -> None:
        raise NotImplementedError

    def push(self, frame: Tensor) -> None:
        """Advances the state by one frame (B, C, H, W)."""
        raise NotImplementedError

    def forecast(self, horizon: int) -> Tensor:
        """(B, horizon, C, H, W) from the current state, which it leaves as it was."""
        raise NotImplementedError


class _EncoderStream(_Stream):
    def __init__(self, model: EncodesState) -> None:
        self.model = model
        self.state: Any = None

    def reset(self) -> None:
        self.state = None

    def push(self, frame: Tensor) -> None:
        self.state = self.model.encode(frame.unsqueeze(1), self.state)

    def forecast(self, horizon: int) -> Tensor:
        return self.model.forecast(self.state, horizon)


class _OneStepStream(_Stream):
    def __init__(self, model: StepsOneFrame) -> None:
        self.model = model
        self.state: Any = None
        self.prediction: Tensor | None = None  # (B, C, H, W): the forecast of the next frame

    def reset(self) -> None:
        self.state, self.prediction = None, None

    def push(self, frame: Tensor) -> None:
        out, self.state = self.model.one_step(frame.unsqueeze(1), self.state)
        self.prediction = out[:, 0]

    def forecast(self, horizon: int) -> Tensor:
        if self.prediction is None:
            raise AssertionError("unreachable: forecast before the first frame is refused by StreamingForecaster")
        # As the models' forward: the last one-step prediction is the first forecast, then each is fed back.
        prediction, state = self.prediction, self.state
        predictions = [prediction]
        for _ in range(1, horizon):
            out, state = self.model.one_step(prediction.unsqueeze(1), state)
            prediction = out[:, 0]
            predictions.append(prediction)
        return torch.stack(predictions, dim=1)


class _PredNetStream(_Stream):
    def __init__(self, model: PredNet) -> None:
        self.model = model
        self.state: PredNetState | None = None

    def reset(self) -> None:
        self.state = None

    def push(self, frame: Tensor) -> None:
        # run() checks the frame and the state; extrapolation would start after this single step, so never here.
        steps = 0 if self.state is None else self.state.step
        _, self.state = self.model.run(
            frame.unsqueeze(1), self.state, output_mode="prediction", extrap_start_time=steps + 1
        )

    def forecast(self, horizon: int) -> Tensor:
        if self.state is None:
            raise AssertionError("unreachable: forecast before the first frame is refused by StreamingForecaster")
        # As PredNet.forward: each step is fed the previous prediction in place of the unseen frame.
        state, predictions = self.state, []
        for _ in range(horizon):
            state, _ = self.model.step(state.prediction, state, observed=False)
            predictions.append(state.prediction)
        return torch.stack(predictions, dim=1)


class _WindowStream(_Stream):
    """For models whose forecast reads only the last ``window`` frames: those frames, and nothing older."""

    def __init__(self, model: nn.Module, window: int) -> None:
        self.model = model
        self.frames: collections.deque[Tensor] = collections.deque(maxlen=window)

    def reset(self) -> None:
        self.frames.clear()

    def push(self, frame: Tensor) -> None:
        self.frames.append(frame)

    def forecast(self, horizon: int) -> Tensor:
        forecast: Tensor = self.model(torch.stack(list(self.frames), dim=1), horizon=horizon)
        return forecast


def stream_for(model: nn.Module) -> _Stream:
    """The adapter that streams ``model``'s family (see the module docstring)."""
    if isinstance(model, Persistence):
        return _WindowStream(model, 1)
    if isinstance(model, OpticalFlow):
        return _WindowStream(model, model.motion_frames)
    if isinstance(model, PredNet):
        return _PredNetStream(model)
    if isinstance(model, EncodesState):
        return _EncoderStream(model)
    if isinstance(model, StepsOneFrame):
        return _OneStepStream(model)
    raise ValueError(
        f"model must be a forecaster that can stream: one with encode(context, state) and forecast(state, horizon), "
        f"one_step(frames, state), a PredNet, or a persistence / optical-flow baseline; got {type(model).__name__}"
    )


class StreamingForecaster:
    """Forecasts ``horizon`` frames after every new frame, keeping only the model's state between frames.

    Memory does not grow with the number of frames: the object holds the recurrent state (or, for the window
    baselines, their last few frames), never the history. The forecast is computed from the current state and
    leaves it untouched, so after frames 0..t it equals ``model(frames[:, :t + 1], horizon=horizon)``.
    Everything runs without autograd (no graph builds up across frames). Put the model in eval mode first; a
    model in training mode (dropout) is run as it is, with a warning.

    Args:
        model: a forecaster of a family that can stream (see [`stream_for`][convlstm.inference.stream_for]).
        horizon: frames per forecast (default: the model's ``default_horizon``).

    Shape:
        [`update`][convlstm.inference.StreamingForecaster.update]: frame (B, C, H, W), one frame of each of B
        independent streams -> (B, horizon, C, H, W).

    Examples:
        >>> stream = StreamingForecaster(model.eval(), horizon=5)
        >>> for frame in camera:                  # (B, C, H, W) each
        ...     forecast = stream.update(frame)   # (B, 5, C, H, W)
    """

    def __init__(self, model: nn.Module, horizon: int | None = None) -> None:
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be an nn.Module forecaster, got {type(model).__name__}")
        stream = stream_for(model)
        horizon = check_int("horizon", getattr(model, "default_horizon", None) if horizon is None else horizon)
        if model.training:
            logger.warning("streaming %s in training mode (dropout active); call model.eval() first", type(model))
        self.model = model
        self.horizon = horizon
        self._stream = stream
        self._frame_shape: tuple[int, ...] | None = None
        self.frames_seen = 0

    def reset(self) -> None:
        """Forgets every frame: the next one starts new streams (of any batch size and frame size)."""
        self._stream.reset()
        self._frame_shape = None
        self.frames_seen = 0

    def push(self, frame: Tensor) -> None:
        """Takes the next frame (B, C, H, W) of each stream in, without forecasting."""
        self._check(frame)
        with torch.no_grad():
            self._stream.push(frame)
        self._frame_shape = tuple(frame.shape)
        self.frames_seen += 1

    def forecast(self) -> Tensor:
        """The (B, horizon, C, H, W) forecast after the frames pushed so far; the state is left as it was."""
        if self.frames_seen == 0:
            raise ValueError("forecast needs at least one frame: call update(frame) or push(frame) first")
        with torch.no_grad():
            return self._stream.forecast(self.horizon)

    def update(self, frame: Tensor) -> Tensor:
        """Takes the next frame (B, C, H, W) in and returns the forecast of the next ``horizon`` frames.

        Returns:
            (B, horizon, C, H, W).
        """
        self.push(frame)
        return self.forecast()

    def _check(self, frame: Tensor) -> None:
        if not isinstance(frame, Tensor) or frame.ndim != 4:
            got = tuple(frame.shape) if isinstance(frame, Tensor) else type(frame).__name__
            raise ValueError(f"frame must be one frame per stream, shape (B, C, H, W), got {got}")
        if self._frame_shape is not None and tuple(frame.shape) != self._frame_shape:
            raise ValueError(
                f"frame must have the shape of the frames before it, {self._frame_shape} (B, C, H, W), "
                f"got {tuple(frame.shape)}; call reset() to start streams of another size"
            )
        if not torch.isfinite(frame).all():
            raise ValueError(f"frame {self.frames_seen} (counted from the last reset) contains NaN or inf")
