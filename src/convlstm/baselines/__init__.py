"""Non-learned forecasters with the model interface, to measure learned models against.

Importing this package registers the builders ``persistence``, ``optical_flow`` and ``steps``.
"""

from convlstm.baselines.optical_flow import OpticalFlow
from convlstm.baselines.persistence import Persistence
from convlstm.baselines.steps import STEPS

__all__ = ["STEPS", "OpticalFlow", "Persistence"]
