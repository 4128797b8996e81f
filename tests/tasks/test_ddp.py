"""Two CPU processes under Lightning's DDP (gloo): one step leaves both with the same, changed weights, and the
evaluation scores (forecast accumulators, anomaly frames) pool both processes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from convlstm.metrics import frame_auroc
from convlstm.tasks import score_sequences
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
