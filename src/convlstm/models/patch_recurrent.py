"""What the PredRNN family (PredRNN, PredRNN-V2, PredRNN++, MIM) shares: a recurrent stack on p x p patches of the
frames, one step per frame, the prediction of frame t + 1 at every step t, and reverse scheduled sampling.

A model of the family defines one step, ``_step(patch, state, record) -> (prediction, state)`` on patches; this base
runs it over a context and a forecast (feeding predictions or true frames back) and frame by frame (``one_step``).
"""

from typing import Any, ClassVar

import torch
from torch import Tensor

from convlstm.models.base import ForecastingModel, next_input
from convlstm.models.patching import depth_to_space, space_to_depth


class PatchRecurrentForecaster(ForecastingModel):
    """Runs a subclass's ``_step`` on p x p patches.

    Subclasses set ``self.patch_size``, ``self.default_horizon`` and ``self.config`` (with ``in_channels``), and
    define ``_step``. ``record`` is a list where a step appends what a training loss needs besides the prediction
    (PredRNN-V2: each layer's memory increments), or None.

    Shape:
        `one_step`: frames (B, T, C, H, W) -> predictions (B, T, C, H, W), prediction t for frame t + 1.
        forward: context (B, T_in, C, H, W) -> predictions (B, horizon, C, H, W).
    """

    #: Whether forward takes ``context_teacher_forcing=`` (reverse scheduled sampling).
    accepts_context_teacher_forcing: ClassVar[bool] = True
    #: Why the model works on one frame size only (its config's ``height`` x ``width``), for the error message; None
    #: where any size divisible by the patch size works.
    one_frame_size_because: ClassVar[str | None] = None
    patch_size: int

    def _step(self, patch: Tensor, state: Any, record: list[Any] | None) -> tuple[Tensor, Any]:
        """One step on patches (B, C p^2, H / p, W / p): the prediction of the next patches and the new state
        (``state`` None: the model's zero state)."""
        raise NotImplementedError

    def one_step(self, frames: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """Predictions of frame t + 1 at every step t, continuing from ``state`` (None: zeros). Running it frame by
        frame, passing the state on, gives the same result as one call.

        Returns:
            (predictions (B, T, C, H, W), state after the last frame).
        """
        self._check_frames(frames, "frames")
        if frames.shape[1] < 1:
            raise ValueError(f"frames must have at least one frame, got shape {tuple(frames.shape)}")
        patches = space_to_depth(frames, self.patch_size, name="frames")  # (B, T, C p^2, h, w)
        outputs = []
        for t in range(patches.shape[1]):
            out, state = self._step(patches[:, t], state, None)
            outputs.append(out)
        return depth_to_space(torch.stack(outputs, dim=1), self.patch_size, name="predictions"), state

    def forward(
        self,
        context: Tensor,
        horizon: int | None = None,
        targets: Tensor | None = None,
        teacher_forcing: Tensor | None = None,
        *,
        context_teacher_forcing: Tensor | None = None,
    ) -> Tensor:
        """Reads the context, then rolls out ``horizon`` frames, feeding each forecast (or true frame) back.

        Args:
            context_teacher_forcing: bool (T_in - 1,) or (B, T_in - 1), for reverse scheduled sampling: where False,
                context frame k + 1 is replaced by the model's prediction of it (None: the context as it is).
        """
        return self._rollout(context, horizon, targets, teacher_forcing, context_teacher_forcing, None)

    def _rollout(
        self,
        context: Tensor,
        horizon: int | None,
        targets: Tensor | None,
        teacher_forcing: Tensor | None,
        context_teacher_forcing: Tensor | None,
        record: list[Any] | None,
    ) -> Tensor:
        horizon, mask = self.check_forecast_arguments(
            context, horizon, targets, teacher_forcing, channels=self.config.in_channels
        )
        self._check_frames(context, "context")
        context_mask = self._check_context_mask(context_teacher_forcing, context)
        p = self.patch_size
        patches = space_to_depth(context, p, name="context")  # (B, T_in, C p^2, h, w)
        target_patches = None if targets is None or mask is None else space_to_depth(targets, p, name="targets")
        state: Any = None
        prediction = patches.new_zeros(0)
        for t in range(patches.shape[1]):
            frame = patches[:, t]
            if t > 0 and context_mask is not None:
                frame = torch.where(context_mask[:, t - 1].view(-1, 1, 1, 1), frame, prediction)
            prediction, state = self._step(frame, state, record)
        predictions = [prediction]
        for step in range(1, horizon):
            frame = next_input(prediction, step - 1, target_patches, mask)
            prediction, state = self._step(frame, state, record)
            predictions.append(prediction)
        return depth_to_space(torch.stack(predictions, dim=1), p, name="predictions")  # (B, horizon, C, H, W)

    # --------------------------------------------------------------------------------------------------- checks
    def _check_frames(self, frames: Tensor, name: str) -> None:
        channels, p = self.config.in_channels, self.patch_size
        if not isinstance(frames, Tensor) or frames.ndim != 5 or frames.shape[2] != channels:
            got = tuple(frames.shape) if isinstance(frames, Tensor) else type(frames).__name__
            raise ValueError(f"{name} must have shape (B, T, C={channels}, H, W), got {got}")
        if frames.shape[-2] % p or frames.shape[-1] % p:
            raise ValueError(
                f"{name} must have H and W divisible by patch_size={p}, got {frames.shape[-2]}x{frames.shape[-1]}"
            )
        if self.one_frame_size_because is not None:
            size = (self.config.height, self.config.width)
            if tuple(frames.shape[-2:]) != size:
                raise ValueError(
                    f"{name} must be {size[0]}x{size[1]} frames (H x W: {self.one_frame_size_because}), got "
                    f"{frames.shape[-2]}x{frames.shape[-1]}"
                )

    @staticmethod
    def _check_context_mask(mask: Tensor | None, context: Tensor) -> Tensor | None:
        """``context_teacher_forcing`` as (B, T_in - 1) bool on the context's device."""
        if mask is None:
            return None
        batch, steps = context.shape[:2]
        mask = torch.as_tensor(mask, dtype=torch.bool, device=context.device)
        if mask.shape == (steps - 1,):
            mask = mask.expand(batch, steps - 1)
        if mask.shape != (batch, steps - 1):
            raise ValueError(
                f"context_teacher_forcing must have shape ({steps - 1},) or ({batch}, {steps - 1}) (one entry per "
                f"context frame after the first), got {tuple(mask.shape)}"
            )
        return mask


def conv_macs(in_channels: int, out_channels: int, kernel_size: int) -> int:
    """Multiply-adds per output pixel of a convolution without groups (fvcore's FLOPs per pixel)."""
    return in_channels * out_channels * kernel_size**2
