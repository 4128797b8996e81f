"""benchmarks/memory.py at a tiny size: every way to train is measured in its own process, the tables print, and
the activation memory it reports behaves as the four ways promise."""

import json
from pathlib import Path

from tests.benchmarks.scripts import run_benchmark

MODES = ("plain", "checkpoint", "tbptt", "both")


def test_tiny_run_measures_every_mode_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "memory.json"
    args = ["--lengths", "8", "16", "--hidden", "2", "2", "--size", "8", "--chunk", "4", "--checkpoint-every", "2"]
    done = run_benchmark("memory.py", *args, "--json", str(out), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for heading in ("peak memory of the tensors", "peak memory saved for the backward pass", "seconds per step"):
        assert heading in done.stdout
    results = json.loads(out.read_text())
    assert "benchmarks/memory.py" in results["command"]
    saved = {(r["mode"], r["length"]): r["saved_mib"] for r in results["results"]}
    assert set(saved) == {(mode, length) for mode in MODES for length in (8, 16)}
    assert all(r["tensors_mib"] > 0 and r["seconds"] > 0 for r in results["results"])
    # Autograd's saved tensors are counted exactly: plain grows with the sequence, TBPTT holds one chunk whatever
    # its length, checkpointing keeps less than plain, and both together the least.
    assert saved["plain", 16] > 1.8 * saved["plain", 8]
    assert saved["tbptt", 16] < 1.2 * saved["tbptt", 8]
    for length in (8, 16):
        assert saved["checkpoint", length] < saved["plain", length]
        assert saved["both", length] < min(saved["tbptt", length], saved["checkpoint", length])
