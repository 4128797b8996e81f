"""anomaly_aurocs on anomaly data: the overall ROC-AUC, and its split into onset frames and kinds."""

import math

import pytest
import torch

from convlstm.metrics import anomaly_aurocs


def _case() -> tuple[torch.Tensor, torch.Tensor, list[str], torch.Tensor]:
    """Six sequences of 8 frames: 2 normal, 2 teleports and 2 stops with onset 5, labelled from the onset on.
    The score dips only at a teleport's onset (as a next-frame predictor's does); a stop never shows."""
    kinds = ["normal", "normal", "teleport", "teleport", "stop", "stop"]
    onsets = torch.tensor([-1, -1, 5, 5, 5, 5])
    labels = torch.zeros(6, 8, dtype=torch.int64)
    labels[2:, 5:] = 1
    generator = torch.Generator().manual_seed(0)
    regularity = 0.5 + 0.5 * torch.rand(6, 8, generator=generator)
    regularity[2:4, 5] = 0.0
    regularity[:, :2] = math.nan  # frames without a prediction
    return regularity, labels, kinds, onsets


def test_onset_and_kind_scores_separate_what_prediction_error_sees() -> None:
    scores = anomaly_aurocs(*_case())
    assert scores["auroc_onset_teleport"] == pytest.approx(1.0)
    # A stop's onset frame scores like any normal frame: chance level, not a perfect detection.
    assert scores["auroc_onset_stop"] < 0.9
    # Teleports' later frames are labelled abnormal but score normally, so the overall score is far below 1.
    assert scores["auroc_teleport"] < scores["auroc_onset_teleport"]
    assert 0.0 < scores["auroc"] < 1.0
    assert set(scores) == {
        "auroc",
        "auroc_onset",
        "auroc_teleport",
        "auroc_onset_teleport",
        "auroc_stop",
        "auroc_onset_stop",
    }


def test_overall_score_equals_one_pooled_computation() -> None:
    regularity, labels, kinds, onsets = _case()
    scored = ~torch.isnan(regularity)
    anomalous, normal = (1 - regularity)[scored & (labels == 1)], (1 - regularity)[scored & (labels == 0)]
    # The Mann-Whitney statistic, ties counted half: an independent computation of the ROC-AUC.
    wins = (anomalous[:, None] > normal[None, :]).double().mean()
    ties = (anomalous[:, None] == normal[None, :]).double().mean()
    greater = wins + 0.5 * ties
    assert anomaly_aurocs(regularity, labels, kinds, onsets)["auroc"] == pytest.approx(float(greater), abs=1e-6)


def test_without_normal_sequences_only_the_overall_score() -> None:
    regularity, labels, kinds, onsets = _case()
    scores = anomaly_aurocs(regularity[2:], labels[2:], kinds[2:], onsets[2:])
    assert set(scores) == {"auroc"}


def test_without_onsets_only_the_label_scores() -> None:
    scores = anomaly_aurocs(*_case(), onsets_too=False)
    assert set(scores) == {"auroc", "auroc_teleport", "auroc_stop"}
    assert scores["auroc_teleport"] == anomaly_aurocs(*_case())["auroc_teleport"]
