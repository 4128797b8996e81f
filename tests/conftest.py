"""Test-wide settings."""

import torch

# The tests use tiny tensors, where a second intra-op thread costs more in synchronisation than it saves, and
# CI machines have 2 cores: one thread per test process keeps the suite fast and its timings steady.
torch.set_num_threads(1)
