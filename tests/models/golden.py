"""Writes the golden outputs that pin the numerics of the small registered models.

python -m tests.models.golden      # rewrites tests/models/golden/outputs.json
"""

import json
from pathlib import Path

import torch

from tests.models.registry_cases import build, example_input, run, summary

GOLDEN_MODELS = [
    "encoder_forecaster_tiny",
    "radar_convlstm_advection",
    "fc_lstm_tiny",
    "next_frame_tiny",
    "prednet_tiny",
    "convlstm_unet",
    "convlstm_unet_forecaster",
    "persistence",
]
GOLDEN_FILE = Path(__file__).parent / "golden" / "outputs.json"


def compute() -> dict[str, dict]:
    results = {}
    for name in GOLDEN_MODELS:
        model = build(name)
        with torch.no_grad():
            results[name] = summary(run(model, example_input(model)))
    return results


if __name__ == "__main__":
    torch.set_num_threads(1)
    GOLDEN_FILE.parent.mkdir(exist_ok=True)
    GOLDEN_FILE.write_text(json.dumps(compute(), indent=1) + "\n")
    print(f"wrote {GOLDEN_FILE}")
