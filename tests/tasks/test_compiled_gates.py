"""CompiledGates: the ConvLSTM gate arithmetic compiled for the length of a fit where inductor builds it, eager where
it does not (checked with a C++ compiler that does not exist), and the cells as they were after the fit."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest

from convlstm.accel import compiled_gates_work
from convlstm.layers.lstm_cell import ConvLSTMCell
from convlstm.tasks import ForecastingTask, make_trainer
from tests.tasks.tiny import TinyForecaster, loader, static_sequences


class RecordGates(L.Callback):
    """Records each ConvLSTM cell's compile_gates at every training step."""

    def __init__(self) -> None:
        self.seen: list[bool] = []

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: object, i: int) -> None:
        self.seen += [m.compile_gates for m in pl_module.modules() if isinstance(m, ConvLSTMCell)]


def _fit(tmp_path: Path, compile_gates: bool | None) -> tuple[list[bool], TinyForecaster]:
    record = RecordGates()
    model = TinyForecaster(hidden=3)
    trainer = make_trainer(
        root_dir=tmp_path,
        max_steps=2,
        loggers=False,
        checkpoints=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        compile_gates=compile_gates,
        callbacks=[record],
    )
    trainer.fit(ForecastingTask(model), loader(static_sequences(4, seed=0)), loader(static_sequences(2, seed=1)))
    return record.seen, model


def test_auto_compiles_the_gates_where_they_build_and_puts_the_cells_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    works, why = compiled_gates_work("cpu")
    with caplog.at_level(logging.INFO, logger="convlstm.tasks.compiled_gates"):
        seen, model = _fit(tmp_path, compile_gates=None)
    assert seen == [works, works]
    assert f"compiled gates auto: {'on' if works else 'off'}, since {why}" in caplog.text
    assert not any(m.compile_gates for m in model.modules() if isinstance(m, ConvLSTMCell))


def test_false_keeps_the_gates_eager(tmp_path: Path) -> None:
    seen, _ = _fit(tmp_path, compile_gates=False)
    assert seen == [False, False]


PROBE_AND_FIT = """
import logging, sys
from pathlib import Path
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
from convlstm.accel import compiled_gates_work
from tests.tasks.test_compiled_gates import _fit
works, why = compiled_gates_work("cpu")
print("probe works:", works)
print("probe why:", why)
seen, _ = _fit(Path(sys.argv[1]), compile_gates=None)
print("seen:", seen)
"""


def test_where_inductor_cannot_build_auto_says_why_and_trains_eagerly(tmp_path: Path) -> None:
    # No such compiler, and an empty inductor cache (a cached build would rightly count as one that works).
    env = {**os.environ, "CXX": str(tmp_path / "no-such-g++"), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE_AND_FIT, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "probe works: False" in done.stdout
    assert "probe why: torch.compile of the gate arithmetic failed here (" in done.stdout
    assert "compiled gates auto: off, since torch.compile of the gate arithmetic failed here" in done.stdout
    assert "seen: [False, False]" in done.stdout


def test_the_compiled_gates_of_a_bf16_fit_and_its_validation_stay_under_the_recompile_limit() -> None:
    """Gates in bfloat16 and float32, grad on and off, first and later steps: every variant is compiled, none falls
    back to eager arithmetic because one function ran past torch._dynamo's recompile limit."""
    works, why = compiled_gates_work("cpu")
    if not works:
        pytest.skip(why)
    import torch
    from torch._dynamo.eval_frame import _debug_get_cache_entry_list

    from convlstm.layers import ConvLSTM
    from convlstm.layers import lstm_cell as lstm_cell_module

    torch._dynamo.reset()  # the variants other tests compiled in this process
    assert compiled_gates_work.__wrapped__("cpu")[0]  # the probe a fit runs first, compiled again
    layer = ConvLSTM(2, 4, 3)
    for module in layer.modules():
        if isinstance(module, ConvLSTMCell):
            module.compile_gates = True
    x = torch.randn(1, 3, 2, 6, 6)
    for dtype in (torch.bfloat16, None):
        for grad in (True, False):
            autocast = torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None)
            with autocast, torch.set_grad_enabled(grad):
                out, _ = layer(x)
            if grad:
                out.float().sum().backward()
    limit = torch._dynamo.config.recompile_limit
    variants = [
        len(_debug_get_cache_entry_list(function.__code__))
        for function in (lstm_cell_module.lstm_pointwise, lstm_cell_module._lstm_first_step)
    ]
    assert all(0 < count < limit for count in variants), (variants, limit)
