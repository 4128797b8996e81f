"""Video anomaly detection by prediction: regularity score (Liu et al. 2018) and frame-level ROC-AUC."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from convlstm.metrics._checks import check_no_nan, check_tensor
from convlstm.utils.checks import check_positive

__all__ = ["anomaly_aurocs", "cumulative_regularity", "frame_auroc", "regularity_score"]


def regularity_score(psnr: Tensor, video_ids: Tensor | None = None) -> Tensor:
    """Per-video min-max normalised PSNR of predicted frames: 1 = most regular (normal), 0 = least.

    S(t) = (P(t) - min P) / (max P - min P), min and max taken over the frames of the same video. A video whose
    frames all have the same PSNR scores 1 everywhere (nothing in it stands out).

    Args:
        psnr: PSNR of each predicted frame, any shape (e.g. (T,) for one video or (N,) for several); finite.
            Per-frame values come from ``psnr(pred, target, reduction="none")``.
        video_ids: Integer video id of each frame, psnr's shape; None treats all frames as one video.

    Returns:
        The regularity of each frame, psnr's shape, floating.
    """
    check_tensor(psnr, "psnr")
    if not psnr.is_floating_point():
        raise ValueError(f"psnr must be a floating point tensor, got dtype {psnr.dtype}")
    check_no_nan(psnr, "psnr")
    if not bool(torch.isfinite(psnr).all()):
        raise ValueError("psnr contains inf (a frame predicted exactly); cap the PSNR before normalising")
    if psnr.numel() == 0:
        raise ValueError("psnr is empty")
    if video_ids is None:
        groups = torch.zeros(psnr.numel(), dtype=torch.int64, device=psnr.device)
    else:
        check_tensor(video_ids, "video_ids")
        if video_ids.shape != psnr.shape:
            raise ValueError(f"video_ids must have psnr's shape {tuple(psnr.shape)}, got {tuple(video_ids.shape)}")
        if video_ids.is_floating_point() or video_ids.is_complex():
            raise ValueError(f"video_ids must be an integer tensor, got dtype {video_ids.dtype}")
        groups = torch.unique(video_ids.flatten().to(psnr.device), return_inverse=True)[1]
    values = psnr.flatten()
    n_groups = int(groups.max()) + 1
    low = values.new_full((n_groups,), torch.inf).scatter_reduce(0, groups, values, "amin")
    high = values.new_full((n_groups,), -torch.inf).scatter_reduce(0, groups, values, "amax")
    span = (high - low)[groups]
    flat = torch.where(span > 0, (values - low[groups]) / torch.where(span > 0, span, 1.0), 1.0)
    return flat.reshape(psnr.shape)


def cumulative_regularity(psnr: Tensor, *, max_psnr: float) -> Tensor:
    """Causal regularity of each frame: the lowest PSNR of its sequence so far, over ``max_psnr`` (1 = predicted
    exactly so far, lower = something was badly predicted at this frame or before).

    For labels that mark every frame from an anomaly's onset on (an object that jumped stays where it landed):
    after a jump or a reversal the motion obeys its law again and is as predictable as normal motion, so a score of
    the frame alone drops back; this one keeps the worst surprise. It uses one scale for every sequence (no
    per-sequence min-max as in [`regularity_score`][convlstm.metrics.regularity_score], which makes the worst frame of
    every normal sequence as anomalous as an anomaly's).

    Args:
        psnr: (N, T) PSNR of each predicted frame, sequences along dim 0 and time along dim 1; finite, at most
            ``max_psnr``.
        max_psnr: the cap the PSNR was clipped to (an exact prediction).

    Returns:
        (N, T) floating, in [0, 1] for PSNR in [0, max_psnr].
    """
    check_tensor(psnr, "psnr")
    if psnr.ndim != 2 or not psnr.is_floating_point():
        raise ValueError(f"psnr must be a floating (N, T) tensor, got shape {tuple(psnr.shape)} dtype {psnr.dtype}")
    check_no_nan(psnr, "psnr")
    check_positive("max_psnr", max_psnr)
    if not bool((psnr <= max_psnr).all()):
        raise ValueError(f"psnr must be capped at max_psnr={max_psnr!r}, got a maximum of {float(psnr.max())}")
    return torch.cummin(psnr, dim=1).values / max_psnr


def frame_auroc(scores: Tensor, labels: Tensor, *, higher_is_anomalous: bool = True) -> Tensor:
    """Frame-level area under the ROC curve of anomaly scores, pooled over all frames given.

    Only the order of the scores matters (ties count half), so any monotone score works: pass
    ``1 - regularity_score(...)``, or the regularity itself with ``higher_is_anomalous=False``.

    Args:
        scores: One score per frame, any shape; flattened.
        labels: 1/True for an anomalous frame, 0/False for a normal one, scores' shape; both kinds must occur.
        higher_is_anomalous: Whether a larger score means more anomalous.

    Returns:
        0-d float tensor in [0, 1].
    """
    from torchmetrics.functional.classification import binary_auroc  # lazy: torchmetrics imports matplotlib

    check_tensor(scores, "scores")
    check_tensor(labels, "labels")
    if scores.shape != labels.shape:
        raise ValueError(
            f"scores and labels must have the same shape, got scores {tuple(scores.shape)} and "
            f"labels {tuple(labels.shape)}"
        )
    check_no_nan(scores, "scores")
    if labels.is_floating_point():
        check_no_nan(labels, "labels")
    flat_labels = labels.flatten().to(torch.int64)
    if not bool(((labels == 0) | (labels == 1)).all()):
        raise ValueError("labels must be binary (0/1 or bool)")
    positives = int(flat_labels.sum())
    if positives == 0 or positives == flat_labels.numel():
        raise ValueError(
            f"frame_auroc needs both normal and anomalous frames, got {positives} anomalous of {flat_labels.numel()}"
        )
    # A set-level score on one value per frame: the CPU is fast enough and has float64 everywhere.
    flat_labels = flat_labels.cpu()
    flat_scores = scores.detach().flatten().cpu()
    if not higher_is_anomalous:
        flat_scores = -flat_scores
    # Dense ranks scaled into [0, 1] keep order and ties exactly; torchmetrics would squash raw scores outside
    # [0, 1] through a sigmoid, which rounds large scores (e.g. PSNR in dB) to 1.0 and creates false ties.
    ranks = torch.unique(flat_scores, return_inverse=True)[1].to(torch.float64)
    ranks = ranks / max(float(ranks.max()), 1.0)
    return binary_auroc(ranks, flat_labels)


def anomaly_aurocs(
    regularity: Tensor, labels: Tensor, kinds: list[str], onsets: Tensor, *, onsets_too: bool = True
) -> dict[str, Any]:
    """Frame-level ROC-AUCs of a regularity score (low: anomalous), overall and broken down by anomaly kind.

    Args:
        regularity: (N, T) scores, NaN where a frame has no score.
        labels: (N, T) 1 for an abnormal frame.
        kinds: (N,) the kind of each sequence ("normal" for normal ones, "unknown" where not known).
        onsets: (N,) the first abnormal frame of each sequence, -1 if normal.
        onsets_too: also the onset-frame AUROCs (a per-frame score's; a cumulative one only repeats its frames').

    Returns:
        ``auroc``; with normal sequences present, ``auroc_<kind>`` per kind and, with ``onsets_too``,
        ``auroc_onset`` and ``auroc_onset_<kind>``, onset frames against normal sequences' frames. A value is None
        where only one class is present.
    """
    scored = ~torch.isnan(regularity)

    def auroc(rows: Tensor, positive: Tensor, counted: Tensor) -> float | None:
        keep = counted & scored & rows[:, None]
        chosen = positive[keep]
        if chosen.numel() == 0 or bool(chosen.all()) or not bool(chosen.any()):
            return None  # one class only: no ROC curve
        return float(frame_auroc(regularity[keep], chosen.to(torch.int64), higher_is_anomalous=False))

    everything = torch.ones_like(labels, dtype=torch.bool)
    normal = torch.tensor([k == "normal" for k in kinds])
    steps = torch.arange(labels.shape[1])
    onset_frame = steps[None, :] == onsets[:, None]
    onset_or_normal = onset_frame | normal[:, None]
    out: dict[str, Any] = {"auroc": auroc(torch.ones_like(normal), labels.bool(), everything)}
    if normal.any():
        if onsets_too:
            out["auroc_onset"] = auroc(torch.ones_like(normal), onset_frame, onset_or_normal)
        for kind in sorted(set(kinds) - {"normal", "unknown"}):
            rows = normal | torch.tensor([k == kind for k in kinds])
            out[f"auroc_{kind}"] = auroc(rows, labels.bool(), everything)
            if onsets_too:
                out[f"auroc_onset_{kind}"] = auroc(rows, onset_frame, onset_or_normal)
    return out
