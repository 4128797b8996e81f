"""SegmentationTask with a real Trainer: learning a threshold labelling, logged scores, checkpoints."""

import lightning as L
import pytest
import torch

from convlstm.tasks import OptimizationConfig, SegmentationTask
from tests.tasks.tiny import QUIET_TRAINER, ItemList, TinySegmenter, loader


def _bright_pixels(n: int, *, frames: int = 3, size: int = 8, seed: int = 0) -> ItemList:
    """Label 1 where a pixel is brighter than 0.5: learnable per pixel."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for _ in range(n):
        x = torch.rand(frames, 1, size, size, generator=g)
        items.append({"context": x, "labels": (x[:, 0] > 0.5).long()})
    return ItemList(items)


def _confusion(pred: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    matrix = torch.zeros(k, k, dtype=torch.int64)
    for t, p in zip(labels.flatten().tolist(), pred.flatten().tolist(), strict=True):
        matrix[t, p] += 1
    return matrix


def test_learns_and_logs_miou_and_dice():
    torch.manual_seed(0)
    train, val = _bright_pixels(16, seed=0), _bright_pixels(6, seed=1)
    task = SegmentationTask(TinySegmenter(), num_classes=2, optimization=OptimizationConfig(lr=2e-2))
    trainer = L.Trainer(max_steps=60, enable_checkpointing=False, **QUIET_TRAINER)
    before = trainer.validate(task, loader(val), verbose=False)[0]
    trainer.fit(task, loader(train, shuffle=True))
    after = trainer.validate(task, loader(val), verbose=False)[0]
    assert after["val/loss"] < 0.6 * before["val/loss"]
    assert after["val/miou"] > 0.8
    for name in ("val/mean_dice", "val/iou/0", "val/iou/1", "val/dice/1", "val/miou@t1", "val/mean_dice@t3"):
        assert name in after
    # Independent computation from the model's predictions.
    task.eval()
    frames = torch.stack([item["context"] for item in val.items])
    labels = torch.stack([item["labels"] for item in val.items])
    with torch.no_grad():
        pred = task.model(frames)[0].argmax(2)
    matrix = _confusion(pred, labels, 2).double()
    tp = matrix.diag()
    iou = tp / (matrix.sum(0) + matrix.sum(1) - tp)
    dice = 2 * tp / (matrix.sum(0) + matrix.sum(1))
    assert after["val/miou"] == pytest.approx(float(iou.mean()), rel=1e-6)
    assert after["val/mean_dice"] == pytest.approx(float(dice.mean()), rel=1e-6)
    assert after["val/iou/1"] == pytest.approx(float(iou[1]), rel=1e-6)
    first = _confusion(pred[:, 0], labels[:, 0], 2).double()
    tp0 = first.diag()
    assert after["val/miou@t1"] == pytest.approx(float((tp0 / (first.sum(0) + first.sum(1) - tp0)).mean()), rel=1e-6)
    predicted = trainer.predict(task, loader(val))
    assert predicted[0].shape == (4, 3, 8, 8) and predicted[0].dtype == torch.int64


def test_ignore_index_pixels_do_not_count():
    val = _bright_pixels(4, seed=2)
    ignored = ItemList([dict(item) for item in val.items])
    for item in ignored.items:
        item["labels"] = item["labels"].clone()
        item["labels"][:, :4] = 255
    torch.manual_seed(0)
    model = TinySegmenter()
    task = SegmentationTask(model, num_classes=2, ignore_index=255)
    logged = L.Trainer(**QUIET_TRAINER).validate(task, loader(ignored), verbose=False)[0]
    # Scores count only the pixels whose label is not 255.
    matrix = torch.zeros(2, 2, dtype=torch.int64)
    with torch.no_grad():
        for item in ignored.items:
            pred = model(item["context"][None])[0].argmax(2)[0]
            keep = item["labels"] != 255
            matrix += _confusion(pred[keep], item["labels"][keep], 2)
    m = matrix.double()
    tp = m.diag()
    assert logged["val/miou"] == pytest.approx(float((tp / (m.sum(0) + m.sum(1) - tp)).mean()), rel=1e-6)
    assert int(matrix.sum()) == 4 * 3 * 4 * 8  # half of every frame


def test_checkpoint_roundtrip(tmp_path):
    task = SegmentationTask(TinySegmenter(), num_classes=2, class_weights=(1.0, 2.0))
    trainer = L.Trainer(max_steps=2, **{**QUIET_TRAINER, "enable_checkpointing": False})
    trainer.fit(task, loader(_bright_pixels(8)))
    path = tmp_path / "seg.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["hyper_parameters"]["num_classes"] == 2
    assert checkpoint["hyper_parameters"]["task"] == "SegmentationTask"
    rebuilt = SegmentationTask.from_checkpoint(path, model=TinySegmenter())
    assert rebuilt.hparams["class_weights"] == (1.0, 2.0)
    assert torch.equal(rebuilt.model.head.weight, task.model.head.weight)


def test_bad_arguments_and_outputs():
    with pytest.raises(ValueError, match="num_classes"):
        SegmentationTask(TinySegmenter(), num_classes=1)
    with pytest.raises(ValueError, match="class_weights"):
        SegmentationTask(TinySegmenter(), num_classes=2, class_weights=(1.0,))
    with pytest.raises(ValueError, match="ce_weight"):
        SegmentationTask(TinySegmenter(), num_classes=2, ce_weight=0.0, dice_weight=0.0)
    task = SegmentationTask(TinySegmenter(num_classes=3), num_classes=2)
    with pytest.raises(ValueError, match="logits"):
        task(torch.rand(1, 2, 1, 4, 4))
    with pytest.raises(ValueError, match="'labels'"):
        SegmentationTask(TinySegmenter(), num_classes=2).training_step({"context": torch.rand(1, 2, 1, 4, 4)}, 0)
