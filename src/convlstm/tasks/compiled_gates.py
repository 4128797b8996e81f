"""Compiled gate arithmetic for the length of a fit, where it builds."""

import logging

import lightning as L
import torch

from convlstm.accel.compiled_gates import compiled_gates_work
from convlstm.layers.lstm_cell import ConvLSTMCell

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
        self._before: dict[ConvLSTMCell, bool] = {}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        cells = [m for m in pl_module.modules() if isinstance(m, ConvLSTMCell)]
        if not cells:
            return
        compile_gates = self.enabled
        if compile_gates is None:
            device_type = torch.device(pl_module.device).type
            compile_gates, why = compiled_gates_work(device_type)
            if device_type == "cpu":
                logger.info("compiled gates auto: %s, since %s", "on" if compile_gates else "off", why)
        self._before = {cell: cell.compile_gates for cell in cells}
        for cell in cells:
            cell.compile_gates = compile_gates

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for cell, before in self._before.items():
            cell.compile_gates = before
        self._before = {}
