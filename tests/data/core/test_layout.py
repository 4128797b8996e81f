import functools
import pickle
from typing import Any

import numpy as np
import pytest

from convlstm.data.core.layout import LayoutArray, LazyFileArray, layout_recordings, parse_layout, to_tchw


class SpySource:
    """An array that records which indices were read."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        self.reads: list[Any] = []
        self.shape = array.shape

    def __getitem__(self, index: Any) -> np.ndarray:
        self.reads.append(index)
        return self.array[index]


@pytest.mark.parametrize(
    ("layout", "make"),
    [
        ("THWC", lambda x: np.einsum("tchw->thwc", x)),
        ("CTHW", lambda x: np.einsum("tchw->cthw", x)),
        ("TCHW", lambda x: x),
        ("HWTC", lambda x: np.einsum("tchw->hwtc", x)),
    ],
)
def test_to_tchw_inverts_the_stored_order(layout: str, make: Any) -> None:
    x = np.random.default_rng(0).random((5, 3, 4, 6))
    np.testing.assert_array_equal(to_tchw(make(x), layout), x)


def test_to_tchw_adds_a_channel() -> None:
    x = np.random.default_rng(0).random((4, 6, 5))  # (H, W, T)
    out = to_tchw(x, "hwt")
    assert out.shape == (5, 1, 4, 6)
    np.testing.assert_array_equal(out[2, 0], x[:, :, 2])


@pytest.mark.parametrize("layout", ["THX", "TTHW", "NCHW", "THW"])
def test_bad_layouts(layout: str) -> None:
    with pytest.raises(ValueError, match="layout"):
        parse_layout(layout, ndim=4, source="file.h5")


def test_layout_array_reads_only_the_window() -> None:
    stored = np.random.default_rng(1).random((3, 8, 8, 20))  # SEVIR-like (N, H, W, T)
    spy = SpySource(stored)
    recordings = layout_recordings(spy, "NHWT", name="sevir.h5")
    assert [r.name for r in recordings] == ["sevir.h5[0]", "sevir.h5[1]", "sevir.h5[2]"]
    window = recordings[1].frames[slice(4, 9)]
    np.testing.assert_array_equal(window[:, 0], np.moveaxis(stored[1, :, :, 4:9], -1, 0))
    assert spy.reads == [(1, slice(None), slice(None), slice(4, 9))]


def test_layout_array_without_n_axis() -> None:
    stored = np.zeros((6, 4, 5, 2))
    (recording,) = layout_recordings(stored, "THWC", name="clip.npy")
    assert recording.frames.shape == (6, 2, 4, 5)
    with pytest.raises(ValueError, match="recording index"):
        LayoutArray(stored, "THWC", recording=0)


def test_lazy_file_array_reopens_after_pickling(tmp_path: Any) -> None:
    path = tmp_path / "x.npy"
    np.save(path, np.arange(24).reshape(4, 6))
    array = LazyFileArray(path, functools.partial(np.load, mmap_mode="r"))
    assert array.shape == (4, 6) and array.dtype == np.int64
    assert isinstance(array._open(), np.memmap)
    assert array.__getstate__()["_array"] is None  # the open memmap does not travel to worker processes
    clone = pickle.loads(pickle.dumps(array))
    np.testing.assert_array_equal(clone[1:3], np.arange(24).reshape(4, 6)[1:3])
