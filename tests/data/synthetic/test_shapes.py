import numpy as np
import pytest
import torch

from convlstm.data.synthetic.shapes import MovingShapesSegmentation


def test_item_layout():
    ds = MovingShapesSegmentation(num_sequences=3)
    item = ds[0]
    assert set(item) == {"context", "labels"}
    assert item["context"].shape == (16, 1, 64, 64)
    assert item["context"].dtype == torch.float32
    assert item["labels"].shape == (16, 64, 64)
    assert item["labels"].dtype == torch.int64
    assert float(item["context"].min()) >= 0.0
    assert float(item["context"].max()) <= 1.0
    assert set(item["labels"].unique().tolist()) <= {0, 1, 2}
    assert len(MovingShapesSegmentation()) == 2000


def test_three_classes_and_custom_sizes():
    ds = MovingShapesSegmentation(num_classes=3, context_frames=8, image_size=48, objects_range=(3, 3))
    seen = set()
    for i in range(10):
        sample = ds.generate(ds.rng(i))
        assert sample.frames.shape == (8, 48, 48)
        assert len(sample.classes) == 3
        seen |= set(np.unique(sample.labels).tolist())
    assert seen == {0, 1, 2, 3}


def test_labels_persist_while_an_object_is_hidden():
    ds = MovingShapesSegmentation(
        objects_range=(1, 1), hidden_prob=1.0, occluder=False, noise_std=0.0, flicker_prob=0.0, num_sequences=5
    )
    for i in range(5):
        s = ds.generate(ds.rng(i))
        hidden = ~s.visible[:, 0]
        assert hidden.any()
        for t in np.flatnonzero(hidden):
            assert (s.labels[t] == s.classes[0]).sum() > 0  # labelled...
            assert np.allclose(s.frames[t], 0.2)  # ...but invisible: only background


def _single_object_features(num):
    """Per-sequence features of one-object sequences: (class, area, brightness in mask, mean centroid step)."""
    ds = MovingShapesSegmentation(objects_range=(1, 1), occluder=False, num_sequences=num, seed=11)
    rows = []
    for i in range(num):
        item = ds[i]
        frames, labels = item["context"][:, 0].numpy(), item["labels"].numpy()
        cls = int(labels.max())
        fg = labels > 0  # class-agnostic: a per-frame observer may know where the object is, not what it is
        area = fg.sum(axis=(1, 2)).mean()
        brightness = np.mean([frames[t][fg[t]].mean() for t in range(len(fg))])
        centroids = np.array([np.argwhere(fg[t]).mean(axis=0) for t in range(len(fg))])
        step = np.linalg.norm(np.diff(centroids, axis=0), axis=1).mean()
        rows.append((cls, area, brightness, step))
    return np.array(rows)


def _best_threshold_accuracy(feature, classes):
    """Accuracy of the best single threshold (either direction) separating class 1 from class 2."""
    best = 0.0
    for cut in np.unique(feature):
        predicted = np.where(feature > cut, 2, 1)
        accuracy = (predicted == classes).mean()
        best = max(best, accuracy, 1 - accuracy)
    return best


def test_single_frames_cannot_tell_classes_apart_but_motion_can():
    features = _single_object_features(300)
    classes = features[:, 0].astype(int)
    assert min((classes == 1).sum(), (classes == 2).sum()) > 100
    area, brightness, step = features[:, 1], features[:, 2], features[:, 3]
    # Appearance: equal statistics per class (difference of means small against the spread).
    for feature in (area, brightness):
        gap = abs(feature[classes == 1].mean() - feature[classes == 2].mean())
        assert gap < 0.25 * feature.std()
        assert _best_threshold_accuracy(feature, classes) < 0.62
    # Motion: the displacement between frames separates the classes.
    assert _best_threshold_accuracy(step, classes) > 0.97
    assert step[classes == 2].mean() > 2 * step[classes == 1].mean()


def test_reproducible():
    a = MovingShapesSegmentation(num_sequences=2, seed=2)
    b = MovingShapesSegmentation(num_sequences=2, seed=2)
    assert torch.equal(a[1]["context"], b[1]["context"])
    assert torch.equal(a[1]["labels"], b[1]["labels"])
    assert not torch.equal(a[0]["labels"], a[1]["labels"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_classes": 1}, "num_classes"),
        ({"num_classes": 4}, "num_classes"),
        ({"objects_range": (3, 2)}, "objects_range"),
        ({"size_range": (0, 3)}, "size_range"),
        ({"image_size": 16, "size_range": (4, 7)}, "image_size"),
        ({"flicker_prob": 1.5}, "flicker_prob"),
        ({"context_frames": 1}, "context_frames"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MovingShapesSegmentation(**kwargs)
