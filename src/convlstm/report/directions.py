"""Which way is better for a score: lower for errors and losses, higher for skill scores."""

from __future__ import annotations

from typing import Literal

__all__ = ["ARROWS", "Direction", "metric_direction"]

Direction = Literal["lower", "higher"]

#: The arrow the report writes beside a score's name: which way is better.
ARROWS: dict[Direction, str] = {"lower": "\N{DOWNWARDS ARROW}", "higher": "\N{UPWARDS ARROW}"}

_LOWER_PREFIXES = ("mse", "mae", "rmse", "b_mse", "b_mae", "bce", "far", "loss", "lpips", "brier", "crps")
_HIGHER_PREFIXES = (
    *("psnr", "ssim", "csi", "pod", "hss", "fss", "correlation", "auroc", "frame_auroc", "roc_auc"),
    *("miou", "mean_dice", "dice", "iou", "accuracy", "regularity"),
)


def metric_direction(name: str) -> Direction | None:
    """``"lower"`` or ``"higher"`` is better for a metric name, ``None`` when unknown.

    The name may carry a stage prefix (``"val/"``), a threshold (``"csi@0.5"``) and the ``"_by_lead_time"`` suffix.

    Examples:
        >>> metric_direction("mse_per_frame"), metric_direction("csi@0.5_by_lead_time"), metric_direction("fps")
        ('lower', 'higher', None)
    """
    base = name.rsplit("/", 1)[-1].split("@", 1)[0].lower().removesuffix("_by_lead_time")
    if base.endswith("loss"):
        return "lower"
    for prefix in _LOWER_PREFIXES:
        if base == prefix or base.startswith(prefix + "_"):
            return "lower"
    for prefix in _HIGHER_PREFIXES:
        if base == prefix or base.startswith(prefix + "_"):
            return "higher"
    return None
