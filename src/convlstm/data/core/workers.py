"""DataLoader worker setup, in one place: one compute thread per worker, and seeded third-party generators.

Every DataLoader worker is a process of its own. Left alone, each would start as many torch (OpenMP), BLAS and
zarr/blosc threads as the machine has cores, so that N workers run N times too many threads, which thrash instead
of helping (the main process keeps its threads for the model). [`init_worker`][convlstm.data.init_worker] is the
``worker_init_fn`` the package's loaders use; pass it to DataLoaders of your own:

    DataLoader(dataset, batch_size=8, num_workers=4, worker_init_fn=init_worker)
"""

import random

import numpy as np
import torch

#: Compute threads per DataLoader worker process.
WORKER_THREADS = 1


def init_worker(worker_id: int) -> None:
    """A DataLoader ``worker_init_fn``: limits the worker to `WORKER_THREADS` compute thread(s) (torch, and
    zarr's and blosc's decompression threads when they are installed) and seeds numpy's and Python's global
    generators from torch's per-worker seed (base seed + worker id), so third-party transforms differ between
    workers and repeat between runs.

    Args:
        worker_id: the worker's index, as DataLoader passes it (unused: torch's seed already includes it).
    """
    torch.set_num_threads(WORKER_THREADS)
    _limit_decompression_threads()
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)  # noqa: NPY002 - third-party transforms may use the legacy global generator
    random.seed(seed)


def _limit_decompression_threads() -> None:
    """zarr decodes chunks on a thread pool and blosc decompresses on threads of its own: one each per worker."""
    try:
        import zarr

        zarr.config.set({"threading.max_workers": WORKER_THREADS})
    except (ImportError, AttributeError):  # no zarr, or zarr 2 (no config; its blosc threads are handled below)
        pass
    try:
        from numcodecs import blosc
    except ImportError:
        return
    blosc.use_threads = False
