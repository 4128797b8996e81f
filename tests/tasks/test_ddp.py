"""Two CPU processes under Lightning's DDP (gloo): one step leaves both with the same, changed weights, and the
evaluation scores (forecast accumulators, anomaly frames) pool both processes. Every registered model trains under
torch's DDP with find_unused_parameters=False, and two half batches equal one whole batch."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist

from convlstm import list_models
from convlstm.metrics import frame_auroc
from convlstm.tasks import score_sequences
from tests.tasks.ddp_models import CI_MAX_PARAMETERS, parameter_count
from tests.tasks.tiny import LastFrame, TinyForecaster, flicker_videos, static_sequences

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed gloo")
def test_ddp_two_cpu_processes(tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    env.pop("LOCAL_RANK", None)
    done = subprocess.run(
        [sys.executable, "-m", "tests.tasks.ddp_worker", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    init = [torch.load(tmp_path / f"init_rank{r}.pt", weights_only=True) for r in (0, 1)]
    final = [torch.load(tmp_path / f"final_rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert not torch.equal(init[0]["head.weight"], init[1]["head.weight"])  # the processes started apart
    for name in final[0]:
        assert torch.equal(final[0][name], final[1][name]), name
    assert any(not torch.equal(final[0][name], init[0][name]) for name in final[0])
    scores = [torch.load(tmp_path / f"scores_rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert scores[0]["world_size"] == 2
    assert scores[0]["val/mse_per_frame"] == scores[1]["val/mse_per_frame"]
    # The summed score equals one computed here on all 6 validation sequences with the final weights.
    model = TinyForecaster()
    model.load_state_dict(final[0])
    model.eval()
    val = static_sequences(6, seed=1)
    context = torch.stack([item["context"] for item in val.items])
    target = torch.stack([item["target"] for item in val.items])
    with torch.no_grad():
        expected = (model(context, 2) - target).square().sum((2, 3, 4)).mean()
    assert scores[0]["val/mse_per_frame"] == pytest.approx(float(expected), rel=1e-5)
    # The anomaly AUROC pools the frames of both processes: it equals the AUROC over all 6 videos.
    frames, labels = flicker_videos(6, seed=1)
    regularity = score_sequences(LastFrame(), frames, context_frames=2)
    full = float(frame_auroc(regularity, labels, higher_is_anomalous=False))
    assert scores[0]["test/auroc"] == scores[1]["test/auroc"] == pytest.approx(full, rel=1e-6)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_models_on_two_ranks(out: Path, *extra: str) -> list[dict[str, Any]]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")])
    env.update(OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE="2")
    command = [sys.executable, "-m", "tests.tasks.ddp_models", str(out), *extra]
    ranks = [
        subprocess.Popen(
            command, cwd=ROOT, env={**env, "RANK": str(r)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for r in (0, 1)
    ]
    logs = [p.communicate(timeout=900)[0] for p in ranks]
    for rank, (process, log) in enumerate(zip(ranks, logs, strict=True)):
        assert process.returncode == 0, f"rank {rank}: {log[-3000:]}"
    return [json.loads((out / f"models_rank{r}.json").read_text()) for r in (0, 1)]


def _assert_models_train_under_ddp(results: list[dict[str, Any]], expected: set[str]) -> None:
    assert set(results[0]) == set(results[1]) == expected
    for name, result in results[0].items():
        assert "error" not in result, f"{name}: {result['error']}"
        assert result["without_grad"] == [], f"{name}: parameters without a gradient {result['without_grad']}"
        assert result["ranks_equal"], f"{name}: the ranks' weights differ after two DDP steps"
        # float64 gradients of one batch of 2 against two batches of 1 averaged: the same terms summed in another
        # order, eps 1.1e-16 per term over up to ~1e4 terms, amplified up to ~1e5 by a norm layer's cancelling terms.
        assert result["grad_difference"] < 1e-8, f"{name}: DDP gradient off by {result['grad_difference']:.2e}"
    assert all("error" not in r and r["without_grad"] == [] for r in results[1].values())


def _trainable_models(max_parameters: int | None) -> set[str]:
    names = set()
    for name in list_models():
        count = parameter_count(name)
        if count and (max_parameters is None or count <= max_parameters):
            names.add(name)
    return names


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed gloo")
def test_every_registered_model_trains_under_ddp_without_unused_parameters(tmp_path: Path) -> None:
    """find_unused_parameters=False on two gloo ranks; half a batch each equals the whole batch on one process."""
    results = _run_models_on_two_ranks(tmp_path)
    _assert_models_train_under_ddp(results, _trainable_models(CI_MAX_PARAMETERS))
    # ChunkAwareSampler, reading the ranks from the process group: disjoint halves of the 46 windows.
    shares = [set(json.loads((tmp_path / f"windows_rank{r}.json").read_text())) for r in (0, 1)]
    assert len(shares[0]) == len(shares[1]) == 23
    assert not shares[0] & shares[1] and shares[0] | shares[1] == set(range(46))


@pytest.mark.slow
@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed gloo")
def test_every_registered_model_trains_under_ddp_including_the_largest(tmp_path: Path) -> None:
    results = _run_models_on_two_ranks(tmp_path, "--all")
    _assert_models_train_under_ddp(results, _trainable_models(None))
