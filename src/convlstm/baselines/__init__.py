"""Non-learned forecasters with the model interface, to measure learned models against.

Importing this package registers the builders ``persistence`` and ``optical_flow``.
"""

from convlstm.baselines.optical_flow import OpticalFlow
from convlstm.baselines.persistence import Persistence

__all__ = ["OpticalFlow", "Persistence"]
