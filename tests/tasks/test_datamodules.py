import functools
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from convlstm.data.core.normalization import Normalization
from convlstm.data.formats.numpy_arrays import NumpySequences
from convlstm.tasks.datamodules import SequenceDataModule


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """Three .npy files (N=4, T=6, 1, 4, 4); training values around 5, the others far away."""
    rng = np.random.default_rng(0)
    means = {"train": 5.0, "val": 100.0, "test": -50.0}
    paths = {}
    for split, mean in means.items():
        paths[split] = tmp_path / f"{split}.npy"
        np.save(paths[split], rng.normal(mean, 2.0, (4, 6, 1, 4, 4)).astype(np.float32))
    return paths


def make(path: Path) -> NumpySequences:
    return NumpySequences(path, layout="NTCHW", split="all", context_frames=2, target_frames=1, stride=1)


def first_values(loader: DataLoader[Any]) -> list[float]:
    return [v for batch in loader for v in batch["context"][:, 0, 0, 0, 0].tolist()]


def test_loaders_with_workers(files: dict[str, Path]) -> None:
    data = SequenceDataModule(
        make(files["train"]), make(files["val"]), make(files["test"]), batch_size=5, num_workers=2, seed=3
    )
    data.setup("fit")
    loader = data.train_dataloader()
    assert loader.num_workers == 2 and loader.persistent_workers
    assert loader.pin_memory == torch.cuda.is_available()
    batch = next(iter(loader))
    assert batch["context"].shape == (5, 2, 1, 4, 4) and batch["target"].shape == (5, 1, 1, 4, 4)
    seen = first_values(loader)
    expected = sorted(make(files["train"])[i]["context"][0, 0, 0, 0].item() for i in range(16))
    assert sorted(seen) == expected  # every window once per epoch
    val = first_values(data.val_dataloader())
    assert val == [make(files["val"])[i]["context"][0, 0, 0, 0].item() for i in range(16)]  # not shuffled


def test_shuffle_is_seeded(files: dict[str, Path]) -> None:
    def order(seed: int) -> list[float]:
        return first_values(SequenceDataModule(make(files["train"]), seed=seed, batch_size=4).train_dataloader())

    assert order(1) == order(1)
    assert order(1) != order(2)


class RandomItems(Dataset[dict[str, torch.Tensor]]):
    """Items drawn from numpy's global generator, as third-party augmentations do."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"context": torch.tensor([np.random.rand()])}  # noqa: NPY002


def test_workers_are_seeded() -> None:
    def draw() -> torch.Tensor:
        loader = SequenceDataModule(RandomItems(), batch_size=4, num_workers=2, seed=0).train_dataloader()
        return torch.cat([batch["context"] for batch in loader])

    first, second = draw(), draw()
    assert torch.equal(first, second)
    assert len(set(first.flatten().tolist())) == 8  # workers do not repeat each other's draws


def test_normalization_is_fitted_on_train_only(files: dict[str, Path]) -> None:
    data = SequenceDataModule(factory=functools.partial(_from_files, files), normalize="standard", batch_size=16)
    data.setup("fit")
    assert data.normalization is not None
    train_values = np.load(files["train"]).astype(np.float64)
    assert data.normalization.center == pytest.approx([train_values.mean()], rel=1e-5)
    assert data.normalization.scale == pytest.approx([train_values.std()], rel=1e-5)
    batch = next(iter(data.train_dataloader()))
    assert abs(batch["context"].mean().item()) < 0.5  # normalized training data
    val_batch = next(iter(data.val_dataloader()))
    assert val_batch["context"].mean().item() > 20  # val stays far away: its statistics were not used

    restored = SequenceDataModule(factory=functools.partial(_from_files, files), normalize="standard")
    restored.load_state_dict(data.state_dict())
    assert restored.normalization == data.normalization
    assert Normalization.from_dict(data.state_dict()["normalization"]) == data.normalization


def _from_files(files: dict[str, Path], split: str) -> NumpySequences:
    return make(files[split])


def test_factory_builds_only_the_needed_splits(files: dict[str, Path]) -> None:
    built: list[str] = []

    def factory(split: str) -> NumpySequences:
        built.append(split)
        return make(files[split])

    data = SequenceDataModule(factory=factory)
    data.setup("test")
    assert built == ["test"]
    assert len(data.test_dataloader().dataset) == 16


def test_missing_split_and_bad_arguments(files: dict[str, Path]) -> None:
    data = SequenceDataModule(make(files["train"]))
    with pytest.raises(ValueError, match="no val dataset"):
        data.val_dataloader()
    with pytest.raises(ValueError, match="batch_size"):
        SequenceDataModule(batch_size=0)
    with pytest.raises(ValueError, match="training split"):
        SequenceDataModule(test=make(files["test"]), normalize="minmax").setup("test")


class MeanModel(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.mean = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return ((batch["context"] - self.mean) ** 2).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_trainer_saves_normalization_in_checkpoints(files: dict[str, Path], tmp_path: Path) -> None:
    data = SequenceDataModule(make(files["train"]), normalize="minmax", batch_size=8)
    trainer = L.Trainer(
        max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path
    )
    trainer.fit(MeanModel(), datamodule=data)
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    checkpoint = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert data.normalization is not None
    assert checkpoint["SequenceDataModule"] == {"normalization": data.normalization.to_dict()}


def test_generator_training_sets_get_fresh_sequences_every_epoch() -> None:
    from convlstm.data import MovingMNIST

    class Recorder(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(()))
            self.seen: list[torch.Tensor] = []

        def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
            self.seen.append(batch["context"].flatten(1).sum(1).sort().values)
            return self.weight * batch["context"].mean()

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    train = MovingMNIST(split="train", num_sequences=4, context_frames=1, target_frames=1)
    module, recorder = SequenceDataModule(train, batch_size=4), Recorder()
    trainer = L.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(recorder, datamodule=module)
    assert train.epoch == 1 and len(recorder.seen) == 2
    assert not torch.allclose(recorder.seen[0], recorder.seen[1])  # new sequences, not a reshuffle
