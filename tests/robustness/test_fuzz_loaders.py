"""Files with random (and randomly broken) contents, written into a temporary folder and read by the loaders:
each either gives windows of the documented shape with finite float32 values, or raises a ValueError (or
FileNotFoundError) whose message names the file; never another exception, never a silent conversion of strings,
dates or complex numbers into frames. A file that holds enough valid frames must be read."""

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convlstm.data import HDF5Sequences, ImageFolderSequences, NumpySequences

FUZZ = settings(max_examples=40, deadline=5000, suppress_health_check=[HealthCheck.too_slow], derandomize=True)

#: A layout per rank; rank 2 lacks T and rank 6 has an unknown axis: both must be refused by name.
LAYOUTS = {2: "HW", 3: "THW", 4: "TCHW", 5: "NTCHW", 6: "NTCHWX"}
DTYPES = ["float32", "float64", "float16", "uint8", "int64", "bool", "complex64", "<U2", "datetime64[s]", "object"]


@contextlib.contextmanager
def fresh_folder() -> Iterator[Path]:
    """One new folder per Hypothesis example (a function-scoped tmp_path would be shared by all of them)."""
    with tempfile.TemporaryDirectory(prefix="fuzz_loaders_") as name:
        yield Path(name)


@st.composite
def arrays(draw: st.DrawFn) -> np.ndarray:
    """Mostly (N, T, C, H, W) arrays a loader can use; sometimes another rank, empty axes, odd dtypes, NaN/inf."""
    ndim = draw(st.sampled_from([5] * 5 + [2, 3, 4, 6]))
    shape = [draw(st.integers(0 if draw(st.integers(0, 9)) == 0 else 1, 5)) for _ in range(ndim)]
    dtype = draw(st.sampled_from(["float32"] * 5 + DTYPES))
    if dtype == "object":
        return np.array([[1, "a"]], dtype=object)
    values = np.random.default_rng(draw(st.integers(0, 2**16))).random(shape) * 3
    array = values.astype(dtype) if dtype not in ("<U2", "datetime64[s]") else values.astype(int).astype(dtype)
    if array.size and array.dtype.kind == "f" and draw(st.booleans()):
        array.flat[draw(st.integers(0, array.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    return array


def _assert_names_the_file(error: Exception, path: Path) -> None:
    # "no recording ... among 0 given": an empty file set, nothing to name.
    assert str(path) in str(error) or path.name in str(error) or "no recording" in str(error), str(error)


def _refused(error: Exception, path: Path, *, allowed: bool) -> None:
    """A refusal must name the file, and may only come for a file that is wrong."""
    assert allowed, f"valid frames were refused: {error}"
    _assert_names_the_file(error, path)


def readable(array: np.ndarray, frames_needed: int, *, nan_allowed: bool) -> bool:
    """Whether ``array`` is frames a loader must read: a known layout (THW, TCHW, NTCHW), no empty axis, real
    numbers, at least one window's worth of frames, and finite values unless NaN is masked."""
    if array.ndim not in (3, 4, 5) or array.size == 0 or array.dtype.kind not in "biuf":
        return False
    frames = array.shape[1] if array.ndim == 5 else array.shape[0]
    return frames >= frames_needed and (nan_allowed or array.dtype.kind != "f" or bool(np.isfinite(array).all()))


def _check_dataset(make: Any, path: Path, context: int, target: int, *, must_work: bool) -> None:
    """Builds the dataset and reads every window, accepting a ValueError that names ``path`` unless the file is
    one that ``must_work``."""
    try:
        dataset = make()
        items = [dataset[i] for i in range(len(dataset))]
    except (ValueError, FileNotFoundError) as error:
        _refused(error, path, allowed=not must_work)
        return
    assert items
    for item in items:
        assert item["context"].shape[0] == context and item["target"].shape[0] == target
        assert item["context"].dtype == torch.float32 and item["context"].ndim == 4
        assert min(item["context"].shape) > 0
        assert bool(torch.isfinite(item["context"]).all()) and bool(torch.isfinite(item["target"]).all())


@FUZZ
@given(array=arrays(), context=st.integers(1, 3), target=st.integers(0, 2), policy=st.sampled_from(["raise", "mask"]))
def test_numpy_files(array: np.ndarray, context: int, target: int, policy: str) -> None:
    with fresh_folder() as folder:
        path = folder / "data.npy"
        np.save(path, array, allow_pickle=True)
        layout = LAYOUTS[array.ndim]

        def make() -> NumpySequences:
            return NumpySequences(
                path, layout=layout, split="all", context_frames=context, target_frames=target, nan_policy=policy
            )

        must_work = readable(array, context + target, nan_allowed=policy == "mask")
        _check_dataset(make, path, context, target, must_work=must_work)


@FUZZ
@given(
    junk=st.sampled_from(["random", "truncated", "empty", "text", "pickle", "npz_random", "npz_truncated"]),
    seed=st.integers(0, 2**16),
    cut=st.floats(0.0, 1.0),
)
def test_broken_numpy_files(junk: str, seed: int, cut: float) -> None:
    with fresh_folder() as folder:
        suffix = ".npz" if junk.startswith("npz") else ".npy"
        path = folder / f"broken{suffix}"
        good = folder / f"good{suffix}"
        frames = np.random.default_rng(seed).random((2, 4, 1, 3, 3)).astype(np.float32)
        np.savez(good, frames=frames) if suffix == ".npz" else np.save(good, frames)
        data = good.read_bytes()
        contents = {
            "random": os.urandom(1 + seed % 500),
            "truncated": data[: int(len(data) * cut)],
            "empty": b"",
            "text": b"frames: [1, 2, 3]\n",
            "pickle": b"\x80\x04\x95" + os.urandom(40),
            "npz_random": os.urandom(1 + seed % 500),
            "npz_truncated": data[: int(len(data) * cut)],
        }[junk]
        path.write_bytes(contents)
        if contents == data:  # a cut at 100 % keeps the file whole
            return

        def make() -> NumpySequences:
            return NumpySequences(path, layout="NTCHW", split="all", context_frames=2, target_frames=1)

        with pytest.raises(ValueError, match=re.escape(str(path))):
            make()[0]
        skipping = NumpySequences([path, good], layout="NTCHW", split="all", context_frames=2, target_frames=1,
                                  skip_invalid=True)  # fmt: skip
        assert len(skipping) == 4  # the broken file is left out (and logged), the good one read


@FUZZ
@given(
    array=arrays(),
    junk=st.sampled_from([False] * 5 + [True]),
    key=st.sampled_from(["frames"] * 4 + ["missing", "group"]),
)
def test_hdf5_files(array: np.ndarray, junk: bool, key: str) -> None:
    with fresh_folder() as folder:
        path = folder / "data.h5"
        if junk:
            path.write_bytes(os.urandom(64))
        else:
            with h5py.File(path, "w") as file:
                file.create_group("group")
                if array.dtype.kind in "biuf":
                    file["frames"] = array
                else:
                    file["frames"] = np.zeros((1, 4, 1, 2, 2), np.float32) if array.dtype.kind != "U" else [b"ab"]
        layout = LAYOUTS[array.ndim]

        def make() -> HDF5Sequences:
            return HDF5Sequences(path, dataset=key, layout=layout, split="all", context_frames=2, target_frames=1)

        must_work = not junk and key == "frames" and readable(array, 3, nan_allowed=False)
        _check_dataset(make, path, 2, 1, must_work=must_work)


@FUZZ
@given(
    frames=st.lists(st.sampled_from(["png"] * 4 + ["png_small", "junk", "empty", "txt"]), min_size=0, max_size=6),
    skip=st.booleans(),
)
def test_image_folders(frames: list[str], skip: bool) -> None:
    from PIL import Image

    with fresh_folder() as folder:
        sequence = folder / "root" / "walk"
        sequence.mkdir(parents=True)
        for index, kind in enumerate(frames):
            path = sequence / f"frame_{index}.png"
            if kind == "png":
                Image.fromarray(np.full((6, 6), 10 * index, np.uint8)).save(path)
            elif kind == "png_small":
                Image.fromarray(np.zeros((4, 4), np.uint8)).save(path)
            elif kind == "junk":
                path.write_bytes(os.urandom(30))
            elif kind == "empty":
                path.write_bytes(b"")
            else:
                (sequence / f"notes_{index}.txt").write_text("not a frame")

        def make() -> ImageFolderSequences:
            return ImageFolderSequences(
                folder / "root", split="all", context_frames=2, target_frames=1, skip_invalid=skip
            )

        # Frames of one size and files that are not frames (ignored): enough for a window of 2 + 1 must be read.
        must_work = set(frames) <= {"png", "txt"} and frames.count("png") >= 3
        _check_dataset(make, sequence, 2, 1, must_work=must_work)


def test_a_refused_valid_file_fails_the_fuzz_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fuzz tests can fail: a loader that refuses a valid file, naming it, is caught."""
    init = NumpySequences.__init__

    def refuses_one_frame_contexts(self: NumpySequences, root: Any, **kwargs: Any) -> None:
        if kwargs.get("context_frames") == 1:
            raise ValueError(f"{root}: context_frames=1 refused, a planted bug with a clear message")
        init(self, root, **kwargs)

    monkeypatch.setattr(NumpySequences, "__init__", refuses_one_frame_contexts)
    with pytest.raises(AssertionError, match="valid frames were refused"):
        test_numpy_files()


@pytest.mark.parametrize(
    ("arguments", "match"),
    [
        ({"context_frames": "2"}, "context_frames must be an int"),
        ({"target_frames": 1.5}, "target_frames must be an int"),
        ({"stride": 0}, "stride must be an int >= 1, got 0"),
        ({"context_frames": 0}, "context_frames must be an int >= 1, got 0"),
        ({"layout": 5}, "layout for .* must be a string"),
        ({"layout": "NTXHW"}, "unknown letters"),
        ({"value_scale": float("nan")}, "value_scale must be a finite number"),
        ({"nan_policy": "ignore"}, "nan_policy must be"),
        ({"split": "holdout"}, "holdout"),
    ],
)
def test_bad_arguments_name_themselves(tmp_path: Path, arguments: dict[str, Any], match: str) -> None:
    np.save(tmp_path / "ok.npy", np.zeros((4, 4, 1, 3, 3), np.float32))
    settings_: dict[str, Any] = {"layout": "NTCHW", "split": "all", "context_frames": 2, "target_frames": 1}
    with pytest.raises(ValueError, match=match):
        NumpySequences(tmp_path / "ok.npy", **{**settings_, **arguments})


def test_a_missing_file_is_a_file_not_found_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.npy"):
        NumpySequences(tmp_path / "nope.npy", layout="NTCHW", split="all", context_frames=2, target_frames=1)
    with pytest.raises(FileNotFoundError, match=r"nope\.h5"):
        HDF5Sequences(tmp_path / "nope.h5", dataset="x", layout="NTCHW", split="all", context_frames=2, target_frames=1)
