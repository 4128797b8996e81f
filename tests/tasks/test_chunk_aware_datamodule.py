"""SequenceDataModule(chunk_aware=True): the training windows come chunk by chunk, in an order fixed by seed and
epoch."""

from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch.utils.data import DistributedSampler

from convlstm.data import ChunkAwareSampler, XarraySequences
from convlstm.tasks import SequenceDataModule


def test_chunk_aware_training_order(tmp_path: Path) -> None:
    steps, chunk = 48, 8
    data = xr.Dataset(
        {"field": (("time", "lat", "lon"), np.random.default_rng(0).random((steps, 3, 4), dtype=np.float32))},
        coords={
            "time": pd.date_range("2022-01-01", periods=steps, freq="h"),
            "lat": np.arange(3.0),
            "lon": np.arange(4.0),
        },
    )
    data.to_zarr(tmp_path / "a.zarr", encoding={"field": {"chunks": (chunk, 3, 4)}}, zarr_format=2)
    windows = XarraySequences(
        tmp_path / "a.zarr", variables=["field"], split="all", context_frames=3, target_frames=2, chunk_cache=2
    )
    module = SequenceDataModule(train=windows, batch_size=5, seed=4, chunk_aware=True)
    loader = module.train_dataloader()
    # A DistributedSampler: under DDP Lightning keeps it (it shards by itself) instead of wrapping and reshuffling it.
    assert isinstance(loader.sampler, ChunkAwareSampler) and isinstance(loader.sampler, DistributedSampler)
    seen = torch.cat([batch["context"] for batch in loader])
    expected = ChunkAwareSampler(windows, seed=4).order()
    assert torch.equal(seen, torch.stack([windows[i]["context"] for i in expected]))
    plain = SequenceDataModule(train=windows, batch_size=5, seed=4).train_dataloader()
    assert not torch.equal(torch.cat([b["context"] for b in plain]), seen)  # the uniform shuffle differs
