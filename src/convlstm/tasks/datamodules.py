"""A LightningDataModule that owns the train / val / test datasets, their normalization and their loaders.

data = SequenceDataModule(train=train_set, val=val_set, test=test_set, batch_size=16, num_workers=4)
# or build the datasets per split from a factory, and fit normalization on the training split only:
data = SequenceDataModule(factory=functools.partial(HDF5Sequences, "sevir.h5", dataset="vil", layout="NHWT",
                                                    context_frames=13, target_frames=12),
                          normalize="minmax", batch_size=16, num_workers=4)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from convlstm.data.core.normalization import Normalization
from convlstm.data.core.sampling import ChunkAwareSampler
from convlstm.data.core.windows import WindowDataset
from convlstm.data.core.workers import init_worker
from convlstm.utils.checks import check_int

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def seed_worker(worker_id: int) -> None:
    """Sets up a DataLoader worker: one compute thread, seeded numpy and random (see
    [`convlstm.data.init_worker`][convlstm.data.init_worker], which this calls)."""
    init_worker(worker_id)


class _Normalized(Dataset[dict[str, torch.Tensor]]):
    """A dataset whose items pass through a Normalization after the dataset's own transform."""

    def __init__(self, dataset: Dataset[dict[str, torch.Tensor]], normalization: Normalization) -> None:
        self.dataset, self.normalization = dataset, normalization

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.normalization(self.dataset[index])


class SequenceDataModule(L.LightningDataModule):
    """Train / val / test datasets and their DataLoaders.

    Args:
        train: the training dataset (items are dicts of tensors); None for a split not used.
        val: the validation dataset, or None.
        test: the test dataset, or None.
        factory: alternatively, builds a split's dataset as factory(split=name); used for the splits not given.
        batch_size: training batch size.
        eval_batch_size: validation / test batch size (default batch_size).
        num_workers: DataLoader worker processes; workers are persistent when > 0.
        pin_memory: pin host memory for faster copies to the GPU (default: when CUDA is available).
        seed: seeds the training shuffle and, through it, the workers (seed_worker), so runs repeat.
        normalize: "standard" or "minmax" to fit a Normalization on the training split (only) and apply it to
            every split; it is saved in checkpoints through state_dict.
        drop_last: drop the last incomplete training batch.
        chunk_aware: visit the training windows chunk by chunk on disk instead of in a uniform shuffle, with a
            [`ChunkAwareSampler`][convlstm.data.ChunkAwareSampler] (order fixed by seed and epoch), for a
            WindowDataset read from a time-chunked archive with a ``chunk_cache``; under DDP it gives each
            process its own contiguous share (Lightning keeps it). A run resumed mid-epoch restarts that epoch.
    """

    def __init__(
        self,
        train: Dataset[Any] | None = None,
        val: Dataset[Any] | None = None,
        test: Dataset[Any] | None = None,
        *,
        factory: Callable[..., Dataset[Any]] | None = None,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool | None = None,
        seed: int = 0,
        normalize: Literal["standard", "minmax"] | None = None,
        drop_last: bool = False,
        chunk_aware: bool = False,
    ) -> None:
        super().__init__()
        check_int("batch_size", batch_size)
        check_int("num_workers", num_workers, minimum=0)
        if eval_batch_size is not None:  # None: batch_size
            check_int("eval_batch_size", eval_batch_size)
        self.datasets: dict[str, Dataset[Any] | None] = {"train": train, "val": val, "test": test}
        self.factory = factory
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.seed = seed
        self.normalize = normalize
        self.drop_last = drop_last
        self.chunk_aware = chunk_aware
        self.normalization: Normalization | None = None

    def dataset(self, split: str) -> Dataset[Any] | None:
        """The dataset of a split (built by the factory on first use), without normalization."""
        if self.datasets[split] is None and self.factory is not None:
            self.datasets[split] = self.factory(split=split)
        return self.datasets[split]

    def setup(self, stage: str | None = None) -> None:
        needed = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in needed.get(stage or "", SPLITS):
            self.dataset(split)
        if self.normalize is not None and self.normalization is None:
            train = self.dataset("train")
            if train is None:
                raise ValueError("normalize needs a training split (train= or factory=) to fit its statistics")
            self.normalization = Normalization.fit(_frames_of(train), kind=self.normalize)
            logger.info("fitted %s normalization on the training split: %s", self.normalize, self.normalization)

    def _loader(self, split: str, train: bool) -> DataLoader[Any]:
        dataset = self.dataset(split)
        if dataset is None:
            raise ValueError(f"no {split} dataset: pass {split}= or factory= to SequenceDataModule")
        fresh = train and callable(getattr(dataset, "set_epoch", None))
        # The training order is a function of (seed, epoch) alone, so a resumed run sees the batches an unbroken
        # run would (a shuffling generator would restart from its seed at every resume).
        sampler: Sampler[int] | None = None
        if train and self.chunk_aware:
            if not isinstance(dataset, WindowDataset):
                raise ValueError(
                    f"chunk_aware=True needs a WindowDataset (windows of recordings), got {type(dataset).__name__}"
                )
            sampler = ChunkAwareSampler(dataset, seed=self.seed)
        elif train:
            sampler = FreshEpochSampler(dataset, seed=self.seed)
        if self.normalization is not None:
            dataset = _Normalized(dataset, self.normalization)
        loader_class = ResumableDataLoader if train else DataLoader
        return loader_class(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=False,
            sampler=sampler,
            drop_last=self.drop_last and train,
            num_workers=self.num_workers,
            # Workers that outlive an epoch would keep generating the previous epoch's sequences.
            persistent_workers=self.num_workers > 0 and not fresh,
            pin_memory=self.pin_memory,
            worker_init_fn=seed_worker,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_dataloader(self) -> DataLoader[Any]:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader[Any]:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader[Any]:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> DataLoader[Any]:
        return self._loader("test", train=False)

    def state_dict(self) -> dict[str, Any]:
        """The fitted normalization, so checkpoints carry it."""
        return {} if self.normalization is None else {"normalization": self.normalization.to_dict()}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        if "normalization" in state_dict:
            self.normalization = Normalization.from_dict(dict(state_dict["normalization"]))


class FreshEpochSampler(Sampler[int]):
    """Shuffles a training set in an order fixed by (seed, epoch), and moves a generator dataset to a new epoch of
    sequences whenever Lightning sets the epoch.

    Generators such as MovingMNIST draw training sequences from (seed, epoch, index): calling their ``set_epoch``
    at every epoch gives an endless stream of new sequences instead of one fixed training set. Lightning calls
    ``set_epoch`` on the sampler before each training epoch. Since the order does not depend on how many epochs
    this process has run, a resumed run gets the order an unbroken run would; ``skip`` (set by
    `ResumableDataLoader`) leaves out the first indices of the next epoch read, to resume mid-epoch.
    """

    def __init__(self, dataset: Any, *, seed: int) -> None:
        self.dataset, self.seed, self.epoch, self.skip = dataset, seed, 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if callable(getattr(self.dataset, "set_epoch", None)):
            self.dataset.set_epoch(epoch)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        skip, self.skip = self.skip, 0
        return iter(torch.randperm(len(self.dataset), generator=generator)[skip:].tolist())

    def __len__(self) -> int:
        return len(self.dataset)


class ResumableDataLoader(DataLoader[Any]):
    """The training DataLoader of [`SequenceDataModule`][convlstm.tasks.SequenceDataModule]: Lightning saves its place
    in the epoch in every checkpoint, so a run resumed from a checkpoint written mid-epoch (after a crash, ``max_time``
    or ``max_steps``) continues with the next batch of that epoch instead of restarting the epoch's data.

    It counts the batches it hands out; after `load_state_dict` the next iteration over the same epoch
    leaves out that many batches' indices in its `FreshEpochSampler` (nothing is read for them). When
    Lightning has wrapped the sampler (DDP), it resumes at the start of the epoch, as Lightning does by itself.
    """

    _drawn = 0
    _resume: tuple[int, int] | None = None

    def _epoch_sampler(self) -> FreshEpochSampler | None:
        return self.sampler if isinstance(self.sampler, FreshEpochSampler) else None

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        # A generator: the body runs at the first next(), after Lightning has set the epoch on the sampler.
        sampler, resume = self._epoch_sampler(), self._resume
        self._resume, self._drawn = None, 0
        if resume is not None and sampler is not None and sampler.epoch == resume[0]:
            sampler.skip = resume[1] * int(self.batch_size or 1)
            self._drawn = resume[1]
            logger.info("resuming epoch %d after its first %d batches", resume[0], resume[1])
        for batch in super().__iter__():
            self._drawn += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        sampler = self._epoch_sampler()
        return {} if sampler is None else {"epoch": sampler.epoch, "batches": self._drawn}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        if "epoch" in state_dict and "batches" in state_dict:
            self._resume = (int(state_dict["epoch"]), int(state_dict["batches"]))


def _frames_of(dataset: Dataset[Any]) -> Any:
    """What Normalization.fit reads: a WindowDataset itself (each frame once), else every item's context and
    target (frames shared by overlapping windows then count more than once)."""
    if isinstance(dataset, WindowDataset):
        return dataset
    return (item[key] for i in range(len(dataset)) for item in [dataset[i]] for key in ("context", "target"))  # type: ignore[arg-type]
