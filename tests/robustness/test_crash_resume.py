"""Crash safety: a `convlstm fit` killed with SIGKILL mid-epoch, then resumed with --resume, ends with exactly the
weights (and optimizer state) of a run that never stopped, and the kill leaves no partial checkpoint behind.

The recipe trains on a .npy file (a plain dataset: its training order must come from the seed and the epoch, not
from a shuffling generator that restarts at each resume) with scheduled sampling (random teacher-forcing masks:
the random generators' states must be restored too). 16 training windows in batches of 4: 4 steps per epoch, a
checkpoint after each epoch's validation.
"""

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
import yaml

from convlstm.cli.main import main
from convlstm.experiment import RunDir, building
from convlstm.tasks import TrainerConfig, load_task
from convlstm.utils.atomic import remove_stale_temporaries

ROOT = Path(__file__).resolve().parents[2]
STEPS_PER_EPOCH = 4
TOTAL_STEPS = 12


def _recipe(folder: Path) -> Path:
    """10 recordings of 4 frames (8x8): 8 for training (2 windows each), 1 for validation."""
    frames = np.random.default_rng(0).random((10, 4, 1, 8, 8), dtype=np.float32)
    np.save(folder / "frames.npy", frames)
    recipe = {
        "name": "crash",
        "seed": 3,
        "data": {
            "source": "numpy",
            "args": {"root": str(folder / "frames.npy"), "layout": "NTCHW"},
            "context_frames": 2,
            "target_frames": 1,
            "batch_size": 4,
        },
        "model": {"name": "next_frame_tiny", "args": {"encoder_channels": [4, 4], "hidden_channels": [4]}},
        "task": {"kind": "forecasting", "args": {"sampling": "linear", "sampling_end_step": 20, "lr": 0.01}},
        "trainer": {
            "max_steps": TOTAL_STEPS,
            "accelerator": "cpu",
            "early_stopping_patience": None,
            "enable_progress_bar": False,
            "log_every_n_steps": 1,
        },
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _recipe(tmp_path_factory.mktemp("recipe"))


@pytest.fixture(scope="module")
def uninterrupted(recipe: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    run = tmp_path_factory.mktemp("runs") / "uninterrupted"
    assert main(["fit", "-c", str(recipe), "--run-dir", str(run)]) == 0
    return _last(run)


def _last(run: Path) -> dict[str, Any]:
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)


def _assert_same_training_state(resumed: dict[str, Any], reference: dict[str, Any]) -> None:
    assert resumed["global_step"] == reference["global_step"] == TOTAL_STEPS
    assert resumed["state_dict"].keys() == reference["state_dict"].keys()
    for name, value in reference["state_dict"].items():
        assert torch.equal(resumed["state_dict"][name], value), f"{name} differs from the uninterrupted run"
    for ours, theirs in zip(
        resumed["optimizer_states"][0]["state"].values(),
        reference["optimizer_states"][0]["state"].values(),
        strict=True,
    ):
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


@contextlib.contextmanager
def _reaped(process: subprocess.Popen[bytes]) -> Iterator[None]:
    """Whatever the body does, the process is gone afterwards (killed if it still runs) and its pipe closed."""
    try:
        yield
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


def _wait_for(condition: Any, process: subprocess.Popen[bytes], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the training process ended (code {process.returncode}) before {what}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _step(progress: Path) -> int:
    try:
        return int(progress.read_text())
    except (FileNotFoundError, ValueError):
        return 0


def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(
    recipe: Path, uninterrupted: dict[str, Any], tmp_path: Path
) -> None:
    run, progress = tmp_path / "killed", tmp_path / "progress"
    command = [sys.executable, "-m", "tests.robustness.fit_worker", str(progress), "--"]
    command += ["fit", "-c", str(recipe), "--run-dir", str(run)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    with _reaped(process):
        last = run / "checkpoints" / "last.ckpt"
        _wait_for(last.is_file, process, 120, "the first checkpoint")
        # The worker pauses after every step: kill it in the second epoch, one step after its first checkpoint.
        _wait_for(lambda: _step(progress) >= STEPS_PER_EPOCH + 1, process, 60, "a step after the checkpoint")
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(30) == -signal.SIGKILL
    killed_at = _step(progress)
    assert killed_at % STEPS_PER_EPOCH != 0, "the kill should land mid-epoch, between checkpoints"

    # What the kill left: whole checkpoints only, each readable without unpickling code, none from after the kill.
    assert not list(run.rglob("*.tmp"))
    checkpoints = sorted((run / "checkpoints").glob("*.ckpt"))
    assert checkpoints
    for path in checkpoints:
        state = torch.load(path, weights_only=True)
        assert 0 < state["global_step"] < killed_at
        assert all(bool(torch.isfinite(v).all()) for v in state["state_dict"].values())
        load_task(path)
    assert _last(run)["global_step"] == STEPS_PER_EPOCH

    assert main(["fit", "-c", str(recipe), "--run-dir", str(run), "--resume"]) == 0
    _assert_same_training_state(_last(run), uninterrupted)
    from convlstm import from_pretrained

    assert type(from_pretrained(run / "model")).__name__ == "NextFramePredictor"


def test_resuming_from_mid_epoch_checkpoints_equals_an_uninterrupted_run(
    recipe: Path, uninterrupted: dict[str, Any], tmp_path: Path
) -> None:
    """Sessions stopped by max_steps mid-epoch: Lightning then writes last.ckpt mid-epoch, and the next session
    must go on with the next batch of that epoch, not restart the epoch's data."""
    run = tmp_path / "sessions"
    fit = ["fit", "-c", str(recipe), "--run-dir", str(run)]
    assert main([*fit, "-o", "trainer.max_steps=6"]) == 0
    assert main([*fit, "--resume", "-o", "trainer.max_steps=7"]) == 0
    assert _last(run)["global_step"] == 7  # mid-epoch (4 steps per epoch)
    assert main([*fit, "--resume"]) == 0
    _assert_same_training_state(_last(run), uninterrupted)


def test_a_write_killed_midway_leaves_the_old_checkpoint_whole(tmp_path: Path) -> None:
    """SIGKILL while AtomicCheckpointIO writes 8 MB checkpoints in a loop: the target is always one complete
    checkpoint; the kill can leave a hidden temporary file, which resuming a run removes."""
    target = tmp_path / "checkpoints" / "last.ckpt"
    script = (
        "import sys, torch\n"
        "from convlstm.tasks.callbacks import AtomicCheckpointIO\n"
        "io, k = AtomicCheckpointIO(), 0\n"
        "while True:\n"
        "    k += 1\n"
        "    io.save_checkpoint({'k': k, 'w': torch.full((2_000_000,), float(k))}, sys.argv[1])\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script, str(target)], cwd=ROOT, stderr=subprocess.PIPE)
    with _reaped(process):
        _wait_for(target.is_file, process, 120, "the first checkpoint")
        time.sleep(0.5)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(30)
    state = torch.load(target, weights_only=True)
    assert state["k"] >= 1 and torch.equal(state["w"], torch.full((2_000_000,), float(state["k"])))
    leftovers = list(target.parent.iterdir())
    assert all(p == target or (p.name.startswith(".last.ckpt.") and p.name.endswith(".tmp")) for p in leftovers)
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted(p for p in leftovers if p != target)
    assert list(target.parent.iterdir()) == [target]


def test_resume_removes_temporary_files_of_an_interrupted_write(tmp_path: Path) -> None:
    from convlstm.experiment import recipe_from_dict

    recipe = recipe_from_dict({"name": "r", "data": {"source": "moving_mnist"}, "model": {"name": "persistence"}})
    run = RunDir(tmp_path / "run")
    run.create(recipe, resume=False)
    run.checkpoint_dir.mkdir()
    (run.checkpoint_dir / "last.ckpt").write_bytes(b"the checkpoint the killed write was replacing")
    stale = run.checkpoint_dir / ".last.ckpt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    kept = run.checkpoint_dir / "notes.tmp"  # not one of ours: no leading dot
    kept.write_text("user file")
    run.create(recipe, resume=True)
    assert not stale.exists() and kept.exists()


class _Disrupt(L.Callback):
    """After the optimizer step ``at_step``, sends this process ``signum`` (the test's Ctrl-C or scheduler), or
    raises RuntimeError (a crash) when ``signum`` is None."""

    def __init__(self, at_step: int, signum: int | None) -> None:
        self.at_step, self.signum = at_step, signum

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step != self.at_step:
            return
        if self.signum is None:
            raise RuntimeError("simulated crash")
        os.kill(os.getpid(), self.signum)


def _fit_disrupted(monkeypatch: pytest.MonkeyPatch, disrupt: _Disrupt, arguments: list[str]) -> int:
    make_trainer = building.make_trainer

    def with_disruption(config: TrainerConfig, /, **settings: Any) -> L.Trainer:
        return make_trainer(config, **settings, callbacks=[disrupt])

    with monkeypatch.context() as patch:
        patch.setattr(building, "make_trainer", with_disruption)
        return main(arguments)


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signal handlers need it")
@pytest.mark.parametrize(("signum", "at_step"), [(signal.SIGINT, 2), (signal.SIGTERM, STEPS_PER_EPOCH + 1)])
def test_a_signal_mid_epoch_writes_a_checkpoint_and_resuming_equals_an_uninterrupted_run(
    recipe: Path,
    uninterrupted: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    signum: int,
    at_step: int,
) -> None:
    """Ctrl-C inside the first epoch (before any validation wrote a checkpoint), SIGTERM inside the second: the fit
    stops at the end of that step with the shell's exit code, last.ckpt holds that step, one line says how to go on,
    and that command ends where a run that never stopped ends."""
    run = tmp_path / "stopped"
    code = _fit_disrupted(monkeypatch, _Disrupt(at_step, signum), ["fit", "-c", str(recipe), "--run-dir", str(run)])
    assert code == 128 + signum
    assert _last(run)["global_step"] == at_step
    assert json.loads((run / "training.json").read_text())["steps"] == at_step
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"at step {at_step}" in message and "--resume" in message
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the fit's handlers are gone

    command = shlex.split(message.split("to go on: ", 1)[1])
    assert command[:2] == ["convlstm", "fit"]
    assert main(command[1:]) == 0
    _assert_same_training_state(_last(run), uninterrupted)


def test_a_crash_loses_only_the_steps_since_the_last_timed_checkpoint(
    recipe: Path, uninterrupted: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With trainer.checkpoint_every_minutes small, a crash at step 3 of the first epoch finds last.ckpt at step 2
    (written at the end of every step; the crash comes before step 3's), where without it there would be none."""
    run = tmp_path / "crashed"
    fit = ["fit", "-c", str(recipe), "--run-dir", str(run), "-o", "trainer.checkpoint_every_minutes=1e-9"]
    with pytest.raises(RuntimeError, match="simulated crash"):
        _fit_disrupted(monkeypatch, _Disrupt(3, None), fit)
    assert _last(run)["global_step"] == 2
    assert main([*fit, "--resume"]) == 0
    _assert_same_training_state(_last(run), uninterrupted)
