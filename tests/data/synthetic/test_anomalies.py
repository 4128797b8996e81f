import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from convlstm.data.synthetic.anomalies import AnomalySequences
from convlstm.data.synthetic.bouncing_balls import render_balls


def _abnormal_samples(ds, kind, count=4):
    samples = []
    for i in range(len(ds)):
        if ds.is_abnormal(i):
            sample = ds.sample(i)
            if sample.kind == kind:
                samples.append(sample)
        if len(samples) == count:
            break
    assert samples, f"no {kind} sample drawn"
    return samples


def _expected_labels(sample):
    """Independent of the library: 1 from the onset on where the shown frame is not the normal one."""
    differs = [
        not np.allclose(a, b, atol=1e-3, rtol=0) for a, b in zip(sample.frames, sample.normal_frames, strict=True)
    ]
    return np.array([int(d and t >= sample.onset) for t, d in enumerate(differs)])


def test_train_split_is_normal_by_default():
    ds = AnomalySequences(num_sequences=20)
    for i in range(20):
        item = ds[i]
        assert item["kind"] == "normal"
        assert int(item["onset"]) == -1
        assert int(item["labels"].sum()) == 0


def test_exact_anomaly_fraction_and_normal_labels_are_zero():
    ds = AnomalySequences(split="test", anomaly_fraction=0.3, num_sequences=40)
    flags = [ds.is_abnormal(i) for i in range(40)]
    assert sum(flags) == 12
    for i in range(40):
        sample = ds.sample(i)
        assert (sample.kind != "normal") == flags[i]
        if sample.kind == "normal":
            assert sample.labels.sum() == 0
            assert np.array_equal(sample.frames, sample.normal_frames)


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("balls", "teleport"),
        ("balls", "stop"),
        ("balls", "reverse"),
        ("balls", "appear"),
        ("digits", "teleport"),
        ("digits", "stop"),
        ("digits", "reverse"),
        ("digits", "appear"),
        ("digits", "identity"),
    ],
)
def test_labels_mark_exactly_the_frames_that_differ_from_the_normal_continuation(source, kind):
    ds = AnomalySequences(split="test", source=source, kinds=[kind], anomaly_fraction=1.0, num_sequences=4)
    for sample in _abnormal_samples(ds, kind):
        assert sample.kind == kind
        onset = sample.onset
        assert ds.min_onset <= onset < ds.num_frames
        assert np.array_equal(sample.frames[:onset], sample.normal_frames[:onset])
        assert np.array_equal(sample.labels, _expected_labels(sample))
        assert sample.labels[onset] == 1
        assert sample.labels[:onset].sum() == 0


def test_ball_anomalies_follow_their_definition():
    ds = AnomalySequences(split="test", anomaly_fraction=1.0, num_sequences=30)
    speeds = np.linalg.norm(np.diff(ds.sample(0).normal_positions, axis=0), axis=-1)
    for kind in ("teleport", "stop", "reverse", "appear"):
        for s in _abnormal_samples(ds, kind, count=2):
            k, t0 = s.subject, s.onset
            step = np.linalg.norm(s.positions[t0, k] - s.positions[t0 - 1, k]) if kind != "appear" else None
            if kind == "teleport":
                assert step > 5 * speeds.max()  # far beyond any per-frame motion
            elif kind == "stop":
                assert np.allclose(s.positions[t0 - 1 :, k], s.positions[t0 - 1, k])
            elif kind == "reverse":
                before = s.normal_positions[t0 - 1, k] - s.normal_positions[t0 - 2, k] if t0 >= 2 else None
                after = s.positions[t0, k] - s.positions[t0 - 1, k]
                if before is not None:
                    assert np.dot(before, after) < 0
            elif kind == "appear":
                assert s.positions.shape[1] == s.normal_positions.shape[1] + 1
                assert np.isnan(s.positions[:t0, k]).all()
                assert not np.isnan(s.positions[t0:, k]).any()


def test_ball_frames_are_renderings_of_positions_inside_the_box():
    ds = AnomalySequences(split="val", anomaly_fraction=1.0, kinds=["appear"], num_sequences=3)
    s = ds.sample(2)
    assert np.allclose(s.normal_frames, render_balls(s.normal_positions, radius=1.2, resolution=30, box_size=10.0))
    shown = np.nan_to_num(s.positions, nan=-100.0)  # an absent ball renders nothing
    assert np.allclose(s.frames, render_balls(shown, radius=1.2, resolution=30, box_size=10.0))
    present = s.positions[~np.isnan(s.positions)]
    assert present.min() >= 1.2 - 1e-9
    assert present.max() <= 10.0 - 1.2 + 1e-9


def test_digit_anomalies_follow_their_definition():
    ds = AnomalySequences(split="test", source="digits", anomaly_fraction=1.0, num_sequences=40)
    for s in _abnormal_samples(ds, "stop", 2):
        assert np.allclose(s.positions[s.onset - 1 :, s.subject], s.positions[s.onset - 1, s.subject])
    for s in _abnormal_samples(ds, "reverse", 2):
        if s.onset >= 2:  # retraces: the frame after the turn sits where the digit was two frames before
            assert np.allclose(s.positions[s.onset, s.subject], s.positions[s.onset - 2, s.subject])
    for s in _abnormal_samples(ds, "teleport", 2):
        assert np.linalg.norm(s.positions[s.onset, s.subject] - s.normal_positions[s.onset, s.subject]) >= 14
    for s in _abnormal_samples(ds, "identity", 2):
        assert np.array_equal(s.positions, s.normal_positions)  # same motion, another digit


def test_item_layout_and_collate():
    ds = AnomalySequences(split="test", source="digits", num_sequences=6, context_frames=6, target_frames=4)
    item = ds[0]
    assert set(item) == {"context", "target", "labels", "kind", "onset"}
    assert item["context"].shape == (6, 1, 64, 64)
    assert item["target"].shape == (4, 1, 64, 64)
    assert item["labels"].shape == (10,)
    assert item["labels"].dtype == torch.int64
    batch = next(iter(DataLoader(ds, batch_size=6)))
    assert batch["labels"].shape == (6, 10)
    assert len(batch["kind"]) == 6
    assert sum(k != "normal" for k in batch["kind"]) == 3  # default test fraction 0.5


def test_reproducible():
    a = AnomalySequences(split="test", num_sequences=4, seed=1)
    b = AnomalySequences(split="test", num_sequences=4, seed=1)
    for i in range(4):
        assert torch.equal(a[i]["target"], b[i]["target"])
        assert torch.equal(a[i]["labels"], b[i]["labels"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kinds": ["identity"]}, "kinds"),
        ({"kinds": ["jump"]}, "kinds"),
        ({"source": "radar"}, "source"),
        ({"anomaly_fraction": 1.5}, "anomaly_fraction"),
        ({"min_onset": 0}, "min_onset"),
        ({"min_onset": 20}, "min_onset"),
        ({"context_frames": 1, "target_frames": 1}, "context_frames"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AnomalySequences(**kwargs)
