"""A `fit` that fails before training prints one line, names what was given and what was expected, and leaves no
run behind: the next `fit` with the same --run-dir starts afresh."""

from pathlib import Path

import numpy as np
import pytest

from convlstm.cli.main import main


def _fit(run: Path, *overrides: str) -> int:
    arguments = [arg for override in overrides for arg in ("-o", override)]
    return main(["fit", "-c", "demo", "--run-dir", str(run), "-o", "trainer.enable_progress_bar=false", *arguments])


def _one_error_line(capfd: pytest.CaptureFixture[str]) -> str:
    out, err = capfd.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines  # no Lightning banner, no tips, no traceback
    assert lines[0].startswith("convlstm fit: error: ")
    return lines[0]


def test_a_missing_file_fails_in_one_line_and_removes_the_new_run(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    missing = tmp_path / "mnist_test_seq.npy"
    assert _fit(run, "data.source=moving_mnist_file", f"data.args={{root: {missing}}}") == 2
    line = _one_error_line(capfd)
    assert f"Moving MNIST file not found: {missing}" in line
    assert f"removed {run}, which this fit created" in line
    assert not run.exists()


def test_a_given_empty_run_directory_is_emptied_again(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run.mkdir()
    folder = tmp_path / "frames"
    folder.mkdir()
    np.save(folder / "wrong.npy", np.zeros((3, 8, 8), np.uint8))  # not (T, N, H, W)
    assert _fit(run, "data.source=moving_mnist_file", f"data.args={{root: {folder / 'wrong.npy'}}}") == 2
    line = _one_error_line(capfd)
    assert "expected uint8 frames of shape (T, N, H, W)" in line and "got uint8 of shape (3, 8, 8)" in line
    assert f"removed what this fit wrote into {run}" in line
    assert run.is_dir() and not any(run.iterdir())


def test_a_missing_video_folder_is_called_a_folder(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "videos"
    assert _fit(tmp_path / "run", "data.source=video", f"data.args={{root: {folder}}}") == 2
    line = _one_error_line(capfd)
    assert f"video root not found: {folder} (expected a folder of videos or one video file" in line


def test_bad_data_arguments_name_the_source_and_what_it_takes(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    assert _fit(tmp_path / "run", "data.source=numpy", f"data.args={{root: {tmp_path / 'x.npy'}}}") == 2
    line = _one_error_line(capfd)
    assert "data.args must set ['layout'] for NumpySequences (numpy)" in line


def test_a_value_of_the_wrong_type_names_the_key_the_value_and_the_type(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    assert _fit(tmp_path / "run", "task.args.lr=fast") == 2
    line = _one_error_line(capfd)
    assert "task.args.lr must be float, got 'fast'" in line
