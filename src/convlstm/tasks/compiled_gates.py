"""Compiled gate arithmetic for the length of a fit, where it builds."""

import logging
from typing import Any

import lightning as L
import torch

from convlstm.accel.compiled_gates import compiled_gates_work, restore_compiled_gates, set_compiled_gates

__all__ = ["CompiledGates"]

logger = logging.getLogger(__name__)


class CompiledGates(L.Callback):
    """Runs every ConvLSTM cell's gate arithmetic through torch.compile while the Trainer fits, and puts the cells
    back as they were after (evaluation, export and saved models are unaffected: the switch is not part of a model's
    configuration).

    Args:
        enabled: True compiles (a failed compilation then stops the fit with torch's error); False never does; None
            ("auto") compiles on the CPU where [`compiled_gates_work`][convlstm.accel.compiled_gates_work] found that
            inductor builds the gates here, and logs the choice with its reason in one line. On a GPU "auto" leaves
            the gates eager (training there is not measured yet).
    """

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = enabled
        self._before: dict[Any, bool] = {}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._before = set_compiled_gates(pl_module, False)  # each cell's own setting, put back at teardown
        if not self._before:
            return  # no ConvLSTM cell: nothing to decide, nothing to log
        compile_gates = self.enabled
        if compile_gates is None:
            device_type = torch.device(pl_module.device).type
            compile_gates, why = compiled_gates_work(device_type)
            if device_type == "cpu":
                logger.info("compiled gates auto: %s, since %s", "on" if compile_gates else "off", why)
        set_compiled_gates(pl_module, compile_gates)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        restore_compiled_gates(self._before)
        self._before = {}
