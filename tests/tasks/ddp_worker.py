"""Run by test_ddp.py as ``python -m tests.tasks.ddp_worker OUT_DIR``: one DDP training step on 2 CPU processes
(gloo), then a validation pass; every process saves its initial and final weights and its logged scores."""

import os
import sys
from pathlib import Path

import torch

from convlstm.tasks import AnomalyTask, ForecastingTask, OptimizationConfig, make_trainer
from tests.tasks.tiny import ItemList, LastFrame, TinyForecaster, flicker_videos, loader, static_sequences


def main(out: Path) -> None:
    rank = int(os.environ.get("LOCAL_RANK", "0"))  # set by Lightning in the processes it launches
    torch.set_num_threads(1)
    torch.manual_seed(100 + rank)  # different initial weights per process: DDP must broadcast rank 0's
    task = ForecastingTask(TinyForecaster(), optimization=OptimizationConfig(lr=1e-2), metrics=("mse_per_frame",))
    torch.save(task.model.state_dict(), out / f"init_rank{rank}.pt")
    trainer = make_trainer(
        root_dir=out,
        accelerator="cpu",
        devices=2,
        seed=None,
        precision="32-true",  # test_ddp.py recomputes the pooled scores in float32; "auto" may pick bfloat16
        max_steps=1,
        loggers=False,
        checkpoints=False,
        early_stopping_patience=None,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(task, loader(static_sequences(8, seed=0), batch_size=2))  # each process sees other sequences
    torch.save(task.model.state_dict(), out / f"final_rank{trainer.global_rank}.pt")
    scores = trainer.validate(task, loader(static_sequences(6, seed=1), batch_size=1), verbose=False)[0]
    frames, labels = flicker_videos(6, seed=1)
    videos = ItemList([{"context": f, "labels": y} for f, y in zip(frames, labels, strict=True)])
    scores.update(trainer.test(AnomalyTask(LastFrame(), context_frames=2), loader(videos, batch_size=1))[0])
    torch.save({"world_size": trainer.world_size, **scores}, out / f"scores_rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
