"""benchmarks/gpu.py end to end on the CPU (--quick), and its refusal to measure without CUDA."""

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.benchmarks.scripts import BENCHMARKS, run_benchmark


def _run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return run_benchmark("gpu.py", *args, timeout=120)


def _check_result(result: dict[str, Any]) -> None:
    assert [w["role"] for w in result["workloads"]] == ["train_small", "train_large_bf16", "infer_small"]
    for workload in result["workloads"]:
        rows = workload["rows"]
        assert rows[0]["settings"]["straightforward"] and rows[0]["status"] == "ok"
        assert rows[0]["speed_ratio"] == pytest.approx(1.0)
        ran = [row for row in rows if row["status"] == "ok"]
        assert any(not row["settings"]["straightforward"] for row in ran)
        for row in ran:
            assert row["seq_per_s"] > 0 and row["speed_ratio"] > 0
            assert row["numerics"]["ok"], row
            assert (row["numerics"]["gradient_max_rel"] is None) == (not workload["training"])
        for row in rows:
            assert row["status"] == "ok" or row.get("reason") or row.get("error")
    assert set(result["targets"]) >= {"train_small", "train_large_bf16", "infer_small"}


def test_quick_run_on_the_cpu_writes_valid_json(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = _run_script("--device", "cpu", "--quick", "--json", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    _check_result(result)
    assert result["device_type"] == "cpu" and result["quick"] and not result["targets"]["applies"]
    rows = [row for w in result["workloads"] for row in w["rows"]]
    assert all(row["status"] == "skipped" for row in rows if row["settings"]["graph"])
    # bfloat16 rows really ran in bfloat16: their outputs differ from float32, within tolerance.
    bf16 = [row for row in rows if row["settings"]["bf16"] and row["status"] == "ok"]
    assert bf16 and all(row["numerics"]["output_max_abs"] > 0 for row in bf16)
    assert "train b2" in done.stdout and "vs ref" in done.stdout


def test_refuses_to_measure_without_cuda(tmp_path: Path) -> None:
    done = _run_script("--device", "cpu", "--json", str(tmp_path / "x.json"))
    assert done.returncode == 2 and "--quick" in done.stderr
    if not torch.cuda.is_available():
        done = _run_script("--json", str(tmp_path / "x.json"))
        assert done.returncode == 2 and "needs a CUDA GPU" in done.stderr
    assert not (tmp_path / "x.json").exists()


def test_graph_rows_plumbing_with_an_eager_stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rows that capture CUDA graphs, run with eager stand-ins for the two capture functions, so that their
    arguments and results are checked on the CPU too (the capture itself is tested in tests/accel on CUDA)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import gpu
    from convlstm.accel import make_training_step

    def fake_training(model, optimizer, loss_fn, inputs, *, autocast_dtype=None, warmup_steps=3):  # type: ignore[no-untyped-def]
        assert warmup_steps >= 1 and all(isinstance(x, torch.Tensor) for x in inputs)
        if optimizer is not None:
            assert all(group["capturable"] for group in optimizer.param_groups)
            for group in optimizer.param_groups:
                group["capturable"] = False  # the CPU cannot run capturable Adam
        return make_training_step(model, optimizer, loss_fn, autocast_dtype=autocast_dtype)

    def fake_inference(fn, inputs, *, autocast_dtype=None, warmup_steps=2):  # type: ignore[no-untyped-def]
        def call(*args: torch.Tensor) -> object:
            with (
                torch.no_grad(),
                torch.autocast("cpu", dtype=autocast_dtype or torch.bfloat16, enabled=bool(autocast_dtype)),
            ):
                return fn(*args)

        return call

    monkeypatch.setattr(gpu, "capture_training_step", fake_training)
    monkeypatch.setattr(gpu, "capture_inference", fake_inference)

    def graph_rows_only(spec: gpu.Spec, ctx: gpu.Context, *, is_reference: bool) -> str | None:
        return None if is_reference or (spec.graph and not spec.compile_gates) else "not a graph row"

    monkeypatch.setattr(gpu, "skip_reason", graph_rows_only)
    out = tmp_path / "graph.json"
    result = gpu.run(gpu.parse_args(["--device", "cpu", "--quick", "--compile", "off", "--json", str(out)]))
    _check_result(result)
    assert json.loads(out.read_text())["workloads"] == result["workloads"]
    rows = [row for w in result["workloads"] for row in w["rows"]]
    graph_rows = [row for row in rows if row["settings"]["graph"] and not row["settings"]["compile_gates"]]
    assert len(graph_rows) == 8 and all(row["status"] == "ok" for row in graph_rows)
