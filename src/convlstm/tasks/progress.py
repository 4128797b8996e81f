"""The progress bar of a fit: Lightning's, with an epoch count that makes sense for runs limited by time or steps."""

from __future__ import annotations

from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar
from lightning.pytorch.callbacks.progress.progress_bar import ProgressBar
from lightning.pytorch.utilities.imports import _RICH_AVAILABLE

__all__ = ["epoch_description", "make_progress_bar"]


def epoch_description(current_epoch: int, max_epochs: int | None, max_steps: int, max_minutes: float | None) -> str:
    """ "Epoch 3/9" where the run has a number of epochs; otherwise the epoch and the limit that will stop the run.

    Lightning shows "Epoch 15/-2" for a run without an epoch limit (it stores max_epochs=-1 there).
    """
    if max_epochs is not None and max_epochs > 0:
        return f"Epoch {current_epoch}/{max_epochs - 1}"
    limits = []
    if max_minutes is not None:
        limits.append(f"{max_minutes:g} min")
    if max_steps > 0:
        limits.append(f"{max_steps} steps")
    return f"Epoch {current_epoch}" + (f" (stops at {' or '.join(limits)})" if limits else "")


class _RichRunProgressBar(RichProgressBar):
    """Lightning's rich progress bar with `epoch_description` as the training bar's label."""

    def __init__(self, max_minutes: float | None) -> None:
        super().__init__()
        self.max_minutes = max_minutes

    def _get_train_description(self, current_epoch: int) -> str:
        trainer = self.trainer
        description = epoch_description(current_epoch, trainer.max_epochs, trainer.max_steps, self.max_minutes)
        # Padded as Lightning pads it: labels of unequal length make the bars flicker.
        return f"{description:{len(self.validation_description)}}"


def make_progress_bar(max_minutes: float | None) -> ProgressBar:
    """The rich progress bar where ``rich`` is installed (Lightning's choice too), else Lightning's tqdm bar, which
    shows no epoch total."""
    return _RichRunProgressBar(max_minutes) if _RICH_AVAILABLE else TQDMProgressBar()
