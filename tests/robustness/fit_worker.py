"""Run by test_crash_resume.py as ``python -m tests.robustness.fit_worker PROGRESS -- <convlstm fit arguments>``:
`convlstm fit` with one extra callback that writes the optimizer step reached after every training batch to
PROGRESS and then pauses, so that the test can kill the process (SIGKILL) at a step of its choosing. The callback
changes nothing that training computes."""

import os
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from convlstm.cli.main import main
from convlstm.experiment import building
from convlstm.tasks import TrainerConfig

PAUSE_S = 0.3


class ReportProgress(L.Callback):
    def __init__(self, path: Path) -> None:
        self.path = path

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        tmp = self.path.with_suffix(".writing")
        tmp.write_text(str(trainer.global_step))
        os.replace(tmp, self.path)
        time.sleep(PAUSE_S)


if __name__ == "__main__":
    torch.set_num_threads(1)  # as the tests' own process (tests/conftest.py): the same arithmetic
    progress, separator, *arguments = sys.argv[1:]
    assert separator == "--"
    make_trainer = building.make_trainer

    def with_progress(config: TrainerConfig, /, **settings: Any) -> L.Trainer:
        settings["callbacks"] = [*settings.get("callbacks", ()), ReportProgress(Path(progress))]
        return make_trainer(config, **settings)

    building.make_trainer = with_progress  # type: ignore[assignment]
    sys.exit(main(arguments))
