"""Runs a script of benchmarks/ as a user would, with the package from src/ and one thread."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"


def run_benchmark(
    name: str, *args: str, timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``env`` adds variables to (or overrides) the environment the script runs in."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def assert_refused_keeping_out(name: str, out: Path, args: list[str], message: str) -> None:
    """``name`` run with ``--out`` at a folder that holds a user's file must exit 2 saying ``message`` and leave the
    file as it was (bad arguments, or an --out that is not empty)."""
    out.mkdir()
    (out / "keep.txt").write_text("a user's file")
    done = run_benchmark(name, "--out", str(out), *args, timeout=300)
    assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]
    assert (out / "keep.txt").read_text() == "a user's file"
